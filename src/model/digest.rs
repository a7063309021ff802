//! Content digests (`sha256:<hex>`): a value, parsed and printed.
//!
//! Checking bytes against a digest as they stream is `integrity`'s
//! job; this module does no I/O.
//!
//! Only sha256 is accepted: it is what every registry and tool in the field
//! writes, and accepting algorithms we cannot check would open a hole.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

/// A validated `sha256:<64 lowercase hex>` digest.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

impl Digest {
    /// Digest of a byte slice.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest::from_hasher(Sha256::new_with_prefix(bytes))
    }

    pub(crate) fn from_hasher(h: Sha256) -> Digest {
        Digest(format!("sha256:{}", hex::encode(h.finalize())))
    }

    /// The 32 bytes of the hash, for binary formats.
    pub fn raw_bytes(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        hex::decode_to_slice(self.hex(), &mut out).expect("validated hex");
        out
    }

    pub fn from_raw(bytes: [u8; 32]) -> Digest {
        Digest(format!("sha256:{}", hex::encode(bytes)))
    }

    /// The 64 hex characters, as used in `blobs/sha256/<hex>`.
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A short form for messages: `sha256:0123456789ab`.
    pub fn short(&self) -> &str {
        &self.0[..("sha256:".len() + 12)]
    }

    /// The path of this blob inside an OCI image layout.
    pub fn layout_path(&self) -> String {
        format!("blobs/sha256/{}", self.hex())
    }
}

impl FromStr for Digest {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (algo, hex) = s
            .split_once(':')
            .ok_or_else(|| format!("{s:?} is not a digest (expected sha256:<hex>)"))?;
        if algo != "sha256" {
            return Err(format!(
                "digest algorithm {algo:?} is not supported (only sha256)"
            ));
        }
        if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(format!(
                "{s:?} is not a valid sha256 digest (64 lowercase hex characters)"
            ));
        }
        Ok(Digest(s.to_string()))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl TryFrom<&oci_spec::image::Digest> for Digest {
    type Error = String;
    fn try_from(d: &oci_spec::image::Digest) -> Result<Self, String> {
        d.to_string().parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_and_rejects() {
        assert_eq!(Digest::of(b"").as_str(), EMPTY);
        assert!(EMPTY.parse::<Digest>().is_ok());
        assert!("sha512:abc".parse::<Digest>().is_err());
        assert!("sha256:ABC".parse::<Digest>().is_err());
        assert!(EMPTY.to_uppercase().parse::<Digest>().is_err());
        assert!("e3b0c442".parse::<Digest>().is_err());
    }
}

//! Images as immutable values: a descriptor plus the raw manifest bytes.
//!
//! Parsing goes through `oci-spec`; digests are always computed over the raw
//! bytes, and a manifest we did not create is never re-serialised. The only
//! manifests airlock writes itself are a platform-filtered index and the
//! manifest it synthesises for a legacy `docker save` image.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use oci_spec::image::{ImageIndex, ImageManifest};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::Digest;

/// Media types airlock treats specially.
pub mod media {
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
    pub const DOCKER_SCHEMA1_SIGNED: &str =
        "application/vnd.docker.distribution.manifest.v1+prettyjws";

    pub fn is_index(mt: &str) -> bool {
        mt == OCI_INDEX || mt == DOCKER_LIST
    }

    pub fn is_manifest(mt: &str) -> bool {
        mt == OCI_MANIFEST || mt == DOCKER_MANIFEST
    }
}

/// Manifests and indexes larger than this are refused (the limit registries
/// and containers/image apply), so a hostile source cannot make us buffer a
/// huge "manifest".
pub const MAX_MANIFEST_SIZE: u64 = 4 * 1024 * 1024;

/// Image configs read whole (to name platforms, or from a docker save tar)
/// may be this large; long build histories make them bigger than manifests.
pub const MAX_CONFIG_SIZE: u64 = 16 * 1024 * 1024;

/// The fields of an OCI descriptor that airlock uses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    pub fn new(media_type: impl Into<String>, digest: Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.into(),
            digest,
            size,
            platform: None,
            artifact_type: None,
            annotations: BTreeMap::new(),
        }
    }

    fn from_oci(d: &oci_spec::image::Descriptor, what: &str) -> Result<Descriptor> {
        let digest = Digest::try_from(d.digest()).map_err(|reason| Error::Unsupported {
            what: what.to_string(),
            reason,
        })?;
        Ok(Descriptor {
            media_type: d.media_type().to_string(),
            digest,
            size: d.size(),
            platform: d.platform().as_ref().map(Platform::from_oci),
            artifact_type: d.artifact_type().as_ref().map(|a| a.to_string()),
            annotations: d
                .annotations()
                .as_ref()
                .map(|a| a.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default(),
        })
    }
}

/// `os/arch[/variant]`, compared the way `--platform` filters do.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    pub fn parse(s: &str) -> Result<Platform> {
        let parts: Vec<&str> = s.split('/').collect();
        let bad = || {
            Error::Usage(format!(
                "platform {s:?} is not os/arch[/variant], e.g. linux/amd64 or linux/arm64/v8"
            ))
        };
        if !(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.is_empty()) {
            return Err(bad());
        }
        Ok(Platform {
            os: parts[0].to_string(),
            architecture: parts[1].to_string(),
            variant: parts.get(2).map(|v| v.to_string()),
        })
    }

    fn from_oci(p: &oci_spec::image::Platform) -> Platform {
        Platform {
            os: p.os().to_string(),
            architecture: p.architecture().to_string(),
            variant: p.variant().clone().filter(|v| !v.is_empty()),
        }
    }

    /// The platform this program runs on, as an image would name it.
    pub fn host() -> Platform {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            other => other,
        };
        Platform {
            os: "linux".into(),
            architecture: architecture.into(),
            variant: None,
        }
    }

    /// Does this (wanted) platform select `candidate`? Both are compared
    /// in [`Platform::normalized`] form, so `linux/arm64` and
    /// `linux/arm64/v8` select each other. A wanted platform written
    /// without a variant selects every variant, as docker's matcher does
    /// (`linux/arm` selects arm/v6 too; `armhf` names v7 itself).
    pub fn selects(&self, candidate: &Platform) -> bool {
        let (mut want, have) = (self.normalized(), candidate.normalized());
        if self.variant.is_none() && want.architecture.eq_ignore_ascii_case(&self.architecture) {
            want.variant = None;
        }
        want.os == have.os
            && want.architecture == have.architecture
            && (want.variant.is_none() || want.variant == have.variant)
    }

    /// The canonical spelling containerd's `platforms.Normalize` gives:
    /// lower case; `x86_64` is amd64 and its `v1` the default; `aarch64`
    /// is arm64 and its `v8` the default; `armhf` is arm/v7, `armel`
    /// arm/v6, plain `arm` means v7; `i386` is 386; `macos` is darwin.
    pub fn normalized(&self) -> Platform {
        let os = match self.os.to_ascii_lowercase().as_str() {
            "macos" => "darwin".to_string(),
            other => other.to_string(),
        };
        let arch = self.architecture.to_ascii_lowercase();
        let variant = self.variant.as_deref().map(str::to_ascii_lowercase);
        let (architecture, variant) = match (arch.as_str(), variant.as_deref()) {
            ("i386", _) => ("386", None),
            ("x86_64" | "x86-64" | "amd64", Some("v1")) => ("amd64", None),
            ("x86_64" | "x86-64" | "amd64", v) => ("amd64", v),
            ("aarch64" | "arm64", Some("8" | "v8" | "v8.0")) => ("arm64", None),
            ("aarch64" | "arm64", v) => ("arm64", v),
            ("armhf", _) => ("arm", Some("v7")),
            ("armel", _) => ("arm", Some("v6")),
            ("arm", None | Some("7")) => ("arm", Some("v7")),
            ("arm", Some("5")) => ("arm", Some("v5")),
            ("arm", Some("6")) => ("arm", Some("v6")),
            ("arm", Some("8")) => ("arm", Some("v8")),
            (a, v) => (a, v),
        };
        Platform {
            os,
            architecture: architecture.to_string(),
            variant: variant.map(str::to_string),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// What a manifest blob is, once parsed.
#[derive(Clone, Debug)]
pub enum Parsed {
    /// An image (or artifact) manifest: config, then layers.
    Manifest {
        config: Descriptor,
        layers: Vec<Descriptor>,
    },
    /// An index or manifest list: its child manifests.
    Index { manifests: Vec<Descriptor> },
}

/// A manifest or index with the exact bytes it was read as.
#[derive(Clone, Debug)]
pub struct Node {
    pub descriptor: Descriptor,
    pub raw: Arc<[u8]>,
    pub parsed: Parsed,
}

impl Node {
    /// Parses verified raw bytes. `what` names the blob in errors.
    pub fn parse(descriptor: Descriptor, raw: Arc<[u8]>, what: &str) -> Result<Node> {
        let parsed = parse_manifest(&descriptor.media_type, &raw, what)?;
        Ok(Node {
            descriptor,
            raw,
            parsed,
        })
    }

    /// Every blob this node refers to, in push order (config before layers).
    pub fn children(&self) -> Vec<&Descriptor> {
        match &self.parsed {
            Parsed::Manifest { config, layers } => std::iter::once(config).chain(layers).collect(),
            Parsed::Index { manifests } => manifests.iter().collect(),
        }
    }
}

/// Parses a manifest or index. The descriptor's media type decides when it
/// names one of ours; otherwise the document's own `mediaType` (or its shape)
/// does. Docker schema 1 is refused: it cannot be stored by digest safely.
pub fn parse_manifest(media_type: &str, raw: &[u8], what: &str) -> Result<Parsed> {
    let bad = |reason: String| Error::BadJson {
        what: what.to_string(),
        reason,
    };
    let probe: serde_json::Value = serde_json::from_slice(raw).map_err(|e| bad(e.to_string()))?;
    let schema = probe.get("schemaVersion").and_then(|v| v.as_u64());
    let inner_type = probe
        .get("mediaType")
        .and_then(|v| v.as_str())
        .unwrap_or("");
    if schema == Some(1)
        || [media_type, inner_type]
            .iter()
            .any(|t| *t == media::DOCKER_SCHEMA1 || *t == media::DOCKER_SCHEMA1_SIGNED)
    {
        return Err(Error::Unsupported {
            what: what.to_string(),
            reason: "Docker schema 1 manifests are not supported; convert the image first (skopeo copy --format v2s2)".into(),
        });
    }
    if schema != Some(2) {
        return Err(bad(format!("schemaVersion is {schema:?}, expected 2")));
    }
    let is_index = media::is_index(media_type)
        || media::is_index(inner_type)
        || (!media::is_manifest(media_type) && probe.get("manifests").is_some());
    if is_index {
        let idx: ImageIndex = serde_json::from_value(probe).map_err(|e| bad(e.to_string()))?;
        let manifests = idx
            .manifests()
            .iter()
            .map(|d| Descriptor::from_oci(d, what))
            .collect::<Result<_>>()?;
        Ok(Parsed::Index { manifests })
    } else {
        let m: ImageManifest = serde_json::from_value(probe).map_err(|e| bad(e.to_string()))?;
        Ok(Parsed::Manifest {
            config: Descriptor::from_oci(m.config(), what)?,
            layers: m
                .layers()
                .iter()
                .map(|d| Descriptor::from_oci(d, what))
                .collect::<Result<_>>()?,
        })
    }
}

/// Reads `os`, `architecture` and `variant` from an image config blob.
pub fn platform_of_config(raw: &[u8]) -> Option<Platform> {
    #[derive(Deserialize)]
    struct Cfg {
        os: Option<String>,
        architecture: Option<String>,
        variant: Option<String>,
    }
    let c: Cfg = serde_json::from_slice(raw).ok()?;
    Some(Platform {
        os: c.os?,
        architecture: c.architecture?,
        variant: c.variant.filter(|v| !v.is_empty()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_matching() {
        let want = Platform::parse("linux/arm64").unwrap();
        let v8 = Platform::parse("linux/arm64/v8").unwrap();
        assert!(want.selects(&v8));
        assert!(!want.selects(&Platform::parse("linux/amd64").unwrap()));
        assert!(Platform::parse("linux").is_err());
        assert!(Platform::parse("linux//v7").is_err());
        assert_eq!(v8.to_string(), "linux/arm64/v8");
    }

    fn p(s: &str) -> Platform {
        Platform::parse(s).unwrap()
    }

    #[test]
    fn default_variants_select_each_other() {
        for (a, b) in [
            ("linux/arm64/v8", "linux/arm64"),
            ("linux/arm64", "linux/arm64/v8"),
            ("linux/aarch64", "linux/arm64/v8"),
            ("linux/amd64/v1", "linux/amd64"),
            ("linux/x86_64", "linux/amd64"),
            ("linux/amd64", "linux/x86_64/v1"),
            ("linux/armhf", "linux/arm/v7"),
            ("linux/arm", "linux/arm/v7"),
            ("linux/arm/7", "linux/arm"),
            ("linux/armel", "linux/arm/v6"),
            ("linux/i386", "linux/386"),
            ("Linux/AMD64", "linux/amd64"),
        ] {
            assert!(p(a).selects(&p(b)), "{a} should select {b}");
        }
    }

    #[test]
    fn other_variants_and_architectures_stay_apart() {
        for (a, b) in [
            ("linux/arm/v7", "linux/arm/v6"),
            ("linux/armel", "linux/arm/v7"),
            ("linux/amd64/v3", "linux/amd64"),
            ("linux/arm64/v9", "linux/arm64/v8"),
            ("linux/arm64", "linux/amd64"),
            ("linux/arm", "linux/arm64"),
            ("windows/amd64", "linux/amd64"),
        ] {
            assert!(!p(a).selects(&p(b)), "{a} should not select {b}");
        }
        // Without a variant, every variant of the architecture is selected.
        assert!(p("linux/amd64").selects(&p("linux/amd64/v3")));
        assert!(p("linux/arm").selects(&p("linux/arm/v6")));
    }

    #[test]
    fn normalized_spelling_is_containerds() {
        assert_eq!(
            p("linux/aarch64/v8").normalized().to_string(),
            "linux/arm64"
        );
        assert_eq!(p("linux/x86_64").normalized().to_string(), "linux/amd64");
        assert_eq!(p("linux/armhf").normalized().to_string(), "linux/arm/v7");
        assert_eq!(p("macos/arm64").normalized().to_string(), "darwin/arm64");
    }

    #[test]
    fn refuses_schema1_by_type_and_by_shape() {
        let e = parse_manifest(media::DOCKER_SCHEMA1_SIGNED, b"{}", "m").unwrap_err();
        assert!(e.to_string().contains("schema 1"), "{e}");
        let e = parse_manifest("", br#"{"schemaVersion":1,"fsLayers":[]}"#, "m").unwrap_err();
        assert!(e.to_string().contains("schema 1"), "{e}");
    }

    #[test]
    fn rejects_bad_json_and_bad_digests() {
        assert!(matches!(
            parse_manifest(media::OCI_MANIFEST, b"{not json", "m"),
            Err(Error::BadJson { .. })
        ));
        let bad_digest = br#"{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:00","size":1},"layers":[]}"#;
        assert!(parse_manifest(media::OCI_MANIFEST, bad_digest, "m").is_err());
    }

    #[test]
    fn parses_index_by_shape() {
        let d = Digest::of(b"x");
        let raw = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{}","digest":"{d}","size":1,"platform":{{"os":"linux","architecture":"arm","variant":"v7"}}}}]}}"#,
            media::OCI_MANIFEST
        );
        match parse_manifest("", raw.as_bytes(), "i").unwrap() {
            Parsed::Index { manifests } => {
                assert_eq!(
                    manifests[0].platform.as_ref().unwrap().to_string(),
                    "linux/arm/v7"
                )
            }
            other => panic!("{other:?}"),
        }
    }
}

//! ed25519 keys (PKCS#8 PEM, readable by `openssl pkey`) and the DSSE
//! envelope that carries the signed bundle manifest: the one place where
//! an envelope is decoded ([`decode_envelope`]) and its signature checked.
//!
//! Not for the manifest inside: the payload stays raw bytes here, checked
//! as they are, and is parsed only afterwards (`open.rs`).
//!
//! A key id is the lowercase hex SHA-256 of the public key's DER
//! SubjectPublicKeyInfo, so `openssl pkey -pubin -outform DER | sha256sum`
//! reproduces it.

use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::format::{ENVELOPE_NAME, PAYLOAD_TYPE};
use crate::error::{Error, Result, SigProblem};

/// A DSSE envelope (<https://github.com/secure-systems-lab/dsse>).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Envelope {
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    pub payload: String,
    pub signatures: Vec<EnvelopeSignature>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EnvelopeSignature {
    #[serde(default)]
    pub keyid: String,
    pub sig: String,
}

/// DSSE's pre-authentication encoding: what is actually signed.
fn pae(payload_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

impl Envelope {
    /// Wraps `payload`, signed when a key is given.
    pub fn new(payload_type: &str, payload: &[u8], key: Option<&SigningKey>) -> Envelope {
        let signatures = key
            .map(|k| EnvelopeSignature {
                keyid: key_id(&k.verifying_key()),
                sig: B64.encode(k.sign(&pae(payload_type, payload)).to_bytes()),
            })
            .into_iter()
            .collect();
        Envelope {
            payload_type: payload_type.to_string(),
            payload: B64.encode(payload),
            signatures,
        }
    }

    pub fn payload_bytes(&self) -> std::result::Result<Vec<u8>, String> {
        B64.decode(&self.payload)
            .map_err(|e| format!("the envelope payload is not base64: {e}"))
    }

    /// Key ids the envelope claims to be signed by (unverified).
    pub fn key_ids(&self) -> Vec<String> {
        self.signatures.iter().map(|s| s.keyid.clone()).collect()
    }

    /// Accepts the envelope if any signature verifies under one of `keys`.
    pub fn verify(&self, keys: &TrustedKeys) -> std::result::Result<(), SigProblem> {
        if self.signatures.is_empty() {
            return Err(SigProblem::Unsigned);
        }
        let body = self.payload_bytes().map_err(|_| SigProblem::Invalid {
            key_id: keys.ids().join(" or "),
        })?;
        self.verify_body(&body, keys)
    }

    /// Accepts the envelope if any signature verifies under one of `keys`
    /// over `body`, the payload bytes already decoded from it; `keys`
    /// records which one did.
    fn verify_body(&self, body: &[u8], keys: &TrustedKeys) -> std::result::Result<(), SigProblem> {
        if self.signatures.is_empty() {
            return Err(SigProblem::Unsigned);
        }
        let message = pae(&self.payload_type, body);
        let mut claimed = None;
        for key in &keys.keys {
            let ours = key_id(key);
            for s in &self.signatures {
                if s.keyid == ours {
                    claimed.get_or_insert_with(|| ours.clone());
                }
                let Ok(raw) = B64.decode(&s.sig) else {
                    continue;
                };
                let Ok(sig) = Signature::from_slice(&raw) else {
                    continue;
                };
                if key.verify_strict(&message, &sig).is_ok() {
                    let _ = keys.signer.set(ours);
                    return Ok(());
                }
            }
        }
        // A trusted key the envelope names that does not verify: altered.
        match claimed {
            Some(key_id) => Err(SigProblem::Invalid { key_id }),
            None => Err(SigProblem::WrongKey {
                signed_by: self.key_ids(),
                expected: keys.ids().join(" or "),
            }),
        }
    }
}

/// The public keys a bundle may be signed by (`--pub`, repeatable: an old
/// and a new key while keys rotate). After a check that passed, it knows
/// which one signed.
#[derive(Debug)]
pub struct TrustedKeys {
    keys: Vec<VerifyingKey>,
    signer: std::sync::OnceLock<String>,
}

impl TrustedKeys {
    pub fn new(keys: Vec<VerifyingKey>) -> TrustedKeys {
        TrustedKeys {
            keys,
            signer: std::sync::OnceLock::new(),
        }
    }

    /// The key ids, in the order given.
    pub fn ids(&self) -> Vec<String> {
        self.keys.iter().map(key_id).collect()
    }

    /// The id of the key whose signature verified, once one did.
    pub fn signer(&self) -> Option<String> {
        self.signer.get().cloned()
    }
}

impl From<VerifyingKey> for TrustedKeys {
    fn from(key: VerifyingKey) -> TrustedKeys {
        TrustedKeys::new(vec![key])
    }
}

/// A bundle's envelope, decoded: its payload type checked and its payload
/// out of base64, as raw bytes. Nothing is trusted yet: the signature is
/// checked by [`SignedPayload::verify`] over exactly these bytes.
#[derive(Clone, Debug)]
pub struct SignedPayload {
    envelope: Envelope,
    payload: Vec<u8>,
}

impl SignedPayload {
    /// The raw payload bytes (unchecked until [`SignedPayload::verify`]).
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// Key ids the envelope claims to be signed by (unverified).
    pub fn key_ids(&self) -> Vec<String> {
        self.envelope.key_ids()
    }

    /// Accepts the payload if any signature verifies under one of `keys`.
    pub fn verify(&self, keys: &TrustedKeys) -> std::result::Result<(), SigProblem> {
        self.envelope.verify_body(&self.payload, keys)
    }
}

/// Decodes the first member of a bundle (file or stream): DSSE JSON, the
/// bundle manifest's payload type, base64. `Err` says what is wrong.
pub fn decode_envelope(raw: &[u8]) -> std::result::Result<SignedPayload, String> {
    let envelope: Envelope = serde_json::from_slice(raw)
        .map_err(|e| format!("{ENVELOPE_NAME} is not a DSSE envelope: {e}"))?;
    if envelope.payload_type != PAYLOAD_TYPE {
        return Err(format!(
            "{ENVELOPE_NAME} carries {:?}, not an airlock bundle manifest",
            envelope.payload_type
        ));
    }
    let payload = envelope.payload_bytes()?;
    Ok(SignedPayload { envelope, payload })
}

pub fn key_id(key: &VerifyingKey) -> String {
    let der = key
        .to_public_key_der()
        .expect("an ed25519 public key always encodes");
    hex::encode(Sha256::digest(der.as_bytes()))
}

/// A fresh key from the operating system's random source.
pub fn generate() -> Result<SigningKey> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed)
        .map_err(|e| Error::Failed(format!("no random source available: {e}")))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// PKCS#8 v1 (RFC 8410) PEM, the form `openssl genpkey` writes. The v2 form
/// ed25519-dalek emits carries the public key too, and OpenSSL 3.0 refuses it.
pub fn private_pem(key: &SigningKey) -> String {
    format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        B64.encode(private_der(key))
    )
}

fn private_der(key: &SigningKey) -> zeroize::Zeroizing<Vec<u8>> {
    const V1_PREFIX: [u8; 16] = [
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    let mut der = V1_PREFIX.to_vec();
    der.extend_from_slice(&key.to_bytes());
    zeroize::Zeroizing::new(der)
}

pub fn public_pem(key: &VerifyingKey) -> String {
    key.to_public_key_pem(Default::default())
        .expect("an ed25519 public key always encodes")
}

fn read_pem(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io("read key", path, e))?;
    String::from_utf8(bytes).map_err(|_| key_error(path, "not a PEM text file"))
}

/// What a PEM file holds, by its first label; the key parsers' own errors
/// say little ("unexpected tag") about a file of the wrong kind.
#[derive(PartialEq)]
enum PemKind {
    Private,
    EncryptedPrivate,
    Public,
    Other,
}

fn pem_kind(pem: &str) -> PemKind {
    let label = pem
        .lines()
        .find_map(|l| l.trim().strip_prefix("-----BEGIN "))
        .and_then(|l| l.strip_suffix("-----"));
    match label {
        Some("PRIVATE KEY") => PemKind::Private,
        Some("ENCRYPTED PRIVATE KEY") => PemKind::EncryptedPrivate,
        Some("PUBLIC KEY") => PemKind::Public,
        _ => PemKind::Other,
    }
}

fn key_error(path: &Path, reason: impl Into<String>) -> Error {
    Error::Key {
        path: path.to_path_buf(),
        reason: reason.into(),
        hint: None,
    }
}

fn key_error_hint(path: &Path, reason: &str, hint: &str) -> Error {
    Error::Key {
        path: path.to_path_buf(),
        reason: reason.into(),
        hint: Some(hint.into()),
    }
}

/// Reads an unencrypted private key; an encrypted one is refused, naming
/// the flag that gives its passphrase.
pub fn load_private(path: &Path) -> Result<SigningKey> {
    load_private_with(path, &mut || {
        Err(key_error_hint(
            path,
            "it is encrypted, and no passphrase was given",
            "give its passphrase with --passphrase-file FILE, or type it on a terminal",
        ))
    })
}

/// Reads a private key. An encrypted one (`ENCRYPTED PRIVATE KEY`, PBES2)
/// is decrypted with the passphrase `passphrase` returns; it is asked for
/// only then, so a plain key never prompts.
pub fn load_private_with(
    path: &Path,
    passphrase: &mut dyn FnMut() -> Result<String>,
) -> Result<SigningKey> {
    let pem = read_pem(path)?;
    match pem_kind(&pem) {
        PemKind::EncryptedPrivate => return decrypt_private(path, &pem, &passphrase()?),
        PemKind::Public => {
            return Err(key_error_hint(
                path,
                "this is a public key, not the private key that signs",
                "pass the private key `airlock keygen` wrote (NAME, beside NAME.pub) to --key",
            ))
        }
        PemKind::Private | PemKind::Other => {}
    }
    SigningKey::from_pkcs8_pem(&pem)
        .map_err(|e| key_error(path, format!("not an ed25519 PKCS#8 private key ({e})")))
}

/// Decrypts an `ENCRYPTED PRIVATE KEY` (PBES2: PBKDF2 or scrypt, AES-CBC or
/// AES-GCM), as `openssl pkcs8 -topk8 -v2 aes-256-cbc` or `keygen --encrypt`
/// wrote it. A wrong passphrase mostly shows as CBC padding that does not
/// check out; about one time in 256 the padding checks out by chance, and
/// then what comes out is not DER at all, which is the same wrong passphrase.
fn decrypt_private(path: &Path, pem: &str, passphrase: &str) -> Result<SigningKey> {
    let (label, doc) = pkcs8::Document::from_pem(pem)
        .map_err(|e| key_error(path, format!("not a PEM encrypted private key ({e})")))?;
    debug_assert_eq!(label, "ENCRYPTED PRIVATE KEY");
    let info = pkcs8::EncryptedPrivateKeyInfoRef::try_from(doc.as_bytes())
        .map_err(|e| key_error(path, format!("not a PKCS#8 encrypted private key ({e})")))?;
    let wrong_passphrase = || {
        key_error_hint(
            path,
            "the passphrase does not decrypt it",
            "give the passphrase the key was encrypted with (typed, or --passphrase-file FILE); if it is the right one, the key file is damaged",
        )
    };
    let plain = zeroize::Zeroizing::new(
        info.encryption_algorithm
            .decrypt(passphrase.as_bytes(), info.encrypted_data.as_bytes())
            .map_err(|e| match e {
                pkcs8::pkcs5::Error::DecryptFailed => wrong_passphrase(),
                e => key_error(path, format!("cannot decrypt it ({e})")),
            })?,
    );
    if pkcs8::PrivateKeyInfoRef::try_from(&plain[..]).is_err() {
        return Err(wrong_passphrase());
    }
    SigningKey::from_pkcs8_der(&plain).map_err(|e| {
        key_error(
            path,
            format!("decrypted, but not an ed25519 PKCS#8 private key ({e})"),
        )
    })
}

/// The private key as an `ENCRYPTED PRIVATE KEY` PEM: PBES2 with scrypt
/// (log2 N = 14, r = 8, p = 1: OpenSSL 3's own choice, within its default
/// memory limit) and AES-256-CBC, so `openssl pkey -in KEY` reads it.
pub fn encrypted_private_pem(key: &SigningKey, passphrase: &str) -> Result<String> {
    use pkcs8::pkcs5::{pbes2, scrypt};
    let mut salt = [0u8; 16];
    let mut iv = [0u8; 16];
    getrandom::fill(&mut salt)
        .and_then(|()| getrandom::fill(&mut iv))
        .map_err(|e| Error::Failed(format!("no random source available: {e}")))?;
    let failed = |e: &dyn std::fmt::Display| Error::Failed(format!("cannot encrypt the key: {e}"));
    let cost = scrypt::Params::new(14, 8, 1).map_err(|e| failed(&e))?;
    let params =
        pbes2::Parameters::generate_scrypt_aes256cbc(cost, &salt, iv).map_err(|e| failed(&e))?;
    let plain = private_der(key);
    let info = pkcs8::PrivateKeyInfoRef::try_from(&plain[..]).map_err(|e| failed(&e))?;
    let doc = info
        .encrypt_with_params(params, passphrase.as_bytes())
        .map_err(|e| failed(&e))?;
    doc.to_pem("ENCRYPTED PRIVATE KEY", pkcs8::LineEnding::LF)
        .map(|pem| pem.to_string())
        .map_err(|e| failed(&e))
}

/// The id of the key in a key file, public or private (a private key's is
/// its public key's). An encrypted private key needs its passphrase.
pub fn key_file_id(path: &Path, passphrase: &mut dyn FnMut() -> Result<String>) -> Result<String> {
    let pem = read_pem(path)?;
    if pem_kind(&pem) == PemKind::Public {
        return load_public(path).map(|k| key_id(&k));
    }
    load_private_with(path, passphrase).map(|k| key_id(&k.verifying_key()))
}

/// Reads a trusted public key. A private key is refused: it belongs with
/// the signer, and one found where bundles are checked was copied across
/// the air gap by mistake.
pub fn load_public(path: &Path) -> Result<VerifyingKey> {
    let pem = read_pem(path)?;
    if matches!(pem_kind(&pem), PemKind::Private | PemKind::EncryptedPrivate) {
        return Err(key_error_hint(
            path,
            "this is a private key, not the public key that checks signatures",
            "pass the public key (NAME.pub, written beside NAME by `airlock keygen`) to --pub; \
             the private key stays with the signer",
        ));
    }
    VerifyingKey::from_public_key_pem(&pem)
        .map_err(|e| key_error(path, format!("not an ed25519 public key in PEM ({e})")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_and_verifies() {
        let k = generate().unwrap();
        let env = Envelope::new("t", b"hello", Some(&k));
        assert!(env.verify(&k.verifying_key().into()).is_ok());
    }

    #[test]
    fn detects_altered_payload_wrong_key_and_unsigned() {
        let k = generate().unwrap();
        let other = generate().unwrap();
        let mut env = Envelope::new("t", b"hello", Some(&k));
        assert!(matches!(
            env.verify(&other.verifying_key().into()),
            Err(SigProblem::WrongKey { .. })
        ));
        env.payload = B64.encode(b"jello");
        assert!(matches!(
            env.verify(&k.verifying_key().into()),
            Err(SigProblem::Invalid { .. })
        ));
        let unsigned = Envelope::new("t", b"hello", None);
        assert_eq!(
            unsigned.verify(&k.verifying_key().into()),
            Err(SigProblem::Unsigned)
        );
    }

    #[test]
    fn pae_matches_the_dsse_spec_example() {
        // From the DSSE protocol document.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
    }

    #[test]
    fn any_trusted_key_may_have_signed_and_the_signer_is_known() {
        let (old, new, other) = (
            generate().unwrap(),
            generate().unwrap(),
            generate().unwrap(),
        );
        let env = Envelope::new("t", b"hello", Some(&old));
        let keys = TrustedKeys::new(vec![new.verifying_key(), old.verifying_key()]);
        assert_eq!(env.verify(&keys), Ok(()));
        assert_eq!(keys.signer(), Some(key_id(&old.verifying_key())));
        let wrong = TrustedKeys::new(vec![other.verifying_key(), new.verifying_key()]);
        assert_eq!(
            env.verify(&wrong),
            Err(SigProblem::WrongKey {
                signed_by: vec![key_id(&old.verifying_key())],
                expected: format!(
                    "{} or {}",
                    key_id(&other.verifying_key()),
                    key_id(&new.verifying_key())
                ),
            })
        );
        assert_eq!(wrong.signer(), None);
    }

    #[test]
    fn an_encrypted_key_decrypts_with_its_passphrase_only() {
        let k = generate().unwrap();
        let pem = encrypted_private_pem(&k, "pass").unwrap();
        assert!(pem_kind(&pem) == PemKind::EncryptedPrivate);
        let path = Path::new("k");
        let back = decrypt_private(path, &pem, "pass").unwrap();
        assert_eq!(back.to_bytes(), k.to_bytes());
        match decrypt_private(path, &pem, "wrong") {
            Err(Error::Key { reason, .. }) => {
                assert_eq!(reason, "the passphrase does not decrypt it")
            }
            other => panic!("{other:?}"),
        }
    }

    /// What a wrong passphrase gives when the CBC padding checks out by
    /// chance: bytes that are not DER. Made deterministic by encrypting
    /// such bytes under the passphrase that is then given.
    #[test]
    fn bytes_that_decrypt_to_no_key_are_a_wrong_passphrase() {
        use pkcs8::der::{asn1::OctetString, Encode};
        use pkcs8::pkcs5::pbes2;
        let params =
            pbes2::Parameters::generate_pbkdf2_sha256_aes256cbc(1, &[7; 16], [9; 16]).unwrap();
        let scheme = pkcs8::pkcs5::EncryptionScheme::from(params);
        let garbage = scheme.encrypt("pass", &[0xA5; 48]).unwrap();
        let der = pkcs8::EncryptedPrivateKeyInfoOwned {
            encryption_algorithm: scheme,
            encrypted_data: OctetString::new(garbage).unwrap(),
        }
        .to_der()
        .unwrap();
        let pem =
            pkcs8::der::pem::encode_string("ENCRYPTED PRIVATE KEY", pkcs8::LineEnding::LF, &der)
                .unwrap();
        match decrypt_private(Path::new("k"), &pem, "pass") {
            Err(Error::Key { reason, .. }) => {
                assert_eq!(reason, "the passphrase does not decrypt it")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn pem_round_trip() {
        let k = generate().unwrap();
        let back = SigningKey::from_pkcs8_pem(&private_pem(&k)).unwrap();
        assert_eq!(back.to_bytes(), k.to_bytes());
        let pubk = VerifyingKey::from_public_key_pem(&public_pem(&k.verifying_key())).unwrap();
        assert_eq!(key_id(&pubk), key_id(&k.verifying_key()));
    }
}

//! Bottom layer. The daemon's key and what it seals: credentials the daemon keeps (registry
//! passwords today; secrets, private keys and backend API keys use the same key) are stored
//! only as AES-256-GCM ciphertexts under a key file of the daemon's (`<data_dir>/key`, 0600,
//! made at first start). A copy of the store without the key reveals nothing.
//!
//! Back up the key with the store; without it sealed values cannot be read back. A sealed
//! value reads `sealed:v1:<hex nonce><hex ciphertext and tag>`.

use aes_gcm::aead::{Aead, KeyInit, Nonce};
use aes_gcm::{Aes256Gcm, Key};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

const PREFIX: &str = "sealed:v1:";
const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("cannot read the daemon's key {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create the daemon's key {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the daemon's key {path} is not {KEY_LEN} bytes of hex; restore it from a backup")]
    Malformed { path: PathBuf },
    #[error(
        "the daemon's key {path} can be read by others (mode {mode:o}); run `chmod 600 {path}`"
    )]
    Exposed { path: PathBuf, mode: u32 },
    #[error("no random bytes for a key or nonce: {0}")]
    Random(String),
    #[error("a sealed value is damaged or was sealed with another key")]
    Open,
}

/// The daemon's key.
#[derive(Clone)]
pub struct SealingKey {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealingKey(..)")
    }
}

impl SealingKey {
    /// Reads the key file, or makes it (0600, created exclusively) when there is none.
    pub fn load_or_create(path: &Path) -> Result<SealingKey, SealError> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let mode = std::fs::metadata(path)
                    .map_err(|source| SealError::Read {
                        path: path.into(),
                        source,
                    })?
                    .permissions()
                    .mode()
                    & 0o777;
                if mode & 0o077 != 0 {
                    return Err(SealError::Exposed {
                        path: path.into(),
                        mode,
                    });
                }
                let bytes: [u8; KEY_LEN] = from_hex(text.trim())
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| SealError::Malformed { path: path.into() })?;
                Ok(SealingKey::from_bytes(&bytes))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut bytes = [0u8; KEY_LEN];
                random(&mut bytes)?;
                let create = |source| SealError::Create {
                    path: path.into(),
                    source,
                };
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(create)?;
                file.write_all(format!("{}\n", to_hex(&bytes)).as_bytes())
                    .and_then(|_| file.sync_all())
                    .map_err(create)?;
                Ok(SealingKey::from_bytes(&bytes))
            }
            Err(source) => Err(SealError::Read {
                path: path.into(),
                source,
            }),
        }
    }

    fn from_bytes(bytes: &[u8; KEY_LEN]) -> SealingKey {
        SealingKey {
            cipher: Aes256Gcm::new(&Key::<Aes256Gcm>::from(*bytes)),
        }
    }

    /// Seals a value with a fresh random nonce.
    pub fn seal(&self, plain: &str) -> Result<String, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        random(&mut nonce)?;
        let sealed = self
            .cipher
            .encrypt(&Nonce::<Aes256Gcm>::from(nonce), plain.as_bytes())
            .map_err(|_| SealError::Open)?;
        Ok(format!("{PREFIX}{}{}", to_hex(&nonce), to_hex(&sealed)))
    }

    /// Opens a value [`SealingKey::seal`] made.
    pub fn open(&self, sealed: &str) -> Result<String, SealError> {
        let bytes = sealed
            .strip_prefix(PREFIX)
            .and_then(from_hex)
            .filter(|b| b.len() > NONCE_LEN)
            .ok_or(SealError::Open)?;
        let (nonce, body) = bytes.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| SealError::Open)?;
        let plain = self
            .cipher
            .decrypt(&Nonce::<Aes256Gcm>::from(nonce), body)
            .map_err(|_| SealError::Open)?;
        String::from_utf8(plain).map_err(|_| SealError::Open)
    }
}

/// Whether a stored value is sealed (as opposed to one written before sealing existed).
pub fn is_sealed(value: &str) -> bool {
    value.starts_with(PREFIX)
}

fn random(buf: &mut [u8]) -> Result<(), SealError> {
    getrandom::fill(buf).map_err(|e| SealError::Random(e.to_string()))
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_with_its_key_only_and_hides_the_plain_text() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("key");
        let key = SealingKey::load_or_create(&path).expect("a new key");
        let mode = std::fs::metadata(&path)
            .expect("key file")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        let sealed = key.seal("hunter2-password").expect("sealed");
        assert!(is_sealed(&sealed) && !sealed.contains("hunter2"));
        assert_ne!(
            sealed,
            key.seal("hunter2-password").expect("sealed"),
            "fresh nonces"
        );
        // The same file gives the same key back.
        let again = SealingKey::load_or_create(&path).expect("the same key");
        assert_eq!(again.open(&sealed).expect("opened"), "hunter2-password");
        // Another key, or a damaged value, does not open it.
        let other = SealingKey::load_or_create(&dir.path().join("other")).expect("key");
        assert!(matches!(other.open(&sealed), Err(SealError::Open)));
        let last = if sealed.ends_with('0') { "1" } else { "0" };
        let mut damaged = sealed.clone();
        damaged.replace_range(sealed.len() - 1.., last);
        assert!(matches!(key.open(&damaged), Err(SealError::Open)));
        assert!(matches!(key.open("plain"), Err(SealError::Open)));
    }

    #[test]
    fn a_key_file_others_can_read_or_that_is_damaged_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("key");
        SealingKey::load_or_create(&path).expect("a new key");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let e = SealingKey::load_or_create(&path)
            .expect_err("refused")
            .to_string();
        assert!(e.contains("chmod 600"), "{e}");
        std::fs::write(&path, "zz\n").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let e = SealingKey::load_or_create(&path)
            .expect_err("refused")
            .to_string();
        assert!(e.contains("restore it from a backup"), "{e}");
    }
}

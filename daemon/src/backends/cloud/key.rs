//! The daemon's SSH key for cloud machines: an ed25519 key made at first use under the data
//! dir (`cloud_key`, 0600, OpenSSH format; `cloud_key.pub` beside it). Its public half is
//! registered with each provider; the daemon logs in to the machines it creates with it.

use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::ssh_key::LineEnding;
use russh::keys::PrivateKey;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The key pair: where the private half is, and the public half in OpenSSH format.
#[derive(Debug, Clone, PartialEq)]
pub struct CloudKey {
    pub path: PathBuf,
    pub public: String,
}

impl CloudKey {
    /// Reads `path`, or makes a new key there (created exclusively, 0600) when there is none.
    pub fn load_or_create(path: &Path) -> Result<CloudKey, String> {
        let key = match std::fs::read_to_string(path) {
            Ok(text) => PrivateKey::from_openssh(text.as_bytes()).map_err(|e| {
                format!(
                    "the daemon's cloud SSH key {} is damaged ({e}); move it away to make a new one (machines created with it then need the old key)",
                    path.display()
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(path)?,
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        let public = key
            .public_key()
            .to_openssh()
            .map_err(|e| format!("cannot encode the public key of {}: {e}", path.display()))?;
        let pub_path = path.with_extension("pub");
        if !pub_path.exists() {
            if let Err(e) = std::fs::write(&pub_path, format!("{public}\n")) {
                tracing::warn!("cannot write {}: {e}", pub_path.display());
            }
        }
        Ok(CloudKey {
            path: path.to_path_buf(),
            public,
        })
    }
}

fn create(path: &Path) -> Result<PrivateKey, String> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| format!("no random bytes for an SSH key: {e}"))?;
    let mut key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
    key.set_comment("flotilla");
    let text = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| format!("cannot encode a new SSH key: {e}"))?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot create the cloud SSH key {}: {e}", path.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| format!("cannot write the cloud SSH key {}: {e}", path.display()))?;
    tracing::info!(
        "made the daemon's SSH key for cloud machines: {}",
        path.display()
    );
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_key_is_made_once_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cloud_key");
        let a = CloudKey::load_or_create(&path).unwrap();
        assert!(a.public.starts_with("ssh-ed25519 "));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let b = CloudKey::load_or_create(&path).unwrap();
        assert_eq!(a, b);
        assert!(std::fs::read_to_string(path.with_extension("pub"))
            .unwrap()
            .starts_with("ssh-ed25519 "));
    }
}

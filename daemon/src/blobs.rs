//! Bottom layer. The bytes of uploaded archives, one file per content hash under
//! `<data_dir>/uploads` (0700): written once while they stream in (never whole in memory),
//! checked against their SHA-256, then renamed into place. The store keeps their metadata.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// Why an archive was not stored.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("the connection ended after {got} of the archive's {size} bytes")]
    Short { got: u64, size: u64 },
    #[error("the archive's bytes have SHA-256 {got}, not {expected} as announced")]
    Mismatch { got: String, expected: String },
    #[error("cannot store the archive in {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// Where archives live.
#[derive(Debug, Clone)]
pub struct Blobs {
    dir: PathBuf,
}

static INCOMING: AtomicU64 = AtomicU64::new(0);

/// A SHA-256 as lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `hash` is a SHA-256 in lowercase hex (what names a blob; nothing else may).
pub fn is_hash(hash: &str) -> bool {
    hash.len() == 64
        && hash
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl Blobs {
    /// The archives of the daemon whose data dir is `data_dir`.
    pub fn at(data_dir: &Path) -> Blobs {
        Blobs {
            dir: data_dir.join("uploads"),
        }
    }

    /// The file of archive `hash` (a checked hash: see [`is_hash`]).
    pub fn path(&self, hash: &str) -> PathBuf {
        self.dir.join(format!("{hash}.tar"))
    }

    pub fn exists(&self, hash: &str) -> bool {
        is_hash(hash) && self.path(hash).is_file()
    }

    /// Removes archive `hash` (nothing when it is not there).
    pub fn remove(&self, hash: &str) -> std::io::Result<()> {
        if !is_hash(hash) {
            return Ok(());
        }
        match std::fs::remove_file(self.path(hash)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Removes what uploads cut short left behind (a daemon killed while bytes came in):
    /// incoming files untouched for `older_than`.
    pub fn remove_stale_incoming(&self, older_than: std::time::Duration) -> std::io::Result<()> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            if !entry
                .file_name()
                .to_string_lossy()
                .starts_with(".incoming-")
            {
                continue;
            }
            let stale = entry
                .metadata()?
                .modified()?
                .elapsed()
                .is_ok_and(|age| age >= older_than);
            if stale {
                std::fs::remove_file(entry.path())?;
            }
        }
        Ok(())
    }

    fn io(&self, path: &Path, source: std::io::Error) -> BlobError {
        BlobError::Io {
            path: path.display().to_string(),
            source,
        }
    }

    /// Reads exactly `size` bytes from `reader` into the archive `hash`, checking the hash.
    /// When the archive is already there (another user's upload of the same bytes), the new
    /// copy is dropped: each content is stored once.
    pub async fn receive<R: AsyncRead + Unpin>(
        &self,
        mut reader: R,
        size: u64,
        hash: &str,
    ) -> Result<(), BlobError> {
        create_private_dir(&self.dir).map_err(|e| self.io(&self.dir, e))?;
        let n = INCOMING.fetch_add(1, Ordering::Relaxed);
        let tmp = self
            .dir
            .join(format!(".incoming-{}-{n}", std::process::id()));
        let result = self.write_checked(&mut reader, size, hash, &tmp).await;
        if result.is_err() {
            if let Err(e) = tokio::fs::remove_file(&tmp).await {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!("cannot remove {}: {e}", tmp.display());
                }
            }
        }
        result
    }

    async fn write_checked<R: AsyncRead + Unpin>(
        &self,
        reader: &mut R,
        size: u64,
        hash: &str,
        tmp: &Path,
    ) -> Result<(), BlobError> {
        let mut file = tokio::fs::File::create(tmp)
            .await
            .map_err(|e| self.io(tmp, e))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut got: u64 = 0;
        while got < size {
            let want = usize::try_from((size - got).min(buf.len() as u64)).unwrap_or(buf.len());
            let n = reader
                .read(&mut buf[..want])
                .await
                .map_err(|e| self.io(tmp, e))?;
            if n == 0 {
                return Err(BlobError::Short { got, size });
            }
            hasher.update(&buf[..n]);
            file.write_all(&buf[..n])
                .await
                .map_err(|e| self.io(tmp, e))?;
            got += n as u64;
        }
        let got_hash = hex(&hasher.finalize());
        if got_hash != hash {
            return Err(BlobError::Mismatch {
                got: got_hash,
                expected: hash.to_string(),
            });
        }
        file.sync_all().await.map_err(|e| self.io(tmp, e))?;
        drop(file);
        let path = self.path(hash);
        if path.is_file() {
            tokio::fs::remove_file(tmp)
                .await
                .map_err(|e| self.io(tmp, e))?;
            return Ok(());
        }
        tokio::fs::rename(tmp, &path)
            .await
            .map_err(|e| self.io(&path, e))
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(bytes: &[u8]) -> String {
        hex(&Sha256::digest(bytes))
    }

    #[tokio::test]
    async fn an_archive_is_stored_once_by_its_hash_and_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let blobs = Blobs::at(dir.path());
        let data = b"hello archive".to_vec();
        let hash = sha(&data);
        assert!(is_hash(&hash));
        blobs
            .receive(&data[..], data.len() as u64, &hash)
            .await
            .expect("stored");
        blobs
            .receive(&data[..], data.len() as u64, &hash)
            .await
            .expect("stored again");
        assert_eq!(std::fs::read(blobs.path(&hash)).expect("read"), data);
        let files = std::fs::read_dir(dir.path().join("uploads"))
            .expect("dir")
            .count();
        assert_eq!(files, 1, "one file, no leftovers");

        let wrong = sha(b"other");
        let err = blobs
            .receive(&data[..], data.len() as u64, &wrong)
            .await
            .expect_err("mismatch");
        assert!(matches!(err, BlobError::Mismatch { .. }), "{err}");
        assert!(!blobs.exists(&wrong));
        let err = blobs
            .receive(&data[..4], data.len() as u64, &hash)
            .await
            .expect_err("short");
        assert!(
            err.to_string()
                .contains("after 4 of the archive's 13 bytes"),
            "{err}"
        );
        assert!(!is_hash("../etc/passwd") && !is_hash(&hash.to_uppercase()));
    }
}

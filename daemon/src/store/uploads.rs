//! Bottom layer, store: the uploaded archives the daemon keeps, by content hash. Only their
//! metadata (size, who uploaded them, when); the bytes are files under the data dir
//! ([`crate::blobs`]).

use super::{decode, encode, Result, Store};
use flotilla_protocol::model::Upload;
use flotilla_protocol::Timestamp;

impl Store {
    // ---- uploads ----

    pub fn get_upload(&self, hash: &str) -> Result<Option<Upload>> {
        match self.uploads.get(hash.as_bytes())? {
            Some(v) => Ok(Some(decode("uploads", &v)?)),
            None => Ok(None),
        }
    }

    /// Records that `uid` uploaded the archive `hash` of `size` bytes (stored once, whoever
    /// uploads it again is added to its owners) and returns the record.
    pub fn add_upload_owner(&self, hash: &str, size: u64, uid: u32) -> Result<Upload> {
        let _guard = self.lock();
        self.writing(|| {
            let mut upload = match self.uploads.get(hash.as_bytes())? {
                Some(v) => decode("uploads", &v)?,
                None => Upload {
                    hash: hash.to_string(),
                    size,
                    owners: Vec::new(),
                    created_at: Timestamp::now(),
                },
            };
            if !upload.owners.contains(&uid) {
                upload.owners.push(uid);
            }
            self.uploads.insert(hash.as_bytes(), encode(&upload))?;
            Ok(upload)
        })
    }

    /// Forgets an upload; `false` when there was none.
    pub fn delete_upload(&self, hash: &str) -> Result<bool> {
        let _guard = self.lock();
        self.writing(|| Ok(self.uploads.remove(hash.as_bytes())?.is_some()))
    }

    /// Every upload the store knows.
    pub fn list_uploads(&self) -> Result<Vec<Upload>> {
        self.uploads
            .iter()
            .map(|kv| {
                let (_, v) = kv?;
                decode("uploads", &v)
            })
            .collect()
    }
}

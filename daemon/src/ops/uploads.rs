//! Operations layer: uploaded archives (`file.upload`) and the ones a run names. Each content
//! is stored once, by its SHA-256 ([`crate::blobs`]); the store records who uploaded it, and
//! only they may name it in a run (the same bytes uploaded by two users are one file, two
//! owners).

use super::OpError;
use crate::blobs::{is_hash, BlobError, Blobs};
use crate::caller::Caller;
use crate::handle::Daemon;
use flotilla_protocol::config::RunConfiguration;
use flotilla_protocol::model::{ArchiveField, RunArchive};
use flotilla_protocol::rpc::{FileUploadParams, FileUploadResult};
use tokio::io::AsyncRead;

/// What `file.upload` does next.
pub enum Begin {
    /// The caller uploaded these bytes before: nothing to send.
    Present(FileUploadResult),
    /// Send the bytes (at most `limit`, 0: no limit).
    Send { limit: u64 },
}

/// Human sizes for errors: `2.0 MiB`.
pub fn size_text(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The refusal of an archive over the daemon's limit (the same words the CLI shows).
pub fn too_large(size: u64, limit: u64) -> String {
    format!(
        "the archive is {} ({size} bytes), over this daemon's upload limit of {} ({limit} bytes); \
         leave out large files with .gitignore or .dstackignore, or raise `code_upload_limit` \
         in the daemon's config.yml",
        size_text(size),
        size_text(limit)
    )
}

/// Checks an upload before its bytes come: a valid hash, a size within the limit.
pub fn begin(d: &Daemon, caller: &Caller, p: &FileUploadParams) -> Result<Begin, OpError> {
    if !is_hash(&p.hash) {
        return Err(OpError::Invalid(format!(
            "file.upload: hash {:?} is not a SHA-256 in lowercase hex (64 characters)",
            p.hash
        )));
    }
    let limit = d.config().code_upload_limit;
    if limit > 0 && p.size > limit {
        return Err(OpError::Invalid(format!(
            "file.upload: {}",
            too_large(p.size, limit)
        )));
    }
    let blobs = Blobs::at(&d.config().data_dir);
    if let Some(upload) = d.store().get_upload(&p.hash)? {
        if upload.owners.contains(&caller.uid) && upload.size == p.size && blobs.exists(&p.hash) {
            return Ok(Begin::Present(FileUploadResult {
                hash: p.hash.clone(),
                size: p.size,
                present: true,
            }));
        }
    }
    Ok(Begin::Send { limit })
}

/// Reads the bytes of an upload that [`begin`] accepted, stores them once and records the
/// caller as one of their owners.
pub async fn receive<R: AsyncRead + Unpin>(
    d: &Daemon,
    caller: &Caller,
    p: &FileUploadParams,
    reader: R,
) -> Result<FileUploadResult, OpError> {
    let blobs = Blobs::at(&d.config().data_dir);
    blobs
        .receive(reader, p.size, &p.hash)
        .await
        .map_err(|e| match e {
            BlobError::Io { .. } => OpError::Internal(format!("file.upload: {e}")),
            _ => OpError::Invalid(format!("file.upload: {e}")),
        })?;
    d.store().add_upload_owner(&p.hash, p.size, caller.uid)?;
    d.store().flush().await?;
    Ok(FileUploadResult {
        hash: p.hash.clone(),
        size: p.size,
        present: false,
    })
}

/// The entries of `configuration` that need an uploaded archive: every `files` entry and a
/// `repos` entry with a `local_path`, with what each names locally.
pub fn needed(configuration: &RunConfiguration) -> Vec<(ArchiveField, usize, String)> {
    let common = configuration.common();
    let files = common
        .files
        .iter()
        .enumerate()
        .map(|(i, f)| (ArchiveField::Files, i, f.local_path.clone()));
    let repos = common
        .repos
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.local_path.clone().map(|l| (ArchiveField::Repos, i, l)));
    files.chain(repos).collect()
}

/// The archives of a run being applied: one for each entry that needs one (see [`needed`]),
/// each uploaded by the caller and still stored; sizes filled in.
pub fn for_run(
    d: &Daemon,
    caller: &Caller,
    configuration: &RunConfiguration,
    given: &[RunArchive],
) -> Result<Vec<RunArchive>, OpError> {
    let blobs = Blobs::at(&d.config().data_dir);
    let needed = needed(configuration);
    if let Some(extra) = given.iter().find(|a| {
        !needed
            .iter()
            .any(|(f, i, _)| *f == a.field && *i == a.index)
    }) {
        return Err(OpError::Invalid(format!(
            "archives: {}[{}] names no local `files` or `repos` entry of the configuration",
            extra.field, extra.index
        )));
    }
    let mut out = Vec::new();
    for (field, index, local) in needed {
        let Some(archive) = given.iter().find(|a| a.field == field && a.index == index) else {
            return Err(OpError::Invalid(format!(
                "{field}[{index}] ({local}): no archive was uploaded for it; `flotilla apply` packs \
                 and uploads it (a client of the socket uploads it with `file.upload`, then names \
                 its hash in `archives`)"
            )));
        };
        let owned = match d.store().get_upload(&archive.hash)? {
            Some(u) if u.owners.contains(&caller.uid) => Some(u),
            Some(_) => {
                return Err(OpError::Forbidden(format!(
                    "{field}[{index}] ({local}): archive {} was not uploaded by {}; upload it \
                     yourself with `file.upload` (the same bytes are stored once)",
                    archive.hash, caller.user
                )))
            }
            None => None,
        };
        let Some(upload) = owned.filter(|_| blobs.exists(&archive.hash)) else {
            return Err(OpError::Invalid(format!(
                "{field}[{index}] ({local}): archive {} is not stored here; upload it with \
                 `file.upload` first",
                archive.hash
            )));
        };
        out.push(RunArchive {
            field,
            index,
            hash: archive.hash.clone(),
            size: upload.size,
        });
    }
    Ok(out)
}

/// Removes the archives that no run in the store names and that were uploaded more than
/// `older_than_secs` ago (one uploaded for a run being applied is kept meanwhile); how many.
pub fn collect_unused(d: &Daemon, older_than_secs: u64) -> Result<usize, OpError> {
    let named: std::collections::HashSet<String> = d
        .store()
        .list_runs()?
        .into_iter()
        .flat_map(|r| r.archives.into_iter().map(|a| a.hash))
        .collect();
    let now = flotilla_protocol::Timestamp::now().millis();
    let blobs = Blobs::at(&d.config().data_dir);
    blobs
        .remove_stale_incoming(std::time::Duration::from_secs(24 * 3600))
        .map_err(|e| OpError::Internal(format!("cannot remove an upload cut short: {e}")))?;
    let mut removed = 0;
    for upload in d.store().list_uploads()? {
        let age_secs = now.saturating_sub(upload.created_at.millis()) / 1000;
        if named.contains(&upload.hash) || age_secs < older_than_secs {
            continue;
        }
        if let Err(e) = blobs.remove(&upload.hash) {
            return Err(OpError::Internal(format!(
                "cannot remove the unused archive {}: {e}",
                blobs.path(&upload.hash).display()
            )));
        }
        d.store().delete_upload(&upload.hash)?;
        removed += 1;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(size_text(512), "512 B");
        assert_eq!(size_text(2 * 1024 * 1024), "2.0 MiB");
        let m = too_large(3 * 1024 * 1024, 2 * 1024 * 1024);
        assert!(m.contains("3.0 MiB") && m.contains("2.0 MiB"), "{m}");
        assert!(
            m.contains("code_upload_limit") && m.contains(".dstackignore"),
            "{m}"
        );
    }
}

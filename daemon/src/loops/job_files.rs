//! Driver layer: copies a run's uploaded archives (`files`, local `repos`) from the daemon's
//! data dir into a job's directory on its host, before the job starts: streamed over the
//! daemon's own SSH connection (or to a local process) into the supervisor's `upload` verb,
//! which a root daemon runs as the job's owner. The job's script unpacks them
//! ([`super::launch_files`]).

use super::launch_files::archive_name;
use crate::blobs::Blobs;
use crate::handle::Daemon;
use crate::hosts::Host;
use flotilla_protocol::model::Run;
use std::collections::HashSet;

/// Puts every archive of `run` into `job_dir/uploads` on `host` (each content once).
pub async fn put_archives(d: &Daemon, host: &Host, run: &Run, job_dir: &str) -> Result<(), String> {
    let blobs = Blobs::at(&d.config().data_dir);
    let mut done = HashSet::new();
    for archive in &run.archives {
        if !done.insert(archive.hash.clone()) {
            continue;
        }
        let what = format!("{}[{}]", archive.field, archive.index);
        let path = blobs.path(&archive.hash);
        let mut file = tokio::fs::File::open(&path).await.map_err(|e| {
            format!(
                "{what}: the uploaded archive {} cannot be read ({e}); apply the run again to upload it",
                path.display()
            )
        })?;
        let name = archive_name(archive);
        host.run_reader_for(Some(run.uid), &["upload", job_dir, &name], &mut file)
            .await
            .map_err(|e| format!("{what}: cannot copy it to {}: {e}", host.label()))?;
    }
    Ok(())
}

//! Bottom layer. Per-submission log files in the data dir, and live follow: readers wait on each log's size.
//!
//! A job's bytes are appended to `logs/<submission>.log` by its runner; followers read the
//! file itself from their own offset, so a slow follower never holds up the job or others.

use crate::sync::LockExt;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use tokio::sync::watch;

/// How far a log has been written, and whether anything more will come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogState {
    pub size: u64,
    pub complete: bool,
}

pub struct LogHub {
    dir: PathBuf,
    live: Mutex<HashMap<u64, watch::Sender<LogState>>>,
}

/// The append side of one submission's log.
pub struct LogWriter {
    file: File,
    size: u64,
    tx: watch::Sender<LogState>,
}

impl LogHub {
    pub fn new(dir: &Path) -> std::io::Result<LogHub> {
        std::fs::create_dir_all(dir)?;
        Ok(LogHub {
            dir: dir.to_path_buf(),
            live: Mutex::new(HashMap::new()),
        })
    }

    pub fn path(&self, submission: u64) -> PathBuf {
        self.dir.join(format!("{submission}.log"))
    }

    /// Bytes of the log copied so far (the file's length).
    pub fn size(&self, submission: u64) -> u64 {
        std::fs::metadata(self.path(submission))
            .map(|m| m.len())
            .unwrap_or(0)
    }

    fn channel(&self, submission: u64) -> watch::Sender<LogState> {
        let mut live = self.live.locked();
        live.entry(submission)
            .or_insert_with(|| {
                watch::channel(LogState {
                    size: self.size(submission),
                    complete: false,
                })
                .0
            })
            .clone()
    }

    /// Opens the log for appending; its current length is where the copy resumes.
    pub fn writer(&self, submission: u64) -> std::io::Result<LogWriter> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path(submission))?;
        let size = file.metadata()?.len();
        let tx = self.channel(submission);
        tx.send_replace(LogState {
            size,
            complete: false,
        });
        Ok(LogWriter { file, size, tx })
    }

    /// Watches a log that may still grow.
    pub fn subscribe(&self, submission: u64) -> watch::Receiver<LogState> {
        self.channel(submission).subscribe()
    }

    /// Marks a log as complete (also for a job that never wrote one).
    pub fn complete(&self, submission: u64) {
        let tx = self.channel(submission);
        let size = self.size(submission);
        tx.send_replace(LogState {
            size,
            complete: true,
        });
    }

    /// Up to `limit` bytes from `offset`.
    pub fn read(&self, submission: u64, offset: u64, limit: usize) -> std::io::Result<Vec<u8>> {
        let mut f = match File::open(self.path(submission)) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        f.seek(SeekFrom::Start(offset))?;
        let mut buf = Vec::with_capacity(limit.min(1 << 20));
        f.take(limit as u64).read_to_end(&mut buf)?;
        Ok(buf)
    }

    pub fn remove(&self, submission: u64) {
        let path = self.path(submission);
        if let Err(e) = std::fs::remove_file(&path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!("cannot remove the log {}: {e}", path.display());
            }
        }
        self.live.locked().remove(&submission);
    }
}

impl LogWriter {
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends bytes and wakes followers.
    pub fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.file.write_all(bytes)?;
        self.size += bytes.len() as u64;
        self.tx.send_replace(LogState {
            size: self.size,
            complete: false,
        });
        Ok(())
    }

    pub fn finish(self) {
        self.tx.send_replace(LogState {
            size: self.size,
            complete: true,
        });
    }
}

/// Splits `bytes` at the last complete UTF-8 character so that text chunks stay valid;
/// returns how many bytes to send now (all of them when the tail is not UTF-8 at all).
pub fn utf8_boundary(bytes: &[u8]) -> usize {
    match std::str::from_utf8(bytes) {
        Ok(_) => bytes.len(),
        Err(e) if e.error_len().is_none() && e.valid_up_to() > 0 => e.valid_up_to(),
        Err(_) => bytes.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writer_resumes_at_the_file_length_and_readers_see_every_byte() {
        let dir = tempfile::tempdir().expect("tempdir");
        let hub = LogHub::new(dir.path()).expect("hub");
        let mut w = hub.writer(7).expect("writer");
        w.append(b"hello ").expect("append");
        drop(w);
        let mut w = hub.writer(7).expect("writer");
        assert_eq!(w.size(), 6);
        w.append(b"world").expect("append");
        let rx = hub.subscribe(7);
        assert_eq!(rx.borrow().size, 11);
        w.finish();
        assert!(rx.borrow().complete);
        assert_eq!(hub.read(7, 0, 100).expect("read"), b"hello world");
        assert_eq!(hub.read(7, 6, 3).expect("read"), b"wor");
        assert_eq!(hub.read(8, 0, 100).expect("read"), b"");
    }

    #[test]
    fn utf8_boundary_holds_back_a_split_character() {
        let s = "héllo".as_bytes();
        assert_eq!(utf8_boundary(&s[..2]), 1);
        assert_eq!(utf8_boundary(s), s.len());
        assert_eq!(utf8_boundary(&[0xff, 0xfe]), 2);
    }
}

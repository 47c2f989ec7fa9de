//! A run's `files` and local `repos`: packed here as dstack packs them (`archive.rs`: tar,
//! `.gitignore` and `.dstackignore` honoured, `.git` left out) and sent to the daemon with
//! `file.upload` (`send.rs`), before `run.apply` names them by hash. Relative local paths are
//! relative to the configuration file's directory, `~` is the home of the user who applies.

mod archive;
mod send;

use anyhow::{anyhow, bail, Context};
use flotilla_protocol::config::RunConfiguration;
use flotilla_protocol::model::{ArchiveField, RunArchive};
use std::fs::File;
use std::path::{Path, PathBuf};

pub use send::upload_all;

/// One packed archive, ready to send.
pub struct Packed {
    pub field: ArchiveField,
    pub index: usize,
    /// The local path as written in the file.
    pub local: String,
    /// The archive (a temporary file, gone when dropped).
    pub file: File,
    pub size: u64,
    pub hash: String,
}

impl Packed {
    /// `files[0] (data)`: how errors name it.
    pub fn label(&self) -> String {
        format!("{}[{}] ({})", self.field, self.index, self.local)
    }

    pub fn archive(&self) -> RunArchive {
        RunArchive {
            field: self.field,
            index: self.index,
            hash: self.hash.clone(),
            size: self.size,
        }
    }
}

/// Packs every `files` entry and local `repos` entry of `config`, whose file is `config_path`.
pub fn pack_run(config: &RunConfiguration, config_path: &Path) -> anyhow::Result<Vec<Packed>> {
    let common = config.common();
    if common.files.is_empty() && common.repos.iter().all(|r| r.local_path.is_none()) {
        return Ok(Vec::new());
    }
    let base = config_path
        .parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        })
        .unwrap_or(Path::new("."));
    let base = base
        .canonicalize()
        .with_context(|| format!("cannot resolve the directory of {}", config_path.display()))?;
    let mut out = Vec::new();
    for (index, repo) in common.repos.iter().enumerate() {
        let Some(local) = &repo.local_path else {
            continue;
        };
        let label = format!("repos[{index}] ({local})");
        let dir = resolve(&base, local).map_err(|e| anyhow!("{label}: {e}"))?;
        if !dir.is_dir() {
            bail!("{label}: {} is not a directory", dir.display());
        }
        if !dir.join(".git").exists() {
            bail!(
                "{label}: Git repo not found: {}; use `files` to mount a directory that is not a Git repo",
                dir.display()
            );
        }
        let (file, size, hash) = archive::pack(&dir, archive::Layout::Contents)
            .with_context(|| format!("{label}: cannot pack {}", dir.display()))?;
        out.push(Packed {
            field: ArchiveField::Repos,
            index,
            local: local.clone(),
            file,
            size,
            hash,
        });
    }
    for (index, mapping) in common.files.iter().enumerate() {
        let local = &mapping.local_path;
        let label = format!("files[{index}] ({local})");
        let path = resolve(&base, local).map_err(|e| anyhow!("{label}: {e}"))?;
        if std::fs::symlink_metadata(&path).is_err() {
            bail!("{label}: {} does not exist", path.display());
        }
        let (file, size, hash) = archive::pack(&path, archive::Layout::Root)
            .with_context(|| format!("{label}: cannot pack {}", path.display()))?;
        out.push(Packed {
            field: ArchiveField::Files,
            index,
            local: local.clone(),
            file,
            size,
            hash,
        });
    }
    Ok(out)
}

/// A local path as dstack reads it: `~` and `~/x` in the home, relative to `base`.
fn resolve(base: &Path, local: &str) -> Result<PathBuf, String> {
    let home = || {
        std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from)
            .ok_or_else(|| "`~` needs HOME to be set".to_string())
    };
    let path = if local == "~" {
        home()?
    } else if let Some(rest) = local.strip_prefix("~/") {
        home()?.join(rest)
    } else if local.starts_with('~') {
        return Err("`~user` paths are not supported; write `~/...` or a path".into());
    } else {
        base.join(local)
    };
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_paths_are_relative_to_the_file_or_in_the_home() {
        let base = Path::new("/conf");
        assert_eq!(resolve(base, "data"), Ok(PathBuf::from("/conf/data")));
        assert_eq!(resolve(base, "/abs/x"), Ok(PathBuf::from("/abs/x")));
        assert_eq!(resolve(base, "../up"), Ok(PathBuf::from("/conf/../up")));
        assert!(resolve(base, "~bob/x").is_err());
    }
}

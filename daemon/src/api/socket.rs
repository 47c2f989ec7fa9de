//! Driver layer: the Unix socket, created 0600 (0660 for a socket group; mode and group set
//! between bind and listen), stale sockets replaced, a live daemon never displaced. A directory
//! the daemon creates for it is 0700 (0750 for the group); an existing one is left as it is.

use super::access::SocketGroup;
use interprocess::local_socket::{GenericFilePath, ListenerOptions, ToFsName};
use interprocess::os::unix::local_socket::ListenerOptionsExt;
pub use interprocess::os::unix::uds_local_socket::tokio::Listener;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("another flotillad is already serving {0}; stop it first (`flotilla daemon stop`) or use another --socket")]
    InUse(String),
    #[error("socket path {path} is too long ({len} bytes, at most 107); use a shorter --socket")]
    TooLong { path: String, len: usize },
    #[error("cannot create the socket directory {path}: {source}")]
    Dir {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot {what} the socket {path}: {source}")]
    Sys {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
}

/// Binds the daemon's socket and starts listening (within the tokio runtime).
pub fn bind(path: &Path, group: Option<&SocketGroup>) -> Result<Listener, BindError> {
    let shown = path.display().to_string();
    let bytes = path.as_os_str().as_bytes();
    if bytes.len() > 107 {
        return Err(BindError::TooLong {
            path: shown,
            len: bytes.len(),
        });
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let dir_err = |source| BindError::Dir {
            path: dir.display().to_string(),
            source,
        };
        if !dir.exists() {
            let mode = if group.is_some() { 0o750 } else { 0o700 };
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(mode)
                .create(dir)
                .map_err(dir_err)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
                .map_err(dir_err)?;
            if let Some(g) = group {
                std::os::unix::fs::chown(dir, None, Some(g.gid)).map_err(dir_err)?;
            }
        }
    }
    if path.exists() {
        // A socket that answers belongs to a live daemon; one that refuses is stale.
        match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => return Err(BindError::InUse(shown)),
            Err(_) => {
                if let Err(source) = std::fs::remove_file(path) {
                    return Err(BindError::Sys {
                        what: "remove",
                        path: shown,
                        source,
                    });
                }
            }
        }
    }
    let sys = |what: &'static str| {
        let shown = shown.clone();
        move |source| BindError::Sys {
            what,
            path: shown,
            source,
        }
    };
    // interprocess sets the mode with fchmod before bind and listen: no moment where the
    // socket is open to others.
    let name = path.to_fs_name::<GenericFilePath>().map_err(sys("name"))?;
    let listener = ListenerOptions::new()
        .name(name)
        .mode(0o600)
        .reclaim_name(false)
        .create_tokio_as::<Listener>()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AddrInUse {
                BindError::InUse(shown.clone())
            } else {
                sys("bind")(e)
            }
        })?;
    if let Some(g) = group {
        // The group first, then its access: until then only the daemon's user may connect.
        std::os::unix::fs::chown(path, None, Some(g.gid))
            .map_err(sys("give the socket group to"))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
            .map_err(sys("chmod"))?;
    }
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
    }

    #[tokio::test]
    async fn a_directory_it_creates_is_private_and_an_existing_one_keeps_its_mode() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let made = tmp.path().join("made").join("s");
        let _l = bind(&made, None).expect("bind");
        assert_eq!(mode(&made), 0o600);
        assert_eq!(mode(made.parent().expect("dir")), 0o700);

        let shared = tmp.path().join("shared");
        std::fs::create_dir(&shared).expect("dir");
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let sock = shared.join("s");
        let _l2 = bind(&sock, None).expect("bind");
        assert_eq!(mode(&shared), 0o755);
        assert_eq!(mode(&sock), 0o600);
    }

    #[tokio::test]
    async fn a_socket_group_gets_the_socket_and_the_directory_it_creates() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("run").join("s");
        let group = SocketGroup::lookup("root").expect("group root");
        let _l = bind(&path, Some(&group)).expect("bind");
        assert_eq!(mode(&path), 0o660);
        assert_eq!(std::fs::metadata(&path).expect("socket").gid(), group.gid);
        let dir = path.parent().expect("dir");
        assert_eq!(mode(dir), 0o750);
        assert_eq!(std::fs::metadata(dir).expect("dir").gid(), group.gid);
    }

    #[tokio::test]
    async fn a_live_socket_is_refused_and_a_stale_one_replaced() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("s");
        let live = bind(&path, None).expect("bind");
        assert!(matches!(bind(&path, None), Err(BindError::InUse(_))));
        drop(live);
        // The file stays behind (the daemon removes it at shutdown): stale, so replaced.
        assert!(path.exists());
        let _again = bind(&path, None).expect("a stale socket is replaced");
    }
}

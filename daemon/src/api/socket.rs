//! Driver layer: the Unix socket, created 0600 (0660 for a socket group; mode and group set
//! between bind and listen), stale sockets replaced, a live daemon never displaced. A directory
//! the daemon creates for it is 0700 (0750 for the group); an existing one is left as it is.

use super::access::SocketGroup;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::io::FromRawFd;
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

/// Binds the daemon's socket and starts listening.
pub fn bind(
    path: &Path,
    group: Option<&SocketGroup>,
) -> Result<std::os::unix::net::UnixListener, BindError> {
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
                let _ = std::fs::remove_file(path);
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
    // SAFETY: plain socket syscalls on a fresh descriptor that we own and close on error.
    unsafe {
        let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(sys("create")(std::io::Error::last_os_error()));
        }
        let mut addr: libc::sockaddr_un = std::mem::zeroed();
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (i, b) in bytes.iter().enumerate() {
            addr.sun_path[i] = *b as libc::c_char;
        }
        let len = (std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1) as libc::socklen_t;
        let fail = |what: &'static str| {
            let e = std::io::Error::last_os_error();
            libc::close(fd);
            sys(what)(e)
        };
        if libc::bind(fd, &addr as *const _ as *const libc::sockaddr, len) != 0 {
            let e = std::io::Error::last_os_error();
            libc::close(fd);
            if e.kind() == std::io::ErrorKind::AddrInUse {
                return Err(BindError::InUse(shown));
            }
            return Err(sys("bind")(e));
        }
        let mut cpath = bytes.to_vec();
        cpath.push(0);
        if libc::chmod(cpath.as_ptr() as *const libc::c_char, 0o600) != 0 {
            return Err(fail("chmod"));
        }
        if let Some(g) = group {
            // The group first, then its access: no moment where another group could connect.
            if libc::chown(cpath.as_ptr() as *const libc::c_char, u32::MAX, g.gid) != 0 {
                return Err(fail("give the socket group to"));
            }
            if libc::chmod(cpath.as_ptr() as *const libc::c_char, 0o660) != 0 {
                return Err(fail("chmod"));
            }
        }
        if libc::listen(fd, 128) != 0 {
            return Err(fail("listen on"));
        }
        let listener = std::os::unix::net::UnixListener::from_raw_fd(fd);
        listener.set_nonblocking(true).map_err(sys("configure"))?;
        Ok(listener)
    }
}

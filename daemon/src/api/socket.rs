//! Driver layer: the Unix socket, created 0600 inside a 0700 directory (mode set between bind and listen), stale sockets replaced, a live daemon never displaced.

use std::os::unix::ffi::OsStrExt;
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

/// Binds the daemon's socket and starts listening: 0600, or 0660 with `group` as its group
/// (then a directory that already exists keeps its mode, so that the group can reach it).
pub fn bind(
    path: &Path,
    group: Option<&str>,
) -> Result<std::os::unix::net::UnixListener, BindError> {
    let gid = match group {
        Some(g) => Some(group_id(g).ok_or_else(|| BindError::Sys {
            what: "give a group to",
            path: path.display().to_string(),
            source: std::io::Error::other(format!("socket_group {g}: no such group")),
        })?),
        None => None,
    };
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
        let existed = dir.exists();
        std::fs::create_dir_all(dir).map_err(dir_err)?;
        let mode = if gid.is_some() { 0o755 } else { 0o700 };
        if !(existed && gid.is_some()) {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
                .map_err(dir_err)?;
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
        if let Some(gid) = gid {
            if libc::chown(cpath.as_ptr() as *const libc::c_char, u32::MAX, gid) != 0 {
                return Err(fail("chgrp"));
            }
        }
        let mode = if gid.is_some() { 0o660 } else { 0o600 };
        if libc::chmod(cpath.as_ptr() as *const libc::c_char, mode) != 0 {
            return Err(fail("chmod"));
        }
        if libc::listen(fd, 128) != 0 {
            return Err(fail("listen on"));
        }
        let listener = std::os::unix::net::UnixListener::from_raw_fd(fd);
        listener.set_nonblocking(true).map_err(sys("configure"))?;
        Ok(listener)
    }
}

/// The gid of group `name`.
fn group_id(name: &str) -> Option<libc::gid_t> {
    let cname = std::ffi::CString::new(name).ok()?;
    // SAFETY: getgrnam_r writes into buffers we own, sized as the manual asks.
    unsafe {
        let mut grp: libc::group = std::mem::zeroed();
        let mut buf = vec![0 as libc::c_char; 16384];
        let mut result: *mut libc::group = std::ptr::null_mut();
        let rc = libc::getgrnam_r(
            cname.as_ptr(),
            &mut grp,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        );
        (rc == 0 && !result.is_null()).then_some(grp.gr_gid)
    }
}

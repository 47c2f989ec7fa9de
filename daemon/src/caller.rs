//! Handle layer: who is calling, from the socket's peer credentials, and the user names of uids.

/// Who is calling, from the socket's peer credentials.
#[derive(Debug, Clone)]
pub struct Caller {
    pub uid: u32,
    pub user: String,
    /// root and the daemon's own user.
    pub admin: bool,
}

impl Caller {
    /// The caller with this uid: its user name, and whether it is an admin.
    pub fn from_uid(uid: u32) -> Caller {
        Caller {
            uid,
            user: user_name(uid),
            admin: uid == 0 || uid == own_uid(),
        }
    }
}

/// The uid the daemon runs as.
pub fn own_uid() -> u32 {
    // SAFETY: getuid has no preconditions.
    unsafe { libc::getuid() }
}

/// The user name of a uid (`uid-N` when it has none).
pub fn user_name(uid: u32) -> String {
    // SAFETY: getpwuid_r writes into buffers we own, sized as the manual asks.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut buf = vec![0 as libc::c_char; 4096];
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result);
        if rc == 0 && !result.is_null() && !pwd.pw_name.is_null() {
            let name = std::ffi::CStr::from_ptr(pwd.pw_name);
            return name.to_string_lossy().into_owned();
        }
    }
    format!("uid-{uid}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_daemons_own_user_is_an_admin() {
        let me = Caller::from_uid(own_uid());
        assert!(me.admin);
        assert!(!me.user.is_empty());
        let root = Caller::from_uid(0);
        assert!(root.admin);
        assert_eq!(root.user, "root");
    }
}

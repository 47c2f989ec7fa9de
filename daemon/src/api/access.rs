//! Driver layer: who may use the socket. Root, the daemon's own user and, with a socket group
//! (`--socket-group`, config `socket_group`), that group's members; every connection's peer is
//! checked against it, beside the socket file's own mode.

use crate::caller::own_uid;
use std::ffi::CString;

/// The socket's group: its name and gid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketGroup {
    pub name: String,
    pub gid: u32,
}

impl SocketGroup {
    /// Looks the group up by name.
    pub fn lookup(name: &str) -> Result<SocketGroup, String> {
        let c = CString::new(name).map_err(|_| format!("socket group `{name}`: not a name"))?;
        // SAFETY: getgrnam_r writes into buffers we own, grown while it answers ERANGE.
        unsafe {
            let mut size = 4096usize;
            loop {
                let mut grp: libc::group = std::mem::zeroed();
                let mut buf = vec![0 as libc::c_char; size];
                let mut result: *mut libc::group = std::ptr::null_mut();
                let rc =
                    libc::getgrnam_r(c.as_ptr(), &mut grp, buf.as_mut_ptr(), size, &mut result);
                if rc == libc::ERANGE && size < 1 << 20 {
                    size *= 4;
                    continue;
                }
                if rc != 0 {
                    return Err(format!(
                        "socket group `{name}`: {}",
                        std::io::Error::from_raw_os_error(rc)
                    ));
                }
                if result.is_null() {
                    return Err(format!(
                        "socket group `{name}` does not exist; create it (groupadd {name}) or drop --socket-group"
                    ));
                }
                return Ok(SocketGroup {
                    name: name.to_string(),
                    gid: grp.gr_gid,
                });
            }
        }
    }
}

/// Who may connect.
#[derive(Debug, Clone)]
pub struct Access {
    own_uid: u32,
    group: Option<SocketGroup>,
}

impl Access {
    pub fn new(group: Option<SocketGroup>) -> Access {
        Access {
            own_uid: own_uid(),
            group,
        }
    }

    /// Whether the peer with this uid and gid may use the daemon.
    pub fn allows(&self, uid: u32, gid: Option<u32>) -> bool {
        if uid == 0 || uid == self.own_uid {
            return true;
        }
        match &self.group {
            Some(g) => gid == Some(g.gid) || groups_of(uid).contains(&g.gid),
            None => false,
        }
    }

    /// What a refused peer is told: how access is granted.
    pub fn refusal(&self, uid: u32) -> String {
        match &self.group {
            Some(g) => format!(
                "permission denied: uid {uid} is not in the daemon's socket group `{}`; ask an admin to add you to it (flotillad --socket-group GROUP, config socket_group)",
                g.name
            ),
            None => format!(
                "permission denied: only root and the daemon's own user may connect, not uid {uid}; ask an admin to add you to the daemon's socket group (flotillad --socket-group GROUP, config socket_group)"
            ),
        }
    }
}

/// Every group of a uid's user (primary and supplementary); empty when the uid has no user.
fn groups_of(uid: u32) -> Vec<u32> {
    // SAFETY: getpwuid_r and getgrouplist write into buffers we own, sized as they ask.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut buf = vec![0 as libc::c_char; 16 * 1024];
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result);
        if rc != 0 || result.is_null() || pwd.pw_name.is_null() {
            return Vec::new();
        }
        let mut n: libc::c_int = 64;
        loop {
            let mut groups = vec![0 as libc::gid_t; n as usize];
            let before = n;
            let rc = libc::getgrouplist(pwd.pw_name, pwd.pw_gid, groups.as_mut_ptr(), &mut n);
            if rc >= 0 {
                groups.truncate(n.max(0) as usize);
                return groups;
            }
            if n <= before {
                n = before * 2;
            }
            if n > 1 << 16 {
                return vec![pwd.pw_gid];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_the_daemons_user_are_allowed_and_others_are_told_how_to_get_in() {
        let a = Access::new(None);
        assert!(a.allows(0, None));
        assert!(a.allows(own_uid(), None));
        let stranger = 4_000_123;
        assert!(!a.allows(stranger, Some(4_000_123)));
        assert!(a.refusal(stranger).contains("--socket-group"));
    }

    #[test]
    fn a_member_of_the_socket_group_by_its_peer_gid_is_allowed() {
        let root_group = SocketGroup::lookup("root").expect("group root");
        assert_eq!(root_group.gid, 0);
        let a = Access::new(Some(root_group));
        assert!(a.allows(4_000_123, Some(0)));
        assert!(!a.allows(4_000_123, Some(4_000_123)));
        assert!(a.refusal(4_000_123).contains("`root`"));
    }

    #[test]
    fn an_unknown_group_is_named_in_its_error() {
        let e = SocketGroup::lookup("no-such-flotilla-group").expect_err("unknown");
        assert!(e.contains("no-such-flotilla-group"), "{e}");
    }
}

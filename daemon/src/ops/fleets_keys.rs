//! Operations layer: a fleet's key files. `identity_file` is read as the caller: a caller who
//! is not an admin sends each key's content (the CLI reads it as them), and the daemon takes a
//! path only when what it reads there is that content.

use super::OpError;
use crate::caller::Caller;
use flotilla_protocol::model::SshEndpoint;

/// A fleet's key files are the caller's to name: for a caller who is not an admin, every
/// `identity_file` must come with its content as the caller's CLI read it, and that content
/// must be what the daemon reads at that path; so no one makes the daemon log in with a key
/// they cannot read themselves.
pub fn check_identity_files(
    caller: &Caller,
    eps: &[SshEndpoint],
    sent: &std::collections::BTreeMap<String, String>,
) -> Result<(), OpError> {
    if caller.admin {
        return Ok(());
    }
    let paths = eps.iter().flat_map(|ep| {
        [
            ep.identity_file.as_deref(),
            ep.proxy_jump
                .as_ref()
                .and_then(|j| j.identity_file.as_deref()),
        ]
    });
    for path in paths.flatten() {
        let Some(content) = sent.get(path) else {
            return Err(OpError::Forbidden(format!(
                "identity_file {path}: its content did not come with the fleet; apply the fleet with a `flotilla` of this version, which reads the file as you"
            )));
        };
        let on_disk = std::fs::read(expand_home(path)).ok();
        if on_disk.as_deref() != Some(content.as_bytes()) {
            return Err(OpError::Forbidden(format!(
                "identity_file {path}: the daemon cannot use it for you: the file it reads at that path is not the one you sent (write the full path of a key you own)"
            )));
        }
    }
    Ok(())
}

/// `~/...` under the daemon's `HOME`, as the SSH connection reads the path.
fn expand_home(path: &str) -> std::path::PathBuf {
    match path.strip_prefix("~/") {
        Some(rest) => flotilla_protocol::paths::home_dir().join(rest),
        None => std::path::PathBuf::from(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(identity: &str) -> SshEndpoint {
        SshEndpoint {
            hostname: "10.0.0.1".into(),
            port: 22,
            user: "root".into(),
            identity_file: Some(identity.into()),
            proxy_jump: None,
            internal_ip: None,
        }
    }

    #[test]
    fn a_key_path_needs_the_callers_copy_of_that_very_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = dir.path().join("key");
        std::fs::write(&key, "PRIVATE").expect("key");
        let path = key.to_str().expect("utf-8").to_string();
        let user = Caller {
            uid: 4242,
            user: "alice".into(),
            admin: false,
        };
        let eps = [ep(&path)];
        let none = Default::default();
        assert!(matches!(
            check_identity_files(&user, &eps, &none),
            Err(OpError::Forbidden(m)) if m.contains(&path)
        ));
        let wrong = [(path.clone(), "OTHER".to_string())].into();
        assert!(check_identity_files(&user, &eps, &wrong).is_err());
        let right = [(path.clone(), "PRIVATE".to_string())].into();
        assert!(check_identity_files(&user, &eps, &right).is_ok());
        let admin = Caller {
            uid: 0,
            user: "root".into(),
            admin: true,
        };
        assert!(check_identity_files(&admin, &eps, &none).is_ok());
    }
}

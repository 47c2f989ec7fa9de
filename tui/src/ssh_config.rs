//! `ssh RUN`: the Host entries of runs in a file flotilla owns, `~/.flotilla/ssh/config`, and
//! one `Include` line for it in `~/.ssh/config`. Each entry goes through the daemon's SSH
//! gateway (`flotilla gateway` as its ProxyCommand, over the socket) with the user's own key,
//! and pins the gateway's host key.

use anyhow::{anyhow, Context};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// What an entry needs.
pub struct Entry<'a> {
    pub run: &'a str,
    /// Jobs of replica 0: one Host per job (`RUN`, then `RUN-1`, ... for a multi-node run).
    pub jobs: u32,
    pub user: &'a str,
    pub uid: u32,
    pub private_key: &'a str,
    pub gateway_host_key: &'a str,
    pub socket: &'a Path,
}

fn home() -> anyhow::Result<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .ok_or_else(|| anyhow!("HOME is not set: cannot write the SSH configuration"))
}

fn private_dir(path: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(path).with_context(|| format!("cannot create {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot make {} private", path.display()))
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot make {} private", path.display()))
}

/// The alias the gateway's key is pinned under (one per daemon socket).
fn alias(socket: &Path) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in socket.as_os_str().as_encoded_bytes() {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("flotilla-gateway-{h:08x}")
}

/// The options that take `ssh` into one job through the daemon's gateway (`-o` values, as
/// `Key Value`): the ProxyCommand over the socket, the user's own key, the pinned host key.
pub fn gateway_options(
    e: &Entry<'_>,
    dir: &Path,
    exe: &Path,
    replica: u32,
    job: u32,
) -> Vec<(&'static str, String)> {
    vec![
        ("User", e.user.to_string()),
        (
            "ProxyCommand",
            format!(
                "{} --socket {} gateway {} --replica {replica} --job {job}",
                exe.display(),
                e.socket.display(),
                e.run
            ),
        ),
        (
            "IdentityFile",
            dir.join(format!("id_{}", e.uid)).display().to_string(),
        ),
        ("IdentitiesOnly", "yes".into()),
        ("HostKeyAlias", alias(e.socket)),
        (
            "UserKnownHostsFile",
            dir.join("known_hosts").display().to_string(),
        ),
        ("StrictHostKeyChecking", "yes".into()),
    ]
}

/// The Host blocks of one run, between markers that a rewrite finds again.
pub fn run_block(e: &Entry<'_>, dir: &Path, exe: &Path) -> String {
    let mut s = format!("# >>> flotilla run {}\n", e.run);
    for job in 0..e.jobs.max(1) {
        let host = if job == 0 {
            e.run.to_string()
        } else {
            format!("{}-{job}", e.run)
        };
        s.push_str(&format!("Host {host}\n    HostName {host}\n"));
        for (k, v) in gateway_options(e, dir, exe, 0, job) {
            s.push_str(&format!("    {k} {v}\n"));
        }
    }
    s.push_str(&format!("# <<< flotilla run {}\n", e.run));
    s
}

/// `text` with the block of `run` replaced by `block` (or added).
pub fn replace_block(text: &str, run: &str, block: &str) -> String {
    let start = format!("# >>> flotilla run {run}\n");
    let end = format!("# <<< flotilla run {run}\n");
    match (text.find(&start), text.find(&end)) {
        (Some(a), Some(b)) if b > a => format!("{}{block}{}", &text[..a], &text[b + end.len()..]),
        _ => format!("{text}{block}"),
    }
}

/// Writes the user's key and the gateway's pinned host key under `~/.flotilla/ssh`; returns
/// that directory.
pub fn write_identity(e: &Entry<'_>) -> anyhow::Result<PathBuf> {
    let dir = home()?.join(".flotilla").join("ssh");
    private_dir(&dir)?;
    write_private(&dir.join(format!("id_{}", e.uid)), e.private_key)?;
    write_private(
        &dir.join("known_hosts"),
        &format!("{} {}\n", alias(e.socket), e.gateway_host_key.trim()),
    )?;
    Ok(dir)
}

/// Writes the run's entries (and the key and pinned host key they use); with `include`, adds
/// the `Include` line to `~/.ssh/config` the first time. Returns a line to tell the user, if any.
pub fn write(e: &Entry<'_>, include: bool) -> anyhow::Result<Option<String>> {
    let home = home()?;
    let dir = write_identity(e)?;
    let exe = std::env::current_exe().context("cannot find the flotilla binary")?;
    let config = dir.join("config");
    let old = match std::fs::read_to_string(&config) {
        Ok(t) => t,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(err) => return Err(anyhow!("cannot read {}: {err}", config.display())),
    };
    write_private(
        &config,
        &replace_block(&old, e.run, &run_block(e, &dir, &exe)),
    )?;
    if !include {
        return Ok(None);
    }
    let ssh_dir = home.join(".ssh");
    let user_config = ssh_dir.join("config");
    let line = format!("Include {}\n", config.display());
    let current = match std::fs::read_to_string(&user_config) {
        Ok(t) => t,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(err) => return Err(anyhow!("cannot read {}: {err}", user_config.display())),
    };
    if current.lines().any(|l| l.trim() == line.trim()) {
        return Ok(None);
    }
    private_dir(&ssh_dir)?;
    // At the top: an Include after a Host block would apply to that block only.
    write_private(&user_config, &format!("{line}{current}"))?;
    Ok(Some(format!(
        "Added `{}` to {} (once; `attach --no-ssh-config` skips it)",
        line.trim(),
        user_config.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_runs_block_is_replaced_in_place_and_others_are_kept() {
        let e = Entry {
            run: "train",
            jobs: 2,
            user: "alice",
            uid: 1000,
            private_key: "",
            gateway_host_key: "",
            socket: Path::new("/run/f.sock"),
        };
        let block = run_block(
            &e,
            Path::new("/h/.flotilla/ssh"),
            Path::new("/bin/flotilla"),
        );
        assert!(block.contains("Host train\n"));
        assert!(block.contains("Host train-1\n"));
        assert!(block.contains(
            "ProxyCommand /bin/flotilla --socket /run/f.sock gateway train --replica 0 --job 1\n"
        ));
        let text = "# >>> flotilla run other\nHost other\n# <<< flotilla run other\n";
        let once = replace_block(text, "train", &block);
        let twice = replace_block(&once, "train", &block);
        assert_eq!(once, twice);
        assert!(twice.starts_with(text));
    }
}

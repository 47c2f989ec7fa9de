//! Where flotilla keeps its state and its socket by default (XDG base directories).

use std::path::PathBuf;

/// `$XDG_STATE_HOME/flotilla`, else `~/.local/state/flotilla`.
pub fn default_state_dir() -> PathBuf {
    if let Some(d) = non_empty_env("XDG_STATE_HOME") {
        return PathBuf::from(d).join("flotilla");
    }
    home_dir().join(".local/state/flotilla")
}

/// `$FLOTILLA_SOCKET`, else `$XDG_RUNTIME_DIR/flotilla/flotilla.sock`, else `<state dir>/flotilla.sock`.
pub fn default_socket_path() -> PathBuf {
    if let Some(s) = non_empty_env("FLOTILLA_SOCKET") {
        return PathBuf::from(s);
    }
    if let Some(d) = non_empty_env("XDG_RUNTIME_DIR") {
        return PathBuf::from(d).join("flotilla/flotilla.sock");
    }
    default_state_dir().join("flotilla.sock")
}

pub fn home_dir() -> PathBuf {
    non_empty_env("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"))
}

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

//! Driver layer, pure: the start of a job's script that puts its `files` and `repos` in place
//! before the commands, as dstack's runner does, run by the job's own shell as the job's user
//! (so what it writes belongs to them), in the job's working directory.
//!
//! - A `repos` entry with `local_path` arrives as an archive of the repo's files, unpacked into
//!   its `path` (default: the working directory); a directory that is not empty fails the job,
//!   or is kept as it is with `if_exists: skip` (dstack's rule). A `url` is cloned there with
//!   `git` (`branch`, `hash`, `single_branch`), with the job user's own git credentials.
//! - Each `files` entry arrives as an archive whose single top entry `root` is the file or
//!   directory; it replaces what is at its `path` (dstack's rule), except the working directory
//!   itself or `/`, into which it is merged.
//!
//! Paths: `~` and `~/x` are in the job user's home, a relative path is in the working
//! directory, `~user` is refused (dstack's runner refuses it too).

use crate::hosts::sh_quote;
use flotilla_protocol::config::{RepoExistsAction, RunConfiguration};
use flotilla_protocol::model::{ArchiveField, RunArchive};

/// Where a host job finds its archives: the job directory's `uploads`.
pub fn host_uploads_dir(job_dir: &str) -> String {
    format!("{job_dir}/uploads")
}

/// Where a container job finds them (its job directory's `uploads`, mounted read-only).
pub const CONTAINER_UPLOADS_DIR: &str = "/.flotilla/uploads";

/// The file name of an archive in the job's `uploads` directory.
pub fn archive_name(archive: &RunArchive) -> String {
    format!("{}.tar", archive.hash)
}

/// Whether the job has anything to put in place.
pub fn has_any(configuration: &RunConfiguration) -> bool {
    let c = configuration.common();
    !c.files.is_empty() || !c.repos.is_empty()
}

const FUNCTIONS: &str = r#"__flotilla_nonempty() { [ -d "$1" ] && [ -n "$(ls -A "$1" 2>/dev/null)" ]; }
__flotilla_repo_dir() {
  if __flotilla_nonempty "$1"; then
    [ "$2" = skip ] && return 1
    echo "flotilla: repos: the repo directory $1 is not empty; empty it, choose another \`path\`, or set \`if_exists: skip\` to keep what is there" >&2
    exit 1
  fi
  mkdir -p "$1" || { echo "flotilla: repos: cannot create $1" >&2; exit 1; }
}
__flotilla_repo() {
  if __flotilla_repo_dir "$2" "$3"; then
    tar -xf "$1" -C "$2" || { echo "flotilla: repos: cannot unpack the repo into $2" >&2; exit 1; }
  fi
}
__flotilla_clone() {
  __flotilla_repo_dir "$2" "$3" || return 0
  command -v git >/dev/null 2>&1 || { echo "flotilla: repos: git is not installed where the job runs; it is needed to clone $1" >&2; exit 1; }
  __u=$1 __d=$2 __h=$4; shift 4
  git clone -q "$@" "$__u" "$__d" || { echo "flotilla: repos: git clone $__u failed" >&2; exit 1; }
  if [ -n "$__h" ]; then git -C "$__d" checkout -q "$__h" || { echo "flotilla: repos: $__h is not a commit of $__u" >&2; exit 1; }; fi
}
__flotilla_files() {
  __p=$(dirname "$2")
  mkdir -p "$__p" || { echo "flotilla: files: cannot create $__p" >&2; exit 1; }
  __t="$__p/.flotilla-files.$$"
  rm -rf "$__t" && mkdir "$__t" && tar -xf "$1" -C "$__t" || { rm -rf "$__t"; echo "flotilla: files: cannot unpack $3 into $__p" >&2; exit 1; }
  if [ -d "$2" ] && [ -d "$__t/root" ] && { [ "$2" = "$PWD" ] || [ "$2" = / ]; }; then
    (cd "$__t/root" && tar -cf - .) | (cd "$2" && tar -xf -) || { rm -rf "$__t"; echo "flotilla: files: cannot put $3 in $2" >&2; exit 1; }
  else
    rm -rf "$2" && mv "$__t/root" "$2" || { rm -rf "$__t"; echo "flotilla: files: cannot put $3 at $2" >&2; exit 1; }
  fi
  rm -rf "$__t"
}
"#;

/// The lines that put the run's `repos` then `files` in place, reading archives from
/// `uploads_dir`; empty when there are none.
pub fn prelude(
    configuration: &RunConfiguration,
    archives: &[RunArchive],
    uploads_dir: &str,
) -> Result<String, String> {
    if !has_any(configuration) {
        return Ok(String::new());
    }
    let common = configuration.common();
    let archive = |field: ArchiveField, index: usize| {
        archives
            .iter()
            .find(|a| a.field == field && a.index == index)
            .map(|a| sh_quote(&format!("{uploads_dir}/{}", archive_name(a))))
            .ok_or_else(|| format!("{field}[{index}]: the run has no uploaded archive for it"))
    };
    let mut s = String::from("# flotillad: the run's repos and files\n");
    s.push_str(FUNCTIONS);
    for (i, repo) in common.repos.iter().enumerate() {
        let dest = dest_expr(&repo.path).map_err(|e| format!("repos[{i}].path: {e}"))?;
        let if_exists = match repo.if_exists {
            RepoExistsAction::Error => "error",
            RepoExistsAction::Skip => "skip",
        };
        if repo.local_path.is_some() {
            s.push_str(&format!(
                "__flotilla_repo {} {dest} {if_exists}\n",
                archive(ArchiveField::Repos, i)?
            ));
        } else if let Some(url) = &repo.url {
            let mut options = Vec::new();
            if let Some(branch) = &repo.branch {
                options.push("--branch".to_string());
                options.push(branch.clone());
            }
            if single_branch(configuration) {
                options.push("--single-branch".into());
            }
            let options: Vec<String> = options.iter().map(|o| sh_quote(o)).collect();
            s.push_str(&format!(
                "__flotilla_clone {} {dest} {if_exists} {} {}\n",
                sh_quote(url),
                sh_quote(repo.hash.as_deref().unwrap_or("")),
                options.join(" ")
            ));
        }
        s.push_str(&format!("export DSTACK_REPO_DIR={dest}\n"));
    }
    for (i, file) in common.files.iter().enumerate() {
        let dest = dest_expr(&file.path).map_err(|e| format!("files[{i}].path: {e}"))?;
        s.push_str(&format!(
            "__flotilla_files {} {dest} {}\n",
            archive(ArchiveField::Files, i)?,
            sh_quote(&file.local_path)
        ));
    }
    Ok(s)
}

/// dstack's `single_branch`: by default true for tasks and services, false for dev
/// environments.
fn single_branch(configuration: &RunConfiguration) -> bool {
    configuration.common().single_branch.unwrap_or(!matches!(
        configuration,
        RunConfiguration::DevEnvironment(_)
    ))
}

/// A destination path as a shell word: `~` the home, relative the working directory.
pub fn dest_expr(path: &str) -> Result<String, String> {
    let cleaned = clean(path);
    if cleaned == "~" {
        return Ok("\"$HOME\"".into());
    }
    if let Some(rest) = cleaned.strip_prefix("~/") {
        return Ok(format!("\"$HOME\"/{}", sh_quote(rest)));
    }
    if cleaned.starts_with('~') {
        return Err(format!(
            "{path:?}: `~user` is not supported (dstack's rule); write `~/...` or an absolute path"
        ));
    }
    if cleaned.starts_with('/') {
        return Ok(sh_quote(&cleaned));
    }
    if cleaned == "." {
        return Ok("\"$PWD\"".into());
    }
    Ok(format!("\"$PWD\"/{}", sh_quote(&cleaned)))
}

/// A path without `.`, empty parts and resolvable `..` (Go's `path.Clean`, as dstack's runner).
fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => match parts.last() {
                Some(&last) if last != ".." => {
                    parts.pop();
                }
                _ if rooted => {}
                _ => parts.push(".."),
            },
            p => parts.push(p),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_protocol::config::parse_configuration;

    fn config(yaml: &str) -> RunConfiguration {
        parse_configuration("t.yml", yaml)
            .expect("valid")
            .as_run()
            .expect("a run")
    }

    fn archive(field: ArchiveField, index: usize, hash: &str) -> RunArchive {
        RunArchive {
            field,
            index,
            hash: hash.into(),
            size: 1,
        }
    }

    #[test]
    fn destinations_follow_dstack_s_rules() {
        assert_eq!(dest_expr("~").as_deref(), Ok("\"$HOME\""));
        assert_eq!(
            dest_expr("~/.ssh/id_rsa").as_deref(),
            Ok("\"$HOME\"/'.ssh/id_rsa'")
        );
        assert_eq!(dest_expr("/root/x/../y").as_deref(), Ok("'/root/y'"));
        assert_eq!(dest_expr(".").as_deref(), Ok("\"$PWD\""));
        assert_eq!(dest_expr("./a//b/").as_deref(), Ok("\"$PWD\"/'a/b'"));
        assert_eq!(
            dest_expr("../examples").as_deref(),
            Ok("\"$PWD\"/'../examples'")
        );
        assert!(dest_expr("~bob/x").expect_err("refused").contains("~user"));
        assert_eq!(clean("/.."), "/");
    }

    #[test]
    fn the_prelude_puts_repos_then_files_from_their_archives() {
        let c = config(
            "type: task\ncommands: [ls]\nrepos:\n  - local_path: ..\n    path: /work\n    if_exists: skip\nfiles:\n  - data:data\n  - ~/.cache/token\n",
        );
        let archives = vec![
            archive(ArchiveField::Files, 0, "aa"),
            archive(ArchiveField::Files, 1, "bb"),
            archive(ArchiveField::Repos, 0, "cc"),
        ];
        let s = prelude(&c, &archives, "/j/1/uploads").expect("prelude");
        let repo = s.find("__flotilla_repo '/j/1/uploads/cc.tar' '/work' skip\n");
        let data = s.find("__flotilla_files '/j/1/uploads/aa.tar' \"$PWD\"/'data' 'data'\n");
        let token = s.find(
            "__flotilla_files '/j/1/uploads/bb.tar' \"$HOME\"/'.cache/token' '~/.cache/token'\n",
        );
        assert!(repo.is_some() && data.is_some() && token.is_some(), "{s}");
        assert!(repo < data, "the repo first:\n{s}");
        assert!(s.contains("export DSTACK_REPO_DIR='/work'\n"), "{s}");
        let without_token = [archives[0].clone(), archives[2].clone()];
        let missing = prelude(&c, &without_token, "/u").expect_err("missing");
        assert!(missing.contains("files[1]"), "{missing}");
    }

    #[test]
    fn a_url_is_cloned_with_its_branch_and_hash() {
        let c = config(
            "type: task\ncommands: [ls]\nrepos:\n  - url: https://example.com/r.git\n    branch: dev\n    hash: abc123\n",
        );
        let s = prelude(&c, &[], "/u").expect("prelude");
        assert!(
            s.contains("__flotilla_clone 'https://example.com/r.git' \"$PWD\" error 'abc123' '--branch' 'dev' '--single-branch'\n"),
            "{s}"
        );
        let none = config("type: task\ncommands: [ls]\n");
        assert_eq!(prelude(&none, &[], "/u").as_deref(), Ok(""));
    }

    #[test]
    fn the_functions_are_posix_sh() {
        let status = std::process::Command::new("sh")
            .arg("-n")
            .arg("-c")
            .arg(FUNCTIONS)
            .status()
            .expect("sh");
        assert!(status.success());
    }
}

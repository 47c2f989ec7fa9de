//! What a job gets from outside: volumes (network or host directories), uploaded files, Git repos.

use super::decode::{item, Decoder};
use super::yaml::Node;
use serde::{Deserialize, Serialize};

/// Where a volume appears in the job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum VolumeMount {
    /// A network volume (one of `name`, for availability) mounted at `path`.
    Network { name: Vec<String>, path: String },
    /// A directory of the host mounted at `path`.
    Instance {
        instance_path: String,
        path: String,
        optional: bool,
    },
}

/// A local file or directory uploaded into the job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMapping {
    pub local_path: String,
    /// Relative paths are inside the working directory.
    pub path: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RepoExistsAction {
    #[default]
    Error,
    Skip,
}

/// A Git repo cloned into the job: a local checkout or a URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoSpec {
    pub local_path: Option<String>,
    pub url: Option<String>,
    pub branch: Option<String>,
    pub hash: Option<String>,
    /// Where in the job; `.` is the working directory.
    pub path: String,
    pub if_exists: RepoExistsAction,
}

pub(crate) fn decode_volumes(
    d: &mut Decoder<'_>,
    node: &Node,
    path: &str,
) -> Option<Vec<VolumeMount>> {
    let entries = d.list(node, path)?;
    let mut out = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let entry_path = item(path, i);
        let mount = match entry.scalar() {
            Some(text) => parse_volume_mount(text)
                .map_err(|e| d.error(entry, &entry_path, e))
                .ok(),
            None => decode_volume_mount_fields(d, entry, &entry_path),
        };
        out.extend(mount);
    }
    Some(out)
}

/// `"name:/path"` (a network volume) or `"/host/dir:/path"` (an instance directory).
fn parse_volume_mount(s: &str) -> Result<VolumeMount, String> {
    let Some((source, path)) = s.split_once(':').filter(|(_, rest)| !rest.contains(':')) else {
        return Err(format!(
            "{s:?} is not a mount point; write \"VOLUME:/path\" or \"/host/dir:/path\""
        ));
    };
    let path = check_mount_path(path)?;
    if source.contains('/') {
        Ok(VolumeMount::Instance {
            instance_path: check_mount_path(source)?,
            path,
            optional: false,
        })
    } else if source.is_empty() {
        Err(format!("{s:?} has no volume name before `:`"))
    } else {
        Ok(VolumeMount::Network {
            name: vec![source.to_string()],
            path,
        })
    }
}

fn check_mount_path(path: &str) -> Result<String, String> {
    if !path.starts_with('/') {
        return Err(format!("{path:?} must be an absolute path"));
    }
    if path.split('/').any(|part| part == "..") {
        return Err(format!("{path:?} must not contain `..`"));
    }
    Ok(path.to_string())
}

fn decode_volume_mount_fields(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<VolumeMount> {
    let fields = d.fields(node, path, &["name", "path", "instance_path", "optional"])?;
    let mount_path = match fields.get("path") {
        Some(value) => {
            let value_path = fields.path_of("path");
            let text = d.string(value, &value_path)?;
            check_mount_path(&text)
                .map_err(|e| d.error(value, &value_path, e))
                .ok()?
        }
        None => {
            fields.missing(d, "path");
            return None;
        }
    };
    if let Some(instance) = fields.get("instance_path") {
        let instance_path_path = fields.path_of("instance_path");
        let text = d.string(instance, &instance_path_path)?;
        let instance_path = check_mount_path(&text)
            .map_err(|e| d.error(instance, &instance_path_path, e))
            .ok()?;
        if let Some(key) = fields.key("name") {
            d.error(
                key,
                &fields.path_of("name"),
                "give either `name` (a network volume) or `instance_path`, not both",
            );
        }
        let optional = fields.with(d, "optional", Decoder::bool).unwrap_or(false);
        return Some(VolumeMount::Instance {
            instance_path,
            path: mount_path,
            optional,
        });
    }
    let Some(name) = fields.get("name") else {
        d.error(
            node,
            path,
            "give `name` (a network volume) or `instance_path` (a host directory)",
        );
        return None;
    };
    let name_path = fields.path_of("name");
    let names = match name.scalar() {
        Some(_) => vec![d.string(name, &name_path)?],
        None => d.strings(name, &name_path)?,
    };
    if names.is_empty() {
        d.error(name, &name_path, "give at least one volume name");
        return None;
    }
    Some(VolumeMount::Network {
        name: names,
        path: mount_path,
    })
}

pub(crate) fn decode_files(
    d: &mut Decoder<'_>,
    node: &Node,
    path: &str,
) -> Option<Vec<FileMapping>> {
    let entries = d.list(node, path)?;
    let mut out = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let entry_path = item(path, i);
        let mapping = match entry.scalar() {
            Some(text) => parse_file_mapping(text)
                .map_err(|e| d.error(entry, &entry_path, e))
                .ok(),
            None => d
                .fields(entry, &entry_path, &["local_path", "path"])
                .and_then(|fields| {
                    let local_path = fields.with(d, "local_path", Decoder::string);
                    let path = fields.with(d, "path", Decoder::string);
                    for (name, value) in [("local_path", &local_path), ("path", &path)] {
                        if value.is_none() && !fields.has(name) {
                            fields.missing(d, name);
                        }
                    }
                    Some(FileMapping {
                        local_path: local_path?,
                        path: path?,
                    })
                }),
        };
        out.extend(mapping);
    }
    Some(out)
}

/// `"local"` (same relative path in the job) or `"local:path"`; `C:\dir` keeps its drive.
fn parse_file_mapping(s: &str) -> Result<FileMapping, String> {
    let parts = split_keeping_drive(s);
    match parts.as_slice() {
        [local] if !local.is_empty() => Ok(FileMapping {
            local_path: local.clone(),
            path: local.clone(),
        }),
        [local, path] if !local.is_empty() && !path.is_empty() => Ok(FileMapping {
            local_path: local.clone(),
            path: path.clone(),
        }),
        _ => Err(format!(
            "{s:?} is not a file mapping; write \"LOCAL\" or \"LOCAL:PATH\""
        )),
    }
}

/// Splits at `:`, gluing a Windows drive letter (`C:\x`, `c:/x`) back to its path.
fn split_keeping_drive(s: &str) -> Vec<String> {
    let mut parts: Vec<String> = s.split(':').map(str::to_string).collect();
    let is_drive = parts.len() > 1
        && parts[0].len() == 1
        && parts[0].chars().all(|c| c.is_ascii_alphabetic())
        && parts[1].starts_with(['\\', '/']);
    if is_drive {
        let rest = parts.remove(1);
        parts[0] = format!("{}:{rest}", parts[0]);
    }
    parts
}

pub(crate) fn decode_repos(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<Vec<RepoSpec>> {
    let entries = d.list(node, path)?;
    let mut out = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let entry_path = item(path, i);
        let repo = match entry.scalar() {
            Some(text) => parse_repo(text)
                .map_err(|e| d.error(entry, &entry_path, e))
                .ok(),
            None => decode_repo_fields(d, entry, &entry_path),
        };
        out.extend(repo);
    }
    if entries.len() > 1 {
        d.error(&entries[1], &item(path, 1), "only one repo is supported");
    }
    Some(out)
}

/// `"."`, `"../dir:/workspace"`, `"https://github.com/org/repo"`, `"git@github.com:org/repo.git:path"`.
fn parse_repo(s: &str) -> Result<RepoSpec, String> {
    let raw: Vec<&str> = s.split(':').collect();
    let is_url = raw.len() > 1 && (raw[0].contains('@') || raw[1].starts_with("//"));
    let parts = if is_url {
        let mut parts = vec![format!("{}:{}", raw[0], raw[1])];
        parts.extend(raw[2..].iter().map(|p| p.to_string()));
        parts
    } else {
        split_keeping_drive(s)
    };
    let (source, path) = match parts.as_slice() {
        [source] => (source.clone(), ".".to_string()),
        [source, path] => (source.clone(), path.clone()),
        _ => {
            return Err(format!(
                "{s:?} is not a repo; write \"PATH_OR_URL\" or \"PATH_OR_URL:PATH\""
            ))
        }
    };
    if source.is_empty() {
        return Err(format!("{s:?} has no repo path or URL"));
    }
    let (local_path, url) = if is_url {
        (None, Some(source))
    } else {
        (Some(source), None)
    };
    Ok(RepoSpec {
        local_path,
        url,
        branch: None,
        hash: None,
        path,
        if_exists: RepoExistsAction::default(),
    })
}

fn decode_repo_fields(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<RepoSpec> {
    let fields = d.fields(
        node,
        path,
        &["local_path", "url", "branch", "hash", "path", "if_exists"],
    )?;
    let local_path = fields.with(d, "local_path", Decoder::string);
    let url = fields.with(d, "url", Decoder::string);
    if local_path.is_some() == url.is_some() {
        d.error(node, path, "give exactly one of `local_path` and `url`");
    }
    let if_exists = fields
        .with(d, "if_exists", |d, node, path| {
            d.choice(
                node,
                path,
                &[
                    ("error", RepoExistsAction::Error),
                    ("skip", RepoExistsAction::Skip),
                ],
            )
        })
        .unwrap_or_default();
    Some(RepoSpec {
        local_path,
        url,
        branch: fields.with(d, "branch", Decoder::string),
        hash: fields.with(d, "hash", Decoder::string),
        path: fields
            .with(d, "path", Decoder::string)
            .unwrap_or_else(|| ".".to_string()),
        if_exists,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_volume_mounts_pick_network_or_instance() {
        assert_eq!(
            parse_volume_mount("data:/data"),
            Ok(VolumeMount::Network {
                name: vec!["data".into()],
                path: "/data".into()
            })
        );
        assert_eq!(
            parse_volume_mount("/mnt/x:/x"),
            Ok(VolumeMount::Instance {
                instance_path: "/mnt/x".into(),
                path: "/x".into(),
                optional: false
            })
        );
        assert!(parse_volume_mount("data:relative").is_err());
        assert!(parse_volume_mount("/a:/b:/c").is_err());
        assert!(parse_volume_mount("/a:/b/../c").is_err());
    }

    #[test]
    fn file_mappings_and_repos_read_short_forms() {
        let file = parse_file_mapping("~/.ssh/id_rsa:/root/.ssh/id_rsa").expect("file");
        assert_eq!(file.local_path, "~/.ssh/id_rsa");
        assert_eq!(file.path, "/root/.ssh/id_rsa");
        assert_eq!(
            parse_file_mapping("train.py").expect("file").path,
            "train.py"
        );
        assert_eq!(
            parse_file_mapping("C:\\x:/y").expect("file").local_path,
            "C:\\x"
        );

        let repo = parse_repo("..").expect("repo");
        assert_eq!(repo.local_path.as_deref(), Some(".."));
        assert_eq!(repo.path, ".");
        let repo = parse_repo("https://github.com/dstackai/dstack:/work").expect("repo");
        assert_eq!(
            repo.url.as_deref(),
            Some("https://github.com/dstackai/dstack")
        );
        assert_eq!(repo.path, "/work");
        let repo = parse_repo("git@github.com:dstackai/dstack.git").expect("repo");
        assert_eq!(
            repo.url.as_deref(),
            Some("git@github.com:dstackai/dstack.git")
        );
    }
}

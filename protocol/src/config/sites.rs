//! Where each field and each string of a configuration file was written: what the daemon needs
//! to point at a field it refuses, or at a `${{ }}` reference, with file, line and column after
//! the file has been parsed into typed specs (which keep no positions).

use super::decode::{child, item};
use super::error::ConfigError;
use super::yaml::{self, Kind};

/// One written field (`value: None`, at its key) or string (`value: Some`, at the value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    /// The field path as errors write it: `env.HF_TOKEN`, `env[0]`, `registry_auth.password`.
    pub path: String,
    pub line: usize,
    pub column: usize,
    pub value: Option<String>,
}

/// Every mapping key and every scalar of the file, in file order. A file that does not load
/// gives the load's error (parsing it reports the same one).
pub fn sites(file_name: &str, text: &str) -> Result<Vec<Site>, ConfigError> {
    let loaded = yaml::load(file_name, text)?;
    let mut sites = Vec::new();
    let Some(root) = loaded.root else {
        return Ok(sites);
    };
    // Depth-first with an explicit stack (nesting is bounded by the loader's limits anyway).
    let mut stack = vec![(String::new(), &root)];
    while let Some((path, node)) = stack.pop() {
        match &node.kind {
            Kind::Scalar { text, .. } => sites.push(Site {
                path,
                line: node.line,
                column: node.column,
                value: Some(text.clone()),
            }),
            Kind::Seq(items) => {
                for (i, n) in items.iter().enumerate().rev() {
                    stack.push((item(&path, i), n));
                }
            }
            Kind::Map(entries) => {
                for (key, value) in entries.iter().rev() {
                    let Some(name) = key.scalar() else { continue };
                    let field = child(&path, name);
                    stack.push((field.clone(), value));
                    sites.push(Site {
                        path: field,
                        line: key.line,
                        column: key.column,
                        value: None,
                    });
                }
            }
        }
    }
    sites.sort_by_key(|s| (s.line, s.column));
    Ok(sites)
}

impl Site {
    /// An error at this site.
    pub fn error(&self, file: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: file.to_string(),
            line: self.line,
            column: self.column,
            path: self.path.clone(),
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_strings_come_with_their_paths_and_positions() {
        let text = "type: task\nenv:\n  - A=${{ secrets.x }}\nregistry_auth:\n  username: u\n";
        let s = sites("t.yml", text).expect("loads");
        let find = |p: &str, key: bool| {
            s.iter()
                .find(|x| x.path == p && x.value.is_none() == key)
                .map(|x| (x.line, x.column))
        };
        assert_eq!(find("env", true), Some((2, 1)));
        assert_eq!(find("env[0]", false), Some((3, 5)));
        assert_eq!(find("registry_auth.username", true), Some((5, 3)));
        assert_eq!(find("registry_auth.username", false), Some((5, 13)));
    }
}

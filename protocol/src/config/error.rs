//! Configuration errors: each names the file, line, column and field path of the offending node.

use super::limits::MAX_REPORTED_ERRORS;
use serde::{Deserialize, Serialize};
use std::fmt;

/// How many problems are kept in memory while a file is read; past this they are only counted.
/// Sorting the kept ones by position then gives the first [`MAX_REPORTED_ERRORS`] of them.
pub(crate) const KEPT_ERRORS: usize = 10 * MAX_REPORTED_ERRORS;

/// Adds `error` to `errors`, or counts it in `more` once [`KEPT_ERRORS`] are kept.
pub(crate) fn keep(errors: &mut Vec<ConfigError>, more: &mut usize, error: ConfigError) {
    if errors.len() < KEPT_ERRORS {
        errors.push(error);
    } else {
        *more += 1;
    }
}

/// The problems in file order, at most [`MAX_REPORTED_ERRORS`] of them, then one line that counts
/// the rest (`more` had not been kept at all).
pub(crate) fn report(mut errors: Vec<ConfigError>, more: usize) -> ConfigErrors {
    errors.sort_by_key(|e| (e.line, e.column));
    if errors.len() <= MAX_REPORTED_ERRORS && more == 0 {
        return ConfigErrors(errors);
    }
    let hidden = errors.len().saturating_sub(MAX_REPORTED_ERRORS) + more;
    let at = errors
        .get(MAX_REPORTED_ERRORS)
        .or(errors.last())
        .map_or((1, 1), |e| (e.line, e.column));
    let file = errors.first().map(|e| e.file.clone()).unwrap_or_default();
    errors.truncate(MAX_REPORTED_ERRORS);
    errors.push(ConfigError {
        file,
        line: at.0,
        column: at.1,
        path: String::new(),
        message: format!(
            "{hidden} more problems not shown (at most {MAX_REPORTED_ERRORS} are reported per file)"
        ),
    });
    ConfigErrors(errors)
}

/// One problem in a configuration file.
///
/// Displays as `task.yml:7:5: resources.gpu: "A100:0GB" memory must be positive`
/// (the path part is left out when the problem is not about one field).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigError {
    pub file: String,
    /// 1-based.
    pub line: usize,
    /// 1-based.
    pub column: usize,
    /// The field path, e.g. `ssh_config.hosts[1].port`; empty for file-level problems.
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in one file, in the order of the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> Self {
        ConfigErrors(vec![error])
    }
}

impl IntoIterator for ConfigErrors {
    type Item = ConfigError;
    type IntoIter = std::vec::IntoIter<ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

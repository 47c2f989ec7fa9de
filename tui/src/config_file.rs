//! A configuration file as the command line and the dashboard read it: its bytes decoded (a
//! UTF-8 byte-order mark skipped, invalid UTF-8 located by line and column), every error in it
//! reported, and the `run.plan` / `run.apply` params built from it.

use flotilla_protocol::config::{
    decode_utf8, parse_configuration, ConfigErrors, Configuration, RunConfiguration,
};
use flotilla_protocol::rpc::RunApplyParams;
use std::collections::BTreeMap;
use std::path::Path;

/// Why a configuration file could not be used.
#[derive(Debug)]
pub enum ReadError {
    /// The file could not be read (the message names it).
    Io(String),
    /// Every problem in the file, each with its line and column.
    Invalid(ConfigErrors),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Io(m) => f.write_str(m),
            ReadError::Invalid(errors) => write!(f, "{errors}"),
        }
    }
}

/// The file's text (without a byte-order mark) and its parsed configuration.
pub fn read(path: &Path, shown_as: &str) -> Result<(String, Configuration), ReadError> {
    let bytes =
        std::fs::read(path).map_err(|e| ReadError::Io(format!("{shown_as}: cannot read: {e}")))?;
    let text = decode_utf8(&bytes, shown_as)
        .map_err(|e| ReadError::Invalid(ConfigErrors(vec![e])))?
        .to_string();
    let config = parse_configuration(shown_as, &text).map_err(ReadError::Invalid)?;
    Ok((text, config))
}

/// The `run.plan` / `run.apply` params for a run configuration file: its text, its name, and
/// the values of its bare `env` keys from this process's environment.
pub fn run_params(config: &RunConfiguration, file_name: &str, text: String) -> RunApplyParams {
    let env: BTreeMap<String, String> = config
        .common()
        .env
        .bare_keys()
        .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
        .collect();
    RunApplyParams {
        configuration: text,
        file_name: Some(file_name.to_string()),
        archives: Vec::new(),
        env,
        name: None,
    }
}

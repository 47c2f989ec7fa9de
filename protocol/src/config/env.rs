//! `env`: a mapping, or a list of `KEY=VALUE` and bare `KEY` (taken from the caller's environment).

use super::decode::{child, item, Decoder};
use super::yaml::{Kind, Node};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Environment variables by name; `None` is a bare `KEY` whose value comes from the caller.
/// Serializes as a JSON mapping (`{"HF_TOKEN": null, "MODEL": "llama"}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Env(pub BTreeMap<String, Option<String>>);

impl Env {
    /// The final values: bare keys looked up in `caller`. The error names the missing key.
    pub fn resolve(
        &self,
        caller: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, String> {
        let mut resolved = BTreeMap::new();
        for (key, value) in &self.0 {
            let value = match value {
                Some(value) => value.clone(),
                None => caller.get(key).cloned().ok_or_else(|| {
                    format!(
                        "environment variable `{key}` is listed without a value in `env` and is not set in the caller's environment"
                    )
                })?,
            };
            resolved.insert(key.clone(), value);
        }
        Ok(resolved)
    }

    /// The bare keys, whose values must come from the caller.
    pub fn bare_keys(&self) -> impl Iterator<Item = &str> {
        self.0
            .iter()
            .filter(|(_, value)| value.is_none())
            .map(|(key, _)| key.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

pub(crate) fn decode_env(d: &mut Decoder<'_>, node: &Node, path: &str) -> Env {
    let mut env = BTreeMap::new();
    let mut add = |d: &mut Decoder<'_>, at: &Node, at_path: &str, key: &str, value| {
        if !is_valid_name(key) {
            let message = format!(
                "`{key}` is not a variable name (letters, digits and `_`, not starting with a digit)"
            );
            d.error(at, at_path, message);
        } else if env.insert(key.to_string(), value).is_some() {
            d.error(
                at,
                at_path,
                format!("environment variable `{key}` is set twice"),
            );
        }
    };
    match &node.kind {
        Kind::Seq(entries) => {
            for (i, entry) in entries.iter().enumerate() {
                let entry_path = item(path, i);
                let Some(text) = d.string(entry, &entry_path) else {
                    continue;
                };
                match text.split_once('=') {
                    Some((key, value)) => add(d, entry, &entry_path, key, Some(value.to_string())),
                    None => add(d, entry, &entry_path, &text, None),
                }
            }
        }
        Kind::Map(entries) => {
            for (key, value) in entries {
                let Some(name) = key.scalar() else {
                    d.error(key, path, "variable names must be plain words");
                    continue;
                };
                let entry_path = child(path, name);
                let value = if value.is_null() {
                    None
                } else {
                    d.string(value, &entry_path)
                };
                add(d, key, &entry_path, name, value);
            }
        }
        Kind::Scalar { .. } => {
            let message = format!(
                "expected a mapping or a list of `KEY=VALUE` / `KEY`, found {}",
                node.describe()
            );
            d.error(node, path, message);
        }
    }
    Env(env)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_takes_bare_keys_from_the_caller() {
        let env = Env(BTreeMap::from([
            ("A".to_string(), Some("1".to_string())),
            ("HF_TOKEN".to_string(), None),
        ]));
        let caller = BTreeMap::from([("HF_TOKEN".to_string(), "secret".to_string())]);
        let resolved = env.resolve(&caller).expect("resolves");
        assert_eq!(resolved["A"], "1");
        assert_eq!(resolved["HF_TOKEN"], "secret");
        let error = env.resolve(&BTreeMap::new()).expect_err("missing");
        assert!(error.contains("`HF_TOKEN`"), "{error}");
        assert_eq!(env.bare_keys().collect::<Vec<_>>(), ["HF_TOKEN"]);
    }

    #[test]
    fn names_must_be_identifiers() {
        assert!(is_valid_name("HF_TOKEN"));
        assert!(is_valid_name("_x1"));
        assert!(!is_valid_name("1X"));
        assert!(!is_valid_name("A-B"));
        assert!(!is_valid_name(""));
    }
}

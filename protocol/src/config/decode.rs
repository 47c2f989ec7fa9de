//! The decoder that turns YAML nodes into typed values, collecting every error on the way.
//!
//! Each `decode_*` function in the sibling modules takes a [`Decoder`], a node and its field
//! path, and returns its best value (a default where the input was wrong) so that one pass
//! reports every problem in the file.

use super::error::{keep, ConfigError, KEPT_ERRORS};
use super::yaml::{parse_yaml_int, Kind, Node};
use std::collections::BTreeMap;

pub(crate) struct Decoder<'f> {
    file: &'f str,
    /// The problems found, up to [`KEPT_ERRORS`]; `more` counts the rest.
    pub errors: Vec<ConfigError>,
    pub more: usize,
}

/// `parent.name`, or `name` at the top level.
pub(crate) fn child(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

/// `parent[index]`.
pub(crate) fn item(path: &str, index: usize) -> String {
    format!("{path}[{index}]")
}

impl<'f> Decoder<'f> {
    pub fn new(file: &'f str) -> Self {
        Decoder {
            file,
            errors: Vec::new(),
            more: 0,
        }
    }

    pub fn error(&mut self, node: &Node, path: &str, message: impl Into<String>) {
        keep(
            &mut self.errors,
            &mut self.more,
            node.error(self.file, path, message),
        );
    }

    /// Whether `value` is at most `limit`; reports it when not, naming the value, the limit and
    /// what is limited (`unit`, e.g. `nodes per task`).
    pub fn within(&mut self, node: &Node, path: &str, value: u64, limit: u64, unit: &str) -> bool {
        if value <= limit {
            return true;
        }
        let message = format!("{value} is over the limit of {limit} {unit}");
        self.error(node, path, message);
        false
    }

    fn expected(&mut self, node: &Node, path: &str, what: &str) {
        let message = format!("expected {what}, found {}", node.describe());
        self.error(node, path, message);
    }

    /// Opens a mapping whose keys must all be in `allowed`; reports the others.
    pub fn fields<'n>(
        &mut self,
        node: &'n Node,
        path: &str,
        allowed: &'static [&'static str],
    ) -> Option<Fields<'n>> {
        let Kind::Map(entries) = &node.kind else {
            self.expected(node, path, "a mapping");
            return None;
        };
        let mut known = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            let Some(name) = key.scalar() else {
                self.error(key, path, "field names must be plain words");
                continue;
            };
            if allowed.contains(&name) {
                known.push((name, key, value));
            } else if self.errors.len() >= KEPT_ERRORS {
                // Past the kept errors, only counted: no need for the suggestion's edit distances.
                self.more += 1;
            } else {
                let message = unknown_field_message(name, allowed);
                self.error(key, &child(path, name), message);
            }
        }
        Some(Fields {
            node,
            path: path.to_string(),
            entries: known,
        })
    }

    /// Any scalar as text (numbers and booleans too, as written); not null, not a collection.
    pub fn string(&mut self, node: &Node, path: &str) -> Option<String> {
        match &node.kind {
            Kind::Scalar { text, .. } if !node.is_null() => Some(text.clone()),
            _ => {
                self.expected(node, path, "a string");
                None
            }
        }
    }

    /// `true`/`false` (also YAML 1.1's `yes`/`no`/`on`/`off`, which dstack's parser reads as booleans).
    pub fn bool(&mut self, node: &Node, path: &str) -> Option<bool> {
        let parsed = node.scalar().and_then(parse_bool);
        if parsed.is_none() {
            self.expected(node, path, "`true` or `false`");
        }
        parsed
    }

    /// A non-negative integer that fits `T` (written as a number or a numeric string).
    pub fn uint<T: TryFrom<i64>>(&mut self, node: &Node, path: &str) -> Option<T> {
        let parsed = node
            .scalar()
            .and_then(|text| parse_yaml_int(text.trim()))
            .filter(|value| *value >= 0)
            .and_then(|value| T::try_from(value).ok());
        if parsed.is_none() {
            let what = format!("a whole number from 0 to {}", max_of::<T>());
            self.expected(node, path, &what);
        }
        parsed
    }

    /// A finite number.
    pub fn number(&mut self, node: &Node, path: &str) -> Option<f64> {
        let parsed = node
            .scalar()
            .and_then(|text| text.trim().parse::<f64>().ok())
            .filter(|value| value.is_finite());
        if parsed.is_none() {
            self.expected(node, path, "a number");
        }
        parsed
    }

    pub fn list<'n>(&mut self, node: &'n Node, path: &str) -> Option<&'n [Node]> {
        match &node.kind {
            Kind::Seq(items) => Some(items),
            _ => {
                self.expected(node, path, "a list");
                None
            }
        }
    }

    /// A list of strings (`commands`, `regions`, ...).
    pub fn strings(&mut self, node: &Node, path: &str) -> Option<Vec<String>> {
        let items = self.list(node, path)?;
        let mut out = Vec::with_capacity(items.len());
        for (i, entry) in items.iter().enumerate() {
            if let Some(text) = self.string(entry, &item(path, i)) {
                out.push(text);
            }
        }
        Some(out)
    }

    /// A mapping of names to scalar values (`tags`).
    pub fn string_map(&mut self, node: &Node, path: &str) -> Option<BTreeMap<String, String>> {
        let Kind::Map(entries) = &node.kind else {
            self.expected(node, path, "a mapping");
            return None;
        };
        let mut out = BTreeMap::new();
        for (key, value) in entries {
            let Some(name) = key.scalar() else {
                self.error(key, path, "keys must be plain words");
                continue;
            };
            if let Some(text) = self.string(value, &child(path, name)) {
                out.insert(name.to_string(), text);
            }
        }
        Some(out)
    }

    /// One of a fixed set of words.
    pub fn choice<T: Copy>(&mut self, node: &Node, path: &str, options: &[(&str, T)]) -> Option<T> {
        let text = node.scalar().filter(|_| !node.is_null());
        if let Some(found) = text.and_then(|t| options.iter().find(|(name, _)| *name == t)) {
            return Some(found.1);
        }
        let names: Vec<String> = options
            .iter()
            .map(|(name, _)| format!("`{name}`"))
            .collect();
        let message = format!(
            "expected one of {}, found {}",
            names.join(", "),
            node.describe()
        );
        self.error(node, path, message);
        None
    }

    /// The node kept as JSON (for fields that are carried but not interpreted).
    pub fn json(&mut self, node: &Node, path: &str) -> serde_json::Value {
        let mut errors = Vec::new();
        let value = node.to_json(self.file, path, &mut errors);
        for error in errors {
            keep(&mut self.errors, &mut self.more, error);
        }
        value
    }
}

fn max_of<T: TryFrom<i64>>() -> i64 {
    [u8::MAX as i64, u16::MAX as i64, u32::MAX as i64]
        .into_iter()
        .find(|max| T::try_from(*max).is_ok() && T::try_from(*max + 1).is_err())
        .unwrap_or(i64::MAX)
}

pub(crate) fn parse_bool(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" => Some(true),
        "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// The fields of one mapping, already checked against the allowed names.
pub(crate) struct Fields<'n> {
    node: &'n Node,
    path: String,
    entries: Vec<(&'n str, &'n Node, &'n Node)>,
}

impl<'n> Fields<'n> {
    /// The mapping node itself (for errors about the whole mapping).
    pub fn node(&self) -> &'n Node {
        self.node
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// The path of one field of this mapping.
    pub fn path_of(&self, name: &str) -> String {
        child(&self.path, name)
    }

    /// The value of a field; `None` when absent, written as null, or not allowed here.
    pub fn get(&self, name: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(key, _, value)| *key == name && !value.is_null())
            .map(|(_, _, value)| *value)
    }

    /// The key node of a field, for errors about the field as a whole.
    pub fn key(&self, name: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(key, _, _)| *key == name)
            .map(|(_, key, _)| *key)
    }

    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Decodes a field with `decode` when present.
    pub fn with<'f, T>(
        &self,
        d: &mut Decoder<'f>,
        name: &str,
        decode: impl FnOnce(&mut Decoder<'f>, &'n Node, &str) -> Option<T>,
    ) -> Option<T> {
        let node = self.get(name)?;
        decode(d, node, &self.path_of(name))
    }

    /// Reports a missing required field at the mapping.
    pub fn missing(&self, d: &mut Decoder<'_>, name: &str) {
        d.error(
            self.node,
            &self.path_of(name),
            format!("missing field `{name}`"),
        );
    }
}

/// Beyond this difference in length, [`edit_distance`] does not compare the letters.
const TYPO_LENGTH_GAP: usize = 3;

fn unknown_field_message(name: &str, allowed: &[&str]) -> String {
    let closest = allowed
        .iter()
        .filter(|candidate| **candidate != "type")
        .map(|candidate| (edit_distance(name, candidate), *candidate))
        .min();
    match closest {
        Some((distance, candidate)) if distance <= (name.len() / 3).clamp(1, 3) => {
            format!("unknown field `{name}`, did you mean `{candidate}`?")
        }
        _ => {
            let names: Vec<&str> = allowed.iter().copied().filter(|n| *n != "type").collect();
            format!(
                "unknown field `{name}`; allowed fields: {}",
                names.join(", ")
            )
        }
    }
}

/// Levenshtein distance (with adjacent swaps counting once). Words whose lengths differ by more
/// than [`TYPO_LENGTH_GAP`] are too far apart to be typos: for them the length difference (a
/// lower bound) is returned, so that a huge key costs no quadratic table.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let gap = a.len().abs_diff(b.len());
    if gap > TYPO_LENGTH_GAP {
        return gap;
    }
    let mut rows = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    rows[0] = (0..=b.len()).collect();
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = best;
        }
    }
    rows[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_swaps_once() {
        assert_eq!(edit_distance("resources", "resources"), 0);
        assert_eq!(edit_distance("resorces", "resources"), 1);
        assert_eq!(edit_distance("imgae", "image"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn unknown_fields_suggest_the_closest_name_or_list_all() {
        let allowed = &["type", "name", "image", "commands"];
        assert_eq!(
            unknown_field_message("comands", allowed),
            "unknown field `comands`, did you mean `commands`?"
        );
        assert_eq!(
            unknown_field_message("zzz", allowed),
            "unknown field `zzz`; allowed fields: name, image, commands"
        );
    }

    #[test]
    fn max_of_names_the_type_range() {
        assert_eq!(max_of::<u16>(), 65535);
        assert_eq!(max_of::<u32>(), u32::MAX as i64);
    }
}

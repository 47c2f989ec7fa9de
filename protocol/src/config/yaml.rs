//! A YAML tree that remembers where each node was written, built from yaml-rust2's events.
//!
//! Scalars keep their source text (so `python: 3.10` stays `3.10`); interpreting them is the
//! decoder's job. Anchors and aliases are expanded, `<<` merge keys applied, and duplicate keys
//! reported.

use super::encoding::{line_and_column, skip_bom};
use super::error::{keep, ConfigError};
use super::limits::{
    ALIAS_EXPANSION_FACTOR, ALIAS_EXPANSION_MAX_BYTES, ALIAS_EXPANSION_MAX_NODES,
    ALIAS_EXPANSION_MIN_NODES, MAX_DOCUMENT_BYTES, MAX_NESTING_DEPTH,
};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A node and its 1-based position.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub kind: Kind,
    pub line: usize,
    pub column: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    /// `plain` is false for quoted, block and `!!str`-tagged scalars: those are always strings.
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// The text of a scalar; `None` for collections.
    pub fn scalar(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// A plain `~`, `null` or empty scalar.
    pub fn is_null(&self) -> bool {
        matches!(&self.kind, Kind::Scalar { text, plain: true } if is_null_text(text))
    }

    /// How the node reads in an error message: `"8GB"`, `a list`, `a mapping`.
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::Scalar { .. } if self.is_null() => "null".to_string(),
            Kind::Scalar { text, .. } if text.chars().count() > 60 => {
                let start: String = text.chars().take(57).collect();
                format!("{:?}", format!("{start}..."))
            }
            Kind::Scalar { text, .. } => format!("{text:?}"),
            Kind::Seq(_) => "a list".to_string(),
            Kind::Map(_) => "a mapping".to_string(),
        }
    }

    /// The node as JSON, typing plain scalars by the YAML 1.2 core schema.
    pub fn to_json(&self, file: &str, path: &str, errors: &mut Vec<ConfigError>) -> Value {
        match &self.kind {
            Kind::Scalar { text, plain: false } => Value::String(text.clone()),
            Kind::Scalar { text, plain: true } => plain_scalar_json(text),
            Kind::Seq(items) => Value::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| item.to_json(file, &format!("{path}[{i}]"), errors))
                    .collect(),
            ),
            Kind::Map(entries) => {
                let mut map = serde_json::Map::new();
                for (key, value) in entries {
                    let Some(name) = key.scalar() else {
                        errors.push(key.error(file, path, "mapping keys must be scalars"));
                        continue;
                    };
                    let child = if path.is_empty() {
                        name.to_string()
                    } else {
                        format!("{path}.{name}")
                    };
                    map.insert(name.to_string(), value.to_json(file, &child, errors));
                }
                Value::Object(map)
            }
        }
    }

    /// How many nodes the tree holds, and how many bytes of scalar text.
    pub fn size(&self) -> (usize, usize) {
        match &self.kind {
            Kind::Scalar { text, .. } => (1, text.len()),
            Kind::Seq(items) => items.iter().fold((1, 0), |(nodes, bytes), item| {
                let (n, b) = item.size();
                (nodes + n, bytes + b)
            }),
            Kind::Map(entries) => entries.iter().fold((1, 0), |(nodes, bytes), (key, value)| {
                let (kn, kb) = key.size();
                let (vn, vb) = value.size();
                (nodes + kn + vn, bytes + kb + vb)
            }),
        }
    }

    pub fn error(&self, file: &str, path: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: file.to_string(),
            line: self.line,
            column: self.column,
            path: path.to_string(),
            message: message.into(),
        }
    }
}

pub(crate) fn is_null_text(text: &str) -> bool {
    matches!(text, "" | "~" | "null" | "Null" | "NULL")
}

fn plain_scalar_json(text: &str) -> Value {
    if is_null_text(text) {
        return Value::Null;
    }
    match text {
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    if let Some(int) = parse_yaml_int(text) {
        return Value::from(int);
    }
    let looks_numeric = text
        .trim_start_matches(['-', '+'])
        .starts_with(|c: char| c.is_ascii_digit() || c == '.');
    if looks_numeric {
        if let Ok(float) = text.parse::<f64>() {
            if let Some(number) = serde_json::Number::from_f64(float) {
                return Value::Number(number);
            }
        }
    }
    Value::String(text.to_string())
}

/// A YAML 1.2 core-schema integer: decimal, `0x` hex or `0o` octal.
pub(crate) fn parse_yaml_int(text: &str) -> Option<i64> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let magnitude = if let Some(hex) = digits.strip_prefix("0x") {
        i64::from_str_radix(hex, 16).ok()?
    } else if let Some(octal) = digits.strip_prefix("0o") {
        i64::from_str_radix(octal, 8).ok()?
    } else if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse().ok()?
    } else {
        return None;
    };
    Some(if negative { -magnitude } else { magnitude })
}

/// What [`load`] read: the document (`None` when the text holds none) and the problems that
/// did not stop reading (duplicate keys, extra documents).
pub(crate) struct Loaded {
    pub root: Option<Node>,
    pub errors: Vec<ConfigError>,
    /// Problems found past [`KEPT_ERRORS`](super::error::KEPT_ERRORS), only counted.
    pub more: usize,
}

/// Parses one YAML document (a leading byte-order mark skipped); a syntax error, or a file past
/// one of the [limits](super::limits), stops it.
pub(crate) fn load(file: &str, text: &str) -> Result<Loaded, ConfigError> {
    let text = skip_bom(text);
    check_size(file, text)?;
    let mut builder = Builder {
        file,
        text,
        stack: Vec::new(),
        anchors: HashMap::new(),
        documents: Vec::new(),
        errors: Vec::new(),
        more: 0,
        written_nodes: 0,
        copied_nodes: 0,
        copied_bytes: 0,
    };
    // Events are pulled one at a time: yaml-rust2's own `Parser::load` recurses once per nesting
    // level, and would overflow a small stack before the depth limit could stop it.
    let mut parser = Parser::new_from_str(text);
    loop {
        let (event, marker) = parser.next_token().map_err(|error| ConfigError {
            file: file.to_string(),
            line: error.marker().line(),
            column: error.marker().col() + 1,
            path: String::new(),
            message: if error.info().contains("recursion limit") {
                // yaml-rust2's own guard against deep flow collections (`[[[[...`).
                format!(
                    "lists and mappings nest deeper than {MAX_NESTING_DEPTH} levels here (the limit is {MAX_NESTING_DEPTH})"
                )
            } else {
                format!("YAML syntax error: {}", error.info())
            },
        })?;
        if event == Event::StreamEnd {
            break;
        }
        builder.on_event(event, marker)?;
    }
    let mut documents = builder.documents.into_iter();
    let first = documents.next();
    if let Some(second) = documents.next() {
        builder.errors.push(ConfigError {
            file: file.to_string(),
            line: second.line,
            column: second.column,
            path: String::new(),
            message:
                "a configuration file holds one YAML document; remove the `---` and what follows"
                    .to_string(),
        });
    }
    Ok(Loaded {
        root: first,
        errors: builder.errors,
        more: builder.more,
    })
}

/// Refuses a file over [`MAX_DOCUMENT_BYTES`], at the line where it crosses the limit.
fn check_size(file: &str, text: &str) -> Result<(), ConfigError> {
    if text.len() <= MAX_DOCUMENT_BYTES {
        return Ok(());
    }
    let mut end = MAX_DOCUMENT_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let (line, column) = line_and_column(&text[..end]);
    Err(ConfigError {
        file: file.to_string(),
        line,
        column,
        path: String::new(),
        message: format!(
            "the file is {} bytes, over the limit of {MAX_DOCUMENT_BYTES} bytes (1 MiB) for a configuration",
            text.len()
        ),
    })
}

struct Builder<'f> {
    file: &'f str,
    text: &'f str,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Anchored>,
    documents: Vec<Node>,
    errors: Vec<ConfigError>,
    more: usize,
    /// Nodes written in the file (scalars and collections).
    written_nodes: usize,
    /// Nodes and scalar bytes copied so far by anchors and aliases.
    copied_nodes: usize,
    copied_bytes: usize,
}

/// An anchored node and its size, charged to the copy budget each time an alias repeats it.
struct Anchored {
    node: Node,
    nodes: usize,
    bytes: usize,
}

enum Frame {
    Seq {
        mark: Position,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        mark: Position,
        anchor: usize,
        entries: Vec<(Node, Node)>,
        key: Option<Node>,
    },
}

#[derive(Clone, Copy)]
struct Position {
    line: usize,
    column: usize,
}

impl From<Marker> for Position {
    fn from(marker: Marker) -> Self {
        Position {
            line: marker.line(),
            column: marker.col() + 1,
        }
    }
}

impl Builder<'_> {
    fn on_event(&mut self, event: Event, marker: Marker) -> Result<(), ConfigError> {
        let mark = Position::from(marker);
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                self.written_nodes += 1;
                let plain = style == TScalarStyle::Plain && !is_str_tag(tag.as_ref());
                let node = Node {
                    kind: Kind::Scalar { text, plain },
                    line: mark.line,
                    column: mark.column,
                };
                self.push(node, anchor)?;
            }
            Event::Alias(anchor) => {
                let node = match self.anchors.get(&anchor) {
                    Some(anchored) => {
                        let (nodes, bytes) = (anchored.nodes, anchored.bytes);
                        self.charge_copy(nodes, bytes, mark, |b| b.alias_name(mark))?;
                        self.anchors
                            .get(&anchor)
                            .map(|anchored| anchored.node.clone())
                    }
                    None => None,
                };
                // An alias to a node still being built (a cycle) reads as null.
                let node = node.unwrap_or(Node {
                    kind: Kind::Scalar {
                        text: String::new(),
                        plain: true,
                    },
                    line: mark.line,
                    column: mark.column,
                });
                self.push(node, 0)?;
            }
            Event::SequenceStart(anchor, _) => {
                self.enter(mark)?;
                self.stack.push(Frame::Seq {
                    mark,
                    anchor,
                    items: Vec::new(),
                });
            }
            Event::MappingStart(anchor, _) => {
                self.enter(mark)?;
                self.stack.push(Frame::Map {
                    mark,
                    anchor,
                    entries: Vec::new(),
                    key: None,
                });
            }
            Event::SequenceEnd => {
                if let Some(Frame::Seq {
                    mark,
                    anchor,
                    items,
                }) = self.stack.pop()
                {
                    let node = Node {
                        kind: Kind::Seq(items),
                        line: mark.line,
                        column: mark.column,
                    };
                    self.push(node, anchor)?;
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Map {
                    mark,
                    anchor,
                    entries,
                    ..
                }) = self.stack.pop()
                {
                    // A block mapping's start mark is unreliable; its first key is where it begins.
                    let start = match entries.first() {
                        Some((key, _)) if (key.line, key.column) < (mark.line, mark.column) => {
                            Position {
                                line: key.line,
                                column: key.column,
                            }
                        }
                        _ => mark,
                    };
                    let entries = self.merge_and_check(entries);
                    let node = Node {
                        kind: Kind::Map(entries),
                        line: start.line,
                        column: start.column,
                    };
                    self.push(node, anchor)?;
                }
            }
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd => {}
        }
        Ok(())
    }

    /// Opens a collection, refusing one nested deeper than [`MAX_NESTING_DEPTH`].
    fn enter(&mut self, mark: Position) -> Result<(), ConfigError> {
        self.written_nodes += 1;
        if self.stack.len() < MAX_NESTING_DEPTH {
            return Ok(());
        }
        Err(self.fatal(
            mark,
            format!(
                "lists and mappings nest deeper than {MAX_NESTING_DEPTH} levels here (the limit is {MAX_NESTING_DEPTH})"
            ),
        ))
    }

    /// Counts a copy made for an anchor or an alias against the copy budget; `what` names it
    /// (only called when the budget is spent: finding an alias's name reads the text).
    fn charge_copy(
        &mut self,
        nodes: usize,
        bytes: usize,
        mark: Position,
        what: impl FnOnce(&Self) -> String,
    ) -> Result<(), ConfigError> {
        self.copied_nodes = self.copied_nodes.saturating_add(nodes);
        self.copied_bytes = self.copied_bytes.saturating_add(bytes);
        let node_limit = self
            .written_nodes
            .saturating_mul(ALIAS_EXPANSION_FACTOR)
            .clamp(ALIAS_EXPANSION_MIN_NODES, ALIAS_EXPANSION_MAX_NODES);
        if self.copied_nodes > node_limit {
            let what = what(self);
            return Err(self.fatal(
                mark,
                format!(
                    "{what} expands the document past the limit of {node_limit} copied nodes (anchors and aliases may copy {ALIAS_EXPANSION_FACTOR} times the {} nodes written, at least {ALIAS_EXPANSION_MIN_NODES}, at most {ALIAS_EXPANSION_MAX_NODES})",
                    self.written_nodes
                ),
            ));
        }
        if self.copied_bytes > ALIAS_EXPANSION_MAX_BYTES {
            let what = what(self);
            return Err(self.fatal(
                mark,
                format!(
                    "{what} expands the document past the limit of {ALIAS_EXPANSION_MAX_BYTES} bytes of copied text"
                ),
            ));
        }
        Ok(())
    }

    /// `` alias `*name` `` as written at `mark`, or `an alias`.
    fn alias_name(&self, mark: Position) -> String {
        let written = self
            .text
            .lines()
            .nth(mark.line.saturating_sub(1))
            .map(|line| {
                line.chars()
                    .skip(mark.column.saturating_sub(1))
                    .take_while(|c| !c.is_whitespace() && !matches!(c, ',' | '[' | ']' | '{' | '}'))
                    .collect::<String>()
            });
        match written {
            Some(name) if name.len() > 1 && name.starts_with('*') => format!("alias `{name}`"),
            _ => "an alias".to_string(),
        }
    }

    /// `` anchor `&name` `` written just before `mark` on its line, or `an anchor`.
    fn anchor_name(&self, mark: Position) -> String {
        let before: Option<String> = self
            .text
            .lines()
            .nth(mark.line.saturating_sub(1))
            .map(|line| line.chars().take(mark.column.saturating_sub(1)).collect());
        let name = before.as_deref().and_then(|before| {
            let word = before.trim_end().rsplit(char::is_whitespace).next()?;
            (word.len() > 1 && word.starts_with('&')).then(|| word.to_string())
        });
        match name {
            Some(name) => format!("anchor `{name}`"),
            None => "an anchor".to_string(),
        }
    }

    fn fatal(&self, mark: Position, message: String) -> ConfigError {
        ConfigError {
            file: self.file.to_string(),
            line: mark.line,
            column: mark.column,
            path: String::new(),
            message,
        }
    }

    fn push(&mut self, mut node: Node, anchor: usize) -> Result<(), ConfigError> {
        if anchor > 0 {
            let (nodes, bytes) = node.size();
            let mark = Position {
                line: node.line,
                column: node.column,
            };
            self.charge_copy(nodes, bytes, mark, |b| b.anchor_name(mark))?;
            let node = node.clone();
            self.anchors.insert(anchor, Anchored { node, nodes, bytes });
        }
        match self.stack.last_mut() {
            None => self.documents.push(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { entries, key, .. }) => match key.take() {
                None => *key = Some(node),
                Some(key) => {
                    // An empty value (`cpu:`) is marked where the next token starts; point at its key.
                    if node.is_null() && node.scalar() == Some("") {
                        node.line = key.line;
                        node.column = key.column;
                    }
                    entries.push((key, node));
                }
            },
        }
        Ok(())
    }

    /// Applies `<<` merge keys (explicit keys win) and reports duplicate keys, in time linear
    /// in the number of keys.
    fn merge_and_check(&mut self, entries: Vec<(Node, Node)>) -> Vec<(Node, Node)> {
        let mut merged: Vec<(Node, Node)> = Vec::with_capacity(entries.len());
        let mut names: HashSet<String> = HashSet::with_capacity(entries.len());
        let mut sources = Vec::new();
        for (key, value) in entries {
            let is_merge = matches!(&key.kind, Kind::Scalar { text, plain: true } if text == "<<");
            if is_merge {
                sources.push(value);
                continue;
            }
            if let Some(name) = key.scalar() {
                if !names.insert(name.to_string()) {
                    let message =
                        format!("duplicate key `{name}` (the same field is written twice)");
                    let error = key.error(self.file, "", message);
                    keep(&mut self.errors, &mut self.more, error);
                    continue;
                }
            }
            merged.push((key, value));
        }
        for source in sources {
            let maps = match source.kind {
                Kind::Map(entries) => vec![entries],
                Kind::Seq(items) => items
                    .into_iter()
                    .filter_map(|item| match item.kind {
                        Kind::Map(entries) => Some(entries),
                        _ => None,
                    })
                    .collect(),
                Kind::Scalar { .. } => Vec::new(),
            };
            for (key, value) in maps.into_iter().flatten() {
                let present = key
                    .scalar()
                    .is_some_and(|name| !names.insert(name.to_string()));
                if !present {
                    merged.push((key, value));
                }
            }
        }
        merged
    }
}

fn is_str_tag(tag: Option<&Tag>) -> bool {
    tag.is_some_and(|tag| tag.suffix == "str")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_ok(text: &str) -> Node {
        match load("t.yml", text) {
            Ok(Loaded {
                root: Some(node),
                errors,
                more: 0,
            }) if errors.is_empty() => node,
            Ok(loaded) => panic!("expected a clean document, got {:?}", loaded.errors),
            Err(error) => panic!("{error}"),
        }
    }

    #[test]
    fn positions_are_one_based_and_maps_start_at_their_first_key() {
        let root = load_ok("type: task\nresources:\n  gpu: A100\n");
        assert_eq!((root.line, root.column), (1, 1));
        let Kind::Map(entries) = &root.kind else {
            panic!("not a map")
        };
        let (_, resources) = &entries[1];
        assert_eq!((resources.line, resources.column), (3, 3));
        let Kind::Map(inner) = &resources.kind else {
            panic!("not a map")
        };
        assert_eq!((inner[0].1.line, inner[0].1.column), (3, 8));
    }

    #[test]
    fn scalars_keep_their_text_and_quoting() {
        let root = load_ok("python: 3.10\nname: \"8\"\n");
        let json = root.to_json("t.yml", "", &mut Vec::new());
        assert_eq!(json, serde_json::json!({"python": 3.1, "name": "8"}));
        let Kind::Map(entries) = &root.kind else {
            panic!("not a map")
        };
        assert_eq!(entries[0].1.scalar(), Some("3.10"));
    }

    #[test]
    fn aliases_and_merge_keys_expand() {
        let root = load_ok("base: &b {cpu: 2, memory: 8GB}\nres:\n  <<: *b\n  cpu: 4\n");
        let json = root.to_json("t.yml", "", &mut Vec::new());
        assert_eq!(json["res"], serde_json::json!({"cpu": 4, "memory": "8GB"}));
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let loaded = load("t.yml", "a: 1\nb: 2\na: 3\n").expect("loads");
        assert_eq!(loaded.errors[0].line, 3);
        assert!(loaded.errors[0].message.contains("duplicate key `a`"));
        let json = loaded
            .root
            .map(|root| root.to_json("t.yml", "", &mut Vec::new()));
        assert_eq!(json, Some(serde_json::json!({"a": 1, "b": 2})));
    }

    #[test]
    fn syntax_errors_have_positions() {
        let error = load("t.yml", "a: [1\nb: 2\n").err().expect("syntax error");
        assert_eq!((error.line, error.column), (2, 2));
        assert!(error.message.starts_with("YAML syntax error"));
    }

    #[test]
    fn empty_text_has_no_document() {
        let loaded = load("t.yml", "# nothing\n").expect("loads");
        assert!(loaded.root.is_none() && loaded.errors.is_empty());
    }
}

//! The one-line editor at the bottom of the dashboard (`:` views, `/` filter or search, `a` a
//! file path) and its completions: view names, and file names from the directory being typed.

use crate::ui::keys::Key;
use ratatui::crossterm::event::{KeyCode, KeyModifiers};
use std::path::{Path, PathBuf};

/// What a key did to the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edit {
    /// Esc: the line is dropped and what it did is undone.
    Cancel,
    /// Backspace on an empty line: it closes, like k9s.
    Close,
    /// Enter.
    Submit,
    /// The line (maybe) changed and stays open.
    Typed,
}

/// What the line is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptKind {
    /// `:runs`, `:fleets`, ... with completion.
    Command,
    /// `/text`: keeps the rows of the current table that contain it.
    Filter,
    /// `/text` in the log view: highlights it and jumps between matches.
    Search,
    /// The configuration file to apply, with file-name completion.
    ApplyPath,
}

impl PromptKind {
    pub fn label(self) -> &'static str {
        match self {
            PromptKind::Command => ":",
            PromptKind::Filter | PromptKind::Search => "/",
            PromptKind::ApplyPath => "apply file: ",
        }
    }
}

/// The commands of `:` (the first one that starts with what was typed wins).
pub const COMMANDS: &[&str] = &["runs", "fleets", "offers", "events", "help", "quit"];

#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    pub kind: PromptKind,
    pub input: String,
    /// Byte index of the cursor in `input`.
    pub cursor: usize,
    /// What the last tab found when it was not unique.
    pub candidates: Vec<String>,
}

impl Prompt {
    pub fn new(kind: PromptKind, input: &str) -> Prompt {
        Prompt {
            kind,
            input: input.to_string(),
            cursor: input.len(),
            candidates: Vec::new(),
        }
    }

    /// A key typed into the line (readline's keys: ctrl-w, ctrl-u, ctrl-a, ctrl-e).
    pub fn edit(&mut self, key: Key) -> Edit {
        let ctrl = key.mods.contains(KeyModifiers::CONTROL);
        match key.code {
            KeyCode::Esc => return Edit::Cancel,
            KeyCode::Enter => return Edit::Submit,
            KeyCode::Tab => self.complete(),
            KeyCode::Backspace if self.input.is_empty() => return Edit::Close,
            KeyCode::Backspace => {
                self.backspace();
            }
            KeyCode::Delete => self.delete(),
            KeyCode::Left => self.left(),
            KeyCode::Right => self.right(),
            KeyCode::Home => self.home(),
            KeyCode::End => self.end(),
            KeyCode::Char('w') if ctrl => self.delete_word(),
            KeyCode::Char('u') if ctrl => {
                self.input.clear();
                self.cursor = 0;
            }
            KeyCode::Char('a') if ctrl => self.home(),
            KeyCode::Char('e') if ctrl => self.end(),
            KeyCode::Char(c) if !ctrl => self.insert(c),
            _ => {}
        }
        Edit::Typed
    }

    pub fn insert(&mut self, c: char) {
        self.input.insert(self.cursor, c);
        self.cursor += c.len_utf8();
        self.candidates.clear();
    }

    /// Deletes the character before the cursor; false when there was none.
    pub fn backspace(&mut self) -> bool {
        let Some(c) = self.input[..self.cursor].chars().next_back() else {
            return false;
        };
        self.cursor -= c.len_utf8();
        self.input.remove(self.cursor);
        self.candidates.clear();
        true
    }

    pub fn delete(&mut self) {
        if self.cursor < self.input.len() {
            self.input.remove(self.cursor);
        }
    }

    pub fn left(&mut self) {
        if let Some(c) = self.input[..self.cursor].chars().next_back() {
            self.cursor -= c.len_utf8();
        }
    }

    pub fn right(&mut self) {
        if let Some(c) = self.input[self.cursor..].chars().next() {
            self.cursor += c.len_utf8();
        }
    }

    pub fn home(&mut self) {
        self.cursor = 0;
    }

    pub fn end(&mut self) {
        self.cursor = self.input.len();
    }

    /// Deletes the word before the cursor (ctrl-w).
    pub fn delete_word(&mut self) {
        let before = &self.input[..self.cursor];
        let trimmed = before.trim_end_matches(' ');
        let start = trimmed.rfind([' ', '/']).map(|i| i + 1).unwrap_or(0);
        self.input.replace_range(start..self.cursor, "");
        self.cursor = start;
    }

    /// The greyed-out rest of the command the input would complete to.
    pub fn suggestion(&self) -> Option<&'static str> {
        if self.kind != PromptKind::Command || self.input.is_empty() {
            return None;
        }
        command_match(&self.input).and_then(|c| c.strip_prefix(self.input.as_str()))
    }

    /// Tab: completes a command, or a file name from the directory in the input.
    pub fn complete(&mut self) {
        match self.kind {
            PromptKind::Command => {
                if let Some(c) = command_match(&self.input) {
                    self.input = c.to_string();
                    self.cursor = self.input.len();
                }
            }
            PromptKind::ApplyPath => {
                let (input, candidates) = complete_path(&self.input, &list_dir);
                self.input = input;
                self.cursor = self.input.len();
                self.candidates = candidates;
            }
            PromptKind::Filter | PromptKind::Search => {}
        }
    }
}

/// The first command starting with `input` (`f` -> `fleets`).
pub fn command_match(input: &str) -> Option<&'static str> {
    let input = input.trim();
    if input.is_empty() {
        return None;
    }
    COMMANDS.iter().copied().find(|c| c.starts_with(input))
}

/// Entries of a directory: (name, is a directory); unreadable directories have none.
pub fn list_dir(dir: &Path) -> Vec<(String, bool)> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(String, bool)> = rd
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let is_dir = e.path().is_dir();
            Some((name, is_dir))
        })
        .collect();
    out.sort();
    out
}

/// `~/x` -> `$HOME/x`.
pub fn expand_home(input: &str) -> PathBuf {
    if let Some(rest) = input.strip_prefix("~/") {
        if let Some(home) = std::env::var_os("HOME") {
            return PathBuf::from(home).join(rest);
        }
    }
    PathBuf::from(input)
}

/// Completes the last component of `input` among the entries `list` gives for its directory:
/// one match is completed (a directory gets its `/`); several are completed to their common
/// prefix and returned as candidates. Hidden files only when the prefix starts with a dot.
pub fn complete_path(
    input: &str,
    list: &dyn Fn(&Path) -> Vec<(String, bool)>,
) -> (String, Vec<String>) {
    let (dir_part, prefix) = match input.rfind('/') {
        Some(i) => (&input[..=i], &input[i + 1..]),
        None => ("", input),
    };
    let dir = if dir_part.is_empty() {
        PathBuf::from(".")
    } else {
        expand_home(dir_part)
    };
    let matches: Vec<(String, bool)> = list(&dir)
        .into_iter()
        .filter(|(n, _)| n.starts_with(prefix) && (prefix.starts_with('.') || !n.starts_with('.')))
        .collect();
    match matches.len() {
        0 => (input.to_string(), Vec::new()),
        1 => {
            let (name, is_dir) = &matches[0];
            let slash = if *is_dir { "/" } else { "" };
            (format!("{dir_part}{name}{slash}"), Vec::new())
        }
        _ => {
            let mut common = matches[0].0.clone();
            for (n, _) in &matches[1..] {
                let len = common
                    .char_indices()
                    .zip(n.chars())
                    .take_while(|((_, a), b)| a == b)
                    .last()
                    .map(|((i, a), _)| i + a.len_utf8())
                    .unwrap_or(0);
                common.truncate(len);
            }
            let names = matches
                .iter()
                .map(|(n, d)| if *d { format!("{n}/") } else { n.clone() })
                .collect();
            (format!("{dir_part}{common}"), names)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake(dir: &Path) -> Vec<(String, bool)> {
        match dir.to_str() {
            Some(".") => vec![
                (".hidden.yml".into(), false),
                ("configs".into(), true),
                ("task.dstack.yml".into(), false),
                ("train.dstack.yml".into(), false),
            ],
            Some("configs/") => vec![("serve.yml".into(), false)],
            _ => Vec::new(),
        }
    }

    #[test]
    fn a_unique_file_name_is_completed_and_a_directory_gets_its_slash() {
        assert_eq!(complete_path("c", &fake), ("configs/".into(), vec![]));
        assert_eq!(
            complete_path("configs/s", &fake),
            ("configs/serve.yml".into(), vec![])
        );
        assert_eq!(
            complete_path("ta", &fake),
            ("task.dstack.yml".into(), vec![])
        );
    }

    #[test]
    fn several_matches_complete_to_their_common_prefix() {
        let (input, c) = complete_path("t", &fake);
        assert_eq!(input, "t");
        assert_eq!(c, vec!["task.dstack.yml", "train.dstack.yml"]);
        let (input, c) = complete_path("", &fake);
        assert_eq!(input, "");
        assert_eq!(c.len(), 3, "hidden files stay hidden: {c:?}");
        assert_eq!(complete_path(".h", &fake).0, ".hidden.yml");
        assert_eq!(complete_path("zzz", &fake), ("zzz".into(), vec![]));
    }

    #[test]
    fn commands_complete_from_their_first_letters() {
        let mut p = Prompt::new(PromptKind::Command, "fl");
        assert_eq!(p.suggestion(), Some("eets"));
        p.complete();
        assert_eq!(p.input, "fleets");
        assert_eq!(command_match("e"), Some("events"));
        assert_eq!(command_match("x"), None);
    }

    #[test]
    fn editing_moves_by_characters() {
        let mut p = Prompt::new(PromptKind::Filter, "añb");
        p.left();
        p.backspace();
        assert_eq!(p.input, "ab");
        p.insert('é');
        assert_eq!(p.input, "aéb");
        p.end();
        p.delete_word();
        assert_eq!(p.input, "");
        assert!(!p.backspace());
    }
}

//! The key table: every binding as data (key, description, action, dangerous, where it applies).
//! The hint bar and the help screen are both generated from [`BINDINGS`], so they never drift.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// The views of the dashboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum View {
    Runs,
    Jobs,
    Fleets,
    Offers,
    Events,
    Logs,
}

impl View {
    pub fn name(self) -> &'static str {
        match self {
            View::Runs => "runs",
            View::Jobs => "jobs",
            View::Fleets => "fleets",
            View::Offers => "offers",
            View::Events => "events",
            View::Logs => "logs",
        }
    }

    fn bit(self) -> u8 {
        match self {
            View::Runs => RUNS.0,
            View::Jobs => JOBS.0,
            View::Fleets => FLEETS.0,
            View::Offers => OFFERS.0,
            View::Events => EVENTS.0,
            View::Logs => LOGS.0,
        }
    }
}

/// A set of views where a binding applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scope(u8);

pub const RUNS: Scope = Scope(1);
pub const JOBS: Scope = Scope(2);
pub const FLEETS: Scope = Scope(4);
pub const OFFERS: Scope = Scope(8);
pub const EVENTS: Scope = Scope(16);
pub const LOGS: Scope = Scope(32);
pub const RUN_VIEWS: Scope = Scope(RUNS.0 | JOBS.0);
pub const TABLES: Scope = Scope(RUNS.0 | JOBS.0 | FLEETS.0 | OFFERS.0 | EVENTS.0);
pub const ALL: Scope = Scope(TABLES.0 | LOGS.0);

impl Scope {
    pub fn contains(self, v: View) -> bool {
        self.0 & v.bit() != 0
    }

    /// `all views`, `tables`, or the views' names.
    pub fn label(self) -> String {
        if self == ALL {
            return "all views".into();
        }
        if self == TABLES {
            return "tables".into();
        }
        [
            View::Runs,
            View::Jobs,
            View::Fleets,
            View::Offers,
            View::Events,
            View::Logs,
        ]
        .iter()
        .filter(|v| self.contains(**v))
        .map(|v| v.name())
        .collect::<Vec<_>>()
        .join(", ")
    }
}

/// What a key does; [`crate::ui::app::App`] carries it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Quit,
    Help,
    CommandPrompt,
    Filter,
    Back,
    DrillDown,
    Logs,
    Shell,
    Apply,
    Stop,
    Abort,
    Delete,
    ToggleAll,
    Refresh,
    EditQuery,
    Up,
    Down,
    PageUp,
    PageDown,
    Top,
    Bottom,
    ToggleFollow,
    ToggleWrap,
    ToggleTimestamps,
    Search,
    NextMatch,
    PrevMatch,
}

/// A key with its modifiers (shift is folded into the character).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    pub code: KeyCode,
    pub mods: KeyModifiers,
}

impl Key {
    pub const fn plain(code: KeyCode) -> Key {
        Key {
            code,
            mods: KeyModifiers::NONE,
        }
    }
    pub const fn ch(c: char) -> Key {
        Key::plain(KeyCode::Char(c))
    }
    pub const fn ctrl(c: char) -> Key {
        Key {
            code: KeyCode::Char(c),
            mods: KeyModifiers::CONTROL,
        }
    }

    /// The key of a terminal event: `G` arrives as shift+`G`, which is just `G` here.
    pub fn from_event(e: &KeyEvent) -> Key {
        let mut mods =
            e.modifiers & (KeyModifiers::CONTROL | KeyModifiers::ALT | KeyModifiers::SHIFT);
        let code = match e.code {
            KeyCode::Char(c) => {
                mods.remove(KeyModifiers::SHIFT);
                if mods.contains(KeyModifiers::CONTROL) {
                    KeyCode::Char(c.to_ascii_lowercase())
                } else {
                    KeyCode::Char(c)
                }
            }
            KeyCode::BackTab => {
                mods.remove(KeyModifiers::SHIFT);
                KeyCode::BackTab
            }
            other => other,
        };
        Key { code, mods }
    }

    /// `ctrl-s`, `enter`, `esc`, `pgdn`, `?`, `G`.
    pub fn label(&self) -> String {
        let base = match self.code {
            KeyCode::Char(' ') => "space".to_string(),
            KeyCode::Char(c) => c.to_string(),
            KeyCode::Enter => "enter".into(),
            KeyCode::Esc => "esc".into(),
            KeyCode::Up => "↑".into(),
            KeyCode::Down => "↓".into(),
            KeyCode::Left => "←".into(),
            KeyCode::Right => "→".into(),
            KeyCode::PageUp => "pgup".into(),
            KeyCode::PageDown => "pgdn".into(),
            KeyCode::Home => "home".into(),
            KeyCode::End => "end".into(),
            KeyCode::Tab => "tab".into(),
            KeyCode::BackTab => "shift-tab".into(),
            KeyCode::Backspace => "backspace".into(),
            other => format!("{other:?}").to_lowercase(),
        };
        if self.mods.contains(KeyModifiers::CONTROL) {
            format!("ctrl-{base}")
        } else if self.mods.contains(KeyModifiers::ALT) {
            format!("alt-{base}")
        } else {
            base
        }
    }
}

/// One row of the key table.
#[derive(Debug, Clone, Copy)]
pub struct Binding {
    pub key: Key,
    pub description: &'static str,
    pub action: Action,
    /// Stops or deletes something (shown in red; always asks first).
    pub dangerous: bool,
    pub scope: Scope,
    /// Shown in the hint bar (the help screen shows every binding).
    pub hint: bool,
}

const fn bind(key: Key, description: &'static str, action: Action, scope: Scope) -> Binding {
    Binding {
        key,
        description,
        action,
        dangerous: false,
        scope,
        hint: true,
    }
}

const fn quiet(key: Key, description: &'static str, action: Action, scope: Scope) -> Binding {
    Binding {
        key,
        description,
        action,
        dangerous: false,
        scope,
        hint: false,
    }
}

const fn danger(key: Key, description: &'static str, action: Action, scope: Scope) -> Binding {
    Binding {
        key,
        description,
        action,
        dangerous: true,
        scope,
        hint: true,
    }
}

/// The dashboard's keys, in the order the hint bar and the help screen show them.
pub const BINDINGS: &[Binding] = &[
    bind(Key::ch('?'), "help", Action::Help, ALL),
    bind(Key::ch(':'), "view", Action::CommandPrompt, ALL),
    bind(Key::ch('/'), "filter", Action::Filter, TABLES),
    bind(Key::ch('/'), "search", Action::Search, LOGS),
    bind(Key::plain(KeyCode::Enter), "jobs", Action::DrillDown, RUNS),
    bind(
        Key::plain(KeyCode::Enter),
        "go to run",
        Action::DrillDown,
        EVENTS,
    ),
    bind(Key::ch('l'), "logs", Action::Logs, RUN_VIEWS),
    bind(Key::ch('s'), "shell", Action::Shell, RUN_VIEWS),
    bind(Key::ch('a'), "apply", Action::Apply, RUNS),
    danger(Key::ctrl('s'), "stop", Action::Stop, RUN_VIEWS),
    danger(Key::ctrl('k'), "abort", Action::Abort, RUN_VIEWS),
    danger(Key::ctrl('d'), "delete", Action::Delete, RUN_VIEWS),
    bind(Key::ch('e'), "edit query", Action::EditQuery, OFFERS),
    bind(Key::ch('f'), "follow", Action::ToggleFollow, LOGS),
    bind(Key::ch('w'), "wrap", Action::ToggleWrap, LOGS),
    bind(Key::ch('t'), "timestamps", Action::ToggleTimestamps, LOGS),
    bind(Key::ch('n'), "next match", Action::NextMatch, LOGS),
    quiet(Key::ch('N'), "previous match", Action::PrevMatch, LOGS),
    quiet(
        Key::ctrl('a'),
        "all runs / active runs",
        Action::ToggleAll,
        RUNS,
    ),
    quiet(Key::ctrl('r'), "refresh", Action::Refresh, TABLES),
    bind(Key::plain(KeyCode::Esc), "back", Action::Back, ALL),
    quiet(Key::ch('q'), "back", Action::Back, LOGS),
    quiet(Key::ch('q'), "quit", Action::Quit, TABLES),
    quiet(Key::ctrl('c'), "quit", Action::Quit, ALL),
    quiet(Key::plain(KeyCode::Up), "up", Action::Up, ALL),
    quiet(Key::ch('k'), "up", Action::Up, ALL),
    quiet(Key::plain(KeyCode::Down), "down", Action::Down, ALL),
    quiet(Key::ch('j'), "down", Action::Down, ALL),
    quiet(Key::plain(KeyCode::PageUp), "page up", Action::PageUp, ALL),
    quiet(Key::ctrl('b'), "page up", Action::PageUp, ALL),
    quiet(
        Key::plain(KeyCode::PageDown),
        "page down",
        Action::PageDown,
        ALL,
    ),
    quiet(Key::ctrl('f'), "page down", Action::PageDown, ALL),
    quiet(Key::plain(KeyCode::Home), "top", Action::Top, ALL),
    quiet(Key::ch('g'), "top", Action::Top, ALL),
    quiet(Key::plain(KeyCode::End), "bottom", Action::Bottom, ALL),
    quiet(Key::ch('G'), "bottom", Action::Bottom, ALL),
];

/// The binding of `key` in `view`, if any.
pub fn lookup(view: View, key: Key) -> Option<&'static Binding> {
    BINDINGS
        .iter()
        .find(|b| b.key == key && b.scope.contains(view))
}

/// The bindings shown in the hint bar of `view`.
pub fn hints(view: View) -> impl Iterator<Item = &'static Binding> {
    BINDINGS
        .iter()
        .filter(move |b| b.hint && b.scope.contains(view))
}

/// One line of the help screen: the keys of one action in one scope (`↑/k  up`).
#[derive(Debug, Clone, PartialEq)]
pub struct HelpEntry {
    pub keys: String,
    pub description: &'static str,
    pub dangerous: bool,
    pub scope: String,
}

/// Every binding, keys of the same action and scope merged, in table order.
pub fn help_entries() -> Vec<HelpEntry> {
    let mut out: Vec<(Action, Scope, HelpEntry)> = Vec::new();
    for b in BINDINGS {
        if let Some((_, _, e)) = out
            .iter_mut()
            .find(|(a, s, e)| *a == b.action && *s == b.scope && e.description == b.description)
        {
            e.keys.push('/');
            e.keys.push_str(&b.key.label());
            continue;
        }
        out.push((
            b.action,
            b.scope,
            HelpEntry {
                keys: b.key.label(),
                description: b.description,
                dangerous: b.dangerous,
                scope: b.scope.label(),
            },
        ));
    }
    out.into_iter().map(|(_, _, e)| e).collect()
}

/// The help screen's first line after `key` (the moves of the key table), from `scroll`.
pub fn help_scroll(scroll: usize, key: Key) -> usize {
    let last = help_entries().len().saturating_sub(1);
    match lookup(View::Runs, key).map(|b| b.action) {
        Some(Action::Down) => (scroll + 1).min(last),
        Some(Action::Up) => scroll.saturating_sub(1),
        Some(Action::PageDown) => (scroll + 10).min(last),
        Some(Action::PageUp) => scroll.saturating_sub(10),
        Some(Action::Top) => 0,
        Some(Action::Bottom) => last,
        _ => scroll,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::crossterm::event::KeyEventKind;

    fn ev(code: KeyCode, mods: KeyModifiers) -> KeyEvent {
        KeyEvent {
            code,
            modifiers: mods,
            kind: KeyEventKind::Press,
            state: ratatui::crossterm::event::KeyEventState::NONE,
        }
    }

    #[test]
    fn shift_is_folded_into_characters_and_ctrl_is_kept() {
        assert_eq!(
            Key::from_event(&ev(KeyCode::Char('G'), KeyModifiers::SHIFT)),
            Key::ch('G')
        );
        assert_eq!(
            Key::from_event(&ev(KeyCode::Char('s'), KeyModifiers::CONTROL)),
            Key::ctrl('s')
        );
        assert_eq!(Key::ctrl('s').label(), "ctrl-s");
    }

    #[test]
    fn one_binding_per_key_and_view() {
        for v in [
            View::Runs,
            View::Jobs,
            View::Fleets,
            View::Offers,
            View::Events,
            View::Logs,
        ] {
            for (i, a) in BINDINGS.iter().enumerate() {
                for b in &BINDINGS[i + 1..] {
                    assert!(
                        !(a.key == b.key && a.scope.contains(v) && b.scope.contains(v)),
                        "{} bound twice in {}",
                        a.key.label(),
                        v.name()
                    );
                }
            }
        }
    }

    #[test]
    fn dangerous_actions_are_marked() {
        for b in BINDINGS {
            let expected = matches!(b.action, Action::Stop | Action::Abort | Action::Delete);
            assert_eq!(b.dangerous, expected, "{}", b.description);
        }
    }

    #[test]
    fn help_merges_keys_of_one_action() {
        let help = help_entries();
        let up = help.iter().find(|e| e.description == "up").expect("up");
        assert_eq!(up.keys, "↑/k");
        assert!(help.iter().any(|e| e.keys == "ctrl-s" && e.dangerous));
    }
}

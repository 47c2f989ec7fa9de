//! Styles of the dashboard: the terminal's own foreground and background, a few accent colours
//! that read on dark and light terminals, and none at all under `NO_COLOR`.

use ratatui::style::{Color, Modifier, Style};

/// Every style the views use, so that `NO_COLOR` is honoured in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Theme {
    pub color: bool,
}

impl Theme {
    /// Colours unless `NO_COLOR` is set to a non-empty value (<https://no-color.org>).
    pub fn from_env() -> Theme {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Theme { color: !no_color }
    }

    fn fg(&self, c: Color) -> Style {
        if self.color {
            Style::new().fg(c)
        } else {
            Style::new()
        }
    }

    pub fn normal(&self) -> Style {
        Style::new()
    }
    pub fn dim(&self) -> Style {
        Style::new().add_modifier(Modifier::DIM)
    }
    pub fn bold(&self) -> Style {
        Style::new().add_modifier(Modifier::BOLD)
    }
    /// Titles, key names in the hint bar, the current view.
    pub fn accent(&self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }
    pub fn good(&self) -> Style {
        self.fg(Color::Green)
    }
    pub fn warn(&self) -> Style {
        self.fg(Color::Yellow)
    }
    pub fn error(&self) -> Style {
        if self.color {
            Style::new().fg(Color::Red)
        } else {
            Style::new().add_modifier(Modifier::BOLD)
        }
    }
    /// Keys that destroy or stop something.
    pub fn danger(&self) -> Style {
        if self.color {
            Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)
        } else {
            Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED)
        }
    }
    /// The selected row.
    pub fn selected(&self) -> Style {
        Style::new().add_modifier(Modifier::REVERSED | Modifier::BOLD)
    }
    /// A cell whose value just changed.
    pub fn changed(&self) -> Style {
        if self.color {
            Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD)
        } else {
            Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED)
        }
    }
    /// A search match in the log view.
    pub fn matched(&self) -> Style {
        if self.color {
            Style::new().bg(Color::Yellow).fg(Color::Black)
        } else {
            Style::new().add_modifier(Modifier::REVERSED)
        }
    }
    /// Colour of a status word: running green, waiting yellow, failed red, finished dim.
    pub fn status(&self, status: &str) -> Style {
        // A service replica's readiness follows its status: `running (not ready)`.
        let status = status.split(" (").next().unwrap_or(status);
        match status {
            "running" | "busy" | "active" | "available" => self.good(),
            "pending" | "submitted" | "provisioning" | "pulling" | "terminating" => self.warn(),
            "failed" | "aborted" | "not_available" | "no_quota" => self.error(),
            "terminated" | "done" => self.dim(),
            _ => self.normal(),
        }
    }
}

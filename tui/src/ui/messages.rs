//! What crosses between the dashboard and its daemon side: [`Command`]s the dashboard queues for
//! the daemon (or the terminal), and the [`Msg`]s the daemon side sends back.

use crate::ui::shell::ShellSpec;
use flotilla_protocol::model::{Event, Fleet, Run};
use flotilla_protocol::rpc::{
    HelloResult, LogTarget, MetricsParams, MetricsResult, OfferList, OfferQuery, RunApplyParams,
    RunPlan,
};
use flotilla_protocol::Timestamp;

/// What the dashboard asks of the daemon (or of the terminal, for `Shell` and `Quit`).
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    LoadRuns {
        all: bool,
    },
    LoadRun {
        name: String,
    },
    LoadFleets,
    LoadEvents,
    LoadOffers(OfferQuery),
    Metrics {
        key: String,
        params: MetricsParams,
    },
    /// Read and check the file, then `run.plan`.
    Plan {
        path: String,
    },
    Apply(RunApplyParams),
    Stop {
        name: String,
        abort: bool,
    },
    Delete {
        name: String,
    },
    /// History (the last window) then live bytes, on a connection of its own.
    OpenLog {
        session: u64,
        target: LogTarget,
    },
    ReadLog {
        session: u64,
        target: LogTarget,
        purpose: LogRead,
        offset: u64,
        limit: u64,
    },
    CloseLog {
        session: u64,
    },
    /// Hand the terminal to a shell, then take it back.
    Shell(ShellSpec),
    Quit,
}

/// Why a window of a log was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogRead {
    /// The last window (opening, `G`): replaces the window.
    Tail,
    /// The first window (`g`): replaces the window.
    Head,
    /// The window before the current one (scrolling up).
    Older,
    /// The bytes after the current window (scrolling down, or a gap while following).
    Newer,
}

/// What the daemon side reports.
#[derive(Debug, Clone, PartialEq)]
pub enum Msg {
    Connected(HelloResult),
    Disconnected {
        attempt: u32,
        error: String,
    },
    Runs(Result<Vec<Run>, String>),
    /// `Ok(None)`: the run is gone.
    Run {
        name: String,
        result: Result<Option<Run>, String>,
    },
    Fleets(Result<Vec<Fleet>, String>),
    Events(Result<Vec<Event>, String>),
    Event(Event),
    Offers(Result<OfferList, String>),
    Metrics {
        key: String,
        result: Result<MetricsResult, String>,
    },
    /// The daemon has no `metrics.get`: no sparklines, no errors.
    MetricsUnsupported,
    Plan {
        path: String,
        params: RunApplyParams,
        plan: RunPlan,
    },
    Applied(Run),
    Deleted(String),
    LogRead {
        session: u64,
        purpose: LogRead,
        offset: u64,
        bytes: Vec<u8>,
        size: u64,
    },
    /// Live bytes, batched.
    LogAppend {
        session: u64,
        offset: u64,
        bytes: Vec<u8>,
        arrived: Timestamp,
    },
    LogEnded {
        session: u64,
        summary: String,
    },
    LogError {
        session: u64,
        error: String,
    },
    Info(String),
    Error(String),
}

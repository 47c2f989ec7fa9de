//! How a user reaches a run: the ports its configuration forwards, its `ssh` name and its IDE
//! link. One home for what `attach` prints and the dashboard shows.

use flotilla_protocol::config::{PortMapping, RunConfiguration};
use flotilla_protocol::model::Run;

/// The ports a run's configuration asks to forward: `ports`, and a service's `port`.
pub fn run_ports(configuration: &RunConfiguration) -> Vec<PortMapping> {
    let mut ports = configuration.common().ports.clone();
    if let RunConfiguration::Service(service) = configuration {
        if let Some(p) = service.port {
            if !ports.iter().any(|q| q.container == p.container) {
                ports.push(p);
            }
        }
    }
    ports
}

/// The link that opens a dev environment in its `ide` (`vscode`, `cursor`, `windsurf`) over
/// `ssh RUN`; `None` for other runs or without `ide`.
pub fn ide_link(run: &Run) -> Option<String> {
    let RunConfiguration::DevEnvironment(dev) = &run.configuration else {
        return None;
    };
    let scheme = match dev.ide.as_deref()? {
        "vscode" => "vscode",
        "cursor" => "cursor",
        "windsurf" => "windsurf",
        _ => return None,
    };
    Some(format!(
        "{scheme}://vscode-remote/ssh-remote+{}{}",
        run.name,
        ide_path(run)
    ))
}

/// The folder an IDE opens: the job's working directory.
fn ide_path(run: &Run) -> String {
    let common = run.configuration.common();
    match &common.working_dir {
        Some(w) if w.starts_with('/') => w.clone(),
        Some(w) => format!("/workflow/{w}"),
        None => run
            .jobs
            .first()
            .and_then(|j| j.current.job_dir.clone())
            .map(|d| format!("{d}/work"))
            .unwrap_or_else(|| "/".into()),
    }
}

/// One line for the dashboard: the ports `attach` forwards, `ssh RUN`, and the IDE link.
pub fn access_line(run: &Run) -> String {
    let mut parts = Vec::new();
    let ports = run_ports(&run.configuration);
    if !ports.is_empty() {
        let list: Vec<String> = ports.iter().map(|p| p.to_string()).collect();
        parts.push(format!("ports {}", list.join(" ")));
    }
    if !run.status.is_finished() {
        parts.push(format!("ssh {}", run.name));
        if let Some(link) = ide_link(run) {
            parts.push(link);
        }
    }
    parts.join("  ·  ")
}

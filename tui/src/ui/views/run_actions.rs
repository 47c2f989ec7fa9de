//! What the run views (runs, jobs) do to the run or job under the cursor: its logs, a shell in
//! it, stop, abort and delete (each asked first). They return requests; nothing runs here.

use crate::ui::component::{Dialog, Request};
use crate::ui::keys::Action;
use crate::ui::messages::Command;
use crate::ui::shell::{self, ShellSpec, SshVia};
use crate::ui::store::Store;
use flotilla_protocol::model::{Job, Run};
use flotilla_protocol::rpc::LogTarget;

/// The requests of `action` on `run` and its job `job` (`submission`: an earlier submission
/// of it, `None` for the current one).
pub fn on_run(
    action: Action,
    run: &Run,
    job: Option<&Job>,
    submission: Option<u32>,
) -> Vec<Request> {
    let target = |job: &Job| LogTarget {
        run: run.name.clone(),
        replica: job.replica_num,
        job: job.job_num,
        submission,
    };
    match action {
        Action::Logs => {
            let Some(job) = job else { return vec![] };
            let mut title = format!("{} {}/{}", run.name, job.replica_num, job.job_num);
            if let Some(s) = submission {
                title.push_str(&format!(" #{s}"));
            }
            vec![Request::OpenLogs {
                target: target(job),
                title,
            }]
        }
        Action::Shell => job.map(|j| Request::Shell(target(j))).into_iter().collect(),
        Action::Stop => vec![confirm_stop(run, false)],
        Action::Abort => vec![confirm_stop(run, true)],
        Action::Delete => vec![confirm_delete(run)],
        _ => vec![],
    }
}

/// How to open a shell in the job at `target` (`Err`: why not, or what to type instead);
/// `None` when the job is not known.
pub fn shell_spec(
    store: &Store,
    target: &LogTarget,
    user_shell: Option<&str>,
    ssh_via: Option<&SshVia>,
) -> Option<Result<ShellSpec, String>> {
    let run = store.run_named(&target.run)?;
    let job = run
        .jobs
        .iter()
        .find(|j| j.replica_num == target.replica && j.job_num == target.job)?;
    let sub = match target.submission {
        None => &job.current,
        Some(n) => job
            .previous_submissions
            .iter()
            .find(|s| s.submission_num == n)?,
    };
    Some(shell::spec(run, job, sub, user_shell, ssh_via))
}

fn confirm_stop(run: &Run, abort: bool) -> Request {
    let name = run.name.clone();
    if run.status.is_finished() {
        return Request::Flash {
            text: format!("run {name} is already {}", run.status),
            error: false,
        };
    }
    let (title, lines, question) = if abort {
        (
            "Abort".to_string(),
            vec![format!(
                "Abort the run {name}: its jobs are killed at once (SIGKILL)."
            )],
            format!("Abort {name}?"),
        )
    } else {
        let grace = run
            .configuration
            .common()
            .policy
            .stop_duration
            .map(flotilla_protocol::config::format_duration)
            .unwrap_or_else(|| "no limit".into());
        (
            "Stop".to_string(),
            vec![format!(
                "Stop the run {name}: SIGTERM, then SIGKILL after its stop_duration ({grace})."
            )],
            format!("Stop {name}?"),
        )
    };
    Request::Confirm(Box::new(Dialog {
        title,
        lines,
        question,
        on_confirm: Command::Stop { name, abort },
        dangerous: true,
    }))
}

fn confirm_delete(run: &Run) -> Request {
    let name = run.name.clone();
    if !run.status.is_finished() {
        return Request::Flash {
            text: format!(
                "run {name} is {}; stop it first (ctrl-s), then delete it",
                run.status
            ),
            error: true,
        };
    }
    Request::Confirm(Box::new(Dialog {
        title: "Delete".into(),
        lines: vec![format!(
            "Delete the run {name} and its logs. This cannot be undone."
        )],
        question: format!("Delete {name}?"),
        on_confirm: Command::Delete { name },
        dangerous: true,
    }))
}

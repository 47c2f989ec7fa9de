//! `flotilla apply -f FILE [-y] [-d]`: validate locally, show the plan, submit, then attach
//! (forward the run's ports, follow the logs to the end) unless `-d`.

use super::confirm;
use crate::config_file::{self, run_params};
use crate::connect::{connect_or_start, Target};
use crate::table::{price, print_offers, resources};
use anyhow::anyhow;
use flotilla_protocol::client::{Client, StreamItem};
use flotilla_protocol::config::RunConfiguration;
use flotilla_protocol::model::Run;
use flotilla_protocol::rpc::{
    methods, LogTarget, LogsFollowEnd, LogsFollowParams, RunNameParams, RunPlan, RunUpdate,
};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args)]
pub struct Args {
    /// The configuration file
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,
    /// Do not ask for confirmation
    #[arg(short = 'y', long = "yes")]
    pub yes: bool,
    /// Submit and return without following the logs
    #[arg(short = 'd', long = "detach")]
    pub detach: bool,
    /// The run's name (overrides `name` in the file)
    #[arg(short = 'n', long)]
    pub name: Option<String>,
}

pub async fn run(target: &Target, args: Args) -> anyhow::Result<ExitCode> {
    let file_name = args.file.display().to_string();
    // Every error in the file, with line and column, before anything is sent.
    let (text, config) = match config_file::read(&args.file, &file_name) {
        Ok(read) => read,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    if let flotilla_protocol::config::Configuration::Fleet(_) = &config {
        return super::fleet::apply(target, &file_name, text, args.yes).await;
    }
    let Some(run_config) = config.as_run() else {
        return Err(anyhow!(
            "{file_name} is a {} configuration; only tasks, services, dev environments and fleets can be applied yet",
            config.type_name()
        ));
    };
    let mut params = run_params(&run_config, &file_name, text);
    params.name = args.name.clone();
    let client = connect_or_start(target).await?;
    let plan = client.call::<methods::RunPlan>(&params).await?;
    print_plan(
        &plan,
        &file_name,
        &resources(&run_config.common().resources),
    );
    if let Some(update) = &plan.update {
        print_update(&plan.run_name, update);
        if update.refusal.is_some() {
            return Ok(ExitCode::FAILURE);
        }
    }
    // `files` and local `repos`, packed once the file is known good (a missing path is an
    // error before the confirmation); sent after it.
    let packed = crate::uploads::pack_run(&run_config, &args.file)?;
    if !args.yes {
        let what = if plan.update.is_some() {
            format!("Update the run {}?", plan.run_name)
        } else if plan.run_name.is_empty() {
            "Submit a new run?".to_string()
        } else {
            format!("Submit the run {}?", plan.run_name)
        };
        if !confirm(&what)? {
            println!("Cancelled.");
            return Ok(ExitCode::FAILURE);
        }
    }
    params.archives = crate::uploads::upload_all(target, packed).await?;
    let run = client.call::<methods::RunApply>(&params).await?;
    if plan.update.is_some() {
        // A rolling update: the new replicas start beside the old ones, which stop once the
        // new ones are ready. Nothing to attach to that `ps` does not show better.
        eprintln!(
            "Updated run {} (deployment {}); `flotilla ps -v` shows its replicas",
            run.name, run.deployment_num
        );
        println!("{}", run.name);
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("Submitted run {}", run.name);
    if let Some(service) = &run.service {
        for line in super::runs::service_lines(&run.name, service) {
            eprintln!("{line}");
        }
    }
    if let Some(at) = run.next_triggered_at {
        // A scheduled run starts later, and again after each end: nothing to follow now.
        eprintln!(
            "Run {} is scheduled: its first start is at {at} (UTC); `flotilla ps` shows the next start, `flotilla logs -f {}` follows it once started",
            run.name, run.name
        );
    }
    if args.detach || run.next_triggered_at.is_some() {
        println!("{}", run.name);
        return Ok(ExitCode::SUCCESS);
    }
    // dstack's behaviour: `apply` attaches (ports forwarded) unless `-d`.
    if !crate::run_access::run_ports(&run.configuration).is_empty()
        || matches!(run.configuration, RunConfiguration::DevEnvironment(_))
    {
        return super::attach::attach(target, &client, &run.name, 0, 0, &[], true).await;
    }
    follow_run(&client, &run.name).await
}

fn print_plan(plan: &RunPlan, file: &str, wanted: &str) {
    let job = plan.jobs.first();
    println!(" Configuration  {file}");
    println!(" Type           {}", plan.configuration_type);
    println!(" User           {}", plan.user);
    println!(" Resources      {wanted}");
    if let (Some(status), None) = (&plan.current_run_status, &plan.update) {
        println!(" Replaces       {} ({status})", plan.run_name);
    }
    println!();
    let Some(job) = job else { return };
    if job.offers.is_empty() {
        println!(" No offers match: the run will fail with no capacity unless a fleet changes.");
        return;
    }
    print_offers(&job.offers);
    println!(
        " Shown {} of {} offers, {} max",
        job.offers.len(),
        job.total_offers,
        price(job.max_price.unwrap_or(0.0))
    );
    println!();
}

/// What re-applying changes in the active run, as dstack prints it: the changed fields with
/// their old and new values, and whether the run can be updated in place.
fn print_update(name: &str, update: &RunUpdate) {
    let verdict = if update.refusal.is_none() {
        "can"
    } else {
        "cannot"
    };
    if update.changes.is_empty() {
        println!("Active run {name} already exists. Detected no changes.");
    } else {
        println!("Active run {name} already exists. Detected changes that {verdict} be updated in-place:");
        for c in &update.changes {
            println!("  - {}: {} -> {}", c.field, brief(&c.old), brief(&c.new));
        }
    }
    if let Some(why) = &update.refusal {
        eprintln!("{why}");
    }
    println!();
}

/// A changed value on one line (JSON, without the quotes of a plain string), cut at 80 chars.
fn brief(v: &serde_json::Value) -> String {
    let text = match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "(not set)".into(),
        other => other.to_string(),
    };
    if text.chars().count() > 80 {
        format!("{}...", text.chars().take(77).collect::<String>())
    } else {
        text
    }
}

/// Streams the first job's log to stdout until the run ends; the exit code tells how it ended.
pub async fn follow_run(client: &Client, name: &str) -> anyhow::Result<ExitCode> {
    let target = LogTarget {
        run: name.to_string(),
        replica: 0,
        job: 0,
        submission: None,
    };
    let (run, end) = follow_until_run_ends(client, target, false).await?;
    report_end(&run, end.as_ref())
}

/// How often the run is looked at while its other jobs or a retry are awaited.
const RUN_POLL: Duration = Duration::from_millis(250);

/// Writes a job's latest log to stdout until the run itself has ended: a job that ends while other
/// nodes run is not the end, and neither is a failed submission the run retries (the retry's
/// log follows). Returns the finished run and how the last followed submission ended.
/// `attach`: the follower counts as an attached client of the run (a dev environment is not
/// inactive while it follows).
pub async fn follow_until_run_ends(
    client: &Client,
    target: LogTarget,
    attach: bool,
) -> anyhow::Result<(Run, Option<LogsFollowEnd>)> {
    let mut followed: Option<u64> = None;
    let mut end = None;
    loop {
        let run = client
            .call::<methods::RunGet>(&RunNameParams {
                name: target.run.clone(),
            })
            .await?;
        let current = run.job(target.replica, target.job).map(|j| j.current.id);
        if followed.is_none() || current != followed {
            // A submission not followed yet (the first, or a retry): its log, from the start.
            // (A job that does not exist gets the daemon's "no job" error here.)
            followed = current;
            end = follow_log(client, target.clone(), 0, attach).await?;
            continue;
        }
        if run.status.is_finished() {
            return Ok((run, end));
        }
        tokio::time::sleep(RUN_POLL).await;
    }
}

/// Writes a log to stdout from `offset` until the job ends; `None` when the daemon went away.
pub async fn follow_log(
    client: &Client,
    target: LogTarget,
    offset: u64,
    attach: bool,
) -> anyhow::Result<Option<LogsFollowEnd>> {
    let mut sub = client
        .subscribe::<methods::LogsFollow>(&LogsFollowParams {
            target,
            offset,
            attach,
        })
        .await?;
    let stdout = std::io::stdout();
    while let Some(item) = sub.next().await {
        match item {
            StreamItem::Item(chunk) => {
                let bytes = chunk.bytes().map_err(|e| anyhow!(e))?;
                let mut out = stdout.lock();
                out.write_all(&bytes)?;
                out.flush()?;
            }
            StreamItem::End(Ok(end)) => return Ok(Some(end)),
            StreamItem::End(Err(e)) => return Err(anyhow!(e)),
        }
    }
    Ok(None)
}

pub fn report_end(run: &Run, end: Option<&LogsFollowEnd>) -> anyhow::Result<ExitCode> {
    let reason = run
        .termination_reason
        .map(|r| r.to_string())
        .unwrap_or_default();
    let exit = end
        .and_then(|e| e.exit_code)
        .map(|c| format!(", exit code {c}"))
        .unwrap_or_default();
    let message = run
        .status_message
        .as_ref()
        .map(|m| format!(": {m}"))
        .unwrap_or_default();
    if run.status == flotilla_protocol::model::RunStatus::Done {
        eprintln!("Run {} done", run.name);
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("Run {} {} ({reason}{exit}){message}", run.name, run.status);
    Ok(ExitCode::FAILURE)
}

//! `ps`, `logs`, `stop` and `delete`: runs as a table or JSON, their logs, and ending them.

use super::apply::{follow_log, follow_until_run_ends};
use super::{confirm, print_json};
use crate::connect::{connect_or_start as connect, Target};
use crate::table::{ago, price, print_table};
use anyhow::anyhow;
use flotilla_protocol::config::{RunConfiguration, DEFAULT_REPLICA_GROUP};
use flotilla_protocol::model::{Job, JobTerminationReason, Run, ServiceEndpoint};
use flotilla_protocol::rpc::{
    methods, LogTarget, LogsReadParams, LogsReadResult, RunListParams, RunNameParams, RunStopParams,
};
use flotilla_protocol::Timestamp;
use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct PsArgs {
    /// All runs, finished ones too
    #[arg(short = 'a', long)]
    pub all: bool,
    /// JSON: an array of runs with their jobs
    #[arg(long)]
    pub json: bool,
    /// Every job of every run on a row of its own (a service's replicas with their readiness)
    #[arg(short = 'v', long)]
    pub verbose: bool,
}

#[derive(clap::Args)]
pub struct LogsArgs {
    pub run: String,
    /// Keep following until the job ends
    #[arg(short = 'f', long)]
    pub follow: bool,
    #[arg(long, default_value_t = 0)]
    pub replica: u32,
    #[arg(long, default_value_t = 0)]
    pub job: u32,
    /// An earlier submission (attempt) of the job
    #[arg(long)]
    pub submission: Option<u32>,
}

#[derive(clap::Args)]
pub struct StopArgs {
    pub run: String,
    /// Abort: kill at once instead of SIGTERM and the stop_duration grace
    #[arg(short = 'x', long)]
    pub abort: bool,
    /// Do not ask for confirmation
    #[arg(short = 'y', long)]
    pub yes: bool,
}

#[derive(clap::Args)]
pub struct DeleteArgs {
    pub run: String,
    #[arg(short = 'y', long)]
    pub yes: bool,
}

pub async fn ps(target: &Target, args: PsArgs) -> anyhow::Result<ExitCode> {
    let client = connect(target).await?;
    let runs: Vec<Run> = client
        .call::<methods::RunList>(&RunListParams { all: args.all })
        .await?;
    let now = Timestamp::now();
    if args.json {
        // Each run with `cost`: dollars so far (price per hour of each job's share times the
        // time it ran).
        let mut out = Vec::with_capacity(runs.len());
        for r in &runs {
            let mut v = serde_json::to_value(r)?;
            if let serde_json::Value::Object(m) = &mut v {
                m.insert("cost".into(), serde_json::json!(round_cents(r.cost(now))));
            }
            out.push(v);
        }
        print_json(&out)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = Vec::new();
    for r in &runs {
        let job = r.jobs.first();
        let backend = job
            .and_then(|j| j.current.instance.clone())
            .unwrap_or_else(|| "-".into());
        let gpus: usize = r.jobs.iter().map(|j| j.current.gpus.len()).sum();
        let hourly = r.price_per_hour();
        let error = r
            .termination_reason
            .filter(|_| r.status != flotilla_protocol::model::RunStatus::Done)
            .map(|t| t.to_string())
            .or_else(|| job.and_then(|j| j.current.waiting_reason.clone()))
            .unwrap_or_default();
        rows.push(vec![
            r.name.clone(),
            backend,
            if gpus == 0 {
                "-".into()
            } else {
                gpus.to_string()
            },
            price(hourly),
            cost(r.cost(now)),
            r.status.to_string(),
            ago(r.submitted_at, now),
            error,
        ]);
        let service = matches!(r.configuration, RunConfiguration::Service(_));
        if r.jobs.len() > 1 || args.verbose || service {
            for j in &r.jobs {
                let name = match &j.replica_group {
                    Some(g) if service && g != DEFAULT_REPLICA_GROUP => {
                        format!("  group={g} replica={}", j.replica_num)
                    }
                    _ if service => format!("  replica={}", j.replica_num),
                    _ => format!("  replica={} job={}", j.replica_num, j.job_num),
                };
                rows.push(vec![
                    name,
                    j.current.instance.clone().unwrap_or_else(|| "-".into()),
                    if j.current.gpus.is_empty() {
                        "-".into()
                    } else {
                        j.current.gpus.len().to_string()
                    },
                    String::new(),
                    cost(j.current.cost(now)),
                    job_status(j),
                    ago(j.current.submitted_at, now),
                    j.current
                        .termination_reason
                        .map(|t| t.to_string())
                        .unwrap_or_default(),
                ]);
            }
        }
    }
    print_table(
        &[
            "NAME",
            "BACKEND",
            "GPU",
            "PRICE",
            "COST",
            "STATUS",
            "SUBMITTED",
            "ERROR",
        ],
        &rows,
    );
    let services: Vec<String> = runs
        .iter()
        .filter(|r| !r.status.is_finished())
        .filter_map(|r| r.service.as_ref().map(|s| (r, s)))
        .flat_map(|(r, s)| service_lines(&r.name, s))
        .collect();
    if !services.is_empty() {
        println!();
        for line in services {
            println!("{line}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A job's status, with a service replica's readiness while it runs (`running (ready)`).
fn job_status(j: &Job) -> String {
    match j.current.ready {
        Some(true) => format!("{} (ready)", j.current.status),
        Some(false) => format!("{} (not ready)", j.current.status),
        None => j.current.status.to_string(),
    }
}

/// A service's endpoint in words: its URL and its model's base URL, or why there is none.
pub fn service_lines(run: &str, s: &ServiceEndpoint) -> Vec<String> {
    if let Some(e) = &s.error {
        return vec![format!("{run}: no URL: {e}")];
    }
    let mut lines = vec![format!("{run}: {}", s.url)];
    if let Some(m) = &s.model {
        lines.push(format!("{run}: model {} at {}", m.name, m.base_url));
    }
    lines
}

/// Dollars to the tenth of a cent (JSON).
fn round_cents(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// What a run or job has cost so far: `$0.42`, `-` when nothing.
fn cost(v: f64) -> String {
    if v <= 0.0 {
        "-".into()
    } else if v < 0.01 {
        "<$0.01".into()
    } else {
        format!("${v:.2}")
    }
}

pub async fn logs(target: &Target, args: LogsArgs) -> anyhow::Result<ExitCode> {
    let client = connect(target).await?;
    let log = LogTarget {
        run: args.run,
        replica: args.replica,
        job: args.job,
        submission: args.submission,
    };
    if args.follow {
        if log.submission.is_some() {
            // One earlier attempt: its log to its end.
            follow_log(&client, log, 0, false).await?;
        } else {
            let (run, _) = follow_until_run_ends(&client, log.clone(), false).await?;
            // A log the daemon could not store stops short: say why instead of ending quietly.
            let lost = run
                .job(log.replica, log.job)
                .map(|j| &j.current)
                .filter(|s| {
                    matches!(
                        s.termination_reason,
                        Some(JobTerminationReason::LogStorageFailed)
                    )
                });
            if let Some(sub) = lost {
                eprintln!(
                    "the log is incomplete: {}",
                    sub.termination_message
                        .as_deref()
                        .unwrap_or("it could not be stored")
                );
                return Ok(ExitCode::FAILURE);
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut offset = 0;
    let stdout = std::io::stdout();
    loop {
        let r: LogsReadResult = client
            .call::<methods::LogsRead>(&LogsReadParams {
                target: log.clone(),
                offset,
                limit: None,
            })
            .await?;
        let bytes = r.chunk.bytes().map_err(|e| anyhow!(e))?;
        stdout.lock().write_all(&bytes)?;
        if bytes.is_empty() || r.next_offset >= r.size {
            break;
        }
        offset = r.next_offset;
    }
    stdout.lock().flush()?;
    Ok(ExitCode::SUCCESS)
}

pub async fn stop(target: &Target, args: StopArgs) -> anyhow::Result<ExitCode> {
    let client = connect(target).await?;
    let verb = if args.abort { "Abort" } else { "Stop" };
    if !args.yes && !confirm(&format!("{verb} the run {}?", args.run))? {
        println!("Cancelled.");
        return Ok(ExitCode::FAILURE);
    }
    let mut run: Run = client
        .call::<methods::RunStop>(&RunStopParams {
            name: args.run.clone(),
            abort: args.abort,
        })
        .await?;
    // Wait a little for the end, so that scripts see the final status; a graceful stop may
    // take up to stop_duration, and goes on in the daemon either way.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !run.status.is_finished() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        run = client
            .call::<methods::RunGet>(&RunNameParams {
                name: args.run.clone(),
            })
            .await?;
    }
    if run.status.is_finished() {
        println!("Run {} {}", run.name, run.status);
    } else {
        println!(
            "Run {} is {}; it gets SIGKILL when its stop_duration runs out",
            run.name, run.status
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn delete(target: &Target, args: DeleteArgs) -> anyhow::Result<ExitCode> {
    let client = connect(target).await?;
    if !args.yes && !confirm(&format!("Delete the run {} and its logs?", args.run))? {
        println!("Cancelled.");
        return Ok(ExitCode::FAILURE);
    }
    client
        .call::<methods::RunDelete>(&RunNameParams {
            name: args.run.clone(),
        })
        .await?;
    println!("Deleted {}", args.run);
    Ok(ExitCode::SUCCESS)
}

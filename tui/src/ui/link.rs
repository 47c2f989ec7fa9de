//! The dashboard's side of the socket: one connection (the daemon started on demand the first
//! time), re-established with backoff when the daemon goes away, the `events.watch` subscription
//! re-opened from the last event seen, and each [`Command`] carried out as its own task. Log
//! follows get a connection each (a stream ends only with its connection) and batch their bytes.

use crate::config_file;
use crate::connect::{connect, connect_or_start, Target};
use crate::ui::app::{Command, LogRead, Msg};
use flotilla_protocol::client::{Client, ClientError, StreamItem};
use flotilla_protocol::rpc::{
    codes, methods, EventsParams, LogTarget, LogsFollowParams, LogsReadParams, LogsReadResult,
    NoParams, RunApplyParams, RunListParams, RunNameParams, RunPlan, RunStopParams,
};
use flotilla_protocol::Timestamp;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How long live log bytes are gathered before they go to the screen.
pub const LOG_BATCH: Duration = Duration::from_millis(50);
/// A batch goes out earlier when it reaches this size.
const LOG_BATCH_BYTES: usize = 1 << 20;

fn backoff(attempt: u32) -> Duration {
    let ms = 200u64.saturating_mul(1 << attempt.min(5).saturating_sub(1));
    Duration::from_millis(ms.min(5000))
}

fn err_text(e: &ClientError) -> String {
    e.to_string()
}

/// Runs until the command channel closes (the dashboard quit).
pub async fn run(
    target: Target,
    mut commands: UnboundedReceiver<Command>,
    msgs: UnboundedSender<Msg>,
) {
    let mut logs: HashMap<u64, JoinHandle<()>> = HashMap::new();
    let mut attempt: u32 = 0;
    let mut first = true;
    let mut last_seq: Option<u64> = None;
    loop {
        let connected = if first {
            connect_or_start(&target)
                .await
                .map_err(|e| format!("{e:#}"))
        } else {
            connect(&target).await.map_err(|e| err_text(&e))
        };
        first = false;
        let client = match connected {
            Ok(c) => Arc::new(c),
            Err(error) => {
                attempt += 1;
                let _ = msgs.send(Msg::Disconnected { attempt, error });
                // Wait, still answering commands: log sessions start and stop; the rest is refused.
                let until = Instant::now() + backoff(attempt);
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep_until(until) => break,
                        cmd = commands.recv() => match cmd {
                            None => return,
                            Some(cmd) => offline(cmd, &target, &msgs, &mut logs),
                        },
                    }
                }
                continue;
            }
        };
        let sub = client
            .subscribe::<methods::EventsWatch>(&EventsParams {
                since: last_seq,
                limit: None,
            })
            .await;
        let mut sub = match sub {
            Ok(s) => s,
            Err(e) => {
                attempt += 1;
                let _ = msgs.send(Msg::Disconnected {
                    attempt,
                    error: err_text(&e),
                });
                tokio::time::sleep(backoff(attempt)).await;
                continue;
            }
        };
        attempt = 0;
        let _ = msgs.send(Msg::Connected(client.hello().clone()));
        let reason = loop {
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    None => return,
                    Some(Command::OpenLog { session, target: log }) => {
                        let task = tokio::spawn(follow_log(target.clone(), session, log, msgs.clone()));
                        if let Some(old) = logs.insert(session, task) {
                            old.abort();
                        }
                    }
                    Some(Command::CloseLog { session }) => {
                        if let Some(t) = logs.remove(&session) {
                            t.abort();
                        }
                    }
                    Some(cmd) => {
                        tokio::spawn(execute(client.clone(), target.clone(), cmd, msgs.clone()));
                    }
                },
                item = sub.next() => match item {
                    Some(StreamItem::Item(notice)) => {
                        last_seq = Some(notice.event.seq);
                        let _ = msgs.send(Msg::Event(notice.event));
                    }
                    Some(StreamItem::End(Err(e))) => break e.to_string(),
                    Some(StreamItem::End(Ok(_))) | None => break "the daemon closed the connection".to_string(),
                },
            }
        };
        attempt += 1;
        let _ = msgs.send(Msg::Disconnected {
            attempt,
            error: reason,
        });
    }
}

/// A command while no daemon answers.
fn offline(
    cmd: Command,
    target: &Target,
    msgs: &UnboundedSender<Msg>,
    logs: &mut HashMap<u64, JoinHandle<()>>,
) {
    match cmd {
        Command::OpenLog {
            session,
            target: log,
        } => {
            let task = tokio::spawn(follow_log(target.clone(), session, log, msgs.clone()));
            if let Some(old) = logs.insert(session, task) {
                old.abort();
            }
        }
        Command::CloseLog { session } => {
            if let Some(t) = logs.remove(&session) {
                t.abort();
            }
        }
        // Loads are made again on reconnecting.
        Command::LoadRuns { .. }
        | Command::LoadRun { .. }
        | Command::LoadFleets
        | Command::LoadEvents
        | Command::LoadOffers(_)
        | Command::Metrics { .. }
        | Command::ReadLog { .. } => {}
        Command::Plan { .. }
        | Command::Apply(_)
        | Command::Stop { .. }
        | Command::Delete { .. } => {
            let _ = msgs.send(Msg::Error(
                "not connected to the daemon; try again once the header says connected".into(),
            ));
        }
        Command::Shell(_) | Command::Quit => {}
    }
}

/// Carries out one command on the shared connection.
pub async fn execute(
    client: Arc<Client>,
    target: Target,
    cmd: Command,
    msgs: UnboundedSender<Msg>,
) {
    let msg = match cmd {
        Command::LoadRuns { all } => Msg::Runs(
            client
                .call::<methods::RunList>(&RunListParams { all })
                .await
                .map_err(|e| err_text(&e)),
        ),
        Command::LoadRun { name } => {
            let result = match client
                .call::<methods::RunGet>(&RunNameParams { name: name.clone() })
                .await
            {
                Ok(r) => Ok(Some(r)),
                Err(e) if e.rpc().is_some_and(|r| r.code == codes::NOT_FOUND) => Ok(None),
                Err(e) => Err(err_text(&e)),
            };
            Msg::Run { name, result }
        }
        Command::LoadFleets => Msg::Fleets(
            client
                .call::<methods::FleetList>(&NoParams {})
                .await
                .map_err(|e| err_text(&e)),
        ),
        Command::LoadEvents => Msg::Events(
            client
                .call::<methods::EventList>(&EventsParams {
                    since: None,
                    limit: Some(200),
                })
                .await
                .map(|l| l.events)
                .map_err(|e| err_text(&e)),
        ),
        Command::LoadOffers(q) => Msg::Offers(
            client
                .call::<methods::OfferList>(&q)
                .await
                .map_err(|e| err_text(&e)),
        ),
        Command::Metrics { key, params } => {
            match client.call::<methods::MetricsGet>(&params).await {
                Err(e) if e.rpc().is_some_and(|r| r.code == codes::METHOD_NOT_FOUND) => {
                    Msg::MetricsUnsupported
                }
                result => Msg::Metrics {
                    key,
                    result: result.map_err(|e| err_text(&e)),
                },
            }
        }
        Command::Plan { path } => match plan(&client, &path).await {
            Ok((params, plan)) => Msg::Plan { path, params, plan },
            Err(e) => Msg::Error(e),
        },
        Command::Apply(mut params) => match with_archives(&target, &mut params).await {
            Err(e) => Msg::Error(format!("apply: {e}")),
            Ok(()) => match client.call::<methods::RunApply>(&params).await {
                Ok(run) => Msg::Applied(run),
                Err(e) => Msg::Error(format!("apply: {}", err_text(&e))),
            },
        },
        Command::Stop { name, abort } => {
            match client
                .call::<methods::RunStop>(&RunStopParams {
                    name: name.clone(),
                    abort,
                })
                .await
            {
                Ok(run) => {
                    let verb = if abort { "aborting" } else { "stopping" };
                    let _ = msgs.send(Msg::Info(format!("{verb} run {name}")));
                    Msg::Run {
                        name,
                        result: Ok(Some(run)),
                    }
                }
                Err(e) => Msg::Error(format!("stop {name}: {}", err_text(&e))),
            }
        }
        Command::Delete { name } => match client
            .call::<methods::RunDelete>(&RunNameParams { name: name.clone() })
            .await
        {
            Ok(_) => Msg::Deleted(name),
            Err(e) => Msg::Error(format!("delete {name}: {}", err_text(&e))),
        },
        Command::ReadLog {
            session,
            target,
            purpose,
            offset,
            limit,
        } => match read(&client, &target, offset, limit).await {
            Ok((offset, bytes, size)) => Msg::LogRead {
                session,
                purpose,
                offset,
                bytes,
                size,
            },
            Err(error) => Msg::LogError { session, error },
        },
        // Handled by the loop (logs, terminal) before they reach here.
        Command::OpenLog { .. } | Command::CloseLog { .. } | Command::Shell(_) | Command::Quit => {
            return
        }
    };
    let _ = msgs.send(msg);
}

/// Packs and uploads the run's `files` and local `repos`, as `flotilla apply` does.
async fn with_archives(target: &Target, params: &mut RunApplyParams) -> Result<(), String> {
    let path = params.file_name.clone().unwrap_or_default();
    let text = params.configuration.clone();
    let owned = path.clone();
    let packed = tokio::task::spawn_blocking(move || {
        let config = flotilla_protocol::config::parse_configuration(&owned, &text)
            .map_err(|e| e.to_string())?;
        match config.as_run() {
            Some(run) => {
                crate::uploads::pack_run(&run, Path::new(&owned)).map_err(|e| format!("{e:#}"))
            }
            None => Ok(Vec::new()),
        }
    })
    .await
    .map_err(|e| format!("cannot pack the files of {path}: {e}"))??;
    if packed.is_empty() {
        return Ok(());
    }
    params.archives = crate::uploads::upload_all(target, packed)
        .await
        .map_err(|e| format!("{e:#}"))?;
    Ok(())
}

/// Reads, checks and plans a configuration file, as `flotilla apply` does.
async fn plan(client: &Client, path: &str) -> Result<(RunApplyParams, RunPlan), String> {
    let owned = path.to_string();
    let (text, config) =
        tokio::task::spawn_blocking(move || config_file::read(Path::new(&owned), &owned))
            .await
            .map_err(|e| format!("cannot read {path}: {e}"))?
            .map_err(|e| e.to_string())?;
    let Some(run_config) = config.as_run() else {
        return Err(format!(
            "{path} is a {} configuration; only tasks, services and dev environments can be applied",
            config.type_name()
        ));
    };
    let params = config_file::run_params(&run_config, path, text);
    let plan = client
        .call::<methods::RunPlan>(&params)
        .await
        .map_err(|e| format!("plan {path}: {}", err_text(&e)))?;
    Ok((params, plan))
}

/// One `logs.read`: (offset, bytes, log size).
async fn read(
    client: &Client,
    target: &LogTarget,
    offset: u64,
    limit: u64,
) -> Result<(u64, Vec<u8>, u64), String> {
    let r: LogsReadResult = client
        .call::<methods::LogsRead>(&LogsReadParams {
            target: target.clone(),
            offset,
            limit: Some(limit),
        })
        .await
        .map_err(|e| err_text(&e))?;
    let bytes = r.chunk.bytes()?;
    Ok((r.chunk.offset, bytes, r.size))
}

/// History then live: the last window of the log, then `logs.follow` from its end, with the
/// bytes batched; re-connects (from the next offset) when the daemon restarts.
pub async fn follow_log(target: Target, session: u64, log: LogTarget, msgs: UnboundedSender<Msg>) {
    let mut next: Option<u64> = None;
    let mut attempt = 0;
    loop {
        let client = match connect(&target).await {
            Ok(c) => c,
            Err(_) => {
                attempt += 1;
                tokio::time::sleep(backoff(attempt)).await;
                continue;
            }
        };
        let offset = match next {
            Some(o) => o,
            None => {
                let size = match read(&client, &log, 0, 0).await {
                    Ok((_, _, size)) => size,
                    Err(error) => {
                        let _ = msgs.send(Msg::LogError { session, error });
                        return;
                    }
                };
                let start = size.saturating_sub(crate::ui::log_window::READ_WINDOW);
                match read(&client, &log, start, crate::ui::log_window::READ_WINDOW).await {
                    Ok((offset, bytes, size)) => {
                        let end = offset + bytes.len() as u64;
                        let _ = msgs.send(Msg::LogRead {
                            session,
                            purpose: LogRead::Tail,
                            offset,
                            bytes,
                            size,
                        });
                        next = Some(end);
                        end
                    }
                    Err(error) => {
                        let _ = msgs.send(Msg::LogError { session, error });
                        return;
                    }
                }
            }
        };
        let mut sub = match client
            .subscribe::<methods::LogsFollow>(&LogsFollowParams {
                target: log.clone(),
                offset,
                attach: false,
            })
            .await
        {
            Ok(s) => s,
            Err(_) => {
                attempt += 1;
                tokio::time::sleep(backoff(attempt)).await;
                continue;
            }
        };
        attempt = 0;
        let mut batch: Vec<u8> = Vec::new();
        let mut batch_offset = offset;
        let mut batch_time = Timestamp::now();
        let mut deadline: Option<Instant> = None;
        let flush = |batch: &mut Vec<u8>, batch_offset: u64, arrived: Timestamp| {
            if !batch.is_empty() {
                let _ = msgs.send(Msg::LogAppend {
                    session,
                    offset: batch_offset,
                    bytes: std::mem::take(batch),
                    arrived,
                });
            }
        };
        let end = loop {
            let item = match deadline {
                Some(d) => tokio::select! {
                    item = sub.next() => item,
                    _ = tokio::time::sleep_until(d) => {
                        flush(&mut batch, batch_offset, batch_time);
                        deadline = None;
                        continue;
                    }
                },
                None => sub.next().await,
            };
            match item {
                Some(StreamItem::Item(chunk)) => {
                    let Ok(bytes) = chunk.bytes() else { continue };
                    if batch.is_empty() {
                        batch_offset = chunk.offset;
                        batch_time = Timestamp::now();
                        deadline = Some(Instant::now() + LOG_BATCH);
                    } else if chunk.offset != batch_offset + batch.len() as u64 {
                        flush(&mut batch, batch_offset, batch_time);
                        batch_offset = chunk.offset;
                        batch_time = Timestamp::now();
                    }
                    batch.extend_from_slice(&bytes);
                    next = Some(chunk.offset + bytes.len() as u64);
                    if batch.len() >= LOG_BATCH_BYTES {
                        flush(&mut batch, batch_offset, batch_time);
                        deadline = None;
                    }
                }
                Some(StreamItem::End(Ok(end))) => {
                    flush(&mut batch, batch_offset, batch_time);
                    break Some(Ok(Some(end)));
                }
                Some(StreamItem::End(Err(e))) => {
                    flush(&mut batch, batch_offset, batch_time);
                    if e.rpc().is_some_and(|r| r.code == codes::SHUTTING_DOWN) {
                        break None;
                    }
                    break Some(Err(e.to_string()));
                }
                None => {
                    flush(&mut batch, batch_offset, batch_time);
                    break None;
                }
            }
        };
        match end {
            Some(Ok(end)) => {
                let summary = match end {
                    Some(e) => {
                        let mut s = format!("job {}", e.job_status);
                        if let Some(c) = e.exit_code {
                            s.push_str(&format!(", exit code {c}"));
                        }
                        if let Some(r) = e.termination_reason {
                            s.push_str(&format!(" ({r})"));
                        }
                        s
                    }
                    None => "ended".to_string(),
                };
                let _ = msgs.send(Msg::LogEnded { session, summary });
                return;
            }
            Some(Err(error)) => {
                let _ = msgs.send(Msg::LogError { session, error });
                return;
            }
            None => {
                // The daemon went away: follow again from where we are once it is back.
                attempt += 1;
                tokio::time::sleep(backoff(attempt)).await;
            }
        }
    }
}

//! Operations layer: a service's replicas. Which jobs of a run serve (its running jobs), where
//! their `port` answers, whether they are ready (their `probes` pass, or without probes their
//! port accepts connections), and carrying out what the replica rules decide
//! ([`crate::replica_rules::plan`]): new submissions and new replicas, scale-downs, the desired
//! counts and each replica's readiness, recorded on the run.

use super::stops::carry_out_stops;
use super::tunnels::{connect_job_port, host_port};
use super::OpError;
use crate::handle::Daemon;
use crate::lifecycle::{new_submission, request_job_stop};
use crate::replica_rules::Plan;
use crate::services::ReplicaTarget;
use flotilla_protocol::config::{ProbeSpec, RunConfiguration, ServiceConfig};
use flotilla_protocol::model::{Job, JobStatus, JobSubmission, JobTerminationReason, Run};
use flotilla_protocol::Timestamp;
use std::collections::HashMap;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a readiness check waits for the replica's port.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The most of a probe's answer read to find its status line.
const STATUS_LINE_MAX: usize = 1024;

/// The service configuration of a run (`None` for tasks and dev environments).
pub fn service_of(run: &Run) -> Option<&ServiceConfig> {
    match &run.configuration {
        RunConfiguration::Service(s) => Some(s),
        _ => None,
    }
}

/// The port a service's replicas listen on (`None` for runs that are not services).
pub fn service_port(run: &Run) -> Option<u16> {
    service_of(run).and_then(|s| s.port.as_ref().map(|p| p.container))
}

/// Whether a job serves now: running, and not asked to stop.
pub fn is_serving(job: &Job) -> bool {
    job.current.status == JobStatus::Running && job.current.stop.is_none()
}

/// The replicas of a service run as the proxy reaches them: its serving jobs, each ready as
/// `ready` says (by submission; absent: not ready).
pub fn targets(run: &Run, ready: &HashMap<u64, bool>) -> Vec<ReplicaTarget> {
    let Some(port) = service_port(run) else {
        return Vec::new();
    };
    run.jobs
        .iter()
        .filter(|j| is_serving(j))
        .map(|j| ReplicaTarget {
            submission: j.current.id,
            replica_num: j.replica_num,
            instance_id: j.current.instance_id,
            host_port: serving_port(&j.current, port),
            ready: ready.get(&j.current.id).copied().unwrap_or(false),
        })
        .collect()
}

/// Where a replica's service answers on its host: its published `port`; a container of an
/// earlier deployment (a rolling update that changes `port`) publishes only its own port.
fn serving_port(sub: &JobSubmission, port: u16) -> u16 {
    match sub.ports.as_slice() {
        [only] if only.container != port => only.host,
        _ => host_port(sub, port),
    }
}

/// Whether the job's `port` accepts a TCP connection now.
pub async fn port_accepts(d: &Daemon, sub: &JobSubmission, port: u16) -> bool {
    matches!(
        tokio::time::timeout(CONNECT_TIMEOUT, connect_job_port(d, sub, port)).await,
        Ok(Ok(_))
    )
}

/// One run of an HTTP probe against the job's `port`: true for a 2xx answer within the probe's
/// `timeout` (redirects are not followed, as in dstack).
pub async fn probe(d: &Daemon, sub: &JobSubmission, port: u16, spec: &ProbeSpec) -> bool {
    let timeout = Duration::from_secs(spec.timeout.max(1));
    match tokio::time::timeout(timeout, probe_status(d, sub, port, spec)).await {
        Ok(Ok(status)) => crate::replica_rules::probes::is_success(status),
        Ok(Err(e)) => {
            tracing::debug!("probe {} of submission {}: {e}", spec.url, sub.id);
            false
        }
        Err(_) => false,
    }
}

/// The HTTP/1.1 request a probe sends.
fn probe_request(spec: &ProbeSpec) -> Vec<u8> {
    let mut head = format!("{} {} HTTP/1.1\r\n", spec.method.to_uppercase(), spec.url);
    let has = |name: &str| {
        spec.headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case(name))
    };
    if !has("host") {
        head.push_str("Host: localhost\r\n");
    }
    if !has("user-agent") {
        head.push_str("User-Agent: flotilla-probe\r\n");
    }
    for h in &spec.headers {
        head.push_str(&format!("{}: {}\r\n", h.name, h.value));
    }
    let body = spec.body.as_deref().unwrap_or("");
    if !body.is_empty() || !matches!(spec.method.as_str(), "get" | "head") {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("Connection: close\r\n\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

/// The status code of the answer to one probe request.
async fn probe_status(
    d: &Daemon,
    sub: &JobSubmission,
    port: u16,
    spec: &ProbeSpec,
) -> Result<u16, String> {
    let mut stream = connect_job_port(d, sub, port).await?;
    stream
        .write_all(&probe_request(spec))
        .await
        .map_err(|e| format!("cannot send the request: {e}"))?;
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 256];
    while !buf.windows(2).any(|w| w == b"\r\n") && buf.len() < STATUS_LINE_MAX {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("cannot read the answer: {e}"))?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    parse_status(&buf).ok_or_else(|| "the answer is not HTTP".to_string())
}

/// The status code of an HTTP/1.x status line (`HTTP/1.1 200 OK`).
fn parse_status(answer: &[u8]) -> Option<u16> {
    let line = answer.split(|b| *b == b'\r').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_whitespace();
    parts.next().filter(|v| v.starts_with("HTTP/1."))?;
    parts.next()?.parse().ok()
}

/// Records what the replicas loop decided for `run`: the desired counts, each serving replica's
/// readiness, new submissions (delayed by `not_before`), new replicas and scale-downs. Does
/// nothing when nothing changes.
pub async fn apply_plan(
    d: &Daemon,
    run: &Run,
    plan: &Plan,
    ready: &HashMap<u64, bool>,
) -> Result<(), OpError> {
    let readiness_changed = run.jobs.iter().any(|j| {
        let now_ready = is_serving(j).then(|| ready.get(&j.current.id).copied().unwrap_or(false));
        j.current.ready != now_ready
    });
    if plan.start.is_empty()
        && plan.stop.is_empty()
        && plan.desired == run.desired_replicas
        && !readiness_changed
    {
        return Ok(());
    }
    let mut ids = Vec::with_capacity(plan.start.len());
    for _ in &plan.start {
        ids.push(d.store().next_id()?);
    }
    let now = Timestamp::now();
    let stop_duration = run.configuration.common().policy.stop_duration;
    let run_id = run.id;
    let (_, signal) = d.update_run(run_id, |run| {
        if run.termination_reason.is_some() {
            return false;
        }
        run.desired_replicas = plan.desired.clone();
        if plan.scaled {
            run.last_scaled_at = Some(now);
        }
        for job in run.jobs.iter_mut() {
            job.current.ready =
                is_serving(job).then(|| ready.get(&job.current.id).copied().unwrap_or(false));
        }
        let deployment = run.deployment_num;
        for (start, id) in plan.start.iter().zip(ids.iter().copied()) {
            let mut fresh = new_submission(id, 0, now);
            if let Some(at) = start.not_before {
                fresh.retry_at = Some(at);
                fresh.waiting_reason = Some(format!(
                    "the replica keeps failing: it starts again at {at}"
                ));
            }
            match run.job_mut(start.replica_num, 0) {
                Some(job) if job.current.status.is_finished() => {
                    fresh.submission_num = job.current.submission_num + 1;
                    let old = std::mem::replace(&mut job.current, fresh);
                    job.previous_submissions.push(old);
                    job.deployment_num = deployment;
                    job.replica_group = Some(start.group.clone());
                }
                Some(_) => {}
                None => run.jobs.push(Job {
                    replica_num: start.replica_num,
                    job_num: 0,
                    job_name: format!("{}-0-{}", run.name, start.replica_num),
                    replica_group: Some(start.group.clone()),
                    deployment_num: deployment,
                    current: fresh,
                    previous_submissions: Vec::new(),
                }),
            }
        }
        let mut signal = false;
        for replica in &plan.stop {
            if let Some(job) = run.job_mut(*replica, 0) {
                signal |= request_job_stop(
                    job,
                    JobTerminationReason::ScaledDown,
                    false,
                    stop_duration,
                    now,
                );
            }
        }
        signal
    })?;
    if !plan.start.is_empty() {
        d.wake_scheduler();
    }
    if signal {
        d.store().flush().await?;
        carry_out_stops(d, run_id).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_protocol::config::HttpHeader;

    #[test]
    fn a_probe_request_is_plain_http_with_its_headers_and_body() {
        let spec = ProbeSpec {
            url: "/ready?x=1".into(),
            method: "post".into(),
            headers: vec![HttpHeader {
                name: "Authorization".into(),
                value: "Bearer t".into(),
            }],
            body: Some("{}".into()),
            timeout: 10,
            interval: 15,
            ready_after: 1,
            until_ready: false,
        };
        let text = String::from_utf8(probe_request(&spec)).expect("utf-8");
        assert!(text.starts_with("POST /ready?x=1 HTTP/1.1\r\nHost: localhost\r\n"));
        assert!(text.contains("Authorization: Bearer t\r\n"));
        assert!(text.ends_with("Content-Length: 2\r\nConnection: close\r\n\r\n{}"));
    }

    #[test]
    fn the_status_code_comes_from_the_status_line() {
        assert_eq!(parse_status(b"HTTP/1.0 200 OK\r\nServer: x\r\n"), Some(200));
        assert_eq!(
            parse_status(b"HTTP/1.1 503 Service Unavailable\r\n"),
            Some(503)
        );
        assert_eq!(parse_status(b"SSH-2.0-OpenSSH\r\n"), None);
    }
}

//! Operations layer: job logs. Which submission a log target names (the one job lookup of
//! `logs.read`, `logs.follow` and `tunnel.open`), and `logs.read`.

use super::runs::find_run;
use super::runs_access::check_owner;
use super::OpError;
use crate::caller::Caller;
use crate::handle::Daemon;
use flotilla_protocol::model::{Job, Run};
use flotilla_protocol::rpc::{LogChunk, LogTarget, LogsReadParams, LogsReadResult};

/// The run and job a target names.
pub fn find_target_job(
    d: &Daemon,
    run: &str,
    replica: u32,
    job: u32,
) -> Result<(Run, Job), OpError> {
    let run = find_run(d, run)?;
    let found = run.job(replica, job).cloned().ok_or_else(|| {
        OpError::NotFound(format!(
            "run {} has no job replica={replica} job={job}",
            run.name
        ))
    })?;
    Ok((run, found))
}

/// The run a log target names, the submission's id, and whether that submission has finished;
/// refused unless `caller` owns the run or is an admin.
pub fn find_submission(
    d: &Daemon,
    caller: &Caller,
    target: &LogTarget,
) -> Result<(Run, u64, bool), OpError> {
    let (run, job) = find_target_job(d, &target.run, target.replica, target.job)?;
    check_owner(caller, &run, "read the logs of")?;
    let (sub, finished) = match target.submission {
        None => (job.current.id, job.current.status.is_finished()),
        Some(n) => job
            .previous_submissions
            .iter()
            .chain([&job.current])
            .find(|s| s.submission_num == n)
            .map(|s| (s.id, s.status.is_finished()))
            .ok_or_else(|| {
                OpError::NotFound(format!(
                    "job {}/{} of {} has no submission {n}",
                    target.replica, target.job, run.name
                ))
            })?,
    };
    Ok((run, sub, finished))
}

/// `logs.read`: at most 1 MiB of a submission's log from `offset`.
pub fn read(d: &Daemon, caller: &Caller, p: &LogsReadParams) -> Result<LogsReadResult, OpError> {
    let (_, sub, finished) = find_submission(d, caller, &p.target)?;
    let limit = p.limit.unwrap_or(1 << 20).min(1 << 20) as usize;
    let bytes = d
        .logs()
        .read(sub, p.offset, limit)
        .map_err(|e| OpError::Internal(format!("cannot read the log: {e}")))?;
    let size = d.logs().size(sub);
    Ok(LogsReadResult {
        next_offset: p.offset + bytes.len() as u64,
        chunk: LogChunk::from_bytes(p.offset, &bytes),
        size,
        complete: finished,
    })
}

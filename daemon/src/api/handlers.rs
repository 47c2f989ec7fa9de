//! One function per socket method: decode params, call the daemon, encode the result or a JSON-RPC error.

use super::{streams, Caller, Outbox};
use crate::runs::{self, RunError};
use crate::scheduler;
use crate::state::Daemon;
use crate::store::StoreError;
use flotilla_protocol::model::{Fleet, Instance, InstanceStatus, Run};
use flotilla_protocol::rpc::{
    codes, methods, ConfigErrorData, DaemonStatus, Deleted, EventList, EventsParams,
    FleetApplyParams, FleetNameParams, JobPlan, LogChunk, LogTarget, LogsReadParams,
    LogsReadResult, MetricsParams, MetricsResult, OfferList, OfferQuery, RefreshKeyParams, Request,
    RequestId, Response, RpcError, RunApplyParams, RunListParams, RunNameParams, RunPlan,
    RunStopParams, Stopping, PROTOCOL_VERSION,
};
use flotilla_protocol::Timestamp;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

type Reply = Result<Value, RpcError>;

pub async fn dispatch(
    d: &Daemon,
    caller: &Caller,
    req: Request,
    id: RequestId,
    out: &Outbox,
) -> Option<Response> {
    let method = req.method.as_str();
    let params = req
        .params
        .clone()
        .unwrap_or(Value::Object(Default::default()));
    let result = match method {
        methods::RUN_PLAN => run_plan(d, caller, decode(method, params)).await,
        methods::RUN_APPLY => run_apply(d, caller, decode(method, params)).await,
        methods::RUN_LIST => run_list(d, decode(method, params)),
        methods::RUN_GET => decode::<RunNameParams>(method, params)
            .and_then(|p| runs::find_run(d, &p.name).map_err(run_error))
            .and_then(json),
        methods::RUN_STOP => match decode::<RunStopParams>(method, params) {
            Ok(p) => runs::stop(d, caller, &p.name, p.abort)
                .await
                .map_err(run_error)
                .and_then(json),
            Err(e) => Err(e),
        },
        methods::RUN_DELETE => match decode::<RunNameParams>(method, params) {
            Ok(p) => runs::delete(d, caller, &p.name)
                .await
                .map_err(run_error)
                .map(|_| Deleted { deleted: p.name })
                .and_then(json),
            Err(e) => Err(e),
        },
        methods::LOGS_READ => logs_read(d, decode(method, params)),
        methods::LOGS_FOLLOW => match decode(method, params) {
            Ok(p) => streams::logs_follow(d, p, &id, out).await,
            Err(e) => Err(e),
        },
        methods::EVENTS_WATCH => match decode(method, params) {
            Ok(p) => streams::events_watch(d, p, &id, out).await,
            Err(e) => Err(e),
        },
        methods::EVENT_LIST => event_list(d, decode(method, params)),
        methods::FLEET_LIST => fleet_list(d).and_then(json),
        methods::INSTANCE_LIST => fleet_list(d)
            .map(|fs| fs.into_iter().flat_map(|f| f.instances).collect::<Vec<_>>())
            .and_then(json),
        methods::OFFER_LIST => offer_list(d, decode(method, params)),
        methods::FLEET_APPLY => match decode::<FleetApplyParams>(method, params) {
            Ok(p) => crate::fleets::apply(d, caller, &p).await.map_err(run_error).and_then(json),
            Err(e) => Err(e),
        },
        methods::FLEET_GET => match decode::<FleetNameParams>(method, params) {
            Ok(p) => fleet_list(d).and_then(|fs| {
                fs.into_iter().find(|f| f.name == p.name).ok_or_else(|| {
                    RpcError::new(
                        codes::NOT_FOUND,
                        format!("fleet {} not found; `flotilla fleet list` lists the fleets", p.name),
                    )
                })
            })
            .and_then(json),
            Err(e) => Err(e),
        },
        methods::FLEET_DELETE => match decode::<FleetNameParams>(method, params) {
            Ok(p) => crate::fleets::delete(d, caller, &p.name)
                .await
                .map_err(run_error)
                .map(|_| Deleted { deleted: p.name })
                .and_then(json),
            Err(e) => Err(e),
        },
        methods::METRICS_GET => match decode::<MetricsParams>(method, params) {
            Ok(p) => metrics_get(d, p),
            Err(e) => Err(e),
        },
        methods::USER_ME => crate::users::ensure(d, caller)
            .await
            .map_err(|e| RpcError::new(codes::INTERNAL_ERROR, e.to_string()))
            .and_then(json),
        methods::USER_REFRESH_SSH_KEY => match decode::<RefreshKeyParams>(method, params) {
            Ok(p) => refresh_key(d, caller, p).await,
            Err(e) => Err(e),
        },
        methods::DAEMON_STATUS => daemon_status(d),
        methods::DAEMON_STOP => {
            if caller.admin {
                d.shutdown.cancel();
                json(Stopping { stopping: true })
            } else {
                Err(RpcError::new(
                    codes::FORBIDDEN,
                    "only root or the daemon's own user can stop the daemon",
                ))
            }
        }
        _ => Err(RpcError::new(
            codes::METHOD_NOT_FOUND,
            format!("unknown method `{method}`; the README lists the methods of protocol {PROTOCOL_VERSION}"),
        )),
    };
    Some(match result {
        Ok(v) => Response::ok(id, v),
        Err(e) => Response::err(id, e),
    })
}

fn decode<T: DeserializeOwned>(method: &str, params: Value) -> Result<T, RpcError> {
    serde_json::from_value(params).map_err(|e| {
        RpcError::new(
            codes::INVALID_PARAMS,
            format!("{method}: invalid params: {e}"),
        )
    })
}

fn json<T: Serialize>(v: T) -> Reply {
    serde_json::to_value(v).map_err(|e| RpcError::new(codes::INTERNAL_ERROR, e.to_string()))
}

pub fn store_error(e: StoreError) -> RpcError {
    RpcError::new(codes::INTERNAL_ERROR, e.to_string())
}

fn run_error(e: RunError) -> RpcError {
    match e {
        RunError::Config(errs) => {
            let data = serde_json::to_value(ConfigErrorData {
                errors: errs.0.clone(),
            })
            .unwrap_or(Value::Null);
            RpcError::new(codes::INVALID_CONFIGURATION, errs.to_string()).with_data(data)
        }
        RunError::Invalid(m) => RpcError::new(codes::INVALID_PARAMS, m),
        RunError::NotFound(m) => RpcError::new(codes::NOT_FOUND, m),
        RunError::Conflict(m) => RpcError::new(codes::CONFLICT, m),
        RunError::Forbidden(m) => RpcError::new(codes::FORBIDDEN, m),
        RunError::Store(e) => store_error(e),
    }
}

async fn run_plan(d: &Daemon, caller: &Caller, params: Result<RunApplyParams, RpcError>) -> Reply {
    let req = runs::parse_request(&params?).map_err(run_error)?;
    let runs_now = d.store.active_runs();
    let fleets = crate::loops::scheduling::fleet_views(d, &runs_now).map_err(store_error)?;
    let common = req.configuration.common();
    let mut offers = scheduler::pool_offers(&fleets, &common.resources, common.fleets.as_deref());
    // What configured backends could create for it.
    offers.extend(
        d.backends
            .offers(&common.resources, common.backends.as_deref()),
    );
    offers.retain(|o| {
        common.max_price.is_none_or(|max| o.price <= max)
            && crate::catalog::matching::spot_allowed(common.spot_policy, o.spot)
    });
    crate::catalog::sort_offers(&mut offers);
    let total = offers.len();
    let max_price = offers
        .iter()
        .map(|o| o.price)
        .fold(None, |m: Option<f64>, p| Some(m.map_or(p, |m| m.max(p))));
    offers.truncate(50);
    let current = if req.name_generated {
        None
    } else {
        d.store
            .run_by_name(&req.name)
            .map_err(store_error)?
            .map(|r| r.status.to_string())
    };
    let replicas = req.configuration.replicas().min.unwrap_or(1).max(1);
    let nodes = req.configuration.nodes().max(1);
    let jobs = (0..replicas)
        .flat_map(|r| (0..nodes).map(move |j| (r, j)))
        .map(|(r, j)| JobPlan {
            replica_num: r,
            job_num: j,
            job_name: format!("{}-{j}-{r}", req.name),
            offers: offers.clone(),
            total_offers: total,
            max_price,
        })
        .collect();
    json(RunPlan {
        run_name: req.name.clone(),
        configuration_type: req.configuration.type_name().to_string(),
        user: caller.user.clone(),
        current_run_status: current,
        jobs,
    })
}

async fn run_apply(d: &Daemon, caller: &Caller, params: Result<RunApplyParams, RpcError>) -> Reply {
    let params = params?;
    let mut req = runs::parse_request(&params).map_err(run_error)?;
    req.configuration.common_mut().name = None;
    let mut run = runs::apply(d, caller, req).await.map_err(run_error)?;
    run.configuration_path = params.file_name;
    json(run)
}

fn run_list(d: &Daemon, params: Result<RunListParams, RpcError>) -> Reply {
    let params = params?;
    if params.all {
        let mut runs: Vec<Run> = d.store.list_runs().map_err(store_error)?;
        runs.reverse(); // newest first
        return json(runs);
    }
    // Unfinished runs, newest first, or else the last run.
    let active = d.store.active_runs();
    if active.is_empty() {
        let last: Vec<Run> = d
            .store
            .last_run()
            .map_err(store_error)?
            .into_iter()
            .collect();
        return json(last);
    }
    json(active.iter().rev().map(|r| &**r).collect::<Vec<&Run>>())
}

fn submission_id(run: &Run, target: &LogTarget) -> Result<(u64, bool), RpcError> {
    let job = run.job(target.replica, target.job).ok_or_else(|| {
        RpcError::new(
            codes::NOT_FOUND,
            format!(
                "run {} has no job replica={} job={}",
                run.name, target.replica, target.job
            ),
        )
    })?;
    match target.submission {
        None => Ok((job.current.id, job.current.status.is_finished())),
        Some(n) => job
            .previous_submissions
            .iter()
            .chain([&job.current])
            .find(|s| s.submission_num == n)
            .map(|s| (s.id, s.status.is_finished()))
            .ok_or_else(|| {
                RpcError::new(
                    codes::NOT_FOUND,
                    format!(
                        "job {}/{} of {} has no submission {n}",
                        target.replica, target.job, run.name
                    ),
                )
            }),
    }
}

pub fn resolve_log(d: &Daemon, target: &LogTarget) -> Result<(Run, u64, bool), RpcError> {
    let run = runs::find_run(d, &target.run).map_err(run_error)?;
    let (sub, finished) = submission_id(&run, target)?;
    Ok((run, sub, finished))
}

fn logs_read(d: &Daemon, params: Result<LogsReadParams, RpcError>) -> Reply {
    let p = params?;
    let (_, sub, finished) = resolve_log(d, &p.target)?;
    let limit = p.limit.unwrap_or(1 << 20).min(1 << 20) as usize;
    let bytes = d
        .logs
        .read(sub, p.offset, limit)
        .map_err(|e| RpcError::new(codes::INTERNAL_ERROR, format!("cannot read the log: {e}")))?;
    let size = d.logs.size(sub);
    json(LogsReadResult {
        next_offset: p.offset + bytes.len() as u64,
        chunk: LogChunk::from_bytes(p.offset, &bytes),
        size,
        complete: finished,
    })
}

fn event_list(d: &Daemon, params: Result<EventsParams, RpcError>) -> Reply {
    let p = params?;
    let limit = p.limit.unwrap_or(100).min(10_000);
    let events = match p.since {
        Some(s) => d.store.events_since(s, limit),
        None => d.store.last_events(limit),
    }
    .map_err(store_error)?;
    json(EventList { events })
}

/// Fleets with their instances, block usage and idle/busy status as of now.
pub fn fleet_list(d: &Daemon) -> Result<Vec<Fleet>, RpcError> {
    let runs = d.store.active_runs();
    let views = crate::loops::scheduling::fleet_views(d, &runs).map_err(store_error)?;
    let mut fleets = d.store.list_fleets().map_err(store_error)?;
    for f in fleets.iter_mut() {
        for i in f.instances.iter_mut() {
            apply_usage(i, &views);
        }
    }
    Ok(fleets)
}

fn apply_usage(i: &mut Instance, views: &[scheduler::FleetView]) {
    if let Some(slot) = views
        .iter()
        .flat_map(|v| v.instances.iter())
        .find(|s| s.id == i.id)
    {
        i.busy_blocks = slot.busy_blocks;
        if matches!(i.status, InstanceStatus::Idle | InstanceStatus::Busy) {
            i.status = if slot.busy_blocks > 0 {
                InstanceStatus::Busy
            } else {
                InstanceStatus::Idle
            };
        }
    }
}

fn offer_list(d: &Daemon, params: Result<OfferQuery, RpcError>) -> Reply {
    let q = params?;
    let list: OfferList = crate::offers::list(d, &q)?;
    json(list)
}

fn daemon_status(d: &Daemon) -> Reply {
    let active = d.store.active_runs().len();
    let fleets = d.store.list_fleets().map_err(store_error)?;
    let now = Timestamp::now();
    json(DaemonStatus {
        version: flotilla_protocol::VERSION.into(),
        protocol: PROTOCOL_VERSION.into(),
        pid: std::process::id(),
        socket: d.config.socket.display().to_string(),
        data_dir: d.config.data_dir.display().to_string(),
        started_at: d.started_at,
        uptime_secs: d.started_at.secs_until(now),
        runs: d.store.count_runs(),
        active_runs: active,
        fleets: fleets.len(),
        instances: fleets.iter().map(|f| f.instances.len()).sum(),
    })
}

async fn refresh_key(d: &Daemon, caller: &Caller, p: RefreshKeyParams) -> Reply {
    let uid = p.uid.unwrap_or(caller.uid);
    if uid != caller.uid && !caller.admin {
        return Err(RpcError::new(
            codes::FORBIDDEN,
            "only an admin can refresh another user's key",
        ));
    }
    if uid == caller.uid {
        crate::users::ensure(d, caller)
            .await
            .map_err(|e| RpcError::new(codes::INTERNAL_ERROR, e.to_string()))?;
    }
    let user = crate::users::refresh(d, uid)
        .await
        .map_err(|e| RpcError::new(codes::INTERNAL_ERROR, e.to_string()))?
        .ok_or_else(|| RpcError::new(codes::NOT_FOUND, format!("no user with uid {uid}")))?;
    let mut user = user;
    if uid != caller.uid {
        // The private key goes to its owner alone.
        user.ssh_private_key = None;
    }
    json(user)
}

fn metrics_get(d: &Daemon, p: MetricsParams) -> Reply {
    let window = p
        .window_secs
        .unwrap_or(crate::loops::metrics::WINDOW_SECS)
        .min(crate::loops::metrics::WINDOW_SECS);
    let instance = match (&p.instance, &p.run) {
        (Some(i), _) => Some(i.clone()),
        (None, Some(run)) => {
            let run = runs::find_run(d, run).map_err(run_error)?;
            run.jobs.first().and_then(|j| {
                Some(format!(
                    "{}/{}",
                    j.current.fleet.as_ref()?,
                    j.current.instance.as_ref()?
                ))
            })
        }
        (None, None) => None,
    };
    let mut series = d.metrics.get(instance.as_deref(), window, Timestamp::now());
    // A run sees the GPUs its first job holds.
    if let Some(run) = &p.run {
        if let Ok(r) = runs::find_run(d, run) {
            if let Some(j) = r.jobs.first() {
                series.retain(|s| j.current.gpus.contains(&s.gpu));
            }
        }
    }
    json(MetricsResult { series })
}

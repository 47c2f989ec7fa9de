//! Driver layer: the route table of the socket methods. Each route decodes its params, calls
//! one operation of `ops::`, and encodes the result or the JSON-RPC error.

use super::streams;
use super::wire::{decode, json, op_error, Outbox};
use crate::caller::Caller;
use crate::handle::Daemon;
use crate::ops::{self, OpError};
use flotilla_protocol::rpc::{
    codes, methods, EventList, EventsParams, FleetApplyParams, FleetNameParams, LogsReadParams,
    MetricsParams, OfferQuery, RefreshKeyParams, Request, Response, RpcError, RunApplyParams,
    RunListParams, RunNameParams, RunStopParams, PROTOCOL_VERSION,
};
use serde::Serialize;
use serde_json::Value;

type Reply = Result<Value, RpcError>;

/// Answers one request (after `hello`; `tunnel.open` is the connection's own).
pub async fn dispatch(
    d: &Daemon,
    caller: &Caller,
    req: Request,
    id: Value,
    out: &Outbox,
) -> Option<Response> {
    let method = req.method.as_str();
    let params = req
        .params
        .clone()
        .unwrap_or(Value::Object(Default::default()));
    let result = route(d, caller, method, params, &id, out).await;
    Some(match result {
        Ok(v) => Response::ok(id, v),
        Err(e) => Response::err(id, e),
    })
}

async fn route(
    d: &Daemon,
    caller: &Caller,
    method: &str,
    params: Value,
    id: &Value,
    out: &Outbox,
) -> Reply {
    match method {
        methods::RUN_PLAN => {
            let p: RunApplyParams = decode(method, params)?;
            reply(ops::runs::plan(d, caller, &p))
        }
        methods::RUN_APPLY => {
            let p: RunApplyParams = decode(method, params)?;
            reply(ops::runs::apply_params(d, caller, &p).await)
        }
        methods::RUN_LIST => {
            let p: RunListParams = decode(method, params)?;
            reply(ops::runs::list(d, p.all))
        }
        methods::RUN_GET => {
            let p: RunNameParams = decode(method, params)?;
            reply(ops::runs::find_run(d, &p.name))
        }
        methods::RUN_STOP => {
            let p: RunStopParams = decode(method, params)?;
            reply(ops::runs::stop(d, caller, &p.name, p.abort).await)
        }
        methods::RUN_DELETE => {
            let p: RunNameParams = decode(method, params)?;
            ops::runs::delete(d, caller, &p.name)
                .await
                .map_err(op_error)?;
            Ok(serde_json::json!({"deleted": p.name}))
        }
        methods::LOGS_READ => {
            let p: LogsReadParams = decode(method, params)?;
            reply(ops::logs::read(d, &p))
        }
        methods::LOGS_FOLLOW => streams::logs_follow(d, decode(method, params)?, id, out).await,
        methods::EVENTS_WATCH => streams::events_watch(d, decode(method, params)?, id, out).await,
        methods::EVENT_LIST => {
            let p: EventsParams = decode(method, params)?;
            reply(ops::events::list(d, p.since, p.limit).map(|events| EventList { events }))
        }
        methods::FLEET_LIST => reply(ops::fleets::list(d)),
        methods::INSTANCE_LIST => reply(ops::fleets::instances(d)),
        methods::OFFER_LIST => {
            let q: OfferQuery = decode(method, params)?;
            reply(ops::offers::list(d, &q))
        }
        methods::FLEET_APPLY => {
            let p: FleetApplyParams = decode(method, params)?;
            reply(ops::fleets::apply(d, caller, &p).await)
        }
        methods::FLEET_GET => {
            let p: FleetNameParams = decode(method, params)?;
            reply(ops::fleets::get(d, &p.name))
        }
        methods::FLEET_DELETE => {
            let p: FleetNameParams = decode(method, params)?;
            ops::fleets::delete(d, caller, &p.name)
                .await
                .map_err(op_error)?;
            Ok(serde_json::json!({"deleted": p.name}))
        }
        methods::METRICS_GET => {
            let p: MetricsParams = decode(method, params)?;
            reply(ops::metrics::get(d, &p))
        }
        methods::USER_ME => reply(ops::users::me(d, caller).await),
        methods::USER_REFRESH_SSH_KEY => {
            let p: RefreshKeyParams = decode(method, params)?;
            reply(ops::users::refresh_key(d, caller, p.uid).await)
        }
        methods::DAEMON_STATUS => reply(ops::status::status(d)),
        methods::DAEMON_STOP => {
            if caller.admin {
                d.shutdown().cancel();
                Ok(serde_json::json!({"stopping": true}))
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
    }
}

/// An operation's answer, encoded.
fn reply<T: Serialize>(r: Result<T, OpError>) -> Reply {
    r.map_err(op_error).and_then(json)
}

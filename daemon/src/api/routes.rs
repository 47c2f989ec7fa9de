//! Driver layer: the route table of the socket methods. Each route decodes its params, calls
//! one operation of `ops::`, and encodes the result or the JSON-RPC error.

use super::streams;
use super::wire::op_error;
use super::wire::Outbox;
use crate::caller::Caller;
use crate::handle::Daemon;
use crate::ops::{self, OpError};
use flotilla_protocol::rpc::methods::{self as m, decode_params, encode_result, Method};
use flotilla_protocol::rpc::{
    codes, Deleted, EventList, Request, RequestId, Response, RpcError, Stopping, PROTOCOL_VERSION,
};
use serde_json::Value;

type Reply = Result<Value, RpcError>;

/// Answers one request (after `hello`; `tunnel.open` is the connection's own).
pub async fn dispatch(
    d: &Daemon,
    caller: &Caller,
    req: Request,
    id: RequestId,
    out: &Outbox,
) -> Option<Response> {
    let result = route(d, caller, &req.method, req.params, &id, out).await;
    Some(match result {
        Ok(v) => Response::ok(id, v),
        Err(e) => Response::err(id, e),
    })
}

/// The route table: each arm is keyed by a protocol [`Method`], decodes that method's params
/// and must answer that method's result type, so the compiler joins every call to its handler.
async fn route(
    d: &Daemon,
    caller: &Caller,
    method: &str,
    raw: Option<Value>,
    id: &RequestId,
    out: &Outbox,
) -> Reply {
    match method {
        m::RunPlan::NAME => {
            let p = decode_params::<m::RunPlan>(raw)?;
            ops::offers::refresh_live(d).await;
            // Parsing and matching offers are CPU work: on the blocking pool, not a worker.
            let (d, caller) = (d.clone(), caller.clone());
            let planned = tokio::task::spawn_blocking(move || ops::runs::plan(&d, &caller, &p))
                .await
                .map_err(|e| OpError::Internal(format!("run.plan did not finish: {e}")));
            answer::<m::RunPlan>(planned.and_then(|r| r))
        }
        m::RunApply::NAME => {
            let p = decode_params::<m::RunApply>(raw)?;
            answer::<m::RunApply>(ops::runs::apply_params(d, caller, &p).await)
        }
        m::RunList::NAME => {
            let p = decode_params::<m::RunList>(raw)?;
            answer::<m::RunList>(ops::runs::list(d, caller, p.all))
        }
        m::RunGet::NAME => {
            let p = decode_params::<m::RunGet>(raw)?;
            answer::<m::RunGet>(ops::runs::get(d, caller, &p.name))
        }
        m::RunStop::NAME => {
            let p = decode_params::<m::RunStop>(raw)?;
            answer::<m::RunStop>(ops::runs::stop(d, caller, &p.name, p.abort).await)
        }
        m::RunDelete::NAME => {
            let p = decode_params::<m::RunDelete>(raw)?;
            let done = ops::runs::delete(d, caller, &p.name).await;
            answer::<m::RunDelete>(done.map(|_| Deleted { deleted: p.name }))
        }
        m::LogsRead::NAME => {
            let p = decode_params::<m::LogsRead>(raw)?;
            answer::<m::LogsRead>(ops::logs::read(d, caller, &p))
        }
        m::LogsFollow::NAME => {
            let p = decode_params::<m::LogsFollow>(raw)?;
            streams::logs_follow(d, caller, p, id, out).await
        }
        m::EventsWatch::NAME => {
            let p = decode_params::<m::EventsWatch>(raw)?;
            streams::events_watch(d, caller, p, id, out).await
        }
        m::EventList::NAME => {
            let p = decode_params::<m::EventList>(raw)?;
            let events = ops::events::list(d, caller, p.since, p.limit);
            answer::<m::EventList>(events.map(|events| EventList { events }))
        }
        m::FleetList::NAME => {
            decode_params::<m::FleetList>(raw)?;
            answer::<m::FleetList>(ops::fleets::list(d))
        }
        m::InstanceList::NAME => {
            decode_params::<m::InstanceList>(raw)?;
            answer::<m::InstanceList>(ops::fleets::instances(d))
        }
        m::OfferList::NAME => {
            let q = decode_params::<m::OfferList>(raw)?;
            // Online offers (Vast.ai's search) and live availability are fetched first.
            let warnings = ops::offers::refresh_live(d).await;
            answer::<m::OfferList>(ops::offers::list(d, &q).map(|mut l| {
                l.warnings.extend(warnings);
                l
            }))
        }
        m::BackendList::NAME => {
            let p = decode_params::<m::BackendList>(raw)?;
            answer::<m::BackendList>(ops::backends::list(d, &p).await)
        }
        m::FleetApply::NAME => {
            let p = decode_params::<m::FleetApply>(raw)?;
            answer::<m::FleetApply>(ops::fleets::apply(d, caller, &p).await)
        }
        m::FleetGet::NAME => {
            let p = decode_params::<m::FleetGet>(raw)?;
            answer::<m::FleetGet>(ops::fleets::get(d, &p.name))
        }
        m::FleetDelete::NAME => {
            let p = decode_params::<m::FleetDelete>(raw)?;
            let done = ops::fleets::delete(d, caller, &p.name).await;
            answer::<m::FleetDelete>(done.map(|_| Deleted { deleted: p.name }))
        }
        m::MetricsGet::NAME => {
            let p = decode_params::<m::MetricsGet>(raw)?;
            answer::<m::MetricsGet>(ops::metrics::get(d, &p))
        }
        m::UserMe::NAME => {
            decode_params::<m::UserMe>(raw)?;
            answer::<m::UserMe>(ops::users::me(d, caller).await)
        }
        m::UserRefreshToken::NAME => {
            decode_params::<m::UserRefreshToken>(raw)?;
            answer::<m::UserRefreshToken>(ops::tokens::refresh(d, caller).await)
        }
        m::UserRefreshSshKey::NAME => {
            let p = decode_params::<m::UserRefreshSshKey>(raw)?;
            answer::<m::UserRefreshSshKey>(ops::users::refresh_key(d, caller, p.uid).await)
        }
        m::SecretSet::NAME => {
            let p = decode_params::<m::SecretSet>(raw)?;
            answer::<m::SecretSet>(ops::secrets::set(d, caller, &p.name, &p.value).await)
        }
        m::SecretList::NAME => {
            decode_params::<m::SecretList>(raw)?;
            answer::<m::SecretList>(ops::secrets::list(d))
        }
        m::SecretGet::NAME => {
            let p = decode_params::<m::SecretGet>(raw)?;
            answer::<m::SecretGet>(ops::secrets::get(d, caller, &p.name))
        }
        m::SecretDelete::NAME => {
            let p = decode_params::<m::SecretDelete>(raw)?;
            let done = ops::secrets::delete(d, caller, &p.name).await;
            answer::<m::SecretDelete>(done.map(|_| Deleted { deleted: p.name }))
        }
        m::DaemonStatus::NAME => {
            decode_params::<m::DaemonStatus>(raw)?;
            answer::<m::DaemonStatus>(ops::status::status(d))
        }
        m::DaemonStop::NAME => {
            decode_params::<m::DaemonStop>(raw)?;
            if !caller.admin {
                return Err(RpcError::new(
                    codes::FORBIDDEN,
                    "only root or the daemon's own user can stop the daemon",
                ));
            }
            d.shutdown().cancel();
            answer::<m::DaemonStop>(Ok(Stopping { stopping: true }))
        }
        _ => Err(RpcError::new(
            codes::METHOD_NOT_FOUND,
            format!("unknown method `{method}`; the README lists the methods of protocol {PROTOCOL_VERSION}"),
        )),
    }
}

/// An operation's answer for method `M`: it must be `M`'s result type.
fn answer<M: Method>(r: Result<M::Result, OpError>) -> Reply {
    r.map_err(op_error).and_then(|v| encode_result::<M>(&v))
}

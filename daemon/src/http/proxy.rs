//! Driver layer, HTTP: forwarding one request to a replica of a service. The replica is the
//! ready one with the fewest requests in flight (`Services::pick_or_wait`, which holds the
//! request while none is ready); the response streams back frame by frame (server-sent events
//! arrive as they are written); a WebSocket (any `Upgrade`) becomes a byte pipe once the replica
//! answers 101. A request that fails before its answer started goes to another ready replica
//! when that cannot repeat an effect: a request whose body was kept (empty or small) and that is
//! idempotent, or any such request that never reached the replica.

use super::client::{replica_uri, Body};
use super::reply;
use super::State;
use crate::ops::proxy::ServiceRoute;
use crate::services::Lease;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use tracing::debug;

/// A request body up to this size is kept, so the request can go to another replica.
const KEEP_BODY: u64 = 64 * 1024;
/// At most this many replicas are tried for one request.
const MAX_TRIES: usize = 3;

/// Headers of one hop, never forwarded (RFC 9110 7.6.1), but for an upgrade's own.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// What the server decided about a request before it goes to a replica.
pub struct Forward {
    /// The path and query the replica gets.
    pub path_and_query: String,
    /// Drop the `Authorization` header (it carried the caller's flotilla token).
    pub drop_auth: bool,
    pub peer: SocketAddr,
}

/// The request's body: kept (it can be sent again) or streamed (once).
pub enum Payload {
    Kept(Bytes),
    Streamed(Option<Incoming>),
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
}

fn idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// The headers the replica gets: the client's, less the hops' own (an upgrade keeps its
/// `Connection`/`Upgrade`), with `X-Forwarded-For`, `X-Real-IP`, `X-Forwarded-Proto`.
fn upstream_headers(from: &HeaderMap, f: &Forward, upgrade: bool) -> HeaderMap {
    let mut h = from.clone();
    // Headers the client's `Connection` names are the hop's own too.
    let named: Vec<HeaderName> = from
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named {
        if !(upgrade && name == header::UPGRADE) {
            h.remove(&name);
        }
    }
    for name in HOP_BY_HOP {
        h.remove(*name);
    }
    if upgrade {
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        if let Some(u) = from.get(header::UPGRADE) {
            h.insert(header::UPGRADE, u.clone());
        }
    }
    if f.drop_auth {
        h.remove(header::AUTHORIZATION);
    }
    let ip = f.peer.ip().to_string();
    let forwarded_for = match from.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(prior) => format!("{prior}, {ip}"),
        None => ip.clone(),
    };
    if let Ok(v) = HeaderValue::from_str(&forwarded_for) {
        h.insert("x-forwarded-for", v);
    }
    if let Ok(v) = HeaderValue::from_str(&ip) {
        h.insert("x-real-ip", v);
    }
    h.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    h
}

/// The response's headers less the hops' own (a 101 keeps `Connection`/`Upgrade`).
fn downstream_headers(h: &mut HeaderMap, switching: bool) {
    for name in HOP_BY_HOP {
        if switching && (*name == "connection" || *name == "upgrade") {
            continue;
        }
        h.remove(*name);
    }
}

/// Sends the request to a replica of `route` and answers with its response.
pub async fn forward(
    state: &State,
    route: &ServiceRoute,
    mut req: Request<Incoming>,
    f: Forward,
) -> Response<Body> {
    let upgrade = is_upgrade(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (parts, body) = req.into_parts();
    let small = body.size_hint().upper().is_some_and(|n| n <= KEEP_BODY);
    let payload = if upgrade || body.is_end_stream() {
        Payload::Kept(Bytes::new())
    } else if small {
        match body.collect().await {
            Ok(b) => Payload::Kept(b.to_bytes()),
            Err(e) => return reply::detail(400, &format!("cannot read the request body: {e}")),
        }
    } else {
        Payload::Streamed(Some(body))
    };
    forward_parts(state, route, parts, payload, client_upgrade, f).await
}

/// Sends a request already read (`parts`, `payload`) to a replica of `route`.
pub async fn forward_parts(
    state: &State,
    route: &ServiceRoute,
    parts: hyper::http::request::Parts,
    mut payload: Payload,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    f: Forward,
) -> Response<Body> {
    let headers = upstream_headers(&parts.headers, &f, client_upgrade.is_some());
    let mut tried: Vec<u64> = Vec::new();
    let mut last_error = String::new();
    while tried.len() < MAX_TRIES {
        let lease = if tried.is_empty() {
            state
                .d
                .services()
                .pick_or_wait(route.run_id, route.hold)
                .await
        } else {
            state.d.services().pick_except(route.run_id, &tried)
        };
        let Some(lease) = lease else {
            break;
        };
        let uri = match replica_uri(&lease.target, &f.path_and_query) {
            Ok(u) => u,
            Err(e) => return reply::detail(400, &e),
        };
        let body: Body = match &mut payload {
            Payload::Kept(b) if b.is_empty() => reply::empty(),
            Payload::Kept(b) => reply::full(b.clone()),
            Payload::Streamed(s) => match s.take() {
                Some(incoming) => incoming.boxed(),
                None => break,
            },
        };
        let mut up = Request::new(body);
        *up.method_mut() = parts.method.clone();
        *up.uri_mut() = uri;
        *up.headers_mut() = headers.clone();
        match state.client.request(up).await {
            Ok(resp) => {
                return respond(resp, lease, client_upgrade);
            }
            Err(e) => {
                let kept = matches!(payload, Payload::Kept(_));
                let again = kept && (idempotent(&parts.method) || e.is_connect());
                debug!(
                    run = %route.run_name,
                    replica = lease.target.replica_num,
                    "request to a replica failed: {e:?}"
                );
                last_error = format!(
                    "replica {} of {} failed: {e}",
                    lease.target.replica_num, route.run_name
                );
                tried.push(lease.target.submission);
                if !again {
                    break;
                }
            }
        }
    }
    if tried.is_empty() {
        return reply::detail(
            503,
            &format!(
                "no replica of service {} is ready (waited {}s); `flotilla ps -v` shows its replicas, `flotilla logs {}` their output",
                route.run_name,
                route.hold.as_secs(),
                route.run_name
            ),
        );
    }
    reply::detail(
        502,
        &format!(
            "{last_error}; `flotilla logs {}` shows its output",
            route.run_name
        ),
    )
}

/// The replica's response, its body counted on the replica until it ends; a 101 to an
/// upgrade joins the client's connection to the replica's.
fn respond(
    resp: Response<Incoming>,
    lease: Lease,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
) -> Response<Body> {
    let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
    if let (true, Some(client)) = (switching, client_upgrade) {
        let mut resp = resp;
        let replica = hyper::upgrade::on(&mut resp);
        tokio::spawn(async move {
            let _lease = lease;
            match tokio::try_join!(client, replica) {
                Ok((c, r)) => {
                    let (mut c, mut r) = (TokioIo::new(c), TokioIo::new(r));
                    if let Err(e) = tokio::io::copy_bidirectional(&mut c, &mut r).await {
                        debug!("an upgraded connection ended: {e}");
                    }
                }
                Err(e) => debug!("an upgrade did not complete: {e}"),
            }
        });
        let (mut parts, _) = resp.into_parts();
        downstream_headers(&mut parts.headers, true);
        return Response::from_parts(parts, reply::empty());
    }
    let (mut parts, body) = resp.into_parts();
    downstream_headers(&mut parts.headers, false);
    Response::from_parts(
        parts,
        BodyExt::boxed(Leased {
            inner: body,
            _lease: lease,
        }),
    )
}

/// A replica's response body; the request counts as in flight on the replica until it drops.
struct Leased {
    inner: Incoming,
    _lease: Lease,
}

impl hyper::body::Body for Leased {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forward() -> Forward {
        Forward {
            path_and_query: "/".into(),
            drop_auth: true,
            peer: ([10, 1, 2, 3], 5000).into(),
        }
    }

    #[test]
    fn hop_headers_and_the_token_stay_behind() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("authorization", HeaderValue::from_static("Bearer flt_x"));
        h.insert("accept", HeaderValue::from_static("text/event-stream"));
        let up = upstream_headers(&h, &forward(), false);
        for gone in ["connection", "x-secret", "keep-alive", "authorization"] {
            assert!(!up.contains_key(gone), "{gone} forwarded");
        }
        assert_eq!(up["accept"], "text/event-stream");
        assert_eq!(up["x-forwarded-for"], "10.1.2.3");
        assert_eq!(up["x-real-ip"], "10.1.2.3");
    }

    #[test]
    fn an_upgrade_keeps_its_headers() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("Upgrade"));
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        h.insert("x-forwarded-for", HeaderValue::from_static("1.1.1.1"));
        assert!(is_upgrade(&h));
        let up = upstream_headers(&h, &forward(), true);
        assert_eq!(up["connection"], "upgrade");
        assert_eq!(up["upgrade"], "websocket");
        assert_eq!(up["x-forwarded-for"], "1.1.1.1, 10.1.2.3");
    }
}

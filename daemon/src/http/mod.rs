//! Driver layer: the HTTP server in front of services (`--http ADDR`, `http_listen`). Each
//! service answers at dstack's path, `/proxy/services/main/RUN/`, and services with a `model`
//! on the OpenAI-compatible `/proxy/models/main/`. A request meets, in order: the service's
//! lookup, its `auth` (a user's bearer token), its `rate_limits`, then a ready replica
//! (`proxy.rs`). HTTP/1.1 with keep-alive, streamed bodies and upgrades (hyper). Calls `ops::`
//! and the handle, never a loop.

mod client;
mod limits;
mod models;
mod proxy;
mod reply;

use crate::config::HttpListen;
use crate::handle::Daemon;
use crate::ops;
use crate::ops::proxy::{ProxyError, ServiceRoute};
use crate::services::Endpoint;
use client::Body;
use hyper::body::Incoming;
use hyper::header::{HeaderMap, AUTHORIZATION};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tracing::{debug, info, warn};

/// What every request of the server shares.
pub struct State {
    d: Daemon,
    client: client::Upstream,
    limits: limits::Limits,
}

impl State {
    /// Whether the service's `rate_limits` let the request (at `path` within the service) pass.
    fn admit(&self, route: &ServiceRoute, path: &str, peer: SocketAddr, h: &HeaderMap) -> bool {
        if route.rate_limits.is_empty() {
            return true;
        }
        self.limits
            .admit(route.run_id, &route.rate_limits, path, peer.ip(), |name| {
                h.get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(|v| v.to_string())
            })
    }
}

/// Binds the configured address; where that fails the daemon goes on without the endpoint,
/// and `daemon status`, `ps` and the dashboard say why.
pub async fn bind(d: &Daemon) -> Option<TcpListener> {
    let addr = match &d.config().http_listen {
        HttpListen::Off => {
            d.services().set_endpoint(Endpoint::Off);
            return None;
        }
        HttpListen::At(a) => *a,
    };
    match TcpListener::bind(addr).await {
        Ok(l) => {
            let bound = l.local_addr().unwrap_or(addr);
            d.services().set_endpoint(Endpoint::Up(bound));
            info!(http = %bound, "serving services over HTTP");
            Some(l)
        }
        Err(e) => {
            let error = if e.kind() == std::io::ErrorKind::AddrInUse {
                format!("{e}: another program listens there; stop it, or start flotillad with --http ADDR (or `http_listen` in config.yml)")
            } else {
                format!("{e}; start flotillad with --http ADDR (or `http_listen` in config.yml)")
            };
            warn!("the HTTP endpoint is down: cannot listen on {addr}: {error}");
            d.services().set_endpoint(Endpoint::Down {
                listen: addr.to_string(),
                error,
            });
            None
        }
    }
}

/// Accepts connections until shutdown.
pub async fn serve(d: Daemon, listener: TcpListener) {
    let state = Arc::new(State {
        client: client::upstream(&d),
        limits: limits::Limits::default(),
        d: d.clone(),
    });
    loop {
        tokio::select! {
            _ = d.shutdown().cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    if let Err(e) = tcp.set_nodelay(true) {
                        debug!("TCP_NODELAY for {peer}: {e}");
                    }
                    let state = state.clone();
                    tokio::spawn(async move {
                        let service = service_fn(move |req| {
                            let state = state.clone();
                            async move { Ok::<_, Infallible>(handle(&state, peer, req).await) }
                        });
                        let served = http1::Builder::new()
                            .timer(TokioTimer::new())
                            .serve_connection(TokioIo::new(tcp), service)
                            .with_upgrades()
                            .await;
                        if let Err(e) = served {
                            debug!("HTTP connection from {peer}: {e}");
                        }
                    });
                }
                Err(e) => {
                    warn!("HTTP accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }
    d.services().set_endpoint(Endpoint::Off);
}

async fn handle(state: &State, peer: SocketAddr, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    if let Some(rest) = path.strip_prefix("/proxy/services/") {
        return service(state, peer, req, rest).await;
    }
    if let Some(rest) = path.strip_prefix("/proxy/models/") {
        return models::handle(state, peer, req, rest).await;
    }
    reply::detail(
        404,
        &format!(
            "nothing at {path}: services answer at /proxy/services/main/RUN/, models at /proxy/models/main/"
        ),
    )
}

/// The caller's user name from `Authorization: Bearer TOKEN`: 401 without a token, 403 for a
/// token no user has.
fn authorize(state: &State, h: &HeaderMap) -> Result<String, ProxyError> {
    const HOW: &str = "`flotilla token` prints yours";
    let Some(value) = h.get(AUTHORIZATION) else {
        return Err(ProxyError::new(
            401,
            format!("a token is needed: send `Authorization: Bearer TOKEN`; {HOW}"),
        ));
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
        .filter(|t| !t.is_empty());
    let Some(token) = token else {
        return Err(ProxyError::new(
            401,
            format!("the Authorization header is not `Bearer TOKEN`; {HOW}"),
        ));
    };
    match ops::proxy::token_user(&state.d, token)? {
        Some(user) => Ok(user),
        None => Err(ProxyError::new(
            403,
            format!(
                "the token is no flotilla user's (a refreshed token replaces the old one); {HOW}"
            ),
        )),
    }
}

/// `rest`: the path after `/proxy/services/`, i.e. `main/RUN/...`.
async fn service(
    state: &State,
    peer: SocketAddr,
    req: Request<Incoming>,
    rest: &str,
) -> Response<Body> {
    let (project, tail) = rest.split_once('/').unwrap_or((rest, ""));
    if let Err(e) = ops::proxy::check_project(project) {
        return reply::detail(e.status, &e.message);
    }
    let (run, inner) = match tail.split_once('/') {
        Some((run, inner)) => (run, Some(inner)),
        None => (tail, None),
    };
    if run.is_empty() {
        return reply::detail(404, "name a service: /proxy/services/main/RUN/");
    }
    let query = req
        .uri()
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let Some(inner) = inner else {
        // dstack's redirect of the service's root without its slash.
        return reply::redirect(&format!("{}/{query}", req.uri().path()));
    };
    let route = match ops::proxy::service(&state.d, run) {
        Ok(r) => r,
        Err(e) => return reply::detail(e.status, &e.message),
    };
    ops::proxy::note_request(&state.d, route.run_id);
    if route.auth {
        if let Err(e) = authorize(state, req.headers()) {
            return reply::detail(e.status, &e.message);
        }
    }
    let inner_path = format!("/{inner}");
    if !state.admit(&route, &inner_path, peer, req.headers()) {
        return reply::detail(
            429,
            &format!("too many requests: service {run}'s rate limit is reached; slow down"),
        );
    }
    let path = if route.strip_prefix {
        inner_path
    } else {
        req.uri().path().to_string()
    };
    let f = proxy::Forward {
        path_and_query: format!("{path}{query}"),
        drop_auth: route.auth,
        peer,
    };
    proxy::forward(state, &route, req, f).await
}

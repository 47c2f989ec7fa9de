//! Operations layer: what the HTTP proxy in front of services asks of the daemon. Which service
//! a URL or a model name leads to (with its `auth`, `strip_prefix`, `rate_limits` and model),
//! who a bearer token belongs to, which models are served, and each service's URL as runs
//! show it (`ps`, `run.get`, `apply`).

use super::OpError;
use crate::handle::Daemon;
use crate::services::Endpoint;
use flotilla_protocol::config::{ModelSpec, RateLimit, RunConfiguration, ServiceConfig};
use flotilla_protocol::model::{Run, ServiceEndpoint, ServiceModel};
use flotilla_protocol::rpc::HttpStatus;
use std::sync::Arc;
use std::time::Duration;

/// The one project of a flotilla daemon, as dstack's URLs name it.
pub const PROJECT: &str = "main";

/// How long a request is held while a service that may scale to zero starts a replica.
pub const HOLD_FROM_ZERO: Duration = Duration::from_secs(120);
/// How long a request is held while a service that keeps replicas has none ready (one being
/// replaced, or still starting).
pub const HOLD_OTHERWISE: Duration = Duration::from_secs(10);

/// A service as the proxy serves it.
#[derive(Debug, Clone)]
pub struct ServiceRoute {
    pub run_id: u64,
    pub run_name: String,
    /// `auth: true`: a request needs a user's token.
    pub auth: bool,
    /// Forward the path without `/proxy/services/main/RUN` (dstack's default).
    pub strip_prefix: bool,
    pub rate_limits: Vec<RateLimit>,
    pub model: Option<ModelSpec>,
    /// How long a request waits for a ready replica.
    pub hold: Duration,
}

/// Why the proxy cannot serve a request, with the HTTP status it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyError {
    pub status: u16,
    pub message: String,
}

impl ProxyError {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        ProxyError {
            status,
            message: message.into(),
        }
    }
}

impl From<OpError> for ProxyError {
    fn from(e: OpError) -> Self {
        ProxyError::new(500, format!("the daemon cannot answer: {e}"))
    }
}

fn route(run: &Run, s: &ServiceConfig) -> ServiceRoute {
    ServiceRoute {
        run_id: run.id,
        run_name: run.name.clone(),
        auth: s.auth,
        strip_prefix: s.strip_prefix,
        rate_limits: s.rate_limits.clone(),
        model: s.model.clone(),
        hold: if s.replicas.min.unwrap_or(1) == 0 {
            HOLD_FROM_ZERO
        } else {
            HOLD_OTHERWISE
        },
    }
}

/// The configuration of a service run.
fn service_config(r: &Run) -> Option<&ServiceConfig> {
    match &r.configuration {
        RunConfiguration::Service(s) => Some(s),
        _ => None,
    }
}

/// The unfinished service runs.
fn services(d: &Daemon) -> impl Iterator<Item = Arc<Run>> {
    d.store()
        .active_runs()
        .into_iter()
        .filter(|r| service_config(r).is_some())
}

/// Checks the project part of a URL (`main`).
pub fn check_project(project: &str) -> Result<(), ProxyError> {
    if project == PROJECT {
        return Ok(());
    }
    Err(ProxyError::new(
        404,
        format!("project {project} not found: a flotilla daemon has one project, `{PROJECT}`"),
    ))
}

/// The service run `name` (unfinished), or 404 saying what exists.
pub fn service(d: &Daemon, name: &str) -> Result<ServiceRoute, ProxyError> {
    if let Some(route) = services(d)
        .find(|r| r.name == name)
        .and_then(|r| service_config(&r).map(|s| route(&r, s)))
    {
        return Ok(route);
    }
    let message = match d.store().run_by_name(name).map_err(OpError::from)? {
        Some(r) if r.configuration.type_name() != "service" => format!(
            "run {name} is a {}, not a service: only services have an HTTP endpoint",
            r.configuration.type_name()
        ),
        Some(r) => format!("service {name} is {}; apply it again to serve it", r.status),
        None => format!("service {name} not found; `flotilla ps` lists the runs"),
    };
    Err(ProxyError::new(404, message))
}

/// The service whose `model.name` is `model` (the newest if several), or `None`.
pub fn model_service(d: &Daemon, model: &str) -> Option<ServiceRoute> {
    services(d)
        .filter(|r| {
            service_config(r)
                .and_then(|s| s.model.as_ref())
                .is_some_and(|m| m.name == model)
        })
        .max_by_key(|r| r.submitted_at)
        .and_then(|r| service_config(&r).map(|s| route(&r, s)))
}

/// One model on the OpenAI-compatible endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelEntry {
    pub name: String,
    /// When its service was submitted (seconds since the epoch).
    pub created: u64,
}

/// The models of the unfinished services, by name (one entry per name).
pub fn models(d: &Daemon) -> Vec<ModelEntry> {
    let mut out: Vec<ModelEntry> = services(d)
        .filter_map(|r| {
            Some(ModelEntry {
                name: service_config(&r)?.model.as_ref()?.name.clone(),
                created: r.submitted_at.millis() / 1000,
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name).then(b.created.cmp(&a.created)));
    out.dedup_by(|a, b| a.name == b.name);
    out
}

/// Who a request's bearer token belongs to (its name), or `None` for a token no user has.
pub fn token_user(d: &Daemon, token: &str) -> Result<Option<String>, ProxyError> {
    Ok(super::tokens::authenticate(d, token)?.map(|(_, name)| name))
}

/// Counts a request that arrived for a service (the autoscaler's `rps`).
pub fn note_request(d: &Daemon, run_id: u64) {
    d.services().note_request(run_id);
}

/// The HTTP server as `daemon status` reports it.
pub fn http_status(d: &Daemon) -> HttpStatus {
    let listen = match &d.config().http_listen {
        crate::config::HttpListen::Off => "off".to_string(),
        crate::config::HttpListen::At(a) => a.to_string(),
    };
    match d.services().endpoint() {
        Endpoint::Off => HttpStatus {
            listen,
            address: None,
            error: None,
        },
        Endpoint::Up(addr) => HttpStatus {
            listen,
            address: Some(addr.to_string()),
            error: None,
        },
        Endpoint::Down { error, .. } => HttpStatus {
            listen,
            address: None,
            error: Some(error),
        },
    }
}

/// The base of every URL the server answers (`http://127.0.0.1:3000`), or why there is none.
fn base_url(d: &Daemon) -> Result<String, String> {
    match d.services().endpoint() {
        Endpoint::Up(addr) => {
            // A server on every address is reached on this machine through the loopback.
            let ip = if addr.ip().is_unspecified() {
                std::net::IpAddr::from([127, 0, 0, 1])
            } else {
                addr.ip()
            };
            Ok(format!("http://{}", std::net::SocketAddr::new(ip, addr.port())))
        }
        Endpoint::Off => Err(
            "the daemon's HTTP endpoint is off (flotillad --http off); start it with --http ADDR or `http_listen` in config.yml".into(),
        ),
        Endpoint::Down { listen, error } => Err(format!(
            "the daemon's HTTP endpoint is down: cannot listen on {listen}: {error}"
        )),
    }
}

/// A service's endpoint as runs show it (`None` for other runs).
pub fn endpoint_of(d: &Daemon, run: &Run) -> Option<ServiceEndpoint> {
    let RunConfiguration::Service(s) = &run.configuration else {
        return None;
    };
    let (base, error) = match base_url(d) {
        Ok(b) => (Some(b), None),
        Err(e) => (None, Some(e)),
    };
    let url = base
        .as_ref()
        .map(|b| format!("{b}/proxy/services/{PROJECT}/{}/", run.name))
        .unwrap_or_default();
    let model = s.model.as_ref().map(|m| ServiceModel {
        name: m.name.clone(),
        base_url: base
            .as_ref()
            .map(|b| format!("{b}/proxy/models/{PROJECT}/"))
            .unwrap_or_default(),
        kind: "chat".into(),
    });
    Some(ServiceEndpoint { url, model, error })
}

/// The run with its service endpoint filled in.
pub fn with_endpoint(d: &Daemon, mut run: Run) -> Run {
    run.service = endpoint_of(d, &run);
    run
}

//! Driver layer, HTTP: the OpenAI-compatible endpoint, dstack's `/proxy/models/main/`.
//! `GET models` lists the models of the running services (OpenAI's list); `POST
//! chat/completions`, `completions` and `embeddings` go to the service whose `model.name` is the
//! body's `model`, at the model's `prefix` (`/v1` by default), as dstack's model proxy sends
//! them. Every call needs a user's token, as in dstack (the model router enforces it always).

use super::client::Body;
use super::proxy::{forward_parts, Forward, Payload};
use super::{authorize, reply, State};
use crate::ops;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use std::net::SocketAddr;

/// The largest request body read to find its `model`.
const MAX_BODY: usize = 32 * 1024 * 1024;

/// The calls routed by the body's `model`.
const ROUTED: &[&str] = &["chat/completions", "completions", "embeddings"];

fn error(code: u16, message: &str) -> Response<Body> {
    let kind = match code {
        401 | 403 => "authentication_error",
        404 => "invalid_request_error",
        429 => "rate_limit_error",
        400 | 413 => "invalid_request_error",
        _ => "server_error",
    };
    reply::openai_error(code, message, kind, None)
}

/// `rest`: the path after `/proxy/models/`.
pub async fn handle(
    state: &State,
    peer: SocketAddr,
    req: Request<Incoming>,
    rest: &str,
) -> Response<Body> {
    let (project, call) = rest.split_once('/').unwrap_or((rest, ""));
    if let Err(e) = ops::proxy::check_project(project) {
        return error(e.status, &e.message);
    }
    if let Err(e) = authorize(state, req.headers()) {
        return error(e.status, &e.message);
    }
    match (req.method(), call) {
        (&Method::GET, "models") => list(state),
        (&Method::POST, c) if ROUTED.contains(&c) => {
            let call = c.to_string();
            route(state, peer, req, &call).await
        }
        (_, c) if c == "models" || ROUTED.contains(&c) => error(
            405,
            &format!("`{c}` takes {}", if c == "models" { "GET" } else { "POST" }),
        ),
        _ => error(
            404,
            &format!(
                "no such call `{call}`: the model endpoint serves GET models, POST chat/completions, completions and embeddings"
            ),
        ),
    }
}

fn list(state: &State) -> Response<Body> {
    let data: Vec<serde_json::Value> = ops::proxy::models(&state.d)
        .into_iter()
        .map(|m| {
            serde_json::json!({
                "id": m.name,
                "object": "model",
                "created": m.created,
                "owned_by": ops::proxy::PROJECT,
            })
        })
        .collect();
    reply::json(200, &serde_json::json!({ "object": "list", "data": data }))
}

async fn route(
    state: &State,
    peer: SocketAddr,
    req: Request<Incoming>,
    call: &str,
) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let bytes = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return error(
                413,
                &format!("cannot read the request body (at most {MAX_BODY} bytes): {e}"),
            )
        }
    };
    let model = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(v) => match v.get("model").and_then(|m| m.as_str()) {
            Some(m) => m.to_string(),
            None => {
                return reply::openai_error(
                    400,
                    "the body has no `model`: name the model to call",
                    "invalid_request_error",
                    Some("model"),
                )
            }
        },
        Err(e) => return error(400, &format!("the body is not JSON: {e}")),
    };
    let Some(route) = ops::proxy::model_service(&state.d, &model) else {
        let known: Vec<String> = ops::proxy::models(&state.d)
            .into_iter()
            .map(|m| m.name)
            .collect();
        return reply::openai_error(
            404,
            &format!(
                "Model {model} not found in project {}{}",
                ops::proxy::PROJECT,
                if known.is_empty() {
                    String::new()
                } else {
                    format!(" (models: {})", known.join(", "))
                }
            ),
            "invalid_request_error",
            Some("model"),
        );
    };
    ops::proxy::note_request(&state.d, route.run_id);
    let prefix = route
        .model
        .as_ref()
        .and_then(|m| m.prefix.clone())
        .unwrap_or_default();
    let path = format!("{}/{call}", prefix.trim_end_matches('/'));
    if !state.admit(&route, &path, peer, &parts.headers) {
        return error(
            429,
            &format!("too many requests for model {model}: its service's rate limit is reached"),
        );
    }
    let f = Forward {
        path_and_query: path,
        drop_auth: true,
        peer,
    };
    forward_parts(state, &route, parts, Payload::Kept(bytes), None, f).await
}

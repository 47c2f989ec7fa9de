//! Driver layer, HTTP: the answers the server makes itself (errors, redirects, model lists), in
//! dstack's shapes: `{"detail": ...}` for services (FastAPI's), OpenAI's error object for the
//! model endpoint.

use super::client::Body;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::header::{HeaderValue, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE};
use hyper::{Response, StatusCode};

/// A body of these bytes.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

fn status_of(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// A JSON answer.
pub fn json(code: u16, value: &serde_json::Value) -> Response<Body> {
    let mut r = Response::new(full(value.to_string()));
    *r.status_mut() = status_of(code);
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if code == 401 {
        r.headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    r
}

/// An error of the service proxy: `{"detail": message}`.
pub fn detail(code: u16, message: &str) -> Response<Body> {
    json(code, &serde_json::json!({ "detail": message }))
}

/// An error of the model endpoint, in OpenAI's format.
pub fn openai_error(code: u16, message: &str, kind: &str, param: Option<&str>) -> Response<Body> {
    let error_code = match code {
        401 | 403 => "invalid_api_key",
        404 if param == Some("model") => "model_not_found",
        429 => "rate_limit_exceeded",
        _ => kind,
    };
    json(
        code,
        &serde_json::json!({
            "error": {
                "message": message,
                "type": kind,
                "param": param,
                "code": error_code,
            }
        }),
    )
}

/// dstack's permanent redirect of `/proxy/services/main/RUN` to `.../RUN/`.
pub fn redirect(to: &str) -> Response<Body> {
    let mut r = Response::new(empty());
    *r.status_mut() = StatusCode::PERMANENT_REDIRECT;
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(LOCATION, v);
    }
    r
}

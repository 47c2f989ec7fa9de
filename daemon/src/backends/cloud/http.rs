//! The one HTTP client of the cloud backends: JSON in and out, a timeout on every request,
//! retries with backoff on what may pass (no connection, a timeout, 429, 5xx), and errors that
//! carry the provider's words. The API key never reaches a message: reqwest's errors are
//! stripped of their URL (RunPod's key travels in the query string).

use super::ApiKey;
use reqwest::Method;
use serde_json::Value;
use std::time::Duration;

/// How the key is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthStyle {
    /// `Authorization: Bearer <key>` (Lambda, Vast.ai).
    Bearer,
    /// `?api_key=<key>` (RunPod's GraphQL endpoint).
    Query,
}

/// What went wrong with a call.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// The HTTP status, when the provider answered.
    pub status: Option<u16>,
    /// The parsed JSON body of an error answer (the provider's envelope).
    pub body: Option<Value>,
    pub message: String,
}

impl ApiError {
    pub fn is_auth(&self) -> bool {
        matches!(self.status, Some(401 | 403))
    }
}

/// A provider's API at `base` with `key`.
#[derive(Clone)]
pub struct Api {
    client: reqwest::Client,
    base: String,
    key: ApiKey,
    auth: AuthStyle,
    /// Tries per call (1 + retries).
    tries: u32,
    backoff: Duration,
}

/// Seconds a request may take before it counts as failed (and is tried again).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

impl Api {
    pub fn new(base: &str, key: ApiKey, auth: AuthStyle) -> Result<Api, String> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("flotilla/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
        Ok(Api {
            client,
            base: base.trim_end_matches('/').to_string(),
            key,
            auth,
            tries: 3,
            backoff: Duration::from_millis(300),
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// One call: `method` on `path` (relative to the base, may carry a query) with an
    /// optional JSON body; the JSON answer of a 2xx, or the error after the retries.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ApiError> {
        let mut delay = self.backoff;
        let mut last = None;
        for attempt in 0..self.tries {
            if attempt > 0 {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            match self.once(method.clone(), path, body).await {
                Ok(v) => return Ok(v),
                Err(e) if retryable(&e) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| ApiError {
            status: None,
            body: None,
            message: "no attempt was made".into(),
        }))
    }

    async fn once(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ApiError> {
        let mut url = if path.is_empty() {
            self.base.clone()
        } else {
            format!("{}/{}", self.base, path.trim_start_matches('/'))
        };
        let mut req = match self.auth {
            AuthStyle::Bearer => self
                .client
                .request(method, &url)
                .bearer_auth(self.key.expose()),
            AuthStyle::Query => {
                url.push(if url.contains('?') { '&' } else { '?' });
                url.push_str("api_key=");
                url.push_str(self.key.expose());
                self.client.request(method, &url)
            }
        };
        req = req.header("accept", "application/json");
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await.map_err(|e| ApiError {
            status: None,
            body: None,
            message: describe(e),
        })?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| ApiError {
            status: Some(status),
            body: None,
            message: describe(e),
        })?;
        let json: Option<Value> = serde_json::from_str(&text).ok();
        if (200..300).contains(&status) {
            return json.ok_or_else(|| ApiError {
                status: Some(status),
                body: None,
                message: format!("the answer is not JSON: {}", excerpt(&text)),
            });
        }
        Err(ApiError {
            status: Some(status),
            message: match &json {
                Some(_) => format!("HTTP {status}"),
                None => format!("HTTP {status}: {}", excerpt(&text)),
            },
            body: json,
        })
    }
}

fn retryable(e: &ApiError) -> bool {
    match e.status {
        None => true,
        Some(s) => s == 429 || s >= 500,
    }
}

/// A reqwest error in words, without its URL (which may carry the key).
fn describe(e: reqwest::Error) -> String {
    let timeout = e.is_timeout();
    let connect = e.is_connect();
    let e = e.without_url();
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    if timeout {
        format!(
            "no answer within {}s ({msg}); the provider's API is slow or down",
            REQUEST_TIMEOUT.as_secs()
        )
    } else if connect {
        format!("cannot connect ({msg}); the provider's API is down or api_url is wrong")
    } else {
        msg
    }
}

fn excerpt(text: &str) -> String {
    let t = text.trim();
    match t.char_indices().nth(200) {
        Some((i, _)) => format!("{}...", &t[..i]),
        None => t.to_string(),
    }
}

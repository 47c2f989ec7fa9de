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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server that answers each connection with the next of `answers` (status, body).
    async fn server(answers: Vec<(u16, &'static str)>) -> (String, Arc<AtomicUsize>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let n = Arc::new(AtomicUsize::new(0));
        let seen = n.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let i = seen.fetch_add(1, Ordering::SeqCst);
                let (status, body) = answers[i.min(answers.len() - 1)];
                let mut buf = [0u8; 4096];
                if let Err(e) = s.read(&mut buf).await {
                    eprintln!("test server: cannot read the request: {e}");
                }
                let resp = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                if let Err(e) = s.write_all(resp.as_bytes()).await {
                    eprintln!("test server: cannot answer: {e}");
                }
            }
        });
        (url, n)
    }

    #[tokio::test]
    async fn passing_failures_are_retried_and_refusals_are_not() {
        let (url, n) = server(vec![(503, "{}"), (500, "oops"), (200, r#"{"data": 1}"#)]).await;
        let api = Api::new(&url, ApiKey::new("k".into()), AuthStyle::Bearer).unwrap();
        let v = api.call(Method::GET, "x", None).await.unwrap();
        assert_eq!(v["data"], 1);
        assert_eq!(n.load(Ordering::SeqCst), 3);

        let (url, n) = server(vec![(401, r#"{"error": {"message": "bad key"}}"#)]).await;
        let api = Api::new(&url, ApiKey::new("k".into()), AuthStyle::Bearer).unwrap();
        let e = api.call(Method::GET, "x", None).await.unwrap_err();
        assert!(e.is_auth());
        assert_eq!(e.body.unwrap()["error"]["message"], "bad key");
        assert_eq!(n.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_key_in_the_query_never_reaches_an_error_message() {
        // nothing listens there: a connection error, whose text would name the URL
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/graphql", l.local_addr().unwrap());
        drop(l);
        let api = Api::new(&url, ApiKey::new("topsecret42".into()), AuthStyle::Query).unwrap();
        let e = api.call(Method::POST, "", None).await.unwrap_err();
        assert!(!e.message.contains("topsecret42"), "{}", e.message);
        assert!(e.message.contains("cannot connect"), "{}", e.message);
    }
}

//! Driver layer, HTTP: the client side of the proxy. One pooled HTTP/1.1 client (hyper-util's)
//! whose connector reaches a replica on its host's loopback: a TCP connection for the daemon's
//! own machine, a channel of the daemon's SSH connection for other hosts. Connections are kept
//! alive and reused per replica (`local:PORT`, `iID:PORT` as the URI's authority).

use crate::handle::Daemon;
use crate::hosts::ByteStream;
use crate::ops::tunnels::connect_host_port;
use crate::services::ReplicaTarget;
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The body of every request and response the server handles.
pub type Body = BoxBody<Bytes, hyper::Error>;

/// The pooled client to every replica.
pub type Upstream = Client<Connector, Body>;

/// How long an idle connection to a replica stays in the pool.
const IDLE: Duration = Duration::from_secs(60);

pub fn upstream(d: &Daemon) -> Upstream {
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(IDLE)
        .pool_timer(hyper_util::rt::TokioTimer::new())
        // The client's own `Host` header goes to the replica (dstack forwards it too).
        .set_host(false)
        .build(Connector(d.clone()))
}

/// The URI of a request to a replica: its host in the authority, then the path and query.
pub fn replica_uri(target: &ReplicaTarget, path_and_query: &str) -> Result<Uri, String> {
    let host = match target.instance_id {
        None => "local".to_string(),
        Some(id) => format!("i{id}"),
    };
    format!("http://{host}:{}{path_and_query}", target.host_port)
        .parse()
        .map_err(|e| format!("cannot make a URI of {path_and_query:?}: {e}"))
}

/// Opens connections to replicas for the pooled client.
#[derive(Clone)]
pub struct Connector(Daemon);

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<Stream>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let d = self.0.clone();
        Box::pin(async move {
            let (instance, port) = target_of(&uri)?;
            let stream = connect_host_port(&d, instance, port)
                .await
                .map_err(std::io::Error::other)?;
            Ok(TokioIo::new(Stream(stream)))
        })
    }
}

/// The instance and port named by a URI that [`replica_uri`] made.
fn target_of(uri: &Uri) -> std::io::Result<(Option<u64>, u16)> {
    let bad = || std::io::Error::other(format!("not a replica's URI: {uri}"));
    let host = uri.host().ok_or_else(bad)?;
    let port = uri.port_u16().ok_or_else(bad)?;
    let instance = match host {
        "local" => None,
        h => Some(
            h.strip_prefix('i')
                .and_then(|n| n.parse().ok())
                .ok_or_else(bad)?,
        ),
    };
    Ok((instance, port))
}

/// A connection to a replica.
pub struct Stream(Box<dyn ByteStream>);

impl Connection for Stream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_uri_names_its_host_and_port() {
        let t = ReplicaTarget {
            submission: 1,
            replica_num: 0,
            instance_id: Some(42),
            host_port: 8000,
            ready: true,
        };
        let uri = replica_uri(&t, "/v1/models?x=1").expect("a URI");
        assert_eq!(
            uri.path_and_query().map(|p| p.as_str()),
            Some("/v1/models?x=1")
        );
        assert_eq!(target_of(&uri).expect("parsed"), (Some(42), 8000));
        let local = ReplicaTarget {
            instance_id: None,
            ..t
        };
        let uri = replica_uri(&local, "/").expect("a URI");
        assert_eq!(target_of(&uri).expect("parsed"), (None, 8000));
    }
}

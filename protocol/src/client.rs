//! An async client of the daemon's socket: `hello`, calls by id, and streams (`logs.follow`, `events.watch`).

use crate::framing::{write_line, FrameError, LineReader};
use crate::rpc::{
    decode_item, methods, HelloParams, HelloResult, Method, Request, Response, RpcError,
    ServerMessage, Stream, MAX_FRAME_BYTES, PROTOCOL_VERSION,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::BufReader;
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to the daemon at {path}: {source}")]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The socket exists but this user may not open it: starting another daemon would not help.
    #[error("cannot connect to the flotilla daemon at {}: permission denied; ask an admin to add you to the daemon's socket group (flotillad --socket-group GROUP, config socket_group)", path.display())]
    PermissionDenied { path: PathBuf },
    #[error("the daemon closed the connection")]
    Disconnected,
    #[error("{0}")]
    Rpc(RpcError),
    #[error("unexpected answer from the daemon: {0}")]
    Protocol(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl ClientError {
    pub fn rpc(&self) -> Option<&RpcError> {
        match self {
            ClientError::Rpc(e) => Some(e),
            _ => None,
        }
    }
}

/// One item of a raw stream: a notification's params, or the final response that ends it.
#[derive(Debug)]
pub enum RawStreamItem {
    Item(Value),
    End(Result<Value, RpcError>),
}

/// One item of a typed stream `S`: a decoded notification, or the final result that ends it.
pub enum StreamItem<S: Stream> {
    Item(S::Item),
    End(Result<S::Result, ClientError>),
}

enum Route {
    Call(oneshot::Sender<Response>),
    Stream(mpsc::Sender<RawStreamItem>),
}

type Routes = Arc<Mutex<HashMap<u64, Route>>>;

/// A connection to the daemon. Cheap to share behind `&`; calls may run concurrently.
pub struct Client {
    writer: tokio::sync::Mutex<OwnedWriteHalf>,
    routes: Routes,
    next_id: AtomicU64,
    hello: HelloResult,
}

/// A stream opened by [`Client::subscribe_raw`]: notifications' params as JSON.
pub struct RawSubscription {
    rx: mpsc::Receiver<RawStreamItem>,
}

impl RawSubscription {
    /// The next item; `None` once the connection is gone without a final response.
    pub async fn next(&mut self) -> Option<RawStreamItem> {
        self.rx.recv().await
    }
}

/// A stream opened by [`Client::subscribe`]: the one decoder of stream notifications.
pub struct Subscription<S: Stream> {
    raw: RawSubscription,
    ended: bool,
    stream: std::marker::PhantomData<fn() -> S>,
}

impl<S: Stream> Subscription<S> {
    /// The next item, decoded; after the end (or an item that does not decode, which ends the
    /// stream with `ClientError::Protocol`), `None`. `None` too when the connection is gone.
    pub async fn next(&mut self) -> Option<StreamItem<S>> {
        if self.ended {
            return None;
        }
        let item = match self.raw.next().await? {
            RawStreamItem::Item(v) => match decode_item::<S>(v) {
                Ok(item) => StreamItem::Item(item),
                Err(e) => StreamItem::End(Err(ClientError::Protocol(format!(
                    "{} notification: {e}",
                    S::ITEM
                )))),
            },
            RawStreamItem::End(Ok(v)) => StreamItem::End(decode_result::<S>(v)),
            RawStreamItem::End(Err(e)) => StreamItem::End(Err(ClientError::Rpc(e))),
        };
        self.ended = matches!(item, StreamItem::End(_));
        Some(item)
    }
}

fn decode_result<M: Method>(v: Value) -> Result<M::Result, ClientError> {
    serde_json::from_value(v).map_err(|e| ClientError::Protocol(format!("{}: {e}", M::NAME)))
}

impl Client {
    /// Connects and says `hello`; a protocol mismatch comes back as `ClientError::Rpc`.
    pub async fn connect(path: &Path, client_name: &str) -> Result<Client, ClientError> {
        let stream = UnixStream::connect(path)
            .await
            .map_err(|source| match source.kind() {
                std::io::ErrorKind::PermissionDenied => ClientError::PermissionDenied {
                    path: path.to_path_buf(),
                },
                _ => ClientError::Connect {
                    path: path.to_path_buf(),
                    source,
                },
            })?;
        let (read, write) = stream.into_split();
        let routes: Routes = Arc::new(Mutex::new(HashMap::new()));
        tokio::spawn(read_loop(
            LineReader::new(BufReader::with_capacity(256 * 1024, read), MAX_FRAME_BYTES),
            routes.clone(),
        ));
        let mut client = Client {
            writer: tokio::sync::Mutex::new(write),
            routes,
            next_id: AtomicU64::new(1),
            hello: HelloResult {
                protocol: String::new(),
                daemon_version: String::new(),
                user: String::new(),
                uid: 0,
                admin: false,
            },
        };
        client.hello = client
            .call::<methods::Hello>(&HelloParams {
                protocol: PROTOCOL_VERSION.into(),
                client: Some(client_name.into()),
            })
            .await?;
        Ok(client)
    }

    pub fn hello(&self) -> &HelloResult {
        &self.hello
    }

    /// Calls method `M` and decodes its result.
    pub async fn call<M: Method>(&self, params: &M::Params) -> Result<M::Result, ClientError> {
        let v: Value = self.call_raw(M::NAME, params).await?;
        decode_result::<M>(v)
    }

    /// Opens stream `S`: decoded notifications until the final result.
    pub async fn subscribe<S: Stream>(
        &self,
        params: &S::Params,
    ) -> Result<Subscription<S>, ClientError> {
        Ok(Subscription {
            raw: self.subscribe_raw(S::NAME, params).await?,
            ended: false,
            stream: std::marker::PhantomData,
        })
    }

    /// Calls `method` by name with any params (for tests of what the daemon does with odd calls).
    pub async fn call_raw<T: DeserializeOwned>(
        &self,
        method: &str,
        params: impl Serialize,
    ) -> Result<T, ClientError> {
        let (tx, rx) = oneshot::channel();
        self.send(method, params, Route::Call(tx)).await?;
        let resp = rx.await.map_err(|_| ClientError::Disconnected)?;
        match (resp.result, resp.error) {
            (_, Some(e)) => Err(ClientError::Rpc(e)),
            (Some(v), None) => {
                serde_json::from_value(v).map_err(|e| ClientError::Protocol(e.to_string()))
            }
            (None, None) => Err(ClientError::Protocol(
                "a response with neither result nor error".into(),
            )),
        }
    }

    /// Opens a stream by name with any params: undecoded notifications until the final response.
    pub async fn subscribe_raw(
        &self,
        method: &str,
        params: impl Serialize,
    ) -> Result<RawSubscription, ClientError> {
        let (tx, rx) = mpsc::channel(1024);
        self.send(method, params, Route::Stream(tx)).await?;
        Ok(RawSubscription { rx })
    }

    async fn send(
        &self,
        method: &str,
        params: impl Serialize,
        route: Route,
    ) -> Result<u64, ClientError> {
        let params =
            serde_json::to_value(params).map_err(|e| ClientError::Protocol(e.to_string()))?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        lock(&self.routes).insert(id, route);
        let req = Request::new(id, method, params);
        let mut w = self.writer.lock().await;
        if let Err(e) = write_line(&mut *w, &req).await {
            lock(&self.routes).remove(&id);
            return Err(if e.kind() == std::io::ErrorKind::BrokenPipe {
                ClientError::Disconnected
            } else {
                ClientError::Io(e)
            });
        }
        Ok(id)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

async fn read_loop(
    mut reader: LineReader<BufReader<tokio::net::unix::OwnedReadHalf>>,
    routes: Routes,
) {
    loop {
        let line = match reader.next_line().await {
            Ok(Some(l)) => l,
            Ok(None) | Err(FrameError::Io(_)) | Err(FrameError::TooLarge { .. }) => break,
        };
        let msg: ServerMessage = match serde_json::from_slice(&line) {
            Ok(m) => m,
            Err(_) => continue,
        };
        match msg {
            ServerMessage::Response(resp) => {
                let Some(id) = resp.id.as_u64() else { continue };
                let route = lock(&routes).remove(&id);
                match route {
                    Some(Route::Call(tx)) => {
                        let _ = tx.send(resp);
                    }
                    Some(Route::Stream(tx)) => {
                        let end = match resp.error {
                            Some(e) => Err(e),
                            None => Ok(resp.result.unwrap_or(Value::Null)),
                        };
                        let _ = tx.send(RawStreamItem::End(end)).await;
                    }
                    None => {}
                }
            }
            ServerMessage::Notification(n) => {
                let Some(id) = n.params.get("id").and_then(Value::as_u64) else {
                    continue;
                };
                let tx = match lock(&routes).get(&id) {
                    Some(Route::Stream(tx)) => tx.clone(),
                    _ => continue,
                };
                if tx.send(RawStreamItem::Item(n.params)).await.is_err() {
                    lock(&routes).remove(&id);
                }
            }
        }
    }
    // The connection is gone: dropping the routes wakes every waiter with an error.
    lock(&routes).clear();
}

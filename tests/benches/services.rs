//! What the HTTP proxy in front of services costs: one load generator (tokio + hyper, 64
//! keep-alive connections, small responses) against (a) the replica directly, (b) flotilla's
//! proxy (`/proxy/services/main/bench/`) and (c) Debian's nginx as a reverse proxy (keep-alive
//! upstream, 2 workers like the daemon's 2 runtime threads), all three to the same replica: a
//! hyper responder in this process that the service's `port` points at (its job only sleeps).
//! Then the first chunk of a streamed response (the replica sends one chunk, then the rest
//! 20 ms later), directly and through each proxy. Rounds are interleaved (a, b, c, a, b, c...).
//! Build first (`cargo build --release --bins`), then `cargo bench -p flotilla-e2e --bench services`.

use bytes::Bytes;
use flotilla_e2e::{percentile, TestDaemon};
use http_body_util::{BodyExt, Empty};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};

const CONNECTIONS: usize = 64;
const WARMUP: Duration = Duration::from_secs(1);
const MEASURE: Duration = Duration::from_secs(4);
const ROUNDS: usize = 3;
const FIRST_CHUNKS: usize = 200;

/// The replica's body: "ok\n", or for `/stream` one chunk now and one 20 ms later.
enum ReplicaBody {
    Full(Option<Bytes>),
    Stream(tokio::sync::mpsc::Receiver<Bytes>),
}

impl hyper::body::Body for ReplicaBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match &mut *self {
            ReplicaBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            ReplicaBody::Stream(rx) => rx.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b)))),
        }
    }
}

async fn replica(req: Request<Incoming>) -> Result<Response<ReplicaBody>, Infallible> {
    if req.uri().path().ends_with("/stream") {
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        tokio::spawn(async move {
            let _ = tx.send(Bytes::from_static(b"data: first\n\n")).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            let _ = tx.send(Bytes::from_static(b"data: [DONE]\n\n")).await;
        });
        let mut r = Response::new(ReplicaBody::Stream(rx));
        r.headers_mut()
            .insert("content-type", "text/event-stream".parse().expect("header"));
        return Ok(r);
    }
    Ok(Response::new(ReplicaBody::Full(Some(Bytes::from_static(
        b"ok\n",
    )))))
}

/// The replica on its own runtime thread; its port.
fn start_replica() -> u16 {
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    std_listener.set_nonblocking(true).expect("nonblocking");
    let port = std_listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = TcpListener::from_std(std_listener).expect("listener");
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), hyper::service::service_fn(replica))
                        .await;
                });
            }
        });
    });
    port
}

/// nginx as a reverse proxy to the replica (keep-alive upstream, no buffering).
fn start_nginx(dir: &std::path::Path, replica: u16) -> (Child, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let d = dir.display();
    let conf = format!(
        "worker_processes 2;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{ worker_connections 4096; }}\nhttp {{\n  access_log off;\n  keepalive_requests 10000000;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  upstream replica {{ server 127.0.0.1:{replica}; keepalive 128; keepalive_requests 10000000; }}\n  server {{\n    listen 127.0.0.1:{port};\n    location / {{\n      proxy_pass http://replica;\n      proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n      proxy_buffering off;\n    }}\n  }}\n}}\n"
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).expect("nginx.conf");
    let child = Command::new("nginx")
        .arg("-c")
        .arg(&path)
        .arg("-p")
        .arg(dir)
        .arg("-e")
        .arg(dir.join("error.log"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx (apt-get install -y nginx)");
    (child, port)
}

/// One keep-alive connection's request sender.
async fn connection(port: u16) -> hyper::client::conn::http1::SendRequest<Empty<Bytes>> {
    let tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let _ = tcp.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .expect("handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender
}

fn get(port: u16, path: &str) -> Request<Empty<Bytes>> {
    Request::get(path)
        .header("host", format!("127.0.0.1:{port}"))
        .body(Empty::new())
        .expect("request")
}

/// Requests/s and the latencies (ms) of `CONNECTIONS` connections asking in a loop.
async fn load(port: u16, path: &str) -> (f64, Vec<f64>) {
    let start = Instant::now();
    let measure_from = start + WARMUP;
    let end = measure_from + MEASURE;
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let path = path.to_string();
            tokio::spawn(async move {
                let mut sender = connection(port).await;
                let mut lat = Vec::new();
                loop {
                    let t = Instant::now();
                    if t >= end {
                        return lat;
                    }
                    if sender.ready().await.is_err() {
                        // The server closed the connection: open another.
                        sender = connection(port).await;
                        continue;
                    }
                    let resp = sender.send_request(get(port, &path)).await.expect("answer");
                    assert!(resp.status().is_success(), "{path}: {}", resp.status());
                    resp.into_body().collect().await.expect("body");
                    if t >= measure_from {
                        lat.push(t.elapsed().as_secs_f64() * 1e3);
                    }
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("load task"));
    }
    (all.len() as f64 / MEASURE.as_secs_f64(), all)
}

/// Milliseconds to the first body chunk of `/stream`, one request after another.
async fn first_chunks(port: u16, path: &str) -> Vec<f64> {
    let mut sender = connection(port).await;
    let mut out = Vec::new();
    for _ in 0..FIRST_CHUNKS {
        sender.ready().await.expect("ready");
        let t = Instant::now();
        let resp = sender.send_request(get(port, path)).await.expect("answer");
        let mut body = resp.into_body();
        let first = body
            .frame()
            .await
            .expect("a first chunk")
            .expect("no error");
        out.push(t.elapsed().as_secs_f64() * 1e3);
        assert!(first
            .into_data()
            .is_ok_and(|d| d.starts_with(b"data: first")));
        while body.frame().await.is_some() {}
    }
    out
}

fn main() {
    let replica_port = start_replica();
    // The daemon, with a service whose `port` is the replica's (its job only sleeps).
    let d = TestDaemon::start();
    let name = d.apply_detached(
        "bench",
        &format!("type: service\nname: bench\nport: {replica_port}\nauth: false\nresources: {{cpu: 1.., memory: 1GB.., disk: 1GB..}}\ncommands:\n  - sleep 3600\n"),
    );
    let http = d.http_addr();
    let proxy_port: u16 = http
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("a port");
    let nginx_dir = tempfile::tempdir().expect("temp dir");
    let (mut nginx, nginx_port) = start_nginx(nginx_dir.path(), replica_port);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let proxy_path = format!("/proxy/services/main/{name}/");
    // Wait until the proxy and nginx answer.
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(60);
        for (port, path) in [(proxy_port, proxy_path.as_str()), (nginx_port, "/")] {
            loop {
                let ok = match TcpStream::connect(("127.0.0.1", port)).await {
                    Ok(tcp) => {
                        let (mut s, conn) =
                            hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                                .await
                                .expect("handshake");
                        tokio::spawn(conn);
                        s.send_request(get(port, path))
                            .await
                            .is_ok_and(|r| r.status().is_success())
                    }
                    Err(_) => false,
                };
                if ok {
                    break;
                }
                assert!(Instant::now() < deadline, "{port}{path} never answered");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    let targets = [
        ("direct", replica_port, "/".to_string()),
        ("flotilla", proxy_port, proxy_path.clone()),
        ("nginx", nginx_port, "/".to_string()),
    ];
    let mut rps: Vec<Vec<f64>> = vec![Vec::new(); 3];
    let mut lat: Vec<Vec<f64>> = vec![Vec::new(); 3];
    for _ in 0..ROUNDS {
        for (i, (_, port, path)) in targets.iter().enumerate() {
            let (r, l) = rt.block_on(load(*port, path));
            rps[i].push(r);
            lat[i].extend(l);
        }
    }
    println!(
        "{CONNECTIONS} connections, {ROUNDS} interleaved rounds of {}s (after {}s warm-up), small responses",
        MEASURE.as_secs(),
        WARMUP.as_secs()
    );
    println!(
        "{:<10} {:>12} {:>10} {:>10}",
        "target", "requests/s", "p50 ms", "p99 ms"
    );
    for (i, (label, _, _)) in targets.iter().enumerate() {
        let mut r = rps[i].clone();
        let median = percentile(&mut r, 0.5);
        let p50 = percentile(&mut lat[i], 0.5);
        let p99 = percentile(&mut lat[i], 0.99);
        println!(
            "{label:<10} {median:>12.0} {p50:>10.3} {p99:>10.3}   (rounds: {:?})",
            rps[i].iter().map(|v| v.round()).collect::<Vec<_>>()
        );
    }
    println!("first streamed chunk, {FIRST_CHUNKS} requests one after another on one connection:");
    for (label, port, path) in &targets {
        let path = format!("{path}stream");
        let mut v = rt.block_on(first_chunks(*port, &path));
        println!(
            "{label:<10} p50 {:>8.3} ms  p99 {:>8.3} ms",
            percentile(&mut v, 0.5),
            percentile(&mut v, 0.99)
        );
    }
    let _ = nginx.kill();
    let _ = nginx.wait();
    let out = d.cli(&["stop", &name, "-y", "--abort"]);
    assert!(out.status.success());
}

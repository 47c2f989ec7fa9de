//! Fake cloud providers for the end-to-end tests: a small HTTP/1.1 server (one thread per
//! connection, `Connection: close`) and the state of an account (registered SSH keys,
//! machines) whose machines are real sshd test hosts on loopback. Each provider module
//! (`lambda`, `runpod`, `vastai`) answers the requests of its public API (paths, methods, auth,
//! envelopes, error bodies, status values) from this state.

pub mod lambda;
pub mod runpod;
pub mod vastai;

use crate::sshd::{ClientKey, TestHost, TWO_H100};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// One HTTP request as the server read it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// A query parameter's raw value.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }

    pub fn bearer(&self) -> Option<&str> {
        self.header("authorization")?.strip_prefix("Bearer ")
    }
}

pub struct Response {
    pub status: u16,
    pub body: Value,
}

impl Response {
    pub fn ok(body: Value) -> Response {
        Response { status: 200, body }
    }
    pub fn status(status: u16, body: Value) -> Response {
        Response { status, body }
    }
}

type Handler = Arc<dyn Fn(&Request) -> Response + Send + Sync>;

/// A local HTTP server; stops when dropped.
pub struct HttpServer {
    pub url: String,
    stop: Arc<AtomicBool>,
    addr: std::net::SocketAddr,
}

impl HttpServer {
    pub fn start(handler: Handler) -> HttpServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fake provider");
        let addr = listener.local_addr().expect("local addr");
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let h = handler.clone();
                std::thread::spawn(move || serve(conn, h));
            }
        });
        HttpServer {
            url: format!("http://{addr}"),
            stop,
            addr,
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve(conn: TcpStream, handler: Handler) {
    let Ok(read_half) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default().to_string();
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target.clone(), String::new()),
    };
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 {
            break;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let req = Request {
        method,
        path,
        query,
        headers,
        body,
    };
    let resp = handler(&req);
    let text = resp.body.to_string();
    let reason = match resp.status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        500 => "Internal Server Error",
        _ => "Status",
    };
    let mut out = conn;
    let _ = write!(
        out,
        "HTTP/1.1 {} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        resp.status,
        text.len()
    );
    let _ = out.flush();
}

/// One machine of the fake account.
pub struct FakeMachine {
    pub id: String,
    pub name: String,
    pub instance_type: String,
    pub region: String,
    /// `booting`, `active`, `terminated` (each provider words it its own way).
    pub status: String,
    pub host: Option<TestHost>,
    pub created: Instant,
    /// When the provider first reported it up.
    pub active_at: Option<Instant>,
    /// The same moment on the wall clock (to compare with a job's own timestamps).
    pub active_wall: Option<std::time::SystemTime>,
    /// The public key it was given.
    pub public_key: String,
}

/// How the fake account behaves.
pub struct Behaviour {
    /// How long a machine boots before the provider reports it up.
    pub boot_delay: Duration,
    /// Machines never come up.
    pub never_boots: bool,
    /// The next this many launches fail for want of capacity.
    pub fail_launches: usize,
    /// How long a launch request takes after the machine exists (a crash window).
    pub launch_delay: Duration,
    /// How long every request takes (a slow API).
    pub latency: Duration,
    /// The next this many termination requests fail with a server error.
    pub fail_terminations: usize,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            boot_delay: Duration::from_millis(300),
            never_boots: false,
            fail_launches: 0,
            launch_delay: Duration::ZERO,
            latency: Duration::ZERO,
            fail_terminations: 0,
        }
    }
}

pub struct Account {
    pub ssh_keys: Vec<(String, String)>,
    pub machines: Vec<FakeMachine>,
    pub behaviour: Behaviour,
    /// `METHOD path` of every request, in order.
    pub requests: Vec<String>,
    /// How long each request took to answer here (the provider's own share of a call).
    pub handling: Vec<(String, Duration)>,
    next_id: u64,
    octets: Vec<u8>,
    /// Machines listen on port 22 of their address (Lambda) or on a port of their own.
    port_22: bool,
}

/// A fake provider: its API key, its account, its HTTP server.
pub struct FakeCloud {
    pub api_key: String,
    pub account: Arc<Mutex<Account>>,
    pub server: Option<HttpServer>,
}

impl FakeCloud {
    /// An account whose machines take the loopback addresses `octets`.
    pub fn new(api_key: &str, octets: std::ops::Range<u8>, port_22: bool) -> FakeCloud {
        FakeCloud {
            api_key: api_key.to_string(),
            account: Arc::new(Mutex::new(Account {
                ssh_keys: Vec::new(),
                machines: Vec::new(),
                behaviour: Behaviour::default(),
                requests: Vec::new(),
                handling: Vec::new(),
                next_id: 1000,
                octets: octets.rev().collect(),
                port_22,
            })),
            server: None,
        }
    }

    pub fn url(&self) -> String {
        self.server
            .as_ref()
            .map(|s| s.url.clone())
            .unwrap_or_default()
    }

    pub fn lock(&self) -> MutexGuard<'_, Account> {
        self.account.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Machines not terminated: (id, name, status).
    pub fn live_machines(&self) -> Vec<(String, String, String)> {
        self.lock()
            .machines
            .iter()
            .filter(|m| m.status != "terminated")
            .map(|m| (m.id.clone(), m.name.clone(), m.status.clone()))
            .collect()
    }

    /// A machine made behind the daemon's back (through the provider's console).
    pub fn add_machine(&self, name: &str) -> String {
        let mut a = self.lock();
        a.next_id += 1;
        let id = a.next_id.to_string();
        a.machines.push(FakeMachine {
            id: id.clone(),
            name: name.to_string(),
            instance_type: "console".into(),
            region: "console".into(),
            status: "active".into(),
            host: None,
            created: Instant::now(),
            active_at: Some(Instant::now()),
            active_wall: Some(std::time::SystemTime::now()),
            public_key: String::new(),
        });
        id
    }
}

/// The machines' sshd hosts stop with the fake (the server's threads may outlive the test).
impl Drop for FakeCloud {
    fn drop(&mut self) {
        let hosts: Vec<TestHost> = self
            .lock()
            .machines
            .iter_mut()
            .filter_map(|m| m.host.take())
            .collect();
        drop(hosts);
    }
}

impl Account {
    /// Creates a machine (its sshd starts now, it reports up after the boot delay).
    pub fn launch(
        &mut self,
        name: &str,
        instance_type: &str,
        region: &str,
        public_key: &str,
        user: Option<&str>,
    ) -> Result<String, &'static str> {
        if self.behaviour.fail_launches > 0 {
            self.behaviour.fail_launches -= 1;
            return Err("capacity");
        }
        let octet = self.octets.pop().ok_or("capacity")?;
        let key = ClientKey {
            path: PathBuf::new(),
            public: public_key.to_string(),
        };
        let port = self.port_22.then_some(22);
        let host = TestHost::start_on(octet, port, &key, Some(TWO_H100), user);
        self.next_id += 1;
        let id = self.next_id.to_string();
        self.machines.push(FakeMachine {
            id: id.clone(),
            name: name.to_string(),
            instance_type: instance_type.to_string(),
            region: region.to_string(),
            status: "booting".into(),
            host: Some(host),
            created: Instant::now(),
            active_at: None,
            active_wall: None,
            public_key: public_key.to_string(),
        });
        Ok(id)
    }

    /// The machine `id`, its status brought up to date (booting -> active after the delay).
    pub fn machine(&mut self, id: &str) -> Option<&mut FakeMachine> {
        let delay = self.behaviour.boot_delay;
        let never = self.behaviour.never_boots;
        let m = self.machines.iter_mut().find(|m| m.id == id)?;
        if m.status == "booting" && !never && m.created.elapsed() >= delay {
            m.status = "active".into();
            m.active_at = Some(Instant::now());
            m.active_wall = Some(std::time::SystemTime::now());
        }
        Some(m)
    }

    /// The ids of the machines not terminated, their statuses brought up to date.
    pub fn live_ids(&mut self) -> Vec<String> {
        self.tick();
        self.machines
            .iter()
            .filter(|m| m.status != "terminated")
            .map(|m| m.id.clone())
            .collect()
    }

    /// Brings every machine's status up to date.
    pub fn tick(&mut self) {
        let ids: Vec<String> = self.machines.iter().map(|m| m.id.clone()).collect();
        for id in ids {
            self.machine(&id);
        }
    }

    /// Terminates `id`: its sshd stops. False when there is no such machine.
    pub fn terminate(&mut self, id: &str) -> bool {
        match self.machines.iter_mut().find(|m| m.id == id) {
            Some(m) => {
                m.status = "terminated".into();
                if let Some(mut h) = m.host.take() {
                    h.stop();
                }
                true
            }
            None => false,
        }
    }
}

/// Runs a provider's handler with the account's behaviour (latency) and request log.
pub fn handler(cloud: &FakeCloud, f: fn(&str, &mut Account, &Request) -> Response) -> Handler {
    let account = cloud.account.clone();
    let key = cloud.api_key.clone();
    Arc::new(move |req: &Request| {
        let started = Instant::now();
        let (latency, launch_delay) = {
            let mut a = account.lock().unwrap_or_else(|e| e.into_inner());
            a.requests.push(format!("{} {}", req.method, req.path));
            (a.behaviour.latency, a.behaviour.launch_delay)
        };
        if !latency.is_zero() {
            std::thread::sleep(latency);
        }
        let resp = {
            let mut a = account.lock().unwrap_or_else(|e| e.into_inner());
            f(&key, &mut a, req)
        };
        let launched = resp.status == 200
            && (req.path.contains("launch")
                || req.path.contains("/asks/")
                || req.json()["query"]
                    .as_str()
                    .is_some_and(|q| q.contains("podFindAndDeployOnDemand")));
        if launched && !launch_delay.is_zero() {
            std::thread::sleep(launch_delay);
        }
        let took = started.elapsed();
        account
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .handling
            .push((format!("{} {}", req.method, req.path), took));
        resp
    })
}

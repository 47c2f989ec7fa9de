//! Services behind the daemon's HTTP endpoint, end to end: real HTTP through the daemon to
//! replicas in real containers (the test image's busybox httpd and nc) or host jobs (python3):
//! both replicas answer at the service's URL, tokens (401/403, another user's token, a refresh),
//! the OpenAI-compatible endpoint streaming server-sent events chunk by chunk, unknown models,
//! rate limits, a replica that fails mid-request, and an address that is taken.

use flotilla_e2e::docker::test_image;
use flotilla_e2e::http::{self, get, get_with_token, service_url};
use flotilla_e2e::users::{cli_as, ensure_user, is_root, TEST_GROUP};
use flotilla_e2e::{stderr, stdout, TestDaemon};
use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(90);
const SMALL: &str = "resources: {cpu: 1.., memory: 1GB.., disk: 1GB..}\n";

/// Waits until `GET path` answers 200 (a replica is up); the answer.
fn wait_ok(addr: &str, path: &str, token: Option<&str>) -> http::Answer {
    let deadline = Instant::now() + WAIT;
    loop {
        let a = match token {
            Some(t) => get_with_token(addr, path, t),
            None => get(addr, path),
        };
        if a.status == 200 {
            return a;
        }
        assert!(Instant::now() < deadline, "{path} never answered: {a:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A busybox httpd service in the test image answering with its container's hostname.
fn httpd_service(name: &str, extra: &str) -> String {
    let image = test_image();
    format!(
        "type: service\nname: {name}\nimage: {image}\nport: 8000\n{SMALL}{extra}commands:\n  - mkdir -p /tmp/www && hostname > /tmp/www/index.html\n  - httpd -f -p 8000 -h /tmp/www\n"
    )
}

fn token(d: &TestDaemon) -> String {
    let out = d.cli(&["token"]);
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out).trim().to_string()
}

#[test]
fn two_replicas_in_containers_both_answer_at_the_service_url() {
    let d = TestDaemon::start();
    let name = d.apply_detached("web", &httpd_service("web", "replicas: 2\nauth: false\n"));
    d.wait_status(&name, &["running"], WAIT);
    let (addr, path) = service_url(&d, &name);
    assert_eq!(path, "/proxy/services/main/web/");
    assert_eq!(addr, d.http_addr());
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + WAIT;
    while seen.len() < 2 {
        let a = wait_ok(&addr, &path, None);
        seen.insert(a.body.trim().to_string());
        assert!(
            Instant::now() < deadline,
            "only {seen:?} answered\n{}",
            d.daemon_output()
        );
    }
    // dstack's paths: the root without its slash redirects; the prefix is stripped.
    let r = get(&addr, "/proxy/services/main/web?x=1");
    assert_eq!(r.status, 308, "{r:?}");
    assert_eq!(r.header("location"), Some("/proxy/services/main/web/?x=1"));
    let page = get(&addr, "/proxy/services/main/web/index.html");
    assert_eq!(page.status, 200, "{page:?}");
    // Unknown services and projects say what exists.
    let none = get(&addr, "/proxy/services/main/nope/");
    assert_eq!(none.status, 404);
    assert!(none.body.contains("flotilla ps"), "{none:?}");
    assert_eq!(get(&addr, "/proxy/services/other/web/").status, 404);
    // `ps` shows the URL.
    let ps = stdout(&d.cli(&["ps"]));
    assert!(
        ps.contains(&format!("web: http://{addr}/proxy/services/main/web/")),
        "{ps}"
    );
    let out = d.cli(&["stop", &name, "-y", "--abort"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn a_replica_that_fails_mid_request_does_not_fail_the_client() {
    let d = TestDaemon::start();
    let shared = d.dir.path().join("shared");
    std::fs::create_dir_all(&shared).expect("shared dir");
    // The first replica to claim the directory accepts connections and closes them unanswered.
    let extra = format!(
        "replicas: 2\nauth: false\nvolumes:\n  - {}:/shared\n",
        shared.display()
    );
    let image = test_image();
    let config = format!(
        "type: service\nname: flaky\nimage: {image}\nport: 8000\n{SMALL}{extra}commands:\n  - mkdir -p /tmp/www && echo good > /tmp/www/index.html\n  - if mkdir /shared/claim; then while true; do nc -l -p 8000 -e true; done; else httpd -f -p 8000 -h /tmp/www; fi\n"
    );
    let name = d.apply_detached("flaky", &config);
    d.wait_status(&name, &["running"], WAIT);
    let (addr, path) = service_url(&d, &name);
    wait_ok(&addr, &path, None);
    // Both replicas are running; every call gets the good one's answer.
    let deadline = Instant::now() + WAIT;
    while d.run_json(&name)["jobs"]
        .as_array()
        .map(|j| j.iter().filter(|j| j["status"] == "running").count())
        != Some(2)
    {
        assert!(Instant::now() < deadline, "{}", d.run_json(&name));
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(shared.join("claim").exists(), "one replica claimed the dir");
    for i in 0..40 {
        let a = get(&addr, &path);
        assert_eq!(a.status, 200, "call {i}: {a:?}");
        assert_eq!(a.body, "good\n");
    }
    let out = d.cli(&["stop", &name, "-y", "--abort"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn auth_takes_any_users_token_and_refuses_the_rest() {
    let mut d = TestDaemon::new();
    let other = if is_root() {
        ensure_user("fl-e2e-tok", true);
        std::fs::set_permissions(d.dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        d.write_daemon_config(&format!("socket_group: {TEST_GROUP}\n"));
        true
    } else {
        eprintln!("another user's token: skipped (creating users needs root, as CI runs)");
        false
    };
    d.spawn();
    let name = d.apply_detached("private", &httpd_service("private", ""));
    d.wait_status(&name, &["running"], WAIT);
    let (addr, path) = service_url(&d, &name);
    let mine = token(&d);
    assert!(mine.starts_with("flt_"), "{mine}");
    wait_ok(&addr, &path, Some(&mine));
    let no_token = get(&addr, &path);
    assert_eq!(no_token.status, 401, "{no_token:?}");
    assert!(no_token.body.contains("flotilla token"), "{no_token:?}");
    let basic = http::request(&addr, "GET", &path, &[("Authorization", "Basic eDp5")], "");
    assert_eq!(basic.status, 401, "{basic:?}");
    let wrong = get_with_token(&addr, &path, "flt_0000");
    assert_eq!(wrong.status, 403, "{wrong:?}");
    assert!(wrong.body.contains("flotilla token"), "{wrong:?}");
    if other {
        let out = cli_as("fl-e2e-tok", &d.socket, d.dir.path(), &["token"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let theirs = stdout(&out).trim().to_string();
        assert_ne!(theirs, mine);
        assert_eq!(get_with_token(&addr, &path, &theirs).status, 200);
        // Another user may call the service, not stop it.
        let out = cli_as(
            "fl-e2e-tok",
            &d.socket,
            d.dir.path(),
            &["stop", &name, "-y"],
        );
        assert!(!out.status.success(), "{}", stdout(&out));
    }
    // A refreshed token replaces the old one at once.
    let out = d.cli(&["token", "--refresh"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let new = stdout(&out).trim().to_string();
    assert_ne!(new, mine);
    assert_eq!(get_with_token(&addr, &path, &mine).status, 403);
    assert_eq!(get_with_token(&addr, &path, &new).status, 200);
    assert_eq!(token(&d), new);
    // The token is nowhere in clear: not in the daemon's output, not in its store.
    assert!(!d.daemon_output().contains(&new));
    let mut stored = Vec::new();
    for entry in walk(&d.data_dir.join("state")) {
        stored.extend(std::fs::read(entry).unwrap_or_default());
    }
    assert!(!stored.is_empty());
    assert!(
        !stored.windows(new.len()).any(|w| w == new.as_bytes()),
        "the token is in the store in clear"
    );
    let out = d.cli(&["stop", &name, "-y", "--abort"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// An OpenAI-compatible chat server: streams one chunk, then waits for `release` to exist
/// before the rest, so a test sees the first chunk arrive before the response can end.
const MODEL_SERVER: &str = r#"
import http.server, json, os, sys, time
port, release = int(sys.argv[1]), sys.argv[2]

class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def do_POST(self):
        req = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        if self.path != "/v1/chat/completions":
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if not req.get("stream"):
            body = json.dumps({"id": "c0", "object": "chat.completion", "model": req["model"],
                "auth": self.headers.get("Authorization"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for i, part in enumerate(["Hel", "lo"]):
            if i == 1:
                while not os.path.exists(release):
                    time.sleep(0.02)
            delta = {"id": "c1", "object": "chat.completion.chunk", "model": req["model"],
                "choices": [{"index": 0, "delta": {"content": part}}]}
            self.chunk(("data: " + json.dumps(delta) + "\n\n").encode())
        self.chunk(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
"#;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[test]
fn an_openai_client_streams_through_the_model_endpoint_by_model_name() {
    let d = TestDaemon::start();
    let script = d.write_config("model.py", MODEL_SERVER);
    let release = d.dir.path().join("release");
    let port = free_port();
    let config = format!(
        "type: service\nname: llm\nport: {port}\nmodel: test-model\n{SMALL}commands:\n  - /usr/bin/python3 {} {port} {}\n",
        script.display(),
        release.display()
    );
    let name = d.apply_detached("llm", &config);
    d.wait_status(&name, &["running"], WAIT);
    let run = d.run_json(&name);
    let addr = d.http_addr();
    assert_eq!(run["service"]["model"]["name"], "test-model", "{run}");
    assert_eq!(
        run["service"]["model"]["base_url"],
        format!("http://{addr}/proxy/models/main/"),
        "{run}"
    );
    let tok = token(&d);
    let auth = format!("Bearer {tok}");
    // The model list, OpenAI's format; a token is needed, as in dstack.
    assert_eq!(get(&addr, "/proxy/models/main/models").status, 401);
    let models = get_with_token(&addr, "/proxy/models/main/models", &tok).json();
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], "test-model", "{models}");
    assert_eq!(models["data"][0]["object"], "model");
    // A whole answer; the caller's token does not reach the service.
    let body = r#"{"model":"test-model","messages":[{"role":"user","content":"hi"}]}"#;
    let deadline = Instant::now() + WAIT;
    let whole = loop {
        let a = http::request(
            &addr,
            "POST",
            "/proxy/models/main/chat/completions",
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            body,
        );
        if a.status == 200 || Instant::now() > deadline {
            break a;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(whole.status, 200, "{whole:?}");
    let v = whole.json();
    assert_eq!(v["choices"][0]["message"]["content"], "Hello");
    assert!(v["auth"].is_null(), "the token was forwarded: {v}");
    // Streamed: the first chunk arrives while the server still holds the rest.
    let body =
        r#"{"model":"test-model","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let mut s = http::open(
        &addr,
        "POST",
        "/proxy/models/main/chat/completions",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        body,
    );
    assert_eq!(s.status, 200);
    let first = s.next_piece().expect("a first chunk");
    assert!(first.contains("\"Hel\""), "{first}");
    assert!(!first.contains("\"lo\""), "{first}");
    assert!(!release.exists());
    std::fs::write(&release, "").expect("release the rest");
    let rest = s.rest();
    assert!(rest.contains("\"lo\""), "{rest}");
    assert!(rest.contains("data: [DONE]"), "{rest}");
    // An unknown model: 404 in OpenAI's format.
    let unknown = http::request(
        &addr,
        "POST",
        "/proxy/models/main/chat/completions",
        &[("Authorization", &auth)],
        r#"{"model":"no-such-model","messages":[]}"#,
    );
    assert_eq!(unknown.status, 404, "{unknown:?}");
    let e = unknown.json();
    assert_eq!(e["error"]["code"], "model_not_found", "{e}");
    assert_eq!(e["error"]["param"], "model", "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("no-such-model") && m.contains("test-model")),
        "{e}"
    );
    let out = d.cli(&["stop", &name, "-y", "--abort"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn rate_limits_answer_429_past_the_burst() {
    let d = TestDaemon::start();
    let name = d.apply_detached(
        "limited",
        &httpd_service(
            "limited",
            "auth: false\nrate_limits:\n  - prefix: /index.html\n    rps: 0.01\n    burst: 1\n",
        ),
    );
    d.wait_status(&name, &["running"], WAIT);
    let (addr, path) = service_url(&d, &name);
    wait_ok(&addr, &path, None);
    let limited = format!("{path}index.html");
    let codes: Vec<u16> = (0..3).map(|_| get(&addr, &limited).status).collect();
    assert_eq!(codes, [200, 200, 429], "burst 1: two pass, then 429");
    let over = get(&addr, &limited);
    assert_eq!(over.status, 429);
    assert!(over.body.contains("rate limit"), "{over:?}");
    // Paths outside the prefix are not limited.
    for _ in 0..5 {
        assert_eq!(get(&addr, &path).status, 200);
    }
    let out = d.cli(&["stop", &name, "-y", "--abort"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn a_taken_address_leaves_the_daemon_up_and_every_view_says_why() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let mut d = TestDaemon::new();
    d.daemon_env
        .push(("FLOTILLA_HTTP".into(), format!("127.0.0.1:{port}")));
    d.spawn();
    let s = d.cli_json(&["daemon", "status"]);
    assert!(s["http"]["address"].is_null(), "{s}");
    assert_eq!(s["http"]["listen"], format!("127.0.0.1:{port}"));
    let error = s["http"]["error"].as_str().unwrap_or_default().to_string();
    assert!(error.contains("in use"), "{s}");
    let text = stdout(&d.cli(&["daemon", "status"]));
    assert!(
        text.contains(&format!("down: cannot listen on 127.0.0.1:{port}")),
        "{text}"
    );
    let name = d.apply_detached(
        "idle",
        &format!(
            "type: service\nname: idle\nport: {}\nauth: false\n{SMALL}commands:\n  - sleep 600\n",
            free_port()
        ),
    );
    let run = d.run_json(&name);
    assert_eq!(run["service"]["url"], "", "{run}");
    assert!(
        run["service"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("HTTP endpoint is down")),
        "{run}"
    );
    let ps = stdout(&d.cli(&["ps"]));
    assert!(
        ps.contains("idle: no URL: the daemon's HTTP endpoint is down"),
        "{ps}"
    );
    drop(taken);
    let out = d.cli(&["stop", &name, "-y", "--abort"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// A server that answers an `Upgrade: echo` request with 101, then echoes in upper case.
const UPGRADE_SERVER: &str = r#"
import socket, sys, threading
port = int(sys.argv[1])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port))
s.listen(64)

def serve(c):
    data = b""
    while b"\r\n\r\n" not in data:
        d = c.recv(4096)
        if not d:
            c.close()
            return
        data += d
    head, rest = data.split(b"\r\n\r\n", 1)
    if b"upgrade: echo" not in head.lower():
        c.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        c.close()
        return
    c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n")
    if rest:
        c.sendall(rest.upper())
    while True:
        d = c.recv(4096)
        if not d:
            break
        c.sendall(d.upper())
    c.close()

while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

#[test]
fn an_upgraded_connection_carries_bytes_both_ways() {
    use std::io::{Read, Write};
    let d = TestDaemon::start();
    let script = d.write_config("upgrade.py", UPGRADE_SERVER);
    let port = free_port();
    let config = format!(
        "type: service\nname: ws\nport: {port}\nauth: false\n{SMALL}commands:\n  - /usr/bin/python3 {} {port}\n",
        script.display()
    );
    let name = d.apply_detached("ws", &config);
    d.wait_status(&name, &["running"], WAIT);
    let addr = d.http_addr();
    let deadline = Instant::now() + WAIT;
    let mut s = loop {
        let mut s = std::net::TcpStream::connect(&addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        s.write_all(
            b"GET /proxy/services/main/ws/ HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n",
        )
        .expect("send");
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match s.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                _ => break,
            }
        }
        let head = String::from_utf8_lossy(&head).to_string();
        if head.starts_with("HTTP/1.1 101") {
            assert!(
                head.to_ascii_lowercase().contains("upgrade: echo"),
                "{head}"
            );
            break s;
        }
        assert!(Instant::now() < deadline, "no upgrade: {head}");
        std::thread::sleep(Duration::from_millis(200));
    };
    for word in ["hello", "again"] {
        s.write_all(word.as_bytes()).expect("send");
        let mut got = vec![0u8; word.len()];
        s.read_exact(&mut got).expect("echo");
        assert_eq!(got, word.to_uppercase().as_bytes());
    }
    drop(s);
    let out = d.cli(&["stop", &name, "-y", "--abort"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

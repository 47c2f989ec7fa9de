//! A small HTTP/1.1 client over std's TcpStream for the tests of the daemon's HTTP endpoint:
//! whole answers (chunked bodies decoded), and streamed ones read as they come.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// One answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (panics with the body when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }
}

/// An open request whose answer is read as it comes.
pub struct Streaming {
    reader: BufReader<TcpStream>,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    chunked: bool,
}

fn write_request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(150)))
        .expect("read timeout");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).expect("send the request");
    s
}

/// Sends a request and reads its status line and headers.
pub fn open(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Streaming {
    let mut reader = BufReader::new(write_request(addr, method, path, headers, body));
    let mut line = String::new();
    reader.read_line(&mut line).expect("status line");
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP status line: {line:?}"));
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).expect("header line");
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((n, v)) = h.split_once(':') {
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    Streaming {
        reader,
        status,
        headers,
        chunked,
    }
}

impl Streaming {
    /// The next piece of the body (a chunk of a chunked body; else what arrived), `None` at
    /// the end.
    pub fn next_piece(&mut self) -> Option<String> {
        if !self.chunked {
            let mut buf = [0u8; 8192];
            let n = self.reader.read(&mut buf).expect("read the body");
            return (n > 0).then(|| String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        let mut size = String::new();
        self.reader.read_line(&mut size).expect("chunk size");
        let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
            .unwrap_or_else(|_| panic!("not a chunk size: {size:?}"));
        let mut data = vec![0u8; n + 2];
        self.reader.read_exact(&mut data).expect("chunk data");
        if n == 0 {
            return None;
        }
        data.truncate(n);
        Some(String::from_utf8_lossy(&data).into_owned())
    }

    /// The rest of the body.
    pub fn rest(mut self) -> String {
        let mut out = String::new();
        while let Some(p) = self.next_piece() {
            out.push_str(&p);
        }
        out
    }
}

/// A whole request and its answer.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    let s = open(addr, method, path, headers, body);
    let (status, headers) = (s.status, s.headers.clone());
    Answer {
        status,
        headers,
        body: s.rest(),
    }
}

pub fn get(addr: &str, path: &str) -> Answer {
    request(addr, "GET", path, &[], "")
}

/// `GET` with `Authorization: Bearer TOKEN`.
pub fn get_with_token(addr: &str, path: &str, token: &str) -> Answer {
    let auth = format!("Bearer {token}");
    request(addr, "GET", path, &[("Authorization", &auth)], "")
}

/// A service's address and path on the daemon's HTTP endpoint, from the URL `ps --json` shows.
pub fn service_url(d: &crate::TestDaemon, run: &str) -> (String, String) {
    let r = d.run_json(run);
    let url = r["service"]["url"]
        .as_str()
        .unwrap_or_else(|| panic!("no service URL: {r}"))
        .to_string();
    let rest = url.strip_prefix("http://").expect("an http URL");
    let (addr, path) = rest.split_once('/').expect("a path");
    (addr.to_string(), format!("/{path}"))
}

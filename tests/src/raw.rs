//! The socket spoken raw, line by line, for tests that send what no well-behaved client would:
//! bad frames, requests nobody reads the answers of, half-closed connections.

use crate::TestDaemon;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// One connection to a daemon's socket, with a 30 s read timeout.
pub struct RawConnection {
    pub writer: UnixStream,
    pub reader: BufReader<UnixStream>,
}

impl RawConnection {
    pub fn open(d: &TestDaemon) -> RawConnection {
        let s = UnixStream::connect(&d.socket).expect("connect to the daemon's socket");
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("read timeout");
        RawConnection {
            reader: BufReader::new(s.try_clone().expect("clone the socket")),
            writer: s,
        }
    }

    /// A connection that has said `hello`.
    pub fn hello(d: &TestDaemon) -> RawConnection {
        let mut c = RawConnection::open(d);
        let r =
            c.call(json!({"jsonrpc":"2.0","id":0,"method":"hello","params":{"protocol":"1.0"}}));
        assert!(r["result"]["protocol"].is_string(), "hello failed: {r}");
        c
    }

    pub fn send(&mut self, line: &[u8]) {
        self.writer.write_all(line).expect("write a line");
        self.writer.write_all(b"\n").expect("write a newline");
    }

    /// The next line, raw (without its newline); `None` at end of stream.
    pub fn recv_line(&mut self) -> Option<String> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => None,
            Ok(_) => Some(line.trim_end_matches('\n').to_string()),
            Err(e) => panic!("no reply from the daemon: {e}"),
        }
    }

    pub fn recv(&mut self) -> Value {
        let line = self
            .recv_line()
            .expect("a reply, not the end of the stream");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad reply {line:?}: {e}"))
    }

    pub fn call(&mut self, v: Value) -> Value {
        self.send(v.to_string().as_bytes());
        self.recv()
    }

    /// Closes the writing half: the daemon reads end-of-stream after the lines sent so far.
    pub fn half_close(&self) {
        self.writer
            .shutdown(std::net::Shutdown::Write)
            .expect("shutdown(Write)");
    }
}

/// A process's peak resident set size in kB (`VmHWM`), or `None` when it is gone.
pub fn peak_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse().ok())
}

//! The socket protocol spoken raw: hello, malformed and oversized frames, unknown methods, streams.

use flotilla_e2e::TestDaemon;
use flotilla_protocol::client::RawStreamItem;
use flotilla_protocol::rpc::{methods, LogChunk, LogTarget, LogsFollowParams};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

struct Raw {
    w: UnixStream,
    r: BufReader<UnixStream>,
}

impl Raw {
    fn open(d: &TestDaemon) -> Raw {
        let s = UnixStream::connect(&d.socket).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Raw {
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
        }
    }
    fn send(&mut self, line: &[u8]) {
        self.w.write_all(line).unwrap();
        self.w.write_all(b"\n").unwrap();
    }
    fn recv(&mut self) -> Value {
        let mut line = String::new();
        self.r.read_line(&mut line).expect("a reply");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad reply {line:?}: {e}"))
    }
    fn call(&mut self, v: Value) -> Value {
        self.send(v.to_string().as_bytes());
        self.recv()
    }
}

#[test]
fn hello_first_and_versions_checked() {
    let d = TestDaemon::start();
    let mut c = Raw::open(&d);
    let r = c.call(json!({"jsonrpc":"2.0","id":1,"method":"run.list","params":{}}));
    assert_eq!(r["error"]["code"], -32005, "{r}");
    let r = c.call(json!({"jsonrpc":"2.0","id":2,"method":"hello","params":{"protocol":"2.0"}}));
    assert_eq!(r["error"]["code"], -32003, "{r}");
    let msg = r["error"]["message"].as_str().unwrap();
    assert!(msg.contains("2.0") && msg.contains("1.0"), "{msg}");
    let r = c.call(json!({"jsonrpc":"2.0","id":3,"method":"hello","params":{"protocol":"1.0"}}));
    assert_eq!(r["result"]["protocol"], "1.0", "{r}");
    assert_eq!(r["id"], 3);
    let r = c.call(json!({"jsonrpc":"2.0","id":"x","method":"run.list","params":{"all":true}}));
    assert_eq!(r["result"], json!([]), "{r}");
    assert_eq!(r["id"], "x");
}

#[test]
fn malformed_lines_and_unknown_methods_get_errors_and_the_connection_stays_usable() {
    let d = TestDaemon::start();
    let mut c = Raw::open(&d);
    c.call(json!({"jsonrpc":"2.0","id":1,"method":"hello","params":{"protocol":"1.0"}}));
    c.send(b"{not json");
    let r = c.recv();
    assert_eq!(r["error"]["code"], -32700, "{r}");
    assert_eq!(r["id"], Value::Null);
    let r = c.call(json!({"jsonrpc":"2.0","id":5,"params":{}}));
    assert_eq!(r["error"]["code"], -32600, "{r}");
    let r = c.call(json!({"jsonrpc":"2.0","id":6,"method":"no.such","params":{}}));
    assert_eq!(r["error"]["code"], -32601, "{r}");
    assert!(r["error"]["message"].as_str().unwrap().contains("no.such"));
    let r = c.call(json!({"jsonrpc":"2.0","id":7,"method":"run.stop","params":{"nme":"x"}}));
    assert_eq!(r["error"]["code"], -32602, "{r}");
    // still usable
    let r = c.call(json!({"jsonrpc":"2.0","id":8,"method":"daemon.status","params":{}}));
    assert!(r["result"]["pid"].as_u64().is_some(), "{r}");
}

#[test]
fn an_oversized_line_gets_an_error_and_the_connection_is_closed() {
    let d = TestDaemon::start();
    let mut c = Raw::open(&d);
    c.call(json!({"jsonrpc":"2.0","id":1,"method":"hello","params":{"protocol":"1.0"}}));
    let big = vec![b'a'; 16 * 1024 * 1024 + 1];
    // the daemon may close before reading it all
    let _ = c.w.write_all(&big);
    let r = c.recv();
    assert_eq!(r["error"]["code"], -32004, "{r}");
    let mut rest = String::new();
    let n = c.r.read_line(&mut rest).unwrap_or(0);
    assert_eq!(n, 0, "connection closed after the error, got {rest:?}");
    // the daemon itself is fine
    let mut c2 = Raw::open(&d);
    let r = c2.call(json!({"jsonrpc":"2.0","id":1,"method":"hello","params":{"protocol":"1.0"}}));
    assert!(r["result"].is_object());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_follow_the_same_log() {
    let d = TestDaemon::start();
    let name = d.apply_detached(
        "twice",
        "type: task\nname: twice\nresources: {cpu: 1.., memory: 1GB.., disk: 1GB..}\ncommands:\n  - for i in $(seq 1 2000); do echo \"héllo $i\"; done\n  - sleep 1\n  - seq 1 1000\n",
    );
    let follow = |client: flotilla_protocol::client::Client, name: String| async move {
        let mut sub = client
            .subscribe_raw(
                methods::LOGS_FOLLOW,
                LogsFollowParams {
                    target: LogTarget {
                        run: name,
                        replica: 0,
                        job: 0,
                        submission: None,
                    },
                    offset: 0,
                    attach: false,
                },
            )
            .await
            .expect("subscribe");
        let mut bytes = Vec::new();
        let mut end = Value::Null;
        while let Some(item) = sub.next().await {
            match item {
                RawStreamItem::Item(v) => {
                    let c: LogChunk = serde_json::from_value(v).expect("chunk");
                    assert_eq!(c.offset, bytes.len() as u64, "chunks are contiguous");
                    bytes.extend(c.bytes().expect("bytes"));
                }
                RawStreamItem::End(r) => {
                    end = r.expect("final response");
                    break;
                }
            }
        }
        (bytes, end)
    };
    let (a, b) = tokio::join!(
        follow(d.client().await, name.clone()),
        follow(d.client().await, name.clone())
    );
    let mut want = String::new();
    for i in 1..=2000 {
        want.push_str(&format!("héllo {i}\n"));
    }
    for i in 1..=1000 {
        want.push_str(&format!("{i}\n"));
    }
    assert_eq!(String::from_utf8(a.0).unwrap(), want);
    assert_eq!(String::from_utf8(b.0).unwrap(), want);
    assert_eq!(a.1["job_status"], "done");
    assert_eq!(a.1["exit_code"], 0);
    assert_eq!(b.1["next_offset"].as_u64().unwrap() as usize, want.len());
}

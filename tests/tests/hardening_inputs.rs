//! One request must never kill or freeze the daemon: hostile configurations, clients that do not
//! read, half-closed connections, huge ids. Each test talks to a real daemon over its socket and
//! checks both the answer and that the daemon is still there, and small, afterwards.

use flotilla_e2e::raw::{peak_rss_kb, RawConnection};
use flotilla_e2e::{stderr, TestDaemon};
use serde_json::{json, Value};
use std::time::Duration;

/// The goal for the daemon's peak RSS under any one hostile input.
const PEAK_RSS_LIMIT_KB: u64 = 100 * 1024;

fn plan(c: &mut RawConnection, id: u64, configuration: &str) -> Value {
    c.call(json!({"jsonrpc":"2.0","id":id,"method":"run.plan",
        "params":{"configuration":configuration,"file_name":"hostile.dstack.yml"}}))
}

/// The error's message and every located error under `data.errors`, as one text.
fn error_text(r: &Value) -> String {
    let mut text = r["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    for e in r["error"]["data"]["errors"]
        .as_array()
        .into_iter()
        .flatten()
    {
        text.push('\n');
        text.push_str(&e.to_string());
    }
    text
}

fn assert_alive_and_small(d: &TestDaemon, what: &str) -> u64 {
    let mut c = RawConnection::hello(d);
    let r = c.call(json!({"jsonrpc":"2.0","id":99,"method":"daemon.status","params":{}}));
    assert!(
        r["result"]["pid"].is_u64(),
        "daemon.status after {what}: {r}\n{}",
        d.daemon_output()
    );
    let pid = d.pid().expect("the test started the daemon");
    let peak = peak_rss_kb(pid).expect("the daemon's /proc status");
    eprintln!("peak RSS after {what}: {peak} kB");
    assert!(peak < PEAK_RSS_LIMIT_KB, "peak RSS after {what}: {peak} kB");
    peak
}

fn billion_laughs() -> String {
    let mut doc = String::from("type: task\nname: lol\ncommands: [echo]\nx0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..10 {
        let prev = i - 1;
        doc.push_str(&format!(
            "x{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
        ));
    }
    doc.push_str("env: *a9\n");
    doc
}

#[test]
fn an_alias_bomb_is_refused_with_its_location_and_the_daemon_stays_small() {
    let d = TestDaemon::start();
    let doc = billion_laughs();
    assert!(doc.len() < 2048, "the bomb is small: {} bytes", doc.len());
    let mut c = RawConnection::hello(&d);
    let r = plan(&mut c, 1, &doc);
    assert_eq!(r["error"]["code"], -32002, "{r}");
    let text = error_text(&r);
    assert!(text.contains("alias"), "the error names the alias: {text}");
    assert_alive_and_small(&d, "the alias bomb");
}

#[test]
fn deeply_nested_documents_are_refused_without_overflowing_a_stack() {
    let d = TestDaemon::start();
    let mut c = RawConnection::hello(&d);
    for (i, doc) in [
        format!("type: task\ncommands:\n  {}x\n", "- ".repeat(20_000)),
        format!(
            "type: task\ncommands: {}x{}\n",
            "[".repeat(20_000),
            "]".repeat(20_000)
        ),
        format!(
            "type: task\nenv: {}1{}\n",
            "{a: ".repeat(10_000),
            "}".repeat(10_000)
        ),
    ]
    .iter()
    .enumerate()
    {
        let r = plan(&mut c, i as u64 + 1, doc);
        assert_eq!(r["error"]["code"], -32002, "{r}");
        let text = error_text(&r).to_lowercase();
        assert!(text.contains("nest") || text.contains("deep"), "{text}");
    }
    assert_alive_and_small(&d, "nested documents");

    // The command line parses files itself, before sending them: 200 KB of nesting there too.
    let p = d.write_config(
        "nested.dstack.yml",
        &format!("type: task\ncommands:\n  {}x\n", "- ".repeat(100_000)),
    );
    let out = d.cli(&["validate", "-f", p.to_str().expect("utf-8 path")]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("nested.dstack.yml:"), "located: {err}");
    assert!(
        !err.contains("overflow") && !err.contains("panicked"),
        "{err}"
    );
}

#[test]
fn a_hundred_million_nodes_are_refused_at_parse_with_the_limit_named() {
    let d = TestDaemon::start();
    let mut c = RawConnection::hello(&d);
    let r = plan(
        &mut c,
        1,
        "type: task\nnodes: 100000000\ncommands: [echo]\n",
    );
    assert_eq!(r["error"]["code"], -32002, "{r}");
    let text = error_text(&r);
    assert!(
        text.contains("nodes") && text.contains("100000000"),
        "{text}"
    );
    let r = plan(
        &mut c,
        2,
        "type: service\nport: 80\nreplicas: 100000000\ncommands: [echo]\n",
    );
    assert_eq!(r["error"]["code"], -32002, "{r}");
    assert!(error_text(&r).contains("replicas"), "{r}");
    assert_alive_and_small(&d, "nodes: 100000000");
}

/// A client that sends many requests without reading: the daemon stops reading until the
/// answers drain, so its memory stays bounded, and it answers everyone else meanwhile.
#[test]
fn a_client_that_does_not_read_cannot_grow_the_daemon() {
    let d = TestDaemon::new();
    let catalogs = flotilla_e2e::repo_root().join("../shared/catalogs");
    let catalogs = if catalogs.is_dir() {
        catalogs
    } else {
        flotilla_e2e::repo_root().join("tests/data/catalogs")
    };
    d.write_daemon_config(&format!("catalog_dir: {}\n", catalogs.display()));
    let mut d = d;
    d.spawn();
    let mut flood = RawConnection::hello(&d);
    let one = flood
        .call(json!({"jsonrpc":"2.0","id":1,"method":"offer.list","params":{"max_offers":100000}}));
    let answer_bytes = one.to_string().len();
    assert!(
        answer_bytes > 100_000,
        "offer.list answers are big enough to matter: {answer_bytes} bytes"
    );
    // 2,000 requests (~1 GB of answers) written by a thread; nobody reads them yet.
    let mut writer = flood.writer.try_clone().expect("clone");
    let sender = std::thread::spawn(move || {
        use std::io::Write;
        let line =
            json!({"jsonrpc":"2.0","id":2,"method":"offer.list","params":{"max_offers":100000}})
                .to_string()
                + "\n";
        let mut sent = 0u32;
        for _ in 0..2000 {
            if writer.write_all(line.as_bytes()).is_err() {
                break;
            }
            sent += 1;
        }
        sent
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_alive_and_small(&d, "a client that does not read");
    // Now read: every request whose line was read gets its answer.
    let mut answered = 0u32;
    while answered < 2000 {
        let r = flood.recv();
        assert!(
            r["result"]["offers"].is_array(),
            "{}",
            &r.to_string()[..200.min(r.to_string().len())]
        );
        answered += 1;
    }
    let sent = sender.join().expect("sender thread");
    assert_eq!(sent, 2000);
    assert_alive_and_small(&d, "draining 2,000 answers");
}

#[test]
fn a_half_closed_connection_gets_every_answer() {
    let d = TestDaemon::start();
    let mut c = RawConnection::hello(&d);
    for id in 1..=200u64 {
        c.send(
            json!({"jsonrpc":"2.0","id":id,"method":"daemon.status","params":{}})
                .to_string()
                .as_bytes(),
        );
    }
    c.half_close();
    let mut ids = Vec::new();
    while let Some(line) = c.recv_line() {
        let r: Value = serde_json::from_str(&line).expect("JSON");
        assert!(r["result"]["pid"].is_u64(), "{r}");
        ids.push(r["id"].as_u64().expect("numeric id"));
    }
    ids.sort_unstable();
    assert_eq!(
        ids,
        (1..=200).collect::<Vec<_>>(),
        "every request answered once"
    );

    // An apply sent that way is answered too, and its run exists.
    let mut c = RawConnection::hello(&d);
    c.send(json!({"jsonrpc":"2.0","id":7,"method":"run.apply","params":{
        "configuration":"type: task\nname: halfclosed\ncommands: [echo hi]\nresources: {cpu: 1.., memory: 0.., disk: 0..}\n"}})
        .to_string().as_bytes());
    c.half_close();
    let r = c.recv();
    assert_eq!(r["id"], 7);
    assert_eq!(r["result"]["name"], "halfclosed", "{r}");
    assert!(c.recv_line().is_none(), "then the end of the stream");
}

#[test]
fn request_ids_beyond_64_bits_come_back_exactly() {
    let d = TestDaemon::start();
    let mut c = RawConnection::hello(&d);
    for id in [
        "123456789012345678901234567890",
        "18446744073709551616",
        "-9223372036854775809",
        "1.5e300",
        "0.1",
    ] {
        c.send(
            format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"daemon.status","params":{{}}}}"#)
                .as_bytes(),
        );
        let line = c.recv_line().expect("an answer");
        assert!(
            line.contains(&format!(r#""id":{id}"#)),
            "id {id} came back as: {line}"
        );
    }
}

#[test]
fn events_watch_ends_with_shutting_down_when_the_daemon_stops() {
    let mut d = TestDaemon::start();
    let mut c = RawConnection::hello(&d);
    c.send(
        json!({"jsonrpc":"2.0","id":5,"method":"events.watch","params":{}})
            .to_string()
            .as_bytes(),
    );
    std::thread::sleep(Duration::from_millis(300));
    let status = d.terminate().expect("the daemon exits");
    assert!(status.success(), "{status:?}");
    let mut last = None;
    while let Some(line) = c.recv_line() {
        last = Some(line);
    }
    let last: Value = serde_json::from_str(&last.expect("a final answer")).expect("JSON");
    assert_eq!(last["id"], 5, "{last}");
    assert_eq!(last["error"]["code"], -32007, "{last}");
}

#[test]
fn a_closed_pipe_ends_the_command_line_quietly() {
    let d = TestDaemon::new();
    let catalogs = flotilla_e2e::repo_root().join("../shared/catalogs");
    d.write_daemon_config(&format!("catalog_dir: {}\n", catalogs.display()));
    let mut d = d;
    d.spawn();
    let bin = flotilla_e2e::bin("flotilla");
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -o pipefail; '{}' offer --max-offers 100000 | head -1 >/dev/null",
            bin.display()
        ))
        .env("FLOTILLA_SOCKET", &d.socket)
        .env("FLOTILLA_DATA_DIR", &d.data_dir)
        .output()
        .expect("bash");
    let err = stderr(&out);
    assert!(err.is_empty(), "nothing on stderr: {err}");
    // 141 = 128 + SIGPIPE is the shell's convention for a pipe closed by its reader.
    assert!(
        matches!(out.status.code(), Some(0) | Some(141)),
        "{:?}",
        out.status
    );
}

#[test]
fn a_socket_in_a_directory_the_daemon_did_not_create_leaves_its_mode_alone() {
    use std::os::unix::fs::PermissionsExt;
    let mut d = TestDaemon::new();
    let shared = d.dir.path().join("shared");
    std::fs::create_dir(&shared).expect("dir");
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    d.socket = shared.join("flotilla.sock");
    d.spawn();
    let mode = std::fs::metadata(&shared)
        .expect("dir")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o755, "the directory's mode is unchanged");
    let sock = std::fs::metadata(&d.socket)
        .expect("socket")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(sock, 0o600, "the socket itself is 0600");
}

#[test]
fn files_with_a_bom_parse_and_invalid_utf8_is_located() {
    let d = TestDaemon::new();
    let p = d.dir.path().join("bom.dstack.yml");
    std::fs::write(&p, b"\xEF\xBB\xBFtype: task\ncommands: [echo hi]\n").expect("write");
    let out = d.cli(&["validate", "-f", p.to_str().expect("utf-8 path")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let p = d.dir.path().join("latin1.dstack.yml");
    std::fs::write(&p, b"type: task\ncommands:\n  - echo caf\xE9\n").expect("write");
    let out = d.cli(&["validate", "-f", p.to_str().expect("utf-8 path")]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("latin1.dstack.yml:3:"),
        "line and column of the bad byte: {err}"
    );
    assert!(err.to_lowercase().contains("utf-8"), "{err}");
}

/// Streams last as long as their connection: one past the limit is refused at once (waiting for
/// a place would block the connection for good), and the connection stays usable.
#[test]
fn a_stream_past_the_connections_limit_is_refused_and_the_connection_stays_usable() {
    let d = TestDaemon::start();
    let mut c = RawConnection::hello(&d);
    for id in 1..=16u64 {
        c.send(
            json!({"jsonrpc":"2.0","id":id,"method":"events.watch","params":{}})
                .to_string()
                .as_bytes(),
        );
    }
    let r = c.call(json!({"jsonrpc":"2.0","id":17,"method":"events.watch","params":{}}));
    assert_eq!(r["id"], 17, "{r}");
    assert_eq!(r["error"]["code"], -32001, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("another connection"),
        "{r}"
    );
    let r = c.call(json!({"jsonrpc":"2.0","id":18,"method":"daemon.status","params":{}}));
    assert!(r["result"]["pid"].is_u64(), "{r}");
}

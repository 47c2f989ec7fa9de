//! What `attach` costs: the time from starting `flotilla attach RUN -p L:P` to the first byte
//! read through the forwarded port, and the throughput of a forwarded port, for a job on the
//! local fleet and one on an SSH host, beside the floors measured in the same run: a direct
//! connection to the port, and a plain `ssh -L` to the same SSH host.
//!
//! The port's server is this bench's own (it answers one byte at once, then 1 GiB on request),
//! listening on the loopback where both jobs run, so every path ends at the same server.
//! Build first (`cargo build --release --bins`), then `cargo bench -p flotilla-e2e --bench attach`.

use flotilla_e2e::sshd::{ssh_keygen, TestHost};
use flotilla_e2e::{percentile, TestDaemon};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const FIRST_BYTE_ROUNDS: usize = 20;
const BULK_ROUNDS: usize = 5;
const BULK_BYTES: u64 = 1 << 30;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The job's port: one byte at once, then `BULK_BYTES` when the client writes `b`.
fn serve() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                if conn.write_all(b"x").is_err() {
                    return;
                }
                let mut cmd = [0u8; 1];
                if conn.read_exact(&mut cmd).is_err() || cmd[0] != b'b' {
                    return;
                }
                let chunk = vec![0u8; 1 << 20];
                let mut left = BULK_BYTES;
                while left > 0 {
                    let n = left.min(chunk.len() as u64) as usize;
                    if conn.write_all(&chunk[..n]).is_err() {
                        return;
                    }
                    left -= n as u64;
                }
            });
        }
    });
    port
}

/// Connects to `port` until it answers its first byte; milliseconds since `t`.
fn first_byte_ms(port: u16, t: Instant) -> (f64, TcpStream) {
    loop {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let mut b = [0u8; 1];
            if s.read_exact(&mut b).is_ok() {
                return (t.elapsed().as_secs_f64() * 1e3, s);
            }
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "port {port} never answered"
        );
        std::thread::sleep(Duration::from_micros(500));
    }
}

/// MB/s of `BULK_BYTES` read through `port`.
fn throughput(port: u16) -> f64 {
    let (_, mut s) = first_byte_ms(port, Instant::now());
    s.write_all(b"b").expect("ask for the bulk");
    let t = Instant::now();
    let mut buf = vec![0u8; 1 << 20];
    let mut got = 0u64;
    while got < BULK_BYTES {
        let n = s.read(&mut buf).expect("read");
        assert!(n > 0, "the stream ended after {got} bytes");
        got += n as u64;
    }
    BULK_BYTES as f64 / 1e6 / t.elapsed().as_secs_f64()
}

fn attach(d: &TestDaemon, run: &str, local: u16, remote: u16) -> Child {
    d.cli_command(&[
        "attach",
        run,
        "--no-ssh-config",
        "-p",
        &format!("{local}:{remote}"),
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("flotilla attach")
}

fn stop(mut c: Child) {
    c.kill().expect("kill");
    c.wait().expect("reap");
}

fn report(label: &str, v: &mut [f64], unit: &str) {
    println!(
        "{label:<58} median {:>8.1} {unit}  p90 {:>8.1} {unit}  (n={})",
        percentile(v, 0.5),
        percentile(v, 0.9),
        v.len()
    );
}

fn main() {
    let d = TestDaemon::start();
    let key = ssh_keygen(&d.dir.path().join("id"));
    let host = TestHost::start(61, &key, None);
    d.apply_ssh_fleet("far", &key, &host);
    let small = "resources: {cpu: 1.., memory: 1GB.., disk: 1GB..}\n";
    let here = d.apply_detached(
        "here",
        &format!("type: task\nname: here\nfleets: [local]\n{small}commands:\n  - sleep 3600\n"),
    );
    let there = d.apply_detached(
        "there",
        &format!("type: task\nname: there\nfleets: [far]\n{small}commands:\n  - sleep 3600\n"),
    );
    d.wait_status(&here, &["running"], Duration::from_secs(30));
    d.wait_status(&there, &["running"], Duration::from_secs(30));
    let port = serve();

    // attach -> first forwarded byte, and the direct connection's first byte beside it.
    let (mut direct, mut local_fleet, mut ssh_host) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..FIRST_BYTE_ROUNDS {
        direct.push(first_byte_ms(port, Instant::now()).0);
        for (run, out) in [(&here, &mut local_fleet), (&there, &mut ssh_host)] {
            let local = free_port();
            let t = Instant::now();
            let a = attach(&d, run, local, port);
            out.push(first_byte_ms(local, t).0);
            stop(a);
        }
    }
    println!("attach to the first forwarded byte (the CLI's start included):");
    report("  direct connection to the port (floor)", &mut direct, "ms");
    report("  flotilla attach, local fleet", &mut local_fleet, "ms");
    report("  flotilla attach, SSH host", &mut ssh_host, "ms");

    // Throughput through a forwarded port, beside a direct read and a plain `ssh -L`.
    let l_here = free_port();
    let l_there = free_port();
    let l_ssh = free_port();
    let a_here = attach(&d, &here, l_here, port);
    let a_there = attach(&d, &there, l_there, port);
    let mut ssh_l = Command::new("ssh")
        .args([
            "-N",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-i",
        ])
        .arg(&key.path)
        .args(["-p", &host.port.to_string(), "-L"])
        .arg(format!("127.0.0.1:{l_ssh}:127.0.0.1:{port}"))
        .arg(format!("root@{}", host.ip))
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ssh -L");
    let (mut t_direct, mut t_here, mut t_there, mut t_ssh) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..BULK_ROUNDS {
        t_direct.push(throughput(port));
        t_here.push(throughput(l_here));
        t_there.push(throughput(l_there));
        t_ssh.push(throughput(l_ssh));
    }
    println!("throughput of 1 GiB through a forwarded port:");
    report(
        "  direct connection to the port (floor)",
        &mut t_direct,
        "MB/s",
    );
    report("  flotilla attach, local fleet", &mut t_here, "MB/s");
    report("  flotilla attach, SSH host", &mut t_there, "MB/s");
    report("  plain ssh -L to the same SSH host", &mut t_ssh, "MB/s");
    println!(
        "  attach through the SSH host / plain ssh -L: {:.0}%",
        100.0 * percentile(&mut t_there, 0.5) / percentile(&mut t_ssh, 0.5)
    );
    stop(a_here);
    stop(a_there);
    ssh_l.kill().expect("kill ssh -L");
    if let Some(err) = ssh_l.stderr.take() {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if !line.contains("Warning: Permanently added") {
                eprintln!("ssh -L: {line}");
            }
        }
    }
    ssh_l.wait().expect("reap ssh -L");
    for run in [&here, &there] {
        let out = d.cli(&["stop", run, "-x", "-y"]);
        assert!(out.status.success(), "stop {run}");
    }
}

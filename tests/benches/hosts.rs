//! SSH figures against real sshd hosts on loopback (build first: `cargo build --release --bins`;
//! run: `cargo bench -p flotilla-e2e --bench hosts`): connect + inventory of 50 hosts in parallel,
//! a command round trip on an open connection, and `apply -d` -> running on an idle SSH host.

use flotilla_daemon::hosts::ssh::SshHost;
use flotilla_e2e::sshd::{ssh_keygen, TestHost, TWO_H100};
use flotilla_e2e::{apply_to_running_ms, percentile, wait_finished, TestDaemon};
use flotilla_protocol::model::SshEndpoint;
use std::sync::Arc;
use std::time::Instant;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let keydir = tempfile::tempdir().expect("tmp");
    let key = ssh_keygen(&keydir.path().join("id"));
    let hosts: Vec<TestHost> = (30..80u8)
        .map(|o| TestHost::start(o, &key, Some(TWO_H100)))
        .collect();
    let endpoint = |h: &TestHost| SshEndpoint {
        hostname: h.ip.clone(),
        port: h.port,
        user: "root".into(),
        identity_file: Some(key.path.display().to_string()),
        proxy_jump: None,
        internal_ip: None,
    };
    rt.block_on(async {
        for round in 0..3 {
            let ssh: Vec<Arc<SshHost>> = hosts.iter().map(|h| Arc::new(SshHost::new(endpoint(h), None, None))).collect();
            let t = Instant::now();
            let tasks: Vec<_> = ssh
                .iter()
                .map(|s| {
                    let s = s.clone();
                    tokio::spawn(async move { s.prepare().await.map(|p| p.inventory.gpus.len()) })
                })
                .collect();
            let mut gpus = 0;
            for task in tasks {
                gpus += task.await.expect("join").expect("prepare");
            }
            println!(
                "connect + supervisor + inventory of {} hosts in parallel (round {round}): {:.0} ms ({gpus} GPUs seen)",
                ssh.len(),
                t.elapsed().as_secs_f64() * 1e3
            );
            if round == 2 {
                let one = &ssh[0];
                let mut lat = Vec::new();
                for _ in 0..300 {
                    let t = Instant::now();
                    one.ping().await.expect("ping");
                    lat.push(t.elapsed().as_secs_f64() * 1e3);
                }
                println!(
                    "command round trip on an open connection: median {:.2} ms, p99 {:.2} ms (300 commands)",
                    percentile(&mut lat, 0.5),
                    percentile(&mut lat, 0.99)
                );
            }
        }
    });
    drop(hosts);

    // apply -d -> running on an idle SSH host, through a real daemon.
    let d = TestDaemon::start();
    let host = TestHost::start(90, &key, Some(TWO_H100));
    let fleet = format!(
        "type: fleet\nname: bench\nssh_config:\n  user: root\n  identity_file: {}\n  hosts:\n    - hostname: {}\n      port: {}\n",
        key.path.display(),
        host.ip,
        host.port
    );
    let p = d.write_config("fleet.yml", &fleet);
    let out = d.cli(&["apply", "-f", p.to_str().expect("path"), "-y"]);
    assert!(out.status.success(), "fleet apply failed");
    rt.block_on(async {
        let c = d.client().await;
        let task = "type: task\nfleets: [bench]\nresources: {cpu: 1.., memory: 1GB.., disk: 1GB.., gpu: H100}\ncommands:\n  - sleep 0.2\n";
        let mut lat = Vec::new();
        for i in 0..30 {
            let name = format!("ssh-lat-{i}");
            lat.push(apply_to_running_ms(&d.socket, task, &name).await);
            // so that the host is idle again
            wait_finished(&c, &name).await;
        }
        println!(
            "apply -> running on an idle SSH host: median {:.1} ms, p90 {:.1} ms (30 runs)",
            percentile(&mut lat, 0.5),
            percentile(&mut lat, 0.9)
        );
    });
}

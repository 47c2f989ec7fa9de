//! What containers cost: `run.apply` to the job's first log line on the idle local machine, in
//! a container (the test image present) and on the host, beside the floor, `docker run` of the
//! same image until its first line, measured in the same run, interleaved.
//! Build first (`cargo build --release --bins`), then `cargo bench -p flotilla-e2e --bench containers`.

use flotilla_e2e::docker::test_image;
use flotilla_e2e::{apply_raw, percentile, wait_finished, TestDaemon};
use flotilla_protocol::client::{Client, RawStreamItem};
use flotilla_protocol::rpc::{methods, LogTarget, LogsFollowParams};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Instant;

const ROUNDS: usize = 20;

/// Milliseconds from `run.apply` to the first chunk of the job's log.
async fn apply_to_first_line_ms(c: &Client, configuration: &str, name: &str) -> f64 {
    let t = Instant::now();
    apply_raw(c, configuration, name).await;
    let mut logs = c
        .subscribe_raw(
            methods::LOGS_FOLLOW,
            LogsFollowParams {
                target: LogTarget {
                    run: name.into(),
                    replica: 0,
                    job: 0,
                    submission: None,
                },
                offset: 0,
                attach: false,
            },
        )
        .await
        .expect("logs.follow");
    loop {
        match logs.next().await {
            Some(RawStreamItem::Item(v)) if v["text"].as_str().is_some_and(|t| !t.is_empty()) => {
                return t.elapsed().as_secs_f64() * 1e3
            }
            Some(RawStreamItem::Item(_)) => {}
            other => panic!("the log ended before its first line: {other:?}"),
        }
    }
}

/// Milliseconds from spawning `docker run --rm IMAGE echo first` to its first line.
fn docker_run_first_line_ms(image: &str) -> f64 {
    let t = Instant::now();
    let mut child = Command::new("docker")
        .args(["run", "--rm", image, "echo", "first"])
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .expect("docker run");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("first line");
    let ms = t.elapsed().as_secs_f64() * 1e3;
    child.wait().expect("docker run ends");
    ms
}

fn main() {
    let image = test_image();
    let d = TestDaemon::start();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let c = Client::connect(&d.socket, "bench").await.expect("connect");
        let container = format!("type: task\nimage: {image}\nresources: {{cpu: 1.., memory: 1GB.., disk: 1GB..}}\ncommands:\n  - echo first\n");
        let host = "type: task\nresources: {cpu: 1.., memory: 1GB.., disk: 1GB..}\ncommands:\n  - echo first\n";
        let (mut ours, mut on_host, mut floor) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..ROUNDS {
            floor.push(docker_run_first_line_ms(image));
            let name = format!("c{i}");
            ours.push(apply_to_first_line_ms(&c, &container, &name).await);
            wait_finished(&c, &name).await;
            let name = format!("h{i}");
            on_host.push(apply_to_first_line_ms(&c, host, &name).await);
            wait_finished(&c, &name).await;
        }
        for (label, v) in [
            ("floor: docker run --rm IMAGE echo first", &mut floor),
            ("flotilla: apply to first log line, container", &mut ours),
            ("flotilla: apply to first log line, host", &mut on_host),
        ] {
            println!(
                "{label}: median {:.1} ms, p90 {:.1} ms ({ROUNDS} runs)",
                percentile(v, 0.5),
                percentile(v, 0.9)
            );
        }
    });
}

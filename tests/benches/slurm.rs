//! Slurm figures against a real single-node Slurm (tests/src/slurm.rs) behind a real sshd login
//! node (build first: `cargo build --release --bins`; run: `cargo bench -p flotilla-e2e --bench
//! slurm`): `apply` -> running on the idle node beside the floor (`sbatch` of the same batch
//! script, polling `squeue` until RUNNING), measured alternately in the same run; and the offer
//! refresh: its time and how many commands it runs on the login node.

use flotilla_daemon::backends::slurm::config::SlurmConfig;
use flotilla_daemon::backends::slurm::SlurmBackend;
use flotilla_e2e::slurm::SlurmCluster;
use flotilla_e2e::sshd::{ssh_keygen, TestHost};
use flotilla_e2e::{apply_to_running_ms, percentile, wait_finished, TestDaemon};
use std::path::Path;
use std::time::{Duration, Instant};

const ROUNDS: usize = 15;

fn main() {
    let Some(cluster) = SlurmCluster::start() else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let d = TestDaemon::new();
    let key = ssh_keygen(&d.dir.path().join("id"));
    let login = TestHost::start(96, &key, None);
    let calls = d.dir.path().join("calls.log");
    cluster.install_clients(&login.dir.path().join("bin"), Some(&calls));
    let clusters = format!(
        "clusters:\n  - name: hpc\n    hostname: {}\n    port: {}\n    user: root\n    private_key: {{path: {}}}\n    gpu_partitions: [{{gpu: H100, partitions: [gpu]}}]\n",
        login.ip,
        login.port,
        key.path.display()
    );

    // The offer refresh, in-process: time, and the commands each refresh runs.
    let config: SlurmConfig = serde_json::from_value(
        flotilla_protocol::config::yaml_to_json("bench.yml", &clusters).expect("yaml"),
    )
    .expect("a slurm config");
    rt.block_on(async {
        let b = SlurmBackend::new(config);
        let t = Instant::now();
        b.refresh().await;
        println!(
            "offer refresh, first (SSH connect + sinfo): {:.1} ms",
            t.elapsed().as_secs_f64() * 1e3
        );
        let _ = std::fs::remove_file(&calls);
        let before = b.stats();
        let mut lat = Vec::new();
        for _ in 0..50 {
            let t = Instant::now();
            b.refresh().await;
            lat.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let after = b.stats();
        let log = std::fs::read_to_string(&calls).unwrap_or_default();
        let count = |name: &str| log.lines().filter(|l| l.starts_with(name)).count();
        println!(
            "offer refresh on an open connection: median {:.1} ms, p90 {:.1} ms (50 refreshes); per refresh: {} SSH command(s), {} sinfo, {} srun (Pyxis probe), {} other Slurm calls",
            percentile(&mut lat, 0.5),
            percentile(&mut lat, 0.9),
            (after.remote_calls - before.remote_calls) / 50,
            count("sinfo") as f64 / 50.0,
            count("srun") as f64 / 50.0,
            (log.lines().count() - count("sinfo") - count("srun")) as f64 / 50.0,
        );
    });

    // apply -> running through a real daemon, beside sbatch + squeue polling, alternately.
    let mut d = d;
    d.write_daemon_config(&format!(
        "backends:\n  - type: slurm\n{}",
        clusters
            .lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    ));
    d.spawn();
    let p = d.write_config(
        "hpc.yml",
        "type: fleet\nname: hpc\nnodes: 0..1\nbackends: [slurm]\nresources: {cpu: 1.., memory: 1GB.., disk: 0GB..}\n",
    );
    let out = d.cli(&["apply", "-f", p.to_str().expect("path"), "-y"]);
    assert!(out.status.success(), "fleet apply failed");
    let deadline = Instant::now() + Duration::from_secs(30);
    while d.cli_json(&["offer", "-b", "slurm", "--cpu", "1..", "--memory", "1GB.."])["offers"]
        .as_array()
        .is_none_or(|o| o.is_empty())
    {
        assert!(Instant::now() < deadline, "no offers from the cluster");
        std::thread::sleep(Duration::from_millis(100));
    }
    let task = "type: task\nfleets: [hpc]\nresources: {cpu: 1.., memory: 1GB..}\ncommands:\n  - sleep 0.2\n";
    rt.block_on(async {
        let c = d.client().await;
        // The first run also creates and provisions the fleet's slot.
        let cold = apply_to_running_ms(&d.socket, task, "slurm-cold").await;
        wait_finished(&c, "slurm-cold").await;
        println!("apply -> running, first run (creates the slot): {cold:.0} ms");
        let job_dir = d.run_json("slurm-cold")["jobs"][0]["job_dir"]
            .as_str()
            .expect("a job dir")
            .to_string();
        let (mut ours, mut floor) = (Vec::new(), Vec::new());
        for i in 0..ROUNDS {
            let name = format!("slurm-lat-{i}");
            ours.push(apply_to_running_ms(&d.socket, task, &name).await);
            wait_finished(&c, &name).await;
            floor.push(sbatch_to_running_ms(&cluster, &job_dir, i));
        }
        println!(
            "apply -> running on an idle Slurm node: median {:.0} ms, p90 {:.0} ms ({ROUNDS} runs)",
            percentile(&mut ours, 0.5),
            percentile(&mut ours, 0.9)
        );
        println!(
            "floor, sbatch of the same script + squeue every 10 ms until RUNNING: median {:.0} ms, p90 {:.0} ms ({ROUNDS} runs)",
            percentile(&mut floor, 0.5),
            percentile(&mut floor, 0.9)
        );
    });
}

/// The floor: flotilla's batch script and job script of `job_dir`, copied to a fresh directory,
/// submitted with `sbatch` on this machine; milliseconds until `squeue` says RUNNING. Waits
/// until the job has left the queue, so the node is idle again.
fn sbatch_to_running_ms(cluster: &SlurmCluster, job_dir: &str, i: usize) -> f64 {
    let dir = format!("{job_dir}-floor-{i}");
    std::fs::create_dir_all(&dir).expect("floor dir");
    let batch = std::fs::read_to_string(Path::new(job_dir).join("batch.sh"))
        .expect("batch.sh")
        .replace(job_dir, &dir);
    std::fs::write(Path::new(&dir).join("batch.sh"), batch).expect("batch.sh");
    std::fs::copy(
        Path::new(job_dir).join("script"),
        Path::new(&dir).join("script"),
    )
    .expect("script");
    let t = Instant::now();
    let out = cluster
        .client("sbatch")
        .arg("--parsable")
        .arg(Path::new(&dir).join("batch.sh"))
        .output()
        .expect("sbatch");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let state = || {
        let out = cluster
            .client("squeue")
            .args(["-h", "-j", &id, "-o", "%T"])
            .output()
            .expect("squeue");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let ms = loop {
        let s = state();
        if s == "RUNNING" || s.is_empty() {
            break t.elapsed().as_secs_f64() * 1e3;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    while !state().is_empty() {
        std::thread::sleep(Duration::from_millis(50));
    }
    ms
}

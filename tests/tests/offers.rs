//! `flotilla validate` and `flotilla offer` through the real binaries, with the shared real catalogs.

use flotilla_e2e::{repo_root, stderr, stdout, TestDaemon};
use serde_json::Value;

fn catalogs() -> std::path::PathBuf {
    let p = repo_root().join("../shared/catalogs");
    assert!(
        p.join("lambda.csv").exists(),
        "the shared catalogs are missing at {}",
        p.display()
    );
    p
}

#[test]
fn validate_prints_the_normalized_configuration() {
    let d = TestDaemon::new();
    let p = d.write_config(
        "t.yml",
        "type: task\nname: train\ncommands: [python train.py]\nmax_duration: 2h\nresources:\n  cpu: 2..\n  memory: 8GB..\n  gpu: A100:80GB:2\n",
    );
    let out = d.cli(&["validate", "-f", p.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["type"], "task");
    assert_eq!(v["max_duration"], 7200);
    let want: Value = serde_json::from_str(r#"{"cpu":{"arch":null,"count":{"min":2,"max":null}},"memory":{"min":8.0,"max":null},"disk":{"size":{"min":100.0,"max":null}},"shm_size":null,"gpu":{"vendor":"nvidia","name":["A100"],"count":{"min":2,"max":2},"memory":{"min":80.0,"max":80.0},"total_memory":null,"compute_capability":null}}"#).unwrap();
    assert_eq!(v["resources"], want);
    // no daemon is needed or started for validation
    assert!(!d.socket.exists());

    let bad = d.write_config(
        "bad.yml",
        "type: task\ncommands: [x]\nresources:\n  memory: 16GB..8GB\n  gpu: A100:0GB\n",
    );
    let out = d.cli(&["validate", "-f", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let e = stderr(&out);
    assert!(e.contains("bad.yml:4:11: resources.memory"), "{e}");
    assert!(e.contains("bad.yml:5:8: resources.gpu"), "{e}");
}

#[test]
fn offers_come_cheapest_first_from_the_catalogs_and_the_fleets() {
    let d = TestDaemon::new();
    d.write_daemon_config(&format!("catalog_dir: {}\n", catalogs().display()));
    let mut d = d;
    d.spawn();
    let v = d.cli_json(&["offer", "--gpu", "24GB..:1..", "--max-price", "3"]);
    let offers = v["offers"].as_array().unwrap();
    assert_eq!(offers.len(), 50, "50 shown by default");
    assert!(v["total"].as_u64().unwrap() > 50);
    let prices: Vec<f64> = offers
        .iter()
        .map(|o| o["price"].as_f64().unwrap())
        .collect();
    assert!(
        prices.windows(2).all(|w| w[0] <= w[1]),
        "not sorted: {prices:?}"
    );
    for o in offers {
        assert!(o["price"].as_f64().unwrap() <= 3.0);
        let gpu = &o["resources"]["gpu"];
        assert!(gpu["memory"]["min"].as_f64().unwrap() >= 24.0, "{o}");
        assert!(gpu["count"]["min"].as_u64().unwrap() >= 1);
        for k in ["backend", "region", "instance_type", "spot", "availability"] {
            assert!(!o[k].is_null(), "{k} missing in {o}");
        }
    }
    // the local machine is a pool offer for a CPU job
    let v = d.cli_json(&[
        "offer", "--cpu", "1..", "--memory", "1GB..", "--disk", "1GB..", "-b", "local",
    ]);
    assert_eq!(v["total"], 1, "{v}");
    assert_eq!(v["offers"][0]["instance_type"], "local-0");
    assert_eq!(v["offers"][0]["availability"], "idle");
    // the table and its closing line
    let out = d.cli(&["offer", "--gpu", "H100:8", "--max-offers", "3"]);
    let s = stdout(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(s.lines().next().unwrap().starts_with("#  BACKEND"), "{s}");
    assert!(s.contains("gpu=H100:80GB:8"), "{s}");
    assert!(
        s.trim_end()
            .lines()
            .last()
            .unwrap()
            .starts_with("Shown 3 of "),
        "{s}"
    );
    // a bad flag names itself
    let out = d.cli(&["offer", "--gpu", "A100:0GB"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--gpu"), "{}", stderr(&out));
}

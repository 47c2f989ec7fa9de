//! The Python client (`protocol/python`) against a real daemon: its unittest suite, run with
//! `python3 -m unittest discover` as the README says, with `FLOTILLA_SOCKET` pointing at a
//! TestDaemon. The suite's own files say what each test proves.

use flotilla_e2e::{bin, repo_root, stderr, stdout, TestDaemon};
use std::process::Command;

#[test]
fn the_python_api_suite_passes_against_the_daemon() {
    let d = TestDaemon::start();
    let python = repo_root().join("protocol/python");
    let out = Command::new("python3")
        .args(["-m", "unittest", "discover", "-v", "-s", "tests", "-t", "."])
        .current_dir(&python)
        .env("PYTHONPATH", python.join("src"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("FLOTILLA_SOCKET", &d.socket)
        .env("FLOTILLA_DATA_DIR", &d.data_dir)
        .env("FLOTILLA_CLI", bin("flotilla"))
        .env("FLOTILLAD", bin("flotillad"))
        .output()
        .expect("python3 (install it: apt-get install python3)");
    let report = format!(
        "{}{}\ndaemon:\n{}",
        stdout(&out),
        stderr(&out),
        d.daemon_output()
    );
    assert!(out.status.success(), "the Python suite failed:\n{report}");
    // unittest reports to stderr; every daemon test ran (none skipped).
    let summary = stderr(&out);
    assert!(summary.contains("\nOK"), "{report}");
    assert!(
        !summary.contains("skipped"),
        "tests were skipped:\n{report}"
    );
}

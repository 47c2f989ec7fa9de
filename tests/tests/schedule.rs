//! `schedule`: a run waits for its cron time (UTC), `ps` shows the next start, and each start
//! is a new submission; a user's stop ends the schedule.

use flotilla_e2e::{stderr, stdout, TestDaemon};
use flotilla_protocol::Timestamp;
use std::time::Duration;

const SMALL: &str = "resources:\n  cpu: 1..\n  memory: 1GB..\n  disk: 1GB..\n";

fn millis(v: &serde_json::Value) -> u64 {
    Timestamp::parse_rfc3339(v.as_str().unwrap_or_else(|| panic!("a time: {v}")))
        .expect("RFC 3339")
        .millis()
}

#[test]
fn a_schedule_for_the_next_minute_starts_then_not_before_and_again_after_each_end() {
    let d = TestDaemon::start();
    let task = format!(
        "type: task\nname: every-minute\nschedule:\n  cron: \"* * * * *\"\ncommands:\n  - date -u +%s\n{SMALL}"
    );
    let file = d.write_config("every-minute.dstack.yml", &task);
    let before = Timestamp::now().millis();
    // Without -d, apply returns at once for a scheduled run.
    let out = d.cli(&["apply", "-f", file.to_str().expect("utf-8"), "-y"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stderr(&out).contains("is scheduled: its first start is at"),
        "{}",
        stderr(&out)
    );

    let run = d.run_json("every-minute");
    let first = millis(&run["next_triggered_at"]);
    assert_eq!(
        first,
        before.div_ceil(60_000) * 60_000,
        "the next whole minute: {run}"
    );
    if Timestamp::now().millis() < first {
        assert_eq!(run["status"], "pending", "{run}");
        let ps = stdout(&d.cli(&["ps"]));
        assert!(ps.contains("scheduled: starts at"), "{ps}");
    }

    // The first start: not before its time.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let run = loop {
        let run = d.run_json("every-minute");
        if !run["jobs"][0]["previous_submissions"]
            .as_array()
            .expect("a list")
            .is_empty()
        {
            break run;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no second submission: {run}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let done = &run["jobs"][0]["previous_submissions"][0];
    assert_eq!(done["status"], "done", "{run}");
    assert!(
        millis(&done["started_at"]) >= first,
        "started before its time: {run}"
    );
    let first_log = stdout(&d.cli(&["logs", "every-minute", "--submission", "0"]));
    let printed: u64 = first_log.trim().parse().expect("the job printed the time");
    assert!(
        printed * 1000 >= first,
        "the job ran before its time: {first_log}"
    );
    // Back to pending, a new submission waiting for the next minute.
    assert_eq!(run["status"], "pending", "{run}");
    let next = millis(&run["next_triggered_at"]);
    assert!(next > first && next.is_multiple_of(60_000), "{run}");
    assert_eq!(run["jobs"][0]["submission_num"], 1, "{run}");
    assert!(millis(&run["jobs"][0]["retry_at"]) == next, "{run}");

    // A user's stop ends it for good.
    let out = d.cli(&["stop", "every-minute", "-y"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let run = d.wait_status("every-minute", &["terminated"], Duration::from_secs(30));
    assert_eq!(run["termination_reason"], "stopped_by_user", "{run}");
}

//! The dashboard end to end: the real `flotilla` (no arguments) in tmux against a real daemon.
//! It switches views, filters, follows a running job's log, stops the run, opens a shell in the
//! job's directory and comes back intact, and rides out a daemon restart. Every wait polls
//! `tmux capture-pane` against a deadline; no sleep is an assertion.

use flotilla_e2e::{bin, TestDaemon};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);

/// A private tmux server (its own socket) running the dashboard in one pane.
struct Tmux {
    socket: PathBuf,
    target: &'static str,
}

impl Tmux {
    fn require() {
        match Command::new("tmux").arg("-V").output() {
            Ok(o) if o.status.success() => {}
            _ => panic!(
                "tmux is not installed, and the dashboard's end-to-end test drives the dashboard in tmux: \
                 install it (e.g. `apt-get install tmux`)"
            ),
        }
    }

    fn start(d: &TestDaemon, cols: u16, rows: u16) -> Tmux {
        Tmux::require();
        let socket = d.dir.path().join("tmux.sock");
        let env = format!(
            "FLOTILLA_SOCKET={} FLOTILLA_DATA_DIR={} SHELL=/bin/sh TERM=xterm-256color",
            quote(&d.socket),
            quote(&d.data_dir)
        );
        // The pane outlives the dashboard so that a crash leaves its message on screen.
        let cmd = format!(
            "env {env} {}; echo \"flotilla exited with $?\"; sleep 600",
            quote(&bin("flotilla"))
        );
        let t = Tmux {
            socket,
            target: "dash",
        };
        let out = t.tmux(&[
            "new-session",
            "-d",
            "-s",
            "dash",
            "-x",
            &cols.to_string(),
            "-y",
            &rows.to_string(),
            &cmd,
        ]);
        assert!(
            out.status.success(),
            "tmux new-session: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        t
    }

    fn tmux(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("-f")
            .arg("/dev/null")
            .args(args)
            .output()
            .expect("run tmux")
    }

    /// Keys by tmux name (`Enter`, `Escape`, `C-s`, `q`).
    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", self.target];
        args.extend_from_slice(keys);
        let out = self.tmux(&args);
        assert!(
            out.status.success(),
            "send-keys {keys:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Text typed literally.
    fn text(&self, text: &str) {
        let out = self.tmux(&["send-keys", "-t", self.target, "-l", text]);
        assert!(out.status.success(), "send-keys -l {text:?}");
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.tmux(&["capture-pane", "-p", "-t", self.target]).stdout)
            .into_owned()
    }

    /// Polls the pane until `ok` holds; fails with the pane and the daemon's output after `WAIT`.
    fn wait(&self, d: &TestDaemon, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let s = self.screen();
            if ok(&s) {
                return s;
            }
            if Instant::now() > deadline {
                panic!(
                    "the dashboard did not show {what} within {WAIT:?}; the pane:\n{s}\n--- daemon output:\n{}",
                    d.daemon_output()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
    }
}

fn quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', "'\\''"))
}

/// The line of the pane that shows `name` in the runs table.
fn row<'a>(screen: &'a str, name: &str) -> Option<&'a str> {
    screen
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
}

/// The highest `tick N` on the screen.
fn last_tick(screen: &str) -> Option<u64> {
    screen
        .lines()
        .filter_map(|l| l.split("tick ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .filter_map(|n| n.parse().ok())
        .max()
}

const TICKER: &str = "type: task\nname: ticker\nresources: {cpu: 1.., memory: 1GB.., disk: 1GB..}\nenv:\n  - GREETING=hi\ncommands:\n  - i=0; while true; do i=$((i+1)); echo \"tick $i\"; sleep 0.1; done\n";
const QUICK: &str = "type: task\nname: quick\nresources: {cpu: 1.., memory: 1GB.., disk: 1GB..}\ncommands:\n  - echo quick done\n";

#[test]
fn dashboard_views_logs_stop_shell_and_daemon_restart() {
    // Skip nothing silently: without tmux this fails, saying so.
    Tmux::require();
    let mut d = TestDaemon::start();
    let quick = d.apply_detached("quick", QUICK);
    d.wait_status(&quick, &["done"], Duration::from_secs(60));
    let ticker = d.apply_detached("ticker", TICKER);
    d.wait_status(&ticker, &["running"], Duration::from_secs(60));

    let t = Tmux::start(&d, 140, 36);
    t.wait(&d, "the runs view, connected", |s| {
        s.contains("● connected")
            && row(s, &ticker).is_some_and(|r| r.contains("running"))
            && row(s, &quick).is_some()
    });

    // Views: `:fleets` shows the local instance, `:runs` the runs again.
    t.text(":fleets");
    t.keys(&["Enter"]);
    t.wait(&d, "the fleets view", |s| {
        s.contains("local-0") && s.contains("BLOCKS")
    });
    t.text(":ru");
    t.keys(&["Tab", "Enter"]);
    t.wait(&d, "the runs view", |s| {
        s.contains("NAME") && row(s, &ticker).is_some()
    });

    // Filter: only the ticker is left.
    t.keys(&["/"]);
    t.text("tick");
    t.keys(&["Enter"]);
    t.wait(&d, "the filtered runs", |s| {
        row(s, &ticker).is_some() && row(s, &quick).is_none() && s.contains("/tick")
    });

    // Logs: history, then live lines keep coming.
    t.keys(&["l"]);
    let s = t.wait(&d, "the ticker's log", |s| {
        s.contains("●follow") && last_tick(s).is_some()
    });
    let first = last_tick(&s).unwrap_or(0);
    t.wait(&d, "the log following new lines", |s| {
        last_tick(s).is_some_and(|n| n > first + 3)
    });
    t.keys(&["Escape"]);
    t.wait(&d, "the runs view after the log", |s| {
        s.contains("NAME") && row(s, &ticker).is_some()
    });

    // Stop: a dialog names the run; `y` stops it and the row turns terminated.
    t.keys(&["C-s"]);
    t.wait(&d, "the stop dialog", |s| {
        s.contains(&format!("Stop {ticker}?"))
    });
    t.keys(&["y"]);
    t.wait(&d, "the run terminated", |s| {
        row(s, &ticker).is_some_and(|r| r.contains("terminated"))
    });
    let run = d.run_json(&ticker);
    assert_eq!(run["status"], "terminated", "{run}");

    // Shell: in the job's directory with its environment; the dashboard comes back intact.
    let job_dir = run["jobs"][0]["job_dir"]
        .as_str()
        .expect("job_dir")
        .to_string();
    let work = Path::new(&job_dir).join("work");
    t.keys(&["s"]);
    t.wait(&d, "the shell's banner", |s| {
        s.contains("flotilla: shell in")
    });
    t.text("pwd > marker; echo \"$DSTACK_RUN_NAME $GREETING\" >> marker");
    t.keys(&["Enter"]);
    let marker = work.join("marker");
    let deadline = Instant::now() + WAIT;
    let written = loop {
        if let Ok(text) = std::fs::read_to_string(&marker) {
            if text.lines().count() >= 2 {
                break text;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the shell did not write {}: pane:\n{}",
            marker.display(),
            t.screen()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut lines = written.lines();
    let pwd = lines.next().unwrap_or_default();
    assert_eq!(
        std::fs::canonicalize(pwd).ok(),
        std::fs::canonicalize(&work).ok(),
        "the shell ran in {pwd}, not in the job's directory {}",
        work.display()
    );
    assert_eq!(
        lines.next(),
        Some(format!("{ticker} hi").as_str()),
        "the job's environment"
    );
    t.text("exit");
    t.keys(&["Enter"]);
    t.wait(&d, "the runs view after the shell", |s| {
        s.contains("NAME") && row(s, &ticker).is_some() && s.contains("back from the shell")
    });
    // Keys work again at once: the help screen opens and closes.
    t.keys(&["?"]);
    t.wait(&d, "the help screen", |s| s.contains("keys (esc closes)"));
    t.keys(&["Escape"]);
    t.wait(&d, "the help closed", |s| {
        !s.contains("keys (esc closes)") && s.contains("NAME")
    });

    // A daemon restart: "reconnecting", then everything resumes.
    d.kill9();
    t.wait(&d, "reconnecting", |s| s.contains("reconnecting"));
    d.spawn();
    t.wait(&d, "connected again", |s| {
        s.contains("● connected") && row(s, &ticker).is_some()
    });

    // Quit.
    t.keys(&["q"]);
    t.wait(&d, "the dashboard gone", |s| {
        s.contains("flotilla exited with 0")
    });
}

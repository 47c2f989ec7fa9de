//! A bounded fuzz test of the configuration parser: mutated real configurations, random bytes,
//! deep nesting and alias chains, each parsed on a 256 KiB stack under a watchdog and a memory
//! counter. Asserts that every input returns (no panic, no hang), within bounded memory, and
//! that every error it reports is located inside the file.
//!
//! One test runs the strategies one after the other, so that the allocation counter sees only
//! the parse under test. Case counts keep it to a few seconds in a debug build; the numbers of
//! inputs tried are printed (`cargo test --test config_fuzz -- --nocapture`); set
//! `CONFIG_FUZZ_SCALE=N` to try N times as many.

use flotilla_protocol::config::{decode_utf8, parse_configuration, yaml_to_json, ConfigErrors};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

/// Counts the bytes live on the heap and their peak.
struct CountingAllocator;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
/// The most heap any one input took, for the summary.
static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged to the system allocator.
        let pointer = unsafe { System.alloc(layout) };
        if !pointer.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(pointer, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// The most heap one parse of a fuzz input (a few KiB) may take.
const MEMORY_BOUND: usize = 64 * 1024 * 1024;
/// How long one parse may take before it counts as a hang (debug build, shared CI machine).
const HANG_AFTER: Duration = Duration::from_secs(20);

const SEEDS: &[(&str, &str)] = &[
    (
        "052-service.yml",
        include_str!("data/config_fuzz/052-service.yml"),
    ),
    (
        "151-task.yml",
        include_str!("data/config_fuzz/151-task.yml"),
    ),
    (
        "006-fleet.yml",
        include_str!("data/config_fuzz/006-fleet.yml"),
    ),
    (
        "020-fleet.yml",
        include_str!("data/config_fuzz/020-fleet.yml"),
    ),
    (
        "016-dev-environment.yml",
        include_str!("data/config_fuzz/016-dev-environment.yml"),
    ),
    (
        "059-volume.yml",
        include_str!("data/config_fuzz/059-volume.yml"),
    ),
    (
        "027-task.yml",
        include_str!("data/config_fuzz/027-task.yml"),
    ),
    (
        "035-service.yml",
        include_str!("data/config_fuzz/035-service.yml"),
    ),
];

/// Parses `bytes` both ways on a small stack and checks the outcome; the error names the input.
fn check(bytes: Vec<u8>) -> Result<(), TestCaseError> {
    let baseline = LIVE.load(Ordering::Relaxed);
    PEAK.store(baseline, Ordering::Relaxed);
    let (sender, receiver) = mpsc::channel();
    let input = bytes.clone();
    let spawned = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || {
            let outcome = parse_bytes(&input);
            // The receiver outlives every parse that does not hang.
            let _ = sender.send(outcome);
        });
    let Ok(handle) = spawned else {
        return Err(TestCaseError::fail("cannot spawn a parser thread"));
    };
    let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned();
    let outcome = match receiver.recv_timeout(HANG_AFTER) {
        Ok(outcome) => outcome,
        Err(mpsc::RecvTimeoutError::Timeout) => {
            return Err(TestCaseError::fail(format!("hang on {shown:?}")))
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            return Err(TestCaseError::fail(format!("panic on {shown:?}")))
        }
    };
    if handle.join().is_err() {
        return Err(TestCaseError::fail(format!("panic on {shown:?}")));
    }
    let used = PEAK.load(Ordering::Relaxed).saturating_sub(baseline);
    LARGEST.fetch_max(used, Ordering::Relaxed);
    prop_assert!(
        used <= MEMORY_BOUND,
        "{used} bytes of heap for {} bytes of input {shown:?}",
        bytes.len()
    );
    outcome.map_err(|problem| TestCaseError::fail(format!("{problem} for {shown:?}")))
}

/// Every error must point inside the file: a line from 1 to the line count + 1, a column from 1.
fn parse_bytes(bytes: &[u8]) -> Result<(), String> {
    let text = match decode_utf8(bytes, "f.yml") {
        Ok(text) => text.to_string(),
        Err(error) => {
            located(&error.into(), bytes)?;
            String::from_utf8_lossy(bytes).into_owned()
        }
    };
    if let Err(errors) = parse_configuration("f.yml", &text) {
        located(&errors, text.as_bytes())?;
    }
    if let Err(errors) = yaml_to_json("f.yml", &text) {
        located(&errors, text.as_bytes())?;
    }
    Ok(())
}

fn located(errors: &ConfigErrors, bytes: &[u8]) -> Result<(), String> {
    if errors.is_empty() {
        return Err("an empty error list".to_string());
    }
    // YAML breaks lines at `\n`, `\r\n` and a lone `\r`.
    let lone_returns = bytes
        .iter()
        .enumerate()
        .filter(|(i, b)| **b == b'\r' && bytes.get(i + 1) != Some(&b'\n'))
        .count();
    let lines = bytes.iter().filter(|b| **b == b'\n').count() + lone_returns + 1;
    for error in errors.iter() {
        if error.file != "f.yml" || error.line == 0 || error.column == 0 || error.line > lines + 1 {
            return Err(format!(
                "an error outside the file ({lines} lines): {error}"
            ));
        }
    }
    Ok(())
}

/// `cases` times `CONFIG_FUZZ_SCALE` (1 unless set), for longer runs by hand.
fn scaled(cases: u32) -> u32 {
    let scale = std::env::var("CONFIG_FUZZ_SCALE")
        .ok()
        .and_then(|value| value.parse::<u32>().ok())
        .unwrap_or(1);
    cases.saturating_mul(scale.max(1))
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 200,
        ..Config::default()
    })
}

/// One edit of a document: where (a fraction of its length) and what.
#[derive(Debug, Clone)]
enum Edit {
    Delete(u16, u8),
    Insert(u16, String),
    Duplicate(u16, u16),
    Byte(u16, u8),
}

/// Fragments that YAML gives meaning to.
fn yaml_fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "\n",
            "- ",
            ": ",
            "[",
            "]",
            "{",
            "}",
            ",",
            "&a ",
            "*a",
            "&b ",
            "*b",
            "<<: *a\n",
            "? ",
            "!!str ",
            "!tag ",
            "'",
            "\"",
            "|\n",
            ">-\n",
            "#",
            "---\n",
            "...\n",
            "%YAML 1.2\n",
            "\t",
            "  ",
            "~",
            "null",
            "0x1F",
            "0o17",
            "1e400",
            "-1",
            "4294967296",
            "auto",
            "..",
            "nodes: 99999999\n",
            "replicas: 0..9999999\n",
            "blocks: 70000\n",
            "\u{feff}",
            "\\",
            "\u{0}",
            "é",
            "\r\n",
        ])
        .prop_map(str::to_string),
        "[ -~]{0,12}",
    ]
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<u16>(), any::<u8>()).prop_map(|(at, len)| Edit::Delete(at, len)),
        (any::<u16>(), yaml_fragment()).prop_map(|(at, text)| Edit::Insert(at, text)),
        (any::<u16>(), any::<u16>()).prop_map(|(at, len)| Edit::Duplicate(at, len)),
        (any::<u16>(), any::<u8>()).prop_map(|(at, byte)| Edit::Byte(at, byte)),
    ]
}

fn apply(seed: &str, edits: &[Edit]) -> Vec<u8> {
    let mut bytes = seed.as_bytes().to_vec();
    let place = |at: u16, len: usize| usize::from(at) * (len + 1) / (usize::from(u16::MAX) + 1);
    for edit in edits {
        match edit {
            Edit::Delete(at, n) => {
                let start = place(*at, bytes.len());
                let end = (start + usize::from(*n % 32)).min(bytes.len());
                bytes.drain(start..end);
            }
            Edit::Insert(at, text) => {
                let at = place(*at, bytes.len());
                bytes.splice(at..at, text.bytes());
            }
            Edit::Duplicate(at, len) => {
                let start = place(*at, bytes.len());
                let end = (start + usize::from(*len % 512)).min(bytes.len());
                let copy = bytes[start..end].to_vec();
                bytes.splice(end..end, copy);
            }
            Edit::Byte(at, byte) => {
                if !bytes.is_empty() {
                    let at = place(*at, bytes.len() - 1);
                    bytes[at] = *byte;
                }
            }
        }
    }
    bytes
}

/// Openers that nest one level each, in block and flow style.
fn nesting() -> impl Strategy<Value = Vec<u8>> {
    let opener = prop::sample::select(vec!["[", "{a: ", "- ", "a:\n", "? ", "[{b: "]);
    (
        prop::collection::vec(opener, 1..400),
        any::<bool>(),
        yaml_fragment(),
    )
        .prop_map(|(openers, close, tail)| {
            let mut text = String::new();
            let mut indent = 0;
            for opener in &openers {
                text.push_str(opener);
                if opener.ends_with('\n') {
                    indent += 1;
                    text.push_str(&" ".repeat(indent));
                }
            }
            text.push_str(&tail);
            if close {
                for opener in openers.iter().rev() {
                    match *opener {
                        "[" => text.push(']'),
                        "{a: " => text.push('}'),
                        "[{b: " => text.push_str("}]"),
                        _ => {}
                    }
                }
            }
            text.into_bytes()
        })
}

/// Documents of anchors and aliases, each list repeating earlier anchors.
fn alias_chains() -> impl Strategy<Value = Vec<u8>> {
    let level = (
        1usize..12,
        prop::collection::vec(0usize..8, 1..12),
        any::<bool>(),
    );
    (prop::collection::vec(level, 1..10), 0usize..SEEDS.len()).prop_map(|(levels, seed)| {
        let mut text = String::from(SEEDS[seed].1);
        text.push_str("\nx0: &a0 [lol, {k: v}]\n");
        for (i, (width, picks, merge)) in levels.iter().enumerate() {
            let n = i + 1;
            let items: Vec<String> = (0..*width)
                .map(|w| format!("*a{}", picks[w % picks.len()] % n))
                .collect();
            if *merge {
                text.push_str(&format!(
                    "x{n}: &a{n}\n  <<: *a{}\n  k{n}: [{}]\n",
                    n - 1,
                    items.join(", ")
                ));
            } else {
                text.push_str(&format!("x{n}: &a{n} [{}]\n", items.join(", ")));
            }
        }
        text.into_bytes()
    })
}

/// The classic "billion laughs": nine levels of nine aliases, a billion strings if expanded.
const BILLION_LAUGHS: &str = r#"type: task
commands: [echo]
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
"#;

#[test]
fn no_input_panics_hangs_or_takes_unbounded_memory() {
    // The alias bomb is refused within a few MiB (the copy limit is 10,000 nodes).
    if let Err(failure) = check(BILLION_LAUGHS.as_bytes().to_vec()) {
        panic!("billion laughs: {failure}");
    }
    let bomb = LARGEST.swap(0, Ordering::Relaxed);
    assert!(
        bomb < 4 * 1024 * 1024,
        "the billion laughs took {bomb} bytes"
    );
    println!("billion laughs: refused using at most {bomb} bytes of heap");

    let mut tried = Vec::new();

    let mutated = (0..SEEDS.len(), prop::collection::vec(edit(), 1..8))
        .prop_map(|(seed, edits)| apply(SEEDS[seed].1, &edits));
    let cases = scaled(400);
    if let Err(failure) = runner(cases).run(&mutated, check) {
        panic!("mutated corpus file: {failure}");
    }
    tried.push(("mutated corpus files", cases));

    let random = prop::collection::vec(any::<u8>(), 0..2048);
    let cases = scaled(200);
    if let Err(failure) = runner(cases).run(&random, check) {
        panic!("random bytes: {failure}");
    }
    tried.push(("random bytes", cases));

    let fragments = prop::collection::vec(yaml_fragment(), 0..200)
        .prop_map(|parts| parts.concat().into_bytes());
    let cases = scaled(300);
    if let Err(failure) = runner(cases).run(&fragments, check) {
        panic!("YAML fragments: {failure}");
    }
    tried.push(("YAML fragments", cases));

    let cases = scaled(150);
    if let Err(failure) = runner(cases).run(&nesting(), check) {
        panic!("deep nesting: {failure}");
    }
    tried.push(("deep nesting", cases));

    let cases = scaled(150);
    if let Err(failure) = runner(cases).run(&alias_chains(), check) {
        panic!("alias chains: {failure}");
    }
    tried.push(("alias chains", cases));

    let total: u32 = tried.iter().map(|(_, cases)| cases).sum();
    let largest = LARGEST.load(Ordering::Relaxed);
    println!(
        "config fuzz: {total} inputs tried ({tried:?}), each parsed twice; at most {largest} bytes of heap for one"
    );
}

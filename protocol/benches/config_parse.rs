//! Configuration parse times: the largest real file, the largest documents the limits accept,
//! and the refusal of an alias bomb.
//!
//! - `config_parse/corpus_largest`: the largest file of `shared/corpus/dstack-docs`;
//! - `config_parse/env_80000_keys`: a task whose `env` mapping has 80,000 keys (about 1 MB),
//!   the case that was quadratic;
//! - `config_parse/commands_1mib`: a task whose `commands` fill the 1 MiB limit;
//! - `config_parse/ssh_fleet_4096_hosts`: an SSH fleet with the most hosts allowed, each a
//!   mapping;
//! - `config_parse/billion_laughs`: the time to refuse the classic alias bomb.
//!
//! Run: `cargo bench -p flotilla-protocol --bench config_parse`.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use flotilla_protocol::config::parse_configuration;
use std::path::PathBuf;
use std::time::Duration;

fn largest_corpus_file() -> Option<(String, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/dstack-docs");
    let entries = std::fs::read_dir(&dir).ok()?;
    let largest = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "yml"))
        .max_by_key(|path| std::fs::metadata(path).map(|m| m.len()).unwrap_or(0))?;
    let text = std::fs::read_to_string(&largest).ok()?;
    Some((largest.display().to_string(), text))
}

fn env_keys(count: usize) -> String {
    let mut text = String::from("type: task\ncommands: [env]\nenv:\n");
    for i in 0..count {
        text.push_str(&format!("  V{i}: {}\n", i % 10));
    }
    text
}

fn commands_filling_the_limit() -> String {
    let mut text = String::from("type: task\ncommands:\n");
    let line = "  - echo 0123456789012345678901234567890123456789\n";
    while text.len() + line.len() <= flotilla_protocol::config::limits::MAX_DOCUMENT_BYTES {
        text.push_str(line);
    }
    text
}

fn ssh_fleet(hosts: usize) -> String {
    let mut text = String::from("type: fleet\nssh_config:\n  user: ubuntu\n  hosts:\n");
    for i in 0..hosts {
        text.push_str(&format!(
            "    - hostname: 10.0.{}.{}\n      blocks: 8\n      internal_ip: 192.168.{}.{}\n",
            i / 256,
            i % 256,
            i / 256,
            i % 256
        ));
    }
    text
}

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

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("config_parse");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    let mut cases: Vec<(&str, String, bool)> = vec![
        ("env_80000_keys", env_keys(80_000), true),
        ("commands_1mib", commands_filling_the_limit(), true),
        ("ssh_fleet_4096_hosts", ssh_fleet(4096), true),
        ("billion_laughs", BILLION_LAUGHS.to_string(), false),
    ];
    match largest_corpus_file() {
        Some((path, text)) => {
            println!("corpus_largest: {path} ({} bytes)", text.len());
            cases.insert(0, ("corpus_largest", text, true));
        }
        None => println!("corpus_largest: skipped, shared/corpus/dstack-docs is missing"),
    }
    for (name, text, valid) in &cases {
        let parsed = parse_configuration(name, text);
        assert_eq!(parsed.is_ok(), *valid, "{name}: {:?}", parsed.err());
        println!("{name}: {} bytes", text.len());
        group.bench_function(*name, |b| {
            b.iter(|| parse_configuration(black_box(name), black_box(text)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

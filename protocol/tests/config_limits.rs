//! The parser's bounds: oversized, deeply nested, alias-bomb and huge-valued documents are
//! refused with located errors, on a worker-sized stack, and large legal documents parse in
//! linear time.

use flotilla_protocol::config::limits::{
    MAX_BLOCKS, MAX_DOCUMENT_BYTES, MAX_NESTING_DEPTH, MAX_NODES, MAX_REPLICAS,
    MAX_REPORTED_ERRORS, MAX_SSH_HOSTS,
};
use flotilla_protocol::config::{
    decode_utf8, parse_configuration, parse_configuration_async, parse_configuration_bytes,
    yaml_to_json, Blocks, ConfigError, ConfigErrors, Configuration,
};

/// Runs `f` on a thread with a 256 KiB stack, as small as any async worker's.
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let handle = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(f)
        .expect("spawn a test thread");
    match handle.join() {
        Ok(value) => value,
        Err(_) => panic!("the parser panicked on a small stack"),
    }
}

fn errors_of(text: &str) -> Vec<ConfigError> {
    match parse_configuration("t.yml", text) {
        Ok(config) => panic!("expected errors, parsed {config:?}"),
        Err(ConfigErrors(errors)) => errors,
    }
}

fn only_error(text: &str) -> ConfigError {
    let errors = errors_of(text);
    assert_eq!(errors.len(), 1, "{errors:?}");
    errors.into_iter().next().expect("one error")
}

fn parse_ok(text: &str) -> Configuration {
    parse_configuration("t.yml", text).unwrap_or_else(|errors| panic!("{errors}"))
}

// ---- document size ----

#[test]
fn a_file_over_the_size_limit_is_refused_naming_its_size() {
    let mut text = String::from("type: task\ncommands:\n");
    while text.len() <= MAX_DOCUMENT_BYTES {
        text.push_str("  - echo 0123456789012345678901234567890123456789\n");
    }
    let error = only_error(&text);
    assert!(
        error.message.contains(&text.len().to_string())
            && error.message.contains(&MAX_DOCUMENT_BYTES.to_string()),
        "{error}"
    );
    assert!(
        error.line > 1,
        "located where the limit is crossed: {error}"
    );
    assert!(yaml_to_json("t.yml", &text).is_err());
}

#[test]
fn a_file_just_under_the_size_limit_parses() {
    let mut text = String::from("type: task\ncommands:\n");
    let line = "  - echo 0123456789012345678901234567890123456789\n";
    while text.len() + line.len() <= MAX_DOCUMENT_BYTES {
        text.push_str(line);
    }
    let Configuration::Task(task) = parse_ok(&text) else {
        panic!("not a task")
    };
    assert!(task.commands.len() > 20_000);
}

// ---- nesting depth ----

/// `- - - ... x`: one list inside the other, `bytes / 2` deep, on one line.
fn nested_dashes(bytes: usize) -> String {
    format!("{}x\n", "- ".repeat(bytes / 2))
}

fn assert_refused_for_depth(text: String) {
    let errors = on_small_stack(move || parse_configuration("t.yml", &text).err());
    let errors = errors.expect("deep nesting is refused");
    let error = errors.iter().next().expect("an error");
    assert!(
        error.message.contains("nest") || error.message.contains("recursion limit"),
        "{error}"
    );
    assert!(error.line >= 1 && error.column >= 1);
}

#[test]
fn nested_block_lists_of_40_kb_and_200_kb_are_refused_on_a_small_stack() {
    for bytes in [40 * 1024, 200 * 1024] {
        let text = nested_dashes(bytes);
        assert!(text.len() >= bytes);
        let errors = on_small_stack(move || parse_configuration("t.yml", &text).err());
        let error = errors.expect("refused").0.remove(0);
        assert!(
            error
                .message
                .contains(&format!("deeper than {MAX_NESTING_DEPTH}")),
            "{error}"
        );
        // The 65th `- ` opens the list that is one too deep.
        assert_eq!((error.line, error.column), (1, 2 * MAX_NESTING_DEPTH + 1));
    }
}

#[test]
fn nested_flow_lists_and_mappings_are_refused_on_a_small_stack() {
    for bytes in [40 * 1024, 200 * 1024] {
        let depth = bytes / 2;
        assert_refused_for_depth(format!("{}x{}", "[".repeat(depth), "]".repeat(depth)));
        let depth = bytes / 4;
        assert_refused_for_depth(format!("{}x{}", "{a: ".repeat(depth), "}".repeat(depth)));
        assert_refused_for_depth(format!("{}x{}", "[".repeat(depth), "]".repeat(depth / 2)));
    }
}

#[test]
fn nested_block_mappings_are_refused_on_a_small_stack() {
    let mut text = String::new();
    for level in 0..200 {
        text.push_str(&" ".repeat(level));
        text.push_str("a:\n");
    }
    assert_refused_for_depth(text.clone());
    assert!(on_small_stack(move || yaml_to_json("t.yml", &text).is_err()));
}

#[test]
fn nesting_up_to_the_limit_is_accepted() {
    let depth = MAX_NESTING_DEPTH;
    let text = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
    let value = on_small_stack(move || yaml_to_json("t.yml", &text));
    let mut value = value.unwrap_or_else(|errors| panic!("{errors}"));
    for _ in 0..depth {
        value = value[0].clone();
    }
    assert_eq!(value, serde_json::json!(1));
}

// ---- alias expansion ----

const BILLION_LAUGHS: &str = r#"type: task
commands: [echo]
env:
  - &a "LOL=lol"
a: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
b: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
c: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
d: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
e: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
f: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
g: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
h: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
i: &j [*i, *i, *i, *i, *i, *i, *i, *i, *i]
"#;

#[test]
fn the_billion_laughs_is_refused_naming_the_anchor_or_alias_and_the_limit() {
    assert!(BILLION_LAUGHS.len() < 1024);
    let error = on_small_stack(|| only_error(BILLION_LAUGHS));
    assert!(error.message.contains("10000 copied nodes"), "{error}");
    // Anchoring a node copies it too: 9 + 81 + 729 aliased copies, and as many anchored, fit in
    // 10,000; the next anchored list (`&e`, 6,561 nodes) does not.
    assert_eq!((error.line, error.column), (8, 7), "{error}");
    assert!(error.message.contains("anchor `&e`"), "{error}");
    // With the anchored copy counted, an alias alone breaks the limit when the list is repeated.
    let text = format!(
        "type: task\ncommands: [echo]\na: &a [1, 2, 3, 4, 5, 6, 7, 8]\nb: [{}]\n",
        vec!["*a"; 2000].join(", ")
    );
    let error = only_error(&text);
    let line = text.lines().nth(error.line - 1).unwrap_or_default();
    assert!(line[error.column - 1..].starts_with("*a, "), "{error}");
    assert!(error.message.contains("alias `*a`"), "{error}");
    assert!(error.message.contains("10000 copied nodes"), "{error}");
    assert_eq!(error.line, 4, "{error}");
}

#[test]
fn a_long_anchored_string_repeated_by_short_aliases_is_refused() {
    let mut text = format!(
        "type: task\nimage: &s \"{}\"\ncommands: [",
        "x".repeat(200_000)
    );
    for _ in 0..200 {
        text.push_str("*s, ");
    }
    text.push_str("]\n");
    let error = only_error(&text);
    assert!(error.message.contains("bytes of copied text"), "{error}");
    assert_eq!(error.line, 3);
}

#[test]
fn nested_anchors_cannot_multiply_the_tree() {
    // Each anchor copies the tree below it: 64 nested anchors would copy it 64 times.
    let depth = 60;
    let mut text = String::new();
    for i in 0..depth {
        text.push_str(&format!("&a{i} ["));
    }
    text.push_str(&vec!["x"; 20_000].join(", "));
    text.push_str(&"]".repeat(depth));
    let error = on_small_stack(move || yaml_to_json("t.yml", &text).err());
    let error = error.expect("refused").0.remove(0);
    assert!(error.message.contains("an anchor expands"), "{error}");
}

#[test]
fn ordinary_anchors_and_merge_keys_still_work() {
    let text = "type: service\nport: 80\nimage: x\nprobes:\n  - &p {type: http, url: /a}\nreplicas: 1\nenv: &e {A: '1'}\nresources: &r {cpu: 2}\n";
    let Configuration::Service(service) = parse_ok(text) else {
        panic!("not a service")
    };
    assert_eq!(service.common.env.0.len(), 1);
}

// ---- linear time ----

#[test]
fn a_mapping_of_80_000_keys_parses_and_its_duplicates_are_found() {
    let mut text = String::from("type: task\ncommands: [env]\nenv:\n");
    for i in 0..80_000 {
        text.push_str(&format!("  V{i}: {}\n", i % 10));
    }
    assert!(text.len() < MAX_DOCUMENT_BYTES);
    let Configuration::Task(task) = parse_ok(&text) else {
        panic!("not a task")
    };
    assert_eq!(task.common.env.0.len(), 80_000);
    assert_eq!(task.common.env.0["V79999"].as_deref(), Some("9"));

    text.push_str("  V40000: again\n");
    let error = only_error(&text);
    assert!(error.message.contains("duplicate key `V40000`"), "{error}");
    assert_eq!(error.line, 80_004);
}

#[test]
fn long_lists_with_repeated_entries_are_checked_in_linear_time() {
    let ports = vec!["8000"; 100_000].join(", ");
    let errors = errors_of(&format!("type: task\ncommands: [x]\nports: [{ports}]\n"));
    // 99,999 duplicates: the first 100 are reported, and one line counts the rest.
    assert_eq!(errors.len(), MAX_REPORTED_ERRORS + 1);
    assert!(errors[..MAX_REPORTED_ERRORS]
        .iter()
        .all(|e| e.message.contains("listed twice") && e.line == 3));
    assert_eq!(errors[99].column, 9 + 6 * 100);
    let last = &errors[MAX_REPORTED_ERRORS];
    assert_eq!(
        last.message,
        "99899 more problems not shown (at most 100 are reported per file)"
    );
    assert_eq!((last.line, last.column), (3, 9 + 6 * 101));
}

#[test]
fn a_problem_on_every_line_is_reported_in_bounded_space() {
    let mut text = String::from("type: task\ncommands: [x]\n");
    for i in 0..50_000 {
        text.push_str(&format!("unknown{i}: 1\n"));
    }
    let errors = errors_of(&text);
    assert_eq!(errors.len(), MAX_REPORTED_ERRORS + 1);
    assert_eq!(errors[0].line, 3);
    assert_eq!(errors[99].line, 102);
    assert!(
        errors[100].message.starts_with("49900 more problems"),
        "{}",
        errors[100]
    );
    let keys: String = (0..50_000).map(|i| format!("[k{i}]: 1\n")).collect();
    let json = yaml_to_json("t.yml", &keys).expect_err("collection keys");
    assert_eq!(json.len(), MAX_REPORTED_ERRORS + 1);
}

#[test]
fn huge_unknown_words_are_reported_without_a_quadratic_suggestion() {
    let kind = "k".repeat(500_000);
    let error = only_error(&format!("type: {kind}\n"));
    assert!(
        error.message.starts_with("unknown configuration type"),
        "{}",
        &error.message[..80]
    );
    let key = "k".repeat(1000);
    let error = only_error(&format!("type: task\ncommands: [x]\n{key}: 1\n"));
    assert!(
        error.message.starts_with("unknown field"),
        "{}",
        &error.message[..80]
    );
}

// ---- UTF-8 ----

#[test]
fn a_byte_order_mark_is_skipped() {
    let text = "\u{feff}type: task\ncommands: [echo]\nnodes: x\n";
    let error = only_error(text);
    assert_eq!((error.line, error.column), (3, 8), "{error}");
    let bytes = text.as_bytes();
    let decoded = decode_utf8(bytes, "t.yml").expect("valid UTF-8");
    assert!(decoded.starts_with("type"));
    assert!(
        matches!(parse_ok(&text.replace("nodes: x", "nodes: 2")), Configuration::Task(t) if t.nodes == 2)
    );
}

#[test]
fn invalid_utf8_is_reported_with_its_line_and_column() {
    let bytes = b"type: task\ncommands:\n  - echo \xe9t\xe9\n";
    let error = decode_utf8(bytes, "t.yml").expect_err("invalid");
    assert_eq!((error.line, error.column), (3, 10), "{error}");
    assert!(error.to_string().starts_with("t.yml:3:10: "), "{error}");
    let errors = parse_configuration_bytes("t.yml", bytes).expect_err("invalid");
    assert_eq!(errors.0, vec![error]);
    let bom = b"\xef\xbb\xbftype: task\ncommands: [echo]\n";
    assert!(matches!(
        parse_configuration_bytes("t.yml", bom),
        Ok(Configuration::Task(_))
    ));
}

// ---- values that size allocations ----

fn over_limit(text: &str, path: &str, value: u64, limit: u64) {
    let errors = errors_of(text);
    let error = errors
        .iter()
        .find(|e| e.path == path)
        .unwrap_or_else(|| panic!("no error at {path}: {errors:?}"));
    assert!(
        error
            .message
            .starts_with(&format!("{value} is over the limit of {limit} ")),
        "{error}"
    );
}

#[test]
fn task_nodes_are_bounded() {
    let limit = u64::from(MAX_NODES);
    over_limit(
        "type: task\ncommands: [x]\nnodes: 100000000\n",
        "nodes",
        100_000_000,
        limit,
    );
    over_limit(
        "type: task\ncommands: [x]\nnodes: 4097\n",
        "nodes",
        4097,
        limit,
    );
    let task = parse_ok("type: task\ncommands: [x]\nnodes: 4096\n");
    assert!(matches!(task, Configuration::Task(t) if t.nodes == MAX_NODES));
    let groups =
        "type: task\ngroups:\n  - {nodes: 4000, commands: [x]}\n  - {nodes: 97, commands: [y]}\n";
    over_limit(groups, "groups", 4097, limit);
    let group = "type: task\ngroups:\n  - {nodes: 4294967295, commands: [x]}\n  - {nodes: 4294967295, commands: [y]}\n";
    over_limit(group, "groups[0].nodes", 4_294_967_295, limit);
}

#[test]
fn fleet_nodes_are_bounded() {
    let limit = u64::from(MAX_NODES);
    over_limit(
        "type: fleet\nnodes: 100000000\n",
        "nodes",
        100_000_000,
        limit,
    );
    over_limit("type: fleet\nnodes: 0..5000\n", "nodes", 5000, limit);
    over_limit(
        "type: fleet\nnodes: {min: 1, max: 4097}\n",
        "nodes",
        4097,
        limit,
    );
    over_limit("type: fleet\nnodes: {target: 5000}\n", "nodes", 5000, limit);
    assert!(matches!(
        parse_ok("type: fleet\nnodes: 0..4096\n"),
        Configuration::Fleet(_)
    ));
    assert!(
        matches!(parse_ok("type: fleet\nnodes: 2..\n"), Configuration::Fleet(f) if f.nodes.is_some_and(|n| n.max.is_none()))
    );
}

#[test]
fn replicas_are_bounded() {
    let limit = u64::from(MAX_REPLICAS);
    let service = "type: service\nport: 80\ncommands: [x]\n";
    over_limit(
        &format!("{service}replicas: 100000000\n"),
        "replicas",
        100_000_000,
        limit,
    );
    let scaled = format!("{service}scaling: {{metric: rps, target: 10}}\nreplicas: 0..5000\n");
    over_limit(&scaled, "replicas", 5000, limit);
    let groups = "type: service\nport: 80\nreplicas:\n  - {count: 3000, commands: [x]}\n  - {name: b, count: 2000, commands: [y]}\n";
    over_limit(groups, "replicas", 5000, limit);
    let group = "type: service\nport: 80\nreplicas:\n  - {count: 4097, commands: [x]}\n";
    over_limit(group, "replicas[0].count", 4097, limit);
    let ok = parse_ok(&format!("{service}replicas: 4096\n"));
    assert!(matches!(ok, Configuration::Service(s) if s.replicas.max == Some(MAX_REPLICAS)));
}

#[test]
fn blocks_are_bounded() {
    let limit = u64::from(MAX_BLOCKS);
    over_limit(
        "type: fleet\nnodes: 1\nblocks: 100000\n",
        "blocks",
        100_000,
        limit,
    );
    let host = "type: fleet\nssh_config:\n  hosts:\n    - {hostname: a, blocks: 1025}\n";
    over_limit(host, "ssh_config.hosts[0].blocks", 1025, limit);
    let ok = parse_ok("type: fleet\nnodes: 1\nblocks: 1024\n");
    assert!(matches!(ok, Configuration::Fleet(f) if f.blocks == Blocks::Count(MAX_BLOCKS)));
}

#[test]
fn ssh_hosts_are_bounded() {
    let hosts = |n: usize| {
        let list: Vec<String> = (0..n).map(|i| format!("h{i}")).collect();
        format!("type: fleet\nssh_config:\n  hosts: [{}]\n", list.join(", "))
    };
    let limit = MAX_SSH_HOSTS as u64;
    over_limit(
        &hosts(MAX_SSH_HOSTS + 1),
        "ssh_config.hosts",
        limit + 1,
        limit,
    );
    let ok = parse_ok(&hosts(MAX_SSH_HOSTS));
    assert!(
        matches!(ok, Configuration::Fleet(f) if f.ssh_config.as_ref().is_some_and(|s| s.hosts.len() == MAX_SSH_HOSTS))
    );
}

// ---- off the async workers ----

#[tokio::test(flavor = "current_thread")]
async fn parsing_off_the_runtime_gives_the_same_result() {
    let text = "type: task\ncommands: [x]\nnodes: 3\n".to_string();
    let parsed = parse_configuration_async("t.yml".to_string(), text.clone()).await;
    assert_eq!(parsed, parse_configuration("t.yml", &text));
    let bad = parse_configuration_async("t.yml".to_string(), BILLION_LAUGHS.to_string()).await;
    assert!(bad.is_err());
}

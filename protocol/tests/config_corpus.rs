//! Every real dstack configuration in the shared corpus parses (gateways give the one gateway
//! error; the few docs snippets that dstack itself rejects fail for their named reason).

use flotilla_protocol::config::{parse_configuration, Configuration};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const CORPUS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/corpus/dstack-docs"
);

/// A corpus file that dstack rejects too: the error it must give, and why.
struct Invalid {
    file: &'static str,
    error: &'static str,
    reason: &'static str,
}

const INVALID: &[Invalid] = &[
    Invalid {
        file: "086-service.yml",
        error: "086-service.yml:5:3: commands: expected a list, found \"...\"",
        reason:
            "a docs snippet eliding the commands: `commands: ...` is the string \"...\", not a list",
    },
    Invalid {
        file: "128-task.yml",
        error: "128-task.yml:1:1: commands: either `commands` or `image` must be set",
        reason: "a docs snippet showing only `volumes`: a task needs `commands` or `image`",
    },
    Invalid {
        file: "129-task.yml",
        error: "129-task.yml:1:1: commands: either `commands` or `image` must be set",
        reason: "a docs snippet showing only `volumes`: a task needs `commands` or `image`",
    },
];

fn corpus_files() -> Vec<PathBuf> {
    let dir = Path::new(CORPUS);
    assert!(
        dir.is_dir(),
        "the dstack corpus is missing: expected the folder {} (shared/corpus/dstack-docs beside the repository)",
        dir.display()
    );
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "yml"))
        .collect();
    files.sort();
    files
}

fn read(path: &Path) -> (String, String) {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_string();
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{name}: {e}"));
    (name, text)
}

#[test]
fn every_corpus_configuration_parses() {
    let files = corpus_files();
    assert!(
        files.len() >= 168,
        "expected the 168 corpus files, found {}",
        files.len()
    );
    let mut failures = Vec::new();
    let mut kinds = BTreeMap::<String, usize>::new();
    for path in &files {
        let (name, text) = read(path);
        let result = parse_configuration(&name, &text);
        let invalid = INVALID.iter().find(|invalid| invalid.file == name);
        match (result, invalid) {
            (Ok(config), None) => *kinds.entry(config.type_name().to_string()).or_default() += 1,
            (Ok(_), Some(invalid)) => failures.push(format!(
                "{name}: parsed, but is listed as invalid ({})",
                invalid.reason
            )),
            (Err(errors), Some(invalid)) => {
                if errors.to_string() != invalid.error {
                    failures.push(format!(
                        "{name} ({}): expected `{}`, got\n{errors}",
                        invalid.reason, invalid.error
                    ));
                }
            }
            (Err(errors), None) if text.contains("type: gateway") => {
                let messages: Vec<_> = errors.iter().map(|e| e.message.as_str()).collect();
                if messages != ["gateways are not supported yet"] {
                    failures.push(format!(
                        "{name}: expected only the gateway error, got\n{errors}"
                    ));
                }
                *kinds.entry("gateway".to_string()).or_default() += 1;
            }
            (Err(errors), None) => failures.push(errors.to_string()),
        }
    }
    assert!(
        failures.is_empty(),
        "{} corpus files failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    let expected = BTreeMap::from([
        ("dev-environment".to_string(), 31),
        ("fleet".to_string(), 23),
        ("gateway".to_string(), 5),
        ("service".to_string(), 35),
        ("task".to_string(), 68),
        ("volume".to_string(), 3),
    ]);
    assert_eq!(kinds, expected);
}

#[test]
fn corpus_run_configurations_round_trip_through_json() {
    for path in corpus_files() {
        let (name, text) = read(&path);
        let Ok(config) = parse_configuration(&name, &text) else {
            continue;
        };
        let back: Configuration = serde_json::from_value(config.to_normalized_json())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(back, config, "{name}");
        if let Some(run) = config.as_run() {
            let back = serde_json::from_value(run.to_normalized_json())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(run, back, "{name}");
            assert_eq!(run.type_name(), config.type_name());
        }
    }
}

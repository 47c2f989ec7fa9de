//! Every real dstack configuration in the shared corpus parses (gateways give the one gateway error).

use flotilla_protocol::config::parse_configuration;
use std::path::Path;

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/corpus/dstack-docs");

/// Corpus files that dstack itself rejects, with the reason.
const INVALID: &[(&str, &str)] = &[
    (
        "086-service.yml",
        "a docs snippet that elides the commands: `commands: ...` is a string, not a list",
    ),
    (
        "128-task.yml",
        "a docs snippet showing only `volumes`: a task needs `commands` or `image`",
    ),
    (
        "129-task.yml",
        "a docs snippet showing only `volumes`: a task needs `commands` or `image`",
    ),
];

fn corpus_files() -> Vec<std::path::PathBuf> {
    let dir = Path::new(CORPUS);
    assert!(
        dir.is_dir(),
        "the dstack corpus is missing: expected the folder {} (shared/corpus/dstack-docs next to the repository)",
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

#[test]
fn every_corpus_configuration_parses() {
    let files = corpus_files();
    assert!(files.len() >= 168, "expected the 168 corpus files, found {}", files.len());
    let mut failures = Vec::new();
    let mut kinds = std::collections::BTreeMap::<String, usize>::new();
    for path in &files {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let result = parse_configuration(&name, &text);
        let expected_invalid = INVALID.iter().find(|(file, _)| *file == name);
        match (result, expected_invalid) {
            (Ok(config), None) => *kinds.entry(config.type_name().to_string()).or_default() += 1,
            (Ok(_), Some((_, reason))) => {
                failures.push(format!("{name}: parsed, but is listed as invalid ({reason})"))
            }
            (Err(errors), _) if name.contains("gateway") => {
                let messages: Vec<_> = errors.iter().map(|e| e.message.as_str()).collect();
                if messages != ["gateways are not supported yet"] {
                    failures.push(format!("{name}: expected only the gateway error, got\n{errors}"));
                }
                *kinds.entry("gateway".to_string()).or_default() += 1;
            }
            (Err(_), Some(_)) => {}
            (Err(errors), None) => failures.push(errors.to_string()),
        }
    }
    assert!(failures.is_empty(), "{} corpus files failed:\n{}", failures.len(), failures.join("\n"));
    assert_eq!(kinds.get("gateway"), Some(&5), "{kinds:?}");
}

#[test]
fn dump() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/corpus/dstack-docs");
    for name in std::env::var("DUMP").unwrap_or_default().split(',') {
        let text = std::fs::read_to_string(format!("{dir}/{name}")).unwrap();
        match flotilla_protocol::config::parse_configuration(name, &text) {
            Ok(c) => println!("{name}\n{}", serde_json::to_string_pretty(&c.to_normalized_json()).unwrap()),
            Err(e) => println!("{e}"),
        }
    }
}

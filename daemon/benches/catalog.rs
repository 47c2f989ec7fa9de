//! Catalog benchmarks on a 100,000-offer catalog built by replicating the real rows of
//! `shared/catalogs` over synthetic regions (`<region>~s<k>`): figures from such data, not
//! from a real 100k-row provider catalog.
//!
//! - `catalog/load_100k`: reading the seven CSV files into a `Catalog` (goal < 150 ms);
//! - `catalog/query_24gb_max_price_3`: `--gpu 24GB..:1.. --max-price 3`, 50 shown, all
//!   counted (goal median < 2 ms); plus an unfiltered query and an H100 query;
//! - the memory the loaded catalog takes is printed (estimate from capacities, and the RSS
//!   growth while loading).
//!
//! Run: `cargo bench -p flotilla-daemon --bench catalog`.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use flotilla_daemon::catalog::{load, requirements_from_query, Catalog};
use flotilla_protocol::rpc::OfferQuery;
use std::path::{Path, PathBuf};
use std::time::Duration;

const TARGET_ROWS: usize = 100_000;

/// Writes the replicated catalog into `dir`; returns the number of rows written.
fn build_catalog_dir(dir: &Path) -> usize {
    let source = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/catalogs");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&source)
        .expect("shared/catalogs")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "csv"))
        .collect();
    files.sort();
    let mut tables: Vec<(String, csv::StringRecord, Vec<csv::StringRecord>)> = Vec::new();
    for path in &files {
        let mut reader = csv::Reader::from_path(path).expect("csv");
        let header = reader.headers().expect("header").clone();
        let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("row")).collect();
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        tables.push((name, header, rows));
    }
    let base: usize = tables.iter().map(|t| t.2.len()).sum();
    let copies = TARGET_ROWS.div_ceil(base);
    let mut written = 0;
    for (name, header, rows) in &tables {
        let location = header
            .iter()
            .position(|h| h == "location")
            .expect("location");
        let mut writer = csv::Writer::from_path(dir.join(name)).expect("write");
        writer.write_record(header).expect("header");
        'copies: for k in 0..copies {
            for row in rows {
                // The last file is cut short so the total is exactly the target.
                if written >= TARGET_ROWS {
                    break 'copies;
                }
                let mut fields: Vec<String> = row.iter().map(str::to_string).collect();
                fields[location] = format!("{}~s{k}", fields[location]);
                writer.write_record(&fields).expect("row");
                written += 1;
            }
        }
        writer.flush().expect("flush");
    }
    written
}

fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn load(dir: &Path) -> Catalog {
    load::load_dir(dir).expect("load")
}

fn bench_catalog(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let written = build_catalog_dir(tmp.path());

    let rss_before = rss_kib();
    let catalog = load(tmp.path());
    let rss_after = rss_kib();
    let stats = catalog.stats();
    assert_eq!(stats.rows, written);
    println!(
        "catalog: {} offers ({} distinct machines, {} skipped) from {} files",
        stats.rows,
        stats.shapes,
        stats.skipped,
        stats.sources.len()
    );
    println!(
        "catalog memory: {:.2} MiB estimated from capacities ({:.1} bytes/offer); RSS grew {} while loading",
        stats.memory_bytes as f64 / (1024.0 * 1024.0),
        stats.memory_bytes as f64 / stats.rows as f64,
        match (rss_before, rss_after) {
            (Some(b), Some(a)) => format!("{:.2} MiB", a.saturating_sub(b) as f64 / 1024.0),
            _ => "(unknown)".to_string(),
        }
    );

    let mut group = c.benchmark_group("catalog");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(8));
    group.bench_function("load_100k", |b| b.iter(|| black_box(load(tmp.path()))));
    group.finish();

    let filtered = requirements_from_query(&OfferQuery {
        gpu: Some("24GB..:1..".into()),
        max_price: Some(3.0),
        ..OfferQuery::default()
    })
    .expect("query");
    let (shown, total) = catalog.query(&filtered);
    println!(
        "--gpu 24GB..:1.. --max-price 3: {} shown of {total}, cheapest ${}",
        shown.len(),
        shown.first().map_or(0.0, |o| o.price)
    );
    let h100 = requirements_from_query(&OfferQuery {
        gpu: Some("H100:8".into()),
        ..OfferQuery::default()
    })
    .expect("query");
    let everything = requirements_from_query(&OfferQuery::default()).expect("query");

    let mut group = c.benchmark_group("catalog");
    group.sample_size(100);
    group.bench_function("query_24gb_max_price_3", |b| {
        b.iter(|| black_box(catalog.query(black_box(&filtered))))
    });
    group.bench_function("query_h100x8", |b| {
        b.iter(|| black_box(catalog.query(black_box(&h100))))
    });
    group.bench_function("query_default_all_counted", |b| {
        b.iter(|| black_box(catalog.query(black_box(&everything))))
    });
    group.finish();
}

criterion_group!(benches, bench_catalog);
criterion_main!(benches);

//! Loading gpuhunt CSV catalogs: the real files of `shared/catalogs`, and files with bad rows.

use flotilla_daemon::catalog::{load, CatalogService, Requirements};
use std::collections::BTreeMap;
use std::path::PathBuf;

fn shared_catalogs() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/catalogs")
}

const HEADER: &str = "instance_name,location,price,cpu,memory,gpu_count,gpu_name,gpu_memory,spot,disk_size,gpu_vendor,flags,cpu_arch,provider_data";

#[test]
fn real_catalogs_load_with_the_documented_row_counts() {
    let catalog = load::load_dir(&shared_catalogs()).expect("shared catalogs");
    let stats = catalog.stats();
    let per_backend: BTreeMap<&str, (usize, usize)> = stats
        .sources
        .iter()
        .map(|s| (s.backend.as_str(), (s.rows, s.skipped)))
        .collect();
    // The table of shared/catalogs/README.md.
    let expected = [
        ("aws", 114),
        ("hyperstack", 25),
        ("lambda", 408),
        ("nebius", 69),
        ("runpod", 640),
        ("vast", 67),
        ("verda", 55),
    ];
    for (backend, rows) in expected {
        assert_eq!(per_backend.get(backend), Some(&(rows, 0)), "{backend}");
    }
    assert_eq!(per_backend.len(), expected.len());
    assert_eq!(stats.rows, 1378);
    assert_eq!(catalog.len(), 1378);
    assert_eq!(stats.skipped, 0);
    assert!(catalog.warnings().is_empty(), "{:?}", catalog.warnings());
    assert!(stats.shapes > 0 && stats.shapes < stats.rows);
    assert!(stats.memory_bytes > 0);
    // Every offer is priced, named, and exact.
    for offer in catalog.offers() {
        assert!(!offer.instance_type.is_empty());
        assert_eq!(offer.resources.cpu.count.min, offer.resources.cpu.count.max);
        assert_eq!(offer.resources.gpu.count.min, offer.resources.gpu.count.max);
    }
}

#[test]
fn quoted_locations_with_commas_survive() {
    let catalog = load::load_dir(&shared_catalogs()).expect("shared catalogs");
    let vast_regions: Vec<String> = catalog
        .offers()
        .filter(|o| o.backend == "vast")
        .map(|o| o.region)
        .collect();
    assert!(
        vast_regions.iter().any(|r| r == "Texas, US, NA"),
        "{vast_regions:?}"
    );
}

#[test]
fn malformed_rows_are_skipped_counted_and_reported_with_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rows = [
        HEADER,
        "good-1,us-east,1.5,8,32.0,1,A10G,24.0,False,,nvidia,,x86,{}", // line 2
        "bad-price,us-east,cheap,8,32.0,1,A10G,24.0,False,,nvidia,,x86,{}", // line 3
        "short,us-east,1.0,8",                                         // line 4
        "bad-vendor,us-east,1.0,8,32.0,1,X1,24.0,False,,acme,,x86,{}", // line 5
        "bad-spot,us-east,1.0,8,32.0,1,A10G,24.0,maybe,,nvidia,,x86,{}", // line 6
        "no-gpu-name,us-east,1.0,8,32.0,2,,24.0,False,,nvidia,,x86,{}", // line 7
        "bad-arch,us-east,1.0,8,32.0,0,,,False,,,,sparc,{}",           // line 8
        "negative,us-east,-1.0,8,32.0,0,,,False,,,,x86,{}",            // line 9
        ",us-east,1.0,8,32.0,0,,,False,,,,x86,{}",                     // line 10: no instance name
        "good-2,eu-west,0.5,4,16.0,0,,,True,200,,,arm,\"{\"\"a\"\": 1}\"", // line 11
    ];
    std::fs::write(dir.path().join("acme.csv"), rows.join("\n")).expect("write");
    std::fs::write(dir.path().join("notes.txt"), "not a catalog").expect("write");
    std::fs::write(dir.path().join("junk.csv"), "a,b,c\n1,2,3\n").expect("write");

    let service = CatalogService::from_dir(dir.path()).expect("dir loads");
    let stats = service.stats();
    let acme = stats
        .sources
        .iter()
        .find(|s| s.backend == "acme")
        .expect("acme");
    assert_eq!((acme.rows, acme.skipped), (2, 8));
    assert_eq!(stats.rows, 2);
    let warnings = service.warnings();
    let acme_warning = warnings
        .iter()
        .find(|w| w.contains("acme.csv"))
        .expect("a warning names the file");
    assert!(
        acme_warning.contains("8 malformed rows skipped"),
        "{acme_warning}"
    );
    assert!(acme_warning.contains("line 3"), "{acme_warning}");
    assert!(acme_warning.contains("price"), "{acme_warning}");
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("junk.csv") && w.contains("not a gpuhunt catalog")),
        "{warnings:?}"
    );

    let (offers, total) = service.query(&Requirements {
        resources: flotilla_protocol::config::ResourcesSpec {
            memory: flotilla_protocol::config::Range::at_least(0.0),
            cpu: flotilla_protocol::config::CpuSpec {
                arch: None,
                count: flotilla_protocol::config::Range::at_least(0),
            },
            disk: flotilla_protocol::config::DiskSpec {
                size: flotilla_protocol::config::Range::new(None, None),
            },
            ..Default::default()
        },
        ..Requirements::default()
    });
    assert_eq!(total, 2);
    assert_eq!(offers[0].instance_type, "good-2");
    assert_eq!(offers[0].resources.disk.size.min, Some(200.0));
    assert_eq!(
        offers[0].resources.cpu.arch,
        Some(flotilla_protocol::config::CpuArch::Arm)
    );
    assert!(offers[0].spot);
    assert_eq!(offers[1].instance_type, "good-1");
}

#[test]
fn a_missing_directory_is_an_error_that_names_it() {
    let err = CatalogService::from_dir("/nonexistent/flotilla-catalogs").expect_err("missing dir");
    assert!(
        err.to_string().contains("/nonexistent/flotilla-catalogs"),
        "{err}"
    );
}

#[test]
fn an_empty_service_has_no_offers() {
    let service = CatalogService::empty();
    assert_eq!(service.query(&Requirements::default()), (Vec::new(), 0));
    assert!(service.warnings().is_empty());
    assert_eq!(service.stats().rows, 0);
}

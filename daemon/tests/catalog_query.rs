//! Queries on the real catalogs of `shared/catalogs`, checked against a plain scan of the CSV
//! files written here (a second, naive reading of the rules), plus ordering and grouping.

use flotilla_daemon::catalog::{
    group_offers, parse_group_by, requirements_from_query, sort_offers, CatalogService, GroupKey,
    Requirements,
};
use flotilla_protocol::config::SpotPolicy;
use flotilla_protocol::model::{Availability, Offer};
use flotilla_protocol::rpc::OfferQuery;
use std::path::PathBuf;

fn shared_catalogs() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/catalogs")
}

fn service() -> CatalogService {
    CatalogService::from_dir(shared_catalogs()).expect("shared catalogs")
}

/// One CSV row, read naively.
#[derive(Debug, Clone)]
struct Row {
    backend: String,
    instance: String,
    region: String,
    price: f64,
    cpus: u32,
    memory: f64,
    gpu_count: u32,
    gpu_name: String,
    gpu_memory: f64,
    spot: bool,
    vendor: String,
}

fn scan() -> Vec<Row> {
    let mut rows = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(shared_catalogs())
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "csv"))
        .collect();
    files.sort();
    for path in files {
        let backend = path
            .file_stem()
            .expect("stem")
            .to_string_lossy()
            .into_owned();
        let mut reader = csv::Reader::from_path(&path).expect("csv");
        let headers = reader.headers().expect("headers").clone();
        for record in reader.records() {
            let record = record.expect("record");
            let get = |name: &str| {
                let i = headers.iter().position(|h| h == name).expect(name);
                record.get(i).expect(name).to_string()
            };
            let num = |name: &str| get(name).parse::<f64>().unwrap_or(0.0);
            rows.push(Row {
                backend: backend.clone(),
                instance: get("instance_name"),
                region: get("location"),
                price: num("price"),
                cpus: num("cpu") as u32,
                memory: num("memory"),
                gpu_count: num("gpu_count") as u32,
                gpu_name: get("gpu_name"),
                gpu_memory: num("gpu_memory"),
                spot: get("spot") == "True",
                vendor: get("gpu_vendor"),
            });
        }
    }
    rows
}

/// The naive order: price, backend, instance type, region, on-demand first.
fn naive_sorted(mut rows: Vec<Row>) -> Vec<Row> {
    rows.sort_by(|a, b| {
        a.price
            .partial_cmp(&b.price)
            .expect("prices are numbers")
            .then_with(|| a.backend.cmp(&b.backend))
            .then_with(|| a.instance.cmp(&b.instance))
            .then_with(|| a.region.cmp(&b.region))
            .then(a.spot.cmp(&b.spot))
    });
    rows
}

fn default_resources_ok(r: &Row) -> bool {
    r.cpus >= 2 && r.memory >= 8.0
}

fn same(offer: &Offer, row: &Row) -> bool {
    offer.backend == row.backend
        && offer.instance_type == row.instance
        && offer.region == row.region
        && offer.price == row.price
        && offer.spot == row.spot
}

fn query(q: OfferQuery) -> (Vec<Offer>, usize) {
    let req = requirements_from_query(&q).expect("valid query");
    service().query(&req)
}

#[test]
fn cheapest_h100_matches_a_plain_scan() {
    let expected = naive_sorted(
        scan()
            .into_iter()
            .filter(|r| r.gpu_name.eq_ignore_ascii_case("h100") && r.gpu_count >= 1)
            .filter(default_resources_ok)
            .collect(),
    );
    let (offers, total) = query(OfferQuery {
        gpu: Some("h100".into()),
        ..OfferQuery::default()
    });
    assert_eq!(total, expected.len());
    assert_eq!(offers.len(), 50.min(expected.len()));
    for (offer, row) in offers.iter().zip(&expected) {
        assert!(same(offer, row), "{offer:?} vs {row:?}");
    }
    // The data as of this writing: Verda's spot 1xH100 in FIN-02 at $0.8015/h.
    let cheapest = &offers[0];
    assert_eq!(
        (
            cheapest.backend.as_str(),
            cheapest.instance_type.as_str(),
            cheapest.price,
            cheapest.spot
        ),
        ("verda", "1H100.80S.32V", 0.8015, true)
    );

    // On demand only: the first non-spot H100 row of the scan.
    let (on_demand, _) = query(OfferQuery {
        gpu: Some("H100".into()),
        spot_policy: Some("on-demand".into()),
        max_offers: Some(1),
        ..OfferQuery::default()
    });
    let first_on_demand = expected
        .iter()
        .find(|r| !r.spot)
        .expect("an on-demand H100");
    assert!(same(&on_demand[0], first_on_demand), "{:?}", on_demand[0]);
}

#[test]
fn filtered_query_24gb_and_max_price_3_matches_a_plain_scan() {
    let expected = naive_sorted(
        scan()
            .into_iter()
            .filter(|r| {
                r.gpu_count >= 1
                    && r.gpu_memory >= 24.0
                    && r.price <= 3.0
                    && (r.vendor.is_empty() || r.vendor == "nvidia")
            })
            .filter(default_resources_ok)
            .collect(),
    );
    assert!(expected.len() > 100, "the data has many such offers");
    let (offers, total) = query(OfferQuery {
        gpu: Some("24GB..:1..".into()),
        max_price: Some(3.0),
        max_offers: Some(10_000),
        ..OfferQuery::default()
    });
    assert_eq!(total, expected.len());
    assert_eq!(offers.len(), expected.len());
    for (offer, row) in offers.iter().zip(&expected) {
        assert!(same(offer, row), "{offer:?} vs {row:?}");
    }
    assert!(offers.iter().all(|o| o.price <= 3.0));
    // The limit cuts the list, not the total.
    let (first5, total5) = query(OfferQuery {
        gpu: Some("24GB..:1..".into()),
        max_price: Some(3.0),
        max_offers: Some(5),
        ..OfferQuery::default()
    });
    assert_eq!((first5.len(), total5), (5, expected.len()));
    assert_eq!(first5[..], offers[..5]);
}

#[test]
fn backend_region_and_spot_filters() {
    let rows = scan();
    let (offers, total) = query(OfferQuery {
        gpu: Some("A100:8".into()),
        backends: vec!["LAMBDA".into()],
        regions: vec!["us-east-1".into()],
        spot_policy: Some("on-demand".into()),
        max_offers: Some(1000),
        ..OfferQuery::default()
    });
    let expected = naive_sorted(
        rows.iter()
            .filter(|r| {
                r.backend == "lambda"
                    && r.region == "us-east-1"
                    && !r.spot
                    && r.gpu_name == "A100"
                    && r.gpu_count == 8
            })
            .cloned()
            .collect(),
    );
    assert_eq!(total, expected.len());
    assert_eq!(expected.len(), 2, "gpu_8x_a100 and gpu_8x_a100_80gb_sxm4");
    assert_eq!(offers.len(), 2);
    assert!(offers.iter().zip(&expected).all(|(o, r)| same(o, r)));

    let (spot, spot_total) = query(OfferQuery {
        spot_policy: Some("spot".into()),
        max_offers: Some(10_000),
        ..OfferQuery::default()
    });
    let expected_spot = rows
        .iter()
        .filter(|r| r.spot && default_resources_ok(r))
        .count();
    assert_eq!(spot_total, expected_spot);
    assert!(spot.iter().all(|o| o.spot));
}

#[test]
fn cpu_only_offers_have_no_gpus() {
    let rows = scan();
    let (offers, total) = query(OfferQuery {
        gpu: Some("0".into()),
        cpu: Some("arm:2..".into()),
        max_offers: Some(1000),
        ..OfferQuery::default()
    });
    let arm_cpu_rows: Vec<&Row> = rows
        .iter()
        .filter(|r| r.gpu_count == 0 && default_resources_ok(r))
        .collect();
    assert!(total > 0 && total < arm_cpu_rows.len());
    assert!(offers.iter().all(|o| o.resources.gpu.count.max == Some(0)));
    assert!(offers
        .iter()
        .all(|o| o.resources.cpu.arch == Some(flotilla_protocol::config::CpuArch::Arm)));
}

#[test]
fn instance_type_filter_and_results_stay_sorted() {
    let svc = service();
    let req = Requirements {
        instance_types: vec![
            "GPU-H100-SXM_1GPU-16VCPU-200GB".into(),
            "gpu_1x_h100_sxm5".into(),
        ],
        ..Requirements::default()
    };
    let (offers, total) = svc.query(&req);
    assert_eq!(offers.len(), total);
    let expected = scan()
        .iter()
        .filter(|r| {
            r.instance == "gpu-h100-sxm_1gpu-16vcpu-200gb" || r.instance == "gpu_1x_h100_sxm5"
        })
        .count();
    assert_eq!(total, expected);
    assert_eq!(expected, 19);
    let mut sorted = offers.clone();
    sort_offers(&mut sorted);
    assert_eq!(sorted, offers);
    let (all, _) = svc.query(&Requirements::default());
    let mut resorted = all.clone();
    resorted.reverse();
    sort_offers(&mut resorted);
    assert_eq!(resorted, all, "the catalog's order is the canonical order");
}

#[test]
fn merged_pool_and_catalog_offers_sort_with_unavailable_last() {
    let (mut offers, _) = query(OfferQuery {
        gpu: Some("A10G".into()),
        max_offers: Some(3),
        ..OfferQuery::default()
    });
    let mut pool = offers[0].clone();
    pool.backend = "ssh".into();
    pool.fleet = Some("my-fleet".into());
    pool.availability = Availability::Idle;
    pool.price = 0.0;
    let mut busy = offers[0].clone();
    busy.price = 0.0;
    busy.availability = Availability::Busy;
    offers.push(busy);
    offers.insert(1, pool);
    sort_offers(&mut offers);
    assert_eq!(offers[0].fleet.as_deref(), Some("my-fleet"));
    assert_eq!(
        offers.last().map(|o| o.availability),
        Some(Availability::Busy)
    );
}

#[test]
fn group_by_gpu_summarizes_every_match() {
    let rows = scan();
    let (offers, total) = query(OfferQuery {
        gpu: Some("H100".into()),
        group_by: vec!["gpu".into()],
        ..OfferQuery::default()
    });
    assert_eq!(offers.len(), total, "grouping queries have no limit");
    let groups = group_offers(&offers, &[GroupKey::Gpu]);
    let h100 = rows
        .iter()
        .filter(|r| r.gpu_name == "H100" && default_resources_ok(r));
    // One row per (name, memory per GPU): the H100s of the data come in a few memory sizes.
    let mut memories: Vec<f64> = h100.clone().map(|r| r.gpu_memory).collect();
    memories.sort_by(f64::total_cmp);
    memories.dedup();
    assert_eq!(groups.len(), memories.len());
    assert_eq!(groups.iter().map(|g| g.offers).sum::<usize>(), total);
    let g80 = groups
        .iter()
        .find(|g| g.gpu.starts_with("H100:80GB:"))
        .expect("an 80GB H100 group");
    let rows80: Vec<&Row> = h100.filter(|r| r.gpu_memory == 80.0).collect();
    let per_gpu = |r: &&Row| r.price / f64::from(r.gpu_count);
    let min = rows80.iter().map(per_gpu).fold(f64::INFINITY, f64::min);
    let max = rows80.iter().map(per_gpu).fold(0.0, f64::max);
    let cmin = rows80.iter().map(|r| r.gpu_count).min().expect("rows");
    let cmax = rows80.iter().map(|r| r.gpu_count).max().expect("rows");
    assert_eq!(g80.gpu, format!("H100:80GB:{cmin}..{cmax}"));
    assert_eq!(g80.price_per_gpu.min, Some(min));
    assert_eq!(g80.price_per_gpu.max, Some(max));
    let mut backends: Vec<String> = rows80.iter().map(|r| r.backend.clone()).collect();
    backends.sort();
    backends.dedup();
    assert_eq!(g80.backends, backends);
    assert_eq!(g80.spot, vec!["spot".to_string(), "on-demand".to_string()]);
    // Cheapest group first.
    assert!(groups
        .windows(2)
        .all(|w| w[0].price_per_gpu.min <= w[1].price_per_gpu.min));

    // By backend and count: one row per (memory, backend, count), each with one count.
    let by = parse_group_by(&["gpu,backend".into(), "count".into()]).expect("keys");
    let split = group_offers(&offers, &by);
    assert!(split.len() > groups.len());
    assert!(split
        .iter()
        .all(|g| g.backends.len() == 1 && g.count.min == g.count.max));
    assert_eq!(split.iter().map(|g| g.offers).sum::<usize>(), total);
}

#[test]
fn group_by_rules_and_cpu_offers() {
    assert!(parse_group_by(&["backend".into()]).is_err());
    assert!(parse_group_by(&["gpu".into(), "region".into()]).is_err());
    assert!(parse_group_by(&["gpu".into(), "zone".into()]).is_err());
    assert_eq!(parse_group_by(&[]), Ok(vec![]));
    let (cpu_offers, _) = query(OfferQuery {
        gpu: Some("0".into()),
        ..OfferQuery::default()
    });
    assert!(!cpu_offers.is_empty());
    assert!(group_offers(&cpu_offers, &[GroupKey::Gpu]).is_empty());
}

#[test]
fn spot_policy_auto_is_the_offer_default() {
    let req = requirements_from_query(&OfferQuery::default()).expect("default");
    assert_eq!(req.spot_policy, SpotPolicy::Auto);
    let (_, total) = service().query(&req);
    let expected = scan().iter().filter(|r| default_resources_ok(r)).count();
    assert_eq!(total, expected);
}

/// The machine an offer's exact spec describes.
fn machine_of(offer: &Offer) -> flotilla_protocol::model::InstanceResources {
    let r = &offer.resources;
    let gpu =
        r.gpu
            .name
            .as_ref()
            .and_then(|n| n.first())
            .map(|name| flotilla_protocol::model::Gpu {
                name: name.clone(),
                memory_gb: r.gpu.memory.and_then(|m| m.min).unwrap_or(0.0),
                vendor: r
                    .gpu
                    .vendor
                    .unwrap_or(flotilla_protocol::config::GpuVendor::Nvidia),
            });
    flotilla_protocol::model::InstanceResources {
        cpus: r.cpu.count.min.unwrap_or(0),
        cpu_arch: r
            .cpu
            .arch
            .unwrap_or(flotilla_protocol::config::CpuArch::X86),
        memory_gb: r.memory.min.unwrap_or(0.0),
        disk_gb: r.disk.size.min,
        gpus: gpu
            .map(|g| vec![g; r.gpu.count.min.unwrap_or(0) as usize])
            .unwrap_or_default(),
    }
}

fn shared_service() -> &'static CatalogService {
    static SERVICE: std::sync::OnceLock<CatalogService> = std::sync::OnceLock::new();
    SERVICE.get_or_init(service)
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(96))]

    /// The scan (shapes matched once, early stop at max_price, limit) returns exactly the
    /// first offers of a plain filter of every offer, and counts them all.
    #[test]
    fn query_is_a_filter_of_every_offer(
        min_count in 0u32..3,
        extra in proptest::option::of(0u32..8),
        min_gpu_memory in proptest::option::of(1u32..100),
        min_cpus in 0u32..64,
        max_price in proptest::option::of(0.05f64..30.0),
        policy in 0usize..3,
        backend in proptest::option::of(0usize..7),
        limit in proptest::option::of(0usize..80),
    ) {
        use flotilla_daemon::catalog::resources_match;
        use flotilla_protocol::config::Range;
        let mut req = Requirements::default();
        req.resources.gpu.count = Range::new(Some(min_count), extra.map(|e| min_count + e));
        req.resources.gpu.memory = min_gpu_memory.map(|m| Range::at_least(f64::from(m)));
        req.resources.cpu.count = Range::at_least(min_cpus);
        req.max_price = max_price;
        req.spot_policy = [SpotPolicy::Auto, SpotPolicy::Spot, SpotPolicy::OnDemand][policy];
        let names = ["aws", "hyperstack", "lambda", "nebius", "runpod", "vast", "verda"];
        req.backends = backend.map(|b| vec![names[b].to_uppercase()]).unwrap_or_default();
        req.limit = limit;
        let svc = shared_service();
        let mut expected: Vec<Offer> = svc
            .snapshot()
            .offers()
            .filter(|o| req.accepts_terms(o) && resources_match(&req.resources, &machine_of(o)))
            .collect();
        sort_offers(&mut expected);
        let (offers, total) = svc.query(&req);
        proptest::prop_assert_eq!(total, expected.len());
        expected.truncate(limit.unwrap_or(usize::MAX));
        proptest::prop_assert_eq!(offers, expected);
    }
}

//! Requirement matching (SPEC section 3) as tables: each case is a requirement in the CLI's
//! grammar, a machine, and whether they match.

use flotilla_daemon::catalog::{exact_spec, resources_match, spot_allowed};
use flotilla_protocol::config::{CpuArch, GpuSpec, GpuVendor, Range, ResourcesSpec, SpotPolicy};
use flotilla_protocol::model::{Gpu, InstanceResources};

/// A requirement from CLI-style strings; absent parts keep the defaults of SPEC section 2.
fn req(
    gpu: Option<&str>,
    cpu: Option<&str>,
    memory: Option<&str>,
    disk: Option<&str>,
) -> ResourcesSpec {
    let mut spec = ResourcesSpec::default();
    if let Some(g) = gpu {
        spec.gpu = ResourcesSpec::parse_gpu(g).unwrap_or_else(|e| panic!("gpu {g}: {e}"));
    }
    if let Some(c) = cpu {
        spec.cpu = ResourcesSpec::parse_cpu(c).unwrap_or_else(|e| panic!("cpu {c}: {e}"));
    }
    if let Some(m) = memory {
        spec.memory =
            ResourcesSpec::parse_size_range(m).unwrap_or_else(|e| panic!("memory {m}: {e}"));
    }
    if let Some(d) = disk {
        spec.disk.size =
            ResourcesSpec::parse_size_range(d).unwrap_or_else(|e| panic!("disk {d}: {e}"));
    }
    spec
}

fn gpu(g: &str) -> ResourcesSpec {
    req(Some(g), None, None, None)
}

/// `cpus`, memory GB, disk GB (if stated), and `count` GPUs `name` of `gpu_mem` GB each.
fn machine(
    cpus: u32,
    memory: f64,
    disk: Option<f64>,
    count: usize,
    name: &str,
    gpu_mem: f64,
) -> InstanceResources {
    let vendor = GpuVendor::from_gpu_name(name).unwrap_or(GpuVendor::Nvidia);
    InstanceResources {
        cpus,
        cpu_arch: CpuArch::X86,
        memory_gb: memory,
        disk_gb: disk,
        gpus: (0..count)
            .map(|_| Gpu {
                name: name.to_string(),
                memory_gb: gpu_mem,
                vendor,
            })
            .collect(),
    }
}

fn cpu_box(cpus: u32, memory: f64) -> InstanceResources {
    machine(cpus, memory, None, 0, "", 0.0)
}

fn check(cases: &[(&str, ResourcesSpec, InstanceResources, bool)]) {
    let failures: Vec<String> = cases
        .iter()
        .filter(|(_, r, m, want)| resources_match(r, m) != *want)
        .map(|(name, _, m, want)| format!("{name}: expected {want} for {}", m.summary()))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn ranges_are_inclusive_at_both_ends() {
    let a100x = |n| machine(32, 256.0, None, n, "A100", 80.0);
    check(&[
        ("count at min", gpu("A100:2..4"), a100x(2), true),
        ("count at max", gpu("A100:2..4"), a100x(4), true),
        ("count below", gpu("A100:2..4"), a100x(1), false),
        ("count above", gpu("A100:2..4"), a100x(8), false),
        ("exact count", gpu("A100:8"), a100x(8), true),
        ("memory at min", gpu("80GB..:1"), a100x(1), true),
        ("memory at max", gpu("40GB..80GB:1"), a100x(1), true),
        ("memory above max", gpu("40GB..79GB:1"), a100x(1), false),
        (
            "cpu at min",
            req(None, Some("32.."), None, None),
            a100x(1),
            true,
        ),
        (
            "cpu at max",
            req(None, Some("..32"), None, None),
            a100x(1),
            true,
        ),
        (
            "cpu above max",
            req(None, Some("..31"), None, None),
            a100x(1),
            false,
        ),
        (
            "ram at min",
            req(None, None, Some("256GB.."), None),
            a100x(1),
            true,
        ),
        (
            "ram at max",
            req(None, None, Some("..256GB"), None),
            a100x(1),
            true,
        ),
        (
            "ram below min",
            req(None, None, Some("257GB.."), None),
            a100x(1),
            false,
        ),
        (
            "ram in MB",
            req(None, None, Some("262144MB"), None),
            a100x(1),
            true,
        ),
        (
            "ram in TB",
            req(None, None, Some("0.25TB"), None),
            a100x(1),
            true,
        ),
        (
            "default ram 8GB.. admits 8GB",
            ResourcesSpec::default(),
            cpu_box(2, 8.0),
            true,
        ),
        (
            "default ram 8GB.. refuses 4GB",
            ResourcesSpec::default(),
            cpu_box(2, 4.0),
            false,
        ),
        (
            "default cpu 2.. refuses 1",
            ResourcesSpec::default(),
            cpu_box(1, 16.0),
            false,
        ),
    ]);
}

#[test]
fn gpu_names_are_case_insensitive_and_listed() {
    let h100 = machine(16, 128.0, None, 1, "H100", 80.0);
    let a10g = machine(8, 32.0, None, 1, "A10G", 24.0);
    check(&[
        ("lower case", gpu("h100"), h100.clone(), true),
        ("upper case", gpu("H100"), h100.clone(), true),
        ("mixed list", gpu("a100,H100"), h100.clone(), true),
        ("not listed", gpu("A100"), h100.clone(), false),
        ("a10 is not a10g", gpu("A10"), a10g.clone(), false),
        ("a10g", gpu("a10g"), a10g, true),
        ("name and memory", gpu("H100:80GB"), h100.clone(), true),
        ("name, wrong memory", gpu("H100:94GB"), h100, false),
    ]);
}

#[test]
fn cpu_only_requirement_ignores_gpu_filters_and_takes_machines_without_gpus() {
    // `gpu: 0` means "no GPU": the count range 0..0 admits only GPU-less machines, and the
    // other GPU filters (names, memory, vendor) are ignored rather than failing them.
    let mut cpu_only_with_filters = gpu("0");
    cpu_only_with_filters.gpu = GpuSpec {
        vendor: Some(GpuVendor::Amd),
        name: Some(vec!["MI300X".into()]),
        memory: Some(Range::at_least(192.0)),
        total_memory: Some(Range::at_least(1000.0)),
        compute_capability: Some("9.0".into()),
        count: Range::exact(0),
    };
    assert!(cpu_only_with_filters.is_cpu_only());
    check(&[
        ("gpu: 0 on a CPU machine", gpu("0"), cpu_box(4, 16.0), true),
        (
            "gpu: 0 on a GPU machine",
            gpu("0"),
            machine(8, 32.0, None, 1, "T4", 16.0),
            false,
        ),
        (
            "gpu: 0 with filters",
            cpu_only_with_filters.clone(),
            cpu_box(4, 16.0),
            true,
        ),
        (
            "gpu: ..0 with filters",
            cpu_only_with_filters,
            machine(8, 32.0, None, 1, "T4", 16.0),
            false,
        ),
        (
            "default gpu 0.. takes CPU machines",
            ResourcesSpec::default(),
            cpu_box(4, 16.0),
            true,
        ),
        (
            "default gpu 0.. takes GPU machines",
            ResourcesSpec::default(),
            machine(8, 32.0, None, 1, "T4", 16.0),
            true,
        ),
        // Not CPU-only: a name filter with a count from 0 still needs that GPU (as gpuhunt).
        (
            "0..1 with a name refuses CPU machines",
            gpu("T4:0..1"),
            cpu_box(4, 16.0),
            false,
        ),
        (
            "0..1 with a name takes the GPU",
            gpu("T4:0..1"),
            machine(8, 32.0, None, 1, "T4", 16.0),
            true,
        ),
        (
            "memory filter refuses CPU machines",
            gpu("24GB..:0.."),
            cpu_box(4, 16.0),
            false,
        ),
    ]);
}

#[test]
fn disk_filter_applies_only_when_the_machine_states_a_disk() {
    let with_disk = |gb| machine(8, 32.0, Some(gb), 0, "", 0.0);
    check(&[
        (
            "unstated disk passes 500GB..",
            req(None, None, None, Some("500GB..")),
            cpu_box(8, 32.0),
            true,
        ),
        (
            "unstated disk passes the default",
            ResourcesSpec::default(),
            cpu_box(8, 32.0),
            true,
        ),
        (
            "stated 50GB fails the default 100GB..",
            ResourcesSpec::default(),
            with_disk(50.0),
            false,
        ),
        (
            "stated 100GB meets 100GB..",
            ResourcesSpec::default(),
            with_disk(100.0),
            true,
        ),
        (
            "stated 1TB meets ..1TB",
            req(None, None, None, Some("..1TB")),
            with_disk(1024.0),
            true,
        ),
        (
            "stated 2TB fails ..1TB",
            req(None, None, None, Some("..1TB")),
            with_disk(2048.0),
            false,
        ),
    ]);
}

#[test]
fn vendor_comes_from_names_and_filters() {
    let mi300x = machine(96, 1024.0, None, 8, "MI300X", 192.0);
    let h100 = machine(96, 1024.0, None, 8, "H100", 80.0);
    let mut names_without_vendor = gpu("MI300X:8");
    names_without_vendor.gpu.vendor = None; // a spec built by hand: the names still imply amd
    check(&[
        ("amd takes MI300X", gpu("amd:8"), mi300x.clone(), true),
        ("amd refuses H100", gpu("amd:8"), h100.clone(), false),
        ("MI300X implies amd", gpu("MI300X:8"), mi300x.clone(), true),
        (
            "hand-built MI300X spec",
            names_without_vendor,
            mi300x.clone(),
            true,
        ),
        ("a bare count implies nvidia", gpu("8"), h100.clone(), true),
        (
            "a bare count refuses amd (nvidia implied)",
            gpu("8"),
            mi300x.clone(),
            false,
        ),
        ("nvidia refuses amd", gpu("nvidia:8"), mi300x.clone(), false),
        (
            "mixed-vendor names take either",
            gpu("H100,MI300X:8"),
            mi300x,
            true,
        ),
        (
            "vendor refuses CPU machines",
            gpu("nvidia:0..8"),
            cpu_box(8, 32.0),
            false,
        ),
    ]);
    assert_eq!(
        ResourcesSpec::parse_gpu("MI300X")
            .ok()
            .and_then(|g| g.vendor),
        Some(GpuVendor::Amd)
    );
}

#[test]
fn total_memory_sums_all_gpus() {
    let with_total = |min: f64, max: Option<f64>| {
        let mut spec = gpu("1..");
        spec.gpu.total_memory = Some(Range::new(Some(min), max));
        spec
    };
    let a10gx4 = machine(48, 192.0, None, 4, "A10G", 24.0);
    check(&[
        (
            "96GB total at min",
            with_total(96.0, None),
            a10gx4.clone(),
            true,
        ),
        (
            "96GB total at max",
            with_total(24.0, Some(96.0)),
            a10gx4.clone(),
            true,
        ),
        (
            "97GB.. refused",
            with_total(97.0, None),
            a10gx4.clone(),
            false,
        ),
        ("..95GB refused", with_total(1.0, Some(95.0)), a10gx4, false),
    ]);
}

#[test]
fn cpu_arch_and_compute_capability() {
    let mut arm = machine(72, 480.0, None, 1, "GH200", 96.0);
    arm.cpu_arch = CpuArch::Arm;
    let mut cc80 = gpu("1..");
    cc80.gpu.compute_capability = Some("8.0".into());
    check(&[
        (
            "arm takes arm",
            req(None, Some("arm:2.."), None, None),
            arm.clone(),
            true,
        ),
        (
            "x86 refuses arm",
            req(None, Some("x86:2.."), None, None),
            arm.clone(),
            false,
        ),
        (
            "no arch takes arm",
            ResourcesSpec::default(),
            arm.clone(),
            true,
        ),
        ("cc 8.0 takes GH200 (9.0)", cc80.clone(), arm, true),
        (
            "cc 8.0 takes A100 (8.0)",
            cc80.clone(),
            machine(8, 64.0, None, 1, "A100", 40.0),
            true,
        ),
        (
            "cc 8.0 refuses T4 (7.5)",
            cc80.clone(),
            machine(8, 64.0, None, 1, "T4", 16.0),
            false,
        ),
        (
            "cc 8.0 refuses unknown names",
            cc80,
            machine(8, 64.0, None, 1, "Mystery9000", 16.0),
            false,
        ),
    ]);
}

#[test]
fn spot_policies() {
    let cases = [
        (SpotPolicy::Spot, true, true),
        (SpotPolicy::Spot, false, false),
        (SpotPolicy::OnDemand, true, false),
        (SpotPolicy::OnDemand, false, true),
        (SpotPolicy::Auto, true, true),
        (SpotPolicy::Auto, false, true),
    ];
    for (policy, spot, want) in cases {
        assert_eq!(spot_allowed(policy, spot), want, "{policy:?} spot={spot}");
    }
}

#[test]
fn an_offer_spec_is_exact_and_matches_its_machine() {
    let m = machine(16, 128.0, Some(200.0), 2, "L40S", 48.0);
    let spec = exact_spec(&m);
    assert_eq!(spec.cpu.count, Range::exact(16));
    assert_eq!(spec.memory, Range::exact(128.0));
    assert_eq!(spec.disk.size, Range::exact(200.0));
    assert_eq!(spec.gpu.count, Range::exact(2));
    assert_eq!(spec.gpu.memory, Some(Range::exact(48.0)));
    assert_eq!(spec.gpu.total_memory, Some(Range::exact(96.0)));
    assert_eq!(spec.gpu.vendor, Some(GpuVendor::Nvidia));
    assert!(resources_match(&spec, &m));
    let mut bigger = m.clone();
    bigger.cpus = 32;
    assert!(!resources_match(&spec, &bigger));
}

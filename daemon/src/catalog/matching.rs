//! Requirement matching: does a machine satisfy a `resources` spec (SPEC section 3)? The one
//! home of these rules; the catalog's queries and the scheduler's pool offers both use it.
//!
//! The rules, as gpuhunt and dstack apply them:
//! - every range is inclusive at both ends; an absent bound admits everything on its side;
//! - `cpu`: the architecture when given, and the count; `memory`: the machine's memory;
//! - `disk`: only when the machine states a disk size (catalogs often leave it out);
//! - `gpu`: the count range always applies. A CPU-only requirement (`gpu: 0`, count max 0)
//!   ignores every other GPU filter, so it admits exactly the machines without GPUs (a job that
//!   asked for no GPU does not take a GPU machine). Otherwise the GPU filters apply to every GPU
//!   of the machine: the vendor, the names (case-insensitive), the memory per GPU, the total
//!   memory of all GPUs, the minimum compute capability (NVIDIA GPUs of known names). A machine
//!   without GPUs has no vendor and no name and 0 GB of GPU memory, so it fails a name, vendor or
//!   positive memory filter even when the count range starts at 0 (as in gpuhunt);
//! - the vendor is the spec's, or the one its names imply (`MI300X` -> amd) when the parser left
//!   it out; the default spec (`gpu: 0..`, no names) has none and admits any machine.

use flotilla_protocol::config::{
    CpuSpec, DiskSpec, GpuSpec, GpuVendor, Range, ResourcesSpec, SpotPolicy,
};
use flotilla_protocol::model::{Gpu, InstanceResources};

/// Whether `res` satisfies every part of `req`.
pub fn resources_match(req: &ResourcesSpec, res: &InstanceResources) -> bool {
    cpu_matches(&req.cpu, res)
        && in_size_range(&req.memory, res.memory_gb)
        && res
            .disk_gb
            .is_none_or(|disk| in_size_range(&req.disk.size, disk))
        && gpus_match(&req.gpu, &res.gpus)
}

/// Whether an offer's spot flag is allowed by the policy: `auto` admits both.
pub fn spot_allowed(policy: SpotPolicy, spot: bool) -> bool {
    match policy {
        SpotPolicy::Spot => spot,
        SpotPolicy::OnDemand => !spot,
        SpotPolicy::Auto => true,
    }
}

/// The exact shape of a machine as a spec (every range `min == max`): the normalized
/// `resources` of an offer. Without a stated disk, the disk range is unbounded.
pub fn exact_spec(res: &InstanceResources) -> ResourcesSpec {
    let first = res.gpus.first();
    let mut names: Vec<String> = Vec::new();
    for gpu in &res.gpus {
        if !names.iter().any(|n| n == &gpu.name) {
            names.push(gpu.name.clone());
        }
    }
    let total: f64 = res.gpus.iter().map(|g| g.memory_gb).sum();
    ResourcesSpec {
        cpu: CpuSpec {
            arch: Some(res.cpu_arch),
            count: Range::exact(res.cpus),
        },
        memory: Range::exact(res.memory_gb),
        disk: DiskSpec {
            size: match res.disk_gb {
                Some(d) => Range::exact(d),
                None => Range::new(None, None),
            },
        },
        shm_size: None,
        gpu: GpuSpec {
            vendor: first.map(|g| g.vendor),
            name: (!names.is_empty()).then_some(names),
            count: Range::exact(res.gpus.len() as u32),
            memory: first.map(|g| Range::exact(g.memory_gb)),
            total_memory: first.map(|_| Range::exact(total)),
            compute_capability: None,
        },
    }
}

/// Float comparisons forgive representation noise (`0.1 + 0.2`), nothing more.
const EPSILON: f64 = 1e-9;

fn in_size_range(range: &Range<f64>, value: f64) -> bool {
    range.min.is_none_or(|min| value >= min - EPSILON)
        && range.max.is_none_or(|max| value <= max + EPSILON)
}

fn cpu_matches(cpu: &CpuSpec, res: &InstanceResources) -> bool {
    cpu.arch.is_none_or(|arch| arch == res.cpu_arch) && cpu.count.contains(res.cpus)
}

/// Whether the GPU filters other than the count apply (not a CPU-only requirement).
fn gpu_filters_apply(spec: &GpuSpec) -> bool {
    spec.count.max != Some(0)
}

fn gpus_match(spec: &GpuSpec, gpus: &[Gpu]) -> bool {
    if !spec.count.contains(gpus.len() as u32) {
        return false;
    }
    if !gpu_filters_apply(spec) {
        return true;
    }
    if let Some(vendor) = spec.vendor.or_else(|| vendor_of_names(spec)) {
        if gpus.is_empty() || gpus.iter().any(|g| g.vendor != vendor) {
            return false;
        }
    }
    if let Some(names) = &spec.name {
        if gpus.is_empty() || !gpus.iter().all(|g| name_listed(names, &g.name)) {
            return false;
        }
    }
    if let Some(memory) = &spec.memory {
        let fits = if gpus.is_empty() {
            in_size_range(memory, 0.0)
        } else {
            gpus.iter().all(|g| in_size_range(memory, g.memory_gb))
        };
        if !fits {
            return false;
        }
    }
    if let Some(total) = &spec.total_memory {
        if !in_size_range(total, gpus.iter().map(|g| g.memory_gb).sum()) {
            return false;
        }
    }
    if let Some(min_cc) = spec.compute_capability.as_deref() {
        let Some(min_cc) = parse_compute_capability(min_cc) else {
            return false;
        };
        let meets = |g: &Gpu| {
            g.vendor == GpuVendor::Nvidia
                && compute_capability(&g.name).is_some_and(|cc| cc >= min_cc)
        };
        if gpus.is_empty() || !gpus.iter().all(meets) {
            return false;
        }
    }
    true
}

/// Case-insensitive membership of a GPU name in a spec's list.
fn name_listed(names: &[String], name: &str) -> bool {
    names.iter().any(|n| n.trim().eq_ignore_ascii_case(name))
}

/// The one vendor all the spec's names belong to, for specs built without the parser (which
/// fills the vendor itself).
fn vendor_of_names(spec: &GpuSpec) -> Option<GpuVendor> {
    let names = spec.name.as_ref()?;
    let mut vendors = names.iter().map(|n| GpuVendor::from_gpu_name(n));
    let first = vendors.next().flatten()?;
    vendors.all(|v| v == Some(first)).then_some(first)
}

/// `8.0` -> (8, 0).
fn parse_compute_capability(text: &str) -> Option<(u32, u32)> {
    let (major, minor) = text.trim().split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// The CUDA compute capability of an NVIDIA GPU by its catalog short name (case-insensitive).
pub fn compute_capability(name: &str) -> Option<(u32, u32)> {
    let lower = name.to_ascii_lowercase();
    let name = lower.as_str();
    let exact: &[(&[&str], (u32, u32))] = &[
        (&["k80"], (3, 7)),
        (&["m60"], (5, 2)),
        (&["p100"], (6, 0)),
        (&["p4", "p40"], (6, 1)),
        (&["v100"], (7, 0)),
        (&["t4", "rtx6000", "rtx8000", "rtx5000", "rtx4000"], (7, 5)),
        (&["a100", "a800", "a30"], (8, 0)),
        (
            &[
                "a2", "a10", "a10g", "a16", "a40", "a4000", "a4500", "a5000", "a6000",
            ],
            (8, 6),
        ),
        (
            &[
                "l4",
                "l20",
                "l40",
                "l40s",
                "rtx2000ada",
                "rtx4000ada",
                "rtx4500ada",
                "rtx5000ada",
                "rtx6000ada",
            ],
            (8, 9),
        ),
        (&["h100", "h100nvl", "h200", "h800", "h20", "gh200"], (9, 0)),
        (&["b100", "b200", "gb200"], (10, 0)),
        (&["b300", "gb300"], (10, 3)),
    ];
    if let Some((_, cc)) = exact.iter().find(|(names, _)| names.contains(&name)) {
        return Some(*cc);
    }
    // GeForce RTX by series: 20xx Turing, 30xx Ampere, 40xx Ada, 50xx Blackwell.
    let series = name.strip_prefix("rtx")?;
    match series.as_bytes().first()? {
        b'2' => Some((7, 5)),
        b'3' => Some((8, 6)),
        b'4' => Some((8, 9)),
        b'5' => Some((12, 0)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_protocol::config::CpuArch;

    fn machine(cpus: u32, memory: f64, gpus: &[(&str, f64, GpuVendor)]) -> InstanceResources {
        InstanceResources {
            cpus,
            cpu_arch: CpuArch::X86,
            memory_gb: memory,
            disk_gb: None,
            gpus: gpus
                .iter()
                .map(|&(name, memory_gb, vendor)| Gpu {
                    name: name.into(),
                    memory_gb,
                    vendor,
                })
                .collect(),
        }
    }

    #[test]
    fn exact_spec_matches_its_own_machine() {
        let m = machine(16, 128.0, &[("H100", 80.0, GpuVendor::Nvidia); 2]);
        let spec = exact_spec(&m);
        assert_eq!(spec.gpu.total_memory, Some(Range::exact(160.0)));
        assert_eq!(spec.gpu.name, Some(vec!["H100".to_string()]));
        assert!(resources_match(&spec, &m));
        let cpu = machine(2, 4.0, &[]);
        assert!(resources_match(&exact_spec(&cpu), &cpu));
        assert!(!resources_match(&exact_spec(&cpu), &m));
    }

    #[test]
    fn compute_capabilities_of_known_names() {
        assert_eq!(compute_capability("H100"), Some((9, 0)));
        assert_eq!(compute_capability("a10g"), Some((8, 6)));
        assert_eq!(compute_capability("RTX4090"), Some((8, 9)));
        assert_eq!(compute_capability("RTX3060Ti"), Some((8, 6)));
        assert_eq!(compute_capability("MI300X"), None);
    }
}

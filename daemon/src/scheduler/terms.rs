//! How a run's profile and a fleet's profile combine (SPEC section 5, step 3): lists intersect
//! (`backends`, `regions`, `instance_types`), the lower `max_price` and `idle_duration` win,
//! the spot policies must agree (`auto` gives way to the other), and the run's `resources`
//! meet the fleet's. Also which pool instances a run's terms admit.

use super::{FleetView, InstanceSlot, PendingJob};
use crate::catalog::matching::spot_allowed;
use crate::catalog::query::Requirements;
use flotilla_protocol::config::{
    Blocks, CpuSpec, CreationPolicy, GpuSpec, HostNeed, JobEnvironment, Range, ResourcesSpec,
    RunCommon, SpotPolicy,
};

/// The run's profile fields that steer placement, besides `fleets` and `max_price` (which
/// [`PendingJob`] carries itself).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct JobTerms {
    /// `reuse`: only existing instances, never a new one.
    pub creation_policy: CreationPolicy,
    pub spot_policy: SpotPolicy,
    /// Allowed backends, regions and instance types (case-insensitive); `None` = any.
    pub backends: Option<Vec<String>>,
    pub regions: Option<Vec<String>>,
    pub instance_types: Option<Vec<String>>,
    /// Seconds an instance the run creates may stay idle; `None` = forever.
    pub idle_duration: Option<u64>,
    /// What the host must run for the job's environment (Docker for a container).
    pub host_need: HostNeed,
}

impl JobTerms {
    /// The terms of a run's configuration.
    pub fn from_run(common: &RunCommon) -> Self {
        JobTerms {
            creation_policy: common.policy.creation_policy,
            spot_policy: common.profile.spot_policy,
            backends: common.profile.backends.clone(),
            regions: common.profile.regions.clone(),
            instance_types: common.profile.instance_types.clone(),
            idle_duration: common.profile.idle_duration,
            host_need: JobEnvironment::of(common).needs(),
        }
    }
}

/// What the backend offers for a new instance of `fleet` that would run `job` must satisfy,
/// or `None` when the fleet cannot create one for it: a fleet of existing hosts, a fleet being
/// deleted, `creation_policy: reuse`, lists that do not intersect, spot policies that
/// disagree, or resources that cannot meet.
///
/// For a fleet whose machines are split into blocks, the request describes the whole
/// machine (the fleet's `resources`, narrowed by the run's GPU kind); the caller then checks
/// that a share of each offer fits the job. Otherwise the run's and the fleet's resources
/// intersect, and `limit` is [`super::MAX_PROVISION_OFFERS`].
pub fn backend_requirements(job: &PendingJob, fleet: &FleetView) -> Option<Requirements> {
    let config = fleet.config.as_ref()?;
    if fleet.is_host_fleet()
        || fleet.terminating
        || job.terms.creation_policy == CreationPolicy::Reuse
    {
        return None;
    }
    let shared = config.blocks != Blocks::Count(1);
    let resources = if shared {
        narrow_gpu_kind(&config.resources, &job.requirements)?
    } else {
        intersect_resources(&job.requirements, &config.resources)?
    };
    Some(Requirements {
        resources,
        spot_policy: combine_spot(job.terms.spot_policy, config.profile.spot_policy)?,
        max_price: lower(job.max_price, config.profile.max_price),
        backends: intersect_lists(&job.terms.backends, &config.profile.backends)?,
        regions: intersect_lists(&job.terms.regions, &config.profile.regions)?,
        instance_types: intersect_lists(&job.terms.instance_types, &config.profile.instance_types)?,
        limit: (!shared).then_some(super::MAX_PROVISION_OFFERS),
    })
}

/// The idle limit of a new instance: the lower of the run's and the fleet's.
pub(crate) fn new_instance_idle_duration(job: &PendingJob, fleet: &FleetView) -> Option<u64> {
    let fleet_idle = fleet.config.as_ref().and_then(|c| c.profile.idle_duration);
    lower(job.terms.idle_duration, fleet_idle)
}

/// Whether the run's terms admit an existing instance: spot policy, backends, regions.
/// Whether the host runs what the job's environment needs (Docker, uv).
pub(crate) fn host_software_fits(job: &PendingJob, inst: &InstanceSlot) -> bool {
    job.terms
        .host_need
        .met(inst.software.docker, inst.software.uv)
}

pub(crate) fn pool_instance_allowed(job: &PendingJob, inst: &InstanceSlot) -> bool {
    spot_allowed(job.terms.spot_policy, inst.spot)
        && listed(&job.terms.backends, &inst.backend)
        && listed(&job.terms.regions, &inst.region)
}

fn listed(list: &Option<Vec<String>>, value: &str) -> bool {
    list.as_ref()
        .is_none_or(|l| l.iter().any(|v| v.eq_ignore_ascii_case(value)))
}

/// The lower of two limits where `None` is no limit.
pub(crate) fn lower<T: PartialOrd>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if b < a { b } else { a }),
        (a, None) => a,
        (None, b) => b,
    }
}

/// `auto` gives way to the other policy; `spot` and `on-demand` do not meet.
pub(crate) fn combine_spot(run: SpotPolicy, fleet: SpotPolicy) -> Option<SpotPolicy> {
    match (run, fleet) {
        (SpotPolicy::Auto, other) | (other, SpotPolicy::Auto) => Some(other),
        (a, b) if a == b => Some(a),
        _ => None,
    }
}

/// Both lists' common entries (case-insensitive, in the run's order), as the catalog takes
/// them: `Some(vec![])` = any (neither restricts); `None` = nothing is in both.
fn intersect_lists(run: &Option<Vec<String>>, fleet: &Option<Vec<String>>) -> Option<Vec<String>> {
    match (run, fleet) {
        (None, None) => Some(Vec::new()),
        (Some(l), None) | (None, Some(l)) => (!l.is_empty()).then(|| l.clone()),
        (Some(a), Some(b)) => {
            let common: Vec<String> = a
                .iter()
                .filter(|x| b.iter().any(|y| y.eq_ignore_ascii_case(x)))
                .cloned()
                .collect();
            (!common.is_empty()).then_some(common)
        }
    }
}

fn intersect_range<T: PartialOrd + Copy>(a: &Range<T>, b: &Range<T>) -> Option<Range<T>> {
    let min = match (a.min, b.min) {
        (Some(x), Some(y)) => Some(if y > x { y } else { x }),
        (x, None) => x,
        (None, y) => y,
    };
    let max = lower(a.max, b.max);
    match (min, max) {
        (Some(lo), Some(hi)) if lo > hi => None,
        _ => Some(Range { min, max }),
    }
}

fn intersect_optional_range(
    a: &Option<Range<f64>>,
    b: &Option<Range<f64>>,
) -> Option<Option<Range<f64>>> {
    match (a, b) {
        (Some(a), Some(b)) => intersect_range(a, b).map(Some),
        (Some(r), None) | (None, Some(r)) => Some(Some(*r)),
        (None, None) => Some(None),
    }
}

fn same_or_either<T: PartialEq + Copy>(a: Option<T>, b: Option<T>) -> Option<Option<T>> {
    match (a, b) {
        (Some(x), Some(y)) if x != y => None,
        (x, y) => Some(x.or(y)),
    }
}

fn intersect_names(
    a: &Option<Vec<String>>,
    b: &Option<Vec<String>>,
) -> Option<Option<Vec<String>>> {
    match (a, b) {
        (Some(a), Some(b)) => {
            let common: Vec<String> = a
                .iter()
                .filter(|x| b.iter().any(|y| y.trim().eq_ignore_ascii_case(x.trim())))
                .cloned()
                .collect();
            (!common.is_empty()).then_some(Some(common))
        }
        (Some(l), None) | (None, Some(l)) => Some(Some(l.clone())),
        (None, None) => Some(None),
    }
}

/// The higher of two minimum compute capabilities (`8.0` < `9.0`).
fn higher_capability(a: &Option<String>, b: &Option<String>) -> Option<String> {
    let parse = |s: &str| {
        let (major, minor) = s.trim().split_once('.')?;
        Some((major.parse::<u32>().ok()?, minor.parse::<u32>().ok()?))
    };
    match (a, b) {
        (Some(x), Some(y)) => match (parse(x), parse(y)) {
            (Some(px), Some(py)) if py > px => Some(y.clone()),
            _ => Some(x.clone()),
        },
        (x, y) => x.clone().or_else(|| y.clone()),
    }
}

/// What satisfies both specs: every range narrowed to the overlap, names to the common ones;
/// `None` when no machine could satisfy both.
pub(crate) fn intersect_resources(a: &ResourcesSpec, b: &ResourcesSpec) -> Option<ResourcesSpec> {
    let gpu = GpuSpec {
        vendor: same_or_either(a.gpu.vendor, b.gpu.vendor)?,
        name: intersect_names(&a.gpu.name, &b.gpu.name)?,
        count: intersect_range(&a.gpu.count, &b.gpu.count)?,
        memory: intersect_optional_range(&a.gpu.memory, &b.gpu.memory)?,
        total_memory: intersect_optional_range(&a.gpu.total_memory, &b.gpu.total_memory)?,
        compute_capability: higher_capability(&a.gpu.compute_capability, &b.gpu.compute_capability),
    };
    Some(ResourcesSpec {
        cpu: CpuSpec {
            arch: same_or_either(a.cpu.arch, b.cpu.arch)?,
            count: intersect_range(&a.cpu.count, &b.cpu.count)?,
        },
        memory: intersect_range(&a.memory, &b.memory)?,
        disk: flotilla_protocol::config::DiskSpec {
            size: intersect_range(&a.disk.size, &b.disk.size)?,
        },
        shm_size: match (a.shm_size, b.shm_size) {
            (Some(x), Some(y)) => Some(x.max(y)),
            (x, y) => x.or(y),
        },
        gpu,
    })
}

/// A whole-machine spec (`machine`, a fleet's `resources`) narrowed by what every GPU of a
/// share must be for `job`: vendor, names, memory per GPU, compute capability, CPU arch.
/// Counts and sizes stay the machine's: a share of the machine is checked afterwards.
fn narrow_gpu_kind(machine: &ResourcesSpec, job: &ResourcesSpec) -> Option<ResourcesSpec> {
    let mut spec = machine.clone();
    spec.cpu.arch = same_or_either(machine.cpu.arch, job.cpu.arch)?;
    if job.is_cpu_only() {
        return Some(spec);
    }
    spec.gpu.vendor = same_or_either(machine.gpu.vendor, job.gpu.vendor)?;
    spec.gpu.name = intersect_names(&machine.gpu.name, &job.gpu.name)?;
    spec.gpu.memory = intersect_optional_range(&machine.gpu.memory, &job.gpu.memory)?;
    spec.gpu.compute_capability =
        higher_capability(&machine.gpu.compute_capability, &job.gpu.compute_capability);
    Some(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(gpu: &str) -> ResourcesSpec {
        ResourcesSpec {
            gpu: ResourcesSpec::parse_gpu(gpu).unwrap_or_default(),
            ..ResourcesSpec::default()
        }
    }

    #[test]
    fn spot_policies_combine() {
        use SpotPolicy::*;
        assert_eq!(combine_spot(Auto, Spot), Some(Spot));
        assert_eq!(combine_spot(OnDemand, Auto), Some(OnDemand));
        assert_eq!(combine_spot(Auto, Auto), Some(Auto));
        assert_eq!(combine_spot(Spot, OnDemand), None);
    }

    #[test]
    fn lists_intersect_and_limits_take_the_lower() {
        let l = |v: &[&str]| Some(v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(intersect_lists(&None, &None), Some(vec![]));
        assert_eq!(
            intersect_lists(&l(&["aws", "GCP"]), &l(&["gcp"])),
            l(&["GCP"])
        );
        assert_eq!(intersect_lists(&l(&["aws"]), &l(&["gcp"])), None);
        assert_eq!(intersect_lists(&None, &l(&["gcp"])), l(&["gcp"]));
        assert_eq!(lower(Some(3.0), Some(2.0)), Some(2.0));
        assert_eq!(lower(None, Some(2.0)), Some(2.0));
        assert_eq!(lower::<u64>(None, None), None);
    }

    #[test]
    fn resources_intersect() {
        let both = intersect_resources(&spec("A100,H100:1.."), &spec("H100:2..8"));
        let both = both.unwrap_or_default();
        assert_eq!(both.gpu.name, Some(vec!["H100".to_string()]));
        assert_eq!(both.gpu.count, Range::new(Some(2), Some(8)));
        assert!(intersect_resources(&spec("A100:1"), &spec("H100:1")).is_none());
        assert!(intersect_resources(&spec("0"), &spec("A100:1")).is_none());
        assert!(intersect_resources(&spec("1..2"), &spec("4..")).is_none());
    }
}

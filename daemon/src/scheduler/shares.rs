//! Instance shapes and their block shares: how many blocks a requirement needs on a machine,
//! how many blocks a new machine is split into, and which GPUs a job is pinned to.
//!
//! A placement pass meets the same few machine shapes many times; [`ShapeTable`] interns them,
//! computes each shape's shares once, and remembers per (requirement, shape) how many blocks
//! the requirement needs, so matching is done once per pair rather than once per job.

use super::fingerprint::{fingerprint, hash_resources, FxBuild};
use crate::catalog::matching::resources_match;
use flotilla_protocol::config::{Blocks, CpuArch, ResourcesSpec};
use flotilla_protocol::model::{Gpu, InstanceResources, Offer};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

/// The smallest number of blocks (up to `available`) whose share of `res`, split into `total`
/// blocks, satisfies `req`.
pub(crate) fn smallest_share(
    res: &InstanceResources,
    total: u32,
    req: &ResourcesSpec,
    available: u32,
) -> Option<u32> {
    (1..=available.min(total)).find(|&n| resources_match(req, &res.share(n, total)))
}

/// How many blocks a machine of a fleet with `blocks:` is split into: `N` when `N` divides
/// the GPU count (or the machine has no GPUs), else 1; `auto` = one block per GPU, or per CPU
/// on a machine without GPUs.
pub fn total_blocks(blocks: Blocks, res: &InstanceResources) -> u32 {
    let gpus = res.gpus.len() as u32;
    match blocks {
        Blocks::Count(n) if n > 1 && (gpus == 0 || gpus.is_multiple_of(n)) => n,
        Blocks::Count(_) => 1,
        Blocks::Auto if gpus > 0 => gpus,
        Blocks::Auto => res.cpus.max(1),
    }
}

/// The GPUs pinned to a job that takes `offer.blocks` of `offer.total_blocks` of a new
/// machine from `offer`: the first ones.
pub fn new_instance_gpus(offer: &Offer) -> Vec<u32> {
    let gpus = offer.resources.gpu.count.min.unwrap_or(0);
    let total = offer.total_blocks.unwrap_or(1).max(1);
    let blocks = offer.blocks.unwrap_or(total).min(total);
    (0..gpus / total * blocks).collect()
}

/// The machine an offer describes (its `resources` are exact: `min == max`).
pub(crate) fn machine_of(spec: &ResourcesSpec) -> InstanceResources {
    let count = spec.gpu.count.min.unwrap_or(0);
    let name = spec
        .gpu
        .name
        .as_ref()
        .and_then(|names| names.first())
        .cloned()
        .unwrap_or_default();
    let gpu = Gpu {
        name,
        memory_gb: spec.gpu.memory.and_then(|m| m.min).unwrap_or(0.0),
        vendor: spec
            .gpu
            .vendor
            .or_else(|| spec.gpu.implied_vendor())
            .unwrap_or(flotilla_protocol::config::GpuVendor::Nvidia),
    };
    InstanceResources {
        cpus: spec.cpu.count.min.unwrap_or(0),
        cpu_arch: spec.cpu.arch.unwrap_or(CpuArch::X86),
        memory_gb: spec.memory.min.unwrap_or(0.0),
        disk_gb: spec.disk.size.min,
        gpus: vec![gpu; count as usize],
    }
}

fn hash_machine<H: Hasher>(res: &InstanceResources, total: u32, state: &mut H) {
    total.hash(state);
    res.cpus.hash(state);
    res.cpu_arch.hash(state);
    res.memory_gb.to_bits().hash(state);
    res.disk_gb.map(f64::to_bits).hash(state);
    for g in &res.gpus {
        g.name.hash(state);
        g.memory_gb.to_bits().hash(state);
        g.vendor.as_str().hash(state);
    }
}

/// One distinct machine shape (resources and block count) and its shares, computed once.
struct Shape {
    resources: InstanceResources,
    total: u32,
    /// `shares[n - 1]` = the share of `n` blocks.
    shares: Vec<InstanceResources>,
}

/// Interned requirements and machine shapes of one pass, and the blocks each requirement
/// needs on each shape.
#[derive(Default)]
pub(crate) struct ShapeTable {
    shapes: Vec<Shape>,
    shape_ids: HashMap<u64, Vec<usize>, FxBuild>,
    reqs: Vec<ResourcesSpec>,
    req_ids: HashMap<u64, Vec<usize>, FxBuild>,
    /// `needed[req][shape]`: `None` = not computed yet; `Some(None)` = never fits.
    needed: Vec<Vec<Option<Option<u32>>>>,
}

impl ShapeTable {
    /// The id of a machine shape (resources split into `total` blocks).
    pub(crate) fn shape(&mut self, res: &InstanceResources, total: u32) -> usize {
        let total = total.max(1);
        let fp = fingerprint(|h| hash_machine(res, total, h));
        let ids = self.shape_ids.entry(fp).or_default();
        if let Some(&id) = ids
            .iter()
            .find(|&&id| self.shapes[id].total == total && self.shapes[id].resources == *res)
        {
            return id;
        }
        let id = self.shapes.len();
        let shares = (1..=total).map(|n| res.share(n, total)).collect();
        self.shapes.push(Shape {
            resources: res.clone(),
            total,
            shares,
        });
        ids.push(id);
        id
    }

    /// The id of a requirement.
    pub(crate) fn requirement(&mut self, req: &ResourcesSpec) -> usize {
        let fp = fingerprint(|h| hash_resources(req, h));
        let ids = self.req_ids.entry(fp).or_default();
        if let Some(&id) = ids.iter().find(|&&id| self.reqs[id] == *req) {
            return id;
        }
        let id = self.reqs.len();
        self.reqs.push(req.clone());
        self.needed.push(Vec::new());
        ids.push(id);
        id
    }

    /// The smallest number of blocks of `shape` that satisfies requirement `req`.
    pub(crate) fn needed(&mut self, req: usize, shape: usize) -> Option<u32> {
        let row = &mut self.needed[req];
        if row.len() <= shape {
            row.resize(self.shapes.len().max(shape + 1), None);
        }
        if let Some(known) = row[shape] {
            return known;
        }
        let spec = &self.reqs[req];
        let found = self.shapes[shape]
            .shares
            .iter()
            .position(|share| resources_match(spec, share))
            .map(|i| i as u32 + 1);
        self.needed[req][shape] = Some(found);
        found
    }
}

/// The free GPUs of a machine, as a mask, and how many there are.
#[derive(Debug, Clone)]
pub(crate) struct GpuMask {
    busy: Vec<bool>,
    free: u32,
}

impl GpuMask {
    /// `count` GPUs of which `busy` (indices; out-of-range and repeated ones are ignored) are held.
    pub(crate) fn new(count: usize, busy: &[u32]) -> Self {
        let mut mask = vec![false; count];
        for &g in busy {
            if let Some(slot) = mask.get_mut(g as usize) {
                *slot = true;
            }
        }
        let free = mask.iter().filter(|b| !**b).count() as u32;
        GpuMask { busy: mask, free }
    }

    pub(crate) fn free(&self) -> u32 {
        self.free
    }

    /// Pins the `n` lowest free GPUs (fewer when fewer are free) and returns them.
    pub(crate) fn take(&mut self, n: u32) -> Vec<u32> {
        let mut taken = Vec::with_capacity(n as usize);
        for (i, busy) in self.busy.iter_mut().enumerate() {
            if taken.len() as u32 == n {
                break;
            }
            if !*busy {
                *busy = true;
                taken.push(i as u32);
            }
        }
        self.free -= taken.len() as u32;
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_protocol::config::GpuVendor;

    fn machine(gpus: usize) -> InstanceResources {
        InstanceResources {
            cpus: 32,
            cpu_arch: CpuArch::X86,
            memory_gb: 256.0,
            disk_gb: Some(1000.0),
            gpus: vec![
                Gpu {
                    name: "A100".into(),
                    memory_gb: 80.0,
                    vendor: GpuVendor::Nvidia,
                };
                gpus
            ],
        }
    }

    #[test]
    fn blocks_of_a_new_machine() {
        assert_eq!(total_blocks(Blocks::Count(4), &machine(8)), 4);
        assert_eq!(total_blocks(Blocks::Count(3), &machine(8)), 1);
        assert_eq!(total_blocks(Blocks::Auto, &machine(8)), 8);
        assert_eq!(total_blocks(Blocks::Auto, &machine(0)), 32);
    }

    #[test]
    fn an_offer_reads_back_as_its_machine() {
        let m = machine(8);
        assert_eq!(machine_of(&crate::catalog::matching::exact_spec(&m)), m);
    }

    #[test]
    fn shapes_and_requirements_are_interned() {
        let mut table = ShapeTable::default();
        let a = table.shape(&machine(8), 8);
        assert_eq!(table.shape(&machine(8), 8), a);
        assert_ne!(table.shape(&machine(8), 4), a);
        let mut req = ResourcesSpec {
            gpu: ResourcesSpec::parse_gpu("A100:2").unwrap_or_default(),
            ..ResourcesSpec::default()
        };
        req.disk.size.min = None;
        let r = table.requirement(&req);
        assert_eq!(table.requirement(&req.clone()), r);
        assert_eq!(table.needed(r, a), Some(2));
    }

    #[test]
    fn gpu_mask_pins_the_lowest_free_gpus() {
        let mut mask = GpuMask::new(4, &[1, 1, 9]);
        assert_eq!(mask.free(), 3);
        assert_eq!(mask.take(2), vec![0, 2]);
        assert_eq!(mask.take(5), vec![3]);
        assert_eq!(mask.free(), 0);
    }
}

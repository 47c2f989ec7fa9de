//! Fast, non-cryptographic hashing for the interning tables of one placement pass (shapes,
//! requirements, job groups, offer requests). Inputs come from the daemon's own store and every
//! lookup also compares for equality, so a collision costs time, never a wrong answer.

pub(super) use crate::hashing::FxHasher;
use flotilla_protocol::config::{Range, ResourcesSpec};
use std::hash::{BuildHasherDefault, Hash, Hasher};

/// `HashMap<K, V, FxBuild>`: maps keyed with [`FxHasher`].
pub(super) type FxBuild = BuildHasherDefault<FxHasher>;

/// The hash of whatever `feed` writes.
pub(super) fn fingerprint(feed: impl FnOnce(&mut FxHasher)) -> u64 {
    let mut h = FxHasher::default();
    feed(&mut h);
    h.finish()
}

fn hash_range<H: Hasher>(r: &Range<f64>, state: &mut H) {
    r.min.map(f64::to_bits).hash(state);
    r.max.map(f64::to_bits).hash(state);
}

/// Feeds every field of a requirement to `state`, floats by their bits.
pub(super) fn hash_resources<H: Hasher>(spec: &ResourcesSpec, state: &mut H) {
    spec.cpu.arch.hash(state);
    spec.cpu.count.min.hash(state);
    spec.cpu.count.max.hash(state);
    hash_range(&spec.memory, state);
    hash_range(&spec.disk.size, state);
    spec.shm_size.map(f64::to_bits).hash(state);
    let gpu = &spec.gpu;
    gpu.vendor.hash(state);
    gpu.name.hash(state);
    gpu.count.min.hash(state);
    gpu.count.max.hash(state);
    gpu.memory.is_some().hash(state);
    if let Some(m) = &gpu.memory {
        hash_range(m, state);
    }
    gpu.total_memory.is_some().hash(state);
    if let Some(m) = &gpu.total_memory {
        hash_range(m, state);
    }
    gpu.compute_capability.hash(state);
}

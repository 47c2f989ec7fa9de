//! Fast, non-cryptographic hashing for the interning tables of one placement pass (shapes,
//! requirements, job groups, offer requests). Inputs come from the daemon's own store and every
//! lookup also compares for equality, so a collision costs time, never a wrong answer.

use flotilla_protocol::config::{Range, ResourcesSpec};
use std::hash::{BuildHasherDefault, Hash, Hasher};

/// A multiply-rotate hasher (the Fx hash of rustc): a few cycles per word.
#[derive(Default, Clone, Copy)]
pub(super) struct FxHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 59));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

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

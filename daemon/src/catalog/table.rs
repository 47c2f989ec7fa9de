//! The loaded catalog in memory: compact price rows pointing at deduplicated machine shapes.
//!
//! A catalog of 100,000 offers holds only a few hundred distinct machines (the same instance
//! type is sold in many regions, on demand and spot), so each row is 24 bytes (price, shape,
//! region, backend, spot) and each distinct shape keeps its `InstanceResources` and normalized
//! `ResourcesSpec` once. Rows are kept in the canonical offer order (see `offer_list`), so a
//! query is one scan that can stop at `max_price`; string tables are sorted, so comparing ids
//! is comparing the strings.

use super::matching::exact_spec;
use crate::hashing::FxHasher;
use flotilla_protocol::config::{CpuArch, GpuVendor, ResourcesSpec};
use flotilla_protocol::model::{Availability, Gpu, InstanceResources, Offer};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::hash::BuildHasher;

/// A fast hasher for the loader's maps (multiply-rotate over 8-byte words, as rustc's
/// FxHash), seeded per process so that a crafted catalog cannot aim at collisions.
#[derive(Debug, Clone, Copy)]
struct FastHash {
    seed: u64,
}

impl Default for FastHash {
    fn default() -> Self {
        FastHash {
            seed: std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64),
        }
    }
}

impl BuildHasher for FastHash {
    type Hasher = FxHasher;
    fn build_hasher(&self) -> FxHasher {
        FxHasher::with_seed(self.seed)
    }
}

/// One priced row: which machine, where, from which backend, spot or not.
#[derive(Debug, Clone, Copy)]
pub(super) struct Row {
    pub price: f64,
    pub shape: u32,
    pub region: u32,
    pub backend: u16,
    pub spot: bool,
}

/// One distinct machine of the catalog (an instance type with its exact resources).
#[derive(Debug, Clone)]
pub(super) struct Shape {
    pub instance_type: u32,
    pub resources: InstanceResources,
    pub spec: ResourcesSpec,
}

/// How many rows one source (a CSV file, one backend) gave, and how many it skipped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceStats {
    /// The backend name the rows were given (the file's stem, or the live provider name).
    pub backend: String,
    /// Where the rows came from (a file path).
    pub origin: String,
    pub rows: usize,
    pub skipped: usize,
    /// The live catalog's version of this provider (`20250101-3`); `None` for local files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// What a loaded catalog holds; `flotillad` shows it in its status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct CatalogStats {
    pub rows: usize,
    pub skipped: usize,
    /// Distinct machines (instance type and resources) the rows point at.
    pub shapes: usize,
    pub sources: Vec<SourceStats>,
    /// An estimate of the heap the catalog takes, from its structures' capacities.
    pub memory_bytes: usize,
}

/// An immutable, query-ready catalog. Build one with [`CatalogBuilder`] or `load_dir`.
#[derive(Debug, Default)]
pub struct Catalog {
    pub(super) rows: Vec<Row>,
    pub(super) shapes: Vec<Shape>,
    pub(super) backends: Vec<String>,
    pub(super) regions: Vec<String>,
    pub(super) instance_types: Vec<String>,
    pub(super) sources: Vec<SourceStats>,
    /// Problems met while loading (malformed rows, unreadable files), for the user.
    pub(super) warnings: Vec<String>,
}

impl Catalog {
    /// A catalog with no offers.
    pub fn empty() -> Self {
        Self::default()
    }

    /// How many offers (rows) the catalog holds.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Problems met while loading, one line each (`lambda.csv: 2 malformed rows skipped ...`).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    pub fn stats(&self) -> CatalogStats {
        CatalogStats {
            rows: self.rows.len(),
            skipped: self.sources.iter().map(|s| s.skipped).sum(),
            shapes: self.shapes.len(),
            sources: self.sources.clone(),
            memory_bytes: self.memory_estimate(),
        }
    }

    /// Heap bytes held, from capacities (allocator overhead not counted).
    fn memory_estimate(&self) -> usize {
        fn strings(v: &[String]) -> usize {
            v.iter().map(|s| s.capacity()).sum::<usize>() + std::mem::size_of_val(v)
        }
        fn spec_heap(spec: &ResourcesSpec) -> usize {
            spec.gpu
                .name
                .iter()
                .flatten()
                .map(|n| n.capacity() + std::mem::size_of::<String>())
                .sum()
        }
        let shapes: usize = self
            .shapes
            .iter()
            .map(|s| {
                s.resources.gpus.capacity() * std::mem::size_of::<Gpu>()
                    + s.resources
                        .gpus
                        .iter()
                        .map(|g| g.name.capacity())
                        .sum::<usize>()
                    + spec_heap(&s.spec)
            })
            .sum();
        self.rows.capacity() * std::mem::size_of::<Row>()
            + self.shapes.capacity() * std::mem::size_of::<Shape>()
            + shapes
            + strings(&self.backends)
            + strings(&self.regions)
            + strings(&self.instance_types)
    }

    /// The offer of one row, materialized.
    pub(super) fn offer(&self, row: &Row) -> Offer {
        let shape = &self.shapes[row.shape as usize];
        Offer {
            backend: self.backends[usize::from(row.backend)].clone(),
            region: self.regions[row.region as usize].clone(),
            instance_type: self.instance_types[shape.instance_type as usize].clone(),
            resources: shape.spec.clone(),
            price: row.price,
            spot: row.spot,
            availability: Availability::Available,
            fleet: None,
            instance: None,
            blocks: None,
            total_blocks: None,
        }
    }

    /// Every offer in catalog order (tests and tools; queries materialize only what they return).
    pub fn offers(&self) -> impl Iterator<Item = Offer> + '_ {
        self.rows.iter().map(|r| self.offer(r))
    }
}

/// The machine part of a parsed row, before deduplication.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct MachineRow<'a> {
    pub instance_type: &'a str,
    pub cpus: u32,
    pub cpu_arch: CpuArch,
    pub memory_gb: f64,
    pub disk_gb: Option<f64>,
    pub gpu_count: u32,
    pub gpu_name: &'a str,
    pub gpu_memory_gb: f64,
    pub gpu_vendor: GpuVendor,
}

/// The deduplication key of a shape: floats by their bits (catalog values are exact text).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ShapeKey {
    instance_type: u32,
    cpus: u32,
    arch: CpuArch,
    memory_bits: u64,
    disk_bits: Option<u64>,
    gpu_count: u32,
    gpu_name: u32,
    gpu_memory_bits: u64,
    vendor: GpuVendor,
}

/// Strings to dense ids, in first-seen order; `finish` sorts them.
#[derive(Debug, Default)]
struct Interner {
    ids: HashMap<Box<str>, u32, FastHash>,
    names: Vec<Box<str>>,
}

impl Interner {
    fn id(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push(s.into());
        self.ids.insert(s.into(), id);
        id
    }

    /// The names sorted, and for each old id its new id.
    fn into_sorted(self) -> (Vec<String>, Vec<u32>) {
        let mut order: Vec<u32> = (0..self.names.len() as u32).collect();
        order.sort_by(|&a, &b| self.names[a as usize].cmp(&self.names[b as usize]));
        let mut remap = vec![0u32; self.names.len()];
        for (new, &old) in order.iter().enumerate() {
            remap[old as usize] = new as u32;
        }
        let mut names: Vec<Option<Box<str>>> = self.names.into_iter().map(Some).collect();
        let sorted = order
            .iter()
            .map(|&old| {
                names[old as usize]
                    .take()
                    .map(String::from)
                    .unwrap_or_default()
            })
            .collect();
        (sorted, remap)
    }
}

/// Collects rows from any number of sources, then sorts and freezes them into a [`Catalog`].
#[derive(Debug, Default)]
pub struct CatalogBuilder {
    rows: Vec<Row>,
    shape_ids: HashMap<ShapeKey, u32, FastHash>,
    shape_keys: Vec<ShapeKey>,
    backends: Interner,
    regions: Interner,
    instance_types: Interner,
    gpu_names: Interner,
    sources: Vec<SourceStats>,
    warnings: Vec<String>,
}

impl CatalogBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    pub(super) fn backend_id(&mut self, name: &str) -> u16 {
        // More than 65,535 backends is not a catalog anyone has; ids wrap rather than panic.
        self.backends.id(name) as u16
    }

    pub(super) fn push(
        &mut self,
        backend: u16,
        region: &str,
        price: f64,
        spot: bool,
        m: &MachineRow,
    ) {
        let key = ShapeKey {
            instance_type: self.instance_types.id(m.instance_type),
            cpus: m.cpus,
            arch: m.cpu_arch,
            memory_bits: m.memory_gb.to_bits(),
            disk_bits: m.disk_gb.map(f64::to_bits),
            gpu_count: m.gpu_count,
            gpu_name: if m.gpu_count == 0 {
                u32::MAX
            } else {
                self.gpu_names.id(m.gpu_name)
            },
            gpu_memory_bits: if m.gpu_count == 0 {
                0
            } else {
                m.gpu_memory_gb.to_bits()
            },
            vendor: if m.gpu_count == 0 {
                GpuVendor::Nvidia
            } else {
                m.gpu_vendor
            },
        };
        let shape = match self.shape_ids.get(&key) {
            Some(&id) => id,
            None => {
                let id = self.shape_keys.len() as u32;
                self.shape_keys.push(key.clone());
                self.shape_ids.insert(key, id);
                id
            }
        };
        let region = self.regions.id(region);
        self.rows.push(Row {
            price,
            shape,
            region,
            backend,
            spot,
        });
    }

    pub(super) fn add_source(&mut self, stats: SourceStats) {
        self.sources.push(stats);
    }

    pub(super) fn warn(&mut self, warning: String) {
        self.warnings.push(warning);
    }

    /// Sorts the string tables and the rows (canonical offer order) and builds the shapes.
    pub fn finish(self) -> Catalog {
        let (backends, backend_map) = self.backends.into_sorted();
        let (regions, region_map) = self.regions.into_sorted();
        let (instance_types, type_map) = self.instance_types.into_sorted();
        let gpu_names = self.gpu_names.names;
        let shapes: Vec<Shape> = self
            .shape_keys
            .iter()
            .map(|k| {
                let gpu = (k.gpu_count > 0).then(|| Gpu {
                    name: gpu_names
                        .get(k.gpu_name as usize)
                        .map(|n| n.to_string())
                        .unwrap_or_default(),
                    memory_gb: f64::from_bits(k.gpu_memory_bits),
                    vendor: k.vendor,
                });
                let resources = InstanceResources {
                    cpus: k.cpus,
                    cpu_arch: k.arch,
                    memory_gb: f64::from_bits(k.memory_bits),
                    disk_gb: k.disk_bits.map(f64::from_bits),
                    gpus: gpu
                        .map(|g| vec![g; k.gpu_count as usize])
                        .unwrap_or_default(),
                };
                Shape {
                    instance_type: type_map[k.instance_type as usize],
                    spec: exact_spec(&resources),
                    resources,
                }
            })
            .collect();
        let mut rows = self.rows;
        for r in &mut rows {
            r.backend = backend_map[usize::from(r.backend)] as u16;
            r.region = region_map[r.region as usize];
        }
        // Canonical order (see `offer_list::offer_order`): price, backend, instance type,
        // region, on-demand before spot. Prices are finite and not negative, so their bits
        // order like their values; equal keys up to the shape are identical offers.
        let shape_type: Vec<u32> = shapes.iter().map(|s| s.instance_type).collect();
        rows.sort_unstable_by_key(|r| {
            (
                r.price.to_bits(),
                r.backend,
                shape_type[r.shape as usize],
                r.region,
                r.spot,
                r.shape,
            )
        });
        rows.shrink_to_fit();
        Catalog {
            rows,
            shapes,
            backends,
            regions,
            instance_types,
            sources: self.sources,
            warnings: self.warnings,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine(instance_type: &str, gpus: u32) -> MachineRow<'_> {
        MachineRow {
            instance_type,
            cpus: 8,
            cpu_arch: CpuArch::X86,
            memory_gb: 32.0,
            disk_gb: None,
            gpu_count: gpus,
            gpu_name: if gpus > 0 { "A10G" } else { "" },
            gpu_memory_gb: 24.0,
            gpu_vendor: GpuVendor::Nvidia,
        }
    }

    #[test]
    fn rows_come_out_in_canonical_order_and_shapes_are_shared() {
        let mut b = CatalogBuilder::new();
        let zeta = b.backend_id("zeta");
        let alpha = b.backend_id("alpha");
        b.push(zeta, "r2", 1.0, true, &machine("g5.xlarge", 1));
        b.push(zeta, "r1", 1.0, false, &machine("g5.xlarge", 1));
        b.push(alpha, "r9", 1.0, false, &machine("z-type", 1));
        b.push(alpha, "r9", 1.0, false, &machine("a-type", 0));
        b.push(alpha, "r1", 0.5, false, &machine("g5.xlarge", 1));
        let c = b.finish();
        let order: Vec<(String, String, String, bool)> = c
            .offers()
            .map(|o| (o.backend, o.instance_type, o.region, o.spot))
            .collect();
        let expect = |b: &str, t: &str, r: &str, s: bool| (b.into(), t.into(), r.into(), s);
        assert_eq!(
            order,
            vec![
                expect("alpha", "g5.xlarge", "r1", false),
                expect("alpha", "a-type", "r9", false),
                expect("alpha", "z-type", "r9", false),
                expect("zeta", "g5.xlarge", "r1", false),
                expect("zeta", "g5.xlarge", "r2", true),
            ]
        );
        assert_eq!(
            c.stats().shapes,
            3,
            "g5.xlarge is one machine wherever it is sold"
        );
        assert_eq!(c.backends, vec!["alpha".to_string(), "zeta".to_string()]);
    }
}

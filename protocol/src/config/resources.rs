//! The resources grammar (`cpu: x86:8..`, `memory: 64GB..`, `gpu: H100,A100:80GB:8`): typed
//! specs, parsing from strings and YAML, and printing back in the same grammar.
//!
//! Sizes are gigabytes as `f64` (`512MB` = 0.5, `1.5TB` = 1536); a bare number means GB.
//! Printing then parsing gives back the same value: `parse(print(x)) == x`.

use super::decode::{Decoder, Fields};
use super::yaml::Node;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// An inclusive range; `None` is unbounded. Serializes as `{"min": .., "max": ..}`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Range<T> {
    pub min: Option<T>,
    pub max: Option<T>,
}

impl<T: PartialOrd + Copy> Range<T> {
    pub fn new(min: Option<T>, max: Option<T>) -> Self {
        Range { min, max }
    }

    /// Exactly `value` (`min == max`).
    pub fn exact(value: T) -> Self {
        Range {
            min: Some(value),
            max: Some(value),
        }
    }

    /// `value` or more.
    pub fn at_least(value: T) -> Self {
        Range {
            min: Some(value),
            max: None,
        }
    }

    /// Inclusive at both ends; an absent bound admits everything on its side.
    pub fn contains(&self, value: T) -> bool {
        let above_min = match self.min {
            Some(min) => value >= min,
            None => true,
        };
        let below_max = match self.max {
            Some(max) => value <= max,
            None => true,
        };
        above_min && below_max
    }
}

impl fmt::Display for Range<u32> {
    /// `2`, `2..`, `..8`, `2..8`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_range(f, self.min, self.max, |f, v| write!(f, "{v}"))
    }
}

impl fmt::Display for Range<f64> {
    /// Sizes in GB: `80GB`, `24GB..`, `..1024GB`, `0.5GB..2GB`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_range(f, self.min, self.max, |f, v| write!(f, "{}", Size(v)))
    }
}

fn write_range<T: PartialEq + Copy>(
    f: &mut fmt::Formatter<'_>,
    min: Option<T>,
    max: Option<T>,
    write: impl Fn(&mut fmt::Formatter<'_>, T) -> fmt::Result,
) -> fmt::Result {
    if let (Some(min), Some(max)) = (min, max) {
        if min == max {
            return write(f, min);
        }
    }
    if let Some(min) = min {
        write(f, min)?;
    }
    f.write_str("..")?;
    if let Some(max) = max {
        write(f, max)?;
    }
    Ok(())
}

/// A size in GB, printed as `80GB` / `0.5GB` (Rust prints floats exactly enough to read back).
struct Size(f64);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}GB", self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CpuArch {
    #[serde(rename = "x86")]
    X86,
    #[serde(rename = "arm")]
    Arm,
}

impl CpuArch {
    pub fn as_str(self) -> &'static str {
        match self {
            CpuArch::X86 => "x86",
            CpuArch::Arm => "arm",
        }
    }
}

impl FromStr for CpuArch {
    type Err = String;

    /// `x86` (also `x86_64`, `amd64`) or `arm` (also `arm64`, `aarch64`).
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "x86" | "x86_64" | "amd64" => Ok(CpuArch::X86),
            "arm" | "arm64" | "aarch64" => Ok(CpuArch::Arm),
            _ => Err(format!(
                "unknown CPU architecture `{s}`; expected `x86` or `arm`"
            )),
        }
    }
}

impl fmt::Display for CpuArch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CpuSpec {
    pub arch: Option<CpuArch>,
    pub count: Range<u32>,
}

impl Default for CpuSpec {
    /// `2..`, any architecture.
    fn default() -> Self {
        CpuSpec {
            arch: None,
            count: Range::at_least(2),
        }
    }
}

impl fmt::Display for CpuSpec {
    /// `2..` or `arm:8`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(arch) = self.arch {
            write!(f, "{arch}:")?;
        }
        write!(f, "{}", self.count)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GpuVendor {
    Nvidia,
    Amd,
    Google,
    Intel,
    Tenstorrent,
}

const VENDOR_WORDS: &str = "nvidia, amd, tpu (or google), intel, tt (or tenstorrent)";

impl GpuVendor {
    /// The gpuhunt name: `nvidia`, `amd`, `google`, `intel`, `tenstorrent`.
    pub fn as_str(self) -> &'static str {
        match self {
            GpuVendor::Nvidia => "nvidia",
            GpuVendor::Amd => "amd",
            GpuVendor::Google => "google",
            GpuVendor::Intel => "intel",
            GpuVendor::Tenstorrent => "tenstorrent",
        }
    }

    /// The vendor of a known accelerator name (case-insensitive): `A100` nvidia, `MI300X` amd,
    /// `v5litepod-8` / `tpu-v4` google, `Gaudi2` intel, `n150` tenstorrent.
    pub fn from_gpu_name(name: &str) -> Option<GpuVendor> {
        let name = name.to_ascii_lowercase();
        let name = name.as_str();
        const NVIDIA: &[&str] = &[
            "a2", "a10", "a10g", "a16", "a30", "a40", "a100", "a800", "a4000", "a4500", "a5000",
            "a6000", "b100", "b200", "b300", "gb10", "gb200", "gb300", "gh200", "h20", "h100",
            "h100nvl", "h200", "h800", "k80", "l4", "l20", "l40", "l40s", "m60", "p4", "p40",
            "p100", "t4", "v100",
        ];
        const AMD: &[&str] = &[
            "mi100", "mi210", "mi250", "mi250x", "mi300a", "mi300x", "mi308x", "mi325x", "mi350x",
            "mi355x",
        ];
        const TPU_VERSIONS: &[&str] = &["v2", "v3", "v4", "v5e", "v5p", "v5litepod", "v6e", "v7"];
        const TENSTORRENT: &[&str] = &["n150", "n300", "p100a", "p150a", "p150b", "p300c"];
        let tpu_version = name.split_once('-').map_or(name, |(version, cores)| {
            if cores.bytes().all(|b| b.is_ascii_digit()) {
                version
            } else {
                ""
            }
        });
        if NVIDIA.contains(&name) || name.starts_with("rtx") {
            Some(GpuVendor::Nvidia)
        } else if AMD.contains(&name) {
            Some(GpuVendor::Amd)
        } else if name.starts_with("tpu-") || TPU_VERSIONS.contains(&tpu_version) {
            Some(GpuVendor::Google)
        } else if name.starts_with("gaudi") {
            Some(GpuVendor::Intel)
        } else if TENSTORRENT.contains(&name) {
            Some(GpuVendor::Tenstorrent)
        } else {
            None
        }
    }
}

impl FromStr for GpuVendor {
    type Err = String;

    /// The grammar's tokens (`nvidia`, `amd`, `tpu`, `google`, `intel`, `tt`, `tenstorrent`),
    /// case-insensitive; the gpuhunt names are among them.
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "nvidia" => Ok(GpuVendor::Nvidia),
            "amd" => Ok(GpuVendor::Amd),
            "google" | "tpu" => Ok(GpuVendor::Google),
            "intel" => Ok(GpuVendor::Intel),
            "tenstorrent" | "tt" => Ok(GpuVendor::Tenstorrent),
            _ => Err(format!("unknown GPU vendor `{s}`; expected {VENDOR_WORDS}")),
        }
    }
}

impl fmt::Display for GpuVendor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuSpec {
    pub vendor: Option<GpuVendor>,
    pub name: Option<Vec<String>>,
    pub count: Range<u32>,
    /// Per GPU, in GB.
    pub memory: Option<Range<f64>>,
    /// All GPUs together, in GB.
    pub total_memory: Option<Range<f64>>,
    /// The minimum compute capability, `major.minor` (`8.0`).
    pub compute_capability: Option<String>,
}

impl Default for GpuSpec {
    /// `0..`: GPUs are neither required nor excluded.
    fn default() -> Self {
        GpuSpec {
            vendor: None,
            name: None,
            count: Range::at_least(0),
            memory: None,
            total_memory: None,
            compute_capability: None,
        }
    }
}

impl GpuSpec {
    /// The vendor implied by the rest of the spec: the one vendor of all the names; without
    /// names, nvidia when at least one GPU is required (as dstack assumes); else none.
    pub fn implied_vendor(&self) -> Option<GpuVendor> {
        match &self.name {
            Some(names) => {
                let mut vendors = names.iter().map(|name| GpuVendor::from_gpu_name(name));
                let first = vendors.next().flatten()?;
                vendors.all(|v| v == Some(first)).then_some(first)
            }
            None if self.count.min.unwrap_or(0) > 0 => Some(GpuVendor::Nvidia),
            None => None,
        }
    }

    /// This spec with `vendor` filled from [`GpuSpec::implied_vendor`] when absent, as parsing does.
    pub fn with_implied_vendor(mut self) -> Self {
        if self.vendor.is_none() {
            self.vendor = self.implied_vendor();
        }
        self
    }

    /// Checks what the grammar cannot: a positive memory, a sensible compute capability.
    fn check(&self, written: &str) -> Result<(), String> {
        let zero_memory = |range: &Option<Range<f64>>| range.and_then(|r| r.max) == Some(0.0);
        if zero_memory(&self.memory) {
            return Err(format!("{written:?} memory must be positive"));
        }
        if zero_memory(&self.total_memory) {
            return Err(format!("{written:?} total memory must be positive"));
        }
        if let Some(names) = &self.name {
            if names.is_empty() || names.iter().any(|n| n.trim().is_empty()) {
                return Err(format!("{written:?} has an empty GPU name"));
            }
        }
        Ok(())
    }
}

impl fmt::Display for GpuSpec {
    /// The token form, `vendor:names:memory:count`, leaving out the vendor when the rest implies it
    /// (`A100:80GB:2`, `24GB..:1..`, `amd:2`, `0`). `total_memory` and `compute_capability`
    /// have no token; they are appended as `(total 160GB.., cc 8.0)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut tokens = Vec::new();
        if let Some(vendor) = self.vendor {
            if self.implied_vendor() != Some(vendor) {
                tokens.push(vendor.to_string());
            }
        }
        if let Some(names) = &self.name {
            tokens.push(names.join(","));
        }
        if let Some(memory) = &self.memory {
            tokens.push(memory.to_string());
        }
        tokens.push(self.count.to_string());
        f.write_str(&tokens.join(":"))?;
        let mut extras = Vec::new();
        if let Some(total) = &self.total_memory {
            extras.push(format!("total {total}"));
        }
        if let Some(cc) = &self.compute_capability {
            extras.push(format!("cc {cc}"));
        }
        if !extras.is_empty() {
            write!(f, " ({})", extras.join(", "))?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskSpec {
    /// In GB.
    pub size: Range<f64>,
}

impl Default for DiskSpec {
    /// `100GB..`.
    fn default() -> Self {
        DiskSpec {
            size: Range::at_least(100.0),
        }
    }
}

/// What a run or fleet asks of each machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourcesSpec {
    pub cpu: CpuSpec,
    /// In GB.
    pub memory: Range<f64>,
    pub disk: DiskSpec,
    /// In GB.
    pub shm_size: Option<f64>,
    pub gpu: GpuSpec,
}

impl Default for ResourcesSpec {
    /// `cpu: 2..`, `memory: 8GB..`, `disk: 100GB..`, `gpu: 0..`.
    fn default() -> Self {
        ResourcesSpec {
            cpu: CpuSpec::default(),
            memory: Range::at_least(8.0),
            disk: DiskSpec::default(),
            shm_size: None,
            gpu: GpuSpec::default(),
        }
    }
}

impl fmt::Display for ResourcesSpec {
    /// `cpu=2.. mem=8GB.. disk=100GB.. gpu=A100:80GB:2` (with `shm=16GB` when set).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cpu={} mem={}", self.cpu, self.memory)?;
        if let Some(shm) = self.shm_size {
            write!(f, " shm={}", Size(shm))?;
        }
        write!(f, " disk={} gpu={}", self.disk.size, self.gpu)
    }
}

impl ResourcesSpec {
    /// Parses the `gpu` token grammar: `A100:2`, `H100,A100:80GB:8`, `24GB..:2..`, `amd:MI300X:8`, `0`.
    pub fn parse_gpu(s: &str) -> Result<GpuSpec, String> {
        let written = s;
        let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        let mut vendor = None;
        let mut names: Option<Vec<String>> = None;
        let mut memory = None;
        let mut count = None;
        for token in compact.split(':') {
            if token.is_empty() {
                return Err(format!(
                    "{written:?} has an empty token (two `:` in a row?)"
                ));
            }
            if let Ok(v) = token.parse::<GpuVendor>() {
                if vendor.replace(v).is_some() {
                    return Err(format!("{written:?} has two vendors"));
                }
            } else if token.starts_with(|c: char| c.is_alphabetic()) {
                if let Some(first) = &names {
                    return Err(format!(
                        "{written:?} has two GPU name lists (`{}` and `{token}`); list names with `,` \
                         (`H100,A100`), and note that vendors are {VENDOR_WORDS}",
                        first.join(",")
                    ));
                }
                names = Some(token.split(',').map(str::to_string).collect());
            } else if token.chars().any(|c| c.is_alphabetic()) {
                let range = parse_size_range(token).map_err(|e| format!("{written:?}: {e}"))?;
                if memory.replace(range).is_some() {
                    return Err(format!("{written:?} has two memory sizes"));
                }
            } else {
                let range = parse_count_range(token).map_err(|e| format!("{written:?}: {e}"))?;
                if count.replace(range).is_some() {
                    return Err(format!("{written:?} has two counts"));
                }
            }
        }
        let spec = GpuSpec {
            vendor,
            name: names,
            count: count.unwrap_or(Range::at_least(1)),
            memory,
            total_memory: None,
            compute_capability: None,
        }
        .with_implied_vendor();
        spec.check(written)?;
        Ok(spec)
    }

    /// Parses `8`, `2..`, `x86:8..`, `arm:4..16`.
    pub fn parse_cpu(s: &str) -> Result<CpuSpec, String> {
        let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        let mut arch = None;
        let mut count = None;
        for token in compact.split(':') {
            if token.is_empty() {
                return Err(format!("{s:?} has an empty token (two `:` in a row?)"));
            }
            if token.contains("..") || token.bytes().all(|b| b.is_ascii_digit()) {
                let range = parse_count_range(token).map_err(|e| format!("{s:?}: {e}"))?;
                if count.replace(range).is_some() {
                    return Err(format!("{s:?} has two counts"));
                }
            } else {
                let parsed = token
                    .parse::<CpuArch>()
                    .map_err(|e| format!("{s:?}: {e}"))?;
                if arch.replace(parsed).is_some() {
                    return Err(format!("{s:?} has two architectures"));
                }
            }
        }
        Ok(CpuSpec {
            arch,
            count: count.unwrap_or(CpuSpec::default().count),
        })
    }

    /// Parses a size range: `8`, `8GB`, `512MB..`, `..1TB`, `16GB..80GB`.
    pub fn parse_size_range(s: &str) -> Result<Range<f64>, String> {
        parse_size_range(s)
    }

    /// A CPU-only requirement: `gpu: 0`.
    pub fn is_cpu_only(&self) -> bool {
        self.gpu.count.max == Some(0)
    }
}

/// Parses a size in GB: `8`, `8GB`, `512MB` (0.5), `1.5TB` (1536).
pub fn parse_size(s: &str) -> Result<f64, String> {
    let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    let lower = compact.to_ascii_lowercase();
    let (number, scale) = if let Some(n) = lower.strip_suffix("tb") {
        (n, 1024.0)
    } else if let Some(n) = lower.strip_suffix("gb") {
        (n, 1.0)
    } else if let Some(n) = lower.strip_suffix("mb") {
        (n, 1.0 / 1024.0)
    } else {
        (lower.as_str(), 1.0)
    };
    let value = number
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && number.starts_with(|c: char| c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| {
            format!(
                "{s:?} is not a size; write a number with MB, GB or TB (a bare number means GB)"
            )
        })?;
    Ok(value * scale)
}

/// Parses a size range: `8`, `8GB`, `512MB..`, `..1TB`, `16GB..80GB`.
pub fn parse_size_range(s: &str) -> Result<Range<f64>, String> {
    parse_range(s, parse_size)
}

/// Parses a count range: `2`, `2..`, `..8`, `2..8`.
pub fn parse_count_range(s: &str) -> Result<Range<u32>, String> {
    parse_range(s, parse_count)
}

fn parse_count(s: &str) -> Result<u32, String> {
    s.trim()
        .parse::<u32>()
        .map_err(|_| format!("{s:?} is not a count; write N, N.., ..M or N..M"))
}

fn parse_range<T: PartialOrd + Copy + fmt::Display>(
    s: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Range<T>, String> {
    let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    let Some((low, high)) = compact.split_once("..") else {
        return parse(&compact).map(Range::exact);
    };
    if low.is_empty() && high.is_empty() {
        return Err(format!(
            "{s:?} is not a range: give a minimum, a maximum or both (`2..`, `..8`, `2..8`)"
        ));
    }
    let min = (!low.is_empty()).then(|| parse(low)).transpose()?;
    let max = (!high.is_empty()).then(|| parse(high)).transpose()?;
    if let (Some(min_value), Some(max_value)) = (min, max) {
        if min_value > max_value {
            return Err(format!(
                "{s:?} is not a range: the minimum is above the maximum"
            ));
        }
    }
    Ok(Range { min, max })
}

// ---- From YAML ----

const RESOURCES_FIELDS: &[&str] = &["cpu", "memory", "shm_size", "gpu", "disk"];
const GPU_FIELDS: &[&str] = &[
    "vendor",
    "name",
    "count",
    "memory",
    "total_memory",
    "compute_capability",
];
const CPU_FIELDS: &[&str] = &["arch", "count", "min", "max"];
const RANGE_FIELDS: &[&str] = &["min", "max"];
const DISK_FIELDS: &[&str] = &["size"];

/// `resources:` of a run, a replica group, a node group or a fleet.
pub(crate) fn decode_resources(d: &mut Decoder<'_>, node: &Node, path: &str) -> ResourcesSpec {
    let mut spec = ResourcesSpec::default();
    let Some(fields) = d.fields(node, path, RESOURCES_FIELDS) else {
        return spec;
    };
    if let Some(cpu) = fields.with(d, "cpu", decode_cpu) {
        spec.cpu = cpu;
    }
    if let Some(memory) = fields.with(d, "memory", decode_size_range) {
        spec.memory = memory;
    }
    spec.shm_size = fields.with(d, "shm_size", |d, node, path| {
        grammar(d, node, path, "a size", parse_size)
    });
    if let Some(disk) = fields.with(d, "disk", decode_disk) {
        spec.disk = disk;
    }
    if let Some(gpu) = fields.with(d, "gpu", decode_gpu) {
        spec.gpu = gpu;
    }
    spec
}

/// A scalar parsed by a grammar function, with its error reported at the node.
fn grammar<T>(
    d: &mut Decoder<'_>,
    node: &Node,
    path: &str,
    what: &str,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Option<T> {
    let Some(text) = node.scalar() else {
        d.error(
            node,
            path,
            format!("expected {what}, found {}", node.describe()),
        );
        return None;
    };
    parse(text).map_err(|e| d.error(node, path, e)).ok()
}

/// A range written as a scalar (`2..8`) or as `{min, max}`.
fn decode_range<T: PartialOrd + Copy + fmt::Display>(
    d: &mut Decoder<'_>,
    node: &Node,
    path: &str,
    what: &str,
    parse_scalar: fn(&str) -> Result<Range<T>, String>,
    parse_bound: fn(&str) -> Result<T, String>,
) -> Option<Range<T>> {
    if node.scalar().is_some() {
        return grammar(d, node, path, what, parse_scalar);
    }
    let fields = d.fields(node, path, RANGE_FIELDS)?;
    range_from_fields(d, &fields, what, parse_bound)
}

fn range_from_fields<T: PartialOrd + Copy + fmt::Display>(
    d: &mut Decoder<'_>,
    fields: &Fields<'_>,
    what: &str,
    parse_bound: fn(&str) -> Result<T, String>,
) -> Option<Range<T>> {
    let bound = |d: &mut Decoder<'_>, name: &str| {
        fields.with(d, name, |d, node, path| {
            grammar(d, node, path, what, parse_bound)
        })
    };
    let min = bound(d, "min");
    let max = bound(d, "max");
    match (min, max) {
        (None, None) => {
            let message = "an empty range: give `min`, `max` or both";
            d.error(fields.node(), fields.path(), message);
            None
        }
        (Some(low), Some(high)) if low > high => {
            let message = format!("the minimum {low} is above the maximum {high}");
            d.error(fields.node(), fields.path(), message);
            None
        }
        _ => Some(Range { min, max }),
    }
}

pub(crate) fn decode_count_range(
    d: &mut Decoder<'_>,
    node: &Node,
    path: &str,
) -> Option<Range<u32>> {
    decode_range(d, node, path, "a count", parse_count_range, parse_count)
}

fn decode_size_range(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<Range<f64>> {
    decode_range(d, node, path, "a size", parse_size_range, parse_size)
}

fn decode_cpu(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<CpuSpec> {
    if node.scalar().is_some() {
        return grammar(d, node, path, "a CPU spec", ResourcesSpec::parse_cpu);
    }
    let fields = d.fields(node, path, CPU_FIELDS)?;
    if fields.has("min") || fields.has("max") {
        let count = range_from_fields(d, &fields, "a count", parse_count)?;
        return Some(CpuSpec { arch: None, count });
    }
    let arch = fields.with(d, "arch", |d, node, path| {
        grammar(d, node, path, "`x86` or `arm`", str::parse::<CpuArch>)
    });
    let count = fields
        .with(d, "count", decode_count_range)
        .unwrap_or(CpuSpec::default().count);
    Some(CpuSpec { arch, count })
}

fn decode_disk(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<DiskSpec> {
    if node.scalar().is_some() {
        return decode_size_range(d, node, path).map(|size| DiskSpec { size });
    }
    let fields = d.fields(node, path, DISK_FIELDS)?;
    match fields.get("size") {
        Some(size) => {
            decode_size_range(d, size, &fields.path_of("size")).map(|size| DiskSpec { size })
        }
        None => {
            fields.missing(d, "size");
            None
        }
    }
}

fn decode_gpu(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<GpuSpec> {
    if node.scalar().is_some() {
        return grammar(d, node, path, "a GPU spec", ResourcesSpec::parse_gpu);
    }
    let fields = d.fields(node, path, GPU_FIELDS)?;
    let vendor = fields.with(d, "vendor", |d, node, path| {
        grammar(d, node, path, "a GPU vendor", str::parse::<GpuVendor>)
    });
    let name = fields.with(d, "name", |d, node, path| match node.scalar() {
        Some(text) => Some(text.split(',').map(|n| n.trim().to_string()).collect()),
        None => d.strings(node, path),
    });
    let count = fields
        .with(d, "count", decode_count_range)
        .unwrap_or(Range::at_least(1));
    let memory = fields.with(d, "memory", decode_size_range);
    let total_memory = fields.with(d, "total_memory", decode_size_range);
    let compute_capability = fields.with(d, "compute_capability", |d, node, path| {
        grammar(
            d,
            node,
            path,
            "a compute capability",
            parse_compute_capability,
        )
    });
    let spec = GpuSpec {
        vendor,
        name,
        count,
        memory,
        total_memory,
        compute_capability,
    }
    .with_implied_vendor();
    let written = format!("{spec}");
    match spec.check(&written) {
        Ok(()) => Some(spec),
        Err(message) => {
            d.error(node, path, message);
            None
        }
    }
}

fn parse_compute_capability(s: &str) -> Result<String, String> {
    let s = s.trim();
    let valid = s.split_once('.').is_some_and(|(major, minor)| {
        [major, minor]
            .iter()
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
    });
    if valid {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{s:?} is not a compute capability; write `major.minor`, e.g. `8.0`"
        ))
    }
}

#[cfg(test)]
mod tests;

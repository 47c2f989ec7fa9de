//! Reading gpuhunt v2 CSV catalogs (one file per backend) into a [`Catalog`].
//!
//! Row format: `instance_name,location,price,cpu,memory,gpu_count,gpu_name,gpu_memory,spot,
//! disk_size,gpu_vendor,flags,cpu_arch,provider_data` (columns are found by their header name).
//! A malformed row is skipped, counted and reported with its file and line; it is never fatal.
//! A file that cannot be read, or lacks a required column, is skipped with a warning.

use super::table::{Catalog, CatalogBuilder, MachineRow, SourceStats};
use flotilla_protocol::config::{CpuArch, GpuVendor};
use std::io::Read;
use std::path::{Path, PathBuf};

/// How many malformed rows of one file are logged one by one before only counting them.
const LOGGED_BAD_ROWS_PER_FILE: usize = 5;

/// Loads every `*.csv` file of `dir` (sorted by name), the file stem naming the backend.
/// Errors only when the directory itself cannot be listed.
pub fn load_dir(dir: &Path) -> std::io::Result<Catalog> {
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("csv") || !path.is_file() {
            continue;
        }
        if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
            files.push((stem.to_string(), path.clone()));
        }
    }
    files.sort();
    Ok(load_files(&files))
}

/// Loads the given `(backend, path)` files into one catalog.
pub fn load_files(files: &[(String, PathBuf)]) -> Catalog {
    let mut builder = CatalogBuilder::new();
    for (backend, path) in files {
        add_file(&mut builder, backend, path);
    }
    builder.finish()
}

/// Adds one CSV file's rows under `backend`; problems become warnings, never errors.
pub fn add_file(builder: &mut CatalogBuilder, backend: &str, path: &Path) {
    match std::fs::File::open(path) {
        Ok(file) => add_csv(builder, backend, &path.display().to_string(), file),
        Err(e) => {
            let msg = format!("{}: cannot read catalog file: {e}", path.display());
            tracing::warn!("{msg}");
            builder.warn(msg);
        }
    }
}

/// The column positions of one file.
struct Columns {
    instance_name: usize,
    location: usize,
    price: usize,
    cpu: usize,
    memory: usize,
    gpu_count: usize,
    gpu_name: usize,
    gpu_memory: usize,
    spot: usize,
    disk_size: Option<usize>,
    gpu_vendor: Option<usize>,
    cpu_arch: Option<usize>,
}

impl Columns {
    fn from_header(header: &csv::ByteRecord) -> Result<Self, String> {
        let find = |name: &str| {
            header
                .iter()
                .position(|h| h.eq_ignore_ascii_case(name.as_bytes()))
        };
        let need = |name: &str| find(name).ok_or_else(|| format!("no `{name}` column"));
        Ok(Self {
            instance_name: need("instance_name")?,
            location: need("location")?,
            price: need("price")?,
            cpu: need("cpu")?,
            memory: need("memory")?,
            gpu_count: need("gpu_count")?,
            gpu_name: need("gpu_name")?,
            gpu_memory: need("gpu_memory")?,
            spot: need("spot")?,
            disk_size: find("disk_size"),
            gpu_vendor: find("gpu_vendor"),
            cpu_arch: find("cpu_arch"),
        })
    }
}

/// Checks that a CSV document starts with a gpuhunt header (the live catalog checks a
/// download before caching it).
pub fn check_header(csv: &[u8]) -> Result<(), String> {
    let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(csv);
    let header = reader.byte_headers().map_err(|e| e.to_string())?;
    Columns::from_header(header).map(|_| ())
}

/// Adds the rows of one CSV document read from `input`; `origin` names it in warnings.
pub fn add_csv(builder: &mut CatalogBuilder, backend: &str, origin: &str, input: impl Read) {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .buffer_capacity(256 * 1024)
        .from_reader(input);
    let mut stats = SourceStats {
        backend: backend.to_string(),
        origin: origin.to_string(),
        rows: 0,
        skipped: 0,
        version: None,
    };
    let columns = match reader.byte_headers().map_err(|e| e.to_string()) {
        Ok(h) => Columns::from_header(h).map(|c| (c, h.len())),
        Err(e) => Err(e),
    };
    let (columns, width) = match columns {
        Ok(c) => c,
        Err(e) => {
            let msg = format!("{origin}: not a gpuhunt catalog ({e}); file skipped");
            tracing::warn!("{msg}");
            builder.warn(msg);
            builder.add_source(stats);
            return;
        }
    };
    let backend_id = builder.backend_id(backend);
    let mut record = csv::ByteRecord::new();
    let mut first_problem: Option<String> = None;
    loop {
        let result = reader.read_byte_record(&mut record);
        let line = match &result {
            Ok(_) => record.position().map(|p| p.line()),
            Err(e) => e.position().map(|p| p.line()),
        }
        .unwrap_or_else(|| reader.position().line());
        let problem = match result {
            Ok(false) => break,
            Ok(true) if record.len() != width => Some(format!(
                "{} fields where the header has {width}",
                record.len()
            )),
            Ok(true) => match parse_row(&record, &columns) {
                Ok(row) => {
                    builder.push(backend_id, row.region, row.price, row.spot, &row.machine);
                    stats.rows += 1;
                    None
                }
                Err(e) => Some(e),
            },
            // The csv reader resynchronizes at the next line; an I/O error ends the file.
            Err(e) => {
                let fatal = matches!(e.kind(), csv::ErrorKind::Io(_));
                if fatal {
                    let msg = format!("{origin}:{line}: read error, rest of file skipped: {e}");
                    tracing::warn!("{msg}");
                    builder.warn(msg);
                    break;
                }
                Some(e.to_string())
            }
        };
        if let Some(problem) = problem {
            stats.skipped += 1;
            if stats.skipped <= LOGGED_BAD_ROWS_PER_FILE {
                tracing::warn!("{origin}:{line}: malformed catalog row skipped: {problem}");
            }
            first_problem.get_or_insert_with(|| format!("line {line}: {problem}"));
        }
    }
    if let Some(first) = first_problem {
        let msg = format!(
            "{origin}: {} malformed row{} skipped (first: {first})",
            stats.skipped,
            if stats.skipped == 1 { "" } else { "s" }
        );
        if stats.skipped > LOGGED_BAD_ROWS_PER_FILE {
            tracing::warn!("{msg}");
        }
        builder.warn(msg);
    }
    builder.add_source(stats);
}

/// One valid row, borrowing its strings from the record.
struct ParsedRow<'a> {
    region: &'a str,
    price: f64,
    spot: bool,
    machine: MachineRow<'a>,
}

fn field<'a>(record: &'a csv::ByteRecord, index: usize, name: &str) -> Result<&'a str, String> {
    let raw = record.get(index).unwrap_or_default();
    std::str::from_utf8(raw)
        .map(str::trim)
        .map_err(|_| format!("{name} is not UTF-8"))
}

fn number(text: &str, name: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        Ok(_) => Err(format!("{name} {text:?} must be a non-negative number")),
        Err(_) => Err(format!("{name} {text:?} is not a number")),
    }
}

/// A whole count: `8` or `8.0`.
fn count(text: &str, name: &str) -> Result<u32, String> {
    if let Ok(v) = text.parse::<u32>() {
        return Ok(v);
    }
    match text.parse::<f64>() {
        Ok(v) if v.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&v) => Ok(v as u32),
        _ => Err(format!("{name} {text:?} is not a whole number")),
    }
}

fn parse_row<'a>(record: &'a csv::ByteRecord, c: &Columns) -> Result<ParsedRow<'a>, String> {
    let instance_type = field(record, c.instance_name, "instance_name")?;
    if instance_type.is_empty() {
        return Err("instance_name is empty".into());
    }
    let region = field(record, c.location, "location")?;
    let price = number(field(record, c.price, "price")?, "price")?;
    let cpus = count(field(record, c.cpu, "cpu")?, "cpu")?;
    let memory_gb = number(field(record, c.memory, "memory")?, "memory")?;
    let gpu_count_text = field(record, c.gpu_count, "gpu_count")?;
    let gpu_count = if gpu_count_text.is_empty() {
        0
    } else {
        count(gpu_count_text, "gpu_count")?
    };
    let gpu_name = field(record, c.gpu_name, "gpu_name")?;
    let gpu_memory_text = field(record, c.gpu_memory, "gpu_memory")?;
    let (gpu_memory_gb, gpu_vendor) = if gpu_count == 0 {
        (0.0, GpuVendor::Nvidia)
    } else {
        if gpu_name.is_empty() {
            return Err(format!("gpu_count is {gpu_count} but gpu_name is empty"));
        }
        let memory = number(gpu_memory_text, "gpu_memory")?;
        let vendor_text = match c.gpu_vendor {
            Some(i) => field(record, i, "gpu_vendor")?,
            None => "",
        };
        (memory, parse_vendor(vendor_text)?)
    };
    let spot = parse_bool(field(record, c.spot, "spot")?)?;
    let disk_gb = match c.disk_size {
        Some(i) => match field(record, i, "disk_size")? {
            "" => None,
            text => Some(number(text, "disk_size")?),
        },
        None => None,
    };
    let cpu_arch = match c.cpu_arch {
        Some(i) => parse_arch(field(record, i, "cpu_arch")?)?,
        None => CpuArch::X86,
    };
    Ok(ParsedRow {
        region,
        price,
        spot,
        machine: MachineRow {
            instance_type,
            cpus,
            cpu_arch,
            memory_gb,
            disk_gb,
            gpu_count,
            gpu_name,
            gpu_memory_gb,
            gpu_vendor,
        },
    })
}

fn parse_bool(text: &str) -> Result<bool, String> {
    match text {
        "True" | "true" | "TRUE" | "1" => Ok(true),
        "False" | "false" | "FALSE" | "0" => Ok(false),
        _ => Err(format!("spot {text:?} is not True or False")),
    }
}

/// gpuhunt vendor names; empty means nvidia (README of the catalogs).
pub(super) fn parse_vendor(text: &str) -> Result<GpuVendor, String> {
    match text.to_ascii_lowercase().as_str() {
        "" | "nvidia" => Ok(GpuVendor::Nvidia),
        "amd" => Ok(GpuVendor::Amd),
        "google" | "tpu" => Ok(GpuVendor::Google),
        "intel" => Ok(GpuVendor::Intel),
        "tenstorrent" | "tt" => Ok(GpuVendor::Tenstorrent),
        _ => Err(format!("gpu_vendor {text:?} is not a known vendor")),
    }
}

fn parse_arch(text: &str) -> Result<CpuArch, String> {
    match text.to_ascii_lowercase().as_str() {
        "" | "x86" | "x86_64" | "amd64" => Ok(CpuArch::X86),
        "arm" | "arm64" | "aarch64" => Ok(CpuArch::Arm),
        _ => Err(format!("cpu_arch {text:?} is not x86 or arm")),
    }
}

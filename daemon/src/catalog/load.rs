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
            Ok(true) => match Fields::new(&record).and_then(|f| parse_row(f, &columns)) {
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

/// One record whose bytes were checked as UTF-8 once.
#[derive(Clone, Copy)]
struct Fields<'a> {
    record: &'a csv::ByteRecord,
    text: &'a str,
}

impl<'a> Fields<'a> {
    fn new(record: &'a csv::ByteRecord) -> Result<Self, String> {
        let text = std::str::from_utf8(record.as_slice())
            .map_err(|_| "the row is not UTF-8".to_string())?;
        Ok(Fields { record, text })
    }

    fn get(self, index: usize, name: &str) -> Result<&'a str, String> {
        self.record
            .range(index)
            .and_then(|r| self.text.get(r))
            .map(str::trim_ascii)
            .ok_or_else(|| format!("{name} is not UTF-8"))
    }
}

fn number(text: &str, name: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        // `abs` turns `-0` into `0`, so price bits sort like prices.
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v.abs()),
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

fn parse_row<'a>(record: Fields<'a>, c: &Columns) -> Result<ParsedRow<'a>, String> {
    let instance_type = record.get(c.instance_name, "instance_name")?;
    if instance_type.is_empty() {
        return Err("instance_name is empty".into());
    }
    let region = record.get(c.location, "location")?;
    let price = number(record.get(c.price, "price")?, "price")?;
    let cpus = count(record.get(c.cpu, "cpu")?, "cpu")?;
    let memory_gb = number(record.get(c.memory, "memory")?, "memory")?;
    let gpu_count_text = record.get(c.gpu_count, "gpu_count")?;
    let gpu_count = if gpu_count_text.is_empty() {
        0
    } else {
        count(gpu_count_text, "gpu_count")?
    };
    let gpu_name = record.get(c.gpu_name, "gpu_name")?;
    let gpu_memory_text = record.get(c.gpu_memory, "gpu_memory")?;
    let (gpu_memory_gb, gpu_vendor) = if gpu_count == 0 {
        (0.0, GpuVendor::Nvidia)
    } else {
        if gpu_name.is_empty() {
            return Err(format!("gpu_count is {gpu_count} but gpu_name is empty"));
        }
        let memory = number(gpu_memory_text, "gpu_memory")?;
        let vendor_text = match c.gpu_vendor {
            Some(i) => record.get(i, "gpu_vendor")?,
            None => "",
        };
        (memory, parse_vendor(vendor_text)?)
    };
    let spot = parse_bool(record.get(c.spot, "spot")?)?;
    let disk_gb = match c.disk_size {
        Some(i) => match record.get(i, "disk_size")? {
            "" => None,
            text => Some(number(text, "disk_size")?),
        },
        None => None,
    };
    let cpu_arch = match c.cpu_arch {
        Some(i) => parse_arch(record.get(i, "cpu_arch")?)?,
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
    if text.is_empty() {
        return Ok(GpuVendor::Nvidia);
    }
    text.parse::<GpuVendor>()
        .map_err(|_| format!("gpu_vendor {text:?} is not a known vendor"))
}

fn parse_arch(text: &str) -> Result<CpuArch, String> {
    match text {
        "" | "x86" => Ok(CpuArch::X86),
        "arm" => Ok(CpuArch::Arm),
        _ => text
            .parse::<CpuArch>()
            .map_err(|_| format!("cpu_arch {text:?} is not x86 or arm")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_grammar() {
        assert_eq!(count("8", "cpu"), Ok(8));
        assert_eq!(count("8.0", "cpu"), Ok(8));
        assert!(count("8.5", "cpu").is_err());
        assert!(count("-1", "cpu").is_err());
        assert_eq!(number("0.0385", "price"), Ok(0.0385));
        assert_eq!(
            number("-0", "price").map(f64::to_bits),
            Ok(0.0f64.to_bits())
        );
        assert!(number("NaN", "price").is_err());
        assert!(number("inf", "price").is_err());
        assert_eq!(parse_bool("True"), Ok(true));
        assert_eq!(parse_bool("false"), Ok(false));
        assert_eq!(parse_vendor(""), Ok(GpuVendor::Nvidia));
        assert_eq!(parse_vendor("tenstorrent"), Ok(GpuVendor::Tenstorrent));
        assert_eq!(parse_arch(""), Ok(CpuArch::X86));
        assert_eq!(parse_arch("aarch64"), Ok(CpuArch::Arm));
    }

    #[test]
    fn a_header_in_another_column_order_still_loads() {
        let csv = "price,instance_name,location,cpu,memory,gpu_count,gpu_name,gpu_memory,spot\n\
                   2.5,x1,eu,16,64,2,L4,24,False\n";
        assert_eq!(check_header(csv.as_bytes()), Ok(()));
        let mut b = CatalogBuilder::new();
        add_csv(&mut b, "acme", "inline", csv.as_bytes());
        let c = b.finish();
        let offer = c.offers().next().expect("one offer");
        assert_eq!((offer.instance_type.as_str(), offer.price), ("x1", 2.5));
        assert_eq!(offer.resources.gpu.count.min, Some(2));
        assert_eq!(offer.resources.disk.size.min, None);
    }
}

//! The supervisor's `inventory` output, turned into a machine's resources; GPU names normalised to catalog names.

use flotilla_protocol::config::{CpuArch, GpuVendor};
use flotilla_protocol::model::{Gpu, InstanceResources};

#[derive(Debug, Clone, PartialEq)]
pub struct Inventory {
    pub arch: CpuArch,
    pub cpus: u32,
    pub memory_gb: f64,
    pub disk_gb: Option<f64>,
    pub docker: bool,
    pub gpus: Vec<Gpu>,
}

impl Inventory {
    pub fn resources(&self) -> InstanceResources {
        InstanceResources {
            cpus: self.cpus,
            cpu_arch: self.arch,
            memory_gb: self.memory_gb,
            disk_gb: self.disk_gb,
            gpus: self.gpus.clone(),
        }
    }
}

/// Parses `key=value` lines; unknown keys are ignored, missing ones default to nothing.
pub fn parse_inventory(text: &str) -> Inventory {
    let mut inv = Inventory {
        arch: CpuArch::X86,
        cpus: 0,
        memory_gb: 0.0,
        disk_gb: None,
        docker: false,
        gpus: Vec::new(),
    };
    let mut amd_header: Option<Vec<String>> = None;
    for line in text.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim();
        match key {
            "arch" => {
                inv.arch = if matches!(value, "aarch64" | "arm64") {
                    CpuArch::Arm
                } else {
                    CpuArch::X86
                }
            }
            "cpus" => inv.cpus = value.parse().unwrap_or(0),
            "memory_kib" => inv.memory_gb = value.parse::<f64>().unwrap_or(0.0) / 1024.0 / 1024.0,
            "disk_kib" => {
                inv.disk_gb = value
                    .parse::<f64>()
                    .ok()
                    .filter(|d| *d > 0.0)
                    .map(|d| d / 1024.0 / 1024.0)
            }
            "docker" => inv.docker = value == "1",
            "nvidia" => {
                if let Some(g) = parse_nvidia_smi_line(value) {
                    inv.gpus.push(g);
                }
            }
            "amd" => {
                let cols: Vec<String> = value.split(',').map(|c| c.trim().to_string()).collect();
                match &amd_header {
                    None => amd_header = Some(cols),
                    Some(h) => {
                        if let Some(g) = parse_amd_smi_row(h, &cols) {
                            inv.gpus.push(g);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    inv
}

/// One line of `nvidia-smi --query-gpu=name,memory.total --format=csv,noheader,nounits`,
/// e.g. `NVIDIA H100 80GB HBM3, 81559`.
pub fn parse_nvidia_smi_line(line: &str) -> Option<Gpu> {
    let (name, mem) = line.rsplit_once(',')?;
    let mib: f64 = mem.trim().trim_end_matches("MiB").trim().parse().ok()?;
    Some(Gpu {
        name: normalize_gpu_name(name.trim()),
        memory_gb: mib_to_gb(mib),
        vendor: GpuVendor::Nvidia,
    })
}

/// A row of `amd-smi static --asic --vram --csv`, read by its header's column names.
pub fn parse_amd_smi_row(header: &[String], row: &[String]) -> Option<Gpu> {
    let col = |names: &[&str]| {
        header
            .iter()
            .position(|h| names.iter().any(|n| h.eq_ignore_ascii_case(n)))
            .and_then(|i| row.get(i))
    };
    let name = col(&["market_name", "asic_market_name"])?;
    let size = col(&["size", "vram_size"])?;
    let mib: f64 = size
        .trim()
        .trim_end_matches("MB")
        .trim_end_matches("MiB")
        .trim()
        .parse()
        .ok()?;
    Some(Gpu {
        name: normalize_gpu_name(name),
        memory_gb: mib_to_gb(mib),
        vendor: GpuVendor::Amd,
    })
}

fn mib_to_gb(mib: f64) -> f64 {
    (mib / 1024.0 * 10.0).round() / 10.0
}

/// Turns a tool's GPU name into the catalog's short name (SPEC section 3):
/// `NVIDIA H100 80GB HBM3` -> `H100`, `NVIDIA H100 NVL` -> `H100NVL`, `NVIDIA A100-SXM4-80GB` -> `A100`,
/// `NVIDIA GeForce RTX 4090` -> `RTX4090`, `NVIDIA RTX A6000` -> `A6000`, `Tesla T4` -> `T4`,
/// `AMD Instinct MI300X` -> `MI300X`.
pub fn normalize_gpu_name(raw: &str) -> String {
    const DROP: &[&str] = &[
        "NVIDIA", "AMD", "TESLA", "GEFORCE", "INSTINCT", "RADEON", "QUADRO", "PCIE", "SXM",
        "SXM2", "SXM4", "SXM5", "HBM2", "HBM2E", "HBM3", "HBM3E", "GENERATION", "OAM",
    ];
    let mut tokens: Vec<String> = Vec::new();
    for word in raw.split_whitespace() {
        // `A100-SXM4-80GB`: the model is the first part.
        let word = word.split('-').next().unwrap_or(word);
        let upper = word.to_ascii_uppercase();
        if upper.is_empty() || DROP.contains(&upper.as_str()) || is_memory_token(&upper) {
            continue;
        }
        tokens.push(word.to_string());
    }
    let mut out = String::new();
    let mut i = 0;
    while i < tokens.len() {
        let t = &tokens[i];
        if t.eq_ignore_ascii_case("RTX") {
            match tokens.get(i + 1) {
                // `RTX 4090` -> RTX4090; `RTX A6000` -> A6000
                Some(next) if next.starts_with(|c: char| c.is_ascii_digit()) => {
                    out.push_str("RTX");
                }
                _ => {}
            }
        } else {
            out.push_str(t);
        }
        i += 1;
    }
    if out.is_empty() {
        raw.trim().replace(' ', "")
    } else {
        out
    }
}

fn is_memory_token(t: &str) -> bool {
    t.ends_with("GB") && t[..t.len() - 2].chars().all(|c| c.is_ascii_digit()) && t.len() > 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_names_are_normalised_as_the_spec_says() {
        for (raw, want) in [
            ("NVIDIA H100 80GB HBM3", "H100"),
            ("NVIDIA H100 NVL", "H100NVL"),
            ("NVIDIA A100-SXM4-80GB", "A100"),
            ("NVIDIA A10G", "A10G"),
            ("NVIDIA GeForce RTX 4090", "RTX4090"),
            ("NVIDIA RTX A6000", "A6000"),
            ("Tesla T4", "T4"),
            ("NVIDIA L40S", "L40S"),
            ("AMD Instinct MI300X", "MI300X"),
            ("NVIDIA H200", "H200"),
            ("NVIDIA A100 80GB PCIe", "A100"),
        ] {
            assert_eq!(normalize_gpu_name(raw), want, "{raw}");
        }
    }

    #[test]
    fn parses_real_nvidia_smi_output() {
        let text = "arch=x86_64\ncpus=64\nmemory_kib=1056668456\ndisk_kib=1921724608\ndocker=1\n\
                    nvidia=NVIDIA H100 80GB HBM3, 81559\nnvidia=NVIDIA H100 80GB HBM3, 81559\n";
        let inv = parse_inventory(text);
        assert_eq!(inv.cpus, 64);
        assert!((inv.memory_gb - 1007.7).abs() < 0.1, "{}", inv.memory_gb);
        assert!(inv.docker);
        assert_eq!(inv.gpus.len(), 2);
        assert_eq!(inv.gpus[0].name, "H100");
        assert_eq!(inv.gpus[0].memory_gb, 79.6);
    }

    #[test]
    fn no_gpus_and_missing_keys() {
        let inv = parse_inventory("arch=aarch64\ncpus=4\n");
        assert_eq!(inv.arch, CpuArch::Arm);
        assert_eq!(inv.cpus, 4);
        assert!(inv.gpus.is_empty());
        assert_eq!(inv.disk_gb, None);
    }
}

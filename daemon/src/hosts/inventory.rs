//! The supervisor's `inventory` output, turned into a machine's resources; GPU names normalised to catalog names.

use flotilla_protocol::config::{CpuArch, GpuVendor};
use flotilla_protocol::model::{Gpu, HostSoftware, InstanceResources};

#[derive(Debug, Clone, PartialEq)]
pub struct Inventory {
    pub arch: CpuArch,
    pub cpus: u32,
    pub memory_gb: f64,
    pub disk_gb: Option<f64>,
    pub docker: bool,
    pub uv: bool,
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

    pub fn software(&self) -> HostSoftware {
        HostSoftware {
            docker: self.docker,
            uv: self.uv,
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
        uv: false,
        gpus: Vec::new(),
    };
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
            "uv" => inv.uv = value == "1",
            "nvidia" => {
                if let Some(g) = parse_smi_line(value, GpuVendor::Nvidia) {
                    inv.gpus.push(g);
                }
            }
            "amd" => {
                if let Some(g) = parse_smi_line(value, GpuVendor::Amd) {
                    inv.gpus.push(g);
                }
            }
            _ => {}
        }
    }
    inv
}

/// One GPU as `NAME, MEMORY_MIB`: a line of `nvidia-smi --query-gpu=name,memory.total
/// --format=csv,noheader,nounits` (`NVIDIA H100 80GB HBM3, 81559`), or the supervisor's summary
/// of `amd-smi static --asic --vram` (`AMD Instinct MI300X, 196592`).
pub fn parse_smi_line(line: &str, vendor: GpuVendor) -> Option<Gpu> {
    let (name, mem) = line.rsplit_once(',')?;
    let mib: f64 = mem
        .trim()
        .trim_end_matches("MiB")
        .trim_end_matches("MB")
        .trim()
        .parse()
        .ok()?;
    let name = normalize_gpu_name(name.trim());
    Some(Gpu {
        memory_gb: corrected_memory_gb(&name, mib),
        name,
        vendor,
    })
}

/// The memory of known GPUs in GiB (gpuhunt's table, which dstack uses): a GPU's tools report a
/// little less than its nominal size (an H100 80GB shows 81559 MiB, 79.6 GiB).
const KNOWN_GPU_MEMORY_GIB: &[(&str, u32)] = &[
    ("A10", 24),
    ("A16", 16),
    ("A40", 48),
    ("A100", 40),
    ("A100", 80),
    ("A10G", 24),
    ("A4000", 16),
    ("A4500", 20),
    ("A5000", 24),
    ("A6000", 48),
    ("H100", 80),
    ("H100NVL", 94),
    ("H200", 141),
    ("H200NVL", 141),
    ("B200", 180),
    ("GB200", 186),
    ("B300", 270),
    ("L4", 24),
    ("L40", 48),
    ("L40S", 48),
    ("P100", 16),
    ("RTX2060", 6),
    ("RTX2060", 12),
    ("RTX2060SUPER", 8),
    ("RTX2070", 8),
    ("RTX2070SUPER", 8),
    ("RTX2080", 8),
    ("RTX2080SUPER", 8),
    ("RTX2080Ti", 11),
    ("RTX3050", 6),
    ("RTX3050", 8),
    ("RTX3060", 8),
    ("RTX3060", 12),
    ("RTX3060Ti", 8),
    ("RTX3070", 8),
    ("RTX3070Ti", 8),
    ("RTX3080", 10),
    ("RTX3080Ti", 12),
    ("RTX3090", 24),
    ("RTX3090Ti", 24),
    ("RTX4060", 8),
    ("RTX4060Ti", 8),
    ("RTX4060Ti", 16),
    ("RTX4070", 12),
    ("RTX4070SUPER", 12),
    ("RTX4070Ti", 12),
    ("RTX4070TiSUPER", 16),
    ("RTX4080", 16),
    ("RTX4080SUPER", 16),
    ("RTX4090", 24),
    ("RTX5060", 8),
    ("RTX5060Ti", 8),
    ("RTX5060Ti", 16),
    ("RTX5070", 12),
    ("RTX5070Ti", 16),
    ("RTX5080", 16),
    ("RTX5090", 32),
    ("RTX6000", 24),
    ("RTX2000Ada", 16),
    ("RTX4000Ada", 20),
    ("RTX6000Ada", 48),
    ("RTXPRO4500", 32),
    ("RTXPRO6000", 96),
    ("T4", 16),
    ("V100", 16),
    ("V100", 32),
    ("GH200", 96),
    ("MI100", 32),
    ("MI210", 64),
    ("MI250", 128),
    ("MI250X", 128),
    ("MI300A", 128),
    ("MI300X", 192),
    ("MI308X", 128),
    ("MI325X", 288),
    ("MI350X", 288),
    ("MI355X", 288),
];

/// A GPU's memory as dstack reports it (gpuhunt's `correct_gpu_memory_gib`): the nearest known
/// size of that GPU when within 7% of it (so `gpu: H100:80GB` matches a real H100 80GB), else
/// the reported size rounded to whole GiB.
fn corrected_memory_gb(name: &str, mib: f64) -> f64 {
    let gib = mib / 1024.0;
    let closest = KNOWN_GPU_MEMORY_GIB
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, m)| f64::from(*m))
        .min_by(|a, b| (a - gib).abs().total_cmp(&(b - gib).abs()));
    match closest {
        Some(known) if (known - gib).abs() / known < 0.07 => known,
        _ => gib.round(),
    }
}

/// Turns a tool's GPU name into the catalog's short name (SPEC section 3):
/// `NVIDIA H100 80GB HBM3` -> `H100`, `NVIDIA H100 NVL` -> `H100NVL`, `NVIDIA A100-SXM4-80GB` -> `A100`,
/// `NVIDIA GeForce RTX 4090` -> `RTX4090`, `NVIDIA RTX A6000` -> `A6000`, `Tesla T4` -> `T4`,
/// `AMD Instinct MI300X` -> `MI300X`.
pub fn normalize_gpu_name(raw: &str) -> String {
    const DROP: &[&str] = &[
        "NVIDIA",
        "AMD",
        "TESLA",
        "GEFORCE",
        "INSTINCT",
        "RADEON",
        "QUADRO",
        "PCIE",
        "SXM",
        "SXM2",
        "SXM4",
        "SXM5",
        "HBM2",
        "HBM2E",
        "HBM3",
        "HBM3E",
        "GENERATION",
        "OAM",
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
        // 81559 MiB (79.6 GiB, what a real H100 80GB reports) is the known 80 GiB, as dstack has it.
        assert_eq!(inv.gpus[0].memory_gb, 80.0);
    }

    #[test]
    fn gpu_memory_is_corrected_to_the_known_size_as_dstack_does() {
        assert_eq!(corrected_memory_gb("A100", 81920.0 - 900.0), 80.0);
        assert_eq!(corrected_memory_gb("A100", 40960.0 - 500.0), 40.0);
        assert_eq!(corrected_memory_gb("V100", 32510.0), 32.0);
        assert_eq!(corrected_memory_gb("RTX4090", 24564.0), 24.0);
        // Too far from a known size, or an unknown GPU: rounded to whole GiB.
        assert_eq!(corrected_memory_gb("H100", 60000.0), 59.0);
        assert_eq!(corrected_memory_gb("NEWGPU", 12000.0), 12.0);
    }

    /// The real supervisor script reading fake `amd-smi` / `nvidia-smi` that print real output.
    fn inventory_with(tool: &str, output: &str) -> Inventory {
        let dir = tempfile::tempdir().expect("tmp");
        let bin = dir.path().join(tool);
        std::fs::write(&bin, format!("#!/bin/sh\ncat <<'EOF'\n{output}EOF\n")).expect("write");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let script = dir.path().join("supervisor.sh");
        std::fs::write(&script, crate::hosts::SUPERVISOR_SCRIPT).expect("script");
        let out = std::process::Command::new("sh")
            .arg(&script)
            .arg("inventory")
            .env("PATH", format!("{}:/usr/bin:/bin", dir.path().display()))
            .env("FLOTILLA_ROOT", dir.path())
            .output()
            .expect("run supervisor");
        parse_inventory(&String::from_utf8_lossy(&out.stdout))
    }

    #[test]
    fn parses_amd_smi_static_output() {
        let out = "GPU: 0\n    ASIC:\n        MARKET_NAME: AMD Instinct MI300X\n        VENDOR_ID: 0x1002\n        DEVICE_ID: 0x74a1\n        NUM_COMPUTE_UNITS: 304\n        TARGET_GRAPHICS_VERSION: gfx942\n    VRAM:\n        TYPE: HBM\n        VENDOR: N/A\n        SIZE: 196592 MB\n        BIT_WIDTH: 8192\n\nGPU: 1\n    ASIC:\n        MARKET_NAME: AMD Instinct MI300X\n        VENDOR_ID: 0x1002\n    VRAM:\n        TYPE: HBM\n        SIZE: 196592 MB\n";
        let inv = inventory_with("amd-smi", out);
        assert_eq!(inv.gpus.len(), 2, "{inv:?}");
        assert_eq!(inv.gpus[0].name, "MI300X");
        assert_eq!(inv.gpus[0].vendor, GpuVendor::Amd);
        assert_eq!(inv.gpus[0].memory_gb, 192.0);
        assert!(inv.cpus >= 1);
    }

    #[test]
    fn parses_nvidia_smi_output_through_the_supervisor() {
        let inv = inventory_with("nvidia-smi", "NVIDIA A100-SXM4-80GB, 81920\nNVIDIA A100-SXM4-80GB, 81920\nNVIDIA A100-SXM4-80GB, 81920\nNVIDIA A100-SXM4-80GB, 81920\n");
        assert_eq!(inv.gpus.len(), 4);
        assert_eq!(inv.gpus[3].name, "A100");
        assert_eq!(inv.gpus[3].memory_gb, 80.0);
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

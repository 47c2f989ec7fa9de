//! A cluster's offers from one `sinfo` call: the nodes grouped by partition and shape (CPUs,
//! memory, GPUs from GRES), the partition named in the instance type, price 0, availability from
//! the nodes' states. Pure: parsed from the text the login node answers.

use super::config::ClusterConfig;
use crate::catalog::matching::exact_spec;
use flotilla_protocol::config::{CpuArch, GpuVendor};
use flotilla_protocol::model::{Availability, Gpu, InstanceResources, Offer};

/// One node of one partition, as `sinfo -h -N -o '%P|%N|%c|%m|%G|%T|%a'` prints it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeLine {
    pub partition: String,
    pub node: String,
    pub cpus: u32,
    pub memory_mb: u64,
    /// GPUs from the node's GRES: (type as Slurm names it, count).
    pub gpus: Vec<(Option<String>, u32)>,
    pub state: String,
    pub partition_up: bool,
}

/// What one `cluster` call tells: the nodes and whether Pyxis is there.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterView {
    pub nodes: Vec<NodeLine>,
    pub pyxis: bool,
}

impl ClusterView {
    /// The cluster's partitions, in the order sinfo lists them.
    pub fn partitions(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for n in &self.nodes {
            if !out.contains(&n.partition) {
                out.push(n.partition.clone());
            }
        }
        out
    }
}

/// Parses the `cluster` verb's answer; a line it cannot read is an error naming it.
pub fn parse_cluster(text: &str) -> Result<ClusterView, String> {
    let mut view = ClusterView::default();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(v) = line.strip_prefix("pyxis=") {
            view.pyxis = v == "1";
            continue;
        }
        let f: Vec<&str> = line.split('|').collect();
        if f.len() != 7 {
            return Err(format!("unexpected sinfo line {line:?}"));
        }
        let number = |what: &str, s: &str| -> Result<u64, String> {
            s.trim_end_matches('+')
                .parse::<u64>()
                .map_err(|_| format!("sinfo line {line:?}: {what} {s:?} is not a number"))
        };
        view.nodes.push(NodeLine {
            partition: f[0].trim_end_matches('*').to_string(),
            node: f[1].to_string(),
            cpus: u32::try_from(number("CPUs", f[2])?).unwrap_or(u32::MAX),
            memory_mb: number("memory", f[3])?,
            gpus: parse_gres(f[4]),
            state: f[5].to_string(),
            partition_up: f[6] == "up",
        });
    }
    Ok(view)
}

/// The GPUs of a GRES string: `gpu:h100:2`, `gpu:2`, `gpu:a100:4(S:0-1),gpu:v100:2`, `(null)`.
pub fn parse_gres(gres: &str) -> Vec<(Option<String>, u32)> {
    let mut out = Vec::new();
    for item in split_gres(gres) {
        let item = item.split('(').next().unwrap_or_default();
        let parts: Vec<&str> = item.split(':').collect();
        if parts.first() != Some(&"gpu") {
            continue;
        }
        match parts.as_slice() {
            [_, count] => {
                if let Ok(n) = count.parse() {
                    out.push((None, n));
                }
            }
            [_, kind, count, ..] => {
                if let Ok(n) = count.parse() {
                    out.push((Some((*kind).to_string()), n));
                }
            }
            _ => {}
        }
    }
    out
}

/// Splits on the commas between GRES items, not those inside `(S:0,1)`.
fn split_gres(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// How a node's state counts for its offer: `idle`, or `available` while its CPUs are taken
/// (a job submitted then waits in Slurm's queue, so the shape can still take jobs); a node that
/// is down, drained, powered off or not responding is not available.
pub fn availability(state: &str) -> Availability {
    // `idle*` (not responding), `idle~` (powered down), `drained`, `down`: flags after the name.
    let base = state.trim_end_matches(['*', '~', '#', '!', '%', '$', '@', '^', '-']);
    if state.ends_with('*') {
        return Availability::NotAvailable;
    }
    match base {
        "idle" => Availability::Idle,
        "mixed" | "mix" | "allocated" | "alloc" | "completing" | "comp" => Availability::Available,
        _ => Availability::NotAvailable,
    }
}

fn rank(a: Availability) -> u8 {
    match a {
        Availability::Idle => 4,
        Availability::Available => 3,
        Availability::Busy => 2,
        Availability::NoQuota => 1,
        Availability::NotAvailable => 0,
    }
}

/// The catalog short name of a Slurm GPU type (`h100` -> `H100`, `nvidia_a100-sxm4-80gb` -> `A100`).
pub fn gpu_name(kind: &str) -> String {
    let upper = kind.to_ascii_uppercase().replace('-', "_");
    let upper = upper.strip_prefix("NVIDIA_").unwrap_or(&upper);
    upper.split('_').next().unwrap_or(upper).to_string()
}

/// Memory of the GPUs that GRES names without saying it (GB; 0 when unknown).
pub fn gpu_memory_gb(name: &str) -> f64 {
    match name {
        "H100" | "A100" => 80.0,
        "H200" => 141.0,
        "B200" => 180.0,
        "GH200" => 96.0,
        "L40S" | "L40" | "A6000" | "RTX6000" => 48.0,
        "A10" | "A10G" | "L4" | "RTX4090" | "RTX3090" => 24.0,
        "V100" | "T4" => 16.0,
        "MI300X" => 192.0,
        _ => 0.0,
    }
}

fn gpu_vendor(name: &str) -> GpuVendor {
    if name.starts_with("MI") {
        GpuVendor::Amd
    } else {
        GpuVendor::Nvidia
    }
}

/// One shape of one partition, with the best availability among its nodes.
#[derive(Debug, Clone, PartialEq)]
pub struct Shape {
    pub partition: String,
    pub resources: InstanceResources,
    pub availability: Availability,
    pub nodes: u32,
}

impl Shape {
    /// `gpu/4cpu-6.8GB-2xH100`: the partition, then the node's shape.
    pub fn instance_type(&self) -> String {
        let r = &self.resources;
        let mut s = format!(
            "{}/{}cpu-{}GB",
            self.partition,
            r.cpus,
            (r.memory_gb * 10.0).round() / 10.0
        );
        if let Some(g) = r.gpus.first() {
            s.push_str(&format!("-{}x{}", r.gpus.len(), g.name));
        }
        s
    }
}

/// The shapes that `cluster` offers: GPU partitions with their GPUs (GPU jobs go there), CPU
/// partitions without them (no GPU job goes there).
pub fn shapes(cluster: &ClusterConfig, view: &ClusterView) -> Vec<Shape> {
    let mut out: Vec<Shape> = Vec::new();
    for n in &view.nodes {
        let gpu_partition = cluster.gpu_of(&n.partition);
        let cpu_partition = cluster.takes_cpu_jobs(&n.partition);
        let gpus: Vec<Gpu> = match gpu_partition {
            Some(configured) => n
                .gpus
                .iter()
                .flat_map(|(kind, count)| {
                    let name = kind
                        .as_deref()
                        .map(gpu_name)
                        .unwrap_or_else(|| configured.to_string());
                    (0..*count).map(move |_| Gpu {
                        memory_gb: gpu_memory_gb(&name),
                        vendor: gpu_vendor(&name),
                        name: name.clone(),
                    })
                })
                .collect(),
            None if cpu_partition => Vec::new(),
            None => continue,
        };
        if gpu_partition.is_some() && gpus.is_empty() && !cpu_partition {
            continue;
        }
        let resources = InstanceResources {
            cpus: n.cpus,
            cpu_arch: CpuArch::X86,
            memory_gb: n.memory_mb as f64 / 1024.0,
            disk_gb: None,
            gpus,
        };
        let availability = if n.partition_up {
            availability(&n.state)
        } else {
            Availability::NotAvailable
        };
        match out
            .iter_mut()
            .find(|s| s.partition == n.partition && s.resources == resources)
        {
            Some(s) => {
                s.nodes += 1;
                if rank(availability) > rank(s.availability) {
                    s.availability = availability;
                }
            }
            None => out.push(Shape {
                partition: n.partition.clone(),
                resources,
                availability,
                nodes: 1,
            }),
        }
    }
    out
}

/// The offer of a shape of `cluster` (region: the cluster's name).
pub fn offer(backend: &str, cluster: &str, shape: &Shape) -> Offer {
    Offer {
        backend: backend.to_string(),
        region: cluster.to_string(),
        instance_type: shape.instance_type(),
        resources: exact_spec(&shape.resources),
        price: 0.0,
        spot: false,
        availability: shape.availability,
        fleet: None,
        instance: None,
        blocks: None,
        total_blocks: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(yaml: &str) -> ClusterConfig {
        let v = flotilla_protocol::config::yaml_to_json("c.yml", yaml).expect("yaml");
        serde_json::from_value(v).expect("a cluster")
    }

    const SINFO: &str = "cpu*|n1|4|7000|gpu:h100:2|idle|up\ngpu|n1|4|7000|gpu:h100:2|idle|up\n\
gpu|n2|4|7000|gpu:h100:2(S:0-1)|allocated|up\ngpu|n3|64|512000|gpu:a100:8,shard:8|mixed|up\n\
debug|n4|2|2000|(null)|down*|down\npyxis=0\n";

    #[test]
    fn one_sinfo_answer_becomes_one_offer_per_partition_and_shape() {
        let view = parse_cluster(SINFO).expect("parses");
        assert!(!view.pyxis);
        assert_eq!(view.partitions(), vec!["cpu", "gpu", "debug"]);
        let c = cluster(
            "{name: hpc, hostname: h, user: u, gpu_partitions: [{gpu: H100, partitions: [gpu]}]}",
        );
        let shapes = shapes(&c, &view);
        let types: Vec<(String, Availability, u32)> = shapes
            .iter()
            .map(|s| (s.instance_type(), s.availability, s.nodes))
            .collect();
        assert_eq!(
            types,
            vec![
                ("cpu/4cpu-6.8GB".to_string(), Availability::Idle, 1),
                ("gpu/4cpu-6.8GB-2xH100".to_string(), Availability::Idle, 2),
                (
                    "gpu/64cpu-500GB-8xA100".to_string(),
                    Availability::Available,
                    1
                ),
                ("debug/2cpu-2GB".to_string(), Availability::NotAvailable, 1),
            ]
        );
        let o = offer("slurm", "hpc", &shapes[1]);
        assert_eq!((o.region.as_str(), o.price), ("hpc", 0.0));
        assert_eq!(o.resources.gpu.count.min, Some(2));
        assert_eq!(o.resources.gpu.name, Some(vec!["H100".to_string()]));
    }

    #[test]
    fn without_gpu_partitions_no_gpu_is_offered() {
        let view = parse_cluster(SINFO).expect("parses");
        let c = cluster("{name: hpc, hostname: h, user: u}");
        assert!(shapes(&c, &view)
            .iter()
            .all(|s| s.resources.gpus.is_empty()));
    }

    #[test]
    fn gres_and_states_are_read_as_slurm_writes_them() {
        assert_eq!(parse_gres("gpu:2"), vec![(None, 2)]);
        assert_eq!(
            parse_gres("gpu:a100:4(S:0,1),gpu:v100:2"),
            vec![(Some("a100".into()), 4), (Some("v100".into()), 2)]
        );
        assert!(parse_gres("(null)").is_empty());
        assert_eq!(gpu_name("nvidia_a100-sxm4-80gb"), "A100");
        assert_eq!(availability("idle*"), Availability::NotAvailable);
        assert_eq!(availability("drained"), Availability::NotAvailable);
        // Slurm queues what a busy node cannot take now: still offered.
        assert_eq!(availability("allocated"), Availability::Available);
        assert!(parse_cluster("gpu|n1|x|1|(null)|idle|up\n")
            .expect_err("bad")
            .contains("CPUs"));
    }
}

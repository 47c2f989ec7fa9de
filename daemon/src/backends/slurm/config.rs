//! The `slurm` entry of the daemon's `backends:`, in dstack's shape: clusters reached through
//! their login node over SSH, with the partitions that take GPU and CPU jobs.

use flotilla_protocol::model::SshEndpoint;
use serde::Deserialize;

/// `backends: [{type: slurm, clusters: [...]}]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlurmConfig {
    pub clusters: Vec<ClusterConfig>,
    /// How often the clusters' nodes are read again (seconds, default 60).
    #[serde(default)]
    pub refresh_secs: Option<u64>,
}

/// One cluster: its login node and which partitions take which jobs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// The region name of its offers.
    pub name: String,
    pub hostname: String,
    #[serde(default = "default_port")]
    pub port: u16,
    pub user: String,
    #[serde(default)]
    pub private_key: Option<PrivateKey>,
    /// A host in front of the login node, as in SSH fleets.
    #[serde(default)]
    pub proxy_jump: Option<ProxyJump>,
    /// The partitions that take GPU jobs, by GPU; unset: no GPU jobs on this cluster.
    #[serde(default)]
    pub gpu_partitions: Vec<GpuPartitions>,
    /// The partitions that take CPU jobs; unset: every partition not in `gpu_partitions`.
    #[serde(default)]
    pub cpu_partitions: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivateKey {
    pub path: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyJump {
    pub hostname: String,
    #[serde(default = "default_port")]
    pub port: u16,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub private_key: Option<PrivateKey>,
}

/// `{gpu: H100, partitions: [gpu]}`: GPU jobs for this GPU go to these partitions.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuPartitions {
    pub gpu: String,
    pub partitions: Vec<String>,
}

fn default_port() -> u16 {
    22
}

/// Refreshing the clusters' nodes every minute unless `refresh_secs` says otherwise.
pub const DEFAULT_REFRESH_SECS: u64 = 60;

impl SlurmConfig {
    /// Names, partitions and the one backend name checked; the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.clusters.is_empty() {
            return Err("backends: slurm: `clusters` is empty; list at least one cluster".into());
        }
        for (i, c) in self.clusters.iter().enumerate() {
            if c.name.trim().is_empty() || c.name.contains(['/', ' ']) {
                return Err(format!(
                    "backends: slurm: clusters[{i}]: `name` {:?} must be a non-empty word without `/`",
                    c.name
                ));
            }
            if self.clusters[..i].iter().any(|o| o.name == c.name) {
                return Err(format!(
                    "backends: slurm: two clusters are named {:?}; names are the regions of the offers and must differ",
                    c.name
                ));
            }
            if c.hostname.trim().is_empty() {
                return Err(format!(
                    "backends: slurm: cluster {}: `hostname` is empty",
                    c.name
                ));
            }
            for g in &c.gpu_partitions {
                if g.partitions.is_empty() {
                    return Err(format!(
                        "backends: slurm: cluster {}: gpu_partitions: {} lists no partitions",
                        c.name, g.gpu
                    ));
                }
            }
        }
        if self.refresh_secs == Some(0) {
            return Err("backends: slurm: refresh_secs must be at least 1".into());
        }
        Ok(())
    }
}

impl ClusterConfig {
    /// How the daemon reaches the login node.
    pub fn endpoint(&self) -> SshEndpoint {
        SshEndpoint {
            hostname: self.hostname.clone(),
            port: self.port,
            user: self.user.clone(),
            identity_file: self.private_key.as_ref().map(|k| k.path.clone()),
            proxy_jump: self.proxy_jump.as_ref().map(|j| {
                Box::new(SshEndpoint {
                    hostname: j.hostname.clone(),
                    port: j.port,
                    user: j.user.clone().unwrap_or_else(|| self.user.clone()),
                    identity_file: j
                        .private_key
                        .as_ref()
                        .or(self.private_key.as_ref())
                        .map(|k| k.path.clone()),
                    proxy_jump: None,
                    internal_ip: None,
                })
            }),
            internal_ip: None,
        }
    }

    /// The GPU that `partition` is configured for, if it takes GPU jobs.
    pub fn gpu_of(&self, partition: &str) -> Option<&str> {
        self.gpu_partitions
            .iter()
            .find(|g| g.partitions.iter().any(|p| p == partition))
            .map(|g| g.gpu.as_str())
    }

    /// Whether `partition` takes CPU jobs.
    pub fn takes_cpu_jobs(&self, partition: &str) -> bool {
        match &self.cpu_partitions {
            Some(list) => list.iter().any(|p| p == partition),
            None => self.gpu_of(partition).is_none(),
        }
    }

    /// The partitions this configuration names that the cluster does not have.
    pub fn unknown_partitions(&self, known: &[String]) -> Vec<String> {
        let mut out: Vec<String> = self
            .gpu_partitions
            .iter()
            .flat_map(|g| g.partitions.iter())
            .chain(self.cpu_partitions.iter().flatten())
            .filter(|p| !known.iter().any(|k| k == *p))
            .cloned()
            .collect();
        out.dedup();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<SlurmConfig, String> {
        let v = flotilla_protocol::config::yaml_to_json("config.yml", yaml)
            .map_err(|e| e.to_string())?;
        serde_json::from_value(v).map_err(|e| e.to_string())
    }

    #[test]
    fn dstacks_shape_is_read_and_partitions_default_as_documented() {
        let c = parse(
            "clusters:\n  - name: hpc\n    hostname: login.example.org\n    user: alice\n    private_key: {path: ~/.ssh/id_ed25519}\n    proxy_jump: {hostname: bastion, port: 2222}\n    gpu_partitions: [{gpu: H100, partitions: [gpu]}]\n",
        )
        .expect("valid");
        c.validate().expect("valid");
        let h = &c.clusters[0];
        assert_eq!(h.port, 22);
        let ep = h.endpoint();
        assert_eq!(ep.identity_file.as_deref(), Some("~/.ssh/id_ed25519"));
        let jump = ep.proxy_jump.expect("a jump host");
        assert_eq!((jump.hostname.as_str(), jump.port), ("bastion", 2222));
        assert_eq!(jump.user, "alice");
        assert_eq!(h.gpu_of("gpu"), Some("H100"));
        assert!(!h.takes_cpu_jobs("gpu"));
        assert!(h.takes_cpu_jobs("cpu") && h.takes_cpu_jobs("debug"));
        assert_eq!(
            h.unknown_partitions(&["cpu".into()]),
            vec!["gpu".to_string()]
        );
    }

    #[test]
    fn unknown_keys_and_key_contents_are_refused() {
        let e =
            parse("clusters:\n  - name: a\n    hostname: h\n    user: u\n    partitions: [x]\n")
                .expect_err("unknown key");
        assert!(e.contains("partitions"), "{e}");
        let e = parse(
            "clusters:\n  - name: a\n    hostname: h\n    user: u\n    private_key: {content: secret}\n",
        )
        .expect_err("content is not read");
        assert!(e.contains("content"), "{e}");
        let two = parse(
            "clusters:\n  - {name: a, hostname: h, user: u}\n  - {name: a, hostname: g, user: u}\n",
        )
        .expect("parses");
        assert!(two.validate().expect_err("same name").contains("\"a\""));
    }
}

//! RunPod: containers (pods) from the offline catalog (`runpod.csv`), over RunPod's GraphQL
//! API (<https://api.runpod.io/graphql?api_key=...>): `podFindAndDeployOnDemand` (or
//! `podRentInterruptable` for spot), `pod`, `podTerminate`, `myself { pods }`. A pod runs the
//! backend's image with the daemon's key in `PUBLIC_KEY` and port `22/tcp` exposed; it is
//! reached as root on its public mapping of port 22 (as dstack does).

use super::http::{Api, ApiError, AuthStyle};
use super::{ApiKey, Launch, Live, Provider};
use crate::backends::{BackendError, Boot, BoxFuture, Machine};
use flotilla_protocol::model::SshEndpoint;
use reqwest::Method;
use serde_json::{json, Value};

pub const DEFAULT_API_URL: &str = "https://api.runpod.io/graphql";

/// The catalog's GPU names (SkyPilot's) and RunPod's `gpuTypeId`s.
const GPU_TYPES: &[(&str, &str)] = &[
    ("A100-80GB", "NVIDIA A100 80GB PCIe"),
    ("A100-80GB-SXM", "NVIDIA A100-SXM4-80GB"),
    ("A40", "NVIDIA A40"),
    ("H100", "NVIDIA H100 PCIe"),
    ("H100-SXM", "NVIDIA H100 80GB HBM3"),
    ("L4", "NVIDIA L4"),
    ("L40", "NVIDIA L40"),
    ("RTX3090", "NVIDIA GeForce RTX 3090"),
    ("RTX4090", "NVIDIA GeForce RTX 4090"),
    ("RTX4000-Ada", "NVIDIA RTX 4000 Ada Generation"),
    ("RTX6000-Ada", "NVIDIA RTX 6000 Ada Generation"),
    ("RTXA4000", "NVIDIA RTX A4000"),
    ("RTXA4500", "NVIDIA RTX A4500"),
    ("RTXA5000", "NVIDIA RTX A5000"),
    ("RTXA6000", "NVIDIA RTX A6000"),
];

/// `2x_H100-SXM_SECURE` -> (2, RunPod's GPU type id, `SECURE`). A name that is not in this
/// form is taken as a `gpuTypeId` itself (gpuhunt's RunPod catalog), one GPU, secure cloud.
pub fn parse_instance_type(name: &str) -> (u32, String, &'static str) {
    let parsed = name.split_once("x_").and_then(|(n, rest)| {
        let count: u32 = n.parse().ok()?;
        let (gpu, cloud) = rest.rsplit_once('_')?;
        let cloud = match cloud {
            "SECURE" => "SECURE",
            "COMMUNITY" => "COMMUNITY",
            _ => return None,
        };
        let id = GPU_TYPES
            .iter()
            .find(|(k, _)| *k == gpu)
            .map(|(_, v)| v.to_string())
            .unwrap_or_else(|| gpu.to_string());
        Some((count, id, cloud))
    });
    parsed.unwrap_or_else(|| (1, name.to_string(), "SECURE"))
}

const DEPLOY: &str = "mutation Deploy($input: PodFindAndDeployOnDemandInput) { podFindAndDeployOnDemand(input: $input) { id desiredStatus imageName machineId } }";
const RENT_SPOT: &str = "mutation Rent($input: PodRentInterruptableInput!) { podRentInterruptable(input: $input) { id desiredStatus imageName machineId } }";
const POD: &str = "query Pod($input: PodFilter) { pod(input: $input) { id name desiredStatus lastStatusChange runtime { uptimeInSeconds ports { ip isIpPublic privatePort publicPort type } } } }";
const TERMINATE: &str =
    "mutation Terminate($input: PodTerminateInput!) { podTerminate(input: $input) }";
const PODS: &str = "query Pods { myself { pods { id name desiredStatus } } }";
const MYSELF: &str = "query Myself { myself { id } }";

pub struct RunPod {
    name: String,
    api: Api,
}

impl RunPod {
    pub fn new(name: &str, api_url: &str, key: ApiKey) -> Result<RunPod, String> {
        Ok(RunPod {
            name: name.to_string(),
            api: Api::new(api_url, key, AuthStyle::Query)?,
        })
    }

    /// One GraphQL operation: its `data`, or its `errors` in RunPod's words.
    async fn graphql(&self, query: &str, variables: Value) -> Result<Value, BackendError> {
        let body = json!({"query": query, "variables": variables});
        let mut answer = self
            .api
            .call(Method::POST, "", Some(&body))
            .await
            .map_err(|e| self.http_error(e))?;
        if let Some(errors) = answer["errors"].as_array().filter(|e| !e.is_empty()) {
            let message = errors
                .iter()
                .filter_map(|e| e["message"].as_str())
                .collect::<Vec<_>>()
                .join("; ");
            return Err(self.sort(message));
        }
        Ok(answer["data"].take())
    }

    fn http_error(&self, e: ApiError) -> BackendError {
        let from_body = e.body.as_ref().and_then(|b| {
            b["errors"][0]["message"]
                .as_str()
                .or_else(|| b["error"].as_str())
                .map(str::to_string)
        });
        let message = from_body.unwrap_or_else(|| e.message.clone());
        if e.is_auth() {
            BackendError::Auth {
                backend: self.name.clone(),
                message,
            }
        } else {
            self.sort(message)
        }
    }

    fn sort(&self, message: String) -> BackendError {
        let m = message.to_ascii_lowercase();
        let backend = self.name.clone();
        if m.contains("no longer any instances available")
            || m.contains("does not have the resources")
            || m.contains("no instances")
            || m.contains("quota")
            || m.contains("insufficient")
        {
            BackendError::Unavailable { backend, message }
        } else if m.contains("unauthorized") || m.contains("api key") {
            BackendError::Auth { backend, message }
        } else {
            BackendError::Failed { backend, message }
        }
    }
}

impl Provider for RunPod {
    fn kind(&self) -> &'static str {
        "runpod"
    }

    fn catalog(&self) -> Option<&'static str> {
        Some("runpod")
    }

    fn check(&self) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async move { self.graphql(MYSELF, json!({})).await.map(|_| ()) })
    }

    fn live(&self) -> BoxFuture<'_, Result<Live, BackendError>> {
        Box::pin(async { Ok(Live::Unknown) })
    }

    fn launch<'a>(&'a self, l: Launch<'a>) -> BoxFuture<'a, Result<String, BackendError>> {
        Box::pin(async move {
            let (count, gpu, cloud) = parse_instance_type(&l.offer.instance_type);
            let cpus = l.offer.resources.cpu.count.min.unwrap_or(1);
            let memory = l.offer.resources.memory.min.unwrap_or(1.0).floor() as u64;
            let mut input = json!({
                "cloudType": cloud,
                "gpuCount": count,
                "gpuTypeId": gpu,
                "name": l.name,
                "imageName": l.image,
                "containerDiskInGb": 100,
                "volumeInGb": 0,
                "minVcpuCount": cpus,
                "minMemoryInGb": memory,
                "dockerArgs": "",
                "ports": "22/tcp",
                "supportPublicIp": true,
                "countryCode": l.offer.region,
                "env": [{"key": "PUBLIC_KEY", "value": l.key.public}],
            });
            let (query, field) = if l.offer.spot {
                input["bidPerGpu"] = json!(l.offer.price / f64::from(count.max(1)));
                (RENT_SPOT, "podRentInterruptable")
            } else {
                (DEPLOY, "podFindAndDeployOnDemand")
            };
            let data = self.graphql(query, json!({"input": input})).await?;
            data[field]["id"]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| BackendError::Failed {
                    backend: self.name.clone(),
                    message: format!("{field} answered no pod id: {data}"),
                })
        })
    }

    fn status<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Boot, BackendError>> {
        Box::pin(async move {
            let data = self.graphql(POD, json!({"input": {"podId": id}})).await?;
            let pod = &data["pod"];
            if pod.is_null() {
                return Ok(Boot::Gone(format!("pod {id} is not found at RunPod")));
            }
            let status = pod["desiredStatus"]
                .as_str()
                .unwrap_or("unknown")
                .to_string();
            if matches!(status.as_str(), "TERMINATED" | "EXITED") {
                return Ok(Boot::Gone(format!("RunPod reports the pod {status}")));
            }
            let ssh = pod["runtime"]["ports"].as_array().and_then(|ports| {
                ports.iter().find(|p| {
                    p["privatePort"].as_u64() == Some(22)
                        && p["isIpPublic"].as_bool() == Some(true)
                        && p["type"].as_str() == Some("tcp")
                })
            });
            Ok(match ssh {
                Some(p) => match (p["ip"].as_str(), p["publicPort"].as_u64()) {
                    (Some(ip), Some(port)) => Boot::Ready(SshEndpoint {
                        hostname: ip.to_string(),
                        port: u16::try_from(port).unwrap_or(22),
                        user: "root".into(),
                        identity_file: None,
                        proxy_jump: None,
                        internal_ip: None,
                    }),
                    _ => Boot::Booting(status),
                },
                None => Boot::Booting(status),
            })
        })
    }

    fn terminate<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            match self
                .graphql(TERMINATE, json!({"input": {"podId": id}}))
                .await
            {
                Ok(_) => Ok(()),
                Err(BackendError::Failed { message, .. })
                    if message.to_ascii_lowercase().contains("not found") =>
                {
                    Ok(())
                }
                Err(e) => Err(e),
            }
        })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<Machine>, BackendError>> {
        Box::pin(async move {
            let data = self.graphql(PODS, json!({})).await?;
            Ok(data["myself"]["pods"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| {
                    Some(Machine {
                        id: p["id"].as_str()?.to_string(),
                        name: p["name"].as_str().unwrap_or_default().to_string(),
                        status: p["desiredStatus"].as_str().unwrap_or_default().to_string(),
                    })
                })
                .filter(|m| m.status != "TERMINATED")
                .collect())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_names_become_runpod_gpu_types() {
        assert_eq!(
            parse_instance_type("2x_H100-SXM_SECURE"),
            (2, "NVIDIA H100 80GB HBM3".to_string(), "SECURE")
        );
        assert_eq!(
            parse_instance_type("1x_RTXA4500_COMMUNITY"),
            (1, "NVIDIA RTX A4500".to_string(), "COMMUNITY")
        );
        assert_eq!(
            parse_instance_type("NVIDIA A40"),
            (1, "NVIDIA A40".to_string(), "SECURE")
        );
    }
}

//! Vast.ai: a container marketplace whose offers are searched online (`POST /bundles/`, as
//! gpuhunt's online provider does) when offers are asked for, not read from a catalog. REST API
//! v0 (<https://console.vast.ai/api/v0>), Bearer auth: `PUT /asks/{id}/` rents an offer,
//! `GET /instances/{id}/` and `GET /instances/` read machines, `DELETE /instances/{id}/` ends
//! one; the daemon's key is added to the account (`GET`/`POST /ssh/`) and the instance runs
//! the backend's image with direct SSH (`runtype: ssh_direct`), reached as root on the public
//! mapping of port 22.

use super::http::{Api, ApiError, AuthStyle};
use super::lambda::key_body;
use super::{ApiKey, Launch, Live, Provider};
use crate::backends::{BackendError, Boot, BoxFuture, Machine};
use crate::catalog::matching::exact_spec;

use flotilla_protocol::config::{CpuArch, GpuVendor};
use flotilla_protocol::model::{Availability, Gpu, InstanceResources, Offer, SshEndpoint};
use reqwest::Method;
use serde_json::{json, Value};

pub const DEFAULT_API_URL: &str = "https://console.vast.ai/api/v0";
/// How many offers one search asks for (the cheapest).
const SEARCH_LIMIT: u32 = 200;

pub struct VastAi {
    name: String,
    api: Api,
}

impl VastAi {
    pub fn new(name: &str, api_url: &str, key: ApiKey) -> Result<VastAi, String> {
        Ok(VastAi {
            name: name.to_string(),
            api: Api::new(api_url, key, AuthStyle::Bearer)?,
        })
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, BackendError> {
        let v = self
            .api
            .call(method, path, body)
            .await
            .map_err(|e| self.error(e))?;
        if v["success"] == json!(false) {
            return Err(self.sort(&v, String::new()));
        }
        Ok(v)
    }

    fn error(&self, e: ApiError) -> BackendError {
        if e.is_auth() {
            let message = e
                .body
                .as_ref()
                .and_then(|b| b["msg"].as_str().or_else(|| b["detail"].as_str()))
                .map(str::to_string)
                .unwrap_or(e.message);
            return BackendError::Auth {
                backend: self.name.clone(),
                message,
            };
        }
        match &e.body {
            Some(b) => self.sort(b, e.message.clone()),
            None => BackendError::Failed {
                backend: self.name.clone(),
                message: e.message,
            },
        }
    }

    /// Vast.ai's `{"success": false, "error": code, "msg": words}` sorted by its code.
    fn sort(&self, body: &Value, fallback: String) -> BackendError {
        let code = body["error"].as_str().unwrap_or_default();
        let mut message = body["msg"].as_str().map(str::to_string).unwrap_or(fallback);
        if !code.is_empty() {
            message.push_str(&format!(" [{code}]"));
        }
        let backend = self.name.clone();
        match code {
            "no_such_ask" | "insufficient_credit" | "ask_unavailable" => {
                BackendError::Unavailable { backend, message }
            }
            _ => BackendError::Failed { backend, message },
        }
    }

    async fn ensure_key(&self, public: &str) -> Result<(), BackendError> {
        let keys = self.call(Method::GET, "ssh/", None).await?;
        let list = keys
            .as_array()
            .or_else(|| keys["keys"].as_array())
            .cloned()
            .unwrap_or_default();
        let wanted = key_body(public);
        let known = list.iter().any(|k| {
            k["public_key"]
                .as_str()
                .or_else(|| k["ssh_key"].as_str())
                .map(key_body)
                == Some(wanted.clone())
        });
        if !known {
            self.call(Method::POST, "ssh/", Some(&json!({"ssh_key": public})))
                .await?;
        }
        Ok(())
    }
}

/// `RTX 4090` -> `RTX4090`, `H100 SXM` -> `H100`, `Tesla V100` -> `V100` (gpuhunt's short names).
pub fn gpu_name(vast: &str) -> String {
    let mut n = vast.trim().trim_start_matches("Tesla ").to_string();
    for suffix in [" PCIE", " PCIe", " SXM5", " SXM4", " SXM", " NVL"] {
        if let Some(s) = n.strip_suffix(suffix) {
            n = s.to_string();
        }
    }
    n.replace(' ', "")
}

/// One offer of a bundles search as an offer of backend `backend`, with its machine.
pub fn offer_of(backend: &str, o: &Value) -> Option<(Offer, InstanceResources)> {
    let id = o["id"].as_u64()?;
    let count = o["num_gpus"].as_u64().unwrap_or(0) as usize;
    let gpu = Gpu {
        name: gpu_name(o["gpu_name"].as_str().unwrap_or_default()),
        memory_gb: (o["gpu_ram"].as_f64().unwrap_or(0.0) / 1024.0).round(),
        vendor: GpuVendor::Nvidia,
    };
    let res = InstanceResources {
        cpus: o["cpu_cores_effective"]
            .as_f64()
            .or_else(|| o["cpu_cores"].as_f64())
            .unwrap_or(0.0)
            .floor() as u32,
        cpu_arch: match o["cpu_arch"].as_str() {
            Some("arm64") => CpuArch::Arm,
            _ => CpuArch::X86,
        },
        memory_gb: (o["cpu_ram"].as_f64().unwrap_or(0.0) / 1024.0).floor(),
        disk_gb: o["disk_space"].as_f64().map(f64::floor),
        gpus: vec![gpu; count],
    };
    let offer = Offer {
        backend: backend.to_string(),
        region: o["geolocation"].as_str().unwrap_or("unknown").to_string(),
        instance_type: id.to_string(),
        resources: exact_spec(&res),
        price: (o["dph_total"].as_f64()? * 10_000.0).round() / 10_000.0,
        spot: false,
        availability: Availability::Available,
        fleet: None,
        instance: None,
        blocks: None,
        total_blocks: None,
    };
    Some((offer, res))
}

impl Provider for VastAi {
    fn kind(&self) -> &'static str {
        "vastai"
    }

    fn catalog(&self) -> Option<&'static str> {
        None
    }

    fn replaces_catalog(&self) -> Option<&'static str> {
        Some("vast")
    }

    fn check(&self) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async move {
            self.call(Method::GET, "users/current/", None)
                .await
                .map(|_| ())
        })
    }

    fn live(&self) -> BoxFuture<'_, Result<Live, BackendError>> {
        Box::pin(async move {
            let query = json!({
                "rentable": {"eq": true},
                "rented": {"eq": false},
                "verified": {"eq": true},
                "external": {"eq": false},
                "type": "on-demand",
                "order": [["dph_total", "asc"]],
                "limit": SEARCH_LIMIT,
            });
            let answer = self.call(Method::POST, "bundles/", Some(&query)).await?;
            let offers = answer["offers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|o| offer_of(&self.name, o))
                .collect();
            Ok(Live::Offers(offers))
        })
    }

    fn launch<'a>(&'a self, l: Launch<'a>) -> BoxFuture<'a, Result<String, BackendError>> {
        Box::pin(async move {
            self.ensure_key(&l.key.public).await?;
            let disk = l.offer.resources.disk.size.min.unwrap_or(100.0).max(10.0);
            let body = json!({
                "client_id": "me",
                "image": l.image,
                "disk": disk,
                "label": l.name,
                "runtype": "ssh_direct",
                "env": {"-p 22:22": "1"},
                "onstart": "",
            });
            let answer = self
                .call(
                    Method::PUT,
                    &format!("asks/{}/", l.offer.instance_type),
                    Some(&body),
                )
                .await?;
            answer["new_contract"]
                .as_u64()
                .map(|id| id.to_string())
                .ok_or_else(|| BackendError::Failed {
                    backend: self.name.clone(),
                    message: format!("the rent answer has no new_contract: {answer}"),
                })
        })
    }

    fn status<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Boot, BackendError>> {
        Box::pin(async move {
            let answer = match self
                .api
                .call(Method::GET, &format!("instances/{id}/"), None)
                .await
            {
                Ok(v) => v,
                Err(e) if e.status == Some(404) => {
                    return Ok(Boot::Gone(format!("instance {id} is not found at Vast.ai")))
                }
                Err(e) => return Err(self.error(e)),
            };
            let inst = &answer["instances"];
            if inst.is_null() {
                return Ok(Boot::Gone(format!("instance {id} is not found at Vast.ai")));
            }
            let status = inst["actual_status"]
                .as_str()
                .unwrap_or("loading")
                .to_string();
            if matches!(status.as_str(), "exited" | "offline") {
                let msg = inst["status_msg"].as_str().unwrap_or_default();
                return Ok(Boot::Gone(format!(
                    "Vast.ai reports the instance {status} {msg}"
                )));
            }
            let port = inst["ports"]["22/tcp"][0]["HostPort"]
                .as_str()
                .and_then(|p| p.parse::<u16>().ok());
            Ok(
                match (status.as_str(), inst["public_ipaddr"].as_str(), port) {
                    ("running", Some(ip), Some(port)) => Boot::Ready(SshEndpoint {
                        hostname: ip.trim().to_string(),
                        port,
                        user: "root".into(),
                        identity_file: None,
                        proxy_jump: None,
                        internal_ip: None,
                    }),
                    _ => Boot::Booting(status),
                },
            )
        })
    }

    fn terminate<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            match self
                .api
                .call(Method::DELETE, &format!("instances/{id}/"), None)
                .await
            {
                Ok(v) if v["success"] != json!(false) => Ok(()),
                Ok(v) => Err(self.sort(&v, "the deletion was refused".into())),
                Err(e) if e.status == Some(404) => Ok(()),
                Err(e) => Err(self.error(e)),
            }
        })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<Machine>, BackendError>> {
        Box::pin(async move {
            let answer = self.call(Method::GET, "instances/", None).await?;
            Ok(answer["instances"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|i| {
                    Some(Machine {
                        id: i["id"].as_u64()?.to_string(),
                        name: i["label"].as_str().unwrap_or_default().to_string(),
                        status: i["actual_status"].as_str().unwrap_or_default().to_string(),
                    })
                })
                .collect())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundles_become_offers_with_gpuhunt_names() {
        assert_eq!(gpu_name("RTX 4090"), "RTX4090");
        assert_eq!(gpu_name("H100 SXM"), "H100");
        assert_eq!(gpu_name("Tesla V100"), "V100");
        let o = json!({"id": 42, "num_gpus": 2, "gpu_name": "RTX 4090", "gpu_ram": 24564,
            "cpu_cores_effective": 16.0, "cpu_ram": 64000, "disk_space": 120.5,
            "dph_total": 0.71234567, "geolocation": "Quebec, CA"});
        let (offer, res) = offer_of("vast", &o).unwrap();
        assert_eq!(offer.instance_type, "42");
        assert_eq!(offer.price, 0.7123);
        assert_eq!(res.gpus.len(), 2);
        assert_eq!(res.gpus[0].name, "RTX4090");
        assert_eq!(res.gpus[0].memory_gb, 24.0);
        assert_eq!(res.cpus, 16);
        assert_eq!(offer.region, "Quebec, CA");
    }
}

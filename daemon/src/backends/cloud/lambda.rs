//! Lambda Cloud: VMs from the offline catalog (`lambda.csv`), filtered by the live
//! `regions_with_capacity_available` of `GET /instance-types`. Public API v1
//! (<https://cloud.lambdalabs.com/api/v1>): `{"data": ...}` answers, `{"error": {"code",
//! "message", "suggestion"}}` errors, Bearer auth. Machines are reached as `ubuntu` on port 22
//! of their public `ip` (as dstack does).

use super::http::{Api, ApiError, AuthStyle};
use super::{ApiKey, Launch, Live, Provider};
use crate::backends::{BackendError, Boot, BoxFuture, Machine};
use flotilla_protocol::model::SshEndpoint;
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::HashSet;

pub const DEFAULT_API_URL: &str = "https://cloud.lambdalabs.com/api/v1";

pub struct Lambda {
    name: String,
    api: Api,
}

impl Lambda {
    pub fn new(name: &str, api_url: &str, key: ApiKey) -> Result<Lambda, String> {
        Ok(Lambda {
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
        self.api
            .call(method, path, body)
            .await
            .map_err(|e| self.error(e))
            .map(|mut v| v["data"].take())
    }

    /// Lambda's error envelope in its words (message and suggestion), sorted by its code.
    fn error(&self, e: ApiError) -> BackendError {
        let err = e.body.as_ref().map(|b| &b["error"]);
        let code = err
            .and_then(|x| x["code"].as_str())
            .unwrap_or_default()
            .to_string();
        let message = match err.and_then(|x| x["message"].as_str()) {
            Some(m) => {
                let mut m = m.to_string();
                if let Some(s) = err.and_then(|x| x["suggestion"].as_str()) {
                    m.push_str(" (");
                    m.push_str(s);
                    m.push(')');
                }
                if !code.is_empty() {
                    m.push_str(&format!(" [{code}]"));
                }
                m
            }
            None => e.message.clone(),
        };
        let backend = self.name.clone();
        if e.is_auth() || code == "global/invalid-api-key" {
            BackendError::Auth { backend, message }
        } else if code.contains("insufficient-capacity") || code.contains("quota") {
            BackendError::Unavailable { backend, message }
        } else {
            BackendError::Failed { backend, message }
        }
    }

    /// The name of the daemon's key at Lambda, registered when it is not there yet (another
    /// launch may register it meanwhile: then it is found on a second look).
    async fn ssh_key_name(&self, public: &str) -> Result<String, BackendError> {
        let wanted = key_body(public);
        if let Some(n) = self.find_key(&wanted).await? {
            return Ok(n);
        }
        let name = format!("flotilla-{}", short_hash(&wanted));
        let body = json!({"name": name, "public_key": public});
        match self.call(Method::POST, "ssh-keys", Some(&body)).await {
            Ok(_) => Ok(name),
            Err(e) => match self.find_key(&wanted).await? {
                Some(n) => Ok(n),
                None => Err(e),
            },
        }
    }

    async fn find_key(&self, wanted: &str) -> Result<Option<String>, BackendError> {
        let keys = self.call(Method::GET, "ssh-keys", None).await?;
        Ok(keys
            .as_array()
            .into_iter()
            .flatten()
            .find(|k| k["public_key"].as_str().map(key_body).as_deref() == Some(wanted))
            .and_then(|k| k["name"].as_str().map(str::to_string)))
    }
}

/// The type and base64 of an OpenSSH public key (without its comment).
pub fn key_body(public: &str) -> String {
    public
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// 32-bit FNV-1a of `s` in hex: a short, stable suffix for key names.
pub fn short_hash(s: &str) -> String {
    let h = s.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    format!("{h:08x}")
}

impl Provider for Lambda {
    fn kind(&self) -> &'static str {
        "lambda"
    }

    fn catalog(&self) -> Option<&'static str> {
        Some("lambda")
    }

    fn check(&self) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async move {
            self.call(Method::GET, "instance-types", None)
                .await
                .map(|_| ())
        })
    }

    fn live(&self) -> BoxFuture<'_, Result<Live, BackendError>> {
        Box::pin(async move {
            let types = self.call(Method::GET, "instance-types", None).await?;
            let mut set = HashSet::new();
            for (name, t) in types.as_object().into_iter().flatten() {
                let name = t["instance_type"]["name"].as_str().unwrap_or(name);
                for r in t["regions_with_capacity_available"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    if let Some(region) = r["name"].as_str() {
                        set.insert((name.to_string(), region.to_string()));
                    }
                }
            }
            Ok(Live::Capacity(set))
        })
    }

    fn launch<'a>(&'a self, l: Launch<'a>) -> BoxFuture<'a, Result<String, BackendError>> {
        Box::pin(async move {
            let key = self.ssh_key_name(&l.key.public).await?;
            let body = json!({
                "region_name": l.offer.region,
                "instance_type_name": l.offer.instance_type,
                "ssh_key_names": [key],
                "file_system_names": [],
                "quantity": 1,
                "name": l.name,
            });
            let data = self
                .call(Method::POST, "instance-operations/launch", Some(&body))
                .await?;
            data["instance_ids"][0]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| BackendError::Failed {
                    backend: self.name.clone(),
                    message: format!("the launch answer has no instance id: {data}"),
                })
        })
    }

    fn status<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Boot, BackendError>> {
        Box::pin(async move {
            let inst = match self
                .api
                .call(Method::GET, &format!("instances/{id}"), None)
                .await
            {
                Ok(mut v) => v["data"].take(),
                Err(e) if e.status == Some(404) => {
                    return Ok(Boot::Gone(format!("instance {id} is not found at Lambda")))
                }
                Err(e) => return Err(self.error(e)),
            };
            let status = inst["status"].as_str().unwrap_or("unknown").to_string();
            Ok(match (status.as_str(), inst["ip"].as_str()) {
                ("active", Some(ip)) if !ip.is_empty() => Boot::Ready(SshEndpoint {
                    hostname: ip.to_string(),
                    port: 22,
                    user: "ubuntu".into(),
                    identity_file: None,
                    proxy_jump: None,
                    internal_ip: inst["private_ip"].as_str().map(str::to_string),
                }),
                ("terminated" | "terminating" | "preempted", _) => {
                    Boot::Gone(format!("Lambda reports the instance {status}"))
                }
                _ => Boot::Booting(status),
            })
        })
    }

    fn terminate<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            let body = json!({"instance_ids": [id]});
            match self
                .api
                .call(Method::POST, "instance-operations/terminate", Some(&body))
                .await
            {
                Ok(_) => Ok(()),
                // Already gone: nothing left to pay for.
                Err(e) if e.status == Some(404) => Ok(()),
                Err(e) => Err(self.error(e)),
            }
        })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<Machine>, BackendError>> {
        Box::pin(async move {
            let data = self.call(Method::GET, "instances", None).await?;
            Ok(data
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|i| {
                    Some(Machine {
                        id: i["id"].as_str()?.to_string(),
                        name: i["name"].as_str().unwrap_or_default().to_string(),
                        status: i["status"].as_str().unwrap_or_default().to_string(),
                    })
                })
                .filter(|m| m.status != "terminated")
                .collect())
        })
    }
}

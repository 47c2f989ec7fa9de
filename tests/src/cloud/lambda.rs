//! A fake Lambda Cloud API v1, from its public documentation
//! (<https://docs.lambda.ai/api/cloud>): Bearer or Basic auth with the API key; `{"data": ...}`
//! answers; `{"error": {"code", "message", "suggestion"}}` errors; `GET /instance-types` with
//! `regions_with_capacity_available`, `GET`/`POST /ssh-keys`, `POST
//! /instance-operations/launch` and `/terminate`, `GET /instances` and `/instances/{id}`;
//! instance status `booting | active | unhealthy | terminating | terminated`. Its machines are
//! sshd hosts on port 22 of their address, reached as `ubuntu`.

use super::{handler, Account, FakeCloud, HttpServer, Request, Response};
use serde_json::{json, Value};

/// Instance types listed, with the regions that have capacity.
pub const TYPES: &[(&str, u32, &[&str])] = &[
    ("gpu_2x_h100_sxm5", 838, &["europe-central-1", "us-east-1"]),
    ("gpu_1x_a10", 75, &["us-east-1"]),
];

fn error(status: u16, code: &str, message: &str, suggestion: Option<&str>) -> Response {
    let mut e = json!({"code": code, "message": message});
    if let Some(s) = suggestion {
        e["suggestion"] = json!(s);
    }
    Response::status(status, json!({ "error": e }))
}

fn authorized(key: &str, req: &Request) -> bool {
    if req.bearer() == Some(key) {
        return true;
    }
    // Basic auth: the key as the user name, no password.
    req.header("authorization")
        .and_then(|h| h.strip_prefix("Basic "))
        .is_some_and(|b| b == basic(key))
}

fn basic(key: &str) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = format!("{key}:").into_bytes();
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn instance_json(a: &mut Account, id: &str) -> Option<Value> {
    let m = a.machine(id)?;
    let ip = m.host.as_ref().map(|h| h.ip.clone());
    let active = m.status == "active";
    Some(json!({
        "id": m.id,
        "name": m.name,
        "status": m.status,
        "ip": if active { json!(ip) } else { Value::Null },
        "private_ip": if active { json!("10.0.0.2") } else { Value::Null },
        "region": {"name": m.region, "description": m.region},
        "instance_type": {"name": m.instance_type},
        "ssh_key_names": ["flotilla"],
        "file_system_names": [],
        "hostname": format!("{}.cloud.lambdalabs.com", m.id),
        "jupyter_token": null,
        "jupyter_url": null,
        "is_reserved": false,
    }))
}

fn answer(key: &str, a: &mut Account, req: &Request) -> Response {
    if !authorized(key, req) {
        return error(
            401,
            "global/invalid-api-key",
            "API key was invalid, expired, or deleted.",
            Some("Check your API key or create a new one, then try again."),
        );
    }
    let path = req.path.trim_start_matches("/api/v1").trim_end_matches('/');
    match (req.method.as_str(), path) {
        ("GET", "/instance-types") => {
            let mut data = serde_json::Map::new();
            for (name, cents, regions) in TYPES {
                data.insert(
                    name.to_string(),
                    json!({
                        "instance_type": {
                            "name": name,
                            "description": name,
                            "gpu_description": "H100 (80 GB SXM5)",
                            "price_cents_per_hour": cents,
                            "specs": {"vcpus": 52, "memory_gib": 450, "storage_gib": 1024, "gpus": 2}
                        },
                        "regions_with_capacity_available": regions
                            .iter()
                            .map(|r| json!({"name": r, "description": r}))
                            .collect::<Vec<_>>(),
                    }),
                );
            }
            Response::ok(json!({ "data": data }))
        }
        ("GET", "/ssh-keys") => {
            let keys: Vec<Value> = a
                .ssh_keys
                .iter()
                .enumerate()
                .map(|(i, (n, k))| json!({"id": format!("key{i}"), "name": n, "public_key": k}))
                .collect();
            Response::ok(json!({ "data": keys }))
        }
        ("POST", "/ssh-keys") => {
            let b = req.json();
            let (Some(name), Some(public)) = (b["name"].as_str(), b["public_key"].as_str()) else {
                return error(
                    400,
                    "global/invalid-parameters",
                    "name and public_key are required",
                    None,
                );
            };
            if a.ssh_keys.iter().any(|(n, _)| n == name) {
                return error(
                    400,
                    "global/invalid-parameters",
                    "An SSH key with this name already exists",
                    None,
                );
            }
            a.ssh_keys.push((name.to_string(), public.to_string()));
            Response::ok(
                json!({"data": {"id": format!("key{}", a.ssh_keys.len()), "name": name, "public_key": public}}),
            )
        }
        ("POST", "/instance-operations/launch") => {
            let b = req.json();
            let region = b["region_name"].as_str().unwrap_or_default().to_string();
            let itype = b["instance_type_name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let name = b["name"].as_str().unwrap_or_default().to_string();
            let Some(key_name) = b["ssh_key_names"][0].as_str() else {
                return error(
                    400,
                    "global/invalid-parameters",
                    "ssh_key_names must name one SSH key",
                    None,
                );
            };
            let Some(public) = a
                .ssh_keys
                .iter()
                .find(|(n, _)| n == key_name)
                .map(|(_, k)| k.clone())
            else {
                return error(
                    400,
                    "global/object-does-not-exist",
                    "Specified SSH key does not exist.",
                    None,
                );
            };
            let has_capacity = TYPES
                .iter()
                .any(|(t, _, rs)| *t == itype && rs.contains(&region.as_str()));
            if !has_capacity {
                return error(
                    400,
                    "instance-operations/launch/insufficient-capacity",
                    "Not enough capacity to fulfill launch request.",
                    None,
                );
            }
            match a.launch(&name, &itype, &region, &public, Some("ubuntu")) {
                Ok(id) => Response::ok(json!({"data": {"instance_ids": [id]}})),
                Err(_) => error(
                    400,
                    "instance-operations/launch/insufficient-capacity",
                    "Not enough capacity to fulfill launch request.",
                    Some("Try a different region or instance type."),
                ),
            }
        }
        ("POST", "/instance-operations/terminate") => {
            if a.behaviour.fail_terminations > 0 {
                a.behaviour.fail_terminations -= 1;
                return error(
                    503,
                    "global/internal-error",
                    "Service temporarily unavailable.",
                    Some("Try again later."),
                );
            }
            let b = req.json();
            let ids: Vec<String> = b["instance_ids"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect();
            let mut out = Vec::new();
            for id in &ids {
                if !a.terminate(id) {
                    return error(
                        404,
                        "global/object-does-not-exist",
                        "Specified instance does not exist.",
                        None,
                    );
                }
                out.extend(instance_json(a, id));
            }
            Response::ok(json!({"data": {"terminated_instances": out}}))
        }
        ("GET", "/instances") => {
            let ids = a.live_ids();
            let list: Vec<Value> = ids.iter().filter_map(|id| instance_json(a, id)).collect();
            Response::ok(json!({ "data": list }))
        }
        ("GET", p) if p.starts_with("/instances/") => {
            let id = &p["/instances/".len()..];
            match instance_json(a, id) {
                Some(v) if v["status"] != "terminated" => Response::ok(json!({ "data": v })),
                _ => error(
                    404,
                    "global/object-does-not-exist",
                    "Specified instance does not exist.",
                    None,
                ),
            }
        }
        _ => error(404, "global/not-found", "Not found", None),
    }
}

/// A fake Lambda account with `api_key`; its machines take 127.0.0.`octets`.
pub fn start(api_key: &str, octets: std::ops::Range<u8>) -> FakeCloud {
    let mut cloud = FakeCloud::new(api_key, octets, true);
    cloud.server = Some(HttpServer::start(handler(&cloud, answer)));
    cloud
}

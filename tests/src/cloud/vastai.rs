//! A fake Vast.ai REST API v0, from its public documentation (<https://docs.vast.ai/api>):
//! `Authorization: Bearer <key>`; `POST /api/v0/bundles/` searches offers (`{"offers": [...]}`
//! with `id`, `gpu_name`, `num_gpus`, `gpu_ram` in MB, `cpu_cores_effective`, `cpu_ram` in MB,
//! `disk_space`, `dph_total`, `geolocation`); `PUT /api/v0/asks/{id}/` rents one (`{"success":
//! true, "new_contract": id}`); `GET /api/v0/instances/` and `/instances/{id}/` (`actual_status`
//! `loading | running | exited`, `public_ipaddr`, `ports`); `DELETE /api/v0/instances/{id}/`;
//! `GET`/`POST /api/v0/ssh/` for the account's keys; errors `{"success": false, "error",
//! "msg"}`. An instance is an sshd host on a port of its own, reached as root.

use super::{handler, Account, FakeCloud, HttpServer, Request, Response};
use serde_json::{json, Value};

/// The marketplace: (offer id, GPU, count, GPU MB, $/h, where).
pub const OFFERS: &[(u64, &str, u32, u32, f64, &str)] = &[
    (501, "H100 SXM", 2, 81559, 4.1, "Quebec, CA"),
    (502, "H100 SXM", 2, 81559, 4.5, "Texas, US"),
    (503, "RTX 4090", 1, 24564, 0.4, "Oslo, NO"),
];

fn fail(status: u16, code: &str, msg: &str) -> Response {
    Response::status(status, json!({"success": false, "error": code, "msg": msg}))
}

fn instance_json(a: &mut Account, id: &str) -> Option<Value> {
    let m = a.machine(id)?;
    let status = match m.status.as_str() {
        "active" => "running",
        "terminated" => "exited",
        _ => "loading",
    };
    let (ip, ports) = match (&m.host, status) {
        (Some(h), "running") => (
            json!(h.ip),
            json!({"22/tcp": [{"HostIp": "0.0.0.0", "HostPort": h.port.to_string()}]}),
        ),
        _ => (Value::Null, json!({})),
    };
    Some(json!({
        "id": m.id.parse::<u64>().unwrap_or(0),
        "label": m.name,
        "actual_status": status,
        "intended_status": "running",
        "cur_state": status,
        "status_msg": if status == "loading" { "pulling image" } else { "" },
        "public_ipaddr": ip,
        "ports": ports,
        "ssh_host": "ssh4.vast.ai",
        "ssh_port": 20000,
        "machine_id": 1,
    }))
}

fn answer(key: &str, a: &mut Account, req: &Request) -> Response {
    if req.bearer() != Some(key) {
        return fail(401, "invalid_user_key", "Invalid user key");
    }
    let path = req.path.trim_start_matches("/api/v0").to_string();
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (req.method.as_str(), parts.as_slice()) {
        ("GET", ["users", "current"]) => {
            Response::ok(json!({"id": 7, "username": "user", "credit": 25.0}))
        }
        ("POST", ["bundles"]) => {
            let q = req.json();
            if q["rentable"]["eq"] != json!(true) {
                return fail(
                    400,
                    "invalid_args",
                    "the search must ask for rentable offers",
                );
            }
            let offers: Vec<Value> = OFFERS
                .iter()
                .map(|(id, gpu, n, ram, price, geo)| {
                    json!({
                        "id": id, "ask_contract_id": id, "gpu_name": gpu, "num_gpus": n,
                        "gpu_ram": ram, "cpu_cores": 32, "cpu_cores_effective": 16.0,
                        "cpu_ram": 131072, "disk_space": 200.0, "dph_total": price,
                        "geolocation": geo, "rentable": true, "rented": false,
                        "verified": true, "reliability2": 0.99, "cpu_arch": "amd64",
                    })
                })
                .collect();
            Response::ok(json!({ "offers": offers }))
        }
        ("GET", ["ssh"]) => {
            let keys: Vec<Value> = a
                .ssh_keys
                .iter()
                .enumerate()
                .map(|(i, (_, k))| json!({"id": i + 1, "public_key": k}))
                .collect();
            Response::ok(json!(keys))
        }
        ("POST", ["ssh"]) => {
            let Some(k) = req.json()["ssh_key"].as_str().map(str::to_string) else {
                return fail(400, "invalid_args", "ssh_key is required");
            };
            a.ssh_keys
                .push((format!("key{}", a.ssh_keys.len() + 1), k.clone()));
            Response::ok(json!({"success": true, "key": {"id": a.ssh_keys.len(), "public_key": k}}))
        }
        ("PUT", ["asks", id]) => {
            let b = req.json();
            let (Some(_image), Some(label)) = (b["image"].as_str(), b["label"].as_str()) else {
                return fail(400, "invalid_args", "image and label are required");
            };
            let Some(offer) = OFFERS.iter().find(|o| o.0.to_string() == *id) else {
                return fail(
                    404,
                    "no_such_ask",
                    &format!("Instance type by id {id} is not available."),
                );
            };
            let Some(public) = a.ssh_keys.last().map(|(_, k)| k.clone()) else {
                return fail(400, "invalid_args", "add an SSH key to the account first");
            };
            match a.launch(label, &offer.0.to_string(), offer.5, &public, None) {
                Ok(new) => Response::ok(
                    json!({"success": true, "new_contract": new.parse::<u64>().unwrap_or(0)}),
                ),
                Err(_) => fail(
                    400,
                    "no_such_ask",
                    &format!("Instance type by id {id} is not available."),
                ),
            }
        }
        ("GET", ["instances"]) => {
            let ids = a.live_ids();
            let list: Vec<Value> = ids.iter().filter_map(|id| instance_json(a, id)).collect();
            Response::ok(json!({ "instances": list }))
        }
        ("GET", ["instances", id]) => {
            let v = instance_json(a, id).filter(|v| v["actual_status"] != "exited");
            Response::ok(json!({ "instances": v }))
        }
        ("DELETE", ["instances", id]) => {
            if a.terminate(id) {
                Response::ok(json!({"success": true}))
            } else {
                fail(404, "no_such_instance", "Instance not found")
            }
        }
        _ => fail(404, "not_found", "Not found"),
    }
}

/// A fake Vast.ai account with `api_key`; its instances take 127.0.0.`octets`.
pub fn start(api_key: &str, octets: std::ops::Range<u8>) -> FakeCloud {
    let mut cloud = FakeCloud::new(api_key, octets, false);
    cloud.server = Some(HttpServer::start(handler(&cloud, answer)));
    cloud
}

//! A fake RunPod GraphQL API, from its public documentation (<https://docs.runpod.io/sdks/graphql>):
//! `POST /graphql?api_key=...` with `{"query", "variables"}`; answers `{"data": ...}`, errors
//! `{"errors": [{"message", "path"}]}` (HTTP 200) or HTTP 401 for a bad key. Operations:
//! `podFindAndDeployOnDemand`, `podRentInterruptable`, `pod(input: {podId})` with
//! `runtime.ports`, `podTerminate`, `myself { pods }`. A pod's `runtime` is null while it
//! starts; its machine is an sshd host on a port of its own, reached as root.

use super::{handler, Account, FakeCloud, HttpServer, Request, Response};
use serde_json::{json, Value};

fn gql_error(field: &str, message: &str) -> Response {
    Response::ok(json!({
        "errors": [{"message": message, "locations": [{"line": 1, "column": 1}], "path": [field]}],
        "data": {field: null},
    }))
}

fn pod_json(a: &mut Account, id: &str) -> Option<Value> {
    let m = a.machine(id)?;
    let status = if m.status == "terminated" {
        "TERMINATED"
    } else {
        "RUNNING"
    };
    let runtime = match (&m.host, m.status.as_str()) {
        (Some(h), "active") => json!({
            "uptimeInSeconds": m.active_at.map(|t| t.elapsed().as_secs()).unwrap_or(0),
            "ports": [
                {"ip": h.ip, "isIpPublic": true, "privatePort": 22, "publicPort": h.port, "type": "tcp"},
                {"ip": "10.0.0.2", "isIpPublic": false, "privatePort": 22, "publicPort": 22, "type": "tcp"},
            ],
        }),
        _ => Value::Null,
    };
    Some(json!({
        "id": m.id,
        "name": m.name,
        "desiredStatus": status,
        "lastStatusChange": format!("Rented by User: {}", m.created.elapsed().as_secs()),
        "runtime": runtime,
    }))
}

fn answer(key: &str, a: &mut Account, req: &Request) -> Response {
    if req.method != "POST" || req.path.trim_end_matches('/') != "/graphql" {
        return Response::status(404, json!({"error": "not found"}));
    }
    if req.param("api_key") != Some(key) {
        return Response::status(
            401,
            json!({"errors": [{"message": "Unauthorized: the api_key is invalid or was revoked"}]}),
        );
    }
    let body = req.json();
    let query = body["query"].as_str().unwrap_or_default().to_string();
    let vars = &body["variables"];
    let input = &vars["input"];
    for field in ["podFindAndDeployOnDemand", "podRentInterruptable"] {
        if query.contains(field) {
            let (Some(name), Some(gpu), Some(image)) = (
                input["name"].as_str(),
                input["gpuTypeId"].as_str(),
                input["imageName"].as_str(),
            ) else {
                return gql_error(field, "name, gpuTypeId and imageName are required");
            };
            if field == "podRentInterruptable" && input["bidPerGpu"].as_f64().is_none() {
                return gql_error(field, "bidPerGpu is required");
            }
            let public = input["env"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|e| e["key"] == "PUBLIC_KEY")
                .and_then(|e| e["value"].as_str())
                .unwrap_or_default()
                .to_string();
            let region = input["countryCode"].as_str().unwrap_or("US").to_string();
            return match a.launch(name, gpu, &region, &public, None) {
                Ok(id) => Response::ok(json!({"data": {field: {
                    "id": id, "desiredStatus": "RUNNING", "imageName": image, "machineId": "m1"
                }}})),
                Err(_) => gql_error(
                    field,
                    "There are no longer any instances available with the requested specifications. Please refresh and try again.",
                ),
            };
        }
    }
    if query.contains("podTerminate") {
        let id = input["podId"].as_str().unwrap_or_default();
        if !a.terminate(id) {
            return gql_error("podTerminate", "pod not found");
        }
        return Response::ok(json!({"data": {"podTerminate": null}}));
    }
    if query.contains("pod(") {
        let id = input["podId"].as_str().unwrap_or_default();
        let pod = pod_json(a, id).filter(|p| p["desiredStatus"] != "TERMINATED");
        return Response::ok(json!({"data": {"pod": pod}}));
    }
    if query.contains("myself") {
        if query.contains("pods") {
            let ids = a.live_ids();
            let pods: Vec<Value> = ids.iter().filter_map(|id| pod_json(a, id)).collect();
            return Response::ok(json!({"data": {"myself": {"id": "user1", "pods": pods}}}));
        }
        return Response::ok(json!({"data": {"myself": {"id": "user1"}}}));
    }
    Response::ok(json!({"errors": [{"message": "Cannot query this field"}], "data": null}))
}

/// A fake RunPod account with `api_key`; its pods take 127.0.0.`octets`.
pub fn start(api_key: &str, octets: std::ops::Range<u8>) -> FakeCloud {
    let mut cloud = FakeCloud::new(api_key, octets, false);
    cloud.server = Some(HttpServer::start(handler(&cloud, answer)));
    cloud
}

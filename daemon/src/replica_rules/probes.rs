//! Handle layer, pure: a replica's readiness from its `probes`, as dstack keeps it
//! (`scheduled_tasks/probes.py`): each probe runs every `interval`, a 2xx answer within
//! `timeout` adds one to its success streak and anything else resets it to 0; the replica is
//! ready while every probe's streak is at least its `ready_after`. A probe with `until_ready`
//! stops running once it has reached `ready_after` (its streak then stays).

use flotilla_protocol::config::{HttpHeader, ProbeSpec, ServiceConfig};
use flotilla_protocol::Timestamp;

/// dstack's `OPENAI_MODEL_PROBE_TIMEOUT`: the default probe of a model waits this long.
const MODEL_PROBE_TIMEOUT_SECS: u64 = 30;

/// The probes a service's replicas get, as dstack builds them: its `probes` when written (an
/// empty list: none); else, for a `model` in the OpenAI format, one `POST {prefix}/chat/completions`
/// asking the model for one token; else none (readiness is then the port accepting).
pub fn service_probes(service: &ServiceConfig) -> Vec<ProbeSpec> {
    if let Some(probes) = &service.probes {
        return probes.clone();
    }
    let Some(model) = service.model.as_ref().filter(|m| m.format == "openai") else {
        return Vec::new();
    };
    let prefix = model
        .prefix
        .as_deref()
        .unwrap_or("/v1")
        .trim_end_matches('/');
    let body = serde_json::json!({
        "model": model.name,
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 1,
    });
    vec![ProbeSpec {
        url: format!("{prefix}/chat/completions"),
        method: "post".into(),
        headers: vec![HttpHeader {
            name: "Content-Type".into(),
            value: "application/json".into(),
        }],
        body: Some(body.to_string()),
        timeout: MODEL_PROBE_TIMEOUT_SECS,
        interval: 15,
        ready_after: 1,
        until_ready: false,
    }]
}

/// One probe's state on one replica.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProbeState {
    pub success_streak: u32,
    /// When it runs next (`None`: at once).
    pub due: Option<Timestamp>,
}

/// Whether the probe runs at `now`.
pub fn is_due(spec: &ProbeSpec, state: &ProbeState, now: Timestamp) -> bool {
    if spec.until_ready && state.success_streak >= spec.ready_after {
        return false;
    }
    state.due.is_none_or(|due| due <= now)
}

/// The state after a run of the probe that ended at `now`.
pub fn after_run(spec: &ProbeSpec, state: ProbeState, success: bool, now: Timestamp) -> ProbeState {
    ProbeState {
        success_streak: if success {
            state.success_streak.saturating_add(1)
        } else {
            0
        },
        due: Some(now.plus_secs(spec.interval)),
    }
}

/// Whether a replica with these probe states is ready.
pub fn is_ready(specs: &[ProbeSpec], states: &[ProbeState]) -> bool {
    specs.iter().enumerate().all(|(i, spec)| {
        states
            .get(i)
            .is_some_and(|s| s.success_streak >= spec.ready_after)
    })
}

/// Whether an HTTP status counts as a probe's success (httpx's `is_success`: 2xx).
pub fn is_success(status: u16) -> bool {
    (200..300).contains(&status)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp(1_700_000_000_000);

    fn spec(ready_after: u32, until_ready: bool) -> ProbeSpec {
        ProbeSpec {
            url: "/health".into(),
            method: "get".into(),
            headers: Vec::new(),
            body: None,
            timeout: 10,
            interval: 15,
            ready_after,
            until_ready,
        }
    }

    #[test]
    fn ready_after_enough_successes_in_a_row() {
        let s = spec(2, false);
        let mut state = ProbeState::default();
        assert!(is_due(&s, &state, NOW));
        state = after_run(&s, state, true, NOW);
        assert!(!is_ready(std::slice::from_ref(&s), &[state]));
        assert!(!is_due(&s, &state, NOW.plus_secs(14)));
        assert!(is_due(&s, &state, NOW.plus_secs(15)));
        state = after_run(&s, state, true, NOW.plus_secs(15));
        assert!(is_ready(std::slice::from_ref(&s), &[state]));
        // A failure resets the streak: not ready again.
        state = after_run(&s, state, false, NOW.plus_secs(30));
        assert!(!is_ready(&[s], &[state]));
    }

    #[test]
    fn until_ready_stops_probing_once_ready() {
        let s = spec(1, true);
        let state = after_run(&s, ProbeState::default(), true, NOW);
        assert!(!is_due(&s, &state, NOW.plus_secs(100)));
        assert!(is_ready(&[s], &[state]));
    }

    #[test]
    fn a_model_without_probes_gets_dstacks_chat_probe() {
        let parse = |yaml: &str| match flotilla_protocol::config::parse_configuration("s.yml", yaml)
            .expect("a service")
            .as_run()
        {
            Some(flotilla_protocol::config::RunConfiguration::Service(s)) => s,
            other => panic!("{other:?}"),
        };
        let probes = service_probes(&parse(
            "type: service\nport: 8000\ncommands: [serve]\nmodel: llama\n",
        ));
        assert_eq!(probes.len(), 1);
        assert_eq!(
            (probes[0].method.as_str(), probes[0].url.as_str()),
            ("post", "/v1/chat/completions")
        );
        assert_eq!(probes[0].timeout, 30);
        assert!(probes[0]
            .body
            .as_deref()
            .is_some_and(|b| b.contains("\"max_tokens\":1")));
        // Written probes win, an empty list means none, and no model means none.
        let written = parse("type: service\nport: 8000\ncommands: [serve]\nmodel: llama\nprobes:\n  - type: http\n    url: /health\n");
        assert_eq!(service_probes(&written)[0].url, "/health");
        let none =
            parse("type: service\nport: 8000\ncommands: [serve]\nmodel: llama\nprobes: []\n");
        assert!(service_probes(&none).is_empty());
        assert!(
            service_probes(&parse("type: service\nport: 8000\ncommands: [serve]\n")).is_empty()
        );
    }

    #[test]
    fn every_probe_must_pass() {
        let (a, b) = (spec(1, false), spec(1, false));
        let ok = after_run(&a, ProbeState::default(), true, NOW);
        let bad = after_run(&b, ProbeState::default(), false, NOW);
        assert!(!is_ready(&[a.clone(), b.clone()], &[ok, bad]));
        assert!(is_ready(&[a, b], &[ok, ok]));
        assert!(is_success(204) && !is_success(301) && !is_success(500));
    }
}

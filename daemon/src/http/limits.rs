//! Driver layer, HTTP: a service's `rate_limits` as dstack's gateway applies them (nginx's
//! `limit_req ... burst=N nodelay` with status 429): the rule with the longest `prefix` that
//! the request's path (within the service) starts with applies; each key (the client's IP, or
//! the value of the named header) has a token bucket that holds `burst + 1` requests and fills
//! at `rps`. A request with no value for a header key is not limited (nginx skips empty keys).

use crate::sync::LockExt;
use flotilla_protocol::config::RateLimit;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// Buckets kept before the full ones are forgotten.
const MAX_BUCKETS: usize = 100_000;

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Every bucket, by service, rule prefix and key.
#[derive(Default)]
pub struct Limits {
    buckets: Mutex<HashMap<(u64, String, String), Bucket>>,
}

/// The rule that applies to `path`: the longest matching prefix.
pub fn rule_for<'a>(rules: &'a [RateLimit], path: &str) -> Option<&'a RateLimit> {
    rules
        .iter()
        .filter(|r| path.starts_with(&r.prefix))
        .max_by_key(|r| r.prefix.len())
}

impl Limits {
    /// Whether the request may pass (`true`), taking one token from its bucket.
    pub fn admit(
        &self,
        run_id: u64,
        rules: &[RateLimit],
        path: &str,
        ip: IpAddr,
        header: impl Fn(&str) -> Option<String>,
    ) -> bool {
        self.admit_at(run_id, rules, path, ip, header, Instant::now())
    }

    fn admit_at(
        &self,
        run_id: u64,
        rules: &[RateLimit],
        path: &str,
        ip: IpAddr,
        header: impl Fn(&str) -> Option<String>,
        now: Instant,
    ) -> bool {
        let Some(rule) = rule_for(rules, path) else {
            return true;
        };
        let key = match &rule.header {
            None => ip.to_string(),
            Some(name) => match header(name) {
                Some(v) if !v.is_empty() => v,
                _ => return true,
            },
        };
        let capacity = rule.burst as f64 + 1.0;
        let mut buckets = self.buckets.locked();
        if buckets.len() >= MAX_BUCKETS {
            buckets.retain(|_, b| b.tokens < capacity);
        }
        let bucket = buckets
            .entry((run_id, rule.prefix.clone(), key))
            .or_insert(Bucket {
                tokens: capacity,
                at: now,
            });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rule.rps).min(capacity);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limit(prefix: &str, rps: f64, burst: u64, header: Option<&str>) -> RateLimit {
        RateLimit {
            prefix: prefix.into(),
            header: header.map(String::from),
            rps,
            burst,
        }
    }

    #[test]
    fn the_longest_prefix_applies() {
        let rules = [limit("/", 1.0, 0, None), limit("/api/", 2.0, 0, None)];
        assert_eq!(rule_for(&rules, "/api/x").map(|r| r.rps), Some(2.0));
        assert_eq!(rule_for(&rules, "/other").map(|r| r.rps), Some(1.0));
        assert!(rule_for(&rules[1..], "/other").is_none());
    }

    #[test]
    fn burst_plus_one_then_the_rate() {
        let l = Limits::default();
        let rules = [limit("/", 2.0, 2, None)];
        let ip: IpAddr = [10, 0, 0, 1].into();
        let t0 = Instant::now();
        let admit = |t| l.admit_at(1, &rules, "/x", ip, |_| None, t);
        assert!(admit(t0) && admit(t0) && admit(t0));
        assert!(!admit(t0), "past burst + 1");
        assert!(
            admit(t0 + Duration::from_millis(500)),
            "one more after 1/rps"
        );
        assert!(!admit(t0 + Duration::from_millis(500)));
        // Another client has its own bucket.
        assert!(l.admit_at(1, &rules, "/x", [10, 0, 0, 2].into(), |_| None, t0));
    }

    #[test]
    fn a_header_key_without_the_header_is_not_limited() {
        let l = Limits::default();
        let rules = [limit("/", 1.0, 0, Some("X-API-Key"))];
        let ip: IpAddr = [10, 0, 0, 1].into();
        let t0 = Instant::now();
        assert!(l.admit_at(1, &rules, "/", ip, |_| Some("a".into()), t0));
        assert!(!l.admit_at(1, &rules, "/", ip, |_| Some("a".into()), t0));
        assert!(l.admit_at(1, &rules, "/", ip, |_| Some("b".into()), t0));
        assert!(l.admit_at(1, &rules, "/", ip, |_| None, t0));
        assert!(l.admit_at(1, &rules, "/", ip, |_| None, t0));
    }
}

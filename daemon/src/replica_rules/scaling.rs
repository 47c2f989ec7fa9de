//! Handle layer, pure: how many replicas a replica group wants, dstack's scalers
//! (`services/services/autoscalers.py`). Without `scaling` a group keeps its count within
//! `min..max` (dstack's `ManualScaler`); with `scaling: {metric: rps}` it tracks
//! `ceil(rps / target)` clamped to `min..max`, moving up only `scale_up_delay` after the last
//! scaling and down only `scale_down_delay` after it (`RPSAutoscaler`). Going up from zero is
//! immediate, as in dstack, and so is a request held with no replica (flotilla's scale from
//! zero: the proxy holds the request while one starts).

use flotilla_protocol::config::{Range, ScalingSpec};
use flotilla_protocol::Timestamp;

/// dstack's `DEFAULT_SCALING_WINDOW`: the seconds over which `rps` is measured.
pub const DEFAULT_WINDOW_SECS: u64 = 60;

/// The traffic a scaler looks at.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Traffic {
    /// Requests per second over the group's `scaling.window`.
    pub rps: f64,
    /// Requests held now with no ready replica.
    pub waiting: u32,
}

/// The window (seconds) a group's `rps` is measured over.
pub fn window_secs(scaling: Option<&ScalingSpec>) -> u64 {
    scaling
        .and_then(|s| s.window)
        .unwrap_or(DEFAULT_WINDOW_SECS)
        .max(1)
}

/// The replica count a group wants now, from the count it wanted so far (`current`).
pub fn desired_count(
    count: Range<u32>,
    scaling: Option<&ScalingSpec>,
    current: u32,
    traffic: Traffic,
    last_scaled_at: Option<Timestamp>,
    now: Timestamp,
) -> u32 {
    let min = count.min.unwrap_or(0);
    let max = count.max.unwrap_or(min).max(min);
    let Some(scaling) = scaling else {
        return current.clamp(min, max);
    };
    let wanted = (traffic.rps / scaling.target).ceil();
    let mut new = if wanted.is_finite() && wanted > 0.0 {
        (wanted.min(f64::from(u32::MAX))) as u32
    } else {
        0
    };
    if traffic.waiting > 0 {
        new = new.max(1);
    }
    let new = new.clamp(min, max);
    let since = last_scaled_at.map(|t| t.secs_until(now));
    if new > current {
        if current == 0 {
            // No replica at all: up at once (dstack), and a held request must not wait.
            return new;
        }
        if since.is_some_and(|s| s < scaling.scale_up_delay) {
            return current;
        }
        return new;
    }
    if new < current && since.is_some_and(|s| s < scaling.scale_down_delay) {
        return current;
    }
    new
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp(1_700_000_000_000);

    fn rps(target: f64, up: u64, down: u64) -> ScalingSpec {
        ScalingSpec {
            metric: "rps".into(),
            target,
            window: None,
            scale_up_delay: up,
            scale_down_delay: down,
        }
    }

    fn range(min: u32, max: u32) -> Range<u32> {
        Range {
            min: Some(min),
            max: Some(max),
        }
    }

    fn traffic(rps: f64) -> Traffic {
        Traffic { rps, waiting: 0 }
    }

    fn ago(secs: u64) -> Option<Timestamp> {
        Some(Timestamp(NOW.millis() - secs * 1000))
    }

    #[test]
    fn without_scaling_the_count_stays_within_its_range() {
        assert_eq!(
            desired_count(range(2, 2), None, 0, traffic(50.0), None, NOW),
            2
        );
        assert_eq!(
            desired_count(range(1, 3), None, 5, traffic(0.0), None, NOW),
            3
        );
    }

    #[test]
    fn scales_up_past_the_target_only_after_the_up_delay() {
        let s = rps(10.0, 300, 600);
        // 25 rps over a target of 10: 3 replicas, but the last scaling was 100s ago.
        assert_eq!(
            desired_count(range(1, 4), Some(&s), 1, traffic(25.0), ago(100), NOW),
            1
        );
        assert_eq!(
            desired_count(range(1, 4), Some(&s), 1, traffic(25.0), ago(300), NOW),
            3
        );
        // Clamped to the maximum.
        assert_eq!(
            desired_count(range(1, 4), Some(&s), 1, traffic(100.0), ago(301), NOW),
            4
        );
        // Never scaled yet: no delay to wait for.
        assert_eq!(
            desired_count(range(1, 4), Some(&s), 1, traffic(15.0), None, NOW),
            2
        );
    }

    #[test]
    fn scales_down_only_after_the_down_delay() {
        let s = rps(10.0, 300, 600);
        assert_eq!(
            desired_count(range(1, 4), Some(&s), 3, traffic(5.0), ago(599), NOW),
            3
        );
        assert_eq!(
            desired_count(range(1, 4), Some(&s), 3, traffic(5.0), ago(600), NOW),
            1
        );
    }

    #[test]
    fn an_idle_zero_to_n_service_goes_to_zero_after_the_down_delay() {
        let s = rps(2.0, 300, 60);
        assert_eq!(
            desired_count(range(0, 2), Some(&s), 1, traffic(0.0), ago(30), NOW),
            1
        );
        assert_eq!(
            desired_count(range(0, 2), Some(&s), 1, traffic(0.0), ago(60), NOW),
            0
        );
    }

    #[test]
    fn up_from_zero_at_once_for_traffic_or_a_held_request() {
        let s = rps(10.0, 300, 600);
        // Scaled to zero a moment ago: the up delay does not hold back the first replica.
        assert_eq!(
            desired_count(range(0, 3), Some(&s), 0, traffic(0.1), ago(1), NOW),
            1
        );
        let held = Traffic {
            rps: 0.0,
            waiting: 1,
        };
        assert_eq!(
            desired_count(range(0, 3), Some(&s), 0, held, ago(1), NOW),
            1
        );
        // Nobody asks: it stays at zero.
        assert_eq!(
            desired_count(range(0, 3), Some(&s), 0, traffic(0.0), ago(1), NOW),
            0
        );
    }

    #[test]
    fn the_window_defaults_to_a_minute() {
        assert_eq!(window_secs(None), 60);
        let mut s = rps(1.0, 1, 1);
        s.window = Some(30);
        assert_eq!(window_secs(Some(&s)), 30);
    }
}

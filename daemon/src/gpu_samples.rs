//! Handle layer: the GPU samples of the last hour, by instance and GPU, kept in memory for `metrics.get`.

use crate::sync::LockExt;
use flotilla_protocol::rpc::{GpuSample, GpuSeries};
use flotilla_protocol::Timestamp;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// How long samples are kept.
pub const WINDOW_SECS: u64 = 3600;

/// How often the GPUs of busy instances are sampled.
pub const SAMPLE_INTERVAL_SECS: u64 = 5;

/// Samples by (instance name as `fleet/instance`, GPU index).
#[derive(Default)]
pub struct GpuSampleStore {
    series: Mutex<HashMap<(String, u32), VecDeque<GpuSample>>>,
}

impl GpuSampleStore {
    pub fn record(&self, instance: &str, gpu: u32, sample: GpuSample) {
        let mut s = self.series.locked();
        let q = s.entry((instance.to_string(), gpu)).or_default();
        let cutoff = sample.time.millis().saturating_sub(WINDOW_SECS * 1000);
        while q.front().is_some_and(|x| x.time.millis() < cutoff) {
            q.pop_front();
        }
        q.push_back(sample);
    }

    /// The series of one instance (or all), samples newer than `window_secs`.
    pub fn get(&self, instance: Option<&str>, window_secs: u64, now: Timestamp) -> Vec<GpuSeries> {
        let cutoff = now.millis().saturating_sub(window_secs * 1000);
        let s = self.series.locked();
        let mut out: Vec<GpuSeries> = s
            .iter()
            .filter(|((inst, _), _)| instance.is_none_or(|i| i == inst))
            .map(|((inst, gpu), q)| GpuSeries {
                instance: inst.clone(),
                gpu: *gpu,
                samples: q
                    .iter()
                    .filter(|x| x.time.millis() >= cutoff)
                    .cloned()
                    .collect(),
            })
            .collect();
        out.sort_by(|a, b| a.instance.cmp(&b.instance).then(a.gpu.cmp(&b.gpu)));
        out
    }
}

/// dstack's `utilization_policy` rule over the samples of a job's GPUs since `after` (one
/// series per GPU): `None` while there are not enough samples (none, or the oldest more than
/// `slack_ms` after `after`: the job has not run the whole window yet); else whether some GPU
/// stayed below `min_percent` in every sample.
pub fn idle_below(
    min_percent: u32,
    series: &[Vec<GpuSample>],
    after: Timestamp,
    slack_ms: u64,
) -> Option<bool> {
    let first = series.first()?.first()?;
    if series.iter().any(Vec::is_empty) || first.time.millis() > after.millis() + slack_ms {
        return None;
    }
    let min = f64::from(min_percent);
    Some(
        series
            .iter()
            .any(|gpu| gpu.iter().all(|s| s.util_percent < min)),
    )
}

/// One line of the `metrics` verb: `gpu=INDEX, UTIL%, MEM_USED_MIB, MEM_TOTAL_MIB`.
pub fn parse_metrics_line(line: &str, time: Timestamp) -> Option<(u32, GpuSample)> {
    let rest = line.strip_prefix("gpu=")?;
    let f: Vec<&str> = rest.split(',').map(str::trim).collect();
    let [idx, util, used, total] = f.as_slice() else {
        return None;
    };
    let gb = |v: &str| v.parse::<f64>().ok().map(|m| m / 1024.0);
    Some((
        idx.parse().ok()?,
        GpuSample {
            time,
            util_percent: util.parse().ok()?,
            memory_used_gb: gb(used)?,
            memory_total_gb: gb(total)?,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gpu_below_the_threshold_for_the_whole_window_is_idle() {
        let at = |secs: u64, util: f64| GpuSample {
            time: Timestamp(secs * 1000),
            util_percent: util,
            memory_used_gb: 1.0,
            memory_total_gb: 80.0,
        };
        let after = Timestamp(100_000);
        let busy = vec![at(110, 90.0), at(200, 95.0)];
        let idle = vec![at(110, 5.0), at(200, 9.0)];
        assert_eq!(
            idle_below(10, &[busy.clone(), idle.clone()], after, 60_000),
            Some(true)
        );
        assert_eq!(
            idle_below(10, std::slice::from_ref(&busy), after, 60_000),
            Some(false)
        );
        // One sample at the threshold is not below it.
        assert_eq!(
            idle_below(9, std::slice::from_ref(&idle), after, 60_000),
            Some(false)
        );
        // The samples start more than the slack after the window's start: not enough yet.
        assert_eq!(idle_below(10, &[vec![at(170, 0.0)]], after, 60_000), None);
        assert_eq!(idle_below(10, &[], after, 60_000), None);
    }

    #[test]
    fn parses_samples_and_keeps_one_hour() {
        let t0 = Timestamp(10_000_000);
        let (gpu, s) = parse_metrics_line("gpu=1, 37, 20480, 81559", t0).expect("a sample");
        assert_eq!(gpu, 1);
        assert_eq!(s.util_percent, 37.0);
        assert_eq!(s.memory_used_gb, 20.0);
        assert!(parse_metrics_line("gpu=1, 37", t0).is_none());
        let m = GpuSampleStore::default();
        m.record("f/i", 0, s.clone());
        let later = Timestamp(t0.millis() + (WINDOW_SECS + 1) * 1000);
        m.record("f/i", 0, GpuSample { time: later, ..s });
        let got = m.get(Some("f/i"), WINDOW_SECS, later);
        assert_eq!(got.len(), 1);
        assert_eq!(
            got[0].samples.len(),
            1,
            "the sample older than an hour is gone"
        );
        assert!(m.get(Some("other"), WINDOW_SECS, later).is_empty());
    }
}

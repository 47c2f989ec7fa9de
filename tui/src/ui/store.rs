//! The daemon's data that several views show: the runs (runs and jobs views, the header), the
//! fleets (fleets view, prices and GPUs of runs, the header's $/h) and the GPU utilisation
//! series (sparklines). The runs component writes the runs, the fleets component the fleets,
//! the app the metrics; everyone else reads them through the component context.

use crate::ui::cells;
use crate::ui::messages::Command;
use flotilla_protocol::model::{Fleet, Instance, Run};
use flotilla_protocol::rpc::{MetricsParams, MetricsResult};
use flotilla_protocol::Timestamp;
use std::collections::{HashMap, HashSet};

const METRICS_EVERY_MS: u64 = 15_000;

#[derive(Default)]
pub struct Store {
    /// Newest first, as the daemon lists them.
    pub runs: Vec<Run>,
    pub fleets: Vec<Fleet>,
    pub metrics: Metrics,
}

impl Store {
    pub fn run_named(&self, name: &str) -> Option<&Run> {
        self.runs.iter().find(|r| r.name == name)
    }

    /// The GPU series of every instance of every fleet (the fleets view's sparklines).
    pub fn fleet_series(&self) -> Vec<(String, MetricsParams)> {
        let mut wanted = Vec::new();
        for f in &self.fleets {
            for i in &f.instances {
                let key = format!("{}/{}", f.name, i.name);
                let params = MetricsParams {
                    instance: Some(key.clone()),
                    ..MetricsParams::default()
                };
                wanted.push((key, params));
            }
        }
        wanted
    }

    /// The GPU series of the run `name` (the jobs view's sparkline).
    pub fn run_series(name: &str) -> Vec<(String, MetricsParams)> {
        let params = MetricsParams {
            run: Some(name.to_string()),
            ..MetricsParams::default()
        };
        vec![(format!("run:{name}"), params)]
    }

    /// The instance a job runs on, from the fleets list.
    pub fn find_instance(&self, fleet: Option<&str>, name: Option<&str>) -> Option<&Instance> {
        let (fleet, name) = (fleet?, name?);
        self.fleets
            .iter()
            .find(|f| f.name == fleet)?
            .instances
            .iter()
            .find(|i| i.name == name)
    }
}

/// GPU utilisation by instance (`fleet/instance`) or run (`run:NAME`), and when to ask again.
pub struct Metrics {
    /// Oldest first.
    pub values: HashMap<String, Vec<f64>>,
    pub supported: bool,
    pub due: Option<Timestamp>,
    in_flight: HashSet<String>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            values: HashMap::new(),
            supported: true,
            due: None,
            in_flight: HashSet::new(),
        }
    }
}

impl Metrics {
    pub fn get(&self, key: &str) -> Option<&Vec<f64>> {
        self.values.get(key)
    }

    /// The requests for `wanted` series not already asked; the next round is due later.
    pub fn request(
        &mut self,
        wanted: Vec<(String, MetricsParams)>,
        now: Timestamp,
    ) -> Vec<Command> {
        let mut out = Vec::new();
        for (key, params) in wanted {
            if self.in_flight.insert(key.clone()) {
                out.push(Command::Metrics { key, params });
            }
        }
        self.due = Some(Timestamp(now.0 + METRICS_EVERY_MS));
        out
    }

    pub fn answered(&mut self, key: String, result: Result<MetricsResult, String>) {
        self.in_flight.remove(&key);
        if let Ok(m) = result {
            let series: Vec<&[_]> = m.series.iter().map(|s| s.samples.as_slice()).collect();
            self.values.insert(key, cells::utilisation(&series));
        }
    }

    /// The daemon has no `metrics.get`: no sparklines, no more requests.
    pub fn unsupported(&mut self) {
        self.supported = false;
        self.values.clear();
        self.in_flight.clear();
        self.due = None;
    }

    /// A new connection: what was asked on the old one is asked again.
    pub fn reconnected(&mut self) {
        self.in_flight.clear();
    }
}

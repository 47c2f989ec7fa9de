//! `flotilla metrics RUN [--json]`: the GPU utilisation and memory of a run's GPUs, last hour.

use super::print_json;
use crate::connect::{connect_or_start, Target};
use crate::table::print_table;
use flotilla_protocol::rpc::{methods, MetricsParams, MetricsResult};
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    pub run: String,
    /// JSON: {"series": [{"instance", "gpu", "samples": [...]}]}
    #[arg(long)]
    pub json: bool,
}

pub async fn run(target: &Target, a: Args) -> anyhow::Result<ExitCode> {
    let client = connect_or_start(target).await?;
    let m: MetricsResult = client
        .call::<methods::MetricsGet>(&MetricsParams {
            run: Some(a.run.clone()),
            ..Default::default()
        })
        .await?;
    if a.json {
        print_json(&m)?;
        return Ok(ExitCode::SUCCESS);
    }
    if m.series.is_empty() {
        println!(
            "No GPU samples for {} (its job holds no GPU, or is not running).",
            a.run
        );
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = m
        .series
        .iter()
        .filter_map(|s| {
            let last = s.samples.last()?;
            let avg =
                s.samples.iter().map(|x| x.util_percent).sum::<f64>() / s.samples.len() as f64;
            Some(vec![
                s.instance.clone(),
                s.gpu.to_string(),
                format!("{:.0}%", last.util_percent),
                format!("{avg:.0}%"),
                format!("{:.1}/{:.1}GB", last.memory_used_gb, last.memory_total_gb),
                s.samples.len().to_string(),
            ])
        })
        .collect();
    print_table(
        &["INSTANCE", "GPU", "UTIL", "AVG UTIL", "MEMORY", "SAMPLES"],
        &rows,
    );
    Ok(ExitCode::SUCCESS)
}

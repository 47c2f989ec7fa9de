//! `flotilla offer [--gpu SPEC] ... [--group-by gpu] [--json]`: offers from fleets and catalogs, cheapest first.

use super::print_json;
use crate::connect::{connect_or_start, Target};
use crate::table::{price, print_offers, print_table};
use flotilla_protocol::rpc::{methods, OfferList, OfferQuery};
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// GPU requirement, e.g. `A100:2`, `24GB..:1..`, `H100,A100:80GB:8`
    #[arg(long)]
    pub gpu: Option<String>,
    /// CPU count range, e.g. `8..` or `arm:4..8`
    #[arg(long)]
    pub cpu: Option<String>,
    /// Memory range, e.g. `64GB..`
    #[arg(long)]
    pub memory: Option<String>,
    /// Disk range, e.g. `200GB..`
    #[arg(long)]
    pub disk: Option<String>,
    /// Spot offers only
    #[arg(long, conflicts_with = "on_demand")]
    pub spot: bool,
    /// On-demand offers only
    #[arg(long)]
    pub on_demand: bool,
    /// Highest price per hour
    #[arg(long)]
    pub max_price: Option<f64>,
    /// Only these backends (repeatable)
    #[arg(short = 'b', long = "backend")]
    pub backends: Vec<String>,
    /// Only these regions (repeatable)
    #[arg(short = 'r', long = "region")]
    pub regions: Vec<String>,
    /// Show at most N offers
    #[arg(long, default_value_t = 50)]
    pub max_offers: usize,
    /// Group by `gpu`, optionally with `backend`, `region`, `count` (comma-separated)
    #[arg(long, value_delimiter = ',')]
    pub group_by: Vec<String>,
    /// JSON: {"offers": [...], "total": N}
    #[arg(long)]
    pub json: bool,
}

pub async fn run(target: &Target, a: Args) -> anyhow::Result<ExitCode> {
    let query = OfferQuery {
        gpu: a.gpu,
        cpu: a.cpu,
        memory: a.memory,
        disk: a.disk,
        spot_policy: if a.spot {
            Some("spot".into())
        } else if a.on_demand {
            Some("on-demand".into())
        } else {
            None
        },
        max_price: a.max_price,
        backends: a.backends,
        regions: a.regions,
        max_offers: Some(a.max_offers),
        group_by: a.group_by,
    };
    let client = connect_or_start(target).await?;
    let list: OfferList = client.call::<methods::OfferList>(&query).await?;
    for w in &list.warnings {
        eprintln!("warning: {w}");
    }
    if a.json {
        print_json(&list)?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(groups) = &list.groups {
        let rows: Vec<Vec<String>> = groups
            .iter()
            .map(|g| {
                let per_gpu = match (g.price_per_gpu.min, g.price_per_gpu.max) {
                    (Some(a), Some(b)) if a != b => format!("{}..{}", price(a), price(b)),
                    (Some(a), _) => price(a),
                    _ => "-".into(),
                };
                vec![
                    g.gpu.clone(),
                    g.spot.join(","),
                    per_gpu,
                    g.backends.join(","),
                    g.regions.join(","),
                ]
            })
            .collect();
        print_table(&["GPU", "SPOT", "$/GPU", "BACKENDS", "REGIONS"], &rows);
        return Ok(ExitCode::SUCCESS);
    }
    print_offers(&list.offers);
    let max = list.offers.iter().map(|o| o.price).fold(0.0, f64::max);
    println!(
        "Shown {} of {} offers, {} max",
        list.offers.len(),
        list.total,
        price(max)
    );
    Ok(ExitCode::SUCCESS)
}

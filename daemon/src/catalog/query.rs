//! Offer queries: typed [`Requirements`] (from a run's profile or the `offer` command's flags)
//! and the catalog scan that answers them, cheapest first.

use super::matching::{resources_match, spot_allowed};
use super::offer_list::parse_group_by;
use super::table::Catalog;
use flotilla_protocol::config::{DiskSpec, ResourcesSpec, SpotPolicy};
use flotilla_protocol::model::Offer;
use flotilla_protocol::rpc::OfferQuery;

/// How many offers the `offer` command and a plan show unless told otherwise (SPEC section 3).
pub const DEFAULT_MAX_OFFERS: usize = 50;

/// What an offer must satisfy: the machine (`resources`) and the terms (spot, price, where).
#[derive(Debug, Clone, PartialEq)]
pub struct Requirements {
    pub resources: ResourcesSpec,
    pub spot_policy: SpotPolicy,
    /// Highest price per hour, inclusive.
    pub max_price: Option<f64>,
    /// Allowed backends, case-insensitive; empty = any.
    pub backends: Vec<String>,
    /// Allowed regions, case-insensitive; empty = any.
    pub regions: Vec<String>,
    /// Allowed instance types, case-insensitive; empty = any.
    pub instance_types: Vec<String>,
    /// At most this many offers are returned (`None` = all); the total counts every match.
    pub limit: Option<usize>,
}

impl Default for Requirements {
    /// The default resources (`cpu: 2.. memory: 8GB.. disk: 100GB.. gpu: 0..`), spot or not,
    /// any price, anywhere, no limit.
    fn default() -> Self {
        Requirements {
            resources: ResourcesSpec::default(),
            spot_policy: SpotPolicy::Auto,
            max_price: None,
            backends: Vec::new(),
            regions: Vec::new(),
            instance_types: Vec::new(),
            limit: None,
        }
    }
}

fn listed(list: &[String], value: &str) -> bool {
    list.is_empty() || list.iter().any(|v| v.eq_ignore_ascii_case(value))
}

impl Requirements {
    /// Whether an offer's terms are acceptable: spot policy, price, backend, region and
    /// instance type (not its resources: see `matching::resources_match`). Pool offers merged
    /// with catalog offers go through the same filter.
    pub fn accepts_terms(&self, offer: &Offer) -> bool {
        spot_allowed(self.spot_policy, offer.spot)
            && self.max_price.is_none_or(|max| offer.price <= max)
            && listed(&self.backends, &offer.backend)
            && listed(&self.regions, &offer.region)
            && listed(&self.instance_types, &offer.instance_type)
    }
}

/// For each entry of `table`, whether `list` admits it (all, when the list is empty).
fn admitted(list: &[String], table: &[String]) -> Vec<bool> {
    table.iter().map(|name| listed(list, name)).collect()
}

impl Catalog {
    /// The offers matching `q` in the canonical order (cheapest first, ties by backend,
    /// instance type, region, on-demand before spot), at most `q.limit` of them, and how many
    /// matched in all. Each distinct machine is matched once; the rows are scanned in price
    /// order and the scan stops at `max_price`.
    pub fn query(&self, q: &Requirements) -> (Vec<Offer>, usize) {
        let type_ok = admitted(&q.instance_types, &self.instance_types);
        let shape_ok: Vec<bool> = self
            .shapes
            .iter()
            .map(|s| {
                type_ok[s.instance_type as usize] && resources_match(&q.resources, &s.resources)
            })
            .collect();
        if !shape_ok.contains(&true) {
            return (Vec::new(), 0);
        }
        let backend_ok = admitted(&q.backends, &self.backends);
        let region_ok = (!q.regions.is_empty()).then(|| admitted(&q.regions, &self.regions));
        let limit = q.limit.unwrap_or(usize::MAX);
        let mut offers = Vec::with_capacity(limit.min(1024));
        let mut total = 0usize;
        for row in &self.rows {
            if q.max_price.is_some_and(|max| row.price > max) {
                break;
            }
            let ok = shape_ok[row.shape as usize]
                && backend_ok[usize::from(row.backend)]
                && spot_allowed(q.spot_policy, row.spot)
                && region_ok.as_ref().is_none_or(|r| r[row.region as usize]);
            if ok {
                if total < limit {
                    offers.push(self.offer(row));
                }
                total += 1;
            }
        }
        (offers, total)
    }
}

/// Formats a parser error about flag `flag` given `input`: `--gpu "A100:0GB": memory must be
/// positive`. The parsers quote the input at the start of their messages; it is said once.
fn flag_error(flag: &str, input: &str, error: String) -> String {
    let quoted = format!("{input:?}");
    match error.strip_prefix(&quoted) {
        Some(rest) => {
            let rest = rest.trim_start_matches([':', ' ']);
            format!("{flag} {quoted}: {rest}")
        }
        None => format!("{flag} {quoted}: {error}"),
    }
}

/// `spot`, `on-demand` or `auto`.
pub fn parse_spot_policy(text: &str) -> Result<SpotPolicy, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "spot" => Ok(SpotPolicy::Spot),
        "on-demand" | "on_demand" | "ondemand" => Ok(SpotPolicy::OnDemand),
        "auto" => Ok(SpotPolicy::Auto),
        _ => Err(format!(
            "--spot-policy {text:?}: expected spot, on-demand or auto"
        )),
    }
}

fn names(values: &[String]) -> Vec<String> {
    values
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .collect()
}

/// Turns the `offer` command's strings into typed requirements; errors name the flag
/// (`--gpu "A100:0GB": memory must be positive`). Absent flags keep the default resources
/// (SPEC section 2); the spot policy defaults to `auto` (both). The limit is `max_offers`
/// (default 50), or none when grouping (a group-by view summarizes every match).
pub fn requirements_from_query(q: &OfferQuery) -> Result<Requirements, String> {
    let mut resources = ResourcesSpec::default();
    if let Some(gpu) = &q.gpu {
        resources.gpu = ResourcesSpec::parse_gpu(gpu).map_err(|e| flag_error("--gpu", gpu, e))?;
    }
    if let Some(cpu) = &q.cpu {
        resources.cpu = ResourcesSpec::parse_cpu(cpu).map_err(|e| flag_error("--cpu", cpu, e))?;
    }
    if let Some(memory) = &q.memory {
        resources.memory = ResourcesSpec::parse_size_range(memory)
            .map_err(|e| flag_error("--memory", memory, e))?;
    }
    if let Some(disk) = &q.disk {
        resources.disk = DiskSpec {
            size: ResourcesSpec::parse_size_range(disk)
                .map_err(|e| flag_error("--disk", disk, e))?,
        };
    }
    let spot_policy = match &q.spot_policy {
        Some(text) => parse_spot_policy(text)?,
        None => SpotPolicy::Auto,
    };
    if let Some(price) = q.max_price {
        if !(price.is_finite() && price > 0.0) {
            return Err(format!(
                "--max-price {price}: must be a positive number of $/hour"
            ));
        }
    }
    let grouping = !parse_group_by(&q.group_by)?.is_empty();
    Ok(Requirements {
        resources,
        spot_policy,
        max_price: q.max_price,
        backends: names(&q.backends),
        regions: names(&q.regions),
        instance_types: Vec::new(),
        limit: if grouping {
            None
        } else {
            Some(q.max_offers.unwrap_or(DEFAULT_MAX_OFFERS))
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_errors_name_the_flag_and_the_input_once() {
        let q = OfferQuery {
            gpu: Some("A100:0GB".into()),
            ..OfferQuery::default()
        };
        assert_eq!(
            requirements_from_query(&q).expect_err("zero memory"),
            "--gpu \"A100:0GB\": memory must be positive"
        );
        let q = OfferQuery {
            memory: Some("lots".into()),
            ..OfferQuery::default()
        };
        let err = requirements_from_query(&q).expect_err("bad memory");
        assert!(err.starts_with("--memory \"lots\": "), "{err}");
        let q = OfferQuery {
            spot_policy: Some("sometimes".into()),
            ..OfferQuery::default()
        };
        assert!(requirements_from_query(&q)
            .expect_err("bad policy")
            .starts_with("--spot-policy"));
        let q = OfferQuery {
            max_price: Some(-1.0),
            ..OfferQuery::default()
        };
        assert!(requirements_from_query(&q)
            .expect_err("bad price")
            .starts_with("--max-price -1"));
    }

    #[test]
    fn query_defaults_are_auto_and_fifty() {
        let r = requirements_from_query(&OfferQuery::default()).expect("defaults");
        assert_eq!(r.spot_policy, SpotPolicy::Auto);
        assert_eq!(r.limit, Some(DEFAULT_MAX_OFFERS));
        assert_eq!(r.resources, ResourcesSpec::default());
        let grouped = OfferQuery {
            group_by: vec!["gpu".into()],
            backends: vec!["aws, runpod".into()],
            ..OfferQuery::default()
        };
        let r = requirements_from_query(&grouped).expect("grouped");
        assert_eq!(r.limit, None);
        assert_eq!(r.backends, vec!["aws".to_string(), "runpod".to_string()]);
    }
}

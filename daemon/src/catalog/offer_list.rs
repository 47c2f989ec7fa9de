//! Operations on a merged list of offers (pool offers from fleets and backend offers from
//! catalogs): the canonical order and the group-by-GPU view. Independent of any catalog.

use flotilla_protocol::config::{GpuVendor, Range};
use flotilla_protocol::model::{fmt_gb, Offer};
use flotilla_protocol::rpc::OfferGroup;
use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap};

/// The canonical order of offers (SPEC section 3): available before unavailable, then by
/// price ascending; ties by backend, instance type, region, on-demand before spot, fleet and
/// instance (all compared as strings), so that equal inputs always list the same way.
pub fn offer_order(a: &Offer, b: &Offer) -> Ordering {
    (!a.availability.is_available())
        .cmp(&!b.availability.is_available())
        .then(a.price.total_cmp(&b.price))
        .then_with(|| a.backend.cmp(&b.backend))
        .then_with(|| a.instance_type.cmp(&b.instance_type))
        .then_with(|| a.region.cmp(&b.region))
        .then(a.spot.cmp(&b.spot))
        .then_with(|| a.fleet.cmp(&b.fleet))
        .then_with(|| a.instance.cmp(&b.instance))
}

/// Sorts offers in the canonical order ([`offer_order`]); the sort is stable.
pub fn sort_offers(offers: &mut [Offer]) {
    offers.sort_by(offer_order);
}

/// What the group-by view groups on besides the GPU itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GroupKey {
    Gpu,
    Backend,
    Region,
    Count,
}

impl GroupKey {
    pub fn as_str(self) -> &'static str {
        match self {
            GroupKey::Gpu => "gpu",
            GroupKey::Backend => "backend",
            GroupKey::Region => "region",
            GroupKey::Count => "count",
        }
    }
}

/// Parses `--group-by` values (`gpu`, `backend`, `region`, `count`; repeated or
/// comma-separated). The view is always by GPU, so `gpu` must be among them, and `region`
/// needs `backend` too (as in dstack).
pub fn parse_group_by(values: &[String]) -> Result<Vec<GroupKey>, String> {
    let mut keys = Vec::new();
    for value in values.iter().flat_map(|v| v.split(',')) {
        let key = match value.trim().to_ascii_lowercase().as_str() {
            "" => continue,
            "gpu" => GroupKey::Gpu,
            "backend" => GroupKey::Backend,
            "region" => GroupKey::Region,
            "count" => GroupKey::Count,
            other => {
                return Err(format!(
                    "--group-by {other:?}: expected gpu, backend, region or count"
                ))
            }
        };
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    if !keys.is_empty() && !keys.contains(&GroupKey::Gpu) {
        return Err(
            "--group-by: the view groups by gpu; add `gpu` (e.g. `--group-by gpu,backend`)".into(),
        );
    }
    if keys.contains(&GroupKey::Region) && !keys.contains(&GroupKey::Backend) {
        return Err(
            "--group-by region: group by backend too (`--group-by gpu,backend,region`)".into(),
        );
    }
    keys.sort();
    Ok(keys)
}

/// The GPU of an offer as the group view sees it: name, memory per GPU, vendor, count.
fn offer_gpu(offer: &Offer) -> Option<(&str, f64, Option<GpuVendor>, u32)> {
    let gpu = &offer.resources.gpu;
    let count = gpu.count.min.or(gpu.count.max).unwrap_or(0);
    let name = gpu.name.as_ref().and_then(|n| n.first())?;
    if count == 0 {
        return None;
    }
    let memory = gpu
        .memory
        .as_ref()
        .and_then(|m| m.min.or(m.max))
        .unwrap_or(0.0);
    Some((name.as_str(), memory, gpu.vendor, count))
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct GroupId {
    name: String,
    memory_bits: u64,
    vendor: Option<GpuVendor>,
    backend: Option<String>,
    region: Option<String>,
    count: Option<u32>,
}

struct GroupAcc {
    id: GroupId,
    memory: f64,
    any_available: bool,
    spot: bool,
    on_demand: bool,
    price: (f64, f64),
    count: (u32, u32),
    backends: BTreeSet<String>,
    regions: BTreeSet<String>,
    offers: usize,
}

/// The group-by-GPU view of offers (`GPU "H100:80GB:1..8" | SPOT | $/GPU | BACKENDS |
/// REGIONS`): one row per GPU model (name, memory, vendor), split further by backend, region
/// and count when asked. Offers without GPUs have no row. Rows are ordered like offers:
/// available first, then by the cheapest $/GPU, the dearest, backend, region, count, name.
pub fn group_offers(offers: &[Offer], by: &[GroupKey]) -> Vec<OfferGroup> {
    let by_backend = by.contains(&GroupKey::Backend);
    let by_region = by.contains(&GroupKey::Region);
    let by_count = by.contains(&GroupKey::Count);
    let mut index: HashMap<GroupId, usize> = HashMap::new();
    let mut groups: Vec<GroupAcc> = Vec::new();
    for offer in offers {
        let Some((name, memory, vendor, count)) = offer_gpu(offer) else {
            continue;
        };
        let id = GroupId {
            name: name.to_string(),
            memory_bits: memory.to_bits(),
            vendor,
            backend: by_backend.then(|| offer.backend.clone()),
            region: by_region.then(|| offer.region.clone()),
            count: by_count.then_some(count),
        };
        let per_gpu = offer.price / f64::from(count);
        let at = *index.entry(id.clone()).or_insert_with(|| {
            groups.push(GroupAcc {
                id,
                memory,
                any_available: false,
                spot: false,
                on_demand: false,
                price: (per_gpu, per_gpu),
                count: (count, count),
                backends: BTreeSet::new(),
                regions: BTreeSet::new(),
                offers: 0,
            });
            groups.len() - 1
        });
        let g = &mut groups[at];
        g.any_available |= offer.availability.is_available();
        if offer.spot {
            g.spot = true;
        } else {
            g.on_demand = true;
        }
        g.price = (g.price.0.min(per_gpu), g.price.1.max(per_gpu));
        g.count = (g.count.0.min(count), g.count.1.max(count));
        g.backends.insert(offer.backend.clone());
        g.regions.insert(offer.region.clone());
        g.offers += 1;
    }
    groups.sort_by(|a, b| {
        (!a.any_available)
            .cmp(&!b.any_available)
            .then(a.price.0.total_cmp(&b.price.0))
            .then(a.price.1.total_cmp(&b.price.1))
            .then_with(|| a.id.backend.cmp(&b.id.backend))
            .then_with(|| a.id.region.cmp(&b.id.region))
            .then(a.count.0.cmp(&b.count.0))
            .then_with(|| a.id.name.cmp(&b.id.name))
            .then(a.memory.total_cmp(&b.memory))
    });
    groups
        .into_iter()
        .map(|g| {
            let count_text = if g.count.0 == g.count.1 {
                g.count.0.to_string()
            } else {
                format!("{}..{}", g.count.0, g.count.1)
            };
            let mut spot = Vec::new();
            if g.spot {
                spot.push("spot".to_string());
            }
            if g.on_demand {
                spot.push("on-demand".to_string());
            }
            OfferGroup {
                gpu: format!("{}:{}GB:{}", g.id.name, fmt_gb(g.memory), count_text),
                spot,
                price_per_gpu: Range {
                    min: Some(g.price.0),
                    max: Some(g.price.1),
                },
                backends: g.backends.into_iter().collect(),
                regions: g.regions.into_iter().collect(),
                count: Range {
                    min: Some(g.count.0),
                    max: Some(g.count.1),
                },
                offers: g.offers,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::matching::exact_spec;
    use flotilla_protocol::config::CpuArch;
    use flotilla_protocol::model::{Availability, Gpu, InstanceResources};

    fn offer(backend: &str, gpus: usize, price: f64, spot: bool) -> Offer {
        let res = InstanceResources {
            cpus: 8,
            cpu_arch: CpuArch::X86,
            memory_gb: 64.0,
            disk_gb: None,
            gpus: vec![
                Gpu {
                    name: "H100".into(),
                    memory_gb: 80.0,
                    vendor: GpuVendor::Nvidia,
                };
                gpus
            ],
        };
        Offer {
            backend: backend.into(),
            region: "r".into(),
            instance_type: format!("{gpus}x"),
            resources: exact_spec(&res),
            price,
            spot,
            availability: Availability::Available,
            fleet: None,
            instance: None,
            blocks: None,
            total_blocks: None,
        }
    }

    #[test]
    fn group_rows_read_like_the_spec() {
        let offers = [
            offer("a", 1, 2.0, false),
            offer("b", 8, 8.0, true),
            offer("a", 0, 0.1, false),
        ];
        let groups = group_offers(&offers, &[GroupKey::Gpu]);
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].gpu, "H100:80GB:1..8");
        assert_eq!(groups[0].price_per_gpu, Range::new(Some(1.0), Some(2.0)));
        assert_eq!(
            groups[0].spot,
            vec!["spot".to_string(), "on-demand".to_string()]
        );
        assert_eq!(groups[0].backends, vec!["a".to_string(), "b".to_string()]);
        let by_count = group_offers(&offers, &[GroupKey::Gpu, GroupKey::Count]);
        let names: Vec<&str> = by_count.iter().map(|g| g.gpu.as_str()).collect();
        assert_eq!(
            names,
            vec!["H100:80GB:8", "H100:80GB:1"],
            "cheapest $/GPU first"
        );
    }

    #[test]
    fn group_by_values() {
        assert_eq!(
            parse_group_by(&["backend,gpu".into(), "gpu".into()]),
            Ok(vec![GroupKey::Gpu, GroupKey::Backend])
        );
        assert!(parse_group_by(&["count".into()]).is_err());
    }
}

//! Plain-text output of the command line: aligned tables, relative times, prices, resource summaries.

use flotilla_protocol::config::{Range, ResourcesSpec};
use flotilla_protocol::model::{fmt_gb, Offer};
use flotilla_protocol::Timestamp;

/// Prints rows under a header, each column as wide as its widest cell.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    print!("{}", render_table(header, rows));
}

pub fn render_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(c);
                s.push_str(&" ".repeat(widths[i] - c.chars().count() + 2));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

/// `12 sec ago`, `3 mins ago`, `2 hours ago`, `5 days ago`.
pub fn ago(t: Timestamp, now: Timestamp) -> String {
    let s = t.secs_until(now);
    match s {
        0..=59 => format!("{s} sec ago"),
        60..=3599 => format!("{} mins ago", s / 60),
        3600..=86_399 => format!("{} hours ago", s / 3600),
        _ => format!("{} days ago", s / 86_400),
    }
}

pub fn price(p: f64) -> String {
    if p == 0.0 {
        "$0".into()
    } else {
        let s = format!("{p:.4}");
        format!("${}", s.trim_end_matches('0').trim_end_matches('.'))
    }
}

fn range_u32(r: &Range<u32>) -> String {
    match (r.min, r.max) {
        (Some(a), Some(b)) if a == b => a.to_string(),
        (a, b) => format!(
            "{}..{}",
            a.map(|v| v.to_string()).unwrap_or_default(),
            b.map(|v| v.to_string()).unwrap_or_default()
        ),
    }
}

fn range_gb(r: &Range<f64>) -> String {
    match (r.min, r.max) {
        (Some(a), Some(b)) if a == b => format!("{}GB", fmt_gb(a)),
        (a, b) => format!(
            "{}..{}",
            a.map(|v| format!("{}GB", fmt_gb(v))).unwrap_or_default(),
            b.map(|v| format!("{}GB", fmt_gb(v))).unwrap_or_default()
        ),
    }
}

/// `cpu=8 mem=64GB disk=100GB gpu=A100:80GB:1` for exact specs, ranges for requirements.
pub fn resources(r: &ResourcesSpec) -> String {
    let mut s = format!(
        "cpu={} mem={}",
        range_u32(&r.cpu.count),
        range_gb(&r.memory)
    );
    if r.disk.size.min.is_some() || r.disk.size.max.is_some() {
        s.push_str(&format!(" disk={}", range_gb(&r.disk.size)));
    }
    let g = &r.gpu;
    if g.count.max != Some(0) && !(g.count.min.unwrap_or(0) == 0 && g.name.is_none()) {
        let mut parts = Vec::new();
        if let Some(n) = &g.name {
            parts.push(n.join(","));
        }
        if let Some(m) = &g.memory {
            parts.push(range_gb(m));
        }
        parts.push(range_u32(&g.count));
        s.push_str(&format!(" gpu={}", parts.join(":")));
    }
    s
}

/// The offer table of SPEC section 3: `# | BACKEND (region) | RESOURCES | INSTANCE TYPE | PRICE | AVAILABILITY`.
pub fn print_offers(offers: &[Offer]) {
    let rows: Vec<Vec<String>> = offers
        .iter()
        .enumerate()
        .map(|(i, o)| {
            vec![
                (i + 1).to_string(),
                format!("{} ({})", o.backend, o.region),
                resources(&o.resources),
                o.instance_type.clone(),
                format!("{}{}", price(o.price), if o.spot { " (spot)" } else { "" }),
                o.availability.to_string(),
            ]
        })
        .collect();
    print_table(
        &[
            "#",
            "BACKEND",
            "RESOURCES",
            "INSTANCE TYPE",
            "PRICE",
            "AVAILABILITY",
        ],
        &rows,
    );
}

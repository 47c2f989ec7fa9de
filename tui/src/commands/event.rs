//! `flotilla event [-w] [--json]`: recent state changes, and with `-w` the live stream.

use crate::connect::{connect_or_start, Target};
use anyhow::anyhow;
use flotilla_protocol::client::StreamItem;
use flotilla_protocol::model::Event;
use flotilla_protocol::rpc::{methods, EventsParams};
use std::io::Write;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Keep watching for new events
    #[arg(short = 'w', long)]
    pub watch: bool,
    /// One JSON object per event and line
    #[arg(long)]
    pub json: bool,
    /// How many recent events to show first
    #[arg(long, default_value_t = 50)]
    pub last: usize,
}

fn print_event(e: &Event, json: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string(e)?)?;
    } else {
        let change = match (&e.old_status, &e.new_status) {
            (Some(a), Some(b)) => format!("{a} -> {b}"),
            (None, Some(b)) => b.clone(),
            _ => String::new(),
        };
        let mut line = format!("{}  {:<8} {:<28} {}", e.time, e.kind, e.resource, change);
        if let Some(r) = &e.reason {
            line.push_str(&format!("  [{r}]"));
        }
        if let Some(m) = &e.message {
            line.push_str(&format!("  {m}"));
        }
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    Ok(())
}

pub async fn run(target: &Target, a: Args) -> anyhow::Result<ExitCode> {
    let client = connect_or_start(target).await?;
    let list = client
        .call::<methods::EventList>(&EventsParams {
            since: None,
            limit: Some(a.last),
        })
        .await?;
    let mut last = 0;
    for e in &list.events {
        print_event(e, a.json)?;
        last = e.seq;
    }
    if !a.watch {
        return Ok(ExitCode::SUCCESS);
    }
    let mut sub = client
        .subscribe::<methods::EventsWatch>(&EventsParams {
            since: Some(last),
            limit: None,
        })
        .await?;
    while let Some(item) = sub.next().await {
        match item {
            StreamItem::Item(notice) => print_event(&notice.event, a.json)?,
            StreamItem::End(Ok(_)) => break,
            StreamItem::End(Err(e)) => return Err(anyhow!(e)),
        }
    }
    Ok(ExitCode::SUCCESS)
}

//! The apply dialog: the plan of a configuration file (what it is, who runs it, what it
//! replaces, the cheapest offers) shown before the run is submitted.

use crate::ui::cells;
use crate::ui::component::Dialog;
use crate::ui::messages::Command;
use flotilla_protocol::rpc::{RunApplyParams, RunPlan};

/// The dialog that asks before submitting `params`, planned as `plan`, from the file `path`.
pub fn plan_dialog(path: &str, params: RunApplyParams, plan: &RunPlan) -> Dialog {
    let mut lines = vec![
        format!("Configuration  {path}"),
        format!("Type           {}", plan.configuration_type),
        format!("User           {}", plan.user),
    ];
    match (&plan.current_run_status, &plan.update) {
        (_, Some(update)) => {
            let verdict = if update.refusal.is_none() {
                "can"
            } else {
                "cannot"
            };
            lines.push(format!(
                "Updates        {} (changes that {verdict} be updated in-place)",
                plan.run_name
            ));
            for c in &update.changes {
                lines.push(format!("  - {}", c.field));
            }
            if let Some(why) = &update.refusal {
                lines.push(cells::one_line(why));
            }
        }
        (Some(status), None) => {
            lines.push(format!("Replaces       {} ({status})", plan.run_name));
        }
        (None, None) => {}
    }
    match plan.jobs.first() {
        Some(job) if !job.offers.is_empty() => {
            lines.push(String::new());
            for (i, o) in job.offers.iter().take(5).enumerate() {
                lines.push(format!(
                    "{}. {} ({}) {} {} {}",
                    i + 1,
                    o.backend,
                    o.region,
                    crate::table::resources(&o.resources),
                    cells::price(o.price),
                    o.availability
                ));
            }
            lines.push(format!(
                "Shown {} of {} offers",
                job.offers.len().min(5),
                job.total_offers
            ));
        }
        _ => {
            lines.push("No offers match: the run will wait or fail unless a fleet changes.".into())
        }
    }
    let question = if plan.update.is_some() {
        format!("Update the run {}?", plan.run_name)
    } else if plan.run_name.is_empty() {
        "Submit a new run?".to_string()
    } else {
        format!("Submit the run {}?", plan.run_name)
    };
    Dialog {
        title: "Apply".into(),
        lines,
        question,
        on_confirm: Command::Apply(params),
        dangerous: false,
    }
}

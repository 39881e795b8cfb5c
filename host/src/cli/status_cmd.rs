//! `gaffer status`: the backlog by state, spend against the caps (settled and reserved apart,
//! for the day, the month and all time), what is running and what each running task holds.

use std::process::ExitCode;

use clap::Args;

use super::{Format, ProjectArgs};
use crate::ledger::{Caps, MicroUsd};
use crate::project::Project;
use crate::report::dashboard::{PERIODS, STATES, Status};
use crate::report::ledger_report::column_dollars;

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    project: ProjectArgs,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

/// The caps of the project's configuration, or none (saying why) when it does not load: a
/// broken configuration must not hide what the store knows.
pub fn caps_or_none(project: &Project, without: &str) -> Caps {
    let caps = project
        .config()
        .and_then(|config| config.resolve(|s, _| Caps::from_config(&s.budget, &s.models)));
    match caps {
        Ok(caps) => caps,
        Err(error) => {
            eprintln!("gaffer: {error}; {without}");
            Caps::default()
        }
    }
}

pub fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let project = args.project.project();
    let store = project.open_store()?;
    let caps = caps_or_none(&project, "caps are not shown");
    let status = Status::read(&*store, &caps)?;
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&status)?),
        Format::Text => {
            let total: usize = status.tasks.values().sum();
            println!("backlog ({total} tasks)");
            for state in STATES {
                let n = status.tasks.get(state.name()).copied().unwrap_or(0);
                println!("  {:<18} {n}", state.name());
            }
            println!(
                "spend   {:>12} {:>12} {:>12} {:>12} {:>12}",
                "settled", "reserved", "counted", "cap", "left"
            );
            for name in PERIODS {
                let Some(cap) = status.spend.get(name) else {
                    continue;
                };
                let or_none =
                    |v: Option<MicroUsd>| v.map(column_dollars).unwrap_or_else(|| "-".into());
                println!(
                    "  {name:<6}{:>12} {:>12} {:>12} {:>12} {:>12}",
                    column_dollars(cap.settled_micros),
                    column_dollars(cap.reserved_micros),
                    column_dollars(cap.spent_micros),
                    cap.cap_micros
                        .map(column_dollars)
                        .unwrap_or_else(|| "no cap".into()),
                    or_none(cap.left_micros),
                );
            }
            println!(
                "  (settled: charged; reserved: held now by calls in flight; counted: both, what a cap counts)"
            );
            if let Some(cap) = status.per_task_cap_micros {
                println!("  per task cap {}", column_dollars(cap));
            }
            if !status.hosts.is_empty() {
                println!("hosts");
                for h in &status.hosts {
                    println!(
                        "  {:<28} {:<7} {}/{} workers busy  {}  (run {}, seen {})",
                        h.owner,
                        h.state,
                        h.busy.len(),
                        h.workers,
                        if h.busy.is_empty() {
                            "-".to_string()
                        } else {
                            h.busy.join(", ")
                        },
                        h.run_id,
                        h.seen_at
                    );
                }
            }
            if status.running.is_empty() {
                println!("nothing running");
            } else {
                println!("running");
                for t in &status.running {
                    println!(
                        "  {:<6} attempt {} {:<10} settled {} reserved {}  {}  ({})",
                        t.id,
                        t.attempt,
                        t.stage.map_or("-", |s| s.name()),
                        column_dollars(t.settled_micros),
                        column_dollars(t.reserved_micros),
                        t.title,
                        t.worker.as_deref().unwrap_or("-")
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

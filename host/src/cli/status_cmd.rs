//! `gaffer status`: the backlog by state, spend against the caps, what is running.

use std::process::ExitCode;

use clap::Args;

use super::{Format, ProjectArgs};
use crate::ledger::{Caps, format_dollars};
use crate::project::Project;
use crate::report::dashboard::{STATES, Status};

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
    let status = Status::read(&store, &caps)?;
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&status)?),
        Format::Text => {
            let total: usize = status.tasks.values().sum();
            println!("backlog ({total} tasks)");
            for state in STATES {
                let n = status.tasks.get(state.name()).copied().unwrap_or(0);
                println!("  {:<18} {n}", state.name());
            }
            println!("spend");
            for (name, cap) in &status.spend {
                let spent = cap.spent_micros;
                match cap.cap_micros {
                    Some(limit) => println!(
                        "  {name:<6} {} of {} ({} left)",
                        format_dollars(spent),
                        format_dollars(limit),
                        format_dollars(limit.saturating_sub(spent))
                    ),
                    None => println!("  {name:<6} {} (no cap)", format_dollars(spent)),
                }
            }
            println!("  all    {}", format_dollars(status.spent_all_time_micros));
            if let Some(cap) = status.per_task_cap_micros {
                println!("  per task cap {}", format_dollars(cap));
            }
            if status.running.is_empty() {
                println!("nothing running");
            } else {
                println!("running");
                for t in &status.running {
                    println!(
                        "  {:<6} attempt {} {:<10} {}  ({})",
                        t.id,
                        t.attempt,
                        t.stage.map_or("-", |s| s.name()),
                        t.title,
                        t.worker.as_deref().unwrap_or("-")
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

//! `gaffer run`: the project's pipeline until its backlog is done, the signals that stop it or
//! reload its plugins, and what it prints.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;

use super::args::dollars;
use super::{Format, ProjectArgs};
use crate::ledger::format_dollars;
use crate::pipeline::assemble::plugin_specs;
use crate::pipeline::progress::{self, Progress};
use crate::pipeline::{Pipeline, RunOptions, RunSummary, StopReason, assemble};
use crate::project::Project;
use crate::store::MicroUsd;

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    project: ProjectArgs,
    /// Tasks worked on at once.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    workers: Option<u16>,
    /// Stop after this many tasks.
    #[arg(long)]
    max_tasks: Option<u32>,
    /// Keep polling for new tasks when the backlog is empty.
    #[arg(long)]
    watch: bool,
    /// Start even when the target branch is checked out with uncommitted changes.
    #[arg(long)]
    allow_dirty: bool,
    /// Run the agent's commands and the test command outside the sandbox, with gaffer's own
    /// rights (only where the sandbox is unavailable and you trust every model you route to).
    #[arg(long)]
    unconfined: bool,
    /// Override [budget] per_task (dollars).
    #[arg(long, value_parser = dollars)]
    per_task: Option<MicroUsd>,
    /// Override [budget] per_run (dollars).
    #[arg(long, value_parser = dollars)]
    per_run: Option<MicroUsd>,
    /// Override [budget] per_day (dollars).
    #[arg(long, value_parser = dollars)]
    per_day: Option<MicroUsd>,
    /// Override [budget] per_month (dollars).
    #[arg(long, value_parser = dollars)]
    per_month: Option<MicroUsd>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

/// Stop on the first SIGINT/SIGTERM (finish or park the current steps), abort on the second.
/// SIGHUP reloads the plugins of `gaffer.toml` (read again by the one parser): the policy of a
/// run changes only when the user asks.
fn handle_signals(pipeline: Arc<Pipeline>, project: Project) {
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) else {
            return;
        };
        let mut stops = 0;
        loop {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
                _ = hup.recv() => {
                    reload(&pipeline, &project);
                    continue;
                }
            }
            stops += 1;
            if stops == 1 {
                eprintln!(
                    "gaffer: stopping — no new tasks; the current steps finish or park (signal again to abort)"
                );
                pipeline.request_stop(StopReason::Signal);
            } else {
                eprintln!(
                    "gaffer: aborted; the next start requeues the tasks and settles the ledger"
                );
                std::process::exit(130);
            }
        }
    });
}

/// Put the plugins of the configuration as it is now in force, or say why not.
fn reload(pipeline: &Pipeline, project: &Project) {
    let outcome = project
        .config()
        .map_err(|e| e.to_string())
        .and_then(|config| plugin_specs(&config).map_err(|e| e.to_string()))
        .and_then(|specs| pipeline.plugins().reload(&specs).map_err(|e| e.to_string()));
    match outcome {
        Ok(()) => eprintln!(
            "gaffer: reloaded the plugins of {}; they serve from the next call",
            project.config_path().display()
        ),
        Err(error) => {
            eprintln!("gaffer: reload refused, the plugins in force keep serving: {error}")
        }
    }
}

/// Print a run's summary.
pub fn print_summary(summary: &RunSummary, format: Format) -> anyhow::Result<()> {
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(summary)?),
        Format::Text => {
            println!("run {}", summary.run_id);
            for a in &summary.attempts {
                println!(
                    "  {:<6} attempt {} {:<10} {:<18} {:>12}  {}",
                    a.task,
                    a.attempt,
                    a.model.as_deref().unwrap_or("-"),
                    a.state.to_string(),
                    format_dollars(a.cost),
                    first_line(&a.reason, 160)
                );
            }
            println!(
                "spent {} in {} attempt(s)",
                format_dollars(summary.spent),
                summary.attempts.len()
            );
            if let Some(why) = &summary.stopped {
                println!("{why}");
            }
        }
    }
    Ok(())
}

/// The first line of a text, cut to `max` characters (reasons can quote whole test outputs).
fn first_line(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or("");
    let mut cut: String = line.chars().take(max).collect();
    if cut.len() < line.len() || text.lines().nth(1).is_some() {
        cut.push_str(" …");
    }
    cut
}

/// The progress display of a run printing `format`.
pub fn progress_for(
    format: Format,
) -> impl FnOnce(usize, Arc<crate::ledger::Ledger>, &str) -> Arc<dyn Progress> {
    move |workers, ledger, run_id| {
        if format == Format::Json {
            Arc::new(progress::LogLines)
        } else {
            progress::for_terminal(workers, ledger, run_id)
        }
    }
}

pub async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let project = args.project.project();
    let options = RunOptions {
        workers: args.workers.map(usize::from),
        max_tasks: args.max_tasks,
        watch: args.watch,
        allow_dirty: args.allow_dirty,
        unconfined: args.unconfined,
        per_task: args.per_task,
        per_run: args.per_run,
        per_day: args.per_day,
        per_month: args.per_month,
    };
    let pipeline = assemble(&project, &options, progress_for(args.format))?;
    handle_signals(pipeline.clone(), project);
    let summary = pipeline.run().await?;
    print_summary(&summary, args.format)?;
    Ok(ExitCode::from(summary.exit_code()))
}

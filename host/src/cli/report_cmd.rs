//! `gaffer report`: the economics of the project's ledger — how sure each dollar is, rejections
//! by cause, the verifier's cost, the month ahead and a person's cost on like terms — as
//! tables, JSON, CSV or one HTML file.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};

use super::ProjectArgs;
use super::args::{day, dollars, positive};
use crate::ledger::Caps;
use crate::report::html::{self, CapLines};
use crate::report::{Economics, Filter, History, Options, render_csv, render_text};
use crate::store::MicroUsd;

/// Formats of `gaffer report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Text,
    Json,
    Csv,
    Html,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    project: ProjectArgs,
    /// Only this run's rows.
    #[arg(long)]
    run: Option<String>,
    /// First day (YYYY-MM-DD, UTC).
    #[arg(long, value_parser = day)]
    since: Option<String>,
    /// Last day (YYYY-MM-DD, UTC).
    #[arg(long, value_parser = day)]
    until: Option<String>,
    /// Project the month at this volume instead of the observed pace (under 20 finished tasks
    /// the basis is too thin and only the cost per task is given).
    #[arg(long, value_parser = positive)]
    tasks_per_month: Option<f64>,
    /// A person's hourly rate in dollars (overrides [economics] hourly_rate).
    #[arg(long, value_parser = dollars)]
    hourly_rate: Option<MicroUsd>,
    /// Hours a person takes for a task (overrides [economics] hours_per_task).
    #[arg(long, value_parser = positive)]
    hours_per_task: Option<f64>,
    /// Seed of the projection's spread.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    format: ReportFormat,
    /// Where `--format html` writes (default gaffer-report.html).
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run(args: ReportArgs) -> anyhow::Result<ExitCode> {
    if let (Some(since), Some(until)) = (&args.since, &args.until) {
        anyhow::ensure!(since <= until, "--since {since} is after --until {until}");
    }
    let project = args.project.project();
    let store = project.open_store()?;
    let resolved = project.config().and_then(|config| {
        let economics = config.resolve(|s, _| Economics::from_config(&s.economics))?;
        let caps = config.resolve(|s, _| Caps::from_config(&s.budget, &s.models))?;
        Ok((economics, caps))
    });
    let (economics, caps) = match resolved {
        Ok(found) => found,
        Err(error) => {
            eprintln!("gaffer: {error}; reporting without its caps and rates");
            (Economics::default(), Caps::default())
        }
    };
    let report = History::read(&*store)?.report(&Options {
        filter: Filter {
            run: args.run.clone(),
            since: args.since.clone(),
            until: args.until.clone(),
        },
        tasks_per_month: args.tasks_per_month,
        human: economics.human_rates(args.hourly_rate, args.hours_per_task),
        seed: args.seed,
    });
    match args.format {
        ReportFormat::Text => print!("{}", render_text(&report)),
        ReportFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        ReportFormat::Csv => print!("{}", render_csv(&report)),
        ReportFormat::Html => {
            let out = args
                .out
                .clone()
                .unwrap_or_else(|| PathBuf::from("gaffer-report.html"));
            let lines = CapLines {
                per_day: caps.per_day,
                per_month: caps.per_month,
            };
            std::fs::write(&out, html::render(&report, lines, "gaffer report"))
                .with_context(|| format!("writing {}", out.display()))?;
            println!("wrote {}", out.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

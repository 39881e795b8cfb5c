//! `gaffer report`: the economics of the project's ledger, as tables, JSON, CSV or one HTML
//! file.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::ValueEnum;

use super::config;
use super::task_cmd::open_store;
use crate::ledger::parse_dollars;
use crate::report::html::{self, CapLines};
use crate::report::{Filter, History, HumanRates, Options, Report, render_csv, render_text};
use crate::store::SqliteStore;

/// Formats of `gaffer report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Text,
    Json,
    Csv,
    Html,
}

/// What `gaffer report` was asked.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    pub config: PathBuf,
    pub run: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub tasks_per_month: Option<f64>,
    pub hourly_rate: Option<String>,
    pub hours_per_task: Option<f64>,
    pub seed: u64,
    pub format: ReportFormat,
    /// Where the HTML goes (default `gaffer-report.html`).
    pub out: Option<PathBuf>,
}

fn check_day(flag: &str, day: &Option<String>) -> anyhow::Result<()> {
    if let Some(d) = day {
        let ok = d.len() == 10
            && d.chars().enumerate().all(|(i, c)| {
                if i == 4 || i == 7 {
                    c == '-'
                } else {
                    c.is_ascii_digit()
                }
            });
        anyhow::ensure!(ok, "{flag} {d}: a day is written YYYY-MM-DD");
    }
    Ok(())
}

/// The report of the repository at `root`, with the caps of its configuration (if it loads).
pub fn report_for(
    root: &Path,
    options: &ReportOptions,
) -> anyhow::Result<(Report, CapLines, SqliteStore)> {
    check_day("--since", &options.since)?;
    check_day("--until", &options.until)?;
    let store = open_store(root)?;
    let (economics, caps) = match config::load(&root.join(&options.config)) {
        Ok(resolved) => (
            resolved.economics,
            CapLines {
                per_day: resolved.caps.per_day,
                per_month: resolved.caps.per_month,
            },
        ),
        Err(error) => {
            eprintln!("gaffer: {error}; reporting without its caps and rates");
            (Default::default(), CapLines::default())
        }
    };
    let hourly = match (&options.hourly_rate, &economics.hourly_rate) {
        (Some(text), _) => {
            Some(parse_dollars(text).map_err(|e| anyhow::anyhow!("--hourly-rate {text}: {e}"))?)
        }
        (None, Some(d)) => Some(
            parse_dollars(&d.text())
                .map_err(|e| anyhow::anyhow!("[economics] hourly_rate: {e}"))?,
        ),
        (None, None) => None,
    };
    let human = hourly.map(|hourly| HumanRates {
        hourly,
        hours_per_task: options
            .hours_per_task
            .or(economics.hours_per_task)
            .unwrap_or(2.0),
        hours_per_label: economics.hours_per_label.clone(),
    });
    let report = History::read(&store)?.report(&Options {
        filter: Filter {
            run: options.run.clone(),
            since: options.since.clone(),
            until: options.until.clone(),
        },
        tasks_per_month: options.tasks_per_month,
        human,
        seed: options.seed,
    });
    Ok((report, caps, store))
}

/// `gaffer report`.
pub fn run(root: &Path, options: ReportOptions) -> anyhow::Result<ExitCode> {
    let (report, caps, _) = report_for(root, &options)?;
    match options.format {
        ReportFormat::Text => print!("{}", render_text(&report)),
        ReportFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        ReportFormat::Csv => print!("{}", render_csv(&report)),
        ReportFormat::Html => {
            let out = options
                .out
                .clone()
                .unwrap_or_else(|| PathBuf::from("gaffer-report.html"));
            std::fs::write(&out, html::render(&report, caps, "gaffer report"))
                .with_context(|| format!("writing {}", out.display()))?;
            println!("wrote {}", out.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

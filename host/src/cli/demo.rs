//! `gaffer demo`: the whole pipeline, offline, on a sample repository, then the economics of
//! what it did; `--plugins-only` shows the reference plugins deciding instead.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use super::Format;
use super::run_cmd::print_summary;
use crate::demo::pipeline::{run_pipeline_demo, show_plugins};
use crate::plugin::reference::write_all;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where to create the sample repository (default: a new temporary directory).
    dir: Option<PathBuf>,
    /// Directory holding the reference plugins (`cost_tier.wasm`, ...); default: the ones
    /// this binary carries.
    #[arg(long)]
    plugins: Option<PathBuf>,
    /// Only show the reference plugins deciding on sample inputs.
    #[arg(long)]
    plugins_only: bool,
    /// Run for real with the [providers] and [models] of this gaffer.toml (API keys or a
    /// local Ollama) instead of the scripted models.
    #[arg(long, value_name = "GAFFER_TOML")]
    models: Option<PathBuf>,
    /// Who implements the tasks: `builtin` (gaffer's own loop) or `claude-code` (the Claude
    /// Code CLI on PATH, which scripts/setup.sh installs into tools/agents and
    /// scripts/demo.sh puts on PATH), driven through gaffer's metering proxy.
    #[arg(long, value_name = "NAME", default_value = "builtin")]
    implementer: String,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let json = args.format == Format::Json;
    let dir = match args.dir {
        Some(dir) => dir,
        None => {
            let base = std::env::temp_dir().join(format!("gaffer-demo-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&base);
            base
        }
    };
    let plugins = match &args.plugins {
        Some(given) => std::fs::canonicalize(given).with_context(|| {
            format!(
                "{}: no such directory of plugins (scripts/build-plugins.sh builds them)",
                given.display()
            )
        })?,
        // The plugins this binary carries, written where the demo's state goes.
        None => {
            let into = std::path::absolute(dir.join(".gaffer").join("plugins"))?;
            write_all(&into, true)?;
            into
        }
    };
    if args.plugins_only {
        show_plugins(&plugins, json).await?;
        return Ok(ExitCode::SUCCESS);
    }
    let demo = run_pipeline_demo(
        &dir,
        &plugins,
        args.models.as_deref(),
        &args.implementer,
        !json,
    )
    .await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&demo.report)?);
        return Ok(ExitCode::SUCCESS);
    }
    print_summary(&demo.summary, Format::Text)?;
    println!();
    println!("{}", crate::report::render_text(&demo.report));
    let html = dir.join("gaffer-report.html");
    std::fs::write(
        &html,
        crate::report::html::render(&demo.report, Default::default(), "gaffer demo (simulation)"),
    )?;
    println!("The report with its charts: {}", html.display());
    println!(
        "The repository, its backlog (.gaffer/gaffer.db) and the merged history stay in {}: \
         try `gaffer status` and `git log --oneline` there.",
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

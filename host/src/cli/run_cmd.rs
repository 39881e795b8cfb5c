//! `gaffer run` and `gaffer status`: the composition of every room into a pipeline, the signals
//! that stop it, and what it prints.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;

use super::Format;
use super::config::{self, Resolved};
use super::task_cmd::{STATE_DIR, open_store};
use crate::gateway::metered::{Gateway, Pricing};
use crate::gateway::provider::Provider;
use crate::git::Repo;
use crate::ledger::{Caps, Ledger, MicroUsd, format_dollars, parse_dollars};
use crate::pipeline::plugin_models::GatewayModels;
use crate::pipeline::progress::{self, Progress};
use crate::pipeline::run_records::LedgerRecorder;
use crate::pipeline::{Pipeline, PipelineSettings, RunSummary};
use crate::plugin::types::{ModelInfo, Prices as WitPrices};
use crate::plugin::{PluginRuntime, PluginSet};
use crate::store::{BacklogStore, LedgerStore, SqliteStore};

/// What `gaffer run` was asked on the command line.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub config: PathBuf,
    pub workers: Option<usize>,
    pub max_tasks: Option<u32>,
    pub watch: bool,
    pub allow_dirty: bool,
    pub per_task: Option<String>,
    pub per_run: Option<String>,
    pub per_day: Option<String>,
    pub per_month: Option<String>,
    pub format: Option<Format>,
}

/// The models as the router sees them: the key is the id it answers with.
pub fn model_infos(resolved: &Resolved) -> Vec<ModelInfo> {
    resolved
        .models
        .iter()
        .map(|m| {
            let prices = match m.entry.pricing {
                Pricing::Tokens(p) => WitPrices {
                    input: p.input,
                    output: p.output,
                    cache_read: p.cache_read,
                    cache_write: p.cache_write,
                },
                Pricing::Electricity(_) => WitPrices {
                    input: 0,
                    output: 0,
                    cache_read: 0,
                    cache_write: 0,
                },
            };
            ModelInfo {
                id: m.entry.key.clone(),
                provider: m.entry.provider.clone(),
                tier: m.tier,
                prices,
                context_window: u32::try_from(m.entry.context_window).unwrap_or(u32::MAX),
                tags: m.tags.clone(),
            }
        })
        .collect()
}

fn override_cap(
    slot: &mut Option<MicroUsd>,
    flag: &str,
    value: &Option<String>,
) -> anyhow::Result<()> {
    if let Some(text) = value {
        *slot = Some(parse_dollars(text).map_err(|e| anyhow::anyhow!("{flag} {text}: {e}"))?);
    }
    Ok(())
}

/// Budget overrides from the command line, on top of the file's caps.
fn caps_with_overrides(mut caps: Caps, options: &RunOptions) -> anyhow::Result<Caps> {
    override_cap(&mut caps.per_task, "--per-task", &options.per_task)?;
    override_cap(&mut caps.per_run, "--per-run", &options.per_run)?;
    override_cap(&mut caps.per_day, "--per-day", &options.per_day)?;
    override_cap(&mut caps.per_month, "--per-month", &options.per_month)?;
    Ok(caps)
}

/// Where compiled plugins are cached: `GAFFER_PLUGIN_CACHE` when set (one cache for several
/// repositories), else `.gaffer/plugin-cache`.
pub fn plugin_cache_dir(root: &Path) -> PathBuf {
    match std::env::var_os("GAFFER_PLUGIN_CACHE") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => root.join(STATE_DIR).join("plugin-cache"),
    }
}

/// A run's id: time and process, unique enough for one machine's ledger.
pub fn new_run_id() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("run-{secs}-{}", std::process::id())
}

/// Build the pipeline of the repository at `root` from its `gaffer.toml`. Every check that can
/// fail before work starts happens here or in [`Pipeline::preflight`].
pub fn build_pipeline(
    root: &Path,
    options: &RunOptions,
    progress_for: impl FnOnce(usize, Arc<Ledger>, &str) -> Arc<dyn Progress>,
) -> anyhow::Result<Arc<Pipeline>> {
    let config_path = if options.config.is_absolute() {
        options.config.clone()
    } else {
        root.join(&options.config)
    };
    let resolved = config::load(&config_path)?;
    let repo = Arc::new(Repo::open(root)?);
    let store = Arc::new(open_store(root)?);
    let caps = caps_with_overrides(resolved.caps.clone(), options)?;
    let ledger_store: Arc<dyn LedgerStore> = store.clone();
    let ledger = Arc::new(Ledger::new(ledger_store.clone(), caps));
    let mut providers = Vec::new();
    for config in &resolved.providers {
        // A provider no model uses need not have its key set.
        if !resolved
            .models
            .iter()
            .any(|m| m.entry.provider == config.name)
        {
            continue;
        }
        providers.push(
            // The error names the provider; say which file configures it.
            Provider::new(config.clone()).with_context(|| config_path.display().to_string())?,
        );
    }
    let gateway = Arc::new(Gateway::new(
        providers,
        resolved.models.iter().map(|m| m.entry.clone()),
        ledger.clone(),
    ));
    let run_id = new_run_id();
    let runtime = PluginRuntime::builder()
        .cache_dir(Some(plugin_cache_dir(root)))
        .models(Arc::new(GatewayModels::new(
            gateway.clone(),
            run_id.clone(),
        )))
        .recorder(Arc::new(LedgerRecorder::new(ledger_store, run_id.clone())))
        .build()?;
    let plugins = Arc::new(
        PluginSet::open(runtime, &config_path)
            .with_context(|| format!("loading the plugins of {}", config_path.display()))?,
    );
    let mut settings = PipelineSettings::from_toml(
        &resolved.project,
        &resolved.agent,
        &resolved.run,
        root.join(STATE_DIR).join("worktrees"),
    );
    if let Some(n) = options.workers {
        settings.workers = n.max(1);
    }
    settings.max_tasks = options.max_tasks;
    settings.watch = options.watch;
    settings.allow_dirty = options.allow_dirty;
    let progress = progress_for(settings.workers, ledger.clone(), &run_id);
    let owner = crate::store::sqlite::this_process_owner();
    let backlog: Arc<dyn BacklogStore> = store;
    Ok(Arc::new(Pipeline::new(
        repo,
        backlog,
        ledger,
        gateway,
        plugins,
        model_infos(&resolved),
        settings,
        run_id,
        owner,
        progress,
    )))
}

/// Stop on the first SIGINT/SIGTERM (finish or park the current steps), abort on the second.
fn handle_signals(pipeline: Arc<Pipeline>) {
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return;
        };
        for n in 0.. {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            if n == 0 {
                eprintln!(
                    "gaffer: stopping — no new tasks; the current steps finish or park (signal again to abort)"
                );
                pipeline.request_stop("stopped by a signal");
            } else {
                eprintln!(
                    "gaffer: aborted; the next start requeues the tasks and settles the ledger"
                );
                std::process::exit(130);
            }
        }
    });
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

/// `gaffer run`.
pub async fn run(root: &Path, options: RunOptions) -> anyhow::Result<ExitCode> {
    let format = options.format.unwrap_or(Format::Text);
    let pipeline = build_pipeline(root, &options, |workers, ledger, run_id| {
        if format == Format::Json {
            Arc::new(progress::LogLines)
        } else {
            progress::for_terminal(workers, ledger, run_id)
        }
    })?;
    handle_signals(pipeline.clone());
    let summary = pipeline.run().await?;
    print_summary(&summary, format)?;
    Ok(match &summary.stopped {
        Some(why) if why.contains("signal") => ExitCode::from(130),
        Some(_) => ExitCode::from(3),
        None => ExitCode::SUCCESS,
    })
}

/// `gaffer status`: the backlog by state, spend against the caps, what is running.
pub fn status(root: &Path, config: &Path, format: Format) -> anyhow::Result<ExitCode> {
    let store: SqliteStore = open_store(root)?;
    let caps = match config::load(&root.join(config)) {
        Ok(resolved) => resolved.caps,
        Err(error) => {
            eprintln!("gaffer: {error}; caps are not shown");
            Caps::default()
        }
    };
    let status = crate::report::dashboard::Status::read(&store, &caps)?;
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&status)?),
        Format::Text => {
            let total: usize = status.tasks.values().sum();
            println!("backlog ({total} tasks)");
            for state in crate::report::dashboard::STATES {
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
                        t.stage.as_deref().unwrap_or("-"),
                        t.title,
                        t.worker.as_deref().unwrap_or("-")
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `gaffer serve`: the dashboard over the project's store until interrupted.
pub async fn serve(
    root: &Path,
    config: &Path,
    bind: std::net::SocketAddr,
) -> anyhow::Result<ExitCode> {
    use crate::report::dashboard::{self, Dashboard};
    let store = Arc::new(open_store(root)?);
    let caps = match config::load(&root.join(config)) {
        Ok(resolved) => resolved.caps,
        Err(error) => {
            eprintln!("gaffer: {error}; the dashboard shows no caps");
            Caps::default()
        }
    };
    let listener = dashboard::bind(bind)
        .await
        .with_context(|| format!("listening on {bind}"))?;
    let address = listener.local_addr()?;
    println!("gaffer dashboard on http://{address}/ (Ctrl-C stops it)");
    use std::io::Write;
    std::io::stdout().flush()?;
    let dashboard = Dashboard {
        store,
        caps,
        title: format!("gaffer · {}", std::fs::canonicalize(root)?.display()),
    };
    tokio::select! {
        served = dashboard::serve(dashboard, listener) => served?,
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(ExitCode::SUCCESS)
}

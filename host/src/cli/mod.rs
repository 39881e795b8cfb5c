//! The `gaffer` command line. The only module that knows every room.

pub mod claude_code;
pub mod config;
pub mod demo;
mod estimate_cmd;
mod models_cmd;
mod plugin_cmd;
mod plugin_new;
mod plugin_test;
mod replay_cmd;
pub mod report_cmd;
pub mod run_cmd;
mod task_cmd;

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand, ValueEnum};

/// Output format of commands that print figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// gaffer: a foreman for autonomous coding agents, with budgets that are never exceeded and
/// team rules as sandboxed WebAssembly plugins.
#[derive(Debug, Parser)]
#[command(name = "gaffer", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Work with plugin components (routers, verifiers, hooks).
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Write a commented gaffer.toml, create .gaffer/ (backlog and ledger) and ignore it in git.
    Init {
        /// Overwrite an existing gaffer.toml.
        #[arg(long)]
        force: bool,
    },
    /// The backlog.
    #[command(subcommand)]
    Task(TaskCommand),
    /// List the configured models with their prices and where the prices come from.
    Models {
        /// The configuration file.
        #[arg(long, default_value = "gaffer.toml")]
        config: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Run the whole pipeline offline on a sample repository against a scripted model provider
    /// (a simulation; no API key), then show the reference plugins deciding.
    Demo {
        /// Where to create the sample repository (default: a new temporary directory).
        dir: Option<PathBuf>,
        /// Directory holding the built reference plugins (`cost_tier.wasm`, ...).
        #[arg(long, default_value = "target/guests/wasm32-wasip2/plugin")]
        plugins: PathBuf,
        /// Only show the reference plugins deciding on sample inputs.
        #[arg(long)]
        plugins_only: bool,
        /// Run for real with the [providers] and [models] of this gaffer.toml (API keys or a
        /// local Ollama) instead of the scripted models.
        #[arg(long, value_name = "GAFFER_TOML")]
        models: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Work through the backlog: claim, route, implement, check, verify, merge.
    Run {
        /// The configuration file.
        #[arg(long, default_value = "gaffer.toml")]
        config: PathBuf,
        /// Tasks worked on at once.
        #[arg(long)]
        workers: Option<usize>,
        /// Stop after this many tasks.
        #[arg(long)]
        max_tasks: Option<u32>,
        /// Keep polling for new tasks when the backlog is empty.
        #[arg(long)]
        watch: bool,
        /// Start even when the target branch is checked out with uncommitted changes.
        #[arg(long)]
        allow_dirty: bool,
        /// Override [budget] per_task (dollars).
        #[arg(long)]
        per_task: Option<String>,
        /// Override [budget] per_run (dollars).
        #[arg(long)]
        per_run: Option<String>,
        /// Override [budget] per_day (dollars).
        #[arg(long)]
        per_day: Option<String>,
        /// Override [budget] per_month (dollars).
        #[arg(long)]
        per_month: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// The economics of the ledger: each task end to end, per model and label, spend on work
    /// that never merged, where agents fail, the month ahead, a person's cost.
    Report {
        #[arg(long, default_value = "gaffer.toml")]
        config: PathBuf,
        /// Only this run's rows.
        #[arg(long)]
        run: Option<String>,
        /// First day (YYYY-MM-DD, UTC).
        #[arg(long)]
        since: Option<String>,
        /// Last day (YYYY-MM-DD, UTC).
        #[arg(long)]
        until: Option<String>,
        /// Project the month at this volume instead of the observed pace.
        #[arg(long)]
        tasks_per_month: Option<f64>,
        /// A person's hourly rate in dollars (overrides [economics] hourly_rate).
        #[arg(long)]
        hourly_rate: Option<String>,
        /// Hours a person takes for a task (overrides [economics] hours_per_task).
        #[arg(long)]
        hours_per_task: Option<f64>,
        /// Seed of the projection's spread.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long, value_enum, default_value_t = report_cmd::ReportFormat::Text)]
        format: report_cmd::ReportFormat,
        /// Where `--format html` writes (default gaffer-report.html).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// A backlog's expected cost and tasks solved before any pipeline exists (seeded Monte
    /// Carlo over per-label cascade profiles), with every assumption printed.
    Estimate {
        /// Hand-written profiles (TOML: [[profile]] label, models, success, cost_per_attempt).
        #[arg(long, conflicts_with = "cascade")]
        profiles: Option<PathBuf>,
        /// Outcome data to measure profiles on (with --cascade).
        #[arg(long, default_value_os_t = replay_cmd::default_data())]
        data: PathBuf,
        /// The cascade to measure on the data, e.g. `cheap,strong`.
        #[arg(long)]
        cascade: Option<String>,
        /// The backlog: label=count,... (default with --cascade: the data's own mix).
        #[arg(long)]
        mix: Option<String>,
        /// Scale the mix to this many tasks.
        #[arg(long)]
        tasks: Option<u32>,
        /// Tasks a month (default: the backlog's size).
        #[arg(long)]
        tasks_per_month: Option<f64>,
        /// The verifier's own cost per attempt, in dollars.
        #[arg(long)]
        verifier_cost: Option<String>,
        #[arg(long, default_value_t = 0.0)]
        false_accept: f64,
        #[arg(long, default_value_t = 0.0)]
        false_reject: f64,
        #[arg(long, default_value_t = 2000)]
        simulations: u32,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// A person's hourly rate in dollars, for the baseline.
        #[arg(long)]
        hourly_rate: Option<String>,
        #[arg(long, default_value_t = 2.0)]
        hours_per_task: f64,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// What routing policies would have done on recorded outcomes: a router plugin, a fixed
    /// cascade, every single model and the oracle, with recorded costs.
    Replay {
        /// JSON Lines of recorded outcomes (instance_id, repo, runs: {model: {resolved,
        /// cost_usd, api_calls}}).
        #[arg(long, default_value_os_t = replay_cmd::default_data())]
        data: PathBuf,
        /// Replay on the outcomes this project's ledger recorded (the models it tried).
        #[arg(long)]
        from_ledger: bool,
        /// A router plugin (`.wasm`, router world) to replay.
        #[arg(long)]
        router: Option<PathBuf>,
        /// The router's config as JSON.
        #[arg(long, default_value = "{}")]
        router_config: String,
        /// A fixed cascade of model keys, e.g. `cheap,strong`.
        #[arg(long)]
        cascade: Option<String>,
        /// Tiers the router sees, `model=tier,...` (default: by total cost in the data, in
        /// thirds).
        #[arg(long)]
        tiers: Option<String>,
        /// Attempts per task for a router.
        #[arg(long, default_value_t = 3)]
        max_attempts: u32,
        /// Chance that the verifier accepts an unresolved attempt.
        #[arg(long, default_value_t = 0.0)]
        false_accept: f64,
        /// Chance that the verifier rejects a resolved attempt.
        #[arg(long, default_value_t = 0.0)]
        false_reject: f64,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Write an SVG plot of cost against tasks solved.
        #[arg(long)]
        plot: Option<PathBuf>,
        /// Enumerate cascades and print the Pareto frontier of cost against tasks solved.
        #[arg(long)]
        search: bool,
        /// Models the search builds cascades from (default: every model of the data).
        #[arg(long, requires = "search")]
        candidates: Option<String>,
        /// Longest cascade searched.
        #[arg(long, default_value_t = 3, requires = "search")]
        max_length: usize,
        /// Share of tasks held out: the policy is chosen on the rest and reported on these.
        #[arg(long, requires = "search")]
        holdout: Option<f64>,
        /// The chosen policy may cost at most this times the best single model's cost.
        #[arg(long, default_value_t = 1.0, requires = "search")]
        budget_ratio: f64,
        /// Write the chosen cascade as `[plugins.router]` configuration (the cascade router).
        #[arg(long, requires = "search")]
        write_config: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// A local web dashboard: the live backlog, what is running, spend against the caps, and
    /// the report's charts. Loopback only unless --bind says otherwise.
    Serve {
        #[arg(long, default_value = "gaffer.toml")]
        config: PathBuf,
        /// Address to listen on (port 0: any free port; the URL is printed).
        #[arg(long, default_value = "127.0.0.1:7420")]
        bind: std::net::SocketAddr,
    },
    /// Bridges to other agents' hook systems.
    #[command(subcommand)]
    Hook(HookCommand),
    /// The backlog by state, spend against the caps, and what is running.
    Status {
        #[arg(long, default_value = "gaffer.toml")]
        config: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// Say which world a component implements, what it imports, whether this host accepts it,
    /// and make one sample call. Exits 0 only when accepted.
    Check {
        /// The component (`.wasm`).
        file: PathBuf,
        /// The plugin's config as JSON (its `config` table in gaffer.toml).
        #[arg(long, default_value = "{}")]
        config: String,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Run a plugin on declared inputs and check its decisions (for the plugin's own CI).
    Test {
        /// The component (`.wasm`).
        file: PathBuf,
        /// The cases (TOML: `config`, then `[[case]]` with one input and `expect`).
        #[arg(long)]
        cases: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Write a new plugin project into DIR (created, or empty): an example policy, the WIT,
    /// build.sh, cases.toml for `plugin test`, and a README saying how to use it.
    New {
        /// The world the plugin implements.
        #[arg(value_enum)]
        world: plugin_new::NewWorld,
        /// The language it is written in.
        #[arg(long, value_enum)]
        lang: plugin_new::Lang,
        /// The project directory (created if missing; refused if not empty).
        dir: PathBuf,
    },
    /// Time calls with a fresh sandbox each, limits on (as shipped).
    Bench {
        /// The component (`.wasm`).
        file: PathBuf,
        /// Number of timed calls.
        #[arg(long, default_value_t = 2000)]
        calls: u32,
        /// Untimed calls first.
        #[arg(long, default_value_t = 100)]
        warmup: u32,
        /// Instance allocator.
        #[arg(long, value_enum, default_value_t = AllocatorArg::Auto)]
        allocator: AllocatorArg,
        /// The plugin's config as JSON.
        #[arg(long, default_value = "{}")]
        config: String,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

#[derive(Debug, Subcommand)]
enum HookCommand {
    /// A Claude Code command hook: the event JSON on stdin, the configured WebAssembly hooks
    /// decide, the answer as Claude Code expects it. Fails closed.
    ClaudeCode {
        /// The configuration (default: the nearest gaffer.toml from the event's cwd).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum TaskCommand {
    /// Add one task.
    Add {
        title: String,
        #[arg(long)]
        body: Option<String>,
        #[arg(long, conflicts_with = "body")]
        body_file: Option<PathBuf>,
        #[arg(long = "label")]
        labels: Vec<String>,
    },
    /// Import tasks from a Markdown checklist, JSON Lines, or `gh issue list --json
    /// number,title,body,labels` output. All or nothing.
    Import {
        file: PathBuf,
        #[arg(long, value_enum)]
        format: Option<ImportFormatArg>,
    },
    /// List the tasks.
    List {
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Show one task.
    Show {
        id: String,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

/// `--format` of `task import`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImportFormatArg {
    Markdown,
    Jsonl,
    Gh,
}

impl From<ImportFormatArg> for crate::pipeline::import::ImportFormat {
    fn from(value: ImportFormatArg) -> Self {
        match value {
            ImportFormatArg::Markdown => crate::pipeline::import::ImportFormat::Markdown,
            ImportFormatArg::Jsonl => crate::pipeline::import::ImportFormat::JsonLines,
            ImportFormatArg::Gh => crate::pipeline::import::ImportFormat::GitHub,
        }
    }
}

/// `--allocator` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AllocatorArg {
    Auto,
    Pooling,
    OnDemand,
}

impl From<AllocatorArg> for crate::plugin::AllocatorChoice {
    fn from(value: AllocatorArg) -> Self {
        match value {
            AllocatorArg::Auto => crate::plugin::AllocatorChoice::Auto,
            AllocatorArg::Pooling => crate::plugin::AllocatorChoice::Pooling,
            AllocatorArg::OnDemand => crate::plugin::AllocatorChoice::OnDemand,
        }
    }
}

/// Parse the command line and run it; the process exit code comes back.
pub fn main() -> anyhow::Result<std::process::ExitCode> {
    let cli = Cli::parse();
    init_logging();
    // A Claude Code hook is one short process per tool call: no worker threads to start.
    let runtime = if matches!(cli.command, Command::Hook(_)) {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
    };
    runtime.block_on(async move {
        match cli.command {
            Command::Plugin(PluginCommand::Check {
                file,
                config,
                format,
            }) => plugin_cmd::check(&file, &config, format).await,
            Command::Plugin(PluginCommand::Test {
                file,
                cases,
                format,
            }) => plugin_test::run(&file, &cases, format).await,
            Command::Plugin(PluginCommand::New { world, lang, dir }) => {
                plugin_new::run(world, lang, &dir)
            }
            Command::Plugin(PluginCommand::Bench {
                file,
                calls,
                warmup,
                allocator,
                config,
                format,
            }) => plugin_cmd::bench(&file, calls, warmup, allocator.into(), &config, format).await,
            Command::Demo {
                dir,
                plugins,
                plugins_only,
                models,
                format,
            } => demo::run(dir, &plugins, plugins_only, models, format).await,
            Command::Run {
                config,
                workers,
                max_tasks,
                watch,
                allow_dirty,
                per_task,
                per_run,
                per_day,
                per_month,
                format,
            } => {
                run_cmd::run(
                    Path::new("."),
                    run_cmd::RunOptions {
                        config,
                        workers,
                        max_tasks,
                        watch,
                        allow_dirty,
                        per_task,
                        per_run,
                        per_day,
                        per_month,
                        format: Some(format),
                    },
                )
                .await
            }
            Command::Report {
                config,
                run,
                since,
                until,
                tasks_per_month,
                hourly_rate,
                hours_per_task,
                seed,
                format,
                out,
            } => report_cmd::run(
                Path::new("."),
                report_cmd::ReportOptions {
                    config,
                    run,
                    since,
                    until,
                    tasks_per_month,
                    hourly_rate,
                    hours_per_task,
                    seed,
                    format,
                    out,
                },
            ),
            Command::Estimate {
                profiles,
                data,
                cascade,
                mix,
                tasks,
                tasks_per_month,
                verifier_cost,
                false_accept,
                false_reject,
                simulations,
                seed,
                hourly_rate,
                hours_per_task,
                format,
            } => estimate_cmd::run(estimate_cmd::EstimateOptions {
                profiles,
                data,
                cascade,
                mix,
                tasks,
                tasks_per_month,
                verifier_cost,
                false_accept,
                false_reject,
                simulations,
                seed,
                hourly_rate,
                hours_per_task,
                format,
            }),
            Command::Replay {
                data,
                from_ledger,
                router,
                router_config,
                cascade,
                tiers,
                max_attempts,
                false_accept,
                false_reject,
                seed,
                plot,
                search,
                candidates,
                max_length,
                holdout,
                budget_ratio,
                write_config,
                format,
            } => {
                replay_cmd::run(replay_cmd::ReplayOptions {
                    from_ledger,
                    search: search.then_some(replay_cmd::SearchOptions {
                        candidates,
                        max_length,
                        holdout,
                        budget_ratio,
                        write_config,
                    }),
                    data,
                    router,
                    router_config,
                    cascade,
                    tiers,
                    max_attempts,
                    false_accept,
                    false_reject,
                    seed,
                    plot,
                    format,
                })
                .await
            }
            Command::Serve { config, bind } => run_cmd::serve(Path::new("."), &config, bind).await,
            Command::Hook(HookCommand::ClaudeCode { config }) => claude_code::run(config).await,
            Command::Status { config, format } => run_cmd::status(Path::new("."), &config, format),
            Command::Models { config, format } => models_cmd::run(&config, format),
            Command::Init { force } => task_cmd::init(Path::new("."), force),
            Command::Task(TaskCommand::Add {
                title,
                body,
                body_file,
                labels,
            }) => task_cmd::add(Path::new("."), &title, body, body_file, labels),
            Command::Task(TaskCommand::Import { file, format }) => {
                task_cmd::import(Path::new("."), &file, format.map(Into::into))
            }
            Command::Task(TaskCommand::List { format }) => task_cmd::list(Path::new("."), format),
            Command::Task(TaskCommand::Show { id, format }) => {
                task_cmd::show(Path::new("."), &id, format)
            }
        }
    })
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("GAFFER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

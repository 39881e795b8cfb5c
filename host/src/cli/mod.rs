//! The `gaffer` command line: parse, call the room that does the work, print. With `demo`, the
//! only module that knows every room.

pub mod args;
mod demo;
mod estimate_cmd;
mod hook_cmd;
mod init_cmd;
mod models_cmd;
mod plugin_cmd;
mod plugin_new;
mod plugin_test;
mod replay_cmd;
mod report_cmd;
mod run_cmd;
mod sandbox_cmd;
mod serve_cmd;
mod status_cmd;
mod task_cmd;

use clap::{Parser, Subcommand};

pub use args::{Format, ProjectArgs};

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
    Plugin(plugin_cmd::PluginCommand),
    /// Write a commented gaffer.toml and the reference plugins it names, create .gaffer/
    /// (backlog and ledger) and ignore it in git.
    Init(init_cmd::InitArgs),
    /// The backlog.
    #[command(subcommand)]
    Task(task_cmd::TaskCommand),
    /// List the configured models with their prices and where the prices come from.
    Models(models_cmd::ModelsArgs),
    /// Run the whole pipeline offline on a sample repository against a scripted model provider
    /// (a simulation; no API key), then show the reference plugins deciding.
    Demo(demo::DemoArgs),
    /// Work through the backlog: claim, route, implement, check, verify, merge.
    Run(run_cmd::RunArgs),
    /// The economics of the ledger: each task end to end, per model and label, spend on work
    /// that never merged, where agents fail, the month ahead, a person's cost.
    Report(report_cmd::ReportArgs),
    /// A backlog's expected cost and tasks solved before any pipeline (seeded Monte Carlo
    /// over per-label cascade profiles), with every assumption printed.
    Estimate(estimate_cmd::EstimateArgs),
    /// What routing policies would have done on recorded outcomes: a router plugin, a fixed
    /// cascade, every single model and the oracle, with recorded costs.
    Replay(replay_cmd::ReplayArgs),
    /// A local web dashboard: the live backlog, what is running, spend against the caps, and
    /// the report's charts. Loopback only unless --bind says otherwise.
    Serve(serve_cmd::ServeArgs),
    /// Bridges to other agents' hook systems.
    #[command(subcommand)]
    Hook(hook_cmd::HookCommand),
    /// The backlog by state, spend against the caps, and what is running.
    Status(status_cmd::StatusArgs),
    /// Whether the agent's commands can be sandboxed here; with `-- COMMAND`, run it in the
    /// project's sandbox (to see what a toolchain needs).
    Sandbox(sandbox_cmd::SandboxArgs),
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
            Command::Plugin(command) => plugin_cmd::run(command).await,
            Command::Init(args) => init_cmd::run(args),
            Command::Task(command) => task_cmd::run(command),
            Command::Models(args) => models_cmd::run(args),
            Command::Demo(args) => demo::run(args).await,
            Command::Run(args) => run_cmd::run(args).await,
            Command::Report(args) => report_cmd::run(args),
            Command::Estimate(args) => estimate_cmd::run(args),
            Command::Replay(args) => replay_cmd::run(args).await,
            Command::Serve(args) => serve_cmd::run(args).await,
            Command::Hook(command) => hook_cmd::run(command).await,
            Command::Status(args) => status_cmd::run(args),
            Command::Sandbox(args) => sandbox_cmd::run(args).await,
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

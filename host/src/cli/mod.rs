//! The `gaffer` command line. The only module that knows every room.

pub mod config;
mod demo;
mod models_cmd;
mod plugin_cmd;

use std::path::PathBuf;

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
    /// List the configured models with their prices and where the prices come from.
    Models {
        /// The configuration file.
        #[arg(long, default_value = "gaffer.toml")]
        config: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Show the reference plugins deciding on sample tasks, through the real sandbox.
    Demo {
        /// Directory holding the built reference plugins (`cost_tier.wasm`, ...).
        #[arg(long, default_value = "target/guests/wasm32-wasip2/plugin")]
        plugins: PathBuf,
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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Plugin(PluginCommand::Check {
                file,
                config,
                format,
            }) => plugin_cmd::check(&file, &config, format).await,
            Command::Plugin(PluginCommand::Bench {
                file,
                calls,
                warmup,
                allocator,
                config,
                format,
            }) => plugin_cmd::bench(&file, calls, warmup, allocator.into(), &config, format).await,
            Command::Demo { plugins, format } => demo::run(&plugins, format).await,
            Command::Models { config, format } => models_cmd::run(&config, format),
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

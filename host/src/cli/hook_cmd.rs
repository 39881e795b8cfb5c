//! `gaffer hook claude-code`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum HookCommand {
    /// A Claude Code command hook: the event JSON on stdin, the configured WebAssembly hooks
    /// decide, the answer as Claude Code expects it. Fails closed.
    ClaudeCode {
        /// The configuration (default: the nearest gaffer.toml from the event's cwd).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

pub async fn run(command: HookCommand) -> anyhow::Result<ExitCode> {
    match command {
        HookCommand::ClaudeCode { config } => Ok(crate::bridge::claude_code::run(config).await),
    }
}

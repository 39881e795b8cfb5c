//! `gaffer hook claude-code`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum HookCommand {
    /// A Claude Code command hook: the event JSON on stdin, the configured WebAssembly hooks
    /// decide, the answer as Claude Code expects it. Fails closed.
    ClaudeCode {
        /// The configuration (default: gaffer.toml in $CLAUDE_PROJECT_DIR, which Claude Code
        /// sets; never looked up from the event).
        #[arg(long)]
        config: Option<PathBuf>,
        /// The tree the agent works in (an attempt's worktree), when it is not the
        /// configuration's directory.
        #[arg(long)]
        root: Option<PathBuf>,
        /// Print the Claude Code settings that install this hook where the agent cannot
        /// change it (managed settings, or `claude --settings FILE --setting-sources user`),
        /// for the configuration given or found, and exit.
        #[arg(long)]
        print_settings: bool,
    },
}

pub async fn run(command: HookCommand) -> anyhow::Result<ExitCode> {
    match command {
        HookCommand::ClaudeCode {
            config,
            print_settings: true,
            ..
        } => {
            let config = crate::bridge::claude_code::config_path(config.as_deref())
                .map_err(anyhow::Error::msg)?;
            let config = std::fs::canonicalize(&config)?;
            let settings = crate::bridge::claude_code::settings(
                &config,
                &crate::agent::external::hook_program()?,
            );
            println!("{}", serde_json::to_string_pretty(&settings)?);
            Ok(ExitCode::SUCCESS)
        }
        HookCommand::ClaudeCode { config, root, .. } => {
            Ok(crate::bridge::claude_code::run(config, root).await)
        }
    }
}

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
        } => {
            let config = crate::bridge::claude_code::config_path(config.as_deref())
                .map_err(anyhow::Error::msg)?;
            let config = std::fs::canonicalize(&config)?;
            let settings = crate::bridge::claude_code::settings(&config, &hook_program()?);
            println!("{}", serde_json::to_string_pretty(&settings)?);
            Ok(ExitCode::SUCCESS)
        }
        HookCommand::ClaudeCode { config, .. } => Ok(crate::bridge::claude_code::run(config).await),
    }
}

/// The command a hook runs: `gaffer-hook claude-code` beside this program when it is
/// installed, else this program's `hook claude-code`.
fn hook_program() -> anyhow::Result<Vec<String>> {
    let exe = std::env::current_exe()?;
    let small = exe.with_file_name("gaffer-hook");
    Ok(if small.is_file() {
        vec![small.display().to_string(), "claude-code".to_string()]
    } else {
        vec![
            exe.display().to_string(),
            "hook".to_string(),
            "claude-code".to_string(),
        ]
    })
}

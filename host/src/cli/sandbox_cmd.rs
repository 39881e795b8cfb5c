//! `gaffer sandbox`: whether this machine can sandbox the agent's commands (each layer, or what
//! is missing), and — given a command — that command run in the project's sandbox, to see
//! what a toolchain needs before a run finds out.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::ProjectArgs;
use crate::pipeline::PipelineSettings;
use crate::sandbox::{CommandLimits, probe, run_command};

#[derive(Debug, Args)]
pub struct SandboxArgs {
    #[command(flatten)]
    project: ProjectArgs,
    /// The directory the command may write (as a worktree is); default: the working directory.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Seconds before the command is killed.
    #[arg(long, default_value_t = 300)]
    timeout_secs: u64,
    /// A command to run in the sandbox (as `sh -c`), with `[sandbox]` of gaffer.toml.
    #[arg(last = true)]
    command: Vec<String>,
}

pub async fn run(args: SandboxArgs) -> anyhow::Result<ExitCode> {
    let tools = match probe() {
        Ok(tools) => tools,
        Err(unavailable) => {
            eprintln!("gaffer: {unavailable}");
            return Ok(ExitCode::FAILURE);
        }
    };
    if args.command.is_empty() {
        println!("the sandbox is available:");
        println!("  namespaces    {} (bubblewrap)", tools.bwrap.display());
        println!(
            "  init          {} (Landlock, seccomp, rlimits)",
            tools.init.display()
        );
        println!("  cgroups       {:?}", tools.cgroups);
        return Ok(ExitCode::SUCCESS);
    }
    let project = args.project.project();
    let limits = if project.config_path().exists() {
        let config = project.config()?;
        let settings =
            config.resolve(|s, _| PipelineSettings::from_config(s, project.worktrees_dir()))?;
        settings.test_limits
    } else {
        CommandLimits::default()
    };
    let limits = CommandLimits {
        timeout: Duration::from_secs(args.timeout_secs),
        output_cap: 1024 * 1024,
        ..limits
    };
    let dir = match args.dir {
        Some(dir) => dir,
        None => std::env::current_dir()?,
    };
    let dir = std::fs::canonicalize(&dir)?;
    let out = run_command(&dir, &args.command.join(" "), &limits).await?;
    print!("{}", out.output);
    if out.timed_out {
        eprintln!(
            "gaffer: the command timed out after {} s",
            args.timeout_secs
        );
    }
    Ok(match out.exit_code {
        Some(0) => ExitCode::SUCCESS,
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => ExitCode::FAILURE,
    })
}

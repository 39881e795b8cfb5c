//! `gaffer init`.

use std::path::Path;
use std::process::ExitCode;

use clap::Args;

use crate::project::init::init;

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Overwrite an existing gaffer.toml and the reference plugins in plugins/.
    #[arg(long)]
    force: bool,
}

pub fn run(args: InitArgs) -> anyhow::Result<ExitCode> {
    let done = init(Path::new("."), args.force)?;
    let tests = if done.test_command.is_empty() {
        "none found: set [project] test_command".to_string()
    } else {
        format!("`{}`", done.test_command)
    };
    println!(
        "wrote {} (target branch `{}`, tests {tests})",
        done.config.display(),
        done.target_branch
    );
    if done.plugins.is_empty() {
        println!("this gaffer carries no reference plugins: configure [plugins] by hand");
    } else {
        println!(
            "wrote the reference plugins, pinned by their sha256 in the configuration: {}",
            done.plugins
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    println!("created .gaffer/ with the backlog and the ledger, ignored in git");
    Ok(ExitCode::SUCCESS)
}

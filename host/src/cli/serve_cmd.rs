//! `gaffer serve`: the dashboard over the project's store until interrupted. It listens on
//! loopback unless told otherwise, and answers only requests addressed to that address.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use super::ProjectArgs;
use super::status_cmd::caps_or_none;
use crate::report::dashboard::{self, Dashboard};

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    project: ProjectArgs,
    /// Address to listen on (port 0: any free port; the URL is printed). Loopback by default:
    /// the dashboard has no authentication. Requests whose Host header is not this address
    /// (or, on loopback, localhost or [::1] with its port) are refused with 421.
    #[arg(long, default_value = "127.0.0.1:7420")]
    bind: std::net::SocketAddr,
}

pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let project = args.project.project();
    let store = project.open_store()?;
    let caps = caps_or_none(&project, "the dashboard shows no caps");
    let listener = dashboard::bind(args.bind)
        .await
        .with_context(|| format!("listening on {}", args.bind))?;
    let address = listener.local_addr()?;
    println!("gaffer dashboard on http://{address}/ (Ctrl-C stops it)");
    std::io::stdout().flush()?;
    let root = std::fs::canonicalize(project.root())?;
    let dashboard = Dashboard {
        store,
        caps,
        title: format!("gaffer · {}", root.display()),
        repo: Some(root),
    };
    tokio::select! {
        served = dashboard::serve(dashboard, listener) => served?,
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(ExitCode::SUCCESS)
}

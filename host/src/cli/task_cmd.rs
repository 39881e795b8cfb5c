//! `gaffer task add|import|list|show`: the backlog from the command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Subcommand, ValueEnum};

use super::{Format, ProjectArgs};
use crate::pipeline::import::{ImportFormat, parse};
use crate::store::{NewTask, TaskRecord};

#[derive(Debug, Subcommand)]
pub enum TaskCommand {
    /// Add one task.
    Add {
        title: String,
        #[arg(long)]
        body: Option<String>,
        #[arg(long, conflicts_with = "body")]
        body_file: Option<PathBuf>,
        #[arg(long = "label")]
        labels: Vec<String>,
        #[command(flatten)]
        project: ProjectArgs,
    },
    /// Import tasks from a Markdown checklist, JSON Lines, or `gh issue list --json
    /// number,title,body,labels` output. All or nothing.
    Import {
        file: PathBuf,
        #[arg(long, value_enum)]
        format: Option<ImportFormatArg>,
        #[command(flatten)]
        project: ProjectArgs,
    },
    /// List the tasks.
    List {
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        #[command(flatten)]
        project: ProjectArgs,
    },
    /// Show one task.
    Show {
        id: String,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        #[command(flatten)]
        project: ProjectArgs,
    },
}

/// `--format` of `task import`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImportFormatArg {
    Markdown,
    Jsonl,
    Gh,
}

impl From<ImportFormatArg> for ImportFormat {
    fn from(value: ImportFormatArg) -> Self {
        match value {
            ImportFormatArg::Markdown => ImportFormat::Markdown,
            ImportFormatArg::Jsonl => ImportFormat::JsonLines,
            ImportFormatArg::Gh => ImportFormat::GitHub,
        }
    }
}

pub fn run(command: TaskCommand) -> anyhow::Result<ExitCode> {
    match command {
        TaskCommand::Add {
            title,
            body,
            body_file,
            labels,
            project,
        } => add(&project, &title, body, body_file, labels),
        TaskCommand::Import {
            file,
            format,
            project,
        } => import(&project, &file, format.map(Into::into)),
        TaskCommand::List { format, project } => list(&project, format),
        TaskCommand::Show {
            id,
            format,
            project,
        } => show(&project, &id, format),
    }
}

/// `gaffer task add`.
fn add(
    project: &ProjectArgs,
    title: &str,
    body: Option<String>,
    body_file: Option<PathBuf>,
    labels: Vec<String>,
) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(!title.trim().is_empty(), "the title is empty");
    let body = match (body, body_file) {
        (Some(_), Some(_)) => anyhow::bail!("give --body or --body-file, not both"),
        (Some(text), None) => text,
        (None, Some(file)) => {
            std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?
        }
        (None, None) => String::new(),
    };
    let store = project.project().open_store()?;
    let ids = store.add_tasks(&[NewTask {
        title: title.trim().to_string(),
        body,
        labels,
        paths: vec![],
        source: Some("gaffer task add".to_string()),
    }])?;
    println!("{}", ids.join(" "));
    Ok(ExitCode::SUCCESS)
}

/// `gaffer task import`.
fn import(
    project: &ProjectArgs,
    file: &std::path::Path,
    format: Option<ImportFormat>,
) -> anyhow::Result<ExitCode> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let name = file.display().to_string();
    let format = format.unwrap_or_else(|| ImportFormat::detect(&name, &text));
    // Everything is parsed before anything is stored, and stored in one transaction.
    let tasks = parse(&name, &text, format)?;
    let store = project.project().open_store()?;
    let ids = store.add_tasks(&tasks)?;
    println!(
        "imported {} task{}: {}",
        ids.len(),
        if ids.len() == 1 { "" } else { "s" },
        ids.join(" ")
    );
    Ok(ExitCode::SUCCESS)
}

fn task_json(t: &TaskRecord) -> serde_json::Value {
    serde_json::json!({
        "id": t.id, "title": t.title, "body": t.body, "labels": t.labels, "paths": t.paths,
        "source": t.source, "state": t.state, "stage": t.stage, "attempts": t.attempts,
        "reason": t.reason, "lease_owner": t.lease_owner,
    })
}

/// `gaffer task list`.
fn list(project: &ProjectArgs, format: Format) -> anyhow::Result<ExitCode> {
    let tasks = project.project().open_store()?.tasks()?;
    match format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&tasks.iter().map(task_json).collect::<Vec<_>>())?
        ),
        Format::Text => {
            println!("{:<6} {:<18} {:>8}  title", "id", "state", "attempts");
            for t in &tasks {
                let state = match &t.stage {
                    Some(stage) => format!("{} ({stage})", t.state),
                    None => t.state.to_string(),
                };
                println!("{:<6} {:<18} {:>8}  {}", t.id, state, t.attempts, t.title);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `gaffer task show`.
fn show(project: &ProjectArgs, id: &str, format: Format) -> anyhow::Result<ExitCode> {
    let Some(t) = project.project().open_store()?.task(id)? else {
        anyhow::bail!("no task `{id}` (see `gaffer task list`)");
    };
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&task_json(&t))?),
        Format::Text => {
            println!("{}  {}", t.id, t.title);
            println!(
                "state:    {}{}",
                t.state,
                t.stage
                    .as_ref()
                    .map(|s| format!(" ({s})"))
                    .unwrap_or_default()
            );
            println!("attempts: {}", t.attempts);
            if !t.labels.is_empty() {
                println!("labels:   {}", t.labels.join(", "));
            }
            if let Some(source) = &t.source {
                println!("source:   {source}");
            }
            if let Some(reason) = &t.reason {
                println!("reason:   {reason}");
            }
            if !t.body.is_empty() {
                println!("\n{}", t.body);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

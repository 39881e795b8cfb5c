//! `gaffer init` and `gaffer task add|import|list|show`: the backlog from the command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use super::Format;
use crate::pipeline::import::{ImportFormat, parse};
use crate::store::{BacklogStore, NewTask, SqliteStore, TaskRecord};

/// gaffer's own directory in a repository.
pub const STATE_DIR: &str = ".gaffer";
const DB_FILE: &str = "gaffer.db";

/// Open the project's store, or say how to create it.
pub fn open_store(root: &Path) -> anyhow::Result<SqliteStore> {
    let dir = root.join(STATE_DIR);
    anyhow::ensure!(
        dir.is_dir(),
        "no {STATE_DIR}/ in {}: run `gaffer init` first",
        root.display()
    );
    Ok(SqliteStore::open(dir.join(DB_FILE))?)
}

fn detect_test_command(root: &Path) -> &'static str {
    if root.join("Cargo.toml").is_file() {
        "cargo test"
    } else if root.join("package.json").is_file() {
        "npm test"
    } else if root.join("pyproject.toml").is_file() || root.join("setup.py").is_file() {
        "python -m pytest"
    } else if root.join("go.mod").is_file() {
        "go test ./..."
    } else {
        ""
    }
}

fn detect_branch(root: &Path) -> String {
    std::process::Command::new("git")
        .args(["symbolic-ref", "--short", "HEAD"])
        .current_dir(root)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| "main".to_string())
}

/// The commented `gaffer.toml` that `gaffer init` writes.
pub fn config_template(target_branch: &str, test_command: &str) -> String {
    // Build tools that write their caches outside the project.
    let writable = match test_command.split_whitespace().next() {
        Some("cargo") => "\"~/.cargo\"",
        Some("npm") => "\"~/.npm\"",
        Some("go") => "\"~/go\", \"~/.cache/go-build\"",
        _ => "",
    };
    let writable_pad = " ".repeat(26usize.saturating_sub(writable.len()).max(1));
    format!(
        r#"# gaffer.toml: everything a run needs. Money is in dollars here and exact micro-dollars inside.

[project]
target_branch = "{target_branch}"   # approved work is merged here
test_command = "{test_command}"     # run on every attempt before the verifier

[agent]
max_turns = 40                      # model calls per attempt
max_attempts = 3                    # then the task goes to a person (needs-human)
confine_commands = true             # commands may write only in the worktree (Landlock) ...
writable = [{writable}]{writable_pad}# ... and here (build tools' caches; `~/` is home)

[run]
workers = 1

[budget]                            # every level optional; a call that would pass one is refused
per_call = 1.00
per_task = 2.00
per_run = 20.00
per_day = 50.00
per_month = 500.00

[providers.anthropic]
kind = "anthropic"
api_key_env = "ANTHROPIC_API_KEY"   # read from the environment, never written here

# [providers.local]                 # an OpenAI-compatible server (Ollama, llama.cpp, vLLM, LiteLLM)
# kind = "openai-compatible"
# base_url = "http://127.0.0.1:11434/v1"
# watts = 350                       # local models are priced by electricity
# usd_per_kwh = 0.30

[models.cheap]
provider = "anthropic"
id = "claude-haiku-4-5"             # priced from the built-in catalog unless `prices` is given
tier = 1
max_tokens = 8192

[models.strong]
provider = "anthropic"
id = "claude-sonnet-4-5"
tier = 3
max_tokens = 16000

# [plugins.router]                  # WebAssembly plugins: see `gaffer plugin check FILE.wasm`
# path = "plugins/cost_tier.wasm"
# fallback_model = "cheap"
"#
    )
}

/// `gaffer init`.
pub fn init(root: &Path, force: bool) -> anyhow::Result<ExitCode> {
    let config = root.join("gaffer.toml");
    anyhow::ensure!(
        force || !config.exists(),
        "{} exists; pass --force to overwrite it",
        config.display()
    );
    let test_command = detect_test_command(root);
    let branch = detect_branch(root);
    std::fs::write(&config, config_template(&branch, test_command))
        .with_context(|| format!("writing {}", config.display()))?;
    let dir = root.join(STATE_DIR);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    SqliteStore::open(dir.join(DB_FILE))?;
    let ignore = root.join(".gitignore");
    let existing = std::fs::read_to_string(&ignore).unwrap_or_default();
    let entry = format!("/{STATE_DIR}/");
    if !existing
        .lines()
        .any(|l| l.trim() == entry || l.trim() == STATE_DIR)
    {
        let mut text = existing;
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&entry);
        text.push('\n');
        std::fs::write(&ignore, text).with_context(|| format!("writing {}", ignore.display()))?;
    }
    println!(
        "wrote {} (target branch `{branch}`, tests `{test_command}`)",
        config.display()
    );
    println!(
        "created {}/ with the backlog and the ledger, ignored in git",
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `gaffer task add`.
pub fn add(
    root: &Path,
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
    let store = open_store(root)?;
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
pub fn import(root: &Path, file: &Path, format: Option<ImportFormat>) -> anyhow::Result<ExitCode> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let name = file.display().to_string();
    let format = format.unwrap_or_else(|| ImportFormat::detect(&name, &text));
    // Everything is parsed before anything is stored, and stored in one transaction.
    let tasks = parse(&name, &text, format)?;
    let store = open_store(root)?;
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
pub fn list(root: &Path, format: Format) -> anyhow::Result<ExitCode> {
    let tasks = open_store(root)?.tasks()?;
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
pub fn show(root: &Path, id: &str, format: Format) -> anyhow::Result<ExitCode> {
    let Some(t) = open_store(root)?.task(id)? else {
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

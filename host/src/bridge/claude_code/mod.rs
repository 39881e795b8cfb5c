//! `gaffer hook claude-code`: the team's WebAssembly hooks as a Claude Code command hook, so the
//! same rules hold when a person drives the agent. One process per event: it reads the event
//! JSON on stdin, maps it onto the `hook` world and answers as Claude Code documents it.
//!
//! It denies whenever it cannot decide: the configuration comes from `--config` or
//! `$CLAUDE_PROJECT_DIR`, never from the event (which the agent shapes); every path is resolved
//! through its symlinks against the canonical project root; `.git`, gaffer's policy files and
//! Claude Code's settings are never the agent's to write; an unknown tool, a malformed or
//! incomplete event, an internal error, a panic or its own timeout exit with status 2, which
//! Claude Code treats as a denial.
//!
//! - `tools`: Claude Code's tools, classified (writes a file, runs a command, writes nothing);
//! - `paths`: paths resolved as the kernel will resolve them;
//! - `shell`: the write targets a shell command names (advisory).

pub mod paths;
pub mod shell;
pub mod tools;
mod watchdog;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value, json};

use self::paths::Resolved;
use self::shell::WriteKind;
use self::tools::{BridgeSettings, Change, Tool};
use self::watchdog::Watchdog;
use crate::config::ConfigFile;
use crate::confined::{Access, OpenError, open_regular};
use crate::plugin::chain::{diff_denials, edit_denials, pre_tool_chain};
use crate::plugin::engine::{CompilerChoice, EpochClock};
use crate::plugin::types::{FileEdit, HookDecision, Task, ToolCall};
use crate::plugin::{
    AllocatorChoice, CallContext, EngineOptions, Plugin, PluginRuntime, PluginSpecs, WasiLinking,
};
use crate::project::Project;
use crate::project::policy_files::PolicyFiles;

/// The most stdin a hook event may take (Write events carry whole files).
const MAX_INPUT: u64 = 32 << 20;
/// The largest file the bridge reads to judge an edit; a larger one is denied.
const MAX_FILE_BYTES: u64 = 16 << 20;
/// Bytes of one ignored file PostToolUse shows the hooks; past it the change is blocked.
const IGNORED_CONTENT_CAP: u64 = 64 * 1024;
/// Ignored files one command may change before PostToolUse refuses to judge them all.
const MAX_IGNORED_CHANGED: usize = 256;
/// Without a PreToolUse mark, PostToolUse judges ignored files changed this long ago or later.
const UNMARKED_WINDOW: Duration = Duration::from_secs(600);

/// What the bridge decided about one event.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// Nothing to say: Claude Code's own permission flow goes on.
    Proceed,
    /// PreToolUse denied, with the reason (shown to Claude).
    Deny(String),
    /// PreToolUse allowed with rewritten input.
    Rewrite(Value),
    /// PostToolUse blocked, with the reason.
    Block(String),
    /// The bridge cannot decide: exit status 2 with the reason on stderr, which Claude Code
    /// treats as a denial (PreToolUse) or feeds back to Claude (PostToolUse).
    Refuse(String),
}

impl Answer {
    /// The JSON Claude Code reads on stdout (exit status 0).
    pub fn to_json(&self) -> Option<Value> {
        match self {
            Answer::Proceed | Answer::Refuse(_) => None,
            Answer::Deny(reason) => Some(json!({
                "hookSpecificOutput": {
                    "hookEventName": "PreToolUse",
                    "permissionDecision": "deny",
                    "permissionDecisionReason": reason,
                }
            })),
            Answer::Rewrite(input) => Some(json!({
                "hookSpecificOutput": {
                    "hookEventName": "PreToolUse",
                    "updatedInput": input,
                }
            })),
            Answer::Block(reason) => Some(json!({"decision": "block", "reason": reason})),
        }
    }
}

/// The two events the bridge answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    PreToolUse,
    PostToolUse,
}

/// A hook event, checked: everything the bridge needs is there and of the right type.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub kind: EventKind,
    pub tool: String,
    pub input: Map<String, Value>,
    pub session_id: String,
    pub tool_use_id: String,
    /// Where Claude Code runs commands: relative paths are resolved against it (never the
    /// configuration, which the event does not choose).
    pub cwd: Option<PathBuf>,
}

impl Event {
    /// Check an event; `Err` says what is missing or unknown.
    pub fn parse(event: &Value) -> Result<Event, String> {
        let field = |name: &str| {
            event
                .get(name)
                .ok_or_else(|| format!("the event has no `{name}`"))
        };
        let kind = match field("hook_event_name")?.as_str() {
            Some("PreToolUse") => EventKind::PreToolUse,
            Some("PostToolUse") => EventKind::PostToolUse,
            Some(other) => {
                return Err(format!(
                    "the event `{other}` is not one gaffer judges (PreToolUse, PostToolUse)"
                ));
            }
            None => return Err("`hook_event_name` is not text".to_string()),
        };
        let tool = field("tool_name")?
            .as_str()
            .filter(|t| !t.is_empty())
            .ok_or("`tool_name` is not a tool's name")?
            .to_string();
        let input = field("tool_input")?
            .as_object()
            .ok_or("`tool_input` is not an object")?
            .clone();
        let text = |name: &str| {
            event
                .get(name)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let cwd = event
            .get("cwd")
            .and_then(Value::as_str)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute());
        Ok(Event {
            kind,
            tool,
            input,
            session_id: text("session_id"),
            tool_use_id: text("tool_use_id"),
            cwd,
        })
    }
}

/// The configuration the bridge obeys: `--config` when given, else `gaffer.toml` in
/// `$CLAUDE_PROJECT_DIR` (which Claude Code sets to the project it was started in). Never
/// looked up from the event's `cwd`, which the policed agent steers.
pub fn config_path(explicit: Option<&Path>) -> Result<PathBuf, String> {
    let path = match explicit {
        Some(path) => path.to_path_buf(),
        None => match std::env::var_os("CLAUDE_PROJECT_DIR").filter(|d| !d.is_empty()) {
            Some(dir) => PathBuf::from(dir).join(crate::project::CONFIG_FILE),
            None => {
                return Err(
                    "no configuration: pass --config FILE, or run inside Claude Code (which sets \
                     CLAUDE_PROJECT_DIR)"
                        .to_string(),
                );
            }
        },
    };
    if !path.is_file() {
        return Err(format!(
            "no gaffer.toml at {}: the hooks to run are not configured",
            path.display()
        ));
    }
    Ok(path)
}

/// The project the bridge judges for: its canonical root, policy files, hooks and settings.
pub struct Bridge {
    root: PathBuf,
    policy: PolicyFiles,
    settings: BridgeSettings,
    hooks: Vec<Plugin>,
}

impl Bridge {
    /// Load the configuration at `config` and its hooks; `root` is the tree the agent works in
    /// (an attempt's worktree), by default the configuration's directory. The policy files are
    /// named relative to the configuration's directory, which the worktree mirrors. `epoch`
    /// drives the hooks' deadlines (the bridge's watchdog ticks it); `None` gives the
    /// engine a ticker thread of its own.
    pub fn load(
        config: &Path,
        root: Option<&Path>,
        epoch: Option<Arc<EpochClock>>,
    ) -> Result<Bridge, String> {
        let file = ConfigFile::load(config).map_err(|e| e.to_string())?;
        let specs = file
            .resolve(|s, dir| PluginSpecs::from_config(&s.plugins, dir))
            .map_err(|e| e.to_string())?;
        let settings = file
            .resolve(|s, _| BridgeSettings::from_config(&s.claude_code))
            .map_err(|e| e.to_string())?;
        let dir = config.parent().unwrap_or(Path::new("."));
        let project = std::fs::canonicalize(dir)
            .map_err(|e| format!("the project at {}: {e}", dir.display()))?;
        let root = match root {
            Some(root) => std::fs::canonicalize(root)
                .map_err(|e| format!("the worktree at {}: {e}", root.display()))?,
            None => project.clone(),
        };
        let policy = PolicyFiles::new(
            &project,
            config,
            specs.hooks.iter().map(|spec| spec.path.clone()),
        );
        let mut hooks = Vec::new();
        if !specs.hooks.is_empty() {
            // One event per process: instances on demand (no pool to reserve), compiled code
            // from the disk cache run by an engine without Cranelift (a miss compiles once,
            // with a compiling engine of the same configuration), the epoch ticked by the
            // watchdog's timer signal rather than a thread of its own, and a linker with only
            // the WASI interfaces each hook imports.
            let defaults = EngineOptions::default();
            let runtime = PluginRuntime::builder()
                .options(EngineOptions {
                    allocator: AllocatorChoice::OnDemand,
                    compiler: CompilerChoice::OnCacheMiss,
                    epoch_tick: epoch.as_ref().map_or(defaults.epoch_tick, |c| c.tick()),
                    epoch_clock: epoch,
                    ..defaults
                })
                .cache_dir(Some(Project::at(&project, config).plugin_cache_dir()))
                .wasi_linking(WasiLinking::Imported)
                .build()
                .map_err(|e| e.to_string())?;
            for spec in specs.hooks {
                hooks.push(runtime.load(spec).map_err(|e| e.to_string())?);
            }
        }
        Ok(Bridge {
            root,
            policy,
            settings,
            hooks,
        })
    }

    /// The bridge's own timeout.
    pub fn timeout(&self) -> Duration {
        self.settings.timeout
    }

    /// Where relative paths of `event` start.
    fn base(&self, event: &Event) -> PathBuf {
        event.cwd.clone().unwrap_or_else(|| self.root.clone())
    }

    /// A path the event names, inside the project (relative) or refused.
    fn inside(&self, event: &Event, path: &str) -> Result<String, String> {
        match paths::resolve(&self.root, &self.base(event), path).map_err(|e| e.to_string())? {
            Resolved::Inside(rel) => Ok(rel),
            Resolved::Outside(full) => Err(format!(
                "`{path}` leads outside the project ({}), where the team's rules cannot judge it",
                full.display()
            )),
        }
    }

    /// Why the agent may never change `rel`, whatever the hooks say.
    fn forbidden(&self, rel: &str) -> Option<String> {
        self.policy
            .why(rel)
            .map(|why| format!("`{rel}` {why}; only a person may change it"))
    }

    /// The file's content now: `None` when it does not exist; `Err` when it is not a regular
    /// file, is too large to judge, or cannot be read (none of which can hang: see
    /// [`open_regular`]).
    fn read(&self, rel: &str) -> Result<Option<String>, String> {
        let dir = cap_std::fs::Dir::open_ambient_dir(&self.root, cap_std::ambient_authority())
            .map_err(|e| format!("the project root: {e}"))?;
        let file = match open_regular(&dir, rel, Access::Read) {
            Ok(file) => file,
            Err(OpenError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("`{rel}` {e}")),
        };
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        if len > MAX_FILE_BYTES {
            return Err(format!(
                "`{rel}` is {len} bytes, more than the {MAX_FILE_BYTES} the bridge reads to judge an edit"
            ));
        }
        let mut bytes = Vec::new();
        file.take(MAX_FILE_BYTES)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("`{rel}`: {e}"))?;
        Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
    }

    fn task(event: &Event) -> Task {
        Task {
            id: "claude-code".to_string(),
            title: format!("Claude Code session {}", event.session_id),
            body: String::new(),
            labels: vec!["claude-code".to_string()],
            paths: vec![],
        }
    }

    fn ctx(&self) -> CallContext {
        CallContext::new("claude-code", 1).with_worktree(self.root.clone())
    }

    /// Decide one event.
    pub async fn decide(&self, event: &Event) -> Answer {
        let result = match event.kind {
            EventKind::PreToolUse => self.pre_tool_use(event).await,
            EventKind::PostToolUse => self.post_tool_use(event).await,
        };
        result.unwrap_or_else(|reason| Answer::Refuse(format!("gaffer (fail closed): {reason}")))
    }

    async fn pre_tool_use(&self, event: &Event) -> Result<Answer, String> {
        let tool = tools::classify(&self.settings, &event.tool, &event.input)
            .map_err(|e| e.to_string())?;
        // Refusals that no hook can overturn come first: the input as sent.
        if let Some(denied) = self.builtin_denial(event, &tool)? {
            return Ok(Answer::Deny(denied));
        }
        if self.hooks.is_empty() {
            return Ok(Answer::Proceed);
        }
        let call = self.tool_call(event, &tool)?;
        let task = Self::task(event);
        let ctx = self.ctx();
        let (input, tool) = match pre_tool_chain(&self.hooks, &ctx, &task, &call)
            .await
            .map_err(|e| e.to_string())?
        {
            HookDecision::Allow => (None, tool),
            HookDecision::Deny(reason) => return Ok(Answer::Deny(reason)),
            HookDecision::Rewrite(arguments) => {
                let input = self.rewritten_input(event, &arguments)?;
                let tool = tools::classify(&self.settings, &event.tool, &input)
                    .map_err(|e| format!("a hook's rewrite: {e}"))?;
                // The rewrite is judged like the original: it may not leave the project or
                // touch what no agent may.
                let rewritten = Event {
                    input: input.clone(),
                    ..event.clone()
                };
                if let Some(denied) = self.builtin_denial(&rewritten, &tool)? {
                    return Ok(Answer::Deny(format!(
                        "a hook's rewrite is refused: {denied}"
                    )));
                }
                (Some(input), tool)
            }
        };
        // The file changes the (final) call would make, each judged by every hook's on-edit.
        let judged = Event {
            input: input.clone().unwrap_or_else(|| event.input.clone()),
            ..event.clone()
        };
        for edit in self.file_edits(&judged, &tool)? {
            let denials = edit_denials(&self.hooks, &ctx, &task, &edit)
                .await
                .map_err(|e| e.to_string())?;
            if !denials.is_empty() {
                return Ok(Answer::Deny(denials.join("; ")));
            }
        }
        if matches!(tool, Tool::Shell { .. }) {
            self.mark_command_start(event);
        }
        Ok(match input {
            Some(input) => Answer::Rewrite(Value::Object(input)),
            None => Answer::Proceed,
        })
    }

    /// A denial that holds whatever the hooks say: a write outside the project or to a file
    /// that steers gaffer, git or Claude Code; a shell command naming one as its target.
    fn builtin_denial(&self, event: &Event, tool: &Tool) -> Result<Option<String>, String> {
        let targets: Vec<String> = match tool {
            Tool::WriteFile { path, .. } => match self.inside(event, path) {
                Ok(rel) => vec![rel],
                Err(outside) => return Ok(Some(outside)),
            },
            Tool::Shell { command } => self
                .shell_targets(event, command)
                .into_iter()
                .map(|(rel, _)| rel)
                .collect(),
            Tool::ReadOnly { .. } => Vec::new(),
        };
        Ok(targets.iter().find_map(|rel| self.forbidden(rel)))
    }

    /// The files inside the project a shell command names as targets (advisory: see `shell`).
    fn shell_targets(&self, event: &Event, command: &str) -> Vec<(String, WriteKind)> {
        let base = self.base(event);
        shell::write_targets(command)
            .into_iter()
            .filter_map(|target| {
                let dir = if target.dir.is_empty() {
                    base.clone()
                } else {
                    base.join(&target.dir)
                };
                match paths::resolve(&self.root, &dir, &target.path) {
                    Ok(Resolved::Inside(rel)) => Some((rel, target.kind)),
                    _ => None,
                }
            })
            .collect()
    }

    /// The call in gaffer's tool vocabulary, so the same rules serve both: Write (and declared
    /// writers) → write_file, Edit/MultiEdit → edit, NotebookEdit → write_file with the
    /// notebook it would leave, Bash → run_command, Read → read_file; other tools keep their
    /// name and input. Paths are relative to the project root, symlinks resolved.
    fn tool_call(&self, event: &Event, tool: &Tool) -> Result<ToolCall, String> {
        let input = &event.input;
        let (name, arguments) = match tool {
            Tool::WriteFile { path, change } => {
                let path = self.inside(event, path)?;
                match (event.tool.as_str(), change) {
                    ("Edit", _) => (
                        "edit",
                        json!({"path": path, "old": input["old_string"], "new": input["new_string"]}),
                    ),
                    ("MultiEdit", _) => ("edit", json!({"path": path, "edits": input["edits"]})),
                    (_, Change::Content(content)) => {
                        ("write_file", json!({"path": path, "content": content}))
                    }
                    _ => {
                        let after = self.after(&path, change)?;
                        ("write_file", json!({"path": path, "content": after}))
                    }
                }
            }
            Tool::Shell { command } => ("run_command", json!({"command": command})),
            Tool::ReadOnly { path } => {
                let mut arguments = Value::Object(input.clone());
                if let Some(path) = path {
                    let shown = match paths::resolve(&self.root, &self.base(event), path) {
                        Ok(Resolved::Inside(rel)) => rel,
                        Ok(Resolved::Outside(full)) => full.display().to_string(),
                        Err(e) => return Err(e.to_string()),
                    };
                    for field in ["file_path", "notebook_path", "path"] {
                        if arguments.get(field).is_some() {
                            arguments[field] = Value::String(shown.clone());
                        }
                    }
                    if event.tool == "Read" {
                        return Ok(ToolCall {
                            name: "read_file".to_string(),
                            arguments: json!({"path": shown}).to_string(),
                        });
                    }
                }
                return Ok(ToolCall {
                    name: event.tool.clone(),
                    arguments: arguments.to_string(),
                });
            }
        };
        Ok(ToolCall {
            name: name.to_string(),
            arguments: arguments.to_string(),
        })
    }

    /// A hook's rewrite of gaffer's arguments, back in Claude Code's input form.
    fn rewritten_input(
        &self,
        event: &Event,
        arguments: &str,
    ) -> Result<Map<String, Value>, String> {
        let cannot = || {
            format!(
                "a hook rewrote the {} call, and gaffer cannot hand that rewrite back to Claude Code",
                event.tool
            )
        };
        let new: Map<String, Value> = serde_json::from_str(arguments).map_err(|_| cannot())?;
        let get = |key: &str| new.get(key).cloned().ok_or_else(cannot);
        let absolute = |p: Value| -> Result<Value, String> {
            let p = p.as_str().ok_or_else(cannot)?;
            Ok(Value::String(if Path::new(p).is_absolute() {
                p.to_string()
            } else {
                self.root.join(p).display().to_string()
            }))
        };
        let mut out = event.input.clone();
        match event.tool.as_str() {
            "Bash" | "PowerShell" | "Monitor" => {
                out.insert("command".into(), get("command")?);
            }
            "Write" => {
                out.insert("file_path".into(), absolute(get("path")?)?);
                out.insert("content".into(), get("content")?);
            }
            "Edit" => {
                out.insert("file_path".into(), absolute(get("path")?)?);
                out.insert("old_string".into(), get("old")?);
                out.insert("new_string".into(), get("new")?);
            }
            "MultiEdit" => {
                out.insert("file_path".into(), absolute(get("path")?)?);
                out.insert("edits".into(), get("edits")?);
            }
            _ => return Err(cannot()),
        }
        Ok(out)
    }

    /// What the file at `rel` holds after `change`.
    fn after(&self, rel: &str, change: &Change) -> Result<Option<String>, String> {
        let before = || self.read(rel);
        Ok(match change {
            Change::Content(content) => Some(content.clone()),
            Change::Replace(replacements) => Some(tools::apply_replacements(
                before()?.as_deref(),
                replacements,
            )),
            Change::Notebook {
                cell_id,
                source,
                cell_type,
                mode,
            } => Some(
                tools::apply_notebook(
                    before()?.as_deref(),
                    cell_id.as_deref(),
                    source,
                    cell_type.as_deref(),
                    mode,
                )
                .ok_or_else(|| format!("`{rel}` is not a notebook gaffer can read"))?,
            ),
            Change::Unknown => Some(String::new()),
        })
    }

    /// The file changes a call would make, as the `on-edit` hooks see them. A shell command's
    /// content is not known before it runs: its targets are shown with empty content (or as
    /// deleted); PostToolUse judges what it really wrote.
    fn file_edits(&self, event: &Event, tool: &Tool) -> Result<Vec<FileEdit>, String> {
        match tool {
            Tool::WriteFile { path, change } => {
                let rel = self.inside(event, path)?;
                let before = self.read(&rel)?;
                let after = self.after(&rel, change)?;
                Ok(vec![FileEdit {
                    path: rel,
                    before,
                    after,
                }])
            }
            Tool::Shell { command } => {
                let mut edits = Vec::new();
                for (rel, kind) in self.shell_targets(event, command) {
                    // A target that cannot be read (a directory, a FIFO) is judged by its path.
                    let before = self.read(&rel).unwrap_or(None);
                    let after = match kind {
                        WriteKind::Delete => None,
                        WriteKind::Write => Some(String::new()),
                        WriteKind::Modify => Some(before.clone().unwrap_or_default()),
                    };
                    edits.push(FileEdit {
                        path: rel,
                        before,
                        after,
                    });
                }
                Ok(edits)
            }
            Tool::ReadOnly { .. } => Ok(Vec::new()),
        }
    }

    /// Where PreToolUse notes that a command starts, so that PostToolUse knows since when to
    /// look for ignored files it changed.
    fn mark_path(event: &Event) -> Option<PathBuf> {
        use sha2::{Digest, Sha256};
        if event.tool_use_id.is_empty() {
            return None;
        }
        let key = hex::encode(
            &Sha256::digest(format!("{}\0{}", event.session_id, event.tool_use_id))[..16],
        );
        // SAFETY: getuid cannot fail.
        let uid = unsafe { libc::getuid() };
        Some(
            std::env::temp_dir()
                .join(format!("gaffer-bridge-{uid}"))
                .join(key),
        )
    }

    fn mark_command_start(&self, event: &Event) {
        if let Some(mark) = Self::mark_path(event) {
            if let Some(dir) = mark.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            let _ = std::fs::write(&mark, b"");
        }
    }

    /// Since when the command of `event` may have written: its PreToolUse mark, else a window.
    fn command_start(event: &Event) -> SystemTime {
        let marked = Self::mark_path(event).and_then(|mark| {
            let time = std::fs::metadata(&mark).and_then(|m| m.modified()).ok();
            let _ = std::fs::remove_file(&mark);
            time
        });
        marked.unwrap_or_else(|| {
            SystemTime::now()
                .checked_sub(UNMARKED_WINDOW)
                .unwrap_or(SystemTime::UNIX_EPOCH)
        })
    }

    /// After a tool ran: its effect on the working tree, ignored files it changed included,
    /// judged by the `on-diff` hooks. Tools whose writes PreToolUse judged in full proceed.
    async fn post_tool_use(&self, event: &Event) -> Result<Answer, String> {
        let tool = tools::classify(&self.settings, &event.tool, &event.input)
            .map_err(|e| e.to_string())?;
        let judged_before = match &tool {
            Tool::ReadOnly { .. } => true,
            Tool::WriteFile { change, .. } => !matches!(change, Change::Unknown),
            Tool::Shell { .. } => false,
        };
        if judged_before {
            return Ok(Answer::Proceed);
        }
        let since = Self::command_start(event);
        let diff = crate::git::working_tree_diff(&self.root).map_err(|e| e.to_string())?;
        let ignored = crate::git::ignored_changed_since(
            &self.root,
            since,
            IGNORED_CONTENT_CAP,
            MAX_IGNORED_CHANGED,
        )
        .map_err(|e| e.to_string())?;
        let mut reasons: Vec<String> = Vec::new();
        for file in &ignored {
            if file.content.is_none() {
                reasons.push(format!(
                    "`{}` is ignored by git ({} bytes, sha256 {}) and over the {} bytes the hooks \
                     are shown; a person must look at it",
                    file.path, file.size, file.sha256, IGNORED_CONTENT_CAP
                ));
            }
        }
        let diff = crate::git::with_ignored(&diff, &ignored);
        for file in &diff.files {
            for path in std::iter::once(&file.path).chain(&file.old_path) {
                // A policy file a person left changed is theirs: only what changed since the
                // command started (or is gone) is held against it.
                if let Some(why) = self.forbidden(path)
                    && crate::git::changed_since(&self.root.join(path), since)
                {
                    reasons.push(why);
                }
            }
        }
        if diff.files.is_empty() && reasons.is_empty() {
            return Ok(Answer::Proceed);
        }
        if !self.hooks.is_empty() && !diff.files.is_empty() {
            let denials = diff_denials(&self.hooks, &self.ctx(), &Self::task(event), &diff)
                .await
                .map_err(|e| e.to_string())?;
            reasons.extend(denials);
        }
        Ok(if reasons.is_empty() {
            Answer::Proceed
        } else {
            Answer::Block(format!(
                "the working tree breaks the team's rules: {}",
                reasons.join("; ")
            ))
        })
    }
}

/// Claude Code settings that install this bridge for `config` where the agent cannot change
/// it (see [`crate::agent::external::hook_settings`]); `program` is the bridge's command.
pub fn settings(config: &Path, program: &[String]) -> Value {
    let mut words = program.to_vec();
    words.push("--config".to_string());
    words.push(config.display().to_string());
    crate::agent::external::hook_settings(&words)
}

/// How long the bridge may take before its configuration is read (and so before the
/// configured `timeout_secs` is known).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// `gaffer hook claude-code`: the configuration (`--config`, else `$CLAUDE_PROJECT_DIR`'s),
/// then the event on stdin, the answer on stdout. Every way out that is not an answer — no
/// configuration, a plugin that does not load, input it cannot read, a panic, its own timeout
/// — exits with status 2.
pub async fn run(config: Option<PathBuf>, root: Option<PathBuf>) -> ExitCode {
    ExitCode::from(answer(config, root).await)
}

/// [`run`], returning the exit status as a number, for a caller that ends the process with
/// [`std::process::exit`] as soon as the answer is out (`gaffer-hook`). The answer is written
/// and flushed before it returns; the bridge and its engine are left for the exit to reclaim
/// rather than taken apart piece by piece.
pub async fn answer(config: Option<PathBuf>, root: Option<PathBuf>) -> u8 {
    std::panic::set_hook(Box::new(|info| {
        eprintln!("gaffer (fail closed): internal error: {info}; denied");
        std::process::exit(2);
    }));
    let watchdog = Watchdog::start(STARTUP_TIMEOUT);
    let bridge = match config_path(config.as_deref())
        .and_then(|path| Bridge::load(&path, root.as_deref(), watchdog.clock()))
    {
        Ok(bridge) => bridge,
        Err(reason) => return fail_closed(&reason),
    };
    let bridge = std::mem::ManuallyDrop::new(bridge);
    watchdog.set(bridge.timeout());
    let mut text = String::new();
    let read = std::io::stdin().take(MAX_INPUT).read_to_string(&mut text);
    let event: Value = match read
        .map_err(|e| e.to_string())
        .and_then(|_| serde_json::from_str::<Value>(&text).map_err(|e| e.to_string()))
    {
        Ok(v) if v.is_object() => v,
        Ok(_) => return fail_closed("the hook input is not a JSON object"),
        Err(e) => return fail_closed(&format!("the hook input is not readable JSON: {e}")),
    };
    let answer = match Event::parse(&event) {
        Ok(event) => bridge.decide(&event).await,
        Err(reason) => return fail_closed(&reason),
    };
    if let Answer::Refuse(reason) = &answer {
        eprintln!("{reason}; denied");
        return 2;
    }
    if let Some(json) = answer.to_json() {
        let mut out = std::io::stdout().lock();
        if let Err(e) = writeln!(out, "{json}").and_then(|()| out.flush()) {
            return fail_closed(&format!("cannot write the answer: {e}"));
        }
    }
    0
}

/// What the bridge cannot decide on: exit status 2 with the reason on stderr, the documented
/// way to block without JSON.
fn fail_closed(reason: &str) -> u8 {
    eprintln!("gaffer (fail closed): {reason}; denied");
    2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_missing_what_the_bridge_needs_are_refused() {
        let ok = json!({"hook_event_name": "PreToolUse", "tool_name": "Bash", "tool_input": {"command": "ls"}});
        assert!(Event::parse(&ok).is_ok());
        for (field, value) in [
            ("hook_event_name", Value::Null),
            ("hook_event_name", json!("SessionStart")),
            ("tool_name", json!("")),
            ("tool_input", json!("ls")),
        ] {
            let mut bad = ok.clone();
            if value.is_null() {
                bad.as_object_mut().unwrap().remove(field);
            } else {
                bad[field] = value;
            }
            assert!(Event::parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn answers_are_shaped_as_claude_code_reads_them() {
        assert_eq!(
            Answer::Deny("r".into()).to_json().unwrap()["hookSpecificOutput"]["permissionDecision"],
            "deny"
        );
        assert_eq!(Answer::Proceed.to_json(), None);
        assert_eq!(Answer::Refuse("r".into()).to_json(), None);
        assert_eq!(
            Answer::Block("r".into()).to_json().unwrap(),
            json!({"decision": "block", "reason": "r"})
        );
    }
}

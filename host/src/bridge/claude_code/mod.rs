//! `gaffer hook claude-code`: the team's WebAssembly hooks as a Claude Code command hook, so the
//! same rules hold when a person drives the agent. One process per event: it reads the event
//! JSON on stdin, maps it onto the `hook` world — `PreToolUse` → `pre-tool` (plus `on-edit` for
//! Edit, Write and MultiEdit, with the file's content before and after worked out from disk);
//! `PostToolUse` of Bash → `on-diff` over the working tree against HEAD, so a file a shell
//! command wrote is judged by its effect — and answers as Claude Code documents it. It fails
//! closed: unreadable input, a missing configuration or a broken plugin denies, with the reason.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::{Value, json};

use crate::config::ConfigFile;
use crate::plugin::chain::{diff_denials, edit_denials, pre_tool_chain};
use crate::plugin::types::{FileEdit, HookDecision, Task, ToolCall};
use crate::plugin::{AllocatorChoice, CallContext, EngineOptions, PluginRuntime, PluginSpecs};
use crate::project::Project;

/// The most stdin a hook event may take (Write events carry whole files).
const MAX_INPUT: u64 = 32 << 20;

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
}

impl Answer {
    /// The JSON Claude Code reads on stdout (exit status 0).
    pub fn to_json(&self) -> Option<Value> {
        match self {
            Answer::Proceed => None,
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

/// The gaffer.toml that governs `cwd`: the nearest one in it or a directory above it.
fn find_config(cwd: &Path) -> Option<PathBuf> {
    cwd.ancestors()
        .map(|d| d.join("gaffer.toml"))
        .find(|p| p.is_file())
}

/// A path as the hooks see it: relative to the project root when it is inside it.
fn relative(root: &Path, path: &str) -> String {
    Path::new(path)
        .strip_prefix(root)
        .map(|p| p.to_string_lossy().to_string())
        .unwrap_or_else(|_| path.to_string())
}

/// Claude Code's tool call as the `hook` world's, with gaffer's tool names and arguments (so
/// the same rules serve both): Write → write_file, Edit/MultiEdit → edit, Bash → run_command,
/// Read → read_file; other tools keep their name and input.
pub fn tool_call(root: &Path, tool: &str, input: &Value) -> ToolCall {
    let path = input["file_path"]
        .as_str()
        .map(|p| relative(root, p))
        .unwrap_or_default();
    let (name, arguments) = match tool {
        "Write" => (
            "write_file",
            json!({"path": path, "content": input["content"]}),
        ),
        "Edit" => (
            "edit",
            json!({"path": path, "old": input["old_string"], "new": input["new_string"]}),
        ),
        "MultiEdit" => ("edit", json!({"path": path, "edits": input["edits"]})),
        "Bash" => ("run_command", json!({"command": input["command"]})),
        "Read" => ("read_file", json!({"path": path})),
        other => (other, input.clone()),
    };
    ToolCall {
        name: name.to_string(),
        arguments: arguments.to_string(),
    }
}

/// A hook's rewrite of gaffer's arguments, back in Claude Code's input form.
fn rewritten_input(root: &Path, tool: &str, input: &Value, arguments: &str) -> Option<Value> {
    let new: Value = serde_json::from_str(arguments).ok()?;
    let absolute = |p: &Value| -> Option<Value> {
        let p = p.as_str()?;
        Some(Value::String(if Path::new(p).is_absolute() {
            p.to_string()
        } else {
            root.join(p).display().to_string()
        }))
    };
    let mut out = input.clone();
    match tool {
        "Bash" => out["command"] = new.get("command")?.clone(),
        "Write" => {
            out["file_path"] = absolute(new.get("path")?)?;
            out["content"] = new.get("content")?.clone();
        }
        "Edit" => {
            out["file_path"] = absolute(new.get("path")?)?;
            out["old_string"] = new.get("old")?.clone();
            out["new_string"] = new.get("new")?.clone();
        }
        _ => return None,
    }
    Some(out)
}

/// Apply one exact-string edit as Claude Code's Edit does.
fn apply_edit(text: &str, edit: &Value) -> String {
    let old = edit["old_string"].as_str().unwrap_or("");
    let new = edit["new_string"].as_str().unwrap_or("");
    if old.is_empty() {
        return text.to_string();
    }
    if edit["replace_all"].as_bool() == Some(true) {
        text.replace(old, new)
    } else {
        text.replacen(old, new, 1)
    }
}

/// The file change an Edit, Write or MultiEdit would make, from the file on disk.
pub fn file_edit(root: &Path, tool: &str, input: &Value) -> Option<FileEdit> {
    let path = input["file_path"].as_str()?;
    let before = std::fs::read_to_string(path).ok();
    let after = match tool {
        "Write" => input["content"].as_str().unwrap_or("").to_string(),
        "Edit" => apply_edit(before.as_deref().unwrap_or(""), input),
        "MultiEdit" => input["edits"]
            .as_array()
            .into_iter()
            .flatten()
            .fold(before.clone().unwrap_or_default(), |text, e| {
                apply_edit(&text, e)
            }),
        _ => return None,
    };
    Some(FileEdit {
        path: relative(root, path),
        before,
        after: Some(after),
    })
}

/// Decide one event. Every failure is a denial (or a block, after the tool ran).
pub async fn decide(event: &Value, config: Option<&Path>) -> Answer {
    let name = event["hook_event_name"].as_str().unwrap_or("");
    let refuse = |reason: String| {
        let reason = format!("gaffer (fail closed): {reason}");
        if name == "PostToolUse" {
            Answer::Block(reason)
        } else {
            Answer::Deny(reason)
        }
    };
    let tool = event["tool_name"].as_str().unwrap_or("");
    let input = &event["tool_input"];
    let relevant = match name {
        "PreToolUse" => true,
        "PostToolUse" => tool == "Bash",
        _ => false,
    };
    if !relevant {
        return Answer::Proceed;
    }
    let cwd = event["cwd"]
        .as_str()
        .map(PathBuf::from)
        .or_else(|| std::env::current_dir().ok())
        .unwrap_or_else(|| PathBuf::from("."));
    let Some(config) = config.map(Path::to_path_buf).or_else(|| find_config(&cwd)) else {
        return refuse(format!(
            "no gaffer.toml in {} or above it: the hooks to run are not configured",
            cwd.display()
        ));
    };
    let root = config
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let root = std::fs::canonicalize(&root).unwrap_or(root);
    let specs = match ConfigFile::load(&config)
        .and_then(|file| file.resolve(|s, dir| PluginSpecs::from_config(&s.plugins, dir)))
    {
        Ok(specs) => specs,
        Err(e) => return refuse(e.to_string()),
    };
    if specs.hooks.is_empty() {
        // Nothing to judge with: no engine to start.
        return Answer::Proceed;
    }
    // One event per process: instances on demand (no pool to reserve), compiled code from the
    // disk cache.
    let runtime = PluginRuntime::builder()
        .options(EngineOptions {
            allocator: AllocatorChoice::OnDemand,
            ..EngineOptions::default()
        })
        .cache_dir(Some(Project::at(&root, &config).plugin_cache_dir()))
        .build();
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => return refuse(e.to_string()),
    };
    let mut hooks = Vec::new();
    for spec in specs.hooks {
        match runtime.load(spec) {
            Ok(hook) => hooks.push(hook),
            Err(e) => return refuse(e.to_string()),
        }
    }
    let task = Task {
        id: "claude-code".to_string(),
        title: format!(
            "Claude Code session {}",
            event["session_id"].as_str().unwrap_or("")
        ),
        body: String::new(),
        labels: vec!["claude-code".to_string()],
        paths: vec![],
    };
    let ctx = CallContext::new("claude-code", 1).with_worktree(root.clone());
    if name == "PostToolUse" {
        let diff = match crate::git::working_tree_diff(&root) {
            Ok(d) => d,
            Err(e) => return refuse(e.to_string()),
        };
        if diff.files.is_empty() {
            return Answer::Proceed;
        }
        let denials = match diff_denials(&hooks, &ctx, &task, &diff).await {
            Ok(denials) => denials,
            Err(e) => return refuse(e.to_string()),
        };
        return if denials.is_empty() {
            Answer::Proceed
        } else {
            Answer::Block(format!(
                "the working tree breaks the team's rules: {}",
                denials.join("; ")
            ))
        };
    }
    let call = tool_call(&root, tool, input);
    let rewrite = match pre_tool_chain(&hooks, &ctx, &task, &call).await {
        Ok(HookDecision::Allow) => None,
        Ok(HookDecision::Deny(reason)) => return Answer::Deny(reason),
        Ok(HookDecision::Rewrite(arguments)) => Some(arguments),
        Err(e) => return refuse(e.to_string()),
    };
    if let Some(edit) = file_edit(&root, tool, input) {
        match edit_denials(&hooks, &ctx, &task, &edit).await {
            Ok(denials) if denials.is_empty() => {}
            Ok(denials) => return Answer::Deny(denials.join("; ")),
            Err(e) => return refuse(e.to_string()),
        }
    }
    if let Some(arguments) = rewrite {
        return match rewritten_input(&root, tool, input, &arguments) {
            Some(new) => Answer::Rewrite(new),
            None => refuse(format!(
                "a hook rewrote the {tool} call, and gaffer cannot hand that rewrite back to Claude Code"
            )),
        };
    }
    Answer::Proceed
}

/// `gaffer hook claude-code`: the event on stdin, the answer on stdout.
pub async fn run(config: Option<PathBuf>) -> ExitCode {
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
    let answer = decide(&event, config.as_deref()).await;
    if let Some(json) = answer.to_json() {
        let mut out = std::io::stdout().lock();
        if let Err(e) = writeln!(out, "{json}").and_then(|()| out.flush()) {
            return fail_closed(&format!("cannot write the answer: {e}"));
        }
    }
    ExitCode::SUCCESS
}

/// Input that cannot be read: exit status 2 with the reason on stderr, the documented way to
/// block without JSON.
fn fail_closed(reason: &str) -> ExitCode {
    eprintln!("gaffer (fail closed): {reason}; denied");
    ExitCode::from(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claude_tools_map_onto_gaffers() {
        let root = Path::new("/repo");
        let call = tool_call(
            root,
            "Write",
            &json!({"file_path": "/repo/.env", "content": "K=1"}),
        );
        assert_eq!(call.name, "write_file");
        let args: Value = serde_json::from_str(&call.arguments).unwrap();
        assert_eq!(args["path"], ".env");
        let call = tool_call(root, "Bash", &json!({"command": "ls"}));
        assert_eq!(
            (call.name.as_str(), call.arguments.as_str()),
            ("run_command", r#"{"command":"ls"}"#)
        );
        let back = rewritten_input(
            root,
            "Write",
            &json!({"file_path": "/repo/a", "content": "x"}),
            r#"{"path": "b", "content": "y"}"#,
        )
        .unwrap();
        assert_eq!(back, json!({"file_path": "/repo/b", "content": "y"}));
    }

    #[test]
    fn edits_are_applied_as_claude_code_applies_them() {
        assert_eq!(
            apply_edit("a a", &json!({"old_string": "a", "new_string": "b"})),
            "b a"
        );
        assert_eq!(
            apply_edit(
                "a a",
                &json!({"old_string": "a", "new_string": "b", "replace_all": true})
            ),
            "b b"
        );
        assert_eq!(
            Answer::Deny("r".into()).to_json().unwrap()["hookSpecificOutput"]["permissionDecision"],
            "deny"
        );
        assert_eq!(Answer::Proceed.to_json(), None);
    }
}

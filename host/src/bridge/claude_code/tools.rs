//! Claude Code's tools as the bridge judges them: which write a file (and where, and what the
//! file holds after), which run a command, which write nothing; anything else is unknown and
//! denied. Tools of MCP servers are declared in `[claude_code]` of gaffer.toml.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::config::Invalid;
use crate::config::schema::ClaudeCodeSection;

/// Claude Code's own tools that write no file (as named by `@anthropic-ai/claude-code`
/// 2.1.328, and a few older names). Their calls go to the hooks' `pre-tool`. Tools that write
/// through a side door (`EnterWorktree` makes a git worktree; `Workflow` and `REPL` run code)
/// are left unknown, so denied until declared. `Monitor` runs a command: it is judged as one.
pub const READ_ONLY_TOOLS: &[&str] = &[
    "Read",
    "Glob",
    "Grep",
    "LS",
    "LSP",
    "NotebookRead",
    "WebFetch",
    "WebSearch",
    "ToolSearch",
    // Subagents' own tool calls come through the same hooks.
    "Task",
    "Agent",
    "ListAgents",
    "SendMessage",
    "SendUserMessage",
    "ReportFindings",
    "TaskCreate",
    "TaskGet",
    "TaskList",
    "TaskUpdate",
    "TaskOutput",
    "TaskStop",
    "TodoWrite",
    "BashOutput",
    "KillShell",
    "KillBash",
    "CronCreate",
    "CronDelete",
    "CronList",
    "ScheduleWakeup",
    "ExitPlanMode",
    "EnterPlanMode",
    "AskUserQuestion",
    // A skill's `!cmd` lines run without a Bash hook: the printed settings turn them off
    // (`disableSkillShellExecution`).
    "Skill",
    "SlashCommand",
    "StructuredOutput",
    "WaitForMcpServers",
    "ListMcpResourcesTool",
    "ReadMcpResourceTool",
    "ReadMcpResourceDirTool",
];

/// Default seconds the bridge may take on one event: under Claude Code's own hook timeout (60
/// s), so that the bridge's denial, not Claude Code's non-blocking timeout, ends a slow event.
const DEFAULT_TIMEOUT_SECS: u64 = 30;

/// The input fields of a declared tool that writes a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteFields {
    pub path: String,
    pub content: Option<String>,
}

/// `[claude_code]` resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeSettings {
    pub read_only_tools: Vec<String>,
    pub write_tools: BTreeMap<String, WriteFields>,
    pub timeout: Duration,
}

impl Default for BridgeSettings {
    fn default() -> Self {
        BridgeSettings {
            read_only_tools: Vec::new(),
            write_tools: BTreeMap::new(),
            timeout: Duration::from_secs(DEFAULT_TIMEOUT_SECS),
        }
    }
}

impl BridgeSettings {
    pub fn from_config(section: &ClaudeCodeSection) -> Result<BridgeSettings, Invalid> {
        let mut write_tools = BTreeMap::new();
        for (tool, fields) in &section.write_tools {
            let key = format!("claude_code.write_tools.{tool}");
            let path = fields
                .path
                .clone()
                .filter(|p| !p.is_empty())
                .ok_or_else(|| {
                    Invalid::new(
                        format!("{key}.path"),
                        "name the input field that holds the file's path",
                    )
                })?;
            write_tools.insert(
                tool.clone(),
                WriteFields {
                    path,
                    content: fields.content.clone().filter(|c| !c.is_empty()),
                },
            );
        }
        for (i, tool) in section.read_only_tools.iter().enumerate() {
            if write_tools.contains_key(tool) {
                return Err(Invalid::new(
                    format!("claude_code.read_only_tools[{i}]"),
                    format!("`{tool}` is declared as a write tool too"),
                ));
            }
        }
        let timeout = Invalid::at_least(
            "claude_code.timeout_secs".to_string(),
            section.timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS),
            1,
            "the bridge would deny every event",
        )?;
        Ok(BridgeSettings {
            read_only_tools: section.read_only_tools.clone(),
            write_tools,
            timeout: Duration::from_secs(timeout),
        })
    }
}

/// One exact-string replacement of Edit and MultiEdit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replacement {
    pub old: String,
    pub new: String,
    pub all: bool,
}

/// What a file-writing tool puts in its file.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// The whole new content.
    Content(String),
    /// Replacements applied in order to the current content (an empty `old` on an empty or
    /// missing file creates it with `new`, as Claude Code does).
    Replace(Vec<Replacement>),
    /// A cell of a Jupyter notebook replaced, inserted or deleted.
    Notebook {
        cell_id: Option<String>,
        source: String,
        cell_type: Option<String>,
        mode: String,
    },
    /// Not known before the tool runs (a declared tool without a content field).
    Unknown,
}

/// A tool call as the bridge judges it.
#[derive(Debug, Clone, PartialEq)]
pub enum Tool {
    /// Writes the file at `path` (as the event names it).
    WriteFile { path: String, change: Change },
    /// Runs a shell command.
    Shell { command: String },
    /// Writes no file; `path` when it names one (a read, a search root).
    ReadOnly { path: Option<String> },
}

/// Why a tool call cannot be judged.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ToolError {
    #[error(
        "the tool `{0}` is unknown to gaffer, so whether it writes files cannot be judged; declare it in \
         gaffer.toml under [claude_code] (read_only_tools, or write_tools with its path field)"
    )]
    Unknown(String),
    #[error("the {tool} call has no `{field}` {what}")]
    Missing {
        tool: String,
        field: String,
        what: &'static str,
    },
}

fn text(tool: &str, input: &Map<String, Value>, field: &str) -> Result<String, ToolError> {
    input
        .get(field)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| ToolError::Missing {
            tool: tool.to_string(),
            field: field.to_string(),
            what: "text",
        })
}

fn replacement(tool: &str, edit: &Map<String, Value>) -> Result<Replacement, ToolError> {
    Ok(Replacement {
        old: text(tool, edit, "old_string")?,
        new: text(tool, edit, "new_string")?,
        all: edit.get("replace_all").and_then(Value::as_bool) == Some(true),
    })
}

/// Classify a call; `Err` when the tool is unknown or its input lacks what it must hold.
pub fn classify(
    settings: &BridgeSettings,
    tool: &str,
    input: &Map<String, Value>,
) -> Result<Tool, ToolError> {
    Ok(match tool {
        "Write" => Tool::WriteFile {
            path: text(tool, input, "file_path")?,
            change: Change::Content(text(tool, input, "content")?),
        },
        "Edit" => Tool::WriteFile {
            path: text(tool, input, "file_path")?,
            change: Change::Replace(vec![replacement(tool, input)?]),
        },
        "MultiEdit" => {
            let edits = input
                .get("edits")
                .and_then(Value::as_array)
                .ok_or_else(|| ToolError::Missing {
                    tool: tool.to_string(),
                    field: "edits".to_string(),
                    what: "list",
                })?;
            let mut replacements = Vec::new();
            for edit in edits {
                let edit = edit.as_object().ok_or_else(|| ToolError::Missing {
                    tool: tool.to_string(),
                    field: "edits[]".to_string(),
                    what: "object",
                })?;
                replacements.push(replacement(tool, edit)?);
            }
            Tool::WriteFile {
                path: text(tool, input, "file_path")?,
                change: Change::Replace(replacements),
            }
        }
        "NotebookEdit" => {
            let optional =
                |field: &str| input.get(field).and_then(Value::as_str).map(str::to_string);
            Tool::WriteFile {
                path: text(tool, input, "notebook_path")?,
                change: Change::Notebook {
                    cell_id: optional("cell_id"),
                    source: optional("new_source").unwrap_or_default(),
                    cell_type: optional("cell_type"),
                    mode: optional("edit_mode").unwrap_or_else(|| "replace".to_string()),
                },
            }
        }
        "Bash" | "PowerShell" | "Monitor" => Tool::Shell {
            command: text(tool, input, "command")?,
        },
        _ => {
            if let Some(fields) = settings.write_tools.get(tool) {
                let change = match &fields.content {
                    Some(field) => Change::Content(text(tool, input, field)?),
                    None => Change::Unknown,
                };
                return Ok(Tool::WriteFile {
                    path: text(tool, input, &fields.path)?,
                    change,
                });
            }
            let known = READ_ONLY_TOOLS.contains(&tool)
                || settings.read_only_tools.iter().any(|t| t == tool);
            if !known {
                return Err(ToolError::Unknown(tool.to_string()));
            }
            let path = ["file_path", "notebook_path", "path"]
                .iter()
                .find_map(|f| input.get(*f).and_then(Value::as_str))
                .map(str::to_string);
            Tool::ReadOnly { path }
        }
    })
}

/// Apply replacements to `before` as Claude Code's Edit does.
pub fn apply_replacements(before: Option<&str>, replacements: &[Replacement]) -> String {
    let mut text = before.unwrap_or_default().to_string();
    for r in replacements {
        if r.old.is_empty() {
            // Creating a file (or filling an empty one): the new text is the content.
            if text.is_empty() {
                text = r.new.clone();
            }
            continue;
        }
        text = if r.all {
            text.replace(&r.old, &r.new)
        } else {
            text.replacen(&r.old, &r.new, 1)
        };
    }
    text
}

/// A notebook with one cell replaced, inserted or deleted, as JSON text; `None` when the
/// notebook cannot be read as one.
pub fn apply_notebook(
    before: Option<&str>,
    cell_id: Option<&str>,
    source: &str,
    cell_type: Option<&str>,
    mode: &str,
) -> Option<String> {
    let mut notebook: Value = match before {
        Some(text) if !text.trim().is_empty() => serde_json::from_str(text).ok()?,
        _ => serde_json::json!({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}),
    };
    let cells = notebook.get_mut("cells")?.as_array_mut()?;
    let index = match cell_id {
        Some(id) => cells
            .iter()
            .position(|c| c.get("id").and_then(Value::as_str) == Some(id))
            .or_else(|| id.strip_prefix("cell-").and_then(|n| n.parse().ok()))
            .or_else(|| id.parse().ok()),
        None => None,
    };
    let cell = serde_json::json!({
        "cell_type": cell_type.unwrap_or("code"),
        "metadata": {},
        "source": source,
    });
    match mode {
        "insert" => {
            let at = index.map_or(0, |i| (i + 1).min(cells.len()));
            cells.insert(at, cell);
        }
        "delete" => {
            let i = index?;
            (i < cells.len()).then(|| cells.remove(i))?;
        }
        _ => {
            let existing = cells.get_mut(index?)?;
            existing["source"] = Value::String(source.to_string());
            if let Some(kind) = cell_type {
                existing["cell_type"] = Value::String(kind.to_string());
            }
        }
    }
    serde_json::to_string_pretty(&notebook).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn input(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn every_writing_tool_names_its_file_and_unknown_tools_are_refused() {
        let mut settings = BridgeSettings::default();
        settings.write_tools.insert(
            "mcp__fs__write_file".into(),
            WriteFields {
                path: "path".into(),
                content: Some("content".into()),
            },
        );
        let classify = |tool: &str, v: Value| classify(&settings, tool, &input(v));
        assert_eq!(
            classify(
                "NotebookEdit",
                json!({"notebook_path": "/p/n.ipynb", "new_source": "x"})
            ),
            Ok(Tool::WriteFile {
                path: "/p/n.ipynb".into(),
                change: Change::Notebook {
                    cell_id: None,
                    source: "x".into(),
                    cell_type: None,
                    mode: "replace".into()
                }
            })
        );
        assert_eq!(
            classify(
                "mcp__fs__write_file",
                json!({"path": ".env", "content": "K=1"})
            ),
            Ok(Tool::WriteFile {
                path: ".env".into(),
                change: Change::Content("K=1".into())
            })
        );
        assert_eq!(
            classify("mcp__other__write", json!({"path": ".env"})),
            Err(ToolError::Unknown("mcp__other__write".into()))
        );
        assert!(matches!(
            classify("Write", json!({"content": "x"})),
            Err(ToolError::Missing { .. })
        ));
        assert_eq!(
            classify("Grep", json!({"pattern": "x", "path": "src"})),
            Ok(Tool::ReadOnly {
                path: Some("src".into())
            })
        );
    }

    #[test]
    fn an_edit_that_creates_a_file_holds_its_new_text() {
        let create = Replacement {
            old: String::new(),
            new: "K=1\n".into(),
            all: false,
        };
        assert_eq!(
            apply_replacements(None, std::slice::from_ref(&create)),
            "K=1\n"
        );
        assert_eq!(apply_replacements(Some("old"), &[create]), "old");
        let swap = Replacement {
            old: "a".into(),
            new: "b".into(),
            all: true,
        };
        assert_eq!(apply_replacements(Some("a a"), &[swap]), "b b");
    }

    #[test]
    fn notebook_cells_are_replaced_inserted_and_deleted() {
        let nb = json!({"cells": [{"id": "c1", "cell_type": "code", "source": "x = 1", "metadata": {}}]}).to_string();
        let replaced = apply_notebook(Some(&nb), Some("c1"), "import os", None, "replace").unwrap();
        assert!(replaced.contains("import os") && !replaced.contains("x = 1"));
        let inserted = apply_notebook(Some(&nb), Some("c1"), "y = 2", None, "insert").unwrap();
        assert!(inserted.contains("x = 1") && inserted.contains("y = 2"));
        let deleted = apply_notebook(Some(&nb), Some("c1"), "", None, "delete").unwrap();
        assert!(!deleted.contains("x = 1"));
        assert_eq!(
            apply_notebook(Some("not json"), None, "", None, "insert"),
            None
        );
    }
}

//! The agent's tools: their specs as the model sees them, and their arguments as parsed from
//! the model's JSON. Running them is [`super::session`]'s job (hooks come first).

use serde::Deserialize;

use crate::gateway::chat::ToolSpec;

/// A tool call's arguments, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolArgs {
    ReadFile {
        path: String,
    },
    ListFiles {
        path: String,
    },
    Search {
        pattern: String,
        path: String,
    },
    WriteFile {
        path: String,
        content: String,
    },
    Edit {
        path: String,
        old: String,
        new: String,
    },
    RunCommand {
        command: String,
    },
    Finish {
        summary: String,
    },
}

impl ToolArgs {
    /// The file a tool changes, if it changes one.
    pub fn changed_path(&self) -> Option<&str> {
        match self {
            ToolArgs::WriteFile { path, .. } | ToolArgs::Edit { path, .. } => Some(path),
            _ => None,
        }
    }
}

#[derive(Deserialize)]
struct PathArg {
    #[serde(default)]
    path: String,
}

#[derive(Deserialize)]
struct SearchArg {
    pattern: String,
    #[serde(default)]
    path: String,
}

#[derive(Deserialize)]
struct WriteArg {
    path: String,
    content: String,
}

#[derive(Deserialize)]
struct EditArg {
    path: String,
    old: String,
    new: String,
}

#[derive(Deserialize)]
struct CommandArg {
    command: String,
}

#[derive(Deserialize)]
struct FinishArg {
    #[serde(default)]
    summary: String,
}

/// Parse a tool call; the error is a sentence for the model (it sees it as the tool's result).
pub fn parse(name: &str, arguments: &str) -> Result<ToolArgs, String> {
    let text = if arguments.trim().is_empty() {
        "{}"
    } else {
        arguments
    };
    fn get<T: for<'de> Deserialize<'de>>(name: &str, text: &str) -> Result<T, String> {
        serde_json::from_str(text)
            .map_err(|e| format!("the arguments of `{name}` are not valid: {e}"))
    }
    Ok(match name {
        "read_file" => ToolArgs::ReadFile {
            path: get::<PathArg>(name, text)?.path,
        },
        "list_files" => ToolArgs::ListFiles {
            path: get::<PathArg>(name, text)?.path,
        },
        "search" => {
            let a: SearchArg = get(name, text)?;
            ToolArgs::Search {
                pattern: a.pattern,
                path: a.path,
            }
        }
        "write_file" => {
            let a: WriteArg = get(name, text)?;
            ToolArgs::WriteFile {
                path: a.path,
                content: a.content,
            }
        }
        "edit" => {
            let a: EditArg = get(name, text)?;
            ToolArgs::Edit {
                path: a.path,
                old: a.old,
                new: a.new,
            }
        }
        "run_command" => ToolArgs::RunCommand {
            command: get::<CommandArg>(name, text)?.command,
        },
        "finish" => ToolArgs::Finish {
            summary: get::<FinishArg>(name, text)?.summary,
        },
        other => {
            return Err(format!(
                "there is no tool `{other}`; the tools are {}",
                NAMES.join(", ")
            ));
        }
    })
}

/// The tool names, in the order the model sees them.
pub const NAMES: [&str; 7] = [
    "read_file",
    "list_files",
    "search",
    "write_file",
    "edit",
    "run_command",
    "finish",
];

fn spec(name: &str, description: &str, parameters: serde_json::Value) -> ToolSpec {
    ToolSpec {
        name: name.to_string(),
        description: description.to_string(),
        parameters: parameters.to_string(),
    }
}

/// The tools as the model sees them. Always the same text in the same order, so the prompt's
/// prefix stays stable and providers can cache it.
pub fn specs() -> Vec<ToolSpec> {
    use serde_json::json;
    let path = |what: &str| json!({"type": "string", "description": what});
    vec![
        spec(
            "read_file",
            "Read a text file of the repository.",
            json!({"type": "object", "properties": {"path": path("Path relative to the repository root.")}, "required": ["path"]}),
        ),
        spec(
            "list_files",
            "List files and directories (two levels deep) under a directory of the repository.",
            json!({"type": "object", "properties": {"path": path("Directory relative to the repository root; empty for the root.")}}),
        ),
        spec(
            "search",
            "Search the repository's text files with a regular expression; answers path:line: text.",
            json!({"type": "object", "properties": {"pattern": {"type": "string", "description": "A regular expression (Rust syntax)."}, "path": path("Directory to search; empty for the whole repository.")}, "required": ["pattern"]}),
        ),
        spec(
            "write_file",
            "Create or overwrite a file with the given content.",
            json!({"type": "object", "properties": {"path": path("Path relative to the repository root."), "content": {"type": "string"}}, "required": ["path", "content"]}),
        ),
        spec(
            "edit",
            "Replace one exact occurrence of `old` with `new` in a file. `old` must occur exactly once.",
            json!({"type": "object", "properties": {"path": path("Path relative to the repository root."), "old": {"type": "string"}, "new": {"type": "string"}}, "required": ["path", "old", "new"]}),
        ),
        spec(
            "run_command",
            "Run a shell command in the repository root (tests, linters, build tools). No network credentials are available; output is cut when long.",
            json!({"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}),
        ),
        spec(
            "finish",
            "Say the task is done, with a short summary of the change.",
            json!({"type": "object", "properties": {"summary": {"type": "string"}}, "required": ["summary"]}),
        ),
    ]
}

/// Cut a tool's output to `cap` bytes, keeping its head and tail (errors are usually at the
/// end, context at the start), on character boundaries.
pub fn cut(text: &str, cap: usize) -> String {
    if text.len() <= cap {
        return text.to_string();
    }
    let half = cap / 2;
    let mut head_end = half;
    while !text.is_char_boundary(head_end) {
        head_end -= 1;
    }
    let mut tail_start = text.len() - half;
    while !text.is_char_boundary(tail_start) {
        tail_start += 1;
    }
    format!(
        "{}\n[… {} bytes cut …]\n{}",
        &text[..head_end],
        tail_start - head_end,
        &text[tail_start..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tool_parses_and_unknown_ones_are_named() {
        assert_eq!(
            parse("edit", r#"{"path":"a.py","old":"x","new":"y"}"#),
            Ok(ToolArgs::Edit {
                path: "a.py".into(),
                old: "x".into(),
                new: "y".into()
            })
        );
        assert_eq!(
            parse("list_files", ""),
            Ok(ToolArgs::ListFiles { path: "".into() })
        );
        let err = parse("delete_everything", "{}").unwrap_err();
        assert!(
            err.contains("`delete_everything`") && err.contains("write_file"),
            "{err}"
        );
        let err = parse("write_file", r#"{"path":"a"}"#).unwrap_err();
        assert!(err.contains("missing field `content`"), "{err}");
        assert_eq!(specs().len(), NAMES.len());
    }

    #[test]
    fn cutting_keeps_head_and_tail_on_char_boundaries() {
        let text = format!("{}é{}", "a".repeat(10), "b".repeat(10));
        let out = cut(&text, 8);
        assert!(out.starts_with("aaaa") && out.ends_with("bbbb"), "{out}");
        assert!(out.contains("bytes cut"));
        assert_eq!(cut("short", 8), "short");
    }
}

//! Reading tasks from files: a Markdown checklist, JSON Lines, or the JSON that
//! `gh issue list --json number,title,body,labels` prints. Everything is parsed before anything
//! is stored, so a bad line imports nothing; errors name the line and the field.

use serde::Deserialize;

use crate::store::NewTask;

/// A file that cannot be imported: where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    #[error("{file}:{line}: {reason}")]
    Line {
        file: String,
        line: usize,
        reason: String,
    },
    #[error("{file}: {reason}")]
    File { file: String, reason: String },
}

/// The formats `gaffer task import` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportFormat {
    /// `- [ ] title` items; indented lines below an item are its body; checked items are done.
    Markdown,
    /// One JSON object per line: `title` (required), `body`, `labels`, `paths`.
    JsonLines,
    /// A JSON array from `gh issue list --json number,title,body,labels`.
    GitHub,
}

impl ImportFormat {
    /// Guess from the file name and its first non-blank character.
    pub fn detect(file: &str, text: &str) -> ImportFormat {
        if file.ends_with(".md") || file.ends_with(".markdown") {
            return ImportFormat::Markdown;
        }
        match text.trim_start().chars().next() {
            Some('[') => ImportFormat::GitHub,
            Some('{') => ImportFormat::JsonLines,
            _ => ImportFormat::Markdown,
        }
    }
}

/// Parse `text` (from `file`, for messages) in `format`.
pub fn parse(file: &str, text: &str, format: ImportFormat) -> Result<Vec<NewTask>, ImportError> {
    let tasks = match format {
        ImportFormat::Markdown => markdown(file, text)?,
        ImportFormat::JsonLines => json_lines(file, text)?,
        ImportFormat::GitHub => github(file, text)?,
    };
    if tasks.is_empty() {
        return Err(ImportError::File {
            file: file.to_string(),
            reason: "no tasks found (an unchecked `- [ ] ...` item, a JSON line with a `title`, or a gh issue list)".to_string(),
        });
    }
    Ok(tasks)
}

fn markdown(file: &str, text: &str) -> Result<Vec<NewTask>, ImportError> {
    let mut tasks: Vec<NewTask> = Vec::new();
    // Whether the indented lines that follow belong to the last unchecked item.
    let mut open = false;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_end();
        let trimmed = line.trim_start();
        let indented = line.len() > trimmed.len();
        let item = trimmed
            .strip_prefix("- [")
            .or_else(|| trimmed.strip_prefix("* ["));
        match item {
            Some(rest) if !indented => {
                let (mark, title) = match rest.split_once(']') {
                    Some(parts) => parts,
                    None => {
                        return Err(ImportError::Line {
                            file: file.to_string(),
                            line: i + 1,
                            reason: "a checklist item needs `- [ ] title`".to_string(),
                        });
                    }
                };
                let title = title.trim();
                match mark.trim() {
                    "" => {
                        if title.is_empty() {
                            return Err(ImportError::Line {
                                file: file.to_string(),
                                line: i + 1,
                                reason: "`title` is empty".to_string(),
                            });
                        }
                        tasks.push(NewTask {
                            title: title.to_string(),
                            source: Some(format!("{file}:{}", i + 1)),
                            ..NewTask::default()
                        });
                        open = true;
                    }
                    "x" | "X" => open = false,
                    other => {
                        return Err(ImportError::Line {
                            file: file.to_string(),
                            line: i + 1,
                            reason: format!("`[{other}]` is not `[ ]` or `[x]`"),
                        });
                    }
                }
            }
            _ if open && (indented || trimmed.is_empty()) => {
                if let Some(task) = tasks.last_mut()
                    && (!task.body.is_empty() || !trimmed.is_empty())
                {
                    task.body.push_str(trimmed);
                    task.body.push('\n');
                }
            }
            _ => open = false,
        }
    }
    for task in &mut tasks {
        task.body = task.body.trim_end().to_string();
    }
    Ok(tasks)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonTask {
    title: String,
    #[serde(default)]
    body: String,
    #[serde(default)]
    labels: Vec<String>,
    #[serde(default)]
    paths: Vec<String>,
}

fn json_lines(file: &str, text: &str) -> Result<Vec<NewTask>, ImportError> {
    let mut tasks = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let task: JsonTask = serde_json::from_str(line).map_err(|e| ImportError::Line {
            file: file.to_string(),
            line: i + 1,
            // serde counts lines within the one line parsed: only its column says anything.
            reason: e.to_string().replace(" at line 1 column ", " at column "),
        })?;
        if task.title.trim().is_empty() {
            return Err(ImportError::Line {
                file: file.to_string(),
                line: i + 1,
                reason: "`title` is empty".to_string(),
            });
        }
        tasks.push(NewTask {
            title: task.title.trim().to_string(),
            body: task.body,
            labels: task.labels,
            paths: task.paths,
            source: Some(format!("{file}:{}", i + 1)),
        });
    }
    Ok(tasks)
}

#[derive(Deserialize)]
struct GhIssue {
    number: u64,
    title: String,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    labels: Vec<GhLabel>,
}

#[derive(Deserialize)]
struct GhLabel {
    name: String,
}

fn github(file: &str, text: &str) -> Result<Vec<NewTask>, ImportError> {
    let issues: Vec<GhIssue> = serde_json::from_str(text).map_err(|e| ImportError::Line {
        file: file.to_string(),
        line: e.line(),
        reason: format!("not the JSON of `gh issue list --json number,title,body,labels`: {e}"),
    })?;
    Ok(issues
        .into_iter()
        .map(|issue| NewTask {
            title: issue.title,
            body: issue.body.unwrap_or_default(),
            labels: issue.labels.into_iter().map(|l| l.name).collect(),
            paths: vec![],
            source: Some(format!("gh#{}", issue.number)),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_checklists_with_bodies() {
        let text = "# Backlog\n\n- [ ] Fix pagination\n  The last page drops an item.\n  See src/api.rs.\n- [x] Done already\n  ignored body\n- [ ] Add a CLI flag\n\nNot a task.\n";
        let tasks = parse("todo.md", text, ImportFormat::Markdown).unwrap();
        assert_eq!(tasks.len(), 2);
        assert_eq!(tasks[0].title, "Fix pagination");
        assert_eq!(
            tasks[0].body,
            "The last page drops an item.\nSee src/api.rs."
        );
        assert_eq!(tasks[0].source.as_deref(), Some("todo.md:3"));
        assert_eq!(
            (tasks[1].title.as_str(), tasks[1].body.as_str()),
            ("Add a CLI flag", "")
        );
    }

    #[test]
    fn json_lines_name_the_line_and_field_at_fault() {
        let ok =
            "{\"title\": \"a\", \"labels\": [\"bug\"]}\n\n{\"title\": \"b\", \"body\": \"x\"}\n";
        let tasks = parse("t.jsonl", ok, ImportFormat::JsonLines).unwrap();
        assert_eq!(
            (tasks.len(), tasks[0].labels.clone()),
            (2, vec!["bug".to_string()])
        );
        let missing = "{\"title\": \"a\"}\n{\"body\": \"no title\"}\n";
        let err = parse("t.jsonl", missing, ImportFormat::JsonLines)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("t.jsonl:2: missing field `title`"), "{err}");
        let typo = "{\"title\": \"a\", \"lables\": []}\n";
        let err = parse("t.jsonl", typo, ImportFormat::JsonLines)
            .unwrap_err()
            .to_string();
        assert!(err.contains("t.jsonl:1: unknown field `lables`"), "{err}");
        let wrong_type = "{\"title\": \"a\", \"labels\": \"bug\"}\n";
        assert!(
            parse("t.jsonl", wrong_type, ImportFormat::JsonLines)
                .unwrap_err()
                .to_string()
                .starts_with("t.jsonl:1:")
        );
    }

    #[test]
    fn gh_issue_list_json() {
        let text = r#"[{"number": 42, "title": "Crash on empty input", "body": "Steps...", "labels": [{"name": "bug"}, {"name": "p1"}]},
                      {"number": 43, "title": "Docs", "body": null, "labels": []}]"#;
        let tasks = parse("issues.json", text, ImportFormat::GitHub).unwrap();
        assert_eq!(tasks[0].source.as_deref(), Some("gh#42"));
        assert_eq!(tasks[0].labels, ["bug", "p1"]);
        assert_eq!(tasks[1].body, "");
        assert!(parse("issues.json", "[{\"title\": 1}]", ImportFormat::GitHub).is_err());
    }

    #[test]
    fn formats_are_detected_and_empty_files_refused() {
        assert_eq!(ImportFormat::detect("a.md", "{"), ImportFormat::Markdown);
        assert_eq!(ImportFormat::detect("a.json", " [ {"), ImportFormat::GitHub);
        assert_eq!(
            ImportFormat::detect("a.jsonl", "{\"title\":1}"),
            ImportFormat::JsonLines
        );
        assert!(matches!(
            parse("a.md", "nothing here", ImportFormat::Markdown),
            Err(ImportError::File { .. })
        ));
        assert!(matches!(
            parse("a.md", "- [?] odd", ImportFormat::Markdown),
            Err(ImportError::Line { line: 1, .. })
        ));
    }
}

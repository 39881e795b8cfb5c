//! A gaffer hook: keep the agent's hands off protected paths (secrets, keys, `.git`), and turn
//! a force push into a safer `--force-with-lease`.
//!
//! - **pre-tool**: a `write_file` or `edit` of a protected path is denied; a `run_command`
//!   with `git push --force` (or `-f`) is rewritten to `--force-with-lease`; the rest is allowed.
//! - **on-edit**: an edit of a protected path is denied, with a finding.
//! - **on-diff**: one finding per changed file whose path (or path before a rename) is
//!   protected; a change with none is allowed.
//!
//! A pattern without `/` matches a file or directory name anywhere (`.env` matches
//! `config/.env`); a pattern with `/` matches from the repository root (`secrets/` matches
//! everything under `secrets`). `*` stands for any characters within one name.
//!
//! Config (the `config` table of the `[[plugins.hooks]]` entry in gaffer.toml):
//!
//! | field | default | meaning |
//! |---|---|---|
//! | `protected` | `[".env", ".env.*", "*.pem", ".git/"]` | path patterns the agent may not write |

/// What wit-bindgen makes of `wit/`: `Guest` (the trait the plugin implements), the world's
/// own types (`ToolCall`, ...), the other types under `gaffer::plugin::types`, the host
/// functions under `gaffer::plugin::host`, and `export!`.
mod bindings {
    // The generated glue passes a record's fields one by one.
    #![allow(clippy::too_many_arguments)]
    wit_bindgen::generate!({ path: "wit", world: "hook" });
}

use bindings::gaffer::plugin::host;
use bindings::gaffer::plugin::types::Finding;
use bindings::{Diff, FileEdit, Guest, HookDecision, RuleDecision, Task, ToolCall};

/// Protected patterns when the config gives none.
const DEFAULT_PROTECTED: [&str; 4] = [".env", ".env.*", "*.pem", ".git/"];

/// Tools that write a file named by their `path` argument.
const WRITE_TOOLS: [&str; 2] = ["write_file", "edit"];

struct Plugin;

impl Guest for Plugin {
    fn pre_tool(_task: Task, call: ToolCall) -> Result<HookDecision, String> {
        let protected = protected_from_config(&host::config())?;
        let arguments = serde_json::from_str::<serde_json::Value>(&call.arguments).ok();
        if call.name == "run_command" {
            if let Some(rewritten) = arguments.and_then(safer_push) {
                return Ok(HookDecision::Rewrite(rewritten));
            }
            return Ok(HookDecision::Allow);
        }
        if !WRITE_TOOLS.contains(&call.name.as_str()) {
            return Ok(HookDecision::Allow);
        }
        // Fail closed: a write whose path cannot be read is denied.
        let Some(path) = arguments
            .as_ref()
            .and_then(|a| a.get("path"))
            .and_then(|p| p.as_str())
        else {
            return Ok(HookDecision::Deny(format!(
                "`{}` needs a JSON object with a `path` argument; call it again with one",
                call.name
            )));
        };
        Ok(match why_protected(&protected, path) {
            Some(reason) => HookDecision::Deny(reason),
            None => HookDecision::Allow,
        })
    }

    fn on_edit(_task: Task, edit: FileEdit) -> Result<RuleDecision, String> {
        let protected = protected_from_config(&host::config())?;
        Ok(match why_protected(&protected, &edit.path) {
            Some(message) => RuleDecision::Deny(vec![Finding {
                message,
                path: Some(edit.path),
                line: None,
            }]),
            None => RuleDecision::Allow,
        })
    }

    fn on_diff(_task: Task, diff: Diff) -> Result<RuleDecision, String> {
        let protected = protected_from_config(&host::config())?;
        let mut findings = Vec::new();
        for file in diff.files {
            let reason = why_protected(&protected, &file.path).or_else(|| {
                file.old_path
                    .as_deref()
                    .and_then(|old| why_protected(&protected, old))
            });
            if let Some(message) = reason {
                findings.push(Finding {
                    message,
                    path: Some(file.path),
                    line: None,
                });
            }
        }
        Ok(if findings.is_empty() {
            RuleDecision::Allow
        } else {
            RuleDecision::Deny(findings)
        })
    }
}

/// The arguments of a `run_command` with `git push --force` (or `-f`) made safer, if it is one.
fn safer_push(mut arguments: serde_json::Value) -> Option<String> {
    let command = arguments.get("command")?.as_str()?;
    let words: Vec<&str> = command.split_whitespace().collect();
    let pushes = words.windows(2).any(|w| w == ["git", "push"]);
    if !pushes || !words.iter().any(|w| *w == "--force" || *w == "-f") {
        return None;
    }
    let safer: Vec<&str> = words
        .iter()
        .map(|w| match *w {
            "--force" | "-f" => "--force-with-lease",
            other => other,
        })
        .collect();
    arguments["command"] = serde_json::Value::String(safer.join(" "));
    Some(arguments.to_string())
}

/// Why `path` may not be written, if it may not.
fn why_protected(protected: &[String], path: &str) -> Option<String> {
    let names = normalize(path);
    let pattern = protected.iter().find(|p| matches(p, &names))?;
    Some(format!(
        "`{}` is protected (matches `{pattern}`): change it by hand, not through the agent",
        names.join("/")
    ))
}

/// The names of a relative path, with `.`, `..` and empty names resolved.
fn normalize(path: &str) -> Vec<&str> {
    let mut names = Vec::new();
    for name in path.split(['/', '\\']) {
        match name {
            "" | "." => {}
            ".." => {
                names.pop();
            }
            name => names.push(name),
        }
    }
    names
}

/// Whether a pattern matches a path given by its names.
fn matches(pattern: &str, names: &[&str]) -> bool {
    if !pattern.contains('/') {
        return names.iter().any(|name| wildcard(pattern, name));
    }
    let parts: Vec<&str> = pattern.split('/').filter(|p| !p.is_empty()).collect();
    !parts.is_empty()
        && parts.len() <= names.len()
        && parts.iter().zip(names).all(|(p, name)| wildcard(p, name))
}

/// Whether `name` matches `pattern`, where `*` stands for any run of characters.
fn wildcard(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let s: Vec<char> = name.chars().collect();
    let (mut pi, mut si) = (0, 0);
    // Where the last `*` was, and where in `name` its match ends so far.
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some((pi, si));
            pi += 1;
        } else if pi < p.len() && p[pi] == s[si] {
            pi += 1;
            si += 1;
        } else if let Some((star_pi, star_si)) = star {
            pi = star_pi + 1;
            si = star_si + 1;
            star = Some((star_pi, star_si + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// `protected` from the config JSON (an object, `{}` when gaffer.toml gives none).
fn protected_from_config(text: &str) -> Result<Vec<String>, String> {
    let config: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("invalid config: {e}"))?;
    let Some(value) = config.get("protected") else {
        return Ok(DEFAULT_PROTECTED.map(String::from).to_vec());
    };
    let invalid = || format!("invalid config: `protected` must be a list of strings, not {value}");
    value
        .as_array()
        .ok_or_else(invalid)?
        .iter()
        .map(|item| item.as_str().map(String::from).ok_or_else(invalid))
        .collect()
}

bindings::export!(Plugin with_types_in bindings);

//! `protected-paths`: a hook that keeps the agent's hands off secrets, migrations and `.git`.
//!
//! - **pre-tool**: a call to one of `write_tools` is denied when its path argument matches a
//!   protected glob. The path is read from `path` (also `file_path`, `paths`, `old_path`,
//!   `new_path`, `from`, `to` when present). A write call whose arguments are not a JSON object,
//!   or that names no path at all, is denied too: the hook fails closed. Other tools are allowed
//!   (a write through `run_command` is caught by on-diff).
//! - **on-edit**: an edit of a protected path is denied.
//! - **on-diff**: one finding per changed file whose path (or path before a rename) is protected.
//!
//! Paths are normalised lexically (`a/./b`, `a/../b`, a leading `/`) before matching, and globs
//! follow [`gaffer_sdk::glob`]: a pattern without `/` matches a name anywhere.
//!
//! Config (every field optional):
//!
//! | field | default |
//! |---|---|
//! | `globs` | `[".env", ".env.*", "**/migrations/**", ".git/**"]` |
//! | `write_tools` | `["write_file", "edit", "delete_file"]` |

use gaffer_sdk::glob;
use gaffer_sdk::host;
use gaffer_sdk::paths::normalize;
use gaffer_sdk::types::{Diff, FileEdit, Finding, HookDecision, RuleDecision, Task, ToolCall};
use serde::Deserialize;

/// The hook.
pub struct ProtectedPaths;

/// The hook's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Protected path globs.
    pub globs: Vec<String>,
    /// Tools that write files and carry a path argument.
    pub write_tools: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            globs: [".env", ".env.*", "**/migrations/**", ".git/**"]
                .into_iter()
                .map(String::from)
                .collect(),
            write_tools: ["write_file", "edit", "delete_file"]
                .into_iter()
                .map(String::from)
                .collect(),
        }
    }
}

/// Argument keys that carry a path, in the order they are checked.
const PATH_KEYS: [&str; 7] = [
    "path",
    "file_path",
    "paths",
    "old_path",
    "new_path",
    "from",
    "to",
];

impl gaffer_sdk::Hook for ProtectedPaths {
    fn pre_tool(_task: Task, call: ToolCall) -> Result<HookDecision, String> {
        let config: Config = host::config()?;
        Ok(pre_tool_with(&config, &call))
    }

    fn on_edit(_task: Task, edit: FileEdit) -> Result<RuleDecision, String> {
        let config: Config = host::config()?;
        Ok(on_edit_with(&config, &edit))
    }

    fn on_diff(_task: Task, diff: Diff) -> Result<RuleDecision, String> {
        let config: Config = host::config()?;
        Ok(on_diff_with(&config, &diff))
    }
}

gaffer_sdk::export_hook!(ProtectedPaths);

/// pre-tool with an explicit config.
pub fn pre_tool_with(config: &Config, call: &ToolCall) -> HookDecision {
    if !config.write_tools.contains(&call.name) {
        return HookDecision::Allow;
    }
    let tool = &call.name;
    let arguments = match serde_json::from_str::<serde_json::Value>(&call.arguments) {
        Ok(serde_json::Value::Object(map)) => map,
        Ok(_) => {
            return HookDecision::Deny(format!(
                "the arguments of `{tool}` are not a JSON object, so its path cannot be checked \
                 against the protected paths; call it again with a JSON object"
            ));
        }
        Err(e) => {
            return HookDecision::Deny(format!(
                "the arguments of `{tool}` are not valid JSON ({e}), so its path cannot be \
                 checked against the protected paths; call it again with a JSON object"
            ));
        }
    };
    let mut paths: Vec<&str> = Vec::new();
    for key in PATH_KEYS {
        match arguments.get(key) {
            Some(serde_json::Value::String(p)) => paths.push(p),
            Some(serde_json::Value::Array(items)) => {
                paths.extend(items.iter().filter_map(serde_json::Value::as_str));
            }
            _ => {}
        }
    }
    if paths.is_empty() {
        return HookDecision::Deny(format!(
            "`{tool}` was called without a `path` argument, so it cannot be checked against \
             the protected paths; call it again with `path`"
        ));
    }
    for path in paths {
        if let Some(reason) = protected(config, path) {
            return HookDecision::Deny(reason);
        }
    }
    HookDecision::Allow
}

/// on-edit with an explicit config.
pub fn on_edit_with(config: &Config, edit: &FileEdit) -> RuleDecision {
    match protected(config, &edit.path) {
        Some(message) => RuleDecision::Deny(vec![Finding {
            message,
            path: Some(edit.path.clone()),
            line: None,
        }]),
        None => RuleDecision::Allow,
    }
}

/// on-diff with an explicit config.
pub fn on_diff_with(config: &Config, diff: &Diff) -> RuleDecision {
    let mut findings = Vec::new();
    for file in &diff.files {
        let message = match protected(config, &file.path) {
            Some(message) => Some(message),
            None => file.old_path.as_deref().and_then(|old| {
                protected(config, old).map(|m| format!("{m} (renamed to `{}`)", file.path))
            }),
        };
        if let Some(message) = message {
            findings.push(Finding {
                message,
                path: Some(file.path.clone()),
                line: None,
            });
        }
    }
    if findings.is_empty() {
        RuleDecision::Allow
    } else {
        RuleDecision::Deny(findings)
    }
}

/// The reason `path` is protected, if it is.
fn protected(config: &Config, path: &str) -> Option<String> {
    let normalized = normalize(path);
    let pattern = glob::first_match(&config.globs, &normalized)?;
    Some(format!(
        "`{normalized}` is protected (matches `{pattern}`); change it by hand or ask a person"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use gaffer_sdk::Hook;
    use gaffer_sdk::testing::{MockGuard, MockHost, added_file, diff, unified_diff};
    use serde_json::json;

    fn task() -> Task {
        Task {
            id: "T-3".into(),
            title: "Rotate keys".into(),
            body: String::new(),
            labels: vec![],
            paths: vec![],
        }
    }

    fn call(name: &str, arguments: &str) -> ToolCall {
        ToolCall {
            name: name.into(),
            arguments: arguments.into(),
        }
    }

    fn host(config: serde_json::Value) -> MockGuard {
        MockHost::new().config(config).install()
    }

    fn deny(reason: &str) -> Result<HookDecision, String> {
        Ok(HookDecision::Deny(reason.to_string()))
    }

    #[test]
    fn writes_to_protected_paths_are_denied() {
        let _h = host(json!({}));
        assert_eq!(
            ProtectedPaths::pre_tool(
                task(),
                call("write_file", r#"{"path":"config/.env","content":"K=1"}"#)
            ),
            deny("`config/.env` is protected (matches `.env`); change it by hand or ask a person")
        );
        assert_eq!(
            ProtectedPaths::pre_tool(task(), call("edit", r#"{"path":".env.production"}"#)),
            deny(
                "`.env.production` is protected (matches `.env.*`); change it by hand or ask a person"
            )
        );
        assert_eq!(
            ProtectedPaths::pre_tool(
                task(),
                call("delete_file", r#"{"path":"db/migrations/0001_init.sql"}"#)
            ),
            deny(
                "`db/migrations/0001_init.sql` is protected (matches `**/migrations/**`); \
                 change it by hand or ask a person"
            )
        );
        assert_eq!(
            ProtectedPaths::pre_tool(
                task(),
                call("write_file", r#"{"path":".git/hooks/pre-commit"}"#)
            ),
            deny(
                "`.git/hooks/pre-commit` is protected (matches `.git/**`); change it by hand or ask a person"
            )
        );
    }

    #[test]
    fn path_tricks_are_normalised() {
        let _h = host(json!({}));
        assert_eq!(
            ProtectedPaths::pre_tool(task(), call("write_file", r#"{"path":"./src/../.env"}"#)),
            deny("`.env` is protected (matches `.env`); change it by hand or ask a person")
        );
        assert_eq!(
            ProtectedPaths::pre_tool(task(), call("write_file", r#"{"path":"/work//tree/.env"}"#)),
            deny(
                "`work/tree/.env` is protected (matches `.env`); change it by hand or ask a person"
            )
        );
        assert_eq!(
            ProtectedPaths::pre_tool(
                task(),
                call("write_file", r#"{"path":"a/.git/../../.git/config"}"#)
            ),
            deny(
                "`.git/config` is protected (matches `.git/**`); change it by hand or ask a person"
            )
        );
    }

    #[test]
    fn other_path_keys_are_checked_too() {
        let _h = host(json!({ "write_tools": ["write_file", "move_file", "Edit"] }));
        assert_eq!(
            ProtectedPaths::pre_tool(
                task(),
                call("move_file", r#"{"from":"a.txt","to":"keys/.env"}"#)
            ),
            deny("`keys/.env` is protected (matches `.env`); change it by hand or ask a person")
        );
        assert_eq!(
            ProtectedPaths::pre_tool(task(), call("Edit", r#"{"file_path":".env"}"#)),
            deny("`.env` is protected (matches `.env`); change it by hand or ask a person")
        );
        assert_eq!(
            ProtectedPaths::pre_tool(
                task(),
                call("write_file", r#"{"paths":["ok.rs",".env.local"]}"#)
            ),
            deny("`.env.local` is protected (matches `.env.*`); change it by hand or ask a person")
        );
    }

    #[test]
    fn unprotected_writes_and_other_tools_are_allowed() {
        let _h = host(json!({}));
        for c in [
            call(
                "write_file",
                r#"{"path":"src/main.rs","content":"fn main() {}"}"#,
            ),
            call("write_file", r#"{"path":"docs/env.md"}"#),
            call("write_file", r#"{"path":".envrc"}"#),
            call("write_file", r#"{"path":"src/migration.rs"}"#),
            call("write_file", r#"{"path":".github/workflows/ci.yml"}"#),
            call("read_file", r#"{"path":".env"}"#),
            call("run_command", r#"{"command":"echo K=1 > .env"}"#),
            call("read_file", "not json at all"),
        ] {
            assert_eq!(
                ProtectedPaths::pre_tool(task(), c.clone()),
                Ok(HookDecision::Allow),
                "{c:?}"
            );
        }
    }

    #[test]
    fn write_calls_that_cannot_be_checked_are_denied() {
        let _h = host(json!({}));
        let d = ProtectedPaths::pre_tool(task(), call("write_file", "{not json"));
        let Ok(HookDecision::Deny(reason)) = d else {
            panic!("{d:?}")
        };
        assert!(
            reason.starts_with(
                "the arguments of `write_file` are not valid JSON (key must be a string"
            ),
            "{reason}"
        );
        assert_eq!(
            ProtectedPaths::pre_tool(task(), call("edit", r#"["x"]"#)),
            deny(
                "the arguments of `edit` are not a JSON object, so its path cannot be checked \
                 against the protected paths; call it again with a JSON object"
            )
        );
        assert_eq!(
            ProtectedPaths::pre_tool(task(), call("write_file", r#"{"content":"x","path":7}"#)),
            deny(
                "`write_file` was called without a `path` argument, so it cannot be checked \
                 against the protected paths; call it again with `path`"
            )
        );
    }

    #[test]
    fn edits_of_protected_paths_are_denied() {
        let _h = host(json!({}));
        let edit = |path: &str| FileEdit {
            path: path.into(),
            before: Some("A=1\n".into()),
            after: Some("A=2\n".into()),
        };
        assert_eq!(
            ProtectedPaths::on_edit(task(), edit("services/api/.env")),
            Ok(RuleDecision::Deny(vec![Finding {
                message: "`services/api/.env` is protected (matches `.env`); change it by hand or ask a person"
                    .into(),
                path: Some("services/api/.env".into()),
                line: None,
            }]))
        );
        assert_eq!(
            ProtectedPaths::on_edit(task(), edit("src/env.rs")),
            Ok(RuleDecision::Allow)
        );
    }

    #[test]
    fn on_diff_reports_each_protected_file_once() {
        let _h = host(json!({}));
        let d = unified_diff(
            "diff --git a/.env.local b/settings.txt\n\
             similarity index 100%\n\
             rename from .env.local\n\
             rename to settings.txt\n\
             diff --git a/db/migrations/2_add.sql b/db/migrations/2_add.sql\n\
             new file mode 100644\n\
             --- /dev/null\n\
             +++ b/db/migrations/2_add.sql\n\
             @@ -0,0 +1 @@\n\
             +ALTER TABLE t ADD c int;\n\
             diff --git a/src/lib.rs b/src/lib.rs\n\
             --- a/src/lib.rs\n\
             +++ b/src/lib.rs\n\
             @@ -1 +1 @@\n\
             -a\n\
             +b\n",
        );
        let Ok(RuleDecision::Deny(findings)) = ProtectedPaths::on_diff(task(), d) else {
            panic!("expected a denial")
        };
        let got: Vec<(&str, Option<&str>)> = findings
            .iter()
            .map(|f| (f.message.as_str(), f.path.as_deref()))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "`.env.local` is protected (matches `.env.*`); change it by hand or ask a person \
                     (renamed to `settings.txt`)",
                    Some("settings.txt")
                ),
                (
                    "`db/migrations/2_add.sql` is protected (matches `**/migrations/**`); \
                     change it by hand or ask a person",
                    Some("db/migrations/2_add.sql")
                ),
            ]
        );
        let clean = diff(vec![added_file("src/new.rs", &["fn f() {}"])]);
        assert_eq!(
            ProtectedPaths::on_diff(task(), clean),
            Ok(RuleDecision::Allow)
        );
    }

    #[test]
    fn custom_globs_replace_the_defaults() {
        let _h = host(json!({ "globs": ["secrets/", "*.pem"] }));
        assert_eq!(
            ProtectedPaths::pre_tool(
                task(),
                call("write_file", r#"{"path":"deploy/secrets/k.txt"}"#)
            ),
            deny(
                "`deploy/secrets/k.txt` is protected (matches `secrets/`); change it by hand or ask a person"
            )
        );
        assert_eq!(
            ProtectedPaths::pre_tool(task(), call("write_file", r#"{"path":"tls/server.pem"}"#)),
            deny(
                "`tls/server.pem` is protected (matches `*.pem`); change it by hand or ask a person"
            )
        );
        assert_eq!(
            ProtectedPaths::pre_tool(task(), call("write_file", r#"{"path":".env"}"#)),
            Ok(HookDecision::Allow)
        );
    }

    #[test]
    fn invalid_config_names_the_field() {
        let _h = host(json!({ "globs": ".env" }));
        let err = ProtectedPaths::pre_tool(task(), call("write_file", "{}")).unwrap_err();
        assert!(
            err.starts_with("invalid config: `globs`: invalid type: string"),
            "{err}"
        );
        let _h = host(json!({ "write_tools": [1] }));
        let err = ProtectedPaths::on_edit(
            task(),
            FileEdit {
                path: "a".into(),
                before: None,
                after: None,
            },
        )
        .unwrap_err();
        assert!(
            err.starts_with("invalid config: `write_tools[0]`:"),
            "{err}"
        );
    }
}

//! `file-size`: a hook that keeps files under a maximum number of lines.
//!
//! - **pre-tool**: a `write_file` call whose `content` has more than `max_lines` lines is
//!   denied (unless the file is already at least that long: see below).
//! - **on-edit**: an edit whose `after` content is too long is denied, with a finding at line
//!   `max_lines + 1`.
//! - **on-diff**: each added, modified or renamed file is measured in the worktree with
//!   `host::read_file` (needs `grants.files = true`). Without the grant the hook falls back to
//!   the highest new line number in the file's hunks, a lower bound, and says so when that
//!   bound alone exceeds the limit.
//!
//! A file that was already over the limit may still be changed as long as it does not grow, so
//! that legacy files can be worked on: the rule is a ratchet.
//!
//! Config (every field optional):
//!
//! | field | default |
//! |---|---|
//! | `max_lines` | 400 |
//! | `include` | `["**"]` |
//! | `exclude` | `["**/*.lock", "**/package-lock.json"]` |

use gaffer_sdk::glob;
use gaffer_sdk::host::{self, HostError};
use gaffer_sdk::types::{
    Diff, FileDiff, FileEdit, FileStatus, Finding, HookDecision, RuleDecision, Task, ToolCall,
};
use serde::Deserialize;

/// The hook.
pub struct FileSize;

/// The hook's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Most lines a file may have.
    pub max_lines: u32,
    /// Globs of the files the rule applies to.
    pub include: Vec<String>,
    /// Globs of files exempt from the rule (checked after `include`).
    pub exclude: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_lines: 400,
            include: vec!["**".to_string()],
            exclude: vec!["**/*.lock".to_string(), "**/package-lock.json".to_string()],
        }
    }
}

impl Config {
    fn load() -> Result<Config, String> {
        let config: Config = host::config()?;
        if config.max_lines == 0 {
            return Err("invalid config: `max_lines` must be at least 1".to_string());
        }
        Ok(config)
    }

    /// Whether the rule applies to `path`.
    pub fn applies_to(&self, path: &str) -> bool {
        glob::matches_any(&self.include, path) && !glob::matches_any(&self.exclude, path)
    }
}

impl gaffer_sdk::Hook for FileSize {
    fn pre_tool(_task: Task, call: ToolCall) -> Result<HookDecision, String> {
        Ok(pre_tool_with(&Config::load()?, &call))
    }

    fn on_edit(_task: Task, edit: FileEdit) -> Result<RuleDecision, String> {
        Ok(on_edit_with(&Config::load()?, &edit))
    }

    fn on_diff(_task: Task, diff: Diff) -> Result<RuleDecision, String> {
        Ok(on_diff_with(&Config::load()?, &diff))
    }
}

gaffer_sdk::export_hook!(FileSize);

/// Number of lines of `text`: a last line without a newline counts too.
pub fn count_lines(text: &str) -> u32 {
    let newlines = text.bytes().filter(|&b| b == b'\n').count();
    let extra = usize::from(!text.is_empty() && !text.ends_with('\n'));
    u32::try_from(newlines + extra).unwrap_or(u32::MAX)
}

fn too_long(path: &str, lines: u32, max: u32, verb: &str) -> String {
    format!(
        "`{path}` {verb} {lines} lines, more than the limit of {max}; \
         split it into smaller files"
    )
}

/// pre-tool with an explicit config.
pub fn pre_tool_with(config: &Config, call: &ToolCall) -> HookDecision {
    if call.name != "write_file" {
        return HookDecision::Allow;
    }
    // Arguments this hook cannot read are not its business: on-edit still judges the result.
    let Ok(serde_json::Value::Object(args)) =
        serde_json::from_str::<serde_json::Value>(&call.arguments)
    else {
        return HookDecision::Allow;
    };
    let text = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| args.get(*k).and_then(|v| v.as_str()))
    };
    let (Some(path), Some(content)) =
        (text(&["path", "file_path"]), text(&["content", "contents"]))
    else {
        return HookDecision::Allow;
    };
    if !config.applies_to(path) {
        return HookDecision::Allow;
    }
    let lines = count_lines(content);
    if lines <= config.max_lines {
        return HookDecision::Allow;
    }
    // A file that is already this long may be rewritten as long as it does not grow.
    if let Ok(current) = host::read_file(path)
        && count_lines(&current) >= lines
    {
        return HookDecision::Allow;
    }
    HookDecision::Deny(too_long(path, lines, config.max_lines, "would have"))
}

/// on-edit with an explicit config.
pub fn on_edit_with(config: &Config, edit: &FileEdit) -> RuleDecision {
    let Some(after) = &edit.after else {
        return RuleDecision::Allow; // a deletion
    };
    if !config.applies_to(&edit.path) {
        return RuleDecision::Allow;
    }
    let lines = count_lines(after);
    if lines <= config.max_lines {
        return RuleDecision::Allow;
    }
    if let Some(before) = &edit.before
        && count_lines(before) >= lines
    {
        return RuleDecision::Allow; // already this long, and not growing
    }
    RuleDecision::Deny(vec![Finding {
        message: too_long(&edit.path, lines, config.max_lines, "would have"),
        path: Some(edit.path.clone()),
        line: Some(config.max_lines.saturating_add(1)),
    }])
}

/// on-diff with an explicit config.
pub fn on_diff_with(config: &Config, diff: &Diff) -> RuleDecision {
    let findings: Vec<Finding> = diff
        .files
        .iter()
        .filter(|f| f.status != FileStatus::Deleted && !f.binary)
        .filter(|f| config.applies_to(&f.path))
        .filter_map(|f| check_file(config, f))
        .collect();
    if findings.is_empty() {
        RuleDecision::Allow
    } else {
        RuleDecision::Deny(findings)
    }
}

fn check_file(config: &Config, file: &FileDiff) -> Option<Finding> {
    let max = config.max_lines;
    let grows = file.added > file.removed || file.status == FileStatus::Added;
    let message = match host::read_file(&file.path) {
        Ok(text) => {
            let lines = count_lines(&text);
            if lines <= max || !grows {
                return None;
            }
            too_long(&file.path, lines, max, "has")
        }
        Err(err) => {
            // Without the file: the highest new line number seen is a lower bound.
            let bound = file
                .hunks
                .iter()
                .flat_map(|h| h.lines.iter())
                .filter(|l| l.kind != gaffer_sdk::types::LineKind::Removed)
                .map(|l| l.line)
                .max()
                .unwrap_or(0);
            if bound <= max || !grows {
                if !matches!(err, HostError::NotGranted(_)) {
                    host::warn(&format!(
                        "could not read `{}` to count its lines: {err}",
                        file.path
                    ));
                }
                return None;
            }
            let why = match &err {
                HostError::NotGranted(_) => {
                    "this hook may not read files; grant it `files = true` for an exact count"
                        .to_string()
                }
                other => format!(
                    "the file could not be read: {}",
                    host::describe_error(other)
                ),
            };
            format!(
                "`{}` has at least {bound} lines (the highest new line number in the diff; {why}), \
                 more than the limit of {max}; split it into smaller files",
                file.path
            )
        }
    };
    Some(Finding {
        message,
        path: Some(file.path.clone()),
        line: Some(max.saturating_add(1)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use gaffer_sdk::Hook;
    use gaffer_sdk::testing::{MockHost, added_file, diff, unified_diff};
    use serde_json::json;

    fn task() -> Task {
        Task {
            id: "T-9".into(),
            title: "Grow a file".into(),
            body: String::new(),
            labels: vec![],
            paths: vec![],
        }
    }

    fn lines(n: usize) -> String {
        (1..=n).map(|i| format!("line {i}\n")).collect()
    }

    fn write(path: &str, content: &str) -> ToolCall {
        ToolCall {
            name: "write_file".into(),
            arguments: json!({ "path": path, "content": content }).to_string(),
        }
    }

    #[test]
    fn counts_lines_like_an_editor() {
        assert_eq!(count_lines(""), 0);
        assert_eq!(count_lines("a"), 1);
        assert_eq!(count_lines("a\n"), 1);
        assert_eq!(count_lines("a\nb"), 2);
        assert_eq!(count_lines("\n\n"), 2);
    }

    #[test]
    fn pre_tool_denies_long_writes() {
        let _h = MockHost::new().config(json!({ "max_lines": 10 })).install();
        assert_eq!(
            FileSize::pre_tool(task(), write("src/a.rs", &lines(10))),
            Ok(HookDecision::Allow)
        );
        assert_eq!(
            FileSize::pre_tool(task(), write("src/a.rs", &lines(11))),
            Ok(HookDecision::Deny(
                "`src/a.rs` would have 11 lines, more than the limit of 10; split it into smaller files"
                    .into()
            ))
        );
        // Excluded by default, other tools and unreadable arguments are not this hook's business.
        assert_eq!(
            FileSize::pre_tool(task(), write("Cargo.lock", &lines(50))),
            Ok(HookDecision::Allow)
        );
        assert_eq!(
            FileSize::pre_tool(task(), write("web/package-lock.json", &lines(50))),
            Ok(HookDecision::Allow)
        );
        let other = ToolCall {
            name: "run_command".into(),
            arguments: json!({ "command": "seq 1000 > a.txt" }).to_string(),
        };
        assert_eq!(FileSize::pre_tool(task(), other), Ok(HookDecision::Allow));
        let garbled = ToolCall {
            name: "write_file".into(),
            arguments: "{".into(),
        };
        assert_eq!(FileSize::pre_tool(task(), garbled), Ok(HookDecision::Allow));
    }

    #[test]
    fn a_legacy_file_may_be_rewritten_if_it_does_not_grow() {
        let _h = MockHost::new()
            .config(json!({ "max_lines": 10 }))
            .file("src/legacy.rs", &lines(30))
            .install();
        assert_eq!(
            FileSize::pre_tool(task(), write("src/legacy.rs", &lines(25))),
            Ok(HookDecision::Allow)
        );
        assert!(matches!(
            FileSize::pre_tool(task(), write("src/legacy.rs", &lines(31))),
            Ok(HookDecision::Deny(_))
        ));
        let edit = FileEdit {
            path: "src/legacy.rs".into(),
            before: Some(lines(30)),
            after: Some(lines(29)),
        };
        assert_eq!(FileSize::on_edit(task(), edit), Ok(RuleDecision::Allow));
    }

    #[test]
    fn on_edit_denies_at_the_first_line_over_the_limit() {
        let _h = MockHost::new()
            .config(json!({ "max_lines": 400 }))
            .install();
        let edit = FileEdit {
            path: "src/big.rs".into(),
            before: Some(lines(390)),
            after: Some(lines(401)),
        };
        assert_eq!(
            FileSize::on_edit(task(), edit),
            Ok(RuleDecision::Deny(vec![Finding {
                message: "`src/big.rs` would have 401 lines, more than the limit of 400; split it into smaller files"
                    .into(),
                path: Some("src/big.rs".into()),
                line: Some(401),
            }]))
        );
        let deletion = FileEdit {
            path: "src/big.rs".into(),
            before: Some(lines(900)),
            after: None,
        };
        assert_eq!(FileSize::on_edit(task(), deletion), Ok(RuleDecision::Allow));
    }

    #[test]
    fn include_and_exclude() {
        let _h = MockHost::new()
            .config(
                json!({ "max_lines": 5, "include": ["src/**"], "exclude": ["src/generated/**"] }),
            )
            .install();
        let edit = |path: &str| FileEdit {
            path: path.into(),
            before: None,
            after: Some(lines(6)),
        };
        assert!(matches!(
            FileSize::on_edit(task(), edit("src/a.rs")),
            Ok(RuleDecision::Deny(_))
        ));
        assert_eq!(
            FileSize::on_edit(task(), edit("docs/a.md")),
            Ok(RuleDecision::Allow)
        );
        assert_eq!(
            FileSize::on_edit(task(), edit("src/generated/x.rs")),
            Ok(RuleDecision::Allow)
        );
    }

    #[test]
    fn on_diff_counts_the_worktree_file() {
        let _h = MockHost::new()
            .config(json!({ "max_lines": 10 }))
            .file("src/a.rs", &lines(12))
            .file("src/b.rs", &lines(10))
            .install();
        let d = diff(vec![
            added_file("src/a.rs", &["x"; 12]),
            added_file("src/b.rs", &["x"; 10]),
        ]);
        assert_eq!(
            FileSize::on_diff(task(), d),
            Ok(RuleDecision::Deny(vec![Finding {
                message: "`src/a.rs` has 12 lines, more than the limit of 10; split it into smaller files".into(),
                path: Some("src/a.rs".into()),
                line: Some(11),
            }]))
        );
    }

    #[test]
    fn on_diff_falls_back_to_a_lower_bound_without_the_files_grant() {
        let _h = MockHost::new()
            .config(json!({ "max_lines": 10 }))
            .files_not_granted()
            .install();
        // New lines up to 14: decisive.
        let long = unified_diff(
            "diff --git a/src/a.rs b/src/a.rs\n\
             --- a/src/a.rs\n\
             +++ b/src/a.rs\n\
             @@ -10,2 +10,5 @@\n \
              ten\n\
             +eleven\n\
             +twelve\n\
             +thirteen\n \
              fourteen\n",
        );
        assert_eq!(
            FileSize::on_diff(task(), long),
            Ok(RuleDecision::Deny(vec![Finding {
                message: "`src/a.rs` has at least 14 lines (the highest new line number in the diff; \
                          this hook may not read files; grant it `files = true` for an exact count), \
                          more than the limit of 10; split it into smaller files"
                    .into(),
                path: Some("src/a.rs".into()),
                line: Some(11),
            }]))
        );
        // New lines up to 5 prove nothing: allowed.
        let short = diff(vec![added_file("src/b.rs", &["x"; 5])]);
        assert_eq!(FileSize::on_diff(task(), short), Ok(RuleDecision::Allow));
    }

    #[test]
    fn on_diff_skips_deleted_binary_shrinking_and_excluded_files() {
        let _h = MockHost::new()
            .config(json!({ "max_lines": 3 }))
            .file("big.rs", &lines(50))
            .file("Cargo.lock", &lines(50))
            .install();
        let d = unified_diff(
            "diff --git a/gone.rs b/gone.rs\n\
             deleted file mode 100644\n\
             --- a/gone.rs\n\
             +++ /dev/null\n\
             @@ -1,5 +0,0 @@\n\
             -a\n-b\n-c\n-d\n-e\n\
             diff --git a/img.png b/img.png\n\
             Binary files a/img.png and b/img.png differ\n\
             diff --git a/big.rs b/big.rs\n\
             --- a/big.rs\n\
             +++ b/big.rs\n\
             @@ -10,2 +10,1 @@\n\
             -x\n\
             -y\n\
             +z\n\
             diff --git a/Cargo.lock b/Cargo.lock\n\
             --- a/Cargo.lock\n\
             +++ b/Cargo.lock\n\
             @@ -1 +1,2 @@\n\
             +x\n \
              y\n",
        );
        assert_eq!(FileSize::on_diff(task(), d), Ok(RuleDecision::Allow));
    }

    #[test]
    fn invalid_config_names_the_field() {
        let _h = MockHost::new()
            .config(json!({ "max_lines": "many" }))
            .install();
        let err = FileSize::pre_tool(task(), write("a", "b")).unwrap_err();
        assert!(
            err.starts_with("invalid config: `max_lines`: invalid type: string"),
            "{err}"
        );
        let _h = MockHost::new().config(json!({ "max_lines": 0 })).install();
        assert_eq!(
            FileSize::on_diff(task(), diff(vec![])),
            Err("invalid config: `max_lines` must be at least 1".into())
        );
        let _h = MockHost::new()
            .config(json!({ "exclude": [true] }))
            .install();
        let err = FileSize::on_diff(task(), diff(vec![])).unwrap_err();
        assert!(err.starts_with("invalid config: `exclude[0]`:"), "{err}");
    }
}

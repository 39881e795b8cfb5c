//! `layer-rules`: a hook that denies imports across forbidden architectural layers.
//!
//! A file belongs to the first layer whose `paths` globs match it. Each import in the file is
//! parsed (Rust, Python, TypeScript/JavaScript) and resolved to candidate repository paths
//! (`crate::infrastructure::db` → `src/infrastructure/db.rs`, `../infra/db` →
//! `src/infra/db.ts`, `from ..infra import db` → `app/infra/db.py`, ...): the most specific
//! candidate that matches a layer's `paths` names the imported layer. The import's module
//! string as written is also matched against each layer's `modules` prefixes, for packages
//! outside the repository (`sqlx`, `requests`, `@prisma/client`). An import of layer `to` from
//! a file of layer `from` is a finding when `{ from, to }` is in `forbid`.
//!
//! - **on-edit** checks the `after` content and reports the violations that the edit
//!   introduces (a violation already present in `before` is not reported again).
//! - **on-diff** checks the added lines of each file, reading the whole file with
//!   `host::read_file` when granted (so multi-line imports resolve) and otherwise parsing each
//!   hunk's visible lines.
//! - **pre-tool** allows: on-edit runs before every file change anyway.
//!
//! Config:
//!
//! ```json
//! {
//!   "layers": [
//!     { "name": "domain", "paths": ["src/domain/**"] },
//!     { "name": "infrastructure", "paths": ["src/infrastructure/**"], "modules": ["sqlx", "reqwest"] }
//!   ],
//!   "forbid": [{ "from": "domain", "to": "infrastructure" }],
//!   "rust_root": "src",
//!   "python_roots": ["", "src"]
//! }
//! ```
//!
//! `layers` and `forbid` default to empty (nothing is forbidden); `rust_root` (where
//! `crate::` points for files outside a `…/src/` directory) defaults to `"src"`;
//! `python_roots` (where absolute Python modules live) to `["", "src"]`.

mod js;
mod paths;
mod python;
mod rust;

use gaffer_sdk::glob;
use gaffer_sdk::host;
use gaffer_sdk::types::{Diff, FileEdit, FileStatus, Finding, LineKind, RuleDecision, Task};
use serde::Deserialize;

/// The hook.
pub struct LayerRules;

/// One architectural layer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layer {
    /// Its name, used in `forbid`.
    pub name: String,
    /// Globs of the repository paths that belong to it.
    #[serde(default)]
    pub paths: Vec<String>,
    /// Module prefixes that belong to it (`sqlx`, `requests`, `@prisma/client`).
    #[serde(default)]
    pub modules: Vec<String>,
}

/// A forbidden dependency: files of layer `from` may not import layer `to`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Forbid {
    /// The importing layer.
    pub from: String,
    /// The imported layer.
    pub to: String,
}

/// The hook's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The layers, in order of precedence (a file belongs to the first that matches it).
    pub layers: Vec<Layer>,
    /// Forbidden dependencies.
    pub forbid: Vec<Forbid>,
    /// Where `crate::` points for Rust files outside a `…/src/` directory.
    pub rust_root: String,
    /// Directories that absolute Python module names are relative to.
    pub python_roots: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            layers: Vec::new(),
            forbid: Vec::new(),
            rust_root: "src".to_string(),
            python_roots: vec![String::new(), "src".to_string()],
        }
    }
}

impl Config {
    /// Load from the host and validate.
    pub fn load() -> Result<Config, String> {
        let config: Config = host::config()?;
        config.validate()?;
        Ok(config)
    }

    /// Check that names are unique and that `forbid` names known layers.
    pub fn validate(&self) -> Result<(), String> {
        for (i, layer) in self.layers.iter().enumerate() {
            if layer.name.trim().is_empty() {
                return Err(format!("invalid config: `layers[{i}].name` is empty"));
            }
            if self.layers[..i].iter().any(|l| l.name == layer.name) {
                return Err(format!(
                    "invalid config: `layers[{i}].name`: layer `{}` is defined twice",
                    layer.name
                ));
            }
        }
        for (i, rule) in self.forbid.iter().enumerate() {
            for (field, name) in [("from", &rule.from), ("to", &rule.to)] {
                if self.layer_index(name).is_none() {
                    let known = self
                        .layers
                        .iter()
                        .map(|l| format!("`{}`", l.name))
                        .collect::<Vec<_>>()
                        .join(", ");
                    let known = if known.is_empty() {
                        "none are defined".to_string()
                    } else {
                        format!("known layers: {known}")
                    };
                    return Err(format!(
                        "invalid config: `forbid[{i}].{field}`: unknown layer `{name}` ({known})"
                    ));
                }
            }
        }
        Ok(())
    }

    fn layer_index(&self, name: &str) -> Option<usize> {
        self.layers.iter().position(|l| l.name == name)
    }

    /// The layer a repository path belongs to.
    pub fn layer_of(&self, path: &str) -> Option<&Layer> {
        self.layer_of_index(path).map(|i| &self.layers[i])
    }

    fn layer_of_index(&self, path: &str) -> Option<usize> {
        self.layers
            .iter()
            .position(|l| glob::matches_any(&l.paths, path))
    }

    fn forbidden(&self, from: usize, to: usize) -> bool {
        let (from, to) = (&self.layers[from].name, &self.layers[to].name);
        self.forbid.iter().any(|r| r.from == *from && r.to == *to)
    }
}

/// One import found in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Import {
    /// 1-based line (of the module specifier, or of the imported item in a grouped `use`).
    pub line: u32,
    /// The module as written (`crate::infrastructure::db`, `../infra/db`, `..infra.db`).
    pub module: String,
    /// Repository paths it may refer to, most specific first.
    pub candidates: Vec<String>,
}

/// Languages the hook can parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    /// `.rs`
    Rust,
    /// `.py`, `.pyi`
    Python,
    /// `.ts .tsx .js .jsx .mjs .cjs .mts .cts`
    Script,
}

impl Language {
    /// The language of a path, by extension.
    pub fn of(path: &str) -> Option<Language> {
        let ext = path.rsplit_once('.')?.1;
        match ext {
            "rs" => Some(Language::Rust),
            "py" | "pyi" => Some(Language::Python),
            "ts" | "tsx" | "js" | "jsx" | "mjs" | "cjs" | "mts" | "cts" => Some(Language::Script),
            _ => None,
        }
    }
}

/// The imports of `text`, a file at repository path `path`.
pub fn imports(config: &Config, path: &str, text: &str) -> Vec<Import> {
    match Language::of(path) {
        Some(Language::Rust) => rust::imports(path, text, &config.rust_root),
        Some(Language::Python) => python::imports(path, text, &config.python_roots),
        Some(Language::Script) => js::imports(path, text),
        None => Vec::new(),
    }
}

/// Whether module string `module` starts with `prefix` at a segment boundary.
fn module_matches(prefix: &str, module: &str) -> bool {
    let prefix = prefix.trim();
    if prefix.is_empty() {
        return false;
    }
    match module.strip_prefix(prefix) {
        Some("") => true,
        Some(rest) => {
            prefix.ends_with([':', '.', '/'])
                || rest.starts_with("::")
                || rest.starts_with('.')
                || rest.starts_with('/')
        }
        None => false,
    }
}

/// One forbidden import.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Violation {
    line: u32,
    module: String,
    from: usize,
    to: usize,
}

/// The forbidden imports of `text` (a file at `path`), optionally only on `lines`.
fn violations(config: &Config, path: &str, text: &str, lines: Option<&[u32]>) -> Vec<Violation> {
    let Some(from) = config.layer_of_index(path) else {
        return Vec::new();
    };
    if !config
        .forbid
        .iter()
        .any(|r| r.from == config.layers[from].name)
    {
        return Vec::new();
    }
    let mut out: Vec<Violation> = Vec::new();
    for import in imports(config, path, text) {
        if lines.is_some_and(|lines| !lines.contains(&import.line)) {
            continue;
        }
        let mut targets: Vec<usize> = Vec::new();
        if let Some(t) = import
            .candidates
            .iter()
            .find_map(|c| config.layer_of_index(c))
        {
            targets.push(t);
        }
        for (t, layer) in config.layers.iter().enumerate() {
            if !targets.contains(&t)
                && layer
                    .modules
                    .iter()
                    .any(|p| module_matches(p, &import.module))
            {
                targets.push(t);
            }
        }
        for to in targets {
            if to != from && config.forbidden(from, to) {
                let v = Violation {
                    line: import.line,
                    module: import.module.clone(),
                    from,
                    to,
                };
                if !out.contains(&v) {
                    out.push(v);
                }
            }
        }
    }
    out
}

fn finding(config: &Config, path: &str, v: &Violation) -> Finding {
    Finding {
        message: format!(
            "`{path}:{}`: layer `{}` may not import layer `{}` (`{}`)",
            v.line, config.layers[v.from].name, config.layers[v.to].name, v.module
        ),
        path: Some(path.to_string()),
        line: Some(v.line),
    }
}

fn decision(findings: Vec<Finding>) -> RuleDecision {
    if findings.is_empty() {
        RuleDecision::Allow
    } else {
        RuleDecision::Deny(findings)
    }
}

impl gaffer_sdk::Hook for LayerRules {
    fn on_edit(_task: Task, edit: FileEdit) -> Result<RuleDecision, String> {
        Ok(on_edit_with(&Config::load()?, &edit))
    }

    fn on_diff(_task: Task, diff: Diff) -> Result<RuleDecision, String> {
        Ok(on_diff_with(&Config::load()?, &diff))
    }
}

gaffer_sdk::export_hook!(LayerRules);

/// on-edit with an explicit config: the violations of `after` that `before` did not have.
pub fn on_edit_with(config: &Config, edit: &FileEdit) -> RuleDecision {
    let Some(after) = &edit.after else {
        return RuleDecision::Allow;
    };
    let mut found = violations(config, &edit.path, after, None);
    if let Some(before) = &edit.before {
        for old in violations(config, &edit.path, before, None) {
            if let Some(i) = found
                .iter()
                .position(|v| v.module == old.module && v.to == old.to)
            {
                found.remove(i);
            }
        }
    }
    decision(
        found
            .iter()
            .map(|v| finding(config, &edit.path, v))
            .collect(),
    )
}

/// on-diff with an explicit config: violations on added lines.
pub fn on_diff_with(config: &Config, diff: &Diff) -> RuleDecision {
    let mut findings = Vec::new();
    for file in &diff.files {
        if file.binary || file.status == FileStatus::Deleted || Language::of(&file.path).is_none() {
            continue;
        }
        let added: Vec<u32> = file
            .hunks
            .iter()
            .flat_map(|h| h.lines.iter())
            .filter(|l| l.kind == LineKind::Added)
            .map(|l| l.line)
            .collect();
        if added.is_empty() {
            continue;
        }
        let whole = host::read_file(&file.path)
            .ok()
            .filter(|text| matches_added_lines(text, file));
        let found = match whole {
            Some(text) => violations(config, &file.path, &text, Some(&added)),
            None => hunk_violations(config, file, &added),
        };
        findings.extend(found.iter().map(|v| finding(config, &file.path, v)));
    }
    decision(findings)
}

/// Whether the worktree file agrees with the diff's added lines (else the diff is used alone).
fn matches_added_lines(text: &str, file: &gaffer_sdk::types::FileDiff) -> bool {
    let lines: Vec<&str> = text.lines().collect();
    file.hunks
        .iter()
        .flat_map(|h| h.lines.iter())
        .filter(|l| l.kind == LineKind::Added)
        .all(|l| {
            let index = (l.line as usize).wrapping_sub(1);
            lines
                .get(index)
                .is_some_and(|t| t.trim_end_matches('\r') == l.text.trim_end_matches('\r'))
        })
}

/// Violations on added lines, parsing each hunk's new-side lines (context and added) alone.
fn hunk_violations(
    config: &Config,
    file: &gaffer_sdk::types::FileDiff,
    added: &[u32],
) -> Vec<Violation> {
    let mut out = Vec::new();
    for hunk in &file.hunks {
        let visible: Vec<_> = hunk
            .lines
            .iter()
            .filter(|l| l.kind != LineKind::Removed)
            .collect();
        if !visible.iter().any(|l| l.kind == LineKind::Added) {
            continue;
        }
        let text = visible
            .iter()
            .map(|l| l.text.as_str())
            .collect::<Vec<_>>()
            .join("\n");
        for mut v in violations(config, &file.path, &text, None) {
            let Some(line) = visible.get((v.line as usize).wrapping_sub(1)) else {
                continue;
            };
            if line.kind == LineKind::Added && added.contains(&line.line) {
                v.line = line.line;
                out.push(v);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use gaffer_sdk::Hook;
    use gaffer_sdk::testing::{MockGuard, MockHost, added_file, diff, unified_diff};
    use gaffer_sdk::types::{HookDecision, ToolCall};
    use serde_json::json;

    fn task() -> Task {
        Task {
            id: "T-5".into(),
            title: "Persist users".into(),
            body: String::new(),
            labels: vec![],
            paths: vec![],
        }
    }

    fn config() -> serde_json::Value {
        json!({
            "layers": [
                { "name": "domain", "paths": ["src/domain/**", "app/domain/**", "web/src/domain/**"] },
                { "name": "infrastructure",
                  "paths": ["src/infrastructure/**", "app/infrastructure/**", "web/src/infra/**"],
                  "modules": ["sqlx", "sqlalchemy", "@prisma/client"] },
                { "name": "api", "paths": ["src/api/**"] }
            ],
            "forbid": [
                { "from": "domain", "to": "infrastructure" },
                { "from": "domain", "to": "api" },
                { "from": "infrastructure", "to": "api" }
            ]
        })
    }

    fn host() -> MockGuard {
        MockHost::new().config(config()).install()
    }

    fn create(path: &str, text: &str) -> FileEdit {
        FileEdit {
            path: path.into(),
            before: None,
            after: Some(text.into()),
        }
    }

    fn messages(d: Result<RuleDecision, String>) -> Vec<String> {
        match d {
            Ok(RuleDecision::Deny(f)) => f.into_iter().map(|f| f.message).collect(),
            Ok(RuleDecision::Allow) => Vec::new(),
            Err(e) => panic!("unexpected error: {e}"),
        }
    }

    #[test]
    fn rust_domain_may_not_use_infrastructure() {
        let _h = host();
        let src = "use std::fmt;\n\
                   use crate::domain::order::Order;\n\
                   use crate::infrastructure::db;\n\
                   use crate::{\n    api::routes,\n    domain::Email,\n};\n\
                   use sqlx::PgPool;\n\
                   fn f() { super::super::infrastructure::cache::get(); }\n";
        let d = LayerRules::on_edit(task(), create("src/domain/user.rs", src));
        assert_eq!(
            messages(d),
            vec![
                "`src/domain/user.rs:3`: layer `domain` may not import layer `infrastructure` (`crate::infrastructure::db`)",
                "`src/domain/user.rs:5`: layer `domain` may not import layer `api` (`crate::api::routes`)",
                "`src/domain/user.rs:8`: layer `domain` may not import layer `infrastructure` (`sqlx::PgPool`)",
                "`src/domain/user.rs:9`: layer `domain` may not import layer `infrastructure` (`super::super::infrastructure::cache::get`)",
            ]
        );
    }

    #[test]
    fn findings_carry_path_and_line() {
        let _h = host();
        let d = LayerRules::on_edit(
            task(),
            create("src/domain/mod.rs", "\n\nuse super::infrastructure::db;\n"),
        );
        assert_eq!(
            d,
            Ok(RuleDecision::Deny(vec![Finding {
                message: "`src/domain/mod.rs:3`: layer `domain` may not import layer `infrastructure` (`super::infrastructure::db`)"
                    .into(),
                path: Some("src/domain/mod.rs".into()),
                line: Some(3),
            }]))
        );
    }

    #[test]
    fn allowed_directions_and_unlayered_files_pass() {
        let _h = host();
        let infra = "use crate::domain::User;\nuse sqlx::PgPool;\n";
        assert_eq!(
            LayerRules::on_edit(task(), create("src/infrastructure/repo.rs", infra)),
            Ok(RuleDecision::Allow)
        );
        let main = "use crate::infrastructure::db;\nuse crate::api;\n";
        assert_eq!(
            LayerRules::on_edit(task(), create("src/main.rs", main)),
            Ok(RuleDecision::Allow)
        );
        let readme = "use crate::infrastructure::db;";
        assert_eq!(
            LayerRules::on_edit(task(), create("src/domain/README.md", readme)),
            Ok(RuleDecision::Allow)
        );
        let deletion = FileEdit {
            path: "src/domain/x.rs".into(),
            before: Some("use sqlx::A;".into()),
            after: None,
        };
        assert_eq!(
            LayerRules::on_edit(task(), deletion),
            Ok(RuleDecision::Allow)
        );
        assert_eq!(
            LayerRules::pre_tool(
                task(),
                ToolCall {
                    name: "write_file".into(),
                    arguments: "{}".into()
                }
            ),
            Ok(HookDecision::Allow)
        );
    }

    #[test]
    fn python_imports() {
        let _h = host();
        let src = "import os\n\
                   from app.domain.order import Order\n\
                   from ..infrastructure.db import Session\n\
                   import sqlalchemy.orm as orm\n\
                   # from app.infrastructure import nothing\n\
                   from app.infrastructure import (\n    cache,\n)\n";
        let d = LayerRules::on_edit(task(), create("app/domain/user.py", src));
        assert_eq!(
            messages(d),
            vec![
                "`app/domain/user.py:3`: layer `domain` may not import layer `infrastructure` (`..infrastructure.db`)",
                "`app/domain/user.py:4`: layer `domain` may not import layer `infrastructure` (`sqlalchemy.orm`)",
                "`app/domain/user.py:6`: layer `domain` may not import layer `infrastructure` (`app.infrastructure`)",
            ]
        );
    }

    #[test]
    fn typescript_imports() {
        let _h = host();
        let src = "import { User } from './user';\n\
                   import { db } from '../infra/db';\n\
                   import type { Client } from \"@prisma/client\";\n\
                   // import { x } from '../infra/x';\n\
                   const cache = require('../infra/cache');\n\
                   export * from \"../infra\";\n";
        let d = LayerRules::on_edit(task(), create("web/src/domain/order.ts", src));
        assert_eq!(
            messages(d),
            vec![
                "`web/src/domain/order.ts:2`: layer `domain` may not import layer `infrastructure` (`../infra/db`)",
                "`web/src/domain/order.ts:3`: layer `domain` may not import layer `infrastructure` (`@prisma/client`)",
                "`web/src/domain/order.ts:5`: layer `domain` may not import layer `infrastructure` (`../infra/cache`)",
                "`web/src/domain/order.ts:6`: layer `domain` may not import layer `infrastructure` (`../infra`)",
            ]
        );
    }

    #[test]
    fn on_edit_reports_only_new_violations() {
        let _h = host();
        let before = "use crate::infrastructure::db;\n";
        let after = "use crate::infrastructure::db;\nuse crate::infrastructure::cache;\n";
        let edit = FileEdit {
            path: "src/domain/user.rs".into(),
            before: Some(before.into()),
            after: Some(after.into()),
        };
        assert_eq!(
            messages(LayerRules::on_edit(task(), edit)),
            vec![
                "`src/domain/user.rs:2`: layer `domain` may not import layer `infrastructure` (`crate::infrastructure::cache`)"
            ]
        );
    }

    #[test]
    fn on_diff_checks_added_lines_with_the_whole_file() {
        let whole = "use crate::infrastructure::old;\nuse crate::{\n    domain::Email,\n    infrastructure::db,\n};\n";
        let _h = MockHost::new()
            .config(config())
            .file("src/domain/user.rs", whole)
            .install();
        let d = unified_diff(
            "diff --git a/src/domain/user.rs b/src/domain/user.rs\n\
             --- a/src/domain/user.rs\n\
             +++ b/src/domain/user.rs\n\
             @@ -1,4 +1,5 @@\n \
              use crate::infrastructure::old;\n \
              use crate::{\n \
                 domain::Email,\n\
             +    infrastructure::db,\n \
              };\n",
        );
        assert_eq!(
            messages(LayerRules::on_diff(task(), d)),
            vec![
                "`src/domain/user.rs:4`: layer `domain` may not import layer `infrastructure` (`crate::infrastructure::db`)"
            ]
        );
    }

    #[test]
    fn on_diff_falls_back_to_hunks_without_the_files_grant() {
        let _h = MockHost::new()
            .config(config())
            .files_not_granted()
            .install();
        let d = unified_diff(
            "diff --git a/src/domain/user.rs b/src/domain/user.rs\n\
             --- a/src/domain/user.rs\n\
             +++ b/src/domain/user.rs\n\
             @@ -10,3 +10,5 @@\n \
              use crate::infrastructure::legacy;\n\
             +use crate::{\n\
             +    infrastructure::db,\n\
             +};\n \
              fn f() {}\n",
        );
        let mut all = d.clone();
        all.files.push(added_file(
            "app/domain/new.py",
            &["import os", "from app.infrastructure import db"],
        ));
        all.files.push(added_file(
            "src/domain/notes.txt",
            &["use crate::infrastructure::db;"],
        ));
        let all = diff(all.files);
        assert_eq!(
            messages(LayerRules::on_diff(task(), all)),
            vec![
                "`src/domain/user.rs:12`: layer `domain` may not import layer `infrastructure` (`crate::infrastructure::db`)",
                "`app/domain/new.py:2`: layer `domain` may not import layer `infrastructure` (`app.infrastructure`)",
            ]
        );
    }

    #[test]
    fn a_stale_worktree_file_is_not_trusted() {
        // The worktree disagrees with the diff: the hunks are used instead.
        let _h = MockHost::new()
            .config(config())
            .file("src/domain/user.rs", "fn unrelated() {}\n")
            .install();
        let d = diff(vec![added_file(
            "src/domain/user.rs",
            &["use crate::infrastructure::db;"],
        )]);
        assert_eq!(messages(LayerRules::on_diff(task(), d)).len(), 1);
    }

    #[test]
    fn parsers_survive_truncated_and_odd_input() {
        let config = Config::default();
        let samples = [
            (
                "src/a.rs",
                r###"use crate::{a::{b, c as d}, e::*};
let s = r#"x"#; let c = '\''; let l: &'a str = "é\""; b'\x00'; '\u{1F600}';
/* /* é */ */ crate::x::y(); extern crate z; fn f() -> impl Sized + use<'a> {}"###,
            ),
            (
                "a/b.py",
                r###"from ..x import (a,
 b as c)
import d.e, f \
  as g
s = '''é
''' # c
x = "\"" ; import h"###,
            ),
            (
                "src/a.tsx",
                r###"import a, {b} from './c'; export * as d from "e";
const r = /[/]é\//g; const t = `${`${require('x')}`}`; <p>it's é</p>; require('y') / 2"###,
            ),
        ];
        for (path, text) in samples {
            for (end, _) in text.char_indices() {
                let _ = imports(&config, path, &text[..end]);
            }
            assert!(!imports(&config, path, text).is_empty(), "{path}");
        }
        for path in ["x.rs", "x.py", "x.ts"] {
            for garbage in [
                "'",
                "\"",
                "r#",
                "b'",
                "`",
                "/",
                "/*",
                "\\",
                "::",
                "{",
                "}",
                "use",
                "from",
                "import",
                "'\\",
                "é'",
                "r#\"",
                "$",
                "import(",
                "export {",
                "use crate::{",
            ] {
                let _ = imports(&config, path, garbage);
            }
        }
    }

    #[test]
    fn module_prefixes_match_at_boundaries() {
        assert!(module_matches("sqlx", "sqlx"));
        assert!(module_matches("sqlx", "sqlx::PgPool"));
        assert!(module_matches("requests", "requests.adapters"));
        assert!(module_matches("@prisma/client", "@prisma/client/runtime"));
        assert!(module_matches("@prisma/", "@prisma/client"));
        assert!(!module_matches("sqlx", "sqlxmq"));
        assert!(!module_matches("", "x"));
    }

    #[test]
    fn invalid_config_names_the_field() {
        let check = |config: serde_json::Value| {
            let _h = MockHost::new().config(config).install();
            LayerRules::on_edit(task(), create("a.rs", "")).unwrap_err()
        };
        assert_eq!(
            check(json!({ "layers": [{ "name": "a" }], "forbid": [{ "from": "a", "to": "b" }] })),
            "invalid config: `forbid[0].to`: unknown layer `b` (known layers: `a`)"
        );
        assert_eq!(
            check(json!({ "layers": [{ "name": "a" }, { "name": "a" }] })),
            "invalid config: `layers[1].name`: layer `a` is defined twice"
        );
        let err = check(json!({ "layers": [{ "paths": ["x"] }] }));
        assert!(
            err.starts_with("invalid config: `layers[0]`: missing field `name`"),
            "{err}"
        );
        let err = check(json!({ "layers": [{ "name": "a", "path": ["x"] }] }));
        assert!(err.contains("unknown field `path`"), "{err}");
        let err = check(json!({ "python_roots": "src" }));
        assert!(err.starts_with("invalid config: `python_roots`:"), "{err}");
    }
}

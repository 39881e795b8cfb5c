//! Declared cases for a plugin's own CI (`gaffer plugin test FILE.wasm --cases FILE.toml`).
//! Each case is a call (built on the sample inputs of `plugin check`, with the fields a case
//! gives) and the decision expected; [`run`] loads the component and makes every call, and each
//! [`Outcome`] keeps the input, the expected and the actual decision for a failure report.
//!
//! ```toml
//! config = { globs = [".env"] }          # the plugin's config (its table in gaffer.toml)
//!
//! [[case]]
//! name = "a write to .env is denied"
//! pre_tool = { name = "write_file", arguments = '{"path": ".env", "content": "x"}' }
//! expect = "deny"                        # hooks: allow | deny | rewrite
//! reason_contains = ".env"
//!
//! [[case]]
//! name = "a rejected attempt escalates"
//! route = { labels = ["bug"], rejected = 1 }
//! expect = "mid"                         # routers: the model chosen
//!
//! [[case]]
//! name = "failing tests are rejected"
//! verify = { tests_passed = false }
//! expect = "reject"                      # verifiers: approve | reject | needs-human
//! ```

use std::io;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::output::describe_finding;
use super::types::{
    Diff, DiffLine, DiffStats, FileDiff, FileEdit, FileStatus, HookDecision, Hunk, LineKind,
    RuleDecision, ToolCall, Verdict,
};
use super::{
    CallContext, CallError, Plugin, PluginError, PluginRuntime, PluginSpec, World, samples,
};

/// Why a cases file could not be loaded or its cases not run. Each names the cases file, the
/// component or the case at fault.
#[derive(Debug, thiserror::Error)]
pub enum CasesError {
    /// The cases file could not be read.
    #[error("reading {}", path.display())]
    Read {
        /// The cases file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The cases file is not valid TOML, or not in the format of this module.
    #[error("{}", path.display())]
    Parse {
        /// The cases file.
        path: PathBuf,
        /// What the parser said, with the line.
        #[source]
        source: toml::de::Error,
    },
    /// The cases file declares no `[[case]]`.
    #[error("{}: no [[case]]", path.display())]
    NoCases {
        /// The cases file.
        path: PathBuf,
    },
    /// The `config` table cannot be handed to the plugin as JSON.
    #[error("{}: the config cannot be passed as JSON", path.display())]
    Config {
        /// The cases file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// A case gives no input, or more than one.
    #[error(
        "{}: case `{case}` must give exactly one of route, verify, pre_tool, on_edit, on_diff",
        path.display()
    )]
    Input {
        /// The cases file.
        path: PathBuf,
        /// The case's name.
        case: String,
    },
    /// The component could not be read, compiled, inspected or loaded (the error names it).
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// The component's exports match no world of gaffer:plugin.
    #[error("{}: its exports match no gaffer:plugin world", component.display())]
    NoWorld {
        /// The component.
        component: PathBuf,
    },
    /// A case's call produced no decision.
    #[error("case `{case}`")]
    Call {
        /// The cases file.
        path: PathBuf,
        /// The case's name.
        case: String,
        /// Why the call stopped.
        #[source]
        source: Box<CallError>,
    },
}

/// A cases file: the plugin's config and its cases.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CasesFile {
    /// Where the file was loaded from; errors name it.
    #[serde(skip)]
    pub path: PathBuf,
    /// The plugin's config (its `config` table in gaffer.toml); none is `{}`.
    #[serde(default)]
    pub config: Option<toml::Value>,
    /// The cases, in the file's order (`[[case]]`).
    #[serde(rename = "case", default)]
    pub cases: Vec<Case>,
}

impl CasesFile {
    /// Read and parse the cases file at `path`.
    pub fn load(path: &Path) -> Result<Self, CasesError> {
        let text = std::fs::read_to_string(path).map_err(|source| CasesError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parse the text of a cases file; `path` is where it came from. A file without a case is
    /// refused.
    pub fn parse(text: &str, path: &Path) -> Result<Self, CasesError> {
        let mut file: CasesFile = toml::from_str(text).map_err(|source| CasesError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
        file.path = path.to_path_buf();
        if file.cases.is_empty() {
            return Err(CasesError::NoCases { path: file.path });
        }
        Ok(file)
    }

    /// The plugin's config as the JSON it is given (`{}` when the file has none).
    pub fn config_json(&self) -> Result<serde_json::Value, CasesError> {
        match &self.config {
            Some(v) => serde_json::to_value(v).map_err(|source| CasesError::Config {
                path: self.path.clone(),
                source,
            }),
            None => Ok(serde_json::json!({})),
        }
    }
}

/// One case: exactly one input (a call of the plugin's world) and the decision expected.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// The case's name, as reported.
    pub name: String,
    /// A `route` call (routers).
    pub route: Option<RouteCase>,
    /// A `verify` call (verifiers).
    pub verify: Option<VerifyCase>,
    /// A `pre-tool` call (hooks).
    pub pre_tool: Option<ToolCase>,
    /// An `on-edit` call (hooks).
    pub on_edit: Option<EditCase>,
    /// An `on-diff` call (hooks).
    pub on_diff: Option<DiffCase>,
    /// The decision expected: the model chosen (routers), `approve`, `reject` or
    /// `needs-human` (verifiers), `allow`, `deny` or `rewrite` (hooks).
    pub expect: String,
    /// A text the decision's reason must contain.
    pub reason_contains: Option<String>,
}

/// The one input of a case.
#[derive(Debug, Clone, Copy)]
pub enum CaseInput<'a> {
    Route(&'a RouteCase),
    Verify(&'a VerifyCase),
    PreTool(&'a ToolCase),
    OnEdit(&'a EditCase),
    OnDiff(&'a DiffCase),
}

impl Case {
    /// The case's input, when it gives exactly one.
    pub fn input(&self) -> Option<CaseInput<'_>> {
        let mut given = [
            self.route.as_ref().map(CaseInput::Route),
            self.verify.as_ref().map(CaseInput::Verify),
            self.pre_tool.as_ref().map(CaseInput::PreTool),
            self.on_edit.as_ref().map(CaseInput::OnEdit),
            self.on_diff.as_ref().map(CaseInput::OnDiff),
        ]
        .into_iter()
        .flatten();
        match (given.next(), given.next()) {
            (Some(input), None) => Some(input),
            _ => None,
        }
    }
}

/// A `route` call: the sample request with these fields.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteCase {
    /// The task's title.
    pub title: Option<String>,
    /// The task's body.
    pub body: Option<String>,
    /// The task's labels.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Rejected attempts before this one.
    #[serde(default)]
    pub rejected: u32,
}

/// A `verify` call: the sample request with these fields.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyCase {
    /// Whether the tests passed (default: yes).
    #[serde(default = "yes")]
    pub tests_passed: bool,
    /// Files of the diff (each gets `added` lines); default: the sample diff.
    #[serde(default)]
    pub files: Vec<String>,
    /// The lines added to each file (default: one line).
    #[serde(default)]
    pub added: Vec<String>,
}

fn yes() -> bool {
    true
}

/// A `pre-tool` call.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolCase {
    /// The tool's name.
    pub name: String,
    /// Its arguments, as JSON text.
    pub arguments: String,
}

/// An `on-edit` call.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EditCase {
    /// The file edited.
    pub path: String,
    /// Its contents before (none: created).
    pub before: Option<String>,
    /// Its contents after (none: deleted).
    pub after: Option<String>,
}

/// An `on-diff` call.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiffCase {
    /// The files changed.
    pub files: Vec<String>,
    /// The lines added to each file (default: one line).
    #[serde(default)]
    pub added: Vec<String>,
}

/// A diff adding `added` (default: one line) to each of `files`.
fn diff_of(files: &[String], added: &[String]) -> Diff {
    let lines: Vec<String> = if added.is_empty() {
        vec!["changed".to_string()]
    } else {
        added.to_vec()
    };
    let files: Vec<FileDiff> = files
        .iter()
        .map(|path| FileDiff {
            path: path.clone(),
            old_path: None,
            status: FileStatus::Modified,
            binary: false,
            hunks: vec![Hunk {
                old_start: 1,
                old_lines: 0,
                new_start: 1,
                new_lines: lines.len() as u32,
                lines: lines
                    .iter()
                    .enumerate()
                    .map(|(i, text)| DiffLine {
                        kind: LineKind::Added,
                        line: i as u32 + 1,
                        text: text.clone(),
                    })
                    .collect(),
            }],
            added: lines.len() as u32,
            removed: 0,
        })
        .collect();
    Diff {
        stats: DiffStats {
            files_changed: files.len() as u32,
            lines_added: files.len() as u32 * lines.len() as u32,
            lines_removed: 0,
        },
        files,
    }
}

/// One case's outcome.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Outcome {
    /// The case's name.
    pub name: String,
    /// Whether the decision (and its reason) was the one expected.
    pub passed: bool,
    /// The decision expected, with the text its reason must contain.
    pub expected: String,
    /// The decision made.
    pub actual: String,
    /// Its reason (a hook's rewritten arguments, for `rewrite`).
    pub reason: String,
    /// The input the plugin was called with.
    pub input: String,
}

fn rule(decision: &RuleDecision) -> (String, String) {
    match decision {
        RuleDecision::Allow => ("allow".into(), String::new()),
        RuleDecision::Deny(findings) => (
            "deny".into(),
            findings
                .iter()
                .map(describe_finding)
                .collect::<Vec<_>>()
                .join("; "),
        ),
    }
}

/// Make one case's call: (the decision, its reason, the input as shown on failure).
async fn call(
    plugin: &Plugin,
    ctx: &CallContext,
    input: CaseInput<'_>,
) -> Result<(String, String, String), CallError> {
    Ok(match input {
        CaseInput::Route(r) => {
            let mut request = samples::route_request();
            if let Some(t) = &r.title {
                request.task.title = t.clone();
            }
            if let Some(b) = &r.body {
                request.task.body = b.clone();
            }
            request.task.labels = r.labels.clone();
            request.history = (1..=r.rejected)
                .map(|n| {
                    let mut a = samples::rejected_attempt();
                    a.number = n;
                    a
                })
                .collect();
            let called = plugin.route(ctx, &request).await?;
            (
                called.decision.model.clone(),
                called.decision.reason.clone(),
                format!("{request:?}"),
            )
        }
        CaseInput::Verify(v) => {
            let mut request = samples::verify_request();
            request.tests.passed = v.tests_passed;
            if !v.files.is_empty() {
                request.diff = diff_of(&v.files, &v.added);
            }
            let called = plugin.verify(ctx, &request).await?;
            let (actual, reason) = match &called.decision {
                Verdict::Approve => ("approve".to_string(), String::new()),
                Verdict::Reject(f) => (
                    "reject".to_string(),
                    f.iter()
                        .map(describe_finding)
                        .collect::<Vec<_>>()
                        .join("; "),
                ),
                Verdict::NeedsHuman(r) => ("needs-human".to_string(), r.clone()),
            };
            (actual, reason, format!("{request:?}"))
        }
        CaseInput::PreTool(t) => {
            let call = ToolCall {
                name: t.name.clone(),
                arguments: t.arguments.clone(),
            };
            let called = plugin.pre_tool(ctx, &samples::task(), &call).await?;
            let (actual, reason) = match &called.decision {
                HookDecision::Allow => ("allow".to_string(), String::new()),
                HookDecision::Deny(r) => ("deny".to_string(), r.clone()),
                HookDecision::Rewrite(a) => ("rewrite".to_string(), a.clone()),
            };
            (actual, reason, format!("{call:?}"))
        }
        CaseInput::OnEdit(e) => {
            let edit = FileEdit {
                path: e.path.clone(),
                before: e.before.clone(),
                after: e.after.clone(),
            };
            let called = plugin.on_edit(ctx, &samples::task(), &edit).await?;
            let (actual, reason) = rule(&called.decision);
            (actual, reason, format!("{edit:?}"))
        }
        CaseInput::OnDiff(d) => {
            let diff = diff_of(&d.files, &d.added);
            let called = plugin.on_diff(ctx, &samples::task(), &diff).await?;
            let (actual, reason) = rule(&called.decision);
            (actual, reason, format!("{diff:?}"))
        }
    })
}

/// Load `component` with `runtime` (as the world its exports implement, with the file's config;
/// a router falls back to the samples' `cheap` model on a fault) and run every case in order.
/// A case without exactly one input, or whose call produces no decision, stops the run.
pub async fn run(
    runtime: &PluginRuntime,
    component: &Path,
    cases: &CasesFile,
) -> Result<Vec<Outcome>, CasesError> {
    let config = cases.config_json()?;
    let info = runtime.inspect(component)?;
    let world = info.world.ok_or_else(|| CasesError::NoWorld {
        component: component.to_path_buf(),
    })?;
    let mut spec = PluginSpec::new(world, component).with_config(config);
    if world == World::Router {
        spec.fallback_model = Some("cheap".to_string());
    }
    let plugin = runtime.load(spec)?;
    let mut outcomes = Vec::with_capacity(cases.cases.len());
    for (i, case) in cases.cases.iter().enumerate() {
        let ctx = CallContext::new(format!("case-{}", i + 1), 1);
        let input = case.input().ok_or_else(|| CasesError::Input {
            path: cases.path.clone(),
            case: case.name.clone(),
        })?;
        let (actual, reason, input) =
            call(&plugin, &ctx, input)
                .await
                .map_err(|source| CasesError::Call {
                    path: cases.path.clone(),
                    case: case.name.clone(),
                    source: Box::new(source),
                })?;
        let passed = actual == case.expect
            && case
                .reason_contains
                .as_ref()
                .is_none_or(|needle| reason.contains(needle.as_str()));
        outcomes.push(Outcome {
            name: case.name.clone(),
            passed,
            expected: match &case.reason_contains {
                Some(n) => format!("{} (reason containing {n:?})", case.expect),
                None => case.expect.clone(),
            },
            actual,
            reason,
            input,
        });
    }
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<CasesFile, CasesError> {
        CasesFile::parse(text, Path::new("dir/cases.toml"))
    }

    #[test]
    fn a_file_parses_with_its_config_and_cases_in_order() {
        let file = parse(
            r#"
config = { globs = [".env"] }

[[case]]
name = "a"
pre_tool = { name = "write_file", arguments = '{}' }
expect = "deny"
reason_contains = ".env"

[[case]]
name = "b"
route = { labels = ["bug"], rejected = 1 }
expect = "mid"
"#,
        )
        .unwrap();
        assert_eq!(file.path, Path::new("dir/cases.toml"));
        assert_eq!(
            file.config_json().unwrap(),
            serde_json::json!({ "globs": [".env"] })
        );
        let names: Vec<_> = file.cases.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert!(matches!(file.cases[0].input(), Some(CaseInput::PreTool(_))));
        match file.cases[1].input() {
            Some(CaseInput::Route(r)) => assert_eq!((r.labels.len(), r.rejected), (1, 1)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn no_config_is_an_empty_object() {
        let file = parse("[[case]]\nname = \"a\"\nverify = {}\nexpect = \"approve\"\n").unwrap();
        assert_eq!(file.config_json().unwrap(), serde_json::json!({}));
        match file.cases[0].input() {
            Some(CaseInput::Verify(v)) => assert!(v.tests_passed && v.files.is_empty()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_fields_are_refused_naming_the_file() {
        for text in [
            "bogus = 1\n",
            "[[case]]\nname = \"a\"\nexpect = \"allow\"\nbogus = 1\n",
            "[[case]]\nname = \"a\"\nexpect = \"allow\"\non_diff = { files = [], x = 1 }\n",
        ] {
            let err = parse(text).unwrap_err();
            assert!(matches!(err, CasesError::Parse { .. }), "{err:?}");
            assert_eq!(err.to_string(), "dir/cases.toml");
            let cause = std::error::Error::source(&err).unwrap().to_string();
            assert!(cause.contains("unknown field"), "{cause}");
        }
    }

    #[test]
    fn a_file_without_cases_is_refused() {
        let err = parse("config = {}\n").unwrap_err();
        assert!(matches!(err, CasesError::NoCases { .. }), "{err:?}");
        assert_eq!(err.to_string(), "dir/cases.toml: no [[case]]");
    }

    #[test]
    fn a_missing_file_is_named() {
        let err = CasesFile::load(Path::new("no/such/cases.toml")).unwrap_err();
        assert!(matches!(err, CasesError::Read { .. }), "{err:?}");
        assert_eq!(err.to_string(), "reading no/such/cases.toml");
    }

    #[test]
    fn a_case_gives_exactly_one_input() {
        let file = parse(
            r#"
[[case]]
name = "none"
expect = "allow"

[[case]]
name = "two"
expect = "allow"
route = {}
on_diff = { files = ["a"] }
"#,
        )
        .unwrap();
        assert!(file.cases.iter().all(|c| c.input().is_none()));
    }

    #[test]
    fn a_diff_adds_its_lines_to_every_file() {
        let diff = diff_of(&["a".into(), "b".into()], &["x".into(), "y".into()]);
        assert_eq!(diff.stats.files_changed, 2);
        assert_eq!(diff.stats.lines_added, 4);
        assert_eq!(diff.files[1].hunks[0].lines[1].text, "y");
        let diff = diff_of(&["a".into()], &[]);
        assert_eq!(diff.files[0].hunks[0].lines[0].text, "changed");
    }
}

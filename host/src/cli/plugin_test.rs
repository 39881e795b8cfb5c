//! `gaffer plugin test FILE.wasm --cases FILE.toml`: a plugin's own CI. Each case is a call
//! (built on the sample inputs of `plugin check`, with the fields a case gives) and the
//! decision expected; a failing case prints its input, the expected and the actual decision.
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

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use serde::Deserialize;

use super::Format;
use crate::plugin::output::describe_finding;
use crate::plugin::types::{
    Diff, DiffLine, DiffStats, FileDiff, FileEdit, FileStatus, HookDecision, Hunk, LineKind,
    RuleDecision, ToolCall, Verdict,
};
use crate::plugin::{CallContext, PluginRuntime, PluginSpec, World, samples};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CasesFile {
    #[serde(default)]
    config: Option<toml::Value>,
    #[serde(rename = "case", default)]
    cases: Vec<Case>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    route: Option<RouteCase>,
    verify: Option<VerifyCase>,
    pre_tool: Option<ToolCase>,
    on_edit: Option<EditCase>,
    on_diff: Option<DiffCase>,
    expect: String,
    reason_contains: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteCase {
    title: Option<String>,
    body: Option<String>,
    #[serde(default)]
    labels: Vec<String>,
    /// Rejected attempts before this one.
    #[serde(default)]
    rejected: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyCase {
    #[serde(default = "yes")]
    tests_passed: bool,
    /// Files of the diff (each gets `added` lines); default: the sample diff.
    #[serde(default)]
    files: Vec<String>,
    #[serde(default)]
    added: Vec<String>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ToolCase {
    name: String,
    arguments: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct EditCase {
    path: String,
    before: Option<String>,
    after: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct DiffCase {
    files: Vec<String>,
    #[serde(default)]
    added: Vec<String>,
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
#[derive(Debug, Clone, serde::Serialize)]
struct Outcome {
    name: String,
    passed: bool,
    expected: String,
    actual: String,
    reason: String,
    input: String,
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

/// `gaffer plugin test`.
pub async fn run(file: &Path, cases_file: &Path, format: Format) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(cases_file)
        .with_context(|| format!("reading {}", cases_file.display()))?;
    let cases: CasesFile =
        toml::from_str(&text).with_context(|| cases_file.display().to_string())?;
    anyhow::ensure!(
        !cases.cases.is_empty(),
        "{}: no [[case]]",
        cases_file.display()
    );
    let config = match &cases.config {
        Some(v) => serde_json::to_value(v)?,
        None => serde_json::json!({}),
    };
    let runtime = PluginRuntime::builder().build()?;
    let info = runtime.inspect(file)?;
    let world = info.world.with_context(|| {
        format!(
            "{}: its exports match no gaffer:plugin world",
            file.display()
        )
    })?;
    let mut spec = PluginSpec::new(world, file).with_config(config);
    if world == World::Router {
        spec.fallback_model = Some("cheap".to_string());
    }
    let plugin = runtime.load(spec)?;
    let mut outcomes = Vec::new();
    for (i, case) in cases.cases.iter().enumerate() {
        let ctx = CallContext::new(format!("case-{}", i + 1), 1);
        let given = [
            case.route.is_some(),
            case.verify.is_some(),
            case.pre_tool.is_some(),
            case.on_edit.is_some(),
            case.on_diff.is_some(),
        ]
        .iter()
        .filter(|g| **g)
        .count();
        anyhow::ensure!(
            given == 1,
            "{}: case `{}` must give exactly one of route, verify, pre_tool, on_edit, on_diff",
            cases_file.display(),
            case.name
        );
        // (actual decision, its reason, the input as shown on failure)
        let (actual, reason, input): (String, String, String) = if let Some(r) = &case.route {
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
            let called = plugin
                .route(&ctx, &request)
                .await
                .map_err(|e| anyhow::anyhow!("case `{}`: {e}", case.name))?;
            (
                called.decision.model.clone(),
                called.decision.reason.clone(),
                format!("{request:?}"),
            )
        } else if let Some(v) = &case.verify {
            let mut request = samples::verify_request();
            request.tests.passed = v.tests_passed;
            if !v.files.is_empty() {
                request.diff = diff_of(&v.files, &v.added);
            }
            let called = plugin
                .verify(&ctx, &request)
                .await
                .map_err(|e| anyhow::anyhow!("case `{}`: {e}", case.name))?;
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
        } else if let Some(t) = &case.pre_tool {
            let call = ToolCall {
                name: t.name.clone(),
                arguments: t.arguments.clone(),
            };
            let called = plugin
                .pre_tool(&ctx, &samples::task(), &call)
                .await
                .map_err(|e| anyhow::anyhow!("case `{}`: {e}", case.name))?;
            let (actual, reason) = match &called.decision {
                HookDecision::Allow => ("allow".to_string(), String::new()),
                HookDecision::Deny(r) => ("deny".to_string(), r.clone()),
                HookDecision::Rewrite(a) => ("rewrite".to_string(), a.clone()),
            };
            (actual, reason, format!("{call:?}"))
        } else if let Some(e) = &case.on_edit {
            let edit = FileEdit {
                path: e.path.clone(),
                before: e.before.clone(),
                after: e.after.clone(),
            };
            let called = plugin
                .on_edit(&ctx, &samples::task(), &edit)
                .await
                .map_err(|err| anyhow::anyhow!("case `{}`: {err}", case.name))?;
            let (actual, reason) = rule(&called.decision);
            (actual, reason, format!("{edit:?}"))
        } else if let Some(d) = &case.on_diff {
            let diff = diff_of(&d.files, &d.added);
            let called = plugin
                .on_diff(&ctx, &samples::task(), &diff)
                .await
                .map_err(|err| anyhow::anyhow!("case `{}`: {err}", case.name))?;
            let (actual, reason) = rule(&called.decision);
            (actual, reason, format!("{diff:?}"))
        } else {
            unreachable!("exactly one input was checked above")
        };
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
    let failed = outcomes.iter().filter(|o| !o.passed).count();
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&outcomes)?),
        Format::Text => {
            for o in &outcomes {
                if o.passed {
                    println!("ok    {}", o.name);
                } else {
                    println!("FAIL  {}", o.name);
                    println!("      input:    {}", o.input);
                    println!("      expected: {}", o.expected);
                    println!("      actual:   {} {}", o.actual, o.reason);
                }
            }
            println!(
                "{} of {} cases passed",
                outcomes.len() - failed,
                outcomes.len()
            );
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

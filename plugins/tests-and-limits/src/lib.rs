//! `tests-and-limits`: a verifier that rejects failing tests, oversized changes and forbidden
//! markers (`TODO`, `dbg!(`, ...) in added lines, and approves everything else.
//!
//! Config (every field optional):
//!
//! | field | default | meaning |
//! |---|---|---|
//! | `max_changed_lines` | 800 | lines added + removed; 0 disables the limit |
//! | `max_files` | 25 | files changed; 0 disables the limit |
//! | `forbidden_markers` | `["TODO", "FIXME", "XXX", "dbg!(", "console.log(", "breakpoint()"]` | case-sensitive substrings not allowed in added lines |
//! | `require_tests` | false | reject when the test command did not run |
//! | `max_findings` | 20 | marker findings reported one by one; the rest are summed up |
//! | `output_lines` | 8 | lines of test output quoted in a test failure |

use gaffer_sdk::host;
use gaffer_sdk::types::{Diff, Finding, LineKind, TestResult, Verdict, VerifyRequest};
use serde::Deserialize;

/// The verifier.
pub struct TestsAndLimits;

impl gaffer_sdk::Verifier for TestsAndLimits {
    fn verify(request: VerifyRequest) -> Result<Verdict, String> {
        let config: Config = host::config()?;
        Ok(verify_with(&config, &request))
    }
}

gaffer_sdk::export_verifier!(TestsAndLimits);

/// The verifier's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Most lines (added + removed) one change may touch; 0 disables the limit.
    pub max_changed_lines: u32,
    /// Most files one change may touch; 0 disables the limit.
    pub max_files: u32,
    /// Substrings not allowed in added lines (case-sensitive).
    pub forbidden_markers: Vec<String>,
    /// Reject a change when the test command did not run.
    pub require_tests: bool,
    /// Marker findings listed one by one; further hits are counted in one last finding.
    pub max_findings: usize,
    /// Lines of the test output's tail quoted in a test failure.
    pub output_lines: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_changed_lines: 800,
            max_files: 25,
            forbidden_markers: [
                "TODO",
                "FIXME",
                "XXX",
                "dbg!(",
                "console.log(",
                "breakpoint()",
            ]
            .into_iter()
            .map(String::from)
            .collect(),
            require_tests: false,
            max_findings: 20,
            output_lines: 8,
        }
    }
}

/// Judge with an explicit config.
pub fn verify_with(config: &Config, request: &VerifyRequest) -> Verdict {
    let mut findings = Vec::new();
    test_findings(config, &request.tests, &mut findings);
    limit_findings(config, &request.diff, &mut findings);
    marker_findings(config, &request.diff, &mut findings);
    if findings.is_empty() {
        Verdict::Approve
    } else {
        Verdict::Reject(findings)
    }
}

fn finding(message: String) -> Finding {
    Finding {
        message,
        path: None,
        line: None,
    }
}

fn test_findings(config: &Config, tests: &TestResult, out: &mut Vec<Finding>) {
    let command = if tests.command.trim().is_empty() {
        "the test command"
    } else {
        tests.command.trim()
    };
    if !tests.ran {
        if config.require_tests {
            let message = if tests.command.trim().is_empty() {
                "tests are required (`require_tests = true`) but no test command is configured"
                    .to_string()
            } else {
                format!("tests are required (`require_tests = true`) but `{command}` did not run")
            };
            out.push(finding(message));
        }
        return;
    }
    if tests.passed {
        return;
    }
    let how = match tests.exit_code {
        Some(code) => format!("exited with code {code}"),
        None => "did not exit normally (killed by a signal or timed out)".to_string(),
    };
    let mut message = format!("tests failed: `{command}` {how}");
    let tail = last_lines(&tests.output_tail, config.output_lines);
    if tail.is_empty() {
        message.push_str(" and printed nothing");
    } else {
        message.push_str("; last lines of output:\n");
        message.push_str(&tail);
    }
    out.push(finding(message));
}

/// The last `n` non-blank lines of `text`, trailing whitespace trimmed.
fn last_lines(text: &str, n: usize) -> String {
    let mut lines: Vec<&str> = text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .rev()
        .take(n)
        .collect();
    lines.reverse();
    lines.join("\n")
}

fn limit_findings(config: &Config, diff: &Diff, out: &mut Vec<Finding>) {
    let stats = &diff.stats;
    let changed = u64::from(stats.lines_added) + u64::from(stats.lines_removed);
    if config.max_changed_lines > 0 && changed > u64::from(config.max_changed_lines) {
        out.push(finding(format!(
            "the change touches {changed} lines ({} added, {} removed), more than the limit of {}; \
             split the task or ask for a smaller change",
            stats.lines_added, stats.lines_removed, config.max_changed_lines
        )));
    }
    if config.max_files > 0 && stats.files_changed > config.max_files {
        out.push(finding(format!(
            "the change touches {} files, more than the limit of {}; \
             split the task or ask for a smaller change",
            stats.files_changed, config.max_files
        )));
    }
}

fn marker_findings(config: &Config, diff: &Diff, out: &mut Vec<Finding>) {
    let markers: Vec<&str> = config
        .forbidden_markers
        .iter()
        .map(String::as_str)
        .filter(|m| !m.is_empty())
        .collect();
    if markers.is_empty() {
        return;
    }
    let mut shown = 0usize;
    let mut hidden = 0usize;
    for file in diff.files.iter().filter(|f| !f.binary) {
        for line in file
            .hunks
            .iter()
            .flat_map(|h| h.lines.iter())
            .filter(|l| l.kind == LineKind::Added)
        {
            let hits: Vec<&str> = markers
                .iter()
                .copied()
                .filter(|m| line.text.contains(m))
                .collect();
            if hits.is_empty() {
                continue;
            }
            if shown >= config.max_findings {
                hidden += 1;
                continue;
            }
            shown += 1;
            let names = hits
                .iter()
                .map(|m| format!("`{m}`"))
                .collect::<Vec<_>>()
                .join(", ");
            out.push(Finding {
                message: format!(
                    "forbidden marker {names} added at `{}:{}`: `{}`",
                    file.path,
                    line.line,
                    excerpt(line.text.trim(), 100)
                ),
                path: Some(file.path.clone()),
                line: Some(line.line),
            });
        }
    }
    if hidden > 0 {
        let plural = if hidden == 1 { "" } else { "s" };
        out.push(finding(format!(
            "and {hidden} more added line{plural} with forbidden markers (only the first {} are listed)",
            config.max_findings
        )));
    }
}

/// At most `max` characters of `text`, with "…" when cut.
fn excerpt(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gaffer_sdk::Verifier;
    use gaffer_sdk::testing::{MockHost, added_file, diff, unified_diff};
    use gaffer_sdk::types::{FileDiff, Task};
    use serde_json::json;

    fn tests_passed() -> TestResult {
        TestResult {
            command: "cargo test".into(),
            ran: true,
            passed: true,
            exit_code: Some(0),
            output_tail: "test result: ok. 3 passed".into(),
            duration_ms: 1200,
        }
    }

    fn request(diff: Diff, tests: TestResult) -> VerifyRequest {
        VerifyRequest {
            task: Task {
                id: "T-7".into(),
                title: "Add a parser".into(),
                body: String::new(),
                labels: vec![],
                paths: vec![],
            },
            attempt: 1,
            model: "cheap".into(),
            diff,
            tests,
            cost_so_far: 120_000,
            history: vec![],
        }
    }

    fn verify(config: serde_json::Value, req: VerifyRequest) -> Result<Verdict, String> {
        let _host = MockHost::new().config(config).install();
        TestsAndLimits::verify(req)
    }

    fn clean_diff() -> Diff {
        diff(vec![added_file("src/parse.rs", &["pub fn parse() {}", ""])])
    }

    fn findings(v: Verdict) -> Vec<Finding> {
        match v {
            Verdict::Reject(f) => f,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn a_clean_change_with_passing_tests_is_approved() {
        assert_eq!(
            verify(json!({}), request(clean_diff(), tests_passed())),
            Ok(Verdict::Approve)
        );
    }

    #[test]
    fn failing_tests_are_rejected_with_command_code_and_tail() {
        let tests = TestResult {
            passed: false,
            exit_code: Some(101),
            output_tail: (1..=12)
                .map(|i| format!("line {i}  \n"))
                .collect::<String>()
                + "\n\n",
            ..tests_passed()
        };
        let f =
            findings(verify(json!({ "output_lines": 3 }), request(clean_diff(), tests)).unwrap());
        assert_eq!(f.len(), 1);
        assert_eq!(
            f[0].message,
            "tests failed: `cargo test` exited with code 101; last lines of output:\nline 10\nline 11\nline 12"
        );
        assert_eq!(f[0].path, None);
    }

    #[test]
    fn killed_tests_and_silent_failures_say_so() {
        let tests = TestResult {
            passed: false,
            exit_code: None,
            output_tail: String::new(),
            ..tests_passed()
        };
        let f = findings(verify(json!({}), request(clean_diff(), tests)).unwrap());
        assert_eq!(
            f[0].message,
            "tests failed: `cargo test` did not exit normally (killed by a signal or timed out) and printed nothing"
        );
    }

    #[test]
    fn tests_that_did_not_run_only_matter_when_required() {
        let not_run = TestResult {
            ran: false,
            passed: false,
            exit_code: None,
            output_tail: String::new(),
            ..tests_passed()
        };
        assert_eq!(
            verify(json!({}), request(clean_diff(), not_run.clone())),
            Ok(Verdict::Approve)
        );
        let f = findings(
            verify(
                json!({ "require_tests": true }),
                request(clean_diff(), not_run.clone()),
            )
            .unwrap(),
        );
        assert_eq!(
            f[0].message,
            "tests are required (`require_tests = true`) but `cargo test` did not run"
        );
        let none = TestResult {
            command: String::new(),
            ..not_run
        };
        let f = findings(
            verify(
                json!({ "require_tests": true }),
                request(clean_diff(), none),
            )
            .unwrap(),
        );
        assert_eq!(
            f[0].message,
            "tests are required (`require_tests = true`) but no test command is configured"
        );
    }

    #[test]
    fn oversized_changes_are_rejected() {
        let mut d = clean_diff();
        d.stats.lines_added = 700;
        d.stats.lines_removed = 150;
        d.stats.files_changed = 26;
        let f = findings(verify(json!({}), request(d.clone(), tests_passed())).unwrap());
        assert_eq!(f.len(), 2);
        assert_eq!(
            f[0].message,
            "the change touches 850 lines (700 added, 150 removed), more than the limit of 800; \
             split the task or ask for a smaller change"
        );
        assert_eq!(
            f[1].message,
            "the change touches 26 files, more than the limit of 25; split the task or ask for a smaller change"
        );
        // At the limit is fine; 0 disables a limit.
        assert_eq!(
            verify(
                json!({ "max_changed_lines": 850, "max_files": 0 }),
                request(d, tests_passed())
            ),
            Ok(Verdict::Approve)
        );
    }

    #[test]
    fn forbidden_markers_in_added_lines_are_reported_with_path_and_line() {
        let d = unified_diff(
            "diff --git a/src/a.rs b/src/a.rs\n\
             --- a/src/a.rs\n\
             +++ b/src/a.rs\n\
             @@ -10,3 +10,5 @@\n \
              fn a() {\n\
             -    // TODO: old one, removed\n\
             +    let x = dbg!(y); // FIXME\n\
             +    // XXX: hack\n\
             +    ok();\n \
              }\n \
              // TODO in context is not ours\n\
             diff --git a/web/app.js b/web/app.js\n\
             new file mode 100644\n\
             --- /dev/null\n\
             +++ b/web/app.js\n\
             @@ -0,0 +1,2 @@\n\
             +console.log(\"hi\");\n\
             +export {};\n\
             diff --git a/logo.png b/logo.png\n\
             Binary files a/logo.png and b/logo.png differ\n",
        );
        let f = findings(verify(json!({}), request(d, tests_passed())).unwrap());
        let got: Vec<(&str, Option<&str>, Option<u32>)> = f
            .iter()
            .map(|f| (f.message.as_str(), f.path.as_deref(), f.line))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "forbidden marker `FIXME`, `dbg!(` added at `src/a.rs:11`: `let x = dbg!(y); // FIXME`",
                    Some("src/a.rs"),
                    Some(11)
                ),
                (
                    "forbidden marker `XXX` added at `src/a.rs:12`: `// XXX: hack`",
                    Some("src/a.rs"),
                    Some(12)
                ),
                (
                    "forbidden marker `console.log(` added at `web/app.js:1`: `console.log(\"hi\");`",
                    Some("web/app.js"),
                    Some(1)
                ),
            ]
        );
    }

    #[test]
    fn binary_files_are_skipped_for_markers() {
        let mut file: FileDiff = added_file("blob.bin", &["TODO"]);
        file.binary = true;
        assert_eq!(
            verify(json!({}), request(diff(vec![file]), tests_passed())),
            Ok(Verdict::Approve)
        );
    }

    #[test]
    fn marker_findings_are_capped() {
        let lines: Vec<String> = (0..30).map(|i| format!("// TODO {i}")).collect();
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let d = diff(vec![added_file("src/todo.rs", &refs)]);
        let f = findings(verify(json!({ "max_findings": 5 }), request(d, tests_passed())).unwrap());
        assert_eq!(f.len(), 6);
        assert_eq!(f[4].line, Some(5));
        assert_eq!(
            f[5].message,
            "and 25 more added lines with forbidden markers (only the first 5 are listed)"
        );
    }

    #[test]
    fn custom_markers_replace_the_defaults_and_long_lines_are_cut() {
        let long = format!("unimplemented!() {}", "x".repeat(200));
        let d = diff(vec![added_file("src/a.rs", &["// TODO fine now", &long])]);
        let f = findings(
            verify(
                json!({ "forbidden_markers": ["unimplemented!"] }),
                request(d, tests_passed()),
            )
            .unwrap(),
        );
        assert_eq!(f.len(), 1);
        assert!(f[0].message.starts_with(
            "forbidden marker `unimplemented!` added at `src/a.rs:2`: `unimplemented!() xxx"
        ));
        assert!(f[0].message.ends_with("x…`"), "{}", f[0].message);
    }

    #[test]
    fn all_problems_are_reported_together() {
        let mut d = diff(vec![added_file("a.py", &["breakpoint()"])]);
        d.stats.lines_added = 900;
        let tests = TestResult {
            passed: false,
            exit_code: Some(1),
            output_tail: "FAILED test_a".into(),
            command: "pytest".into(),
            ..tests_passed()
        };
        let f = findings(verify(json!({}), request(d, tests)).unwrap());
        assert_eq!(f.len(), 3);
        assert!(
            f[0].message
                .starts_with("tests failed: `pytest` exited with code 1")
        );
        assert!(f[1].message.starts_with("the change touches 900 lines"));
        assert!(
            f[2].message
                .starts_with("forbidden marker `breakpoint()` added at `a.py:1`")
        );
    }

    #[test]
    fn invalid_config_names_the_field() {
        let req = request(clean_diff(), tests_passed());
        let err = verify(json!({ "max_files": -1 }), req.clone()).unwrap_err();
        assert!(err.starts_with("invalid config: `max_files`:"), "{err}");
        let err = verify(json!({ "forbidden_markers": "TODO" }), req.clone()).unwrap_err();
        assert!(
            err.starts_with("invalid config: `forbidden_markers`:"),
            "{err}"
        );
        let err = verify(json!({ "require_test": true }), req).unwrap_err();
        assert!(err.contains("unknown field `require_test`"), "{err}");
    }
}

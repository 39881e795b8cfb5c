//! `gaffer plugin test`: declared cases against the reference plugins, passing and failing as
//! they should; a failing case prints its input, the expected and the actual decision.

mod support;

use std::process::{Command, Output};

fn plugin_test(plugin: &str, cases: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cases.toml");
    std::fs::write(&file, cases).unwrap();
    Command::new(env!("CARGO_BIN_EXE_gaffer"))
        .args(["plugin", "test"])
        .arg(support::guest(plugin))
        .arg("--cases")
        .arg(&file)
        .env("GAFFER_PLUGIN_CACHE", support::test_cache_dir())
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn hook_cases_pass_when_the_decisions_match() {
    let out = plugin_test(
        "protected-paths",
        r#"
config = { globs = [".env", "**/migrations/**"] }

[[case]]
name = "a write to .env is denied"
pre_tool = { name = "write_file", arguments = '{"path": ".env", "content": "x"}' }
expect = "deny"
reason_contains = ".env"

[[case]]
name = "a normal write is allowed"
pre_tool = { name = "write_file", arguments = '{"path": "src/a.rs", "content": "x"}' }
expect = "allow"

[[case]]
name = "an edit of a migration is denied"
on_edit = { path = "db/migrations/001.sql", before = "a", after = "b" }
expect = "deny"

[[case]]
name = "a diff touching .env is denied"
on_diff = { files = ["src/a.rs", ".env"] }
expect = "deny"
"#,
    );
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("4 of 4 cases passed"), "{text}");
}

#[test]
fn a_failing_case_shows_input_expected_and_actual_and_fails_the_command() {
    let out = plugin_test(
        "protected-paths",
        r#"
[[case]]
name = "wrongly expects a .env write to pass"
pre_tool = { name = "write_file", arguments = '{"path": ".env", "content": "x"}' }
expect = "allow"

[[case]]
name = "right about a normal file"
pre_tool = { name = "write_file", arguments = '{"path": "README.md", "content": "x"}' }
expect = "allow"
"#,
    );
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains("FAIL  wrongly expects a .env write to pass"),
        "{text}"
    );
    assert!(text.contains("input:") && text.contains(".env"), "{text}");
    assert!(text.contains("expected: allow"), "{text}");
    assert!(text.contains("actual:   deny"), "{text}");
    assert!(text.contains("ok    right about a normal file"), "{text}");
    assert!(text.contains("1 of 2 cases passed"), "{text}");
}

#[test]
fn router_and_verifier_cases() {
    let router = plugin_test(
        "cost-tier",
        r#"
[[case]]
name = "a first attempt goes to the cheap model"
route = { labels = ["bug"] }
expect = "cheap"

[[case]]
name = "one rejection escalates one tier"
route = { labels = ["bug"], rejected = 1 }
expect = "mid"

[[case]]
name = "architecture wants the top tier but steps down to what the task's money allows"
route = { labels = ["architecture"] }
expect = "mid"
reason_contains = "does not fit the attempt budget"
"#,
    );
    assert!(router.status.success(), "{}", stdout(&router));
    let verifier = plugin_test(
        "tests-and-limits",
        r#"
[[case]]
name = "passing tests and a clean diff are approved"
verify = { tests_passed = true, files = ["src/a.rs"], added = ["fn a() {}"] }
expect = "approve"

[[case]]
name = "failing tests are rejected"
verify = { tests_passed = false }
expect = "reject"
reason_contains = "tests failed"

[[case]]
name = "a TODO is rejected"
verify = { files = ["src/a.rs"], added = ["// TODO later"] }
expect = "reject"
reason_contains = "TODO"
"#,
    );
    assert!(verifier.status.success(), "{}", stdout(&verifier));
}

#[test]
fn a_case_without_one_input_is_named() {
    let out = plugin_test(
        "protected-paths",
        "[[case]]\nname = \"nothing to call\"\nexpect = \"allow\"\n",
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("`nothing to call`"));
}

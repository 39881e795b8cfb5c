//! `gaffer estimate`: profiles measured on the SWE-bench Verified data must bracket what replay
//! measures for the same cascade (the issue's figures), hand-written profiles give figures
//! computed by hand, and bad input is named.

mod support;

use std::process::{Command, Output};

use serde_json::Value;

fn estimate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gaffer"))
        .arg("estimate")
        .arg("--data")
        .arg(support::workspace_root().join("examples/data/swebench-verified-outcomes.jsonl"))
        .args(args)
        .output()
        .unwrap()
}

fn json(args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["--format", "json"]);
    let out = estimate(&all);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn profiles_from_the_data_bracket_what_replay_measures_for_the_same_cascade() {
    let v = json(&[
        "--cascade",
        "deepseek-v3.2-reasoner,gemini-3-pro-preview",
        "--seed",
        "4",
    ]);
    let e = &v["estimate"];
    assert_eq!(e["tasks"], 500);
    // Replay on the same data: 386 solved for $130.364713 (the issue's figures).
    let solved = 386.0;
    let per_task = 130_364_713.0 / 500.0;
    let s = &e["tasks_solved"];
    assert!(
        s["p5"].as_f64().unwrap() <= solved && solved <= s["p95"].as_f64().unwrap(),
        "{s}"
    );
    let c = &e["cost_per_task_micros"];
    assert!(
        c["p5"].as_f64().unwrap() <= per_task && per_task <= c["p95"].as_f64().unwrap(),
        "{c}"
    );
    // Every assumption is printed with it: the data's mix, one profile per label.
    let a = &v["assumptions"];
    assert_eq!(a["mix"]["django/django"], 231);
    assert_eq!(a["profiles"].as_array().unwrap().len(), 12);
    assert_eq!(a["simulations"], 2000);
    // Seeded.
    assert_eq!(
        v,
        json(&[
            "--cascade",
            "deepseek-v3.2-reasoner,gemini-3-pro-preview",
            "--seed",
            "4"
        ])
    );
}

#[test]
fn hand_written_profiles_give_the_figures_a_hand_computation_gives() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("profiles.toml");
    // bug: the cheap model always fails ($0.10), the strong one always succeeds ($1.00):
    // $1.10 a task. docs: the cheap one always succeeds: $0.10.
    std::fs::write(
        &file,
        r#"
[[profile]]
label = "bug"
models = ["cheap", "strong"]
success = [0.0, 1.0]
cost_per_attempt = ["0.10", "1.00"]

[[profile]]
label = "docs"
models = ["cheap", "strong"]
success = [1.0, 1.0]
cost_per_attempt = ["0.10", "1.00"]
"#,
    )
    .unwrap();
    let v = json(&[
        "--profiles",
        file.to_str().unwrap(),
        "--mix",
        "bug=30,docs=10",
        "--tasks-per-month",
        "400",
        "--verifier-cost",
        "0.01",
        "--hourly-rate",
        "100",
        "--hours-per-task",
        "1.5",
    ]);
    let e = &v["estimate"];
    // (30 × (1.10 + 2 × 0.01) + 10 × (0.10 + 0.01)) / 40 = (33.6 + 1.1) / 40 = $0.8675.
    assert_eq!(e["cost_per_task_micros"]["mean"], 867_500.0);
    assert_eq!(e["cost_per_task_micros"]["p5"], 867_500.0);
    assert_eq!(e["tasks_solved"]["mean"], 40.0);
    assert_eq!(e["cost_per_month_micros"]["mean"], 867_500.0 * 400.0);
    // 400 tasks × 1.5 h × $100.
    assert_eq!(e["human_per_month_micros"], 60_000_000_000.0);
}

#[test]
fn bad_input_is_named() {
    let out = estimate(&[
        "--cascade",
        "deepseek-v3.2-reasoner",
        "--mix",
        "nowhere/repo=3",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("`nowhere/repo`"));
    let out = estimate(&["--cascade", "gpt-9"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("`gpt-9`"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.toml");
    std::fs::write(
        &file,
        "[[profile]]\nlabel = \"bug\"\nmodels = [\"a\", \"b\"]\nsuccess = [0.5]\ncost_per_attempt = [\"0.1\", \"0.2\"]\n",
    )
    .unwrap();
    let out = estimate(&["--profiles", file.to_str().unwrap(), "--mix", "bug=1"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("p.toml") && err.contains("`bug`"), "{err}");
    std::fs::write(
        &file,
        "[[profile]]\nlabel = \"bug\"\nmodels = [\"a\"]\nsuccess = [0.5]\ncost_per_attempt = [\"0.1\"]\n",
    )
    .unwrap();
    let out = estimate(&["--profiles", file.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--mix"));
}

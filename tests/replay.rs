//! `gaffer replay` on the SWE-bench Verified outcomes shipped in examples/data: the figures the
//! issue states (computed outside gaffer), a router plugin against the same policy written as a
//! cascade, seeded verifier errors, and bad input.

mod support;

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

fn data() -> PathBuf {
    support::workspace_root().join("examples/data/swebench-verified-outcomes.jsonl")
}

fn replay(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gaffer"))
        .arg("replay")
        .arg("--data")
        .arg(data())
        .args(args)
        .env("GAFFER_PLUGIN_CACHE", support::test_cache_dir())
        .output()
        .unwrap()
}

fn json(args: &[&str]) -> Vec<Value> {
    let mut all = args.to_vec();
    all.extend(["--format", "json"]);
    let out = replay(&all);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap()
}

fn policy<'a>(results: &'a [Value], name: &str) -> &'a Value {
    results
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no policy {name}"))
}

/// (solved, cost as the JSON text, attempts)
fn figures(v: &Value) -> (u64, String, u64) {
    (
        v["solved"].as_u64().unwrap(),
        v["cost_usd"].to_string(),
        v["attempts"].as_u64().unwrap(),
    )
}

const CASCADE: &str = "deepseek-v3.2-reasoner,gemini-3-pro-preview";

#[test]
fn the_data_sets_cascade_single_models_and_oracle_match_the_stated_figures() {
    let results = json(&["--cascade", CASCADE]);
    assert_eq!(
        figures(policy(
            &results,
            "cascade deepseek-v3.2-reasoner → gemini-3-pro-preview"
        )),
        (386, "130.364713".to_string(), 700)
    );
    assert_eq!(
        figures(policy(&results, "claude-opus-4-5-20251101")),
        (372, "360.622493".to_string(), 500)
    );
    assert_eq!(
        figures(policy(&results, "oracle")),
        (436, "37.038287".to_string(), 436)
    );
    // The best single model is listed first among the single models; 24 models, all listed.
    assert_eq!(results[1]["name"], "claude-opus-4-5-20251101");
    assert_eq!(results.len(), 1 + 24 + 1);
    // Unsolved spend: 500 - 386 tasks went through both models and failed.
    let cascade = &results[0];
    assert!(cascade["unsolved_spend_usd"].as_f64().unwrap() > 0.0);
}

#[test]
fn a_cascade_router_plugin_agrees_with_the_built_in_cascade() {
    let router = support::guest("cascade");
    let config = format!(
        "{{\"models\": [{}]}}",
        CASCADE
            .split(',')
            .map(|m| format!("\"{m}\""))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let results = json(&[
        "--router",
        router.to_str().unwrap(),
        "--router-config",
        &config,
        "--max-attempts",
        "2",
        "--cascade",
        CASCADE,
        "--false-accept",
        "0.05",
        "--false-reject",
        "0.1",
        "--seed",
        "9",
    ]);
    let plugin = &results[0];
    let built_in = &results[1];
    assert_eq!(plugin["name"], "router cascade.wasm");
    for field in [
        "solved",
        "cost_usd",
        "attempts",
        "false_accepts",
        "false_rejects",
        "unsolved_spend_usd",
    ] {
        assert_eq!(plugin[field], built_in[field], "{field}");
    }
}

#[test]
fn verifier_errors_are_seeded_and_change_the_outcome() {
    let args = [
        "--cascade",
        CASCADE,
        "--false-accept",
        "0.2",
        "--false-reject",
        "0.2",
    ];
    let with_seed = |seed: &str| {
        let mut a = args.to_vec();
        a.extend(["--seed", seed]);
        json(&a)
    };
    let first = with_seed("1");
    assert_eq!(first, with_seed("1"), "the same seed replays the same");
    let cascade = &first[0];
    let perfect = figures(policy(
        &json(&["--cascade", CASCADE]),
        cascade["name"].as_str().unwrap(),
    ));
    assert!(cascade["false_accepts"].as_u64().unwrap() > 0);
    assert!(cascade["false_rejects"].as_u64().unwrap() > 0);
    assert!(cascade["solved"].as_u64().unwrap() < perfect.0);
    assert_ne!(first, with_seed("2"));
}

#[test]
fn a_plot_of_cost_against_solved_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let plot = dir.path().join("replay.svg");
    let out = replay(&["--cascade", CASCADE, "--plot", plot.to_str().unwrap()]);
    assert!(out.status.success());
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.starts_with("<svg"));
    assert_eq!(svg.matches("<circle").count(), 26);
    assert!(svg.contains("oracle: 436 solved, $37.038287"));
}

#[test]
fn bad_data_and_unknown_models_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"instance_id\": \"a\", \"runs\": {\"m\": {\"resolved\": true, \"cost_usd\": 0.5}}}\n{\"instance_id\": \"b\", \"runs\": {\"m\": {\"resolved\": \"yes\", \"cost_usd\": 0.5}}}\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gaffer"))
        .args(["replay", "--data", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.jsonl:2:"), "{err}");
    let out = replay(&["--cascade", "deepseek-v3.2-reasoner,gpt-9"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`gpt-9`") && err.contains("claude-opus-4-5-20251101"),
        "{err}"
    );
}

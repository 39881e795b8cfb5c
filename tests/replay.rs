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

/// (solved, cost in micro-dollars, attempts)
fn figures(v: &Value) -> (u64, u64, u64) {
    (
        v["solved"].as_u64().unwrap(),
        v["cost_micros"].as_u64().unwrap(),
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
        (386, 130_364_713, 700)
    );
    assert_eq!(
        figures(policy(&results, "claude-opus-4-5-20251101")),
        (372, 360_622_493, 500)
    );
    assert_eq!(figures(policy(&results, "oracle")), (436, 37_038_287, 436));
    // The best single model is listed first among the single models; 24 models, all listed.
    assert_eq!(results[1]["name"], "claude-opus-4-5-20251101");
    assert_eq!(results.len(), 1 + 24 + 1);
    // Unsolved spend: 500 - 386 tasks went through both models and failed.
    let cascade = &results[0];
    assert!(cascade["unsolved_spend_micros"].as_u64().unwrap() > 0);
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
        "cost_micros",
        "attempts",
        "false_accepts",
        "false_rejects",
        "unsolved_spend_micros",
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

#[test]
fn search_finds_the_stated_cascade_on_the_frontier_and_chooses_it() {
    let out = replay(&[
        "--search",
        "--candidates",
        CASCADE,
        "--max-length",
        "2",
        "--format",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    // Two singles and two orders.
    assert_eq!(v["searched"], 4);
    let frontier = v["frontier"].as_array().unwrap();
    // Cheapest first, each solving more than the one before.
    for pair in frontier.windows(2) {
        assert!(pair[0]["cost_micros"].as_u64() < pair[1]["cost_micros"].as_u64());
        assert!(pair[0]["solved"].as_u64() < pair[1]["solved"].as_u64());
    }
    let stated = frontier
        .iter()
        .find(|p| {
            p["models"] == serde_json::json!(["deepseek-v3.2-reasoner", "gemini-3-pro-preview"])
        })
        .expect("the stated cascade is on the frontier");
    assert_eq!(figures(stated), (386, 130_364_713, 700));
    // The best single of the two is gemini (371 solved); the cascade solves more for less.
    assert_eq!(
        v["best_single"]["models"],
        serde_json::json!(["gemini-3-pro-preview"])
    );
    assert_eq!(v["chosen"]["models"], stated["models"]);
}

#[test]
fn a_held_out_choice_is_reported_on_the_other_tasks_and_written_as_router_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("router.toml");
    let candidates = "deepseek-v3.2-reasoner,gpt-5-mini-2025-08-07,gemini-3-pro-preview,claude-opus-4-5-20251101";
    let args = [
        "--search",
        "--candidates",
        candidates,
        "--holdout",
        "0.3",
        "--seed",
        "11",
        "--write-config",
        config.to_str().unwrap(),
        "--format",
        "json",
    ];
    let out = replay(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["tasks_chosen_on"].as_u64(), v["tasks_held_out"].as_u64()),
        (Some(350), Some(150))
    );
    // The rule: on the training part, no dearer than the best single model.
    assert!(v["chosen"]["cost_micros"].as_u64() <= v["best_single"]["cost_micros"].as_u64());
    assert_eq!(v["held_out"]["chosen"]["tasks"], 150);
    assert_eq!(v["held_out"]["best_single"]["tasks"], 150);
    // Seeded: the same split and choice again.
    let again: Value = serde_json::from_slice(&replay(&args).stdout).unwrap();
    assert_eq!(v, again);
    // The written configuration drives the cascade router to the same figures on all tasks.
    let text = std::fs::read_to_string(&config).unwrap();
    let table: toml::Table = toml::from_str(&text).unwrap();
    let models: Vec<String> = table["plugins"]["router"]["config"]["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().to_string())
        .collect();
    assert_eq!(serde_json::json!(models), v["chosen"]["models"]);
    let router_config = serde_json::json!({"models": models}).to_string();
    let results = json(&[
        "--router",
        support::guest("cascade").to_str().unwrap(),
        "--router-config",
        &router_config,
        "--max-attempts",
        &models.len().to_string(),
        "--cascade",
        &models.join(","),
    ]);
    assert_eq!(figures(&results[0]), figures(&results[1]));
}

/// Dollars of a JSON number's text as integer micro-dollars (the test's own parsing).
fn micros(text: &str) -> u64 {
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    let frac = format!("{frac:0<6}");
    whole.parse::<u64>().unwrap() * 1_000_000 + frac[..6].parse::<u64>().unwrap()
}

#[test]
fn single_model_figures_are_the_sums_over_the_data_rows() {
    let text = std::fs::read_to_string(data()).unwrap();
    let mut sums: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    for line in text.lines() {
        // Numbers kept as written: serde_json's float would round.
        let v: serde_json::Map<String, Value> = serde_json::from_str(line).unwrap();
        for (model, run) in v["runs"].as_object().unwrap() {
            let entry = sums.entry(model.clone()).or_default();
            entry.0 += u64::from(run["resolved"].as_bool().unwrap());
            entry.1 += micros(&run["cost_usd"].to_string());
        }
    }
    let results = json(&[]);
    assert_eq!(sums.len(), 24);
    for (model, (solved, cost)) in sums {
        let r = policy(&results, &model);
        assert_eq!(r["solved"].as_u64(), Some(solved), "{model}");
        assert_eq!(r["cost_micros"].as_u64(), Some(cost), "{model}");
        assert_eq!(r["attempts"].as_u64(), Some(500), "{model}");
    }
}

#[test]
fn false_rejects_cost_more_and_false_accepts_solve_fewer() {
    let name = "cascade deepseek-v3.2-reasoner → gemini-3-pro-preview";
    let run = |extra: &[&str]| {
        let mut a = vec!["--cascade", CASCADE, "--seed", "3"];
        a.extend_from_slice(extra);
        policy(&json(&a), name).clone()
    };
    let perfect = run(&[]);
    let rejecting = run(&["--false-reject", "0.3"]);
    let accepting = run(&["--false-accept", "0.3"]);
    assert!(rejecting["cost_micros"].as_u64() > perfect["cost_micros"].as_u64());
    assert!(rejecting["attempts"].as_u64() > perfect["attempts"].as_u64());
    assert!(accepting["solved"].as_u64() < perfect["solved"].as_u64());
}

#[test]
fn the_frontiers_cheapest_point_is_deepseek_alone() {
    let out = replay(&["--search", "--format", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    // 24 + 24·23 + 24·23·22 cascades.
    assert_eq!(v["searched"], 12_720);
    let cheapest = &v["frontier"][0];
    assert_eq!(
        cheapest["models"],
        serde_json::json!(["deepseek-v3.2-reasoner"])
    );
    assert_eq!(figures(cheapest), (300, 14_038_155, 500));
}

#[test]
fn the_held_out_outcomes_do_not_change_the_choice() {
    let dir = tempfile::tempdir().unwrap();
    let candidates = "deepseek-v3.2-reasoner,gpt-5-mini-2025-08-07,gemini-3-pro-preview";
    let search = |file: &std::path::Path| -> Value {
        let out = Command::new(env!("CARGO_BIN_EXE_gaffer"))
            .args(["replay", "--data", file.to_str().unwrap()])
            .args([
                "--search",
                "--candidates",
                candidates,
                "--holdout",
                "0.4",
                "--seed",
                "5",
            ])
            .args(["--format", "json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let first = search(&data());
    let held: Vec<String> = first["held_out_tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    assert_eq!(held.len(), 200);
    // Flip every outcome of the held-out tasks.
    let flipped: String = std::fs::read_to_string(data())
        .unwrap()
        .lines()
        .map(|line| {
            let id = line.split('"').nth(3).unwrap();
            if held.iter().any(|h| h == id) {
                line.replace("\"resolved\": true", "\"resolved\": X")
                    .replace("\"resolved\": false", "\"resolved\": true")
                    .replace("\"resolved\": X", "\"resolved\": false")
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let file = dir.path().join("flipped.jsonl");
    std::fs::write(&file, flipped).unwrap();
    let second = search(&file);
    assert_eq!(second["held_out_tasks"], first["held_out_tasks"]);
    assert_eq!(second["chosen"], first["chosen"]);
    // ... while the held-out figures did change.
    assert_ne!(second["held_out"], first["held_out"]);
}

#[test]
fn the_verifiers_cost_is_added_to_every_attempt_and_its_basis_printed() {
    let name = "cascade deepseek-v3.2-reasoner → gemini-3-pro-preview";
    let results = json(&["--cascade", CASCADE, "--verifier-cost", "0.01"]);
    // The stated figures (386 solved, $130.364713, 700 attempts) + 700 reviews × $0.01.
    let cascade = policy(&results, name);
    assert_eq!(figures(cascade), (386, 137_364_713, 700));
    assert_eq!(cascade["verifier_micros"], 7_000_000);
    // $137.364713 / 386 = $0.35586713…: $0.355867.
    assert_eq!(cascade["cost_per_solved_micros"], 355_867);
    // The oracle reviews its one attempt a solved task: $37.038287 + 436 × $0.01.
    assert_eq!(figures(policy(&results, "oracle")), (436, 41_398_287, 436));
    let out = replay(&["--cascade", CASCADE, "--verifier-cost", "0.01"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("recorded cost + $0.0100 an attempt for the verifier"),
        "{text}"
    );
    // Without the flag the basis says nothing was added.
    let text = String::from_utf8_lossy(&replay(&["--cascade", CASCADE]).stdout).to_string();
    assert!(
        text.contains("+ $0.0000 an attempt for the verifier"),
        "{text}"
    );
    // A ledger's costs already hold the verifier's rows: adding it again is refused.
    let out = replay(&["--from-ledger", "--verifier-cost", "0.01"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--verifier-cost"));
}

#[test]
fn the_table_names_the_unsolved_share_and_gives_dollars_one_width() {
    let out = replay(&["--cascade", CASCADE]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let header = text
        .lines()
        .find(|l| l.starts_with("policy"))
        .expect("a table");
    assert!(header.trim_end().ends_with("spend on unsolved"), "{header}");
    // Every dollar amount of the table has four decimals: $130.364713 → $130.3647, and
    // $130.364713 / 386 = $0.33773…: $0.3377.
    let row = text
        .lines()
        .find(|l| l.starts_with("cascade"))
        .expect("the cascade's row");
    assert!(
        row.contains("$130.3647") && row.contains("$0.3377"),
        "{row}"
    );
    let table: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("policy"))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .collect();
    assert_eq!(table.len(), 26);
    for line in &table {
        for word in line.split_whitespace().filter(|w| w.starts_with('$')) {
            let decimals = word.split_once('.').map(|(_, d)| d.len());
            assert_eq!(decimals, Some(4), "{word} in {line}");
        }
    }
}

#[test]
fn a_cascade_naming_a_model_twice_is_refused_with_its_name() {
    for args in [
        vec!["--cascade", "deepseek-v3.2-reasoner,deepseek-v3.2-reasoner"],
        vec![
            "--search",
            "--candidates",
            "gemini-3-pro-preview,deepseek-v3.2-reasoner,gemini-3-pro-preview",
        ],
    ] {
        let out = replay(&args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        let model = if args[0] == "--search" {
            "`gemini-3-pro-preview`"
        } else {
            "`deepseek-v3.2-reasoner`"
        };
        assert!(err.contains(model) && err.contains("twice"), "{err}");
    }
}

#[test]
fn cost_per_solved_is_the_cost_over_the_solved_rounded_half_up() {
    let text = std::fs::read_to_string(data()).unwrap();
    let mut sums: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    for line in text.lines() {
        let v: serde_json::Map<String, Value> = serde_json::from_str(line).unwrap();
        for (model, run) in v["runs"].as_object().unwrap() {
            let entry = sums.entry(model.clone()).or_default();
            entry.0 += u64::from(run["resolved"].as_bool().unwrap());
            entry.1 += micros(&run["cost_usd"].to_string());
        }
    }
    let results = json(&[]);
    let mut rounded_up = 0;
    for (model, (solved, cost)) in sums {
        // Half up, in integers: floor((2·cost + solved) / (2·solved)).
        let expected = (2 * cost + solved) / (2 * solved);
        rounded_up += usize::from(expected != cost / solved);
        assert_eq!(
            policy(&results, &model)["cost_per_solved_micros"].as_u64(),
            Some(expected),
            "{model}"
        );
    }
    // Some of the 24 are rounded up (truncation would have got them wrong).
    assert!(rounded_up > 0);
}

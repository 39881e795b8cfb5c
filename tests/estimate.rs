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
    // Every task is solved: the cost per solved task is the cost per task.
    assert_eq!(e["cost_per_solved_micros"]["mean"], 867_500.0);
    // A month: 400 tasks drawn from the mix (3/4 bug at $1.12, 1/4 docs at $0.11): $347 on
    // average, give or take the mix's draw (sd $0.437 a task, $8.75 a month).
    assert_eq!(e["tasks_per_month"], 400);
    let m = &e["cost_per_month_micros"];
    let mean = m["mean"].as_f64().unwrap();
    assert!((mean - 347e6).abs() < 1e6, "{m}");
    assert!(m["p5"].as_f64().unwrap() < 347e6 && 347e6 < m["p95"].as_f64().unwrap());
    // A person, like for like: 1.5 h × $100 = $150 a task, for the 400 tasks the agents
    // solve a month: $60 000.
    assert_eq!(e["human"]["per_task_micros"], 150_000_000);
    assert_eq!(
        e["human"]["for_month_solved_micros"]["mean"],
        60_000_000_000.0
    );
    assert_eq!(v["assumptions"]["hourly_rate_micros"], 100_000_000);
    assert_eq!(v["assumptions"]["hours_per_task"], 1.5);
    // The caveats travel with the figures.
    let caveats = e["caveats"].as_array().unwrap();
    assert_eq!(caveats.len(), 2);
    assert!(caveats[0].as_str().unwrap().contains("independently"));
    assert!(caveats[1].as_str().unwrap().contains("simulation spread"));
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

/// Profiles where the cheap model solves half the tasks ($0.10) and the strong one the rest
/// ($1.00 more).
fn coin_profiles(dir: &std::path::Path) -> std::path::PathBuf {
    let file = dir.join("coin.toml");
    std::fs::write(
        &file,
        "[[profile]]\nlabel = \"x\"\nmodels = [\"cheap\", \"strong\"]\nsuccess = [0.5, 1.0]\ncost_per_attempt = [\"0.10\", \"1.00\"]\n",
    )
    .unwrap();
    file
}

#[test]
fn the_monthly_interval_is_the_months_own_and_not_the_backlogs() {
    let dir = tempfile::tempdir().unwrap();
    let file = coin_profiles(dir.path());
    let month = |backlog: &str| -> Value {
        let v = json(&[
            "--profiles",
            file.to_str().unwrap(),
            "--mix",
            &format!("x={backlog}"),
            "--tasks-per-month",
            "200",
        ]);
        v["estimate"]["cost_per_month_micros"].clone()
    };
    // By hand: a month is $0.10 × 200 + $1.00 × Binomial(200, 1/2): mean $120, sd $7.07,
    // p5 ≈ $108.4 and p95 ≈ $131.6 — whether the backlog has 50 tasks or 500. (Scaling the
    // backlog's per-task interval by 200 gave ±$28 for 50 tasks and ±$9 for 500.)
    let (small, large) = (month("50"), month("500"));
    let f = |v: &Value, k: &str| v[k].as_f64().unwrap() / 1e6;
    for m in [&small, &large] {
        assert!((f(m, "mean") - 120.0).abs() < 0.6, "{m}");
        assert!((f(m, "p5") - 108.4).abs() < 2.0, "{m}");
        assert!((f(m, "p95") - 131.6).abs() < 2.0, "{m}");
    }
    assert!((f(&small, "p5") - f(&large, "p5")).abs() < 2.0);
    assert!((f(&small, "p95") - f(&large, "p95")).abs() < 2.0);
    // One task a month: $0.10 or $1.10, each half the time.
    let one = json(&[
        "--profiles",
        file.to_str().unwrap(),
        "--mix",
        "x=50",
        "--tasks-per-month",
        "1",
    ]);
    let m = &one["estimate"]["cost_per_month_micros"];
    assert_eq!((f(m, "p5"), f(m, "p95")), (0.1, 1.1));
}

#[test]
fn the_text_prints_the_caveats_the_like_for_like_person_and_fixed_width_dollars() {
    let dir = tempfile::tempdir().unwrap();
    let file = coin_profiles(dir.path());
    let out = estimate(&[
        "--profiles",
        file.to_str().unwrap(),
        "--mix",
        "x=40",
        "--hourly-rate",
        "90",
        "--seed",
        "2",
    ]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("caveats:"), "{text}");
    assert!(text.contains("drawn independently of whether that attempt succeeds"));
    assert!(text.contains("simulation spread under these assumptions only"));
    // 2 h × $90 = $180 a task, set against the agents' cost per solved task, and a person's
    // cost for the tasks the agents solve.
    assert!(
        text.contains("$180.0000 a task (2 h at $90.0000 an hour), against the agents'"),
        "{text}"
    );
    assert!(text.contains("tasks the agents solve a month would cost a person"));
    // Every dollar amount has four decimals.
    for word in text.split_whitespace().filter(|w| w.starts_with('$')) {
        let digits = word.trim_end_matches([',', ';', ')']);
        assert_eq!(
            digits.split_once('.').map(|(_, d)| d.len()),
            Some(4),
            "{word}"
        );
    }
}

#[test]
fn a_cascade_naming_a_model_twice_is_refused_with_its_name() {
    let out = estimate(&[
        "--cascade",
        "deepseek-v3.2-reasoner,gemini-3-pro-preview,deepseek-v3.2-reasoner",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`deepseek-v3.2-reasoner`") && err.contains("twice"),
        "{err}"
    );
}

/// Dollars of a JSON number's text as integer micro-dollars (the test's own parsing).
fn micros(text: &str) -> u64 {
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    let frac = format!("{frac:0<6}");
    whole.parse::<u64>().unwrap() * 1_000_000 + frac[..6].parse::<u64>().unwrap()
}

#[test]
fn false_rejects_agree_with_replay_within_the_estimates_interval() {
    const CASCADE: &str = "deepseek-v3.2-reasoner,gemini-3-pro-preview";
    let (cheap, strong) = ("deepseek-v3.2-reasoner", "gemini-3-pro-preview");
    // From the data file: each task's (cheap resolved, strong resolved, cheap cost, strong
    // cost).
    let path = support::workspace_root().join("examples/data/swebench-verified-outcomes.jsonl");
    let tasks: Vec<(bool, bool, u64, u64)> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|line| {
            let v: serde_json::Map<String, Value> = serde_json::from_str(line).unwrap();
            let run = |m: &str| {
                let r = &v["runs"][m];
                (
                    r["resolved"].as_bool().unwrap(),
                    micros(&r["cost_usd"].to_string()),
                )
            };
            let ((a, ca), (b, cb)) = (run(cheap), run(strong));
            (a, b, ca, cb)
        })
        .collect();
    for (rate, text) in [(0.1, "0.1"), (0.3, "0.3")] {
        // By hand: a task both solve ends solved unless both are rejected (1 - r²); one only
        // the cheap model solves, 1 - r; one only the strong model solves, 1 - r. The strong
        // model is paid when the cheap one failed, or solved and was rejected (r).
        let solved: f64 = tasks
            .iter()
            .map(|&(a, b, _, _)| match (a, b) {
                (true, true) => 1.0 - rate * rate,
                (true, false) | (false, true) => 1.0 - rate,
                (false, false) => 0.0,
            })
            .sum();
        let cost: f64 = tasks
            .iter()
            .map(|&(a, _, ca, cb)| ca as f64 + if a { rate } else { 1.0 } * cb as f64)
            .sum();
        let v = json(&["--cascade", CASCADE, "--false-reject", text, "--seed", "4"]);
        let e = &v["estimate"];
        let s = &e["tasks_solved"];
        let (p5, mean, p95) = (
            s["p5"].as_f64().unwrap(),
            s["mean"].as_f64().unwrap(),
            s["p95"].as_f64().unwrap(),
        );
        assert!(
            (mean - solved).abs() < 1.5,
            "{rate}: {mean} against {solved}"
        );
        let c = &e["cost_per_task_micros"];
        let per_task = cost / 500.0;
        assert!(
            (c["mean"].as_f64().unwrap() - per_task).abs() < 0.005 * per_task,
            "{rate}: {c} against {per_task}"
        );
        // Replay, on the same data with the same error rate, falls inside the interval.
        for seed in ["0", "1", "2"] {
            let out = Command::new(env!("CARGO_BIN_EXE_gaffer"))
                .args(["replay", "--data", path.to_str().unwrap()])
                .args(["--cascade", CASCADE, "--false-reject", text, "--seed", seed])
                .args(["--format", "json"])
                .output()
                .unwrap();
            assert!(out.status.success());
            let results: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
            let r = &results[0];
            let replayed = r["solved"].as_f64().unwrap();
            assert!(
                p5 <= replayed && replayed <= p95,
                "{rate}, seed {seed}: replay {replayed}, estimate p5 {p5} – p95 {p95}"
            );
            let replayed = r["cost_micros"].as_f64().unwrap() / 500.0;
            assert!(
                c["p5"].as_f64().unwrap() <= replayed && replayed <= c["p95"].as_f64().unwrap(),
                "{rate}, seed {seed}: replay {replayed} a task, estimate {c}"
            );
        }
    }
}

//! `gaffer.toml` is read by one parser that refuses what it does not know, at every level: a
//! typo names its file, its line, the key's full path and the nearest valid name, and the run
//! does not start. A value that means nothing is refused the same way, never clamped.

use std::path::Path;
use std::process::Command;

/// A valid configuration with one line of every level, to put a typo into.
const BASE: &str = r#"[project]
target_branch = "main"

[agent]
max_turns = 10

[run]
workers = 1

[budget]
per_task = 1.00

[budget.per_model]
cheap = 5.00

[providers.local]
kind = "openai-compatible"
base_url = "http://127.0.0.1:9/v1"

[models.cheap]
provider = "local"
id = "m"
tier = 1
prices = { input = 1.0, output = 2.0 }

[prices]

[plugins.router]
path = "router.wasm"
fallback_model = "cheap"

[[plugins.hooks]]
path = "hook.wasm"
grants = { complete = ["cheap"] }

[economics]
hourly_rate = 50
"#;

fn gaffer_run(dir: &Path, config: &str) -> (Option<i32>, String) {
    std::fs::write(dir.join("gaffer.toml"), config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gaffer"))
        .arg("run")
        .current_dir(dir)
        .env("GAFFER_PLUGIN_CACHE", dir.join("cache"))
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The 1-based line of the first line of `text` that starts with `start`.
fn line_of(text: &str, start: &str) -> usize {
    text.lines().position(|l| l.starts_with(start)).unwrap() + 1
}

#[test]
fn an_unknown_key_at_every_level_names_its_line_path_and_nearest_name() {
    let dir = tempfile::tempdir().unwrap();
    // (replace, with, the key's full path, the suggestion)
    let cases = [
        ("[budget]\n", "[budgets]\n", "budgets", "budget"),
        ("[plugins.router]", "[plugin.router]", "plugin", "plugins"),
        (
            "target_branch",
            "target_brnch",
            "project.target_brnch",
            "target_branch",
        ),
        ("max_turns", "max_turn", "agent.max_turn", "max_turns"),
        ("workers", "worker", "run.worker", "workers"),
        ("per_task", "per_tsk", "budget.per_tsk", "per_task"),
        (
            "base_url",
            "base_ulr",
            "providers.local.base_ulr",
            "base_url",
        ),
        ("tier", "teir", "models.cheap.teir", "tier"),
        (
            "output = 2.0",
            "ouput = 2.0",
            "models.cheap.prices.ouput",
            "output",
        ),
        (
            "[prices]\n",
            "[prices]\nfle = \"p.json\"\n",
            "prices.fle",
            "file",
        ),
        (
            "fallback_model",
            "fallback_mdl",
            "plugins.router.fallback_mdl",
            "fallback_model",
        ),
        (
            "[[plugins.hooks]]",
            "[[plugins.hook]]",
            "plugins.hook",
            "hooks",
        ),
        (
            "path = \"hook.wasm\"",
            "path = \"hook.wasm\"\non_failur = \"deny\"",
            "plugins.hooks[0].on_failur",
            "on_failure",
        ),
        (
            "complete = [",
            "complet = [",
            "plugins.hooks[0].grants.complet",
            "complete",
        ),
        (
            "hourly_rate",
            "hourly_rte",
            "economics.hourly_rte",
            "hourly_rate",
        ),
    ];
    for (from, to, key, suggestion) in cases {
        assert!(BASE.contains(from), "{from}");
        let config = BASE.replacen(from, to, 1);
        let typo = key
            .rsplit(['.', ']'])
            .next()
            .unwrap()
            .trim_start_matches('[');
        let line = config
            .lines()
            .position(|l| l.contains(typo))
            .map(|i| i + 1)
            .unwrap();
        let (code, stderr) = gaffer_run(dir.path(), &config);
        assert_ne!(code, Some(0), "{key}: {stderr}");
        let wanted =
            format!("gaffer.toml:{line}: unknown key `{key}`; did you mean `{suggestion}`?");
        assert!(stderr.contains(&wanted), "{key}: wanted {wanted}\n{stderr}");
        assert!(
            !dir.path().join(".gaffer").exists(),
            "{key}: a refused configuration created state"
        );
    }
}

#[test]
fn values_that_mean_nothing_are_refused_at_their_line() {
    let dir = tempfile::tempdir().unwrap();
    for (from, to, key) in [
        ("workers = 1", "workers = 0", "run.workers"),
        ("max_turns = 10", "max_turns = 0", "agent.max_turns"),
        ("tier = 1", "tier = 0", "models.cheap.tier"),
        ("per_task = 1.00", "per_task = -1", "budget.per_task"),
        (
            "kind = \"openai-compatible\"",
            "kind = \"openai\"",
            "providers.local.kind",
        ),
        ("cheap = 5.00", "dear = 5.00", "budget.per_model.dear"),
    ] {
        let config = BASE.replacen(from, to, 1);
        let line = line_of(&config, to);
        let (code, stderr) = gaffer_run(dir.path(), &config);
        assert_ne!(code, Some(0), "{key}: {stderr}");
        let wanted = format!("gaffer.toml:{line}: `{key}`: ");
        assert!(stderr.contains(&wanted), "{key}: wanted {wanted}\n{stderr}");
    }
}

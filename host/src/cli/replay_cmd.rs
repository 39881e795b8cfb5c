//! `gaffer replay`: routing policies over recorded outcomes (a data set such as SWE-bench
//! Verified's per-model results), without spending anything.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use super::Format;
use crate::plugin::{PluginRuntime, PluginSpec, World};
use crate::report::replay::{
    Dataset, Policy, PolicyResult, Replayer, Searched, VerifierErrors, cascade_config, cascades,
    choose, pareto, render_svg, render_text,
};

/// What `gaffer replay` was asked.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    pub data: PathBuf,
    /// Replay on this project's ledger instead of `data`.
    pub from_ledger: bool,
    pub router: Option<PathBuf>,
    pub router_config: String,
    pub cascade: Option<String>,
    pub tiers: Option<String>,
    pub max_attempts: u32,
    pub false_accept: f64,
    pub false_reject: f64,
    pub seed: u64,
    pub plot: Option<PathBuf>,
    pub format: Format,
    pub search: Option<SearchOptions>,
}

/// `--search` and its companions.
#[derive(Debug, Clone)]
pub struct SearchOptions {
    /// Models to build cascades from (default: every model of the data).
    pub candidates: Option<String>,
    pub max_length: usize,
    /// Share of tasks held out to test the chosen policy.
    pub holdout: Option<f64>,
    pub budget_ratio: f64,
    /// Write the chosen cascade as `[plugins.router]` configuration here.
    pub write_config: Option<PathBuf>,
}

/// `model=tier,...` as a map; every model must be in the data.
fn parse_tiers(text: &str, data: &Dataset) -> anyhow::Result<BTreeMap<String, u8>> {
    let mut tiers = data.default_tiers();
    for pair in text.split(',').filter(|p| !p.trim().is_empty()) {
        let (model, tier) = pair
            .split_once('=')
            .with_context(|| format!("--tiers: `{pair}` is not model=tier"))?;
        let model = model.trim();
        data.check_model(model)?;
        let tier: u8 = tier
            .trim()
            .parse()
            .with_context(|| format!("--tiers: the tier of `{model}` is not a number 0-255"))?;
        tiers.insert(model.to_string(), tier);
    }
    Ok(tiers)
}

/// Model keys written `a,b,c`, in order; at least one.
pub(super) fn model_list(flag: &str, text: &str) -> anyhow::Result<Vec<String>> {
    let models: Vec<String> = text
        .split(',')
        .map(|m| m.trim().to_string())
        .filter(|m| !m.is_empty())
        .collect();
    anyhow::ensure!(!models.is_empty(), "{flag} names no model");
    Ok(models)
}

/// A probability given on the command line.
pub(super) fn rate(name: &str, value: f64) -> anyhow::Result<f64> {
    anyhow::ensure!(
        (0.0..=1.0).contains(&value),
        "{name} {value}: a rate is between 0 and 1"
    );
    Ok(value)
}

/// `gaffer replay`.
pub async fn run(options: ReplayOptions) -> anyhow::Result<ExitCode> {
    let data = if options.from_ledger {
        ledger_data()?
    } else {
        Dataset::load(&options.data)?
    };
    let replayer = Replayer {
        data: &data,
        errors: VerifierErrors {
            false_accept: rate("--false-accept", options.false_accept)?,
            false_reject: rate("--false-reject", options.false_reject)?,
        },
        seed: options.seed,
    };
    if let Some(search) = &options.search {
        return run_search(&options, search, &data).await;
    }
    let mut results: Vec<PolicyResult> = Vec::new();
    if let Some(path) = &options.router {
        let tiers = parse_tiers(options.tiers.as_deref().unwrap_or(""), &data)?;
        let runtime = PluginRuntime::builder().build()?;
        let config: serde_json::Value = serde_json::from_str(&options.router_config)
            .with_context(|| format!("--router-config is not JSON: {}", options.router_config))?;
        let plugin = runtime.load(PluginSpec::new(World::Router, path).with_config(config))?;
        let name = format!(
            "router {}",
            path.file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default()
        );
        let policy = Policy::Router {
            plugin: &plugin,
            models: data.model_infos(&tiers),
            max_attempts: options.max_attempts.max(1),
        };
        results.push(replayer.run(&name, &policy).await?);
    }
    if let Some(list) = &options.cascade {
        let models = model_list("--cascade", list)?;
        let name = format!("cascade {}", models.join(" → "));
        results.push(replayer.run(&name, &Policy::Cascade(models)).await?);
    }
    let mut singles = replayer.single_models().await?;
    singles.sort_by(|a, b| b.solved.cmp(&a.solved).then(a.cost_usd.cmp(&b.cost_usd)));
    results.extend(singles);
    results.push(replayer.oracle());
    if let Some(plot) = &options.plot {
        std::fs::write(plot, render_svg(&results))
            .with_context(|| format!("writing {}", plot.display()))?;
    }
    match options.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&results)?),
        Format::Text => {
            println!(
                "replay of {} tasks from {} (recorded costs and outcomes; verifier: {:.1}% false accepts, {:.1}% false rejects, seed {})\n",
                data.tasks.len(),
                if options.from_ledger {
                    "this project's ledger".to_string()
                } else {
                    options.data.display().to_string()
                },
                options.false_accept * 100.0,
                options.false_reject * 100.0,
                options.seed
            );
            print!("{}", render_text(&results));
            let untried: u32 = results.iter().map(|r| r.untried).sum();
            if untried > 0 {
                println!(
                    "\n{untried} task replays reached a model the data never tried there; they end unsolved"
                );
            }
            if let Some(plot) = &options.plot {
                println!("\nplot: {}", plot.display());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The outcomes recorded in the ledger of the repository in the working directory.
fn ledger_data() -> anyhow::Result<Dataset> {
    let store = super::task_cmd::open_store(Path::new("."))?;
    Ok(Dataset::from_ledger(&crate::report::History::read(
        &store,
    )?)?)
}

/// The data set shipped as an example, relative to a checkout.
pub fn default_data() -> PathBuf {
    Path::new("examples/data/swebench-verified-outcomes.jsonl").to_path_buf()
}

/// `gaffer replay --search`: the Pareto frontier of cascades, and with `--holdout` the policy
/// chosen on one part of the tasks, tested on the other.
async fn run_search(
    options: &ReplayOptions,
    search: &SearchOptions,
    data: &Dataset,
) -> anyhow::Result<ExitCode> {
    let models: Vec<String> = match &search.candidates {
        Some(list) => {
            let models = model_list("--candidates", list)?;
            for m in &models {
                data.check_model(m)?;
            }
            models
        }
        None => data.models.clone(),
    };
    anyhow::ensure!(
        (1..=4).contains(&search.max_length),
        "--max-length {}: between 1 and 4",
        search.max_length
    );
    anyhow::ensure!(
        search.budget_ratio > 0.0,
        "--budget-ratio {}: must be above 0",
        search.budget_ratio
    );
    let all = cascades(&models, search.max_length);
    let errors = VerifierErrors {
        false_accept: rate("--false-accept", options.false_accept)?,
        false_reject: rate("--false-reject", options.false_reject)?,
    };
    let (train, test) = match search.holdout {
        Some(f) => {
            anyhow::ensure!(f > 0.0 && f < 1.0, "--holdout {f}: a share between 0 and 1");
            let (train, test) = data.split(f, options.seed);
            (train, Some(test))
        }
        None => (data.clone(), None),
    };
    let on_train = Replayer {
        data: &train,
        errors,
        seed: options.seed,
    }
    .search(&all)
    .await?;
    let frontier = pareto(&on_train);
    let chosen = choose(&on_train, search.budget_ratio);
    // The chosen policy and the best single model (as chosen on the training part), on the
    // held-out part.
    let mut tested: Option<(Searched, Searched)> = None;
    if let (Some(test), Some((pick, single))) = (&test, &chosen) {
        let replay = Replayer {
            data: test,
            errors,
            seed: options.seed,
        };
        let on_test = replay
            .search(&[pick.models.clone(), single.models.clone()])
            .await?;
        tested = Some((on_test[0].clone(), on_test[1].clone()));
    }
    if let (Some(file), Some((pick, _))) = (&search.write_config, &chosen) {
        std::fs::write(file, cascade_config(&pick.models, "plugins/cascade.wasm"))
            .with_context(|| format!("writing {}", file.display()))?;
    }
    if let Some(plot) = &options.plot {
        let results: Vec<PolicyResult> = frontier.iter().map(|s| s.result.clone()).collect();
        std::fs::write(plot, render_svg(&results))
            .with_context(|| format!("writing {}", plot.display()))?;
    }
    match options.format {
        Format::Json => {
            let value = serde_json::json!({
                "searched": on_train.len(),
                "tasks_chosen_on": train.tasks.len(),
                "tasks_held_out": test.as_ref().map(|t| t.tasks.len()),
                "held_out_tasks": test.as_ref().map(|t| t.tasks.iter().map(|t| t.id.clone()).collect::<Vec<_>>()),
                "frontier": frontier,
                "chosen": chosen.as_ref().map(|c| &c.0),
                "best_single": chosen.as_ref().map(|c| &c.1),
                "held_out": tested.as_ref().map(|(p, s)| serde_json::json!({"chosen": p, "best_single": s})),
            });
            println!("{}", serde_json::to_string_pretty(&value)?);
        }
        Format::Text => {
            println!(
                "searched {} cascades of up to {} of {} models on {} tasks{}\n",
                on_train.len(),
                search.max_length,
                models.len(),
                train.tasks.len(),
                test.as_ref()
                    .map(|t| format!(" ({} more held out, seed {})", t.tasks.len(), options.seed))
                    .unwrap_or_default()
            );
            println!("Pareto frontier (cost against tasks solved):");
            let results: Vec<PolicyResult> = frontier.iter().map(|s| s.result.clone()).collect();
            print!("{}", render_text(&results));
            if let Some((pick, single)) = &chosen {
                println!(
                    "\nchosen (most solved at no more than {}× the best single model's cost): {}",
                    search.budget_ratio, pick.result.name
                );
                print!(
                    "{}",
                    render_text(&[pick.result.clone(), single.result.clone()])
                );
            }
            if let Some((pick, single)) = &tested {
                println!("\non the held-out tasks:");
                print!(
                    "{}",
                    render_text(&[pick.result.clone(), single.result.clone()])
                );
            }
            if let Some(file) = &search.write_config {
                println!(
                    "\nwrote the chosen cascade as router configuration to {}",
                    file.display()
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

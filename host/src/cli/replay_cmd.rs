//! `gaffer replay`: routing policies over recorded outcomes (a data set such as SWE-bench
//! Verified's per-model results), without spending anything.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use super::args::{dollars, positive, rate};
use super::{Format, ProjectArgs};
use crate::ledger::format_dollars_fixed;
use crate::plugin::{PluginRuntime, PluginSpec, World};
use crate::report::html::{FrontierPoint, frontier_page, mark_frontier};
use crate::report::replay::{
    Dataset, Policy, PolicyResult, Replayer, Searched, VerifierErrors, cascade_config, cascades,
    check_cascade, choose, pareto, render_svg, render_text,
};
use crate::store::MicroUsd;

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// JSON Lines of recorded outcomes (instance_id, repo, runs: {model: {resolved,
    /// cost_usd, api_calls}}).
    #[arg(long, default_value_os_t = default_data())]
    data: PathBuf,
    /// Replay on the outcomes this project's ledger recorded (the models it tried).
    #[arg(long)]
    from_ledger: bool,
    #[command(flatten)]
    project: ProjectArgs,
    /// A router plugin (`.wasm`, router world) to replay.
    #[arg(long)]
    router: Option<PathBuf>,
    /// The router's config as JSON.
    #[arg(long, default_value = "{}")]
    router_config: String,
    /// A fixed cascade of model keys, e.g. `cheap,strong`.
    #[arg(long)]
    cascade: Option<String>,
    /// Tiers the router sees, `model=tier,...` (default: by total cost in the data, in
    /// thirds).
    #[arg(long)]
    tiers: Option<String>,
    /// Attempts per task for a router.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    max_attempts: u32,
    /// The verifier's own cost per attempt, in dollars, added to each attempt's recorded cost
    /// (a ledger's recorded costs already include it).
    #[arg(long, value_parser = dollars, conflicts_with = "from_ledger")]
    verifier_cost: Option<MicroUsd>,
    /// Chance that the verifier accepts an unresolved attempt.
    #[arg(long, default_value_t = 0.0, value_parser = rate)]
    false_accept: f64,
    /// Chance that the verifier rejects a resolved attempt.
    #[arg(long, default_value_t = 0.0, value_parser = rate)]
    false_reject: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Write a plot of cost against tasks solved: an interactive HTML page when the file ends
    /// in `.html` (every policy a point with its name, the Pareto frontier drawn, the chosen
    /// cascade marked), an SVG otherwise.
    #[arg(long)]
    plot: Option<PathBuf>,
    #[command(flatten)]
    search: SearchArgs,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

/// `--search` and its companions.
#[derive(Debug, Args)]
pub struct SearchArgs {
    /// Enumerate cascades and print the Pareto frontier of cost against tasks solved.
    #[arg(long)]
    search: bool,
    /// Models the search builds cascades from (default: every model of the data).
    #[arg(long, requires = "search")]
    candidates: Option<String>,
    /// Longest cascade searched.
    #[arg(long, default_value_t = 3, requires = "search", value_parser = clap::value_parser!(u8).range(1..=4))]
    max_length: u8,
    /// Share of tasks held out: the policy is chosen on the rest and reported on these.
    #[arg(long, requires = "search")]
    holdout: Option<f64>,
    /// The chosen policy may cost at most this times the best single model's cost.
    #[arg(long, default_value_t = 1.0, requires = "search", value_parser = positive)]
    budget_ratio: f64,
    /// Write the chosen cascade as `[plugins.router]` configuration (the cascade router).
    #[arg(long, requires = "search")]
    write_config: Option<PathBuf>,
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

/// Model keys written `a,b,c`, in order; at least one, none twice.
pub fn model_list(flag: &str, text: &str) -> anyhow::Result<Vec<String>> {
    let models: Vec<String> = text
        .split(',')
        .map(|m| m.trim().to_string())
        .filter(|m| !m.is_empty())
        .collect();
    anyhow::ensure!(!models.is_empty(), "{flag} names no model");
    check_cascade(&models).map_err(|e| anyhow::anyhow!("{flag}: {e}"))?;
    Ok(models)
}

/// What the replay's costs are made of, for the header.
fn basis(options: &ReplayArgs) -> String {
    let verifier = if options.from_ledger {
        "the verifier's cost as the ledger recorded it (its rows are in each attempt's cost)"
            .to_string()
    } else {
        format!(
            "cost = each attempt's recorded cost + {} an attempt for the verifier (--verifier-cost)",
            format_dollars_fixed(options.verifier_cost.unwrap_or_default(), 4)
        )
    };
    format!(
        "{verifier}; verifier: {:.1}% false accepts, {:.1}% false rejects, seed {}",
        options.false_accept * 100.0,
        options.false_reject * 100.0,
        options.seed
    )
}

/// `gaffer replay`.
pub async fn run(options: ReplayArgs) -> anyhow::Result<ExitCode> {
    let data = if options.from_ledger {
        let store = options.project.project().open_store()?;
        Dataset::from_ledger(&crate::report::History::read(&*store)?)?
    } else {
        Dataset::load(&options.data)?
    };
    let replayer = Replayer {
        data: &data,
        errors: VerifierErrors {
            false_accept: options.false_accept,
            false_reject: options.false_reject,
        },
        verifier_cost: options.verifier_cost.unwrap_or_default(),
        seed: options.seed,
    };
    if options.search.search {
        return run_search(&options, &options.search, &data).await;
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
            max_attempts: options.max_attempts,
        };
        results.push(replayer.run(&name, &policy).await?);
    }
    if let Some(list) = &options.cascade {
        let models = model_list("--cascade", list)?;
        let name = format!("cascade {}", models.join(" → "));
        results.push(replayer.run(&name, &Policy::Cascade(models)).await?);
    }
    let mut singles = replayer.single_models().await?;
    singles.sort_by(|a, b| {
        b.solved
            .cmp(&a.solved)
            .then(a.cost_micros.cmp(&b.cost_micros))
    });
    results.extend(singles);
    results.push(replayer.oracle());
    if let Some(plot) = &options.plot {
        // The policy asked about (a router or a cascade, listed first) is the one marked.
        let asked = options.router.is_some() || options.cascade.is_some();
        let mut points: Vec<FrontierPoint> = results
            .iter()
            .enumerate()
            .map(|(i, r)| point(r, asked && i == 0))
            .collect();
        mark_frontier(&mut points);
        write_plot(plot, &results, &points, &basis(&options))?;
    }
    match options.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&results)?),
        Format::Text => {
            println!(
                "replay of {} tasks from {} (recorded costs and outcomes)\n{}\n",
                data.tasks.len(),
                if options.from_ledger {
                    "this project's ledger".to_string()
                } else {
                    options.data.display().to_string()
                },
                basis(&options)
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

/// A policy's result as a point of the plot.
fn point(r: &PolicyResult, chosen: bool) -> FrontierPoint {
    FrontierPoint {
        name: r.name.clone(),
        cost_micros: r.cost_micros,
        solved: r.solved,
        tasks: r.tasks,
        frontier: false,
        chosen,
    }
}

/// `--plot`: the interactive page when the file ends in `.html` or `.htm`, the SVG of
/// `results` otherwise.
fn write_plot(
    plot: &Path,
    results: &[PolicyResult],
    points: &[FrontierPoint],
    basis: &str,
) -> anyhow::Result<()> {
    let html = plot
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("html") || e.eq_ignore_ascii_case("htm"));
    let text = if html {
        frontier_page(points, "gaffer replay: cost against tasks solved", basis)
    } else {
        render_svg(results)
    };
    std::fs::write(plot, text).with_context(|| format!("writing {}", plot.display()))
}

/// The data set shipped as an example, relative to a checkout.
pub fn default_data() -> PathBuf {
    Path::new("examples/data/swebench-verified-outcomes.jsonl").to_path_buf()
}

/// `gaffer replay --search`: the Pareto frontier of cascades, and with `--holdout` the policy
/// chosen on one part of the tasks, tested on the other.
async fn run_search(
    options: &ReplayArgs,
    search: &SearchArgs,
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
    let all = cascades(&models, usize::from(search.max_length));
    let errors = VerifierErrors {
        false_accept: options.false_accept,
        false_reject: options.false_reject,
    };
    let (train, test) = match search.holdout {
        Some(f) => {
            anyhow::ensure!(f > 0.0 && f < 1.0, "--holdout {f}: a share between 0 and 1");
            let (train, test) = data.split(f, options.seed);
            (train, Some(test))
        }
        None => (data.clone(), None),
    };
    let verifier_cost = options.verifier_cost.unwrap_or_default();
    let on_train = Replayer {
        data: &train,
        errors,
        verifier_cost,
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
            verifier_cost,
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
        let chosen_name = chosen.as_ref().map(|(pick, _)| pick.result.name.as_str());
        let on_frontier: std::collections::BTreeSet<&str> =
            frontier.iter().map(|s| s.result.name.as_str()).collect();
        let points: Vec<FrontierPoint> = on_train
            .iter()
            .map(|s| FrontierPoint {
                frontier: on_frontier.contains(s.result.name.as_str()),
                ..point(&s.result, chosen_name == Some(s.result.name.as_str()))
            })
            .collect();
        write_plot(plot, &results, &points, &basis(options))?;
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
                "searched {} cascades of up to {} of {} models on {} tasks{}\n{}\n",
                on_train.len(),
                search.max_length,
                models.len(),
                train.tasks.len(),
                test.as_ref()
                    .map(|t| format!(" ({} more held out, seed {})", t.tasks.len(), options.seed))
                    .unwrap_or_default(),
                basis(options)
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

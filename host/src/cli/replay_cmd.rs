//! `gaffer replay`: routing policies over recorded outcomes (a data set such as SWE-bench
//! Verified's per-model results), without spending anything.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use super::Format;
use crate::plugin::{PluginRuntime, PluginSpec, World};
use crate::report::replay::{
    Dataset, Policy, PolicyResult, Replayer, VerifierErrors, render_svg, render_text,
};

/// What `gaffer replay` was asked.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    pub data: PathBuf,
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

fn rate(name: &str, value: f64) -> anyhow::Result<f64> {
    anyhow::ensure!(
        (0.0..=1.0).contains(&value),
        "{name} {value}: a rate is between 0 and 1"
    );
    Ok(value)
}

/// `gaffer replay`.
pub async fn run(options: ReplayOptions) -> anyhow::Result<ExitCode> {
    let data = Dataset::load(&options.data)?;
    let replayer = Replayer {
        data: &data,
        errors: VerifierErrors {
            false_accept: rate("--false-accept", options.false_accept)?,
            false_reject: rate("--false-reject", options.false_reject)?,
        },
        seed: options.seed,
    };
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
        let models: Vec<String> = list
            .split(',')
            .map(|m| m.trim().to_string())
            .filter(|m| !m.is_empty())
            .collect();
        anyhow::ensure!(!models.is_empty(), "--cascade names no model");
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
                options.data.display(),
                options.false_accept * 100.0,
                options.false_reject * 100.0,
                options.seed
            );
            print!("{}", render_text(&results));
            if let Some(plot) = &options.plot {
                println!("\nplot: {}", plot.display());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The data set shipped as an example, relative to a checkout.
pub fn default_data() -> PathBuf {
    Path::new("examples/data/swebench-verified-outcomes.jsonl").to_path_buf()
}

//! `gaffer estimate`: a backlog's expected cost and tasks solved before any pipeline exists,
//! from per-label cascade profiles (hand-written, or measured on an outcome data set).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use super::Format;
use super::args::{dollars, positive, rate};
use super::replay_cmd::{default_data, model_list};
use crate::ledger::format_dollars_fixed;
use crate::report::estimate::{
    LabelProfile, ProfilesFile, Scenario, Spread, profiles_from_data, simulate,
};
use crate::report::replay::{Dataset, VerifierErrors};
use crate::store::MicroUsd;

/// Decimal places of every dollar amount printed: one width for all.
const DECIMALS: u32 = 4;

#[derive(Debug, Args)]
pub struct EstimateArgs {
    /// Hand-written profiles (TOML: [[profile]] label, models, success, cost_per_attempt).
    #[arg(long, conflicts_with = "cascade")]
    profiles: Option<PathBuf>,
    /// Outcome data to measure profiles on (with --cascade).
    #[arg(long, default_value_os_t = default_data())]
    data: PathBuf,
    /// The cascade to measure on the data, e.g. `cheap,strong`.
    #[arg(long)]
    cascade: Option<String>,
    /// The backlog: label=count,... (default with --cascade: the data's own mix).
    #[arg(long)]
    mix: Option<String>,
    /// Scale the mix to this many tasks.
    #[arg(long)]
    tasks: Option<u32>,
    /// Tasks a month: each simulation draws a month of this many tasks from the mix (default:
    /// the backlog's size).
    #[arg(long, value_parser = positive)]
    tasks_per_month: Option<f64>,
    /// The verifier's own cost per attempt, in dollars.
    #[arg(long, value_parser = dollars)]
    verifier_cost: Option<MicroUsd>,
    /// Chance that the verifier accepts an unresolved attempt.
    #[arg(long, default_value_t = 0.0, value_parser = rate)]
    false_accept: f64,
    /// Chance that the verifier rejects a resolved attempt.
    #[arg(long, default_value_t = 0.0, value_parser = rate)]
    false_reject: f64,
    #[arg(long, default_value_t = 2000)]
    simulations: u32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// A person's hourly rate in dollars, for the baseline (compared on the tasks the agents
    /// solve).
    #[arg(long, value_parser = dollars)]
    hourly_rate: Option<MicroUsd>,
    /// A person's hours per task, for the baseline.
    #[arg(long, default_value_t = 2.0, value_parser = positive)]
    hours_per_task: f64,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

fn parse_mix(text: &str) -> anyhow::Result<BTreeMap<String, u32>> {
    let mut mix = BTreeMap::new();
    for pair in text.split(',').filter(|p| !p.trim().is_empty()) {
        let (label, n) = pair
            .rsplit_once('=')
            .with_context(|| format!("--mix: `{pair}` is not label=count"))?;
        let n: u32 = n
            .trim()
            .parse()
            .with_context(|| format!("--mix: the count of `{label}` is not a whole number"))?;
        mix.insert(label.trim().to_string(), n);
    }
    anyhow::ensure!(!mix.is_empty(), "--mix names no label");
    Ok(mix)
}

/// Scale a mix to `total` tasks, keeping its proportions (largest remainders).
fn scale(mix: &BTreeMap<String, u32>, total: u32) -> BTreeMap<String, u32> {
    let sum: u32 = mix.values().sum();
    if sum == 0 {
        return mix.clone();
    }
    let mut out: Vec<(String, u32, f64)> = mix
        .iter()
        .map(|(l, n)| {
            let exact = f64::from(*n) * f64::from(total) / f64::from(sum);
            (l.clone(), exact.floor() as u32, exact - exact.floor())
        })
        .collect();
    let mut left = total - out.iter().map(|(_, n, _)| n).sum::<u32>();
    out.sort_by(|a, b| b.2.total_cmp(&a.2));
    for entry in out.iter_mut() {
        if left == 0 {
            break;
        }
        entry.1 += 1;
        left -= 1;
    }
    out.into_iter().map(|(l, n, _)| (l, n)).collect()
}

/// `gaffer estimate`.
pub fn run(options: EstimateArgs) -> anyhow::Result<ExitCode> {
    let (profiles, default_mix, source): (
        BTreeMap<String, LabelProfile>,
        Option<BTreeMap<String, u32>>,
        String,
    ) = match (&options.profiles, &options.cascade) {
        (Some(file), _) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading {}", file.display()))?;
            let parsed: ProfilesFile =
                toml::from_str(&text).with_context(|| file.display().to_string())?;
            let profiles = parsed
                .profiles()
                .with_context(|| file.display().to_string())?;
            (profiles, None, format!("profiles from {}", file.display()))
        }
        (None, Some(list)) => {
            let data = Dataset::load(&options.data)?;
            let cascade = model_list("--cascade", list)?;
            let profiles = profiles_from_data(&data, &cascade)?;
            let mut mix = BTreeMap::new();
            for t in &data.tasks {
                *mix.entry(t.repo.clone()).or_insert(0u32) += 1;
            }
            (
                profiles,
                Some(mix),
                format!(
                    "profiles measured on {} for the cascade {}",
                    options.data.display(),
                    cascade.join(" → ")
                ),
            )
        }
        (None, None) => anyhow::bail!(
            "give --profiles FILE.toml, or --cascade A,B (profiles measured on --data)"
        ),
    };
    let mut mix = match (&options.mix, default_mix) {
        (Some(text), _) => parse_mix(text)?,
        (None, Some(mix)) => mix,
        (None, None) => anyhow::bail!("give the backlog's mix: --mix label=count,..."),
    };
    if let Some(n) = options.tasks {
        mix = scale(&mix, n);
    }
    let total: u32 = mix.values().sum();
    let hourly = options.hourly_rate;
    let scenario = Scenario {
        mix: mix.clone(),
        errors: VerifierErrors {
            false_accept: options.false_accept,
            false_reject: options.false_reject,
        },
        verifier_cost: options.verifier_cost.unwrap_or_default(),
        tasks_per_month: options.tasks_per_month.unwrap_or(f64::from(total)),
        simulations: options.simulations,
        seed: options.seed,
        human_per_task: hourly
            .map(|h| MicroUsd((h.get() as f64 * options.hours_per_task).round() as u64)),
    };
    let estimate = simulate(&profiles, &scenario)?;
    let used: Vec<&LabelProfile> = mix.keys().filter_map(|l| profiles.get(l)).collect();
    match options.format {
        Format::Json => {
            let value = serde_json::json!({
                "estimate": estimate,
                "assumptions": {
                    "source": source,
                    "mix": mix,
                    "profiles": used,
                    "verifier_cost_micros": scenario.verifier_cost,
                    "false_accept": options.false_accept,
                    "false_reject": options.false_reject,
                    "tasks_per_month": estimate.tasks_per_month,
                    "hourly_rate_micros": hourly,
                    "hours_per_task": hourly.map(|_| options.hours_per_task),
                    "human_per_task_micros": scenario.human_per_task,
                    "simulations": estimate.simulations,
                    "seed": estimate.seed,
                },
            });
            println!("{}", serde_json::to_string_pretty(&value)?);
        }
        Format::Text => {
            let usd = |v: f64| format_dollars_fixed(MicroUsd::from_f64(v), DECIMALS);
            let range = |s: &Spread| format!("(p5 {} – p95 {})", usd(s.p5), usd(s.p95));
            println!(
                "estimate for {total} tasks ({} simulations, seed {})",
                estimate.simulations, estimate.seed
            );
            let c = &estimate.cost_per_task_micros;
            println!(
                "  cost per task     {} {}, the backlog's average",
                usd(c.mean),
                range(c)
            );
            let s = &estimate.tasks_solved;
            println!(
                "  tasks solved      {:.1} (p5 {:.0} – p95 {:.0}) of {total}",
                s.mean, s.p5, s.p95
            );
            if let Some(p) = &estimate.cost_per_solved_micros {
                println!("  cost per solved   {} {}", usd(p.mean), range(p));
            }
            let a = &estimate.attempts_per_task;
            println!(
                "  attempts a task   {:.2} (p5 {:.2} – p95 {:.2})",
                a.mean, a.p5, a.p95
            );
            let m = &estimate.cost_per_month_micros;
            println!(
                "  cost per month    {} {}, a month of {} tasks simulated at that volume",
                usd(m.mean),
                range(m),
                estimate.tasks_per_month
            );
            let sm = &estimate.solved_per_month;
            println!(
                "  solved a month    {:.1} (p5 {:.0} – p95 {:.0}) of {}",
                sm.mean, sm.p5, sm.p95, estimate.tasks_per_month
            );
            if let (Some(h), Some(rate)) = (&estimate.human, hourly) {
                println!(
                    "  a person          {} a task ({} h at {} an hour){}",
                    usd(h.per_task_micros.as_f64()),
                    options.hours_per_task,
                    format_dollars_fixed(rate, DECIMALS),
                    estimate
                        .cost_per_solved_micros
                        .map(|p| format!(", against the agents' {} a solved task", usd(p.mean)))
                        .unwrap_or_default()
                );
                let f = &h.for_month_solved_micros;
                println!(
                    "  like for like     the {:.1} tasks the agents solve a month would cost a person {} {};\n                    \
                     the agents spend {} on that month, the attempts at its unsolved tasks included",
                    sm.mean,
                    usd(f.mean),
                    range(f),
                    usd(m.mean)
                );
            }
            println!("\ncaveats:");
            for caveat in &estimate.caveats {
                println!("  - {caveat}");
            }
            println!("\nassumptions: {source}");
            println!(
                "  verifier: {} an attempt, {:.1}% false accepts, {:.1}% false rejects",
                format_dollars_fixed(scenario.verifier_cost, DECIMALS),
                options.false_accept * 100.0,
                options.false_reject * 100.0
            );
            println!(
                "  {:<28} {:>6}  steps: model, P(success | earlier failed), P(success | an earlier \
                 step solved it: after a false reject), mean cost, calls, observed",
                "label", "tasks"
            );
            for p in used {
                let steps: Vec<String> = p
                    .steps
                    .iter()
                    .map(|s| {
                        format!(
                            "{} {:.3} {} {} {:.0} n={}",
                            s.model,
                            s.success,
                            s.success_after_solved
                                .map(|a| format!("{a:.3}"))
                                .unwrap_or_else(|| "-".into()),
                            format_dollars_fixed(s.mean_cost, DECIMALS),
                            s.calls_per_attempt,
                            s.observed
                        )
                    })
                    .collect();
                println!(
                    "  {:<28} {:>6}  {}",
                    p.label,
                    mix[&p.label],
                    steps.join(" | ")
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

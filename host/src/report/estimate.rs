//! `gaffer estimate`: what a backlog will cost before any pipeline exists. Per-label profiles
//! give, for each step of a cascade, the chance that the step's model succeeds *given that the
//! steps before it failed* (outcomes are correlated: independent rates overstate what a
//! cascade solves) and what an attempt costs; a seeded Monte Carlo simulation of the backlog
//! gives the expected cost and tasks solved with the p5–p95 spread of their means.

use std::collections::BTreeMap;

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

use super::replay::{Dataset, ReplayError, VerifierErrors, draw};
use crate::ledger::MicroUsd;

/// One step of a label's cascade.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StepProfile {
    pub model: String,
    /// P(this step succeeds | every earlier step failed).
    pub success: f64,
    /// What an attempt at this step costs: observed costs to draw from (one value: fixed).
    #[serde(skip)]
    pub costs: Vec<MicroUsd>,
    /// Their mean, µ$.
    pub mean_cost: MicroUsd,
    pub calls_per_attempt: f64,
    /// Tasks the profile was measured on at this step (0: given by hand).
    pub observed: u32,
}

/// A label's cascade profile.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LabelProfile {
    pub label: String,
    pub steps: Vec<StepProfile>,
}

/// Profiles measured on a data set for `cascade`: per label (the task's repository), the
/// conditional success and the observed costs of each step. A step no task of a label reached
/// borrows the figures of every label.
pub fn profiles_from_data(
    data: &Dataset,
    cascade: &[String],
) -> Result<BTreeMap<String, LabelProfile>, ReplayError> {
    for m in cascade {
        data.check_model(m)?;
    }
    let measure = |tasks: &[&super::replay::DataTask]| -> Vec<(u32, u32, Vec<MicroUsd>, f64)> {
        let mut reached: Vec<&super::replay::DataTask> = tasks.to_vec();
        let mut steps = Vec::new();
        for model in cascade {
            let mut ok = 0u32;
            let mut costs = Vec::new();
            let mut calls = 0u64;
            let mut failed = Vec::new();
            for t in &reached {
                if let Some(run) = t.runs.get(model) {
                    costs.push(run.cost);
                    calls += u64::from(run.api_calls);
                    if run.resolved {
                        ok += 1;
                    } else {
                        failed.push(*t);
                    }
                }
            }
            let n = costs.len() as u32;
            steps.push((
                n,
                ok,
                costs,
                if n == 0 {
                    0.0
                } else {
                    calls as f64 / f64::from(n)
                },
            ));
            reached = failed;
        }
        steps
    };
    let all: Vec<&super::replay::DataTask> = data.tasks.iter().collect();
    let pooled = measure(&all);
    let mut labels: BTreeMap<String, Vec<&super::replay::DataTask>> = BTreeMap::new();
    for t in &data.tasks {
        labels.entry(t.repo.clone()).or_default().push(t);
    }
    let mut out = BTreeMap::new();
    for (label, tasks) in labels {
        let measured = measure(&tasks);
        let steps = cascade
            .iter()
            .zip(measured.into_iter().zip(&pooled))
            .map(|(model, ((n, ok, costs, calls), pool))| {
                let (n, ok, costs, calls) = if n == 0 {
                    (pool.0, pool.1, pool.2.clone(), pool.3)
                } else {
                    (n, ok, costs, calls)
                };
                let mean_cost = costs.iter().sum::<MicroUsd>().per(costs.len() as u64);
                StepProfile {
                    model: model.clone(),
                    success: if n == 0 {
                        0.0
                    } else {
                        f64::from(ok) / f64::from(n)
                    },
                    costs,
                    mean_cost,
                    calls_per_attempt: calls,
                    observed: n,
                }
            })
            .collect();
        out.insert(label.clone(), LabelProfile { label, steps });
    }
    Ok(out)
}

/// What to simulate.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Tasks per label.
    pub mix: BTreeMap<String, u32>,
    pub errors: VerifierErrors,
    /// The verifier's own cost per attempt, µ$ (a model review, say).
    pub verifier_cost: MicroUsd,
    pub tasks_per_month: f64,
    pub simulations: u32,
    pub seed: u64,
    /// A person's cost per task, µ$ (hourly × hours), for the baseline.
    pub human_per_task: Option<MicroUsd>,
}

/// A mean and the p5–p95 spread of it across simulations.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Spread {
    pub mean: f64,
    pub p5: f64,
    pub p95: f64,
}

fn spread(mut values: Vec<f64>) -> Spread {
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    Spread {
        mean: values.iter().sum::<f64>() / values.len() as f64,
        p5: at(0.05),
        p95: at(0.95),
    }
}

/// The estimate.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Estimate {
    pub tasks: u32,
    /// Dollars per task (µ$ as float: a mean).
    pub cost_per_task_micros: Spread,
    pub tasks_solved: Spread,
    pub cost_per_month_micros: Spread,
    pub attempts_per_task: Spread,
    pub human_per_month_micros: Option<f64>,
    pub simulations: u32,
    pub seed: u64,
}

/// Simulate the backlog `scenario.simulations` times.
pub fn simulate(
    profiles: &BTreeMap<String, LabelProfile>,
    scenario: &Scenario,
) -> Result<Estimate, String> {
    let total: u32 = scenario.mix.values().sum();
    if total == 0 {
        return Err("the backlog is empty: give a mix with at least one task".to_string());
    }
    for label in scenario.mix.keys() {
        if !profiles.contains_key(label) {
            return Err(format!(
                "no profile for label `{label}` (profiles: {})",
                profiles.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    let mut rng = ChaCha8Rng::seed_from_u64(scenario.seed);
    let (mut costs, mut solved, mut attempts) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..scenario.simulations.max(1) {
        let mut cost = MicroUsd::ZERO;
        let mut ok = 0u32;
        let mut tries = 0u32;
        for (label, n) in &scenario.mix {
            let profile = &profiles[label];
            for _ in 0..*n {
                for step in &profile.steps {
                    tries += 1;
                    cost += scenario.verifier_cost
                        + match step.costs.len() {
                            0 => step.mean_cost,
                            len => step.costs[(rng.next_u64() % len as u64) as usize],
                        };
                    let resolved = draw(&mut rng) < step.success;
                    let accepted = if resolved {
                        !(scenario.errors.false_reject > 0.0
                            && draw(&mut rng) < scenario.errors.false_reject)
                    } else {
                        scenario.errors.false_accept > 0.0
                            && draw(&mut rng) < scenario.errors.false_accept
                    };
                    if accepted {
                        ok += u32::from(resolved);
                        break;
                    }
                }
            }
        }
        costs.push(cost.as_f64() / f64::from(total));
        solved.push(f64::from(ok));
        attempts.push(f64::from(tries) / f64::from(total));
    }
    let per_task = spread(costs);
    let month = Spread {
        mean: per_task.mean * scenario.tasks_per_month,
        p5: per_task.p5 * scenario.tasks_per_month,
        p95: per_task.p95 * scenario.tasks_per_month,
    };
    Ok(Estimate {
        tasks: total,
        cost_per_task_micros: per_task,
        tasks_solved: spread(solved),
        cost_per_month_micros: month,
        attempts_per_task: spread(attempts),
        human_per_month_micros: scenario
            .human_per_task
            .map(|h| h.as_f64() * scenario.tasks_per_month),
        simulations: scenario.simulations.max(1),
        seed: scenario.seed,
    })
}

/// Hand-written profiles (`--profiles FILE.toml`): `[[profile]] label, models, success,
/// cost_per_attempt (dollars), calls_per_attempt`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileToml {
    pub label: String,
    pub models: Vec<String>,
    pub success: Vec<f64>,
    pub cost_per_attempt: Vec<crate::config::Dollars>,
    #[serde(default)]
    pub calls_per_attempt: Vec<f64>,
}

/// The file of hand-written profiles.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfilesFile {
    pub profile: Vec<ProfileToml>,
}

impl ProfilesFile {
    /// Check and turn into profiles; errors name the label and the field.
    pub fn profiles(&self) -> Result<BTreeMap<String, LabelProfile>, String> {
        let mut out = BTreeMap::new();
        for p in &self.profile {
            let n = p.models.len();
            if n == 0 || p.success.len() != n || p.cost_per_attempt.len() != n {
                return Err(format!(
                    "profile `{}`: `models`, `success` and `cost_per_attempt` need one entry per step",
                    p.label
                ));
            }
            let mut steps = Vec::new();
            for i in 0..n {
                let success = p.success[i];
                if !(0.0..=1.0).contains(&success) {
                    return Err(format!(
                        "profile `{}`: success[{i}] = {success} is not between 0 and 1",
                        p.label
                    ));
                }
                let cost = crate::ledger::parse_dollars(&p.cost_per_attempt[i].text())
                    .map_err(|e| format!("profile `{}`: cost_per_attempt[{i}]: {e}", p.label))?;
                steps.push(StepProfile {
                    model: p.models[i].clone(),
                    success,
                    costs: vec![cost],
                    mean_cost: cost,
                    calls_per_attempt: p.calls_per_attempt.get(i).copied().unwrap_or(0.0),
                    observed: 0,
                });
            }
            out.insert(
                p.label.clone(),
                LabelProfile {
                    label: p.label.clone(),
                    steps,
                },
            );
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(success: &[f64], cost: &[u64]) -> BTreeMap<String, LabelProfile> {
        let steps = success
            .iter()
            .zip(cost)
            .map(|(s, c)| StepProfile {
                model: "m".into(),
                success: *s,
                costs: vec![MicroUsd(*c)],
                mean_cost: MicroUsd(*c),
                calls_per_attempt: 1.0,
                observed: 0,
            })
            .collect();
        [(
            "x".to_string(),
            LabelProfile {
                label: "x".into(),
                steps,
            },
        )]
        .into_iter()
        .collect()
    }

    fn scenario(n: u32) -> Scenario {
        Scenario {
            mix: [("x".to_string(), n)].into_iter().collect(),
            errors: VerifierErrors::default(),
            verifier_cost: MicroUsd::ZERO,
            tasks_per_month: 100.0,
            simulations: 500,
            seed: 1,
            human_per_task: Some(MicroUsd(10)),
        }
    }

    #[test]
    fn certain_outcomes_give_exact_figures() {
        // Step one always fails (cost 3), step two always succeeds (cost 5): 8 a task.
        let e = simulate(&profile(&[0.0, 1.0], &[3, 5]), &scenario(10)).unwrap();
        assert_eq!(e.cost_per_task_micros.mean, 8.0);
        assert_eq!((e.tasks_solved.p5, e.tasks_solved.p95), (10.0, 10.0));
        assert_eq!(e.cost_per_month_micros.mean, 800.0);
        assert_eq!(e.human_per_month_micros, Some(1000.0));
    }

    #[test]
    fn a_coin_solves_about_half_and_the_spread_brackets_it() {
        let e = simulate(&profile(&[0.5], &[1]), &scenario(200)).unwrap();
        assert!(
            e.tasks_solved.p5 < 100.0 && 100.0 < e.tasks_solved.p95,
            "{e:?}"
        );
        assert!((e.tasks_solved.mean - 100.0).abs() < 3.0, "{e:?}");
        // Seeded: the same again.
        assert_eq!(e, simulate(&profile(&[0.5], &[1]), &scenario(200)).unwrap());
    }

    #[test]
    fn unknown_labels_and_bad_profiles_are_named() {
        let mut s = scenario(1);
        s.mix = [("nope".to_string(), 1)].into_iter().collect();
        assert!(
            simulate(&profile(&[0.5], &[1]), &s)
                .unwrap_err()
                .contains("`nope`")
        );
        let file: ProfilesFile = toml::from_str(
            "[[profile]]\nlabel = \"bug\"\nmodels = [\"a\"]\nsuccess = [1.5]\ncost_per_attempt = [\"0.10\"]\n",
        )
        .unwrap();
        assert!(file.profiles().unwrap_err().contains("success[0]"));
    }
}

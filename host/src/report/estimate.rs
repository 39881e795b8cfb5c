//! `gaffer estimate`: what a backlog will cost before any pipeline exists. Per-label profiles
//! give, for each step of a cascade, the chance that the step's model succeeds *given what the
//! steps before it did* (outcomes are correlated: independent rates overstate what a cascade
//! solves, and a task a verifier wrongly rejected was solvable, so the next model solves it
//! more often than a task that defeated the earlier ones) and what an attempt costs. A seeded
//! Monte Carlo simulation gives the backlog's expected cost and tasks solved with the p5–p95
//! spread of their means, and a month's cost simulated at the month's own volume.

use std::collections::BTreeMap;

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

use super::replay::{Dataset, ReplayError, VerifierErrors, check_cascade, draw};
use crate::ledger::MicroUsd;

/// Why an estimate cannot be made; names the label, the step or the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EstimateError {
    #[error("the backlog is empty: give a mix with at least one task")]
    EmptyBacklog,
    #[error("no profile for label `{label}` (profiles: {known})")]
    UnknownLabel { label: String, known: String },
    #[error("profile `{label}`: {reason}")]
    Profile { label: String, reason: String },
}

/// The caveats every estimate carries: what the model leaves out.
pub const CAVEATS: [&str; 2] = [
    "each attempt's cost is drawn independently of whether that attempt succeeds (from the \
     costs observed at its step after the same earlier outcomes); if failing attempts cost more \
     than succeeding ones, or less, the figures are off by that difference",
    "the p5–p95 intervals are simulation spread under these assumptions only (the profiles, \
     the mix, the verifier's error rates, the monthly volume): they leave out that the profiles \
     are themselves measured on few tasks or guessed, and that tasks and models change",
];

/// What the tasks that reached one step after one history of earlier outcomes did there.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Cell {
    /// Tasks with a run of the step's model after this history.
    pub tasks: u32,
    /// How many of them its model solved.
    pub solved: u32,
    /// What each of their attempts cost.
    pub costs: Vec<MicroUsd>,
    /// Their model calls, summed.
    pub calls: u64,
}

impl Cell {
    fn rate(&self) -> f64 {
        if self.tasks == 0 {
            0.0
        } else {
            f64::from(self.solved) / f64::from(self.tasks)
        }
    }
}

/// One step of a label's cascade.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StepProfile {
    pub model: String,
    /// P(this step succeeds | every earlier step failed).
    pub success: f64,
    /// P(this step succeeds | an earlier step solved the task): what a task that the verifier
    /// wrongly rejected meets here. None on the first step (or when nothing measured it).
    pub success_after_solved: Option<f64>,
    /// What an attempt at this step costs after every earlier step failed: observed costs to
    /// draw from (one value: fixed).
    #[serde(skip)]
    pub costs: Vec<MicroUsd>,
    /// Their mean, µ$, rounded half up.
    pub mean_cost: MicroUsd,
    pub calls_per_attempt: f64,
    /// Tasks the profile was measured on at this step after every earlier step failed (0:
    /// given by hand).
    pub observed: u32,
    /// Measured on data: per history of the earlier steps' outcomes (`true`: that step's model
    /// solved the task), what the tasks with that history did here. The simulation draws a
    /// task's outcome and cost at this step from the cell of its own history. Empty for
    /// hand-written profiles.
    #[serde(skip)]
    pub by_history: BTreeMap<Vec<bool>, Cell>,
}

impl StepProfile {
    /// The chance of success and the costs to draw from after `history`.
    fn at(&self, history: &[bool]) -> (f64, &[MicroUsd]) {
        if let Some(cell) = self.by_history.get(history).filter(|c| c.tasks > 0) {
            return (cell.rate(), &cell.costs);
        }
        if history.contains(&true) {
            (
                self.success_after_solved.unwrap_or(self.success),
                &self.costs,
            )
        } else {
            (self.success, &self.costs)
        }
    }
}

/// A label's cascade profile.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LabelProfile {
    pub label: String,
    pub steps: Vec<StepProfile>,
}

type Cells = Vec<BTreeMap<Vec<bool>, Cell>>;

/// Per step of `cascade`, the tasks' outcomes and costs grouped by the history of the earlier
/// steps' outcomes (the joint outcomes the data gives). A task without a run of a step's model
/// ends its history there.
fn measure(tasks: &[&super::replay::DataTask], cascade: &[String]) -> Cells {
    let mut cells: Cells = vec![BTreeMap::new(); cascade.len()];
    for t in tasks {
        let mut history = Vec::with_capacity(cascade.len());
        for (step, model) in cascade.iter().enumerate() {
            let Some(run) = t.runs.get(model) else {
                break;
            };
            let cell = cells[step].entry(history.clone()).or_default();
            cell.tasks += 1;
            cell.solved += u32::from(run.resolved);
            cell.costs.push(run.cost);
            cell.calls += u64::from(run.api_calls);
            history.push(run.resolved);
        }
    }
    cells
}

/// P(success | an earlier step solved the task) over the cells of histories with a success.
fn after_solved(cells: &BTreeMap<Vec<bool>, Cell>) -> Option<f64> {
    let (tasks, solved) = cells
        .iter()
        .filter(|(h, _)| h.contains(&true))
        .fold((0u32, 0u32), |(t, s), (_, c)| (t + c.tasks, s + c.solved));
    (tasks > 0).then(|| f64::from(solved) / f64::from(tasks))
}

/// Profiles measured on a data set for `cascade`: per label (the task's repository), for each
/// step and each history of the earlier steps' outcomes, the chance of success and the
/// observed costs. A history no task of a label had at a step borrows the figures of every
/// label.
pub fn profiles_from_data(
    data: &Dataset,
    cascade: &[String],
) -> Result<BTreeMap<String, LabelProfile>, ReplayError> {
    check_cascade(cascade)?;
    for m in cascade {
        data.check_model(m)?;
    }
    let all: Vec<&super::replay::DataTask> = data.tasks.iter().collect();
    let pooled = measure(&all, cascade);
    let mut labels: BTreeMap<String, Vec<&super::replay::DataTask>> = BTreeMap::new();
    for t in &data.tasks {
        labels.entry(t.repo.clone()).or_default().push(t);
    }
    let mut out = BTreeMap::new();
    for (label, tasks) in labels {
        let own = measure(&tasks, cascade);
        let steps = cascade
            .iter()
            .enumerate()
            .zip(own.into_iter().zip(&pooled))
            .map(|((step, model), (own, pool))| {
                let failed = vec![false; step];
                let first = own
                    .get(&failed)
                    .or_else(|| pool.get(&failed))
                    .cloned()
                    .unwrap_or_default();
                let success_after_solved = if step == 0 {
                    None
                } else {
                    after_solved(&own).or_else(|| after_solved(pool))
                };
                let mut by_history = pool.clone();
                by_history.extend(own);
                StepProfile {
                    model: model.clone(),
                    success: first.rate(),
                    success_after_solved,
                    mean_cost: first
                        .costs
                        .iter()
                        .copied()
                        .sum::<MicroUsd>()
                        .per(first.costs.len() as u64),
                    calls_per_attempt: if first.tasks == 0 {
                        0.0
                    } else {
                        first.calls as f64 / f64::from(first.tasks)
                    },
                    observed: first.tasks,
                    costs: first.costs,
                    by_history,
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
    /// The month's volume; a month is that many tasks (rounded to a whole number, at least
    /// one) drawn from the mix's proportions.
    pub tasks_per_month: f64,
    pub simulations: u32,
    pub seed: u64,
    /// A person's cost per task, µ$ (hourly × hours), for the baseline.
    pub human_per_task: Option<MicroUsd>,
}

/// A mean and the p5–p95 spread across simulations.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Spread {
    pub mean: f64,
    pub p5: f64,
    pub p95: f64,
}

fn spread(mut values: Vec<f64>) -> Spread {
    if values.is_empty() {
        return Spread {
            mean: 0.0,
            p5: 0.0,
            p95: 0.0,
        };
    }
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    Spread {
        mean: values.iter().sum::<f64>() / values.len() as f64,
        p5: at(0.05),
        p95: at(0.95),
    }
}

/// A person beside the agents, like for like: the same solved tasks.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct HumanBaseline {
    /// A person's cost per task, µ$.
    pub per_task_micros: MicroUsd,
    /// What a person would cost for the tasks the agents solve in a month (µ$), to set beside
    /// `cost_per_month_micros`, which buys those same tasks (and pays for the unsolved ones'
    /// attempts too).
    pub for_month_solved_micros: Spread,
}

/// The estimate.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Estimate {
    /// Tasks in the backlog.
    pub tasks: u32,
    /// The backlog's average cost per task (µ$ as float: a mean).
    pub cost_per_task_micros: Spread,
    /// Tasks of the backlog solved.
    pub tasks_solved: Spread,
    /// The backlog's cost over its solved tasks, µ$, in the simulations that solved any (None
    /// when none did).
    pub cost_per_solved_micros: Option<Spread>,
    pub attempts_per_task: Spread,
    /// Tasks in a simulated month.
    pub tasks_per_month: u32,
    /// A month's cost: the sum over the month's tasks, simulated at the month's volume.
    pub cost_per_month_micros: Spread,
    /// Tasks solved in a month.
    pub solved_per_month: Spread,
    pub human: Option<HumanBaseline>,
    /// What the model leaves out ([`CAVEATS`]).
    pub caveats: Vec<String>,
    pub simulations: u32,
    pub seed: u64,
}

/// One task through its label's cascade: (cost, solved, attempts).
fn one_task(
    profile: &LabelProfile,
    scenario: &Scenario,
    history: &mut Vec<bool>,
    rng: &mut ChaCha8Rng,
) -> (MicroUsd, bool, u32) {
    history.clear();
    let mut cost = MicroUsd::ZERO;
    let mut tries = 0u32;
    for step in &profile.steps {
        tries += 1;
        let (success, costs) = step.at(history);
        cost += scenario.verifier_cost
            + match costs.len() {
                0 => step.mean_cost,
                len => costs[(rng.next_u64() % len as u64) as usize],
            };
        let resolved = draw(rng) < success;
        let accepted = if resolved {
            !(scenario.errors.false_reject > 0.0 && draw(rng) < scenario.errors.false_reject)
        } else {
            scenario.errors.false_accept > 0.0 && draw(rng) < scenario.errors.false_accept
        };
        if accepted {
            return (cost, resolved, tries);
        }
        history.push(resolved);
    }
    (cost, false, tries)
}

/// Simulate the backlog, and a month at `scenario.tasks_per_month`, `scenario.simulations`
/// times each.
pub fn simulate(
    profiles: &BTreeMap<String, LabelProfile>,
    scenario: &Scenario,
) -> Result<Estimate, EstimateError> {
    let total: u32 = scenario.mix.values().sum();
    if total == 0 {
        return Err(EstimateError::EmptyBacklog);
    }
    let mut labels: Vec<(&LabelProfile, u32)> = Vec::new();
    for (label, n) in &scenario.mix {
        let profile = profiles
            .get(label)
            .ok_or_else(|| EstimateError::UnknownLabel {
                label: label.clone(),
                known: profiles.keys().cloned().collect::<Vec<_>>().join(", "),
            })?;
        labels.push((profile, *n));
    }
    let month = scenario
        .tasks_per_month
        .round()
        .clamp(1.0, f64::from(u32::MAX)) as u32;
    let simulations = scenario.simulations.max(1);
    let mut rng = ChaCha8Rng::seed_from_u64(scenario.seed);
    let mut history = Vec::new();
    let (mut costs, mut solved, mut per_solved, mut attempts) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut month_costs, mut month_solved) = (Vec::new(), Vec::new());
    for _ in 0..simulations {
        // The backlog, every task of it.
        let (mut cost, mut ok, mut tries) = (MicroUsd::ZERO, 0u32, 0u32);
        for (profile, n) in &labels {
            for _ in 0..*n {
                let (c, s, t) = one_task(profile, scenario, &mut history, &mut rng);
                cost += c;
                ok += u32::from(s);
                tries += t;
            }
        }
        costs.push(cost.as_f64() / f64::from(total));
        solved.push(f64::from(ok));
        if ok > 0 {
            per_solved.push(cost.as_f64() / f64::from(ok));
        }
        attempts.push(f64::from(tries) / f64::from(total));
        // A month: its own volume of tasks, each label drawn in the mix's proportions.
        let (mut cost, mut ok) = (MicroUsd::ZERO, 0u32);
        for _ in 0..month {
            let mut pick = rng.next_u64() % u64::from(total);
            let profile = labels
                .iter()
                .find(|(_, n)| {
                    let here = pick < u64::from(*n);
                    pick = pick.saturating_sub(u64::from(*n));
                    here
                })
                .map_or(labels[0].0, |(p, _)| *p);
            let (c, s, _) = one_task(profile, scenario, &mut history, &mut rng);
            cost += c;
            ok += u32::from(s);
        }
        month_costs.push(cost.as_f64());
        month_solved.push(f64::from(ok));
    }
    let human = scenario.human_per_task.map(|h| HumanBaseline {
        per_task_micros: h,
        for_month_solved_micros: spread(month_solved.iter().map(|s| s * h.as_f64()).collect()),
    });
    Ok(Estimate {
        tasks: total,
        cost_per_task_micros: spread(costs),
        tasks_solved: spread(solved),
        cost_per_solved_micros: (!per_solved.is_empty()).then(|| spread(per_solved)),
        attempts_per_task: spread(attempts),
        tasks_per_month: month,
        cost_per_month_micros: spread(month_costs),
        solved_per_month: spread(month_solved),
        human,
        caveats: CAVEATS.iter().map(|c| c.to_string()).collect(),
        simulations,
        seed: scenario.seed,
    })
}

/// Hand-written profiles (`--profiles FILE.toml`): `[[profile]] label, models, success,
/// cost_per_attempt (dollars), calls_per_attempt, success_after_solved`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileToml {
    pub label: String,
    pub models: Vec<String>,
    /// Per step, P(the step succeeds | every earlier step failed).
    pub success: Vec<f64>,
    pub cost_per_attempt: Vec<crate::config::Dollars>,
    #[serde(default)]
    pub calls_per_attempt: Vec<f64>,
    /// Per step after the first, P(the step succeeds | an earlier step solved the task): what a
    /// task the verifier wrongly rejected meets there. Default 1: a task an earlier (cheaper)
    /// model solved, a later one solves too.
    #[serde(default)]
    pub success_after_solved: Option<Vec<f64>>,
}

/// The file of hand-written profiles.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfilesFile {
    pub profile: Vec<ProfileToml>,
}

impl ProfilesFile {
    /// Check and turn into profiles; errors name the label and the field.
    pub fn profiles(&self) -> Result<BTreeMap<String, LabelProfile>, EstimateError> {
        let mut out = BTreeMap::new();
        for p in &self.profile {
            let bad = |reason: String| EstimateError::Profile {
                label: p.label.clone(),
                reason,
            };
            let n = p.models.len();
            if n == 0 || p.success.len() != n || p.cost_per_attempt.len() != n {
                return Err(bad(
                    "`models`, `success` and `cost_per_attempt` need one entry per step"
                        .to_string(),
                ));
            }
            let models: Vec<String> = p.models.clone();
            check_cascade(&models).map_err(|e| bad(format!("`models`: {e}")))?;
            let after = match &p.success_after_solved {
                None => vec![1.0; n - 1],
                Some(v) if v.len() == n - 1 => v.clone(),
                Some(_) => {
                    return Err(bad(format!(
                        "`success_after_solved` needs one entry per step after the first ({})",
                        n - 1
                    )));
                }
            };
            let mut steps = Vec::new();
            for i in 0..n {
                let success = p.success[i];
                if !(0.0..=1.0).contains(&success) {
                    return Err(bad(format!(
                        "success[{i}] = {success} is not between 0 and 1"
                    )));
                }
                let success_after_solved = match i {
                    0 => None,
                    _ => Some(after[i - 1]),
                };
                if let Some(a) = success_after_solved.filter(|a| !(0.0..=1.0).contains(a)) {
                    return Err(bad(format!(
                        "success_after_solved[{}] = {a} is not between 0 and 1",
                        i - 1
                    )));
                }
                let cost = crate::ledger::parse_dollars(&p.cost_per_attempt[i].text())
                    .map_err(|e| bad(format!("cost_per_attempt[{i}]: {e}")))?;
                steps.push(StepProfile {
                    model: p.models[i].clone(),
                    success,
                    success_after_solved,
                    costs: vec![cost],
                    mean_cost: cost,
                    calls_per_attempt: p.calls_per_attempt.get(i).copied().unwrap_or(0.0),
                    observed: 0,
                    by_history: BTreeMap::new(),
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
            .enumerate()
            .map(|(i, (s, c))| StepProfile {
                model: format!("m{i}"),
                success: *s,
                success_after_solved: (i > 0).then_some(1.0),
                costs: vec![MicroUsd(*c)],
                mean_cost: MicroUsd(*c),
                calls_per_attempt: 1.0,
                observed: 0,
                by_history: BTreeMap::new(),
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
        assert_eq!(e.cost_per_solved_micros.map(|s| s.mean), Some(8.0));
        // A person for the 100 tasks solved a month: 100 × 10.
        let human = e.human.unwrap();
        assert_eq!(human.per_task_micros, MicroUsd(10));
        assert_eq!(human.for_month_solved_micros.mean, 1000.0);
        assert_eq!(e.caveats.len(), 2);
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
    fn a_month_of_one_or_two_tasks_has_the_quantiles_a_hand_count_gives() {
        // Half the tasks cost $0.10 (the cheap model solves them), half $1.10 (both models).
        let p = profile(&[0.5, 1.0], &[100_000, 1_000_000]);
        let mut s = scenario(500);
        s.simulations = 2000;
        s.tasks_per_month = 1.0;
        let e = simulate(&p, &s).unwrap();
        // One task: $0.10 or $1.10, each with probability 1/2.
        let m = e.cost_per_month_micros;
        assert_eq!((m.p5, m.p95), (100_000.0, 1_100_000.0));
        assert!((m.mean - 600_000.0).abs() < 30_000.0, "{m:?}");
        // Two tasks: $0.20 (1/4), $1.20 (1/2), $2.20 (1/4).
        s.tasks_per_month = 2.0;
        let m = simulate(&p, &s).unwrap().cost_per_month_micros;
        assert_eq!((m.p5, m.p95), (200_000.0, 2_200_000.0));
        assert!((m.mean - 1_200_000.0).abs() < 50_000.0, "{m:?}");
    }

    #[test]
    fn the_monthly_interval_does_not_depend_on_the_backlogs_size() {
        // A month of 200 such tasks: $20 + $1 × Binomial(200, 1/2): mean $120, sd $7.07;
        // p5 ≈ $108.4, p95 ≈ $131.6 (normal approximation), whatever the backlog.
        let p = profile(&[0.5, 1.0], &[100_000, 1_000_000]);
        let month = |backlog: u32| {
            let mut s = scenario(backlog);
            s.simulations = 2000;
            s.tasks_per_month = 200.0;
            simulate(&p, &s).unwrap().cost_per_month_micros
        };
        let (small, large) = (month(50), month(500));
        for m in [small, large] {
            assert!((m.mean - 120e6).abs() < 0.5e6, "{m:?}");
            assert!((m.p5 - 108.4e6).abs() < 2e6, "{m:?}");
            assert!((m.p95 - 131.6e6).abs() < 2e6, "{m:?}");
        }
        assert!((small.p5 - large.p5).abs() < 2e6, "{small:?} {large:?}");
        assert!((small.p95 - large.p95).abs() < 2e6, "{small:?} {large:?}");
    }

    #[test]
    fn a_falsely_rejected_task_is_retried_at_its_own_difficulty() {
        // Two tasks both models solve, one only the strong one solves, one neither.
        let data = Dataset::parse(
            "d.jsonl",
            r#"{"instance_id": "a", "repo": "r", "runs": {"cheap": {"resolved": true, "cost_usd": 1}, "strong": {"resolved": true, "cost_usd": 10}}}
{"instance_id": "b", "repo": "r", "runs": {"cheap": {"resolved": true, "cost_usd": 1}, "strong": {"resolved": true, "cost_usd": 10}}}
{"instance_id": "c", "repo": "r", "runs": {"cheap": {"resolved": false, "cost_usd": 1}, "strong": {"resolved": true, "cost_usd": 10}}}
{"instance_id": "d", "repo": "r", "runs": {"cheap": {"resolved": false, "cost_usd": 1}, "strong": {"resolved": false, "cost_usd": 10}}}
"#,
        )
        .unwrap();
        let cascade = vec!["cheap".to_string(), "strong".to_string()];
        let profiles = profiles_from_data(&data, &cascade).unwrap();
        let strong = &profiles["r"].steps[1];
        assert_eq!(strong.success, 0.5);
        assert_eq!(strong.success_after_solved, Some(1.0));
        let mut s = scenario(4);
        s.mix = [("r".to_string(), 4)].into_iter().collect();
        s.simulations = 20_000;
        s.errors.false_reject = 0.5;
        let e = simulate(&profiles, &s).unwrap();
        // By hand: a and b are solved with 1/2 + 1/2 × 1/2 = 3/4, c with 1/2, d never: 2.
        // (Retrying a rejected a or b at the strong model's rate after failures, 1/2, gave
        // 1/2 + 1/2 × 1/2 × 1/2 = 5/8 each: 1.75.)
        assert!((e.tasks_solved.mean - 2.0).abs() < 0.03, "{e:?}");
        // Cost: every task pays the cheap attempt ($1); c and d the strong one ($10), a and b
        // half the time: 4 + 10 × 3 = $34 over 4 tasks = $8.50.
        assert!(
            (e.cost_per_task_micros.mean - 8_500_000.0).abs() < 50_000.0,
            "{e:?}"
        );
    }

    #[test]
    fn unknown_labels_repeated_models_and_bad_profiles_are_named() {
        let mut s = scenario(1);
        s.mix = [("nope".to_string(), 1)].into_iter().collect();
        assert!(
            simulate(&profile(&[0.5], &[1]), &s)
                .unwrap_err()
                .to_string()
                .contains("`nope`")
        );
        let file: ProfilesFile = toml::from_str(
            "[[profile]]\nlabel = \"bug\"\nmodels = [\"a\"]\nsuccess = [1.5]\ncost_per_attempt = [\"0.10\"]\n",
        )
        .unwrap();
        assert!(
            file.profiles()
                .unwrap_err()
                .to_string()
                .contains("success[0]")
        );
        let file: ProfilesFile = toml::from_str(
            "[[profile]]\nlabel = \"bug\"\nmodels = [\"a\", \"a\"]\nsuccess = [0.5, 0.5]\ncost_per_attempt = [\"0.10\", \"0.10\"]\n",
        )
        .unwrap();
        let err = file.profiles().unwrap_err().to_string();
        assert!(err.contains("`bug`") && err.contains("`a`"), "{err}");
        let data = Dataset::parse(
            "d.jsonl",
            r#"{"instance_id": "a", "repo": "r", "runs": {"cheap": {"resolved": true, "cost_usd": 1}}}"#,
        )
        .unwrap();
        let err =
            profiles_from_data(&data, &["cheap".to_string(), "cheap".to_string()]).unwrap_err();
        assert!(matches!(err, ReplayError::RepeatedModel { .. }), "{err}");
    }
}

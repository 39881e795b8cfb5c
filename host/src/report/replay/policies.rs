//! Policies replayed over a data set: each attempt costs what the data says that model cost on
//! that task and succeeds when it resolved it; a simulated verifier may be wrong (seeded).

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

use super::ReplayError;
use super::dataset::{DataTask, Dataset};
use super::search::{Searched, cascade_name};
use crate::plugin::types::{
    Attempt, AttemptOutcome, BudgetView, ModelInfo, RouteRequest, Task, TokenCounts,
};
use crate::plugin::{CallContext, Plugin};
use crate::store::MicroUsd;

/// How often the simulated verifier is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct VerifierErrors {
    /// Chance that an unresolved attempt is accepted (the task then ends unsolved).
    pub false_accept: f64,
    /// Chance that a resolved attempt is rejected (the next attempt follows).
    pub false_reject: f64,
}

/// What one policy did over the data.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PolicyResult {
    pub name: String,
    pub tasks: u32,
    pub solved: u32,
    /// Everything spent: the attempts' recorded costs and the verifier's cost of each.
    pub cost_micros: MicroUsd,
    pub attempts: u32,
    /// The verifier's part of `cost_micros`: its cost per attempt × attempts.
    pub verifier_micros: MicroUsd,
    /// `cost_micros` over `solved`, rounded half up to the micro-dollar.
    pub cost_per_solved_micros: Option<MicroUsd>,
    /// Spent on tasks that ended unsolved.
    pub unsolved_spend_micros: MicroUsd,
    /// `unsolved_spend_micros` as a share of `cost_micros` (0 to 1).
    pub unsolved_spend_share: f64,
    pub false_accepts: u32,
    pub false_rejects: u32,
    /// Tasks where the policy reached a model the data has no run of (a ledger's data): they
    /// end there, unsolved.
    pub untried: u32,
}

impl PolicyResult {
    pub(super) fn new(name: &str) -> PolicyResult {
        PolicyResult {
            name: name.to_string(),
            tasks: 0,
            solved: 0,
            cost_micros: MicroUsd::ZERO,
            attempts: 0,
            verifier_micros: MicroUsd::ZERO,
            cost_per_solved_micros: None,
            unsolved_spend_micros: MicroUsd::ZERO,
            unsolved_spend_share: 0.0,
            false_accepts: 0,
            false_rejects: 0,
            untried: 0,
        }
    }

    fn close(mut self) -> PolicyResult {
        self.cost_per_solved_micros =
            (self.solved > 0).then(|| self.cost_micros.per(u64::from(self.solved)));
        self.unsolved_spend_share = if self.cost_micros.is_zero() {
            0.0
        } else {
            self.unsolved_spend_micros.as_f64() / self.cost_micros.as_f64()
        };
        self
    }
}

/// What picks the model of each attempt.
pub enum Policy<'a> {
    /// The models in order, one attempt each.
    Cascade(Vec<String>),
    /// A router plugin, asked before every attempt, at most `max_attempts` attempts a task.
    Router {
        plugin: &'a Plugin,
        models: Vec<ModelInfo>,
        max_attempts: u32,
    },
}

/// Replays policies over a data set (or part of it).
pub struct Replayer<'a> {
    pub data: &'a Dataset,
    pub errors: VerifierErrors,
    /// The verifier's own cost per attempt (a model review, say), added to each attempt's
    /// recorded cost. Zero when the recorded costs already include it (a ledger's).
    pub verifier_cost: MicroUsd,
    pub seed: u64,
}

/// Refuse a cascade that names a model twice: a cascade tries each model once, so a repeat is
/// a typing error, not a retry policy.
pub fn check_cascade(models: &[String]) -> Result<(), ReplayError> {
    for (i, m) in models.iter().enumerate() {
        if models[..i].contains(m) {
            return Err(ReplayError::RepeatedModel {
                model: m.clone(),
                cascade: models.join(","),
            });
        }
    }
    Ok(())
}

/// A number in [0, 1) from the generator (53 random bits).
pub(crate) fn draw(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

impl Replayer<'_> {
    /// Replay `policy` over every task; the verifier's errors are drawn from a generator seeded
    /// with the replayer's seed, so each policy sees the same sequence.
    pub async fn run(&self, name: &str, policy: &Policy<'_>) -> Result<PolicyResult, ReplayError> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let mut result = PolicyResult::new(name);
        if let Policy::Cascade(models) = policy {
            check_cascade(models)?;
            for m in models {
                self.data.check_model(m)?;
            }
        }
        for task in &self.data.tasks {
            result.tasks += 1;
            let mut history: Vec<Attempt> = Vec::new();
            let mut spent = MicroUsd::ZERO;
            let mut solved = false;
            let max = match policy {
                Policy::Cascade(models) => models.len() as u32,
                Policy::Router { max_attempts, .. } => *max_attempts,
            };
            for number in 1..=max {
                let model = match policy {
                    Policy::Cascade(models) => models[(number - 1) as usize].clone(),
                    Policy::Router { plugin, models, .. } => {
                        route(plugin, models, task, &history, number).await?
                    }
                };
                // A ledger has only the models that were tried: a policy that reaches another
                // one on this task cannot be replayed further; the task ends unsolved, counted.
                let Some(run) = task.runs.get(&model).copied() else {
                    result.untried += 1;
                    break;
                };
                result.attempts += 1;
                result.verifier_micros += self.verifier_cost;
                spent += run.cost + self.verifier_cost;
                let accepted = if run.resolved {
                    let rejected =
                        self.errors.false_reject > 0.0 && draw(&mut rng) < self.errors.false_reject;
                    if rejected {
                        result.false_rejects += 1;
                    }
                    !rejected
                } else {
                    let accepted =
                        self.errors.false_accept > 0.0 && draw(&mut rng) < self.errors.false_accept;
                    if accepted {
                        result.false_accepts += 1;
                    }
                    accepted
                };
                if accepted {
                    // A false accept ends the task, unsolved.
                    solved = run.resolved;
                    break;
                }
                history.push(Attempt {
                    number,
                    model,
                    outcome: AttemptOutcome::Rejected,
                    reasons: vec!["the verifier rejected the change".to_string()],
                    cost: run.cost + self.verifier_cost,
                    tokens: TokenCounts::default(),
                });
            }
            result.cost_micros += spent;
            if solved {
                result.solved += 1;
            } else {
                result.unsolved_spend_micros += spent;
            }
        }
        Ok(result.close())
    }

    /// Every single model, one attempt a task.
    pub async fn single_models(&self) -> Result<Vec<PolicyResult>, ReplayError> {
        let mut out = Vec::new();
        for model in &self.data.models {
            out.push(
                self.run(model, &Policy::Cascade(vec![model.clone()]))
                    .await?,
            );
        }
        Ok(out)
    }

    /// The oracle: on each task the cheapest model that solved it, once (and the verifier's
    /// review of that attempt); unsolvable tasks cost nothing.
    pub fn oracle(&self) -> PolicyResult {
        let mut result = PolicyResult::new("oracle");
        for task in &self.data.tasks {
            result.tasks += 1;
            if let Some(cost) = task
                .runs
                .values()
                .filter(|r| r.resolved)
                .map(|r| r.cost)
                .min()
            {
                result.solved += 1;
                result.attempts += 1;
                result.verifier_micros += self.verifier_cost;
                result.cost_micros += cost + self.verifier_cost;
            }
        }
        result.close()
    }
}

/// Ask the router for an attempt's model.
async fn route(
    plugin: &Plugin,
    models: &[ModelInfo],
    task: &DataTask,
    history: &[Attempt],
    number: u32,
) -> Result<String, ReplayError> {
    let request = RouteRequest {
        task: Task {
            id: task.id.clone(),
            title: task.id.clone(),
            body: String::new(),
            labels: if task.repo.is_empty() {
                vec![]
            } else {
                vec![task.repo.clone()]
            },
            paths: vec![],
        },
        history: history.to_vec(),
        models: models.to_vec(),
        budget: BudgetView {
            money: vec![],
            fuel_left_task: plugin.spec().limits.fuel_per_task,
            fuel_per_call: plugin.spec().limits.fuel_per_call,
        },
    };
    let ctx = CallContext::new(task.id.clone(), number);
    let called = plugin
        .route(&ctx, &request)
        .await
        .map_err(|e| ReplayError::Router {
            plugin: plugin.name().to_string(),
            task: task.id.clone(),
            reason: e.to_string(),
        })?;
    if let Some(fault) = called.fault {
        return Err(ReplayError::Router {
            plugin: plugin.name().to_string(),
            task: task.id.clone(),
            reason: fault.to_string(),
        });
    }
    Ok(called.decision.model)
}

impl Replayer<'_> {
    /// Replay every cascade in `all`.
    pub async fn search(&self, all: &[Vec<String>]) -> Result<Vec<Searched>, ReplayError> {
        let mut out = Vec::with_capacity(all.len());
        for models in all {
            let result = self
                .run(&cascade_name(models), &Policy::Cascade(models.clone()))
                .await?;
            out.push(Searched {
                models: models.clone(),
                result,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(crate) const DATA: &str = r#"{"instance_id": "a", "repo": "r/one", "runs": {"cheap": {"resolved": true, "cost_usd": 0.10, "api_calls": 3}, "strong": {"resolved": true, "cost_usd": 1.000001}}}
{"instance_id": "b", "repo": "r/two", "runs": {"cheap": {"resolved": false, "cost_usd": 0.2}, "strong": {"resolved": true, "cost_usd": 2}}}
{"instance_id": "c", "repo": "r/two", "runs": {"cheap": {"resolved": false, "cost_usd": 0.3}, "strong": {"resolved": false, "cost_usd": 3}}}
"#;

    fn data() -> Dataset {
        Dataset::parse("d.jsonl", DATA).unwrap()
    }

    #[tokio::test]
    async fn a_cascade_pays_for_every_attempt_and_stops_at_the_first_success() {
        let d = data();
        let replay = Replayer {
            data: &d,
            errors: VerifierErrors::default(),
            verifier_cost: MicroUsd::ZERO,
            seed: 1,
        };
        let r = replay
            .run("c", &Policy::Cascade(vec!["cheap".into(), "strong".into()]))
            .await
            .unwrap();
        // a: cheap 0.10 solved; b: 0.2 + 2 solved; c: 0.3 + 3 unsolved.
        assert_eq!(
            (r.solved, r.attempts, r.cost_micros),
            (2, 5, MicroUsd(5_600_000))
        );
        assert_eq!(r.unsolved_spend_micros, MicroUsd(3_300_000));
        assert_eq!(r.cost_per_solved_micros, Some(MicroUsd(2_800_000)));
        let oracle = replay.oracle();
        assert_eq!(
            (oracle.solved, oracle.cost_micros, oracle.attempts),
            (2, MicroUsd(2_100_000), 2)
        );
    }

    #[tokio::test]
    async fn a_verifier_that_accepts_everything_ends_every_task_on_its_first_attempt() {
        let d = data();
        let replay = Replayer {
            data: &d,
            errors: VerifierErrors {
                false_accept: 1.0,
                false_reject: 0.0,
            },
            verifier_cost: MicroUsd::ZERO,
            seed: 7,
        };
        let r = replay
            .run("c", &Policy::Cascade(vec!["cheap".into(), "strong".into()]))
            .await
            .unwrap();
        assert_eq!((r.solved, r.attempts, r.false_accepts), (1, 3, 2));
        let rejecting = Replayer {
            errors: VerifierErrors {
                false_accept: 0.0,
                false_reject: 1.0,
            },
            ..replay
        };
        let r = rejecting
            .run("c", &Policy::Cascade(vec!["cheap".into(), "strong".into()]))
            .await
            .unwrap();
        assert_eq!((r.solved, r.attempts, r.false_rejects), (0, 6, 3));
    }

    #[tokio::test]
    async fn the_verifiers_cost_is_paid_on_every_attempt_and_included_in_cost() {
        let d = data();
        let replay = Replayer {
            data: &d,
            errors: VerifierErrors::default(),
            verifier_cost: MicroUsd(10_000),
            seed: 1,
        };
        let r = replay
            .run("c", &Policy::Cascade(vec!["cheap".into(), "strong".into()]))
            .await
            .unwrap();
        // By hand: 5 attempts ($5.60 recorded) + 5 × $0.01 = $5.65; $0.05 of it the verifier's.
        assert_eq!(r.cost_micros, MicroUsd(5_650_000));
        assert_eq!(r.verifier_micros, MicroUsd(50_000));
        // Task c's two attempts: $3.30 + $0.02.
        assert_eq!(r.unsolved_spend_micros, MicroUsd(3_320_000));
        // $5.65 / 2.
        assert_eq!(r.cost_per_solved_micros, Some(MicroUsd(2_825_000)));
        // The oracle: a at $0.10, b at $2, one review each.
        let oracle = replay.oracle();
        assert_eq!(oracle.cost_micros, MicroUsd(2_120_000));
    }

    #[tokio::test]
    async fn cost_per_solved_is_rounded_half_up_not_truncated() {
        // strong alone: a $1.000001 solved, b $2 solved, c $3 unsolved = $6.000001 over 2 =
        // $3.0000005, rounded half up: $3.000001 (truncation gave $3.000000).
        let d = data();
        let replay = Replayer {
            data: &d,
            errors: VerifierErrors::default(),
            verifier_cost: MicroUsd::ZERO,
            seed: 1,
        };
        let r = replay
            .run("strong", &Policy::Cascade(vec!["strong".into()]))
            .await
            .unwrap();
        assert_eq!((r.solved, r.cost_micros), (2, MicroUsd(6_000_001)));
        assert_eq!(r.cost_per_solved_micros, Some(MicroUsd(3_000_001)));
    }

    #[tokio::test]
    async fn a_cascade_naming_a_model_twice_is_refused_with_its_name() {
        let d = data();
        let replay = Replayer {
            data: &d,
            errors: VerifierErrors::default(),
            verifier_cost: MicroUsd::ZERO,
            seed: 1,
        };
        let err = replay
            .run(
                "c",
                &Policy::Cascade(vec!["cheap".into(), "strong".into(), "cheap".into()]),
            )
            .await
            .unwrap_err();
        assert_eq!(
            err,
            ReplayError::RepeatedModel {
                model: "cheap".into(),
                cascade: "cheap,strong,cheap".into()
            }
        );
        assert!(err.to_string().contains("`cheap`"), "{err}");
    }
}

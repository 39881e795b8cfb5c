//! `gaffer replay`: what a routing policy would have done on recorded outcomes. Each attempt
//! costs what the data says that model cost on that task and succeeds when the data says it
//! resolved it; a simulated verifier may wrongly accept or reject (seeded, so a replay is
//! repeatable). Policies: a router plugin (any `.wasm` of the router world), a fixed cascade,
//! every single model, and the oracle (the cheapest model that solved each task).
//!
//! The data's prices are its own: costs are the recorded dollars, the price catalog is not
//! consulted, and model keys are used verbatim.

use std::collections::BTreeMap;
use std::path::Path;

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::ledger::{MicroUsd, format_dollars, parse_dollars};
use crate::plugin::types::{
    Attempt, AttemptOutcome, BudgetView, ModelInfo, Prices, RouteRequest, Task, TokenUsage,
};
use crate::plugin::{CallContext, Plugin};

/// Why a replay cannot run; names the file and line, or the model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    #[error("{file}: {reason}")]
    Read { file: String, reason: String },
    #[error("{file}:{line}: {reason}")]
    Line {
        file: String,
        line: usize,
        reason: String,
    },
    #[error("model `{model}` is not in the data (known: {known})")]
    UnknownModel { model: String, known: String },
    #[error("router `{plugin}` on task `{task}`: {reason}")]
    Router {
        plugin: String,
        task: String,
        reason: String,
    },
    #[error("{0}")]
    Invalid(String),
}

/// One model's recorded run on one task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunOutcome {
    pub resolved: bool,
    pub cost: MicroUsd,
    pub api_calls: u32,
}

/// One task of the data set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataTask {
    pub id: String,
    /// The task's repository: its label.
    pub repo: String,
    pub runs: BTreeMap<String, RunOutcome>,
}

/// Recorded outcomes of several models on the same tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dataset {
    pub tasks: Vec<DataTask>,
    /// Every model that has a run, sorted.
    pub models: Vec<String>,
}

#[derive(Deserialize)]
struct RawRun<'a> {
    resolved: bool,
    #[serde(borrow)]
    cost_usd: &'a RawValue,
    #[serde(default)]
    api_calls: u32,
}

#[derive(Deserialize)]
struct RawTask<'a> {
    instance_id: String,
    #[serde(default)]
    repo: String,
    #[serde(borrow)]
    runs: BTreeMap<String, RawRun<'a>>,
}

impl Dataset {
    /// Parse JSON Lines of `{"instance_id", "repo", "runs": {model: {"resolved", "cost_usd",
    /// "api_calls"}}}`. Dollars are read from their decimal text, exactly.
    pub fn parse(file: &str, text: &str) -> Result<Dataset, ReplayError> {
        let mut tasks = Vec::new();
        let mut models = std::collections::BTreeSet::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let at = |reason: String| ReplayError::Line {
                file: file.to_string(),
                line: i + 1,
                reason,
            };
            let raw: RawTask = serde_json::from_str(line).map_err(|e| at(e.to_string()))?;
            let mut runs = BTreeMap::new();
            for (model, run) in raw.runs {
                let cost = parse_dollars(run.cost_usd.get())
                    .map_err(|e| at(format!("`runs.{model}.cost_usd`: {e}")))?;
                models.insert(model.clone());
                runs.insert(
                    model,
                    RunOutcome {
                        resolved: run.resolved,
                        cost,
                        api_calls: run.api_calls,
                    },
                );
            }
            tasks.push(DataTask {
                id: raw.instance_id,
                repo: raw.repo,
                runs,
            });
        }
        if tasks.is_empty() {
            return Err(ReplayError::Read {
                file: file.to_string(),
                reason: "no tasks".to_string(),
            });
        }
        Ok(Dataset {
            tasks,
            models: models.into_iter().collect(),
        })
    }

    /// Read and parse a data file.
    pub fn load(path: &Path) -> Result<Dataset, ReplayError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ReplayError::Read {
            file: file.clone(),
            reason: e.to_string(),
        })?;
        Dataset::parse(&file, &text)
    }

    /// The outcomes a ledger recorded: per task, each model tried, resolved when one of its
    /// attempts was approved, at the cost of its first attempt (every row of it, all roles);
    /// the label is the task's first label.
    pub fn from_ledger(history: &super::ledger_report::History) -> Result<Dataset, ReplayError> {
        let (tasks, attempts, rows) = (&history.tasks, &history.attempts, &history.rows);
        let mut out = Vec::new();
        let mut models = std::collections::BTreeSet::new();
        for task in tasks {
            let Some(history) = attempts.get(&task.id).filter(|h| !h.is_empty()) else {
                continue;
            };
            let mut runs: BTreeMap<String, RunOutcome> = BTreeMap::new();
            for a in history {
                let cost: MicroUsd = rows
                    .iter()
                    .filter(|r| {
                        r.scope.task_id.as_deref() == Some(task.id.as_str())
                            && r.scope.attempt == Some(a.number)
                    })
                    .map(|r| r.charged)
                    .sum();
                let entry = runs.entry(a.model.clone()).or_insert(RunOutcome {
                    resolved: false,
                    cost,
                    api_calls: a.turns,
                });
                entry.resolved |= a.outcome == "approved";
                models.insert(a.model.clone());
            }
            out.push(DataTask {
                id: task.id.clone(),
                repo: task.labels.first().cloned().unwrap_or_default(),
                runs,
            });
        }
        if out.is_empty() {
            return Err(ReplayError::Invalid(
                "the ledger has no finished attempts to replay".to_string(),
            ));
        }
        Ok(Dataset {
            tasks: out,
            models: models.into_iter().collect(),
        })
    }

    /// What a model cost over every task.
    pub fn total_cost(&self, model: &str) -> MicroUsd {
        self.tasks
            .iter()
            .filter_map(|t| t.runs.get(model))
            .map(|r| r.cost)
            .sum()
    }

    /// Refuse a model the data does not have.
    pub fn check_model(&self, model: &str) -> Result<(), ReplayError> {
        if self.models.iter().any(|m| m == model) {
            Ok(())
        } else {
            Err(ReplayError::UnknownModel {
                model: model.to_string(),
                known: self.models.join(", "),
            })
        }
    }

    /// Default tiers: the models ranked by their total cost in the data, split in three
    /// (tier 1 is the cheapest third).
    pub fn default_tiers(&self) -> BTreeMap<String, u8> {
        let mut ranked: Vec<(MicroUsd, &String)> = self
            .models
            .iter()
            .map(|m| (self.total_cost(m), m))
            .collect();
        ranked.sort();
        let n = ranked.len().max(1);
        ranked
            .into_iter()
            .enumerate()
            .map(|(i, (_, m))| (m.clone(), (1 + i * 3 / n) as u8))
            .collect()
    }

    /// The models as a router sees them: tiers from `tiers`, and as all four "prices" the
    /// model's mean cost per task in µ$, so that a router comparing prices compares what the
    /// models cost here (the data has no per-token prices).
    pub fn model_infos(&self, tiers: &BTreeMap<String, u8>) -> Vec<ModelInfo> {
        let n = self.tasks.len().max(1) as u64;
        self.models
            .iter()
            .map(|m| {
                let mean = self.total_cost(m) / n;
                ModelInfo {
                    id: m.clone(),
                    provider: "data".to_string(),
                    tier: tiers.get(m).copied().unwrap_or(1),
                    prices: Prices {
                        input: mean,
                        output: mean,
                        cache_read: mean,
                        cache_write: mean,
                    },
                    context_window: 0,
                    tags: vec![],
                }
            })
            .collect()
    }
}

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
    #[serde(serialize_with = "dollars")]
    pub cost_usd: MicroUsd,
    pub attempts: u32,
    #[serde(serialize_with = "maybe_dollars")]
    pub cost_per_solved_usd: Option<MicroUsd>,
    /// Spent on tasks that ended unsolved.
    #[serde(serialize_with = "dollars")]
    pub unsolved_spend_usd: MicroUsd,
    /// `unsolved_spend_usd` as a share of `cost_usd` (0 to 1).
    pub unsolved_spend_share: f64,
    pub false_accepts: u32,
    pub false_rejects: u32,
    /// Tasks where the policy reached a model the data has no run of (a ledger's data): they
    /// end there, unsolved.
    pub untried: u32,
}

/// µ$ as a JSON number with six decimals, written from integers (no float on the way).
fn dollars<S: serde::Serializer>(micros: &MicroUsd, s: S) -> Result<S::Ok, S::Error> {
    use serde::Serialize;
    RawValue::from_string(crate::ledger::decimal_dollars(*micros))
        .map_err(serde::ser::Error::custom)?
        .serialize(s)
}

fn maybe_dollars<S: serde::Serializer>(micros: &Option<MicroUsd>, s: S) -> Result<S::Ok, S::Error> {
    match micros {
        Some(m) => dollars(m, s),
        None => s.serialize_none(),
    }
}

impl PolicyResult {
    fn new(name: &str) -> PolicyResult {
        PolicyResult {
            name: name.to_string(),
            tasks: 0,
            solved: 0,
            cost_usd: 0,
            attempts: 0,
            cost_per_solved_usd: None,
            unsolved_spend_usd: 0,
            unsolved_spend_share: 0.0,
            false_accepts: 0,
            false_rejects: 0,
            untried: 0,
        }
    }

    fn close(mut self) -> PolicyResult {
        self.cost_per_solved_usd =
            (self.solved > 0).then(|| self.cost_usd / u64::from(self.solved));
        self.unsolved_spend_share = if self.cost_usd == 0 {
            0.0
        } else {
            self.unsolved_spend_usd as f64 / self.cost_usd as f64
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
    pub seed: u64,
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
            for m in models {
                self.data.check_model(m)?;
            }
        }
        for task in &self.data.tasks {
            result.tasks += 1;
            let mut history: Vec<Attempt> = Vec::new();
            let mut spent: MicroUsd = 0;
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
                spent += run.cost;
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
                    cost: run.cost,
                    tokens: TokenUsage {
                        input: 0,
                        output: 0,
                        cache_read: 0,
                        cache_write: 0,
                    },
                });
            }
            result.cost_usd += spent;
            if solved {
                result.solved += 1;
            } else {
                result.unsolved_spend_usd += spent;
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

    /// The oracle: on each task the cheapest model that solved it, once; unsolvable tasks cost
    /// nothing.
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
                result.cost_usd += cost;
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

/// The results as a terminal table, cheapest first.
pub fn render_text(results: &[PolicyResult]) -> String {
    let mut s = format!(
        "{:<56} {:>7} {:>14} {:>9} {:>12} {:>9}\n",
        "policy", "solved", "cost", "attempts", "per solved", "unsolved"
    );
    for r in results {
        s.push_str(&format!(
            "{:<56} {:>7} {:>14} {:>9} {:>12} {:>8.1}%\n",
            r.name,
            r.solved,
            format_dollars(r.cost_usd),
            r.attempts,
            r.cost_per_solved_usd
                .map(format_dollars)
                .unwrap_or_else(|| "-".into()),
            r.unsolved_spend_share * 100.0
        ));
    }
    s
}

/// An SVG plot of cost against tasks solved, one labelled point per policy.
pub fn render_svg(results: &[PolicyResult]) -> String {
    let (w, h, pad) = (900.0_f64, 560.0_f64, 70.0_f64);
    let max_cost = results.iter().map(|r| r.cost_usd).max().unwrap_or(1).max(1) as f64;
    let max_solved = results.iter().map(|r| r.solved).max().unwrap_or(1).max(1) as f64;
    let min_solved = results.iter().map(|r| r.solved).min().unwrap_or(0) as f64;
    let span = (max_solved - min_solved).max(1.0);
    let x = |cost: MicroUsd| pad + (cost as f64 / max_cost) * (w - 2.0 * pad);
    let y = |solved: u32| h - pad - ((solved as f64 - min_solved) / span) * (h - 2.0 * pad);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"11\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <line x1=\"{pad}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"black\"/>\n\
         <line x1=\"{pad}\" y1=\"{pad}\" x2=\"{pad}\" y2=\"{b}\" stroke=\"black\"/>\n\
         <text x=\"{cx}\" y=\"{lx}\" text-anchor=\"middle\">cost ({} at the right edge)</text>\n\
         <text x=\"16\" y=\"{cy}\" transform=\"rotate(-90 16 {cy})\" text-anchor=\"middle\">tasks solved ({} to {})</text>\n",
        format_dollars(max_cost as MicroUsd),
        min_solved,
        max_solved,
        b = h - pad,
        r = w - pad,
        cx = w / 2.0,
        lx = h - 25.0,
        cy = h / 2.0,
    );
    for r in results {
        let (px, py) = (x(r.cost_usd), y(r.solved));
        let color = if r.name == "oracle" {
            "#2a9d8f"
        } else if r.name.starts_with("cascade") || r.name.starts_with("router") {
            "#e76f51"
        } else {
            "#264653"
        };
        s.push_str(&format!(
            "<circle cx=\"{px:.1}\" cy=\"{py:.1}\" r=\"4\" fill=\"{color}\"><title>{}: {} solved, {}</title></circle>\n\
             <text x=\"{:.1}\" y=\"{:.1}\">{}</text>\n",
            xml_escape(&r.name),
            r.solved,
            format_dollars(r.cost_usd),
            px + 6.0,
            py - 4.0,
            xml_escape(&r.name)
        ));
    }
    s.push_str("</svg>\n");
    s
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATA: &str = r#"{"instance_id": "a", "repo": "r/one", "runs": {"cheap": {"resolved": true, "cost_usd": 0.10, "api_calls": 3}, "strong": {"resolved": true, "cost_usd": 1.000001}}}
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
            seed: 1,
        };
        let r = replay
            .run("c", &Policy::Cascade(vec!["cheap".into(), "strong".into()]))
            .await
            .unwrap();
        // a: cheap 0.10 solved; b: 0.2 + 2 solved; c: 0.3 + 3 unsolved.
        assert_eq!((r.solved, r.attempts, r.cost_usd), (2, 5, 5_600_000));
        assert_eq!(r.unsolved_spend_usd, 3_300_000);
        assert_eq!(r.cost_per_solved_usd, Some(2_800_000));
        let oracle = replay.oracle();
        assert_eq!(
            (oracle.solved, oracle.cost_usd, oracle.attempts),
            (2, 2_100_000, 2)
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

    #[test]
    fn bad_lines_and_unknown_models_are_named() {
        let err = Dataset::parse(
            "d.jsonl",
            "{\"instance_id\": \"a\", \"runs\": {}}\nnot json\n",
        )
        .unwrap_err();
        assert!(err.to_string().starts_with("d.jsonl:2: "), "{err}");
        let err = Dataset::parse(
            "d.jsonl",
            r#"{"instance_id": "a", "runs": {"m": {"resolved": true, "cost_usd": -1}}}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("runs.m.cost_usd"), "{err}");
        assert!(
            data()
                .check_model("gpt-9")
                .unwrap_err()
                .to_string()
                .contains("cheap, strong")
        );
    }

    #[test]
    fn default_tiers_rank_models_by_total_cost() {
        let tiers = data().default_tiers();
        assert_eq!(tiers["cheap"], 1);
        assert_eq!(tiers["strong"], 2);
    }
}

/// Every ordered cascade of 1 to `max_len` distinct models from `models`.
pub fn cascades(models: &[String], max_len: usize) -> Vec<Vec<String>> {
    fn extend(
        models: &[String],
        max_len: usize,
        current: &mut Vec<String>,
        out: &mut Vec<Vec<String>>,
    ) {
        if !current.is_empty() {
            out.push(current.clone());
        }
        if current.len() == max_len {
            return;
        }
        for m in models {
            if !current.contains(m) {
                current.push(m.clone());
                extend(models, max_len, current, out);
                current.pop();
            }
        }
    }
    let mut out = Vec::new();
    extend(models, max_len, &mut Vec::new(), &mut out);
    out
}

/// The name a cascade is shown under.
pub fn cascade_name(models: &[String]) -> String {
    format!("cascade {}", models.join(" → "))
}

/// A searched policy: its cascade and what it did.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Searched {
    pub models: Vec<String>,
    #[serde(flatten)]
    pub result: PolicyResult,
}

/// The policies no other beats on both cost and tasks solved, cheapest first.
pub fn pareto(all: &[Searched]) -> Vec<Searched> {
    let mut sorted: Vec<&Searched> = all.iter().collect();
    // Cheapest first; among equal cost, most solved first.
    sorted.sort_by(|a, b| {
        a.result
            .cost_usd
            .cmp(&b.result.cost_usd)
            .then(b.result.solved.cmp(&a.result.solved))
    });
    let mut frontier: Vec<Searched> = Vec::new();
    for s in sorted {
        let best_so_far = frontier.last().map(|f| f.result.solved);
        if best_so_far.is_none_or(|b| s.result.solved > b) {
            frontier.push(s.clone());
        }
    }
    frontier
}

/// The choice rule: the most tasks solved among policies costing at most `budget_ratio` × the
/// best single model's cost (the single model solving most, the cheaper on a tie); ties go to
/// the cheaper. Returns the chosen policy and the best single model.
pub fn choose(all: &[Searched], budget_ratio: f64) -> Option<(Searched, Searched)> {
    let best_single = all
        .iter()
        .filter(|s| s.models.len() == 1)
        .max_by(|a, b| {
            a.result
                .solved
                .cmp(&b.result.solved)
                .then(b.result.cost_usd.cmp(&a.result.cost_usd))
        })?
        .clone();
    let limit = (best_single.result.cost_usd as f64 * budget_ratio).floor() as u64;
    let chosen = all
        .iter()
        .filter(|s| s.result.cost_usd <= limit)
        .max_by(|a, b| {
            a.result
                .solved
                .cmp(&b.result.solved)
                .then(b.result.cost_usd.cmp(&a.result.cost_usd))
                // Fully tied: the shorter (then the alphabetically first) cascade, so the choice
                // does not depend on enumeration order.
                .then(b.models.len().cmp(&a.models.len()))
                .then(b.models.cmp(&a.models))
        })?
        .clone();
    Some((chosen, best_single))
}

impl Dataset {
    /// Split the tasks at random (seeded): `fraction` of them held out for testing, the rest
    /// for choosing. Returns (choose-on, test-on).
    pub fn split(&self, fraction: f64, seed: u64) -> (Dataset, Dataset) {
        let mut order: Vec<usize> = (0..self.tasks.len()).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        // Fisher–Yates.
        for i in (1..order.len()).rev() {
            let j = (rng.next_u64() % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
        let held = ((self.tasks.len() as f64) * fraction).round() as usize;
        let pick = |idx: &[usize]| {
            let mut idx = idx.to_vec();
            idx.sort();
            Dataset {
                tasks: idx.iter().map(|&i| self.tasks[i].clone()).collect(),
                models: self.models.clone(),
            }
        };
        (pick(&order[held..]), pick(&order[..held]))
    }
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

/// The chosen cascade as `gaffer.toml` configuration for the `cascade` router.
pub fn cascade_config(models: &[String], plugin_path: &str) -> String {
    let list = models
        .iter()
        .map(|m| format!("{m:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "# Chosen by `gaffer replay --search`; the model keys must match [models.*].\n\
         [plugins.router]\n\
         path = {plugin_path:?}\n\
         fallback_model = {:?}\n\
         config = {{ models = [{list}] }}\n",
        models.first().cloned().unwrap_or_default()
    )
}

#[cfg(test)]
mod search_tests {
    use super::*;

    fn searched(models: &[&str], solved: u32, cost: u64) -> Searched {
        let mut result = PolicyResult::new("x");
        result.solved = solved;
        result.cost_usd = cost;
        Searched {
            models: models.iter().map(|m| m.to_string()).collect(),
            result,
        }
    }

    #[test]
    fn cascades_of_up_to_three_distinct_models_in_every_order() {
        let models: Vec<String> = ["a", "b", "c", "d"].map(String::from).to_vec();
        // 4 + 4·3 + 4·3·2
        assert_eq!(cascades(&models, 3).len(), 40);
        assert!(cascades(&models, 2).contains(&vec!["b".to_string(), "a".to_string()]));
    }

    #[test]
    fn the_frontier_keeps_only_undominated_policies_and_the_rule_respects_the_budget() {
        let all = vec![
            searched(&["s1"], 10, 100),
            searched(&["s2"], 8, 20),
            searched(&["s2", "s1"], 11, 90),
            searched(&["s1", "s2"], 11, 120),
            searched(&["s3"], 8, 50),
        ];
        let frontier: Vec<Vec<String>> = pareto(&all).into_iter().map(|s| s.models).collect();
        assert_eq!(
            frontier,
            vec![
                vec!["s2".to_string()],
                vec!["s2".to_string(), "s1".to_string()]
            ]
        );
        let (chosen, best) = choose(&all, 1.0).unwrap();
        assert_eq!(best.models, ["s1"]);
        assert_eq!(chosen.models, ["s2", "s1"]);
        // Half the best single's cost: the cheap one.
        let (chosen, _) = choose(&all, 0.5).unwrap();
        assert_eq!(chosen.models, ["s2"]);
    }

    #[test]
    fn a_split_is_seeded_and_partitions_the_tasks() {
        let task = |i: usize| DataTask {
            id: format!("t{i}"),
            repo: String::new(),
            runs: BTreeMap::new(),
        };
        let data = Dataset {
            tasks: (0..10).map(task).collect(),
            models: vec![],
        };
        let (train, test) = data.split(0.3, 5);
        assert_eq!((train.tasks.len(), test.tasks.len()), (7, 3));
        let mut ids: Vec<String> = train
            .tasks
            .iter()
            .chain(&test.tasks)
            .map(|t| t.id.clone())
            .collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 10);
        assert_eq!(data.split(0.3, 5), (train, test));
    }
}

//! The recorded outcomes a replay runs on: a JSON Lines data set (SWE-bench Verified's per-model
//! results) or what a project's own ledger recorded.

use std::collections::BTreeMap;
use std::path::Path;

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::ReplayError;
use crate::ledger::parse_dollars;
use crate::plugin::types::{ModelInfo, Prices};
use crate::store::{AttemptOutcome, MicroUsd};

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
    pub fn from_ledger(history: &crate::report::History) -> Result<Dataset, ReplayError> {
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
                entry.resolved |= a.outcome == AttemptOutcome::Approved;
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
                let mean = self.total_cost(m).per(n);
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

#[cfg(test)]
mod tests {
    use super::*;

    const DATA: &str = super::super::policies::tests::DATA;

    fn data() -> Dataset {
        Dataset::parse("d.jsonl", DATA).unwrap()
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

//! `gaffer replay --search`: every cascade of a few models, the Pareto frontier of cost against
//! tasks solved, and the rule that chooses one within a budget.

use super::policies::PolicyResult;
use crate::store::MicroUsd;

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
            .cost_micros
            .cmp(&b.result.cost_micros)
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
                .then(b.result.cost_micros.cmp(&a.result.cost_micros))
        })?
        .clone();
    let limit = MicroUsd((best_single.result.cost_micros.as_f64() * budget_ratio).floor() as u64);
    let chosen = all
        .iter()
        .filter(|s| s.result.cost_micros <= limit)
        .max_by(|a, b| {
            a.result
                .solved
                .cmp(&b.result.solved)
                .then(b.result.cost_micros.cmp(&a.result.cost_micros))
                // Fully tied: the shorter (then the alphabetically first) cascade, so the choice
                // does not depend on enumeration order.
                .then(b.models.len().cmp(&a.models.len()))
                .then(b.models.cmp(&a.models))
        })?
        .clone();
    Some((chosen, best_single))
}

/// The chosen cascade as `gaffer.toml` configuration for the `cascade` router.
pub fn cascade_config(models: &[String], plugin_path: &str) -> String {
    use toml::{Table, Value};
    let mut config = Table::new();
    config.insert(
        "models".into(),
        Value::Array(models.iter().cloned().map(Value::String).collect()),
    );
    let mut router = Table::new();
    router.insert("path".into(), Value::String(plugin_path.to_string()));
    router.insert(
        "fallback_model".into(),
        Value::String(models.first().cloned().unwrap_or_default()),
    );
    router.insert("config".into(), Value::Table(config));
    let mut plugins = Table::new();
    plugins.insert("router".into(), Value::Table(router));
    let mut file = Table::new();
    file.insert("plugins".into(), Value::Table(plugins));
    format!(
        "# Chosen by `gaffer replay --search`; the model keys must match [models.*].\n{}",
        toml::to_string(&file).unwrap_or_default()
    )
}

#[cfg(test)]
mod search_tests {
    use super::*;

    fn searched(models: &[&str], solved: u32, cost: u64) -> Searched {
        let mut result = PolicyResult::new("x");
        result.solved = solved;
        result.cost_micros = MicroUsd(cost);
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
}

//! Router `triage`: asks a cheap model (through the host's metered `complete`, charged to the
//! task) whether the task is boilerplate, ordinary or architectural, maps the class to a tier,
//! escalates one tier per rejection, and picks the cheapest model at that tier that fits the
//! money left. When the budget refuses the call or the answer is not one of the classes, it
//! falls back to cost-tier's rules and says so.
//!
//! Config: `model` (default "cheap"), `max_tokens` (default 16), `class_tiers` (default
//! boilerplate 1, ordinary 2, architectural 3), and `fallback`: cost-tier's own config.

use std::collections::BTreeMap;

use gaffer_sdk::host;
use gaffer_sdk::types::{
    AttemptOutcome, CompletionRequest, Message, Role, RouteDecision, RouteRequest,
};
use serde::Deserialize;

/// The plugin.
pub struct Triage;

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub model: String,
    pub max_tokens: u32,
    pub class_tiers: BTreeMap<String, u32>,
    pub fallback: cost_tier::Config,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            model: "cheap".to_string(),
            max_tokens: 16,
            class_tiers: [("boilerplate", 1), ("ordinary", 2), ("architectural", 3)]
                .into_iter()
                .map(|(c, t)| (c.to_string(), t))
                .collect(),
            fallback: cost_tier::Config::default(),
        }
    }
}

/// The classification prompt.
pub fn prompt(request: &RouteRequest, config: &Config) -> Vec<Message> {
    let classes: Vec<&str> = config.class_tiers.keys().map(String::as_str).collect();
    let body: String = request.task.body.chars().take(4_000).collect();
    vec![
        Message {
            role: Role::System,
            content: format!(
                "Classify a software task by the skill it needs. Answer with exactly one word: {}.",
                classes.join(", ")
            ),
        },
        Message {
            role: Role::User,
            content: format!(
                "Title: {}\nLabels: {}\nFiles: {}\n\n{}",
                request.task.title,
                request.task.labels.join(", "),
                request.task.paths.join(", "),
                body
            ),
        },
    ]
}

/// The class named in the model's answer, if exactly one of them is.
pub fn parse_class<'a>(answer: &str, config: &'a Config) -> Option<&'a str> {
    let answer = answer.to_ascii_lowercase();
    let mut found = config
        .class_tiers
        .keys()
        .filter(|class| answer.contains(class.as_str()));
    let first = found.next()?;
    found.next().is_none().then_some(first.as_str())
}

/// Route with a class already known.
pub fn route_for_class(
    class: &str,
    request: &RouteRequest,
    config: &Config,
) -> Result<RouteDecision, String> {
    let base = config.class_tiers.get(class).copied().unwrap_or(1);
    let rejections = request
        .history
        .iter()
        .filter(|a| a.outcome == AttemptOutcome::Rejected)
        .count() as u32;
    // cost-tier picks the model and the budget: give it the tier as its starting tier.
    let mut rules = cost_tier::Config {
        start_tier: u8::try_from(base.max(1)).unwrap_or(u8::MAX),
        label_tiers: BTreeMap::new(),
        ..cost_tier::Config::default()
    };
    rules.attempt_budget = config.fallback.attempt_budget;
    let decision = cost_tier::route_with(&rules, request)?;
    let plural = if rejections == 1 { "" } else { "s" };
    Ok(RouteDecision {
        reason: format!(
            "the triage model classed the task `{class}` (tier {base}, {rejections} rejection{plural}); {}",
            decision.reason
        ),
        ..decision
    })
}

impl gaffer_sdk::Router for Triage {
    fn route(request: RouteRequest) -> Result<RouteDecision, String> {
        let config: Config = host::config()?;
        let answer = host::complete(CompletionRequest {
            model: config.model.clone(),
            messages: prompt(&request, &config),
            max_tokens: config.max_tokens,
        });
        let why = match answer {
            Ok(completion) => match parse_class(&completion.text, &config) {
                Some(class) => return route_for_class(class, &request, &config),
                None => {
                    let shown: String = completion.text.chars().take(60).collect();
                    format!("the triage model answered `{shown}`, not one class")
                }
            },
            Err(error) => format!(
                "the triage model could not be asked: {}",
                host::describe_error(&error)
            ),
        };
        let decision = cost_tier::route_with(&config.fallback, &request)?;
        Ok(RouteDecision {
            reason: format!("{why}; cost-tier rules: {}", decision.reason),
            ..decision
        })
    }
}

gaffer_sdk::export_router!(Triage);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_class_or_none() {
        let config = Config::default();
        assert_eq!(parse_class("Architectural", &config), Some("architectural"));
        assert_eq!(
            parse_class("  boilerplate.\n", &config),
            Some("boilerplate")
        );
        assert_eq!(parse_class("ordinary or architectural", &config), None);
        assert_eq!(parse_class("no idea", &config), None);
    }
}

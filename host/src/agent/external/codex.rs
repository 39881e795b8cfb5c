//! Codex CLI (`codex exec --json`) over the Responses API: its command line under gaffer (a
//! provider entry for the proxy, its own sandbox and approvals off since gaffer's sandbox
//! holds, no plugins, analytics or web search, nothing kept), and its JSON events.

use serde_json::Value;

use super::{AgentFigure, Launch, ReadResult, SAID_BYTES, head, shell_quote};
use crate::agent::session::AgentEnd;
use crate::gateway::metered::{ModelEntry, Pricing};
use crate::gateway::usage;

/// The variable that holds the proxy's token for Codex (its provider entry's `env_key`).
const TOKEN_ENV: &str = "GAFFER_PROXY_TOKEN";

/// Set its environment and give its command line. Codex keeps its state in `CODEX_HOME`: the
/// sandbox's scratch home, or (unconfined) a folder beside the prompt, never the worktree.
pub(super) fn launch(
    launch: &Launch<'_>,
    env: &mut Vec<(String, String)>,
) -> std::io::Result<String> {
    env.push((TOKEN_ENV.to_string(), launch.token.to_string()));
    let codex_home = if launch.sandboxed {
        "\"$HOME/.codex\"".to_string()
    } else {
        shell_quote(&launch.private_dir.join("codex-home").to_string_lossy())
    };
    let provider = format!(
        "model_providers.gaffer={{name=\"gaffer\", base_url=\"{}/v1\", env_key=\"{TOKEN_ENV}\", \
         wire_api=\"responses\"}}",
        launch.base_url
    );
    Ok(format!(
        "export CODEX_HOME={codex_home}; mkdir -p \"$CODEX_HOME\" && exec {program} exec --json \
         --ephemeral --skip-git-repo-check --dangerously-bypass-approvals-and-sandbox \
         -m {model} -c model_provider=gaffer -c {provider} -c features.plugins=false \
         -c analytics.enabled=false -c {web_search} \"$(cat {prompt})\" </dev/null",
        program = launch.quoted_program(),
        model = shell_quote(launch.model_id),
        provider = shell_quote(&provider),
        web_search = shell_quote("web_search=\"disabled\""),
        prompt = shell_quote(&launch.prompt_file.to_string_lossy()),
    ))
}

/// Its events: `turn.completed` (with the run's token counts) or `turn.failed`, and its last
/// message. Codex prints no cost: its own figure is its token counts at the routed model's
/// prices.
pub(super) fn read_result(output: &str, model: &ModelEntry) -> ReadResult {
    let mut completed: Option<Value> = None;
    let mut failed: Option<String> = None;
    let mut said: Option<String> = None;
    for event in output
        .lines()
        .filter(|l| l.trim_start().starts_with('{'))
        .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
    {
        match event.get("type").and_then(Value::as_str) {
            Some("turn.completed") => completed = event.get("usage").cloned(),
            Some("turn.failed") => {
                failed = event
                    .pointer("/error/message")
                    .and_then(Value::as_str)
                    .map(str::to_string);
            }
            Some("item.completed")
                if event.pointer("/item/type").and_then(Value::as_str) == Some("agent_message") =>
            {
                said = event
                    .pointer("/item/text")
                    .and_then(Value::as_str)
                    .map(str::to_string);
            }
            _ => {}
        }
    }
    let said = failed
        .clone()
        .or(said)
        .map(|s| head(&s, SAID_BYTES).to_string());
    let tokens = completed.as_ref().and_then(|u| {
        usage::from_openai(
            u.get("input_tokens")?.as_u64()?,
            u.get("output_tokens")?.as_u64()?,
            u.get("cached_input_tokens").and_then(Value::as_u64),
        )
        .ok()
    });
    let cost = match (tokens, model.pricing) {
        (Some(tokens), Pricing::Tokens(prices)) => Some(prices.cost(&tokens)),
        _ => None,
    };
    let end = if completed.is_some() || failed.is_some() {
        Some(AgentEnd::Finished {
            summary: said.clone().unwrap_or_default(),
        })
    } else {
        None
    };
    ReadResult {
        figure: end.as_ref().map(|_| AgentFigure {
            cost,
            turns: None,
            said,
        }),
        end,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{MicroUsd, Prices};

    #[test]
    fn its_token_counts_at_the_models_prices_are_its_figure() {
        let model = ModelEntry {
            key: "codex".into(),
            provider: "p".into(),
            id: "gpt-5.5".into(),
            pricing: Pricing::Tokens(Prices {
                input: MicroUsd(1_250_000),
                output: MicroUsd(10_000_000),
                cache_read: MicroUsd(125_000),
                cache_write: MicroUsd(0),
            }),
            max_tokens: 8_192,
            context_window: 400_000,
            fallbacks: vec![],
        };
        let output = r#"{"type":"thread.started","thread_id":"t"}
{"type":"item.completed","item":{"id":"i","type":"agent_message","text":"Wrote a.txt."}}
{"type":"turn.completed","usage":{"input_tokens":2400,"cached_input_tokens":2000,"cache_write_input_tokens":0,"output_tokens":100,"reasoning_output_tokens":40}}
"#;
        let read = read_result(output, &model);
        // 400 uncached × 1.25 + 2,000 cached × 0.125 + 100 out × 10 = 500 + 250 + 1,000 µ$.
        let figure = read.figure.unwrap();
        assert_eq!(figure.cost, Some(MicroUsd(1_750)));
        assert_eq!(figure.said.as_deref(), Some("Wrote a.txt."));
        assert_eq!(
            read.end,
            Some(AgentEnd::Finished {
                summary: "Wrote a.txt.".into()
            })
        );
        assert!(
            read_result("Reading additional input from stdin...\n", &model)
                .end
                .is_none()
        );
    }
}

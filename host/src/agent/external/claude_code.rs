//! Claude Code (`claude -p --output-format json`): its command line under gaffer, the settings
//! gaffer writes for it, and its result object.

use serde_json::{Value, json};

use super::{
    AgentFigure, Launch, ReadResult, SAID_BYTES, dollars_to_micro, head, hook_settings, shell_quote,
};
use crate::agent::session::AgentEnd;

/// The tools Claude Code may use without asking (everything else is denied: no prompt can be
/// answered in a non-interactive run). Its web tools are not among them; they would fail in
/// the sandbox, and the proxy refuses the provider-side search.
const TOOLS: &str = "Read Write Edit Bash Glob Grep NotebookEdit";

/// Write its settings beside the prompt, set its environment, and give its command line:
/// the routed model, the settings file (`--settings`, which outranks every settings file the
/// agent could write) and no other settings source, no MCP servers or skills, nothing kept.
pub(super) fn launch(
    launch: &Launch<'_>,
    hook_command: Option<&[String]>,
    env: &mut Vec<(String, String)>,
) -> std::io::Result<String> {
    let settings_file = launch.private_dir.join("settings.json");
    std::fs::write(&settings_file, settings(hook_command).to_string())?;
    env.extend(
        [
            ("ANTHROPIC_BASE_URL", launch.base_url),
            ("ANTHROPIC_API_KEY", launch.token),
            // Only the model calls: no update checks, telemetry or error reports.
            ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1"),
            ("DISABLE_AUTOUPDATER", "1"),
            ("DISABLE_TELEMETRY", "1"),
            ("DISABLE_ERROR_REPORTING", "1"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    Ok(format!(
        "exec {program} -p \"$(cat {prompt})\" --output-format json --model {model} \
         --permission-mode dontAsk --allowedTools {tools} --settings {settings} \
         --setting-sources '' --strict-mcp-config --disable-slash-commands \
         --no-session-persistence",
        program = launch.quoted_program(),
        prompt = shell_quote(&launch.prompt_file.to_string_lossy()),
        model = shell_quote(launch.model_id),
        tools = shell_quote(TOOLS),
        settings = shell_quote(&settings_file.to_string_lossy()),
    ))
}

/// Claude Code's settings for a run under gaffer: the team's hooks when there are any, its
/// own sandbox off (gaffer's holds), no project MCP servers, hooks that stay on and skills
/// that run no shell (also without hooks), nothing kept between runs.
fn settings(hook_command: Option<&[String]>) -> Value {
    let mut settings = match hook_command {
        Some(command) => hook_settings(command),
        None => json!({"disableAllHooks": false, "disableSkillShellExecution": true}),
    };
    if let Some(object) = settings.as_object_mut() {
        object.insert("sandbox".into(), json!({ "enabled": false }));
        object.insert("enableAllProjectMcpServers".into(), json!(false));
        object.insert("cleanupPeriodDays".into(), json!(1));
        object.insert("includeCoAuthoredBy".into(), json!(false));
    }
    settings
}

/// Its result object (the last JSON line of type `result`): how it ended, its own cost
/// (`total_cost_usd`), turns and last words.
pub(super) fn read_result(output: &str) -> ReadResult {
    let Some(result) = last_result(output) else {
        return ReadResult {
            end: None,
            figure: None,
        };
    };
    let figure = AgentFigure {
        cost: result
            .get("total_cost_usd")
            .and_then(Value::as_f64)
            .map(dollars_to_micro),
        turns: result
            .get("num_turns")
            .and_then(Value::as_u64)
            .and_then(|t| u32::try_from(t).ok()),
        said: result
            .get("result")
            .and_then(Value::as_str)
            .map(|text| head(text, SAID_BYTES).to_string()),
    };
    ReadResult {
        end: Some(end(&result)),
        figure: Some(figure),
    }
}

/// How its result object says the run ended.
fn end(result: &Value) -> AgentEnd {
    let text = result
        .get("result")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let is_error = result.get("is_error").and_then(Value::as_bool) == Some(true);
    let subtype = result.get("subtype").and_then(Value::as_str).unwrap_or("");
    if subtype == "error_max_turns" {
        return AgentEnd::TurnLimit;
    }
    match result.get("api_error_status").and_then(Value::as_u64) {
        Some(status) if is_error && (status == 429 || status >= 500) => AgentEnd::Provider(text),
        _ => AgentEnd::Finished { summary: text },
    }
}

/// The last line of `output` that is Claude Code's result object.
fn last_result(output: &str) -> Option<Value> {
    output.lines().rev().find_map(|line| {
        let line = line.trim();
        if !line.starts_with('{') {
            return None;
        }
        serde_json::from_str::<Value>(line)
            .ok()
            .filter(|v| v.get("type").and_then(Value::as_str) == Some("result"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_result_is_the_last_json_line_of_type_result() {
        let output = "warning: something\n{\"type\":\"system\"}\n{\"type\":\"result\",\"total_cost_usd\":0.01518,\"num_turns\":2,\"result\":\"done\"}\n";
        let read = read_result(output);
        let figure = read.figure.unwrap();
        assert_eq!(figure.turns, Some(2));
        assert_eq!(figure.cost, Some(crate::ledger::MicroUsd(15_180)));
        assert_eq!(
            read.end,
            Some(AgentEnd::Finished {
                summary: "done".into()
            })
        );
        assert!(read_result("no json here").end.is_none());
    }

    #[test]
    fn an_api_error_of_the_provider_is_a_provider_ending() {
        let ended = end(&json!({"type": "result", "is_error": true,
            "api_error_status": 529, "result": "API Error: overloaded"}));
        assert!(matches!(ended, AgentEnd::Provider(_)));
        let ended = end(&json!({"type": "result", "subtype": "error_max_turns"}));
        assert_eq!(ended, AgentEnd::TurnLimit);
    }

    #[test]
    fn its_settings_keep_hooks_on_and_its_own_sandbox_off() {
        let with_hooks = settings(Some(&[
            "/bin/gaffer-hook".to_string(),
            "claude-code".to_string(),
        ]));
        assert_eq!(with_hooks["disableAllHooks"], false);
        assert_eq!(with_hooks["sandbox"]["enabled"], false);
        assert_eq!(
            with_hooks["hooks"]["PreToolUse"][0]["hooks"][0]["onFailure"],
            "block"
        );
        let without = settings(None);
        assert_eq!(without["disableSkillShellExecution"], true);
        assert!(without.get("hooks").is_none());
    }
}

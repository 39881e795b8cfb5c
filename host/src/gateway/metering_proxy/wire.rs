//! What the proxy reads and changes in an agent's request, per wire format: the model asked
//! for, the output bound, streaming; what it refuses (anything that would leave the sandbox or
//! the budget through the provider); the usage of an answer; errors in the format's own shape.

use serde_json::{Value, json};

use super::super::usage;
use crate::gateway::provider::{Endpoint, ProviderKind};
use crate::store::{Phase, TokenCounts};

/// The wire format an agent speaks to the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AgentProtocol {
    /// Anthropic Messages (Claude Code).
    Anthropic,
    /// OpenAI Chat Completions (Aider, mini-swe-agent, most CLIs).
    OpenaiChat,
    /// OpenAI Responses (Codex).
    OpenaiResponses,
}

impl AgentProtocol {
    /// The provider format that serves this protocol without translation.
    pub fn provider_kind(self) -> ProviderKind {
        match self {
            AgentProtocol::Anthropic => ProviderKind::Anthropic,
            AgentProtocol::OpenaiChat | AgentProtocol::OpenaiResponses => {
                ProviderKind::OpenaiCompatible
            }
        }
    }

    /// The provider endpoint a generation request goes to.
    pub fn endpoint(self) -> Endpoint {
        match self {
            AgentProtocol::Anthropic => Endpoint::Messages,
            AgentProtocol::OpenaiChat => Endpoint::ChatCompletions,
            AgentProtocol::OpenaiResponses => Endpoint::Responses,
        }
    }

    /// How it is named to people.
    pub fn describe(self) -> &'static str {
        match self {
            AgentProtocol::Anthropic => "Anthropic Messages",
            AgentProtocol::OpenaiChat => "OpenAI Chat Completions",
            AgentProtocol::OpenaiResponses => "OpenAI Responses",
        }
    }
}

/// A request the proxy will not forward, and why (the agent is shown the reason).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    /// The format's error type (`invalid_request_error`, `permission_error`, ...).
    pub kind: &'static str,
    pub message: String,
}

impl Refusal {
    pub fn invalid(message: impl Into<String>) -> Refusal {
        Refusal {
            status: 400,
            kind: "invalid_request_error",
            message: message.into(),
        }
    }

    pub fn forbidden(message: impl Into<String>) -> Refusal {
        Refusal {
            status: 403,
            kind: "permission_error",
            message: message.into(),
        }
    }
}

/// What the proxy needs to know of a generation request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspected {
    pub model: String,
    /// The output bound the agent asked for, if it asked.
    pub max_tokens: Option<u64>,
    pub stream: bool,
    /// Anthropic's extended thinking budget, which must stay below `max_tokens`.
    pub thinking_budget: Option<u64>,
    /// Image inputs, whose tokens are not bounded by their bytes.
    pub images: u64,
}

/// Tool types Anthropic runs on the client (the agent executes them, in the sandbox); any
/// other typed tool runs on Anthropic's servers.
const ANTHROPIC_CLIENT_TOOL_PREFIXES: &[&str] =
    &["custom", "bash_", "text_editor_", "computer_", "memory_"];

/// Tool types that OpenAI's APIs hand back to the client to run (`tool_search` only when its
/// `execution` is the client's, as Codex sends it).
const OPENAI_CLIENT_TOOL_TYPES: &[&str] = &["function", "custom", "local_shell", "apply_patch"];

/// Read a generation request, refusing what the proxy cannot meter or would let out of the
/// sandbox: provider-side tools (web search and fetch, code execution, file search, MCP),
/// `mcp_servers`, several choices at once, and continuations whose input is kept on the
/// provider (`previous_response_id`), which no reservation made here can bound.
pub fn inspect(protocol: AgentProtocol, body: &Value) -> Result<Inspected, Refusal> {
    let Some(object) = body.as_object() else {
        return Err(Refusal::invalid("the request body is not a JSON object"));
    };
    let model = object
        .get("model")
        .and_then(Value::as_str)
        .ok_or_else(|| Refusal::invalid("the request names no `model`"))?
        .to_string();
    let number = |key: &str| object.get(key).and_then(Value::as_u64);
    if object.contains_key("mcp_servers") {
        return Err(Refusal::forbidden(
            "gaffer refuses `mcp_servers`: a provider-side MCP connection would leave the sandbox",
        ));
    }
    refuse_server_tools(protocol, object.get("tools"))?;
    let max_tokens = match protocol {
        AgentProtocol::Anthropic => number("max_tokens"),
        AgentProtocol::OpenaiChat => number("max_completion_tokens").or(number("max_tokens")),
        AgentProtocol::OpenaiResponses => number("max_output_tokens"),
    };
    match protocol {
        AgentProtocol::Anthropic => {
            if object.contains_key("container") {
                return Err(Refusal::forbidden(
                    "gaffer refuses `container`: provider-side code execution would leave the sandbox",
                ));
            }
        }
        AgentProtocol::OpenaiChat => {
            if object.contains_key("web_search_options") {
                return Err(Refusal::forbidden(
                    "gaffer refuses `web_search_options`: a provider-side web search would leave the sandbox",
                ));
            }
            if number("n").is_some_and(|n| n > 1) {
                return Err(Refusal::invalid(
                    "gaffer refuses `n` above 1: the reservation covers one answer",
                ));
            }
        }
        AgentProtocol::OpenaiResponses => {
            if object
                .get("previous_response_id")
                .is_some_and(|v| !v.is_null())
            {
                return Err(Refusal::invalid(
                    "gaffer refuses `previous_response_id`: the input kept on the provider cannot be \
                     bounded before the call; send the whole input (`store: false`)",
                ));
            }
            if object.get("conversation").is_some_and(|v| !v.is_null()) {
                return Err(Refusal::invalid(
                    "gaffer refuses `conversation`: the input kept on the provider cannot be bounded \
                     before the call",
                ));
            }
        }
    }
    Ok(Inspected {
        model,
        max_tokens,
        stream: object.get("stream").and_then(Value::as_bool) == Some(true),
        thinking_budget: body
            .pointer("/thinking/budget_tokens")
            .and_then(Value::as_u64),
        images: count_images(body),
    })
}

fn refuse_server_tools(protocol: AgentProtocol, tools: Option<&Value>) -> Result<(), Refusal> {
    let Some(tools) = tools.and_then(Value::as_array) else {
        return Ok(());
    };
    for tool in tools {
        let kind = tool.get("type").and_then(Value::as_str);
        let client_side = match (protocol, kind) {
            // An Anthropic tool without a type is a custom (client) tool.
            (AgentProtocol::Anthropic, None) => true,
            (AgentProtocol::Anthropic, Some(kind)) => ANTHROPIC_CLIENT_TOOL_PREFIXES
                .iter()
                .any(|prefix| kind.starts_with(prefix)),
            (_, Some("tool_search")) => {
                tool.get("execution").and_then(Value::as_str) == Some("client")
            }
            (_, Some(kind)) => OPENAI_CLIENT_TOOL_TYPES.contains(&kind),
            (_, None) => false,
        };
        if !client_side {
            let name = kind.unwrap_or("untyped");
            return Err(Refusal::forbidden(format!(
                "gaffer refuses the provider-side tool `{name}`: it would leave the sandbox through \
                 the provider (web search, web fetch, code execution and MCP tools are not allowed)"
            )));
        }
    }
    Ok(())
}

/// Image blocks anywhere in the request (`"type": "image"` / `"image_url"` / `"input_image"`).
fn count_images(value: &Value) -> u64 {
    match value {
        Value::Object(map) => {
            let own = u64::from(matches!(
                map.get("type").and_then(Value::as_str),
                Some("image" | "image_url" | "input_image")
            ));
            own + map.values().map(count_images).sum::<u64>()
        }
        Value::Array(items) => items.iter().map(count_images).sum(),
        _ => 0,
    }
}

/// Tools that change files, by the names agents give them.
const WRITE_TOOLS: &[&str] = &[
    "Write",
    "Edit",
    "MultiEdit",
    "NotebookEdit",
    "str_replace_based_edit_tool",
    "apply_patch",
    "write_file",
    "edit",
];

/// Tools that run commands, by the names agents give them.
const COMMAND_TOOLS: &[&str] = &[
    "Bash",
    "exec_command",
    "shell",
    "local_shell",
    "run_command",
];

/// The phase of the agent's work a request belongs to, read from the conversation it carries,
/// as the built-in loop counts it: its first call reads the task; after a command failed it
/// iterates (until it changes a file again); after a file changed it implements; before, it
/// explores.
pub fn phase(protocol: AgentProtocol, body: &Value) -> Phase {
    let mut names: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    let (mut answered, mut changed, mut failing) = (false, false, false);
    let mut result = |name: Option<&String>, failed: bool| {
        let Some(name) = name else {
            return;
        };
        if WRITE_TOOLS.contains(&name.as_str()) && !failed {
            changed = true;
            failing = false;
        } else if COMMAND_TOOLS.contains(&name.as_str()) && failed {
            failing = true;
        }
    };
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match protocol {
        AgentProtocol::Anthropic => {
            for message in body["messages"].as_array().into_iter().flatten() {
                let blocks = message["content"].as_array().cloned().unwrap_or_default();
                if message["role"] == "assistant" {
                    answered = true;
                }
                for block in &blocks {
                    match block["type"].as_str() {
                        Some("tool_use") => {
                            if let (Some(id), Some(name)) =
                                (block["id"].as_str(), block["name"].as_str())
                            {
                                names.insert(id.to_string(), name.to_string());
                            }
                        }
                        Some("tool_result") => {
                            let id = block["tool_use_id"].as_str().unwrap_or_default();
                            let failed = block["is_error"].as_bool() == Some(true)
                                || text(&block["content"]).contains("Exit code ");
                            result(names.get(id), failed);
                        }
                        _ => {}
                    }
                }
            }
        }
        AgentProtocol::OpenaiChat => {
            for message in body["messages"].as_array().into_iter().flatten() {
                match message["role"].as_str() {
                    Some("assistant") => {
                        answered = true;
                        for call in message["tool_calls"].as_array().into_iter().flatten() {
                            if let (Some(id), Some(name)) = (
                                call["id"].as_str(),
                                call.pointer("/function/name").and_then(Value::as_str),
                            ) {
                                names.insert(id.to_string(), name.to_string());
                            }
                        }
                    }
                    Some("tool") => {
                        let id = message["tool_call_id"].as_str().unwrap_or_default();
                        result(names.get(id), false);
                    }
                    _ => {}
                }
            }
        }
        AgentProtocol::OpenaiResponses => {
            for item in body["input"].as_array().into_iter().flatten() {
                match item["type"].as_str() {
                    Some("function_call" | "custom_tool_call" | "local_shell_call") => {
                        answered = true;
                        if let (Some(id), Some(name)) = (
                            item["call_id"].as_str(),
                            item["name"].as_str().or(Some("local_shell")),
                        ) {
                            names.insert(id.to_string(), name.to_string());
                        }
                    }
                    Some("message") if item["role"] == "assistant" => answered = true,
                    Some(
                        "function_call_output"
                        | "custom_tool_call_output"
                        | "local_shell_call_output",
                    ) => {
                        let id = item["call_id"].as_str().unwrap_or_default();
                        let output = text(&item["output"]);
                        // Codex reports a command's exit as `Process exited with code N`.
                        let failed = output
                            .split("exited with code ")
                            .nth(1)
                            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
                            .is_some_and(|code| !code.is_empty() && code != "0");
                        result(names.get(id), failed);
                    }
                    _ => {}
                }
            }
        }
    }
    Phase::of_work(!answered, failing, changed)
}

/// Point the request at `model_id` with `max_tokens` as its output bound, and ask a stream to
/// report its usage (OpenAI Chat Completions only does when asked).
pub fn rewrite(
    protocol: AgentProtocol,
    body: &mut Value,
    model_id: &str,
    max_tokens: u64,
    stream: bool,
) {
    let Some(object) = body.as_object_mut() else {
        return;
    };
    object.insert("model".into(), json!(model_id));
    match protocol {
        AgentProtocol::Anthropic => {
            object.insert("max_tokens".into(), json!(max_tokens));
        }
        AgentProtocol::OpenaiChat => {
            // Keep the field the agent used (servers differ in which they honour).
            let field = if object.contains_key("max_tokens") {
                "max_tokens"
            } else {
                "max_completion_tokens"
            };
            object.insert(field.into(), json!(max_tokens));
            if stream {
                let options = object.entry("stream_options").or_insert_with(|| json!({}));
                if let Some(options) = options.as_object_mut() {
                    options.insert("include_usage".into(), json!(true));
                } else {
                    *options = json!({ "include_usage": true });
                }
            }
        }
        AgentProtocol::OpenaiResponses => {
            object.insert("max_output_tokens".into(), json!(max_tokens));
        }
    }
}

/// Anthropic's `usage` object; fields it leaves out keep their value from `earlier` (a stream's
/// deltas repeat only what changed).
pub fn anthropic_usage(usage: &Value, earlier: Option<TokenCounts>) -> TokenCounts {
    let earlier = earlier.unwrap_or_default();
    let field = |key: &str, before: u64| usage.get(key).and_then(Value::as_u64).unwrap_or(before);
    usage::from_anthropic(
        field("input_tokens", earlier.input),
        field("output_tokens", earlier.output),
        Some(field("cache_read_input_tokens", earlier.cache_read)),
        Some(field("cache_creation_input_tokens", earlier.cache_write)),
    )
}

/// Chat Completions `usage`; `None` when it is missing its counts or cannot be right.
pub fn openai_chat_usage(usage: &Value) -> Option<TokenCounts> {
    usage::from_openai(
        usage.get("prompt_tokens")?.as_u64()?,
        usage.get("completion_tokens")?.as_u64()?,
        usage
            .pointer("/prompt_tokens_details/cached_tokens")
            .and_then(Value::as_u64),
    )
    .ok()
}

/// Responses `usage` (`input_tokens` contains `input_tokens_details.cached_tokens`).
pub fn openai_responses_usage(usage: &Value) -> Option<TokenCounts> {
    usage::from_openai(
        usage.get("input_tokens")?.as_u64()?,
        usage.get("output_tokens")?.as_u64()?,
        usage
            .pointer("/input_tokens_details/cached_tokens")
            .and_then(Value::as_u64),
    )
    .ok()
}

/// The usage in a whole (not streamed) answer.
pub fn body_usage(protocol: AgentProtocol, body: &[u8]) -> Option<TokenCounts> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let usage = value.get("usage")?;
    match protocol {
        AgentProtocol::Anthropic => usage
            .get("input_tokens")
            .and(usage.get("output_tokens"))
            .map(|_| anthropic_usage(usage, None)),
        AgentProtocol::OpenaiChat => openai_chat_usage(usage),
        AgentProtocol::OpenaiResponses => openai_responses_usage(usage),
    }
}

/// An error body in the format's own shape, so the agent shows `message` as the provider's.
pub fn error_body(protocol: AgentProtocol, kind: &str, message: &str) -> Value {
    match protocol {
        AgentProtocol::Anthropic => json!({
            "type": "error",
            "error": { "type": kind, "message": message },
        }),
        AgentProtocol::OpenaiChat | AgentProtocol::OpenaiResponses => json!({
            "error": { "message": message, "type": kind, "param": null, "code": kind },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_side_tools_are_refused_and_client_tools_pass() {
        let request = |tools: Value| json!({"model": "m", "max_tokens": 10, "tools": tools});
        for tool in [
            json!({"type": "web_search_20250305", "name": "web_search"}),
            json!({"type": "web_fetch_20250910", "name": "web_fetch"}),
            json!({"type": "code_execution_20250825", "name": "code_execution"}),
            json!({"type": "mcp_toolset", "mcp_server_name": "x"}),
        ] {
            let refusal = inspect(AgentProtocol::Anthropic, &request(json!([tool]))).unwrap_err();
            assert_eq!(refusal.status, 403, "{tool}");
        }
        for tool in [
            json!({"name": "Write", "input_schema": {}}),
            json!({"type": "custom", "name": "Write", "input_schema": {}}),
            json!({"type": "bash_20250124", "name": "bash"}),
            json!({"type": "text_editor_20250728", "name": "str_replace_based_edit_tool"}),
        ] {
            assert!(inspect(AgentProtocol::Anthropic, &request(json!([tool]))).is_ok());
        }
        assert!(
            inspect(
                AgentProtocol::OpenaiResponses,
                &request(json!([{"type": "tool_search", "execution": "client"}]))
            )
            .is_ok()
        );
        for tool in [
            json!({"type": "web_search", "external_web_access": true}),
            json!({"type": "tool_search"}),
            json!({"type": "file_search"}),
            json!({"type": "code_interpreter"}),
            json!({"type": "mcp", "server_url": "https://x"}),
            json!({"type": "image_generation"}),
        ] {
            assert!(
                inspect(AgentProtocol::OpenaiResponses, &request(json!([tool]))).is_err(),
                "{tool}"
            );
        }
        assert!(
            inspect(
                AgentProtocol::OpenaiChat,
                &request(json!([{"type": "function", "function": {"name": "f"}}]))
            )
            .is_ok()
        );
    }

    #[test]
    fn continuations_and_provider_side_connections_are_refused() {
        assert!(
            inspect(
                AgentProtocol::OpenaiResponses,
                &json!({"model": "m", "previous_response_id": "resp_1"})
            )
            .is_err()
        );
        assert!(
            inspect(
                AgentProtocol::OpenaiResponses,
                &json!({"model": "m", "previous_response_id": null})
            )
            .is_ok()
        );
        assert!(
            inspect(
                AgentProtocol::Anthropic,
                &json!({"model": "m", "max_tokens": 1, "mcp_servers": []})
            )
            .is_err()
        );
        assert!(inspect(AgentProtocol::OpenaiChat, &json!({"model": "m", "n": 3})).is_err());
    }

    #[test]
    fn images_are_counted_wherever_they_are() {
        let body = json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "look"},
            {"type": "image", "source": {"type": "base64", "data": "AAAA"}},
            {"type": "tool_result", "content": [{"type": "image", "source": {}}]},
        ]}]});
        assert_eq!(inspect(AgentProtocol::Anthropic, &body).unwrap().images, 2);
    }

    #[test]
    fn the_phase_follows_the_conversation_as_the_built_in_loop_counts_it() {
        let turn = |blocks: Value| json!({"role": "assistant", "content": blocks});
        let results = |blocks: Value| json!({"role": "user", "content": blocks});
        let mut messages = vec![json!({"role": "user", "content": "Task T-1: fix it"})];
        let at =
            |messages: &Vec<Value>| phase(AgentProtocol::Anthropic, &json!({"messages": messages}));
        assert_eq!(at(&messages), Phase::ReadTask);
        messages.push(turn(
            json!([{"type": "tool_use", "id": "a", "name": "Read", "input": {}}]),
        ));
        messages.push(results(
            json!([{"type": "tool_result", "tool_use_id": "a", "content": "..."}]),
        ));
        assert_eq!(at(&messages), Phase::Explore);
        messages.push(turn(
            json!([{"type": "tool_use", "id": "b", "name": "Write", "input": {}}]),
        ));
        messages.push(results(
            json!([{"type": "tool_result", "tool_use_id": "b", "content": "ok"}]),
        ));
        assert_eq!(at(&messages), Phase::Implement);
        messages.push(turn(
            json!([{"type": "tool_use", "id": "c", "name": "Bash", "input": {}}]),
        ));
        messages.push(results(json!([{"type": "tool_result", "tool_use_id": "c",
            "content": "Exit code 1\nFAILED", "is_error": true}])));
        assert_eq!(at(&messages), Phase::Iterate);
        messages.push(turn(
            json!([{"type": "tool_use", "id": "d", "name": "Edit", "input": {}}]),
        ));
        messages.push(results(
            json!([{"type": "tool_result", "tool_use_id": "d", "content": "ok"}]),
        ));
        assert_eq!(at(&messages), Phase::Implement);

        let codex = |output: &str| {
            phase(
                AgentProtocol::OpenaiResponses,
                &json!({"input": [
                    {"type": "message", "role": "user", "content": "Task"},
                    {"type": "function_call", "call_id": "x", "name": "exec_command", "arguments": "{}"},
                    {"type": "function_call_output", "call_id": "x", "output": output},
                ]}),
            )
        };
        assert_eq!(codex("Process exited with code 2\nOutput:"), Phase::Iterate);
        assert_eq!(codex("Process exited with code 0\nOutput:"), Phase::Explore);
    }

    #[test]
    fn a_chat_stream_is_asked_for_its_usage() {
        let mut body = json!({"model": "gpt", "stream": true, "max_tokens": 99999});
        rewrite(AgentProtocol::OpenaiChat, &mut body, "real-id", 4096, true);
        assert_eq!(
            body,
            json!({"model": "real-id", "stream": true, "max_tokens": 4096,
                   "stream_options": {"include_usage": true}})
        );
        let mut body = json!({"model": "x", "max_tokens": 1});
        rewrite(AgentProtocol::Anthropic, &mut body, "claude", 2048, false);
        assert_eq!(body, json!({"model": "claude", "max_tokens": 2048}));
    }
}

//! OpenAI-compatible Chat Completions: OpenAI, OpenRouter, Ollama, llama.cpp's server, vLLM,
//! a LiteLLM proxy. Request building and response parsing, no I/O.

use serde::Deserialize;
use serde_json::{Value, json};

use super::chat::{Block, ChatRequest, ChatResponse, Role, StopReason, WireError, excerpt};
use super::usage::from_openai;

/// Which output-limit field the server honours: OpenAI deprecates `max_tokens` (o-series models
/// refuse it); Ollama knows only `max_tokens`; unknown fields are silently ignored, so the wrong
/// one means no limit at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MaxTokensField {
    #[default]
    MaxTokens,
    MaxCompletionTokens,
}

impl MaxTokensField {
    /// The names `max_tokens_field` takes in `gaffer.toml`.
    pub const NAMES: &[&str] = &["max_tokens", "max_completion_tokens"];

    /// The field a `gaffer.toml` name stands for.
    pub fn from_name(name: &str) -> Option<MaxTokensField> {
        match name {
            "max_tokens" => Some(MaxTokensField::MaxTokens),
            "max_completion_tokens" => Some(MaxTokensField::MaxCompletionTokens),
            _ => None,
        }
    }
}

/// The JSON body of a Chat Completions request (not streamed: usage comes in full with the
/// answer).
pub fn request_body(request: &ChatRequest, field: MaxTokensField) -> Value {
    let mut messages = Vec::new();
    if let Some(system) = &request.system {
        messages.push(json!({"role": "system", "content": system}));
    }
    for message in &request.messages {
        match message.role {
            Role::Assistant => {
                let text: String = message
                    .blocks
                    .iter()
                    .filter_map(|b| match b {
                        Block::Text(t) => Some(t.as_str()),
                        _ => None,
                    })
                    .collect();
                let calls: Vec<Value> = message
                    .blocks
                    .iter()
                    .filter_map(|b| match b {
                        Block::ToolCall {
                            id,
                            name,
                            arguments,
                        } => Some(json!({
                            "id": id,
                            "type": "function",
                            "function": {"name": name, "arguments": arguments},
                        })),
                        _ => None,
                    })
                    .collect();
                let mut m = json!({"role": "assistant", "content": if text.is_empty() { Value::Null } else { Value::String(text) }});
                if !calls.is_empty() {
                    m["tool_calls"] = Value::Array(calls);
                }
                messages.push(m);
            }
            Role::User => {
                // Tool results are messages of their own; text goes in one user message.
                let mut text = String::new();
                for block in &message.blocks {
                    match block {
                        Block::ToolResult {
                            call_id, content, ..
                        } => messages.push(json!({
                            "role": "tool",
                            "tool_call_id": call_id,
                            "content": content,
                        })),
                        Block::Text(t) => text.push_str(t),
                        Block::ToolCall { .. } => {}
                    }
                }
                if !text.is_empty() {
                    messages.push(json!({"role": "user", "content": text}));
                }
            }
        }
    }
    let mut body = json!({
        "model": request.model,
        "messages": messages,
        "stream": false,
    });
    let limit = match field {
        MaxTokensField::MaxTokens => "max_tokens",
        MaxTokensField::MaxCompletionTokens => "max_completion_tokens",
    };
    body[limit] = json!(request.max_tokens);
    if !request.tools.is_empty() {
        body["tools"] = request
            .tools
            .iter()
            .map(|t| {
                let parameters: Value =
                    serde_json::from_str(&t.parameters).unwrap_or_else(|_| json!({"type": "object"}));
                json!({
                    "type": "function",
                    "function": {"name": t.name, "description": t.description, "parameters": parameters},
                })
            })
            .collect();
    }
    body
}

#[derive(Deserialize)]
struct Response {
    #[serde(default)]
    model: String,
    #[serde(default)]
    choices: Vec<Choice>,
    usage: Option<UsageJson>,
}

#[derive(Deserialize)]
struct Choice {
    message: ResponseMessage,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct ResponseMessage {
    content: Option<String>,
    #[serde(default)]
    tool_calls: Vec<ToolCallJson>,
}

#[derive(Deserialize)]
struct ToolCallJson {
    id: String,
    function: FunctionJson,
}

#[derive(Deserialize)]
struct FunctionJson {
    name: String,
    #[serde(default)]
    arguments: String,
}

#[derive(Deserialize)]
struct UsageJson {
    prompt_tokens: u64,
    completion_tokens: u64,
    prompt_tokens_details: Option<PromptDetails>,
}

#[derive(Deserialize)]
struct PromptDetails {
    cached_tokens: Option<u64>,
}

/// Parse a successful (2xx) body.
pub fn parse_response(body: &[u8]) -> Result<ChatResponse, WireError> {
    let response: Response = serde_json::from_slice(body).map_err(|e| WireError::Malformed {
        reason: e.to_string(),
        excerpt: excerpt(body),
    })?;
    let choice = response
        .choices
        .into_iter()
        .next()
        .ok_or(WireError::NoChoices)?;
    let stop = match choice.finish_reason.as_deref() {
        Some("stop") => StopReason::EndTurn,
        Some("length") => StopReason::MaxTokens,
        Some("tool_calls") | Some("function_call") => StopReason::ToolUse,
        Some("content_filter") => StopReason::Refusal,
        Some(other) => return Err(WireError::UnknownStop(other.to_string())),
        None => return Err(WireError::UnknownStop("(none)".to_string())),
    };
    let mut blocks = Vec::new();
    if let Some(text) = choice.message.content.filter(|t| !t.is_empty()) {
        blocks.push(Block::Text(text));
    }
    for call in choice.message.tool_calls {
        blocks.push(Block::ToolCall {
            id: call.id,
            name: call.function.name,
            arguments: if call.function.arguments.is_empty() {
                "{}".to_string()
            } else {
                call.function.arguments
            },
        });
    }
    let usage = match response.usage {
        Some(u) => Some(
            from_openai(
                u.prompt_tokens,
                u.completion_tokens,
                u.prompt_tokens_details.and_then(|d| d.cached_tokens),
            )
            .map_err(|e| WireError::Usage(e.to_string()))?,
        ),
        None => None,
    };
    Ok(ChatResponse {
        model: response.model,
        blocks,
        stop,
        usage,
    })
}

/// The provider's own message from an error body (`{"error": {"message": ...}}`), if any.
pub fn error_message(body: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let error = &value["error"];
    let message = error["message"].as_str().or_else(|| error.as_str())?;
    let kind = error["type"].as_str().or_else(|| error["code"].as_str());
    Some(match kind {
        Some(kind) => format!("{kind}: {message}"),
        None => message.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::chat::{Message, ToolSpec};
    use crate::store::TokenCounts;

    #[test]
    fn builds_system_tools_and_tool_results() {
        let request = ChatRequest {
            model: "gpt-4.1-mini".into(),
            system: Some("You fix bugs.".into()),
            messages: vec![
                Message::user("Fix it"),
                Message {
                    role: Role::Assistant,
                    blocks: vec![Block::ToolCall {
                        id: "call_1".into(),
                        name: "read_file".into(),
                        arguments: r#"{"path":"a.rs"}"#.into(),
                    }],
                },
                Message {
                    role: Role::User,
                    blocks: vec![Block::ToolResult {
                        call_id: "call_1".into(),
                        content: "fn main() {}".into(),
                        is_error: false,
                    }],
                },
            ],
            tools: vec![ToolSpec {
                name: "read_file".into(),
                description: "Read a file".into(),
                parameters: r#"{"type":"object","properties":{"path":{"type":"string"}}}"#.into(),
            }],
            max_tokens: 512,
        };
        let body = request_body(&request, MaxTokensField::MaxCompletionTokens);
        assert_eq!(
            body["messages"][0],
            json!({"role": "system", "content": "You fix bugs."})
        );
        assert_eq!(
            body["messages"][2]["tool_calls"][0]["function"]["arguments"],
            r#"{"path":"a.rs"}"#
        );
        assert_eq!(body["messages"][2]["content"], Value::Null);
        assert_eq!(
            body["messages"][3],
            json!({"role": "tool", "tool_call_id": "call_1", "content": "fn main() {}"})
        );
        assert_eq!(body["max_completion_tokens"], 512);
        assert!(body.get("max_tokens").is_none());
        assert_eq!(
            body["tools"][0]["function"]["parameters"]["properties"]["path"]["type"],
            "string"
        );
        assert_eq!(body["stream"], false);
    }

    #[test]
    fn parses_text_tool_calls_and_cached_usage() {
        let body = br#"{"id":"chatcmpl-1","model":"gpt-4.1-mini-2025","choices":[{"index":0,
            "message":{"role":"assistant","content":null,"tool_calls":[{"id":"call_9","type":"function",
            "function":{"name":"edit","arguments":"{\"path\":\"x\"}"}}]},"finish_reason":"tool_calls"}],
            "usage":{"prompt_tokens":2006,"completion_tokens":300,"total_tokens":2306,
            "prompt_tokens_details":{"cached_tokens":1920},"completion_tokens_details":{"reasoning_tokens":64}}}"#;
        let response = parse_response(body).unwrap();
        assert_eq!(response.stop, StopReason::ToolUse);
        assert_eq!(
            response.tool_calls().collect::<Vec<_>>(),
            [("call_9", "edit", r#"{"path":"x"}"#)]
        );
        assert_eq!(
            response.usage,
            Some(TokenCounts {
                input: 86,
                cache_read: 1_920,
                cache_write: 0,
                output: 300
            })
        );
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        assert!(matches!(
            parse_response(b"<html>502</html>"),
            Err(WireError::Malformed { .. })
        ));
        assert!(matches!(
            parse_response(br#"{"choices":[]}"#),
            Err(WireError::NoChoices)
        ));
        let odd = br#"{"choices":[{"message":{"content":"x"},"finish_reason":"sleepy"}]}"#;
        assert_eq!(
            parse_response(odd).unwrap_err(),
            WireError::UnknownStop("sleepy".into())
        );
        let missing = br#"{"choices":[{"message":{"content":"hi"},"finish_reason":"stop"}]}"#;
        assert_eq!(parse_response(missing).unwrap().usage, None);
        assert_eq!(
            error_message(br#"{"error":{"message":"Rate limit reached","type":"rate_limit_exceeded","code":null}}"#),
            Some("rate_limit_exceeded: Rate limit reached".into())
        );
        // vLLM puts an integer code.
        assert_eq!(
            error_message(br#"{"error":{"message":"bad","code":400}}"#),
            Some("bad".into())
        );
    }
}

//! The Anthropic Messages API. Request building and response parsing, no I/O.
//!
//! Agent loops re-send the same prefix every turn, so the stable part is marked for prompt
//! caching: the last tool definition, the system prompt, and the first user message (the task).
//! That is three of the four breakpoints Anthropic allows.

use serde::Deserialize;
use serde_json::{Value, json};

use super::chat::{Block, ChatRequest, ChatResponse, Role, StopReason, WireError, excerpt};
use super::usage::from_anthropic;

/// The API version header value this module speaks.
pub const API_VERSION: &str = "2023-06-01";

fn ephemeral() -> Value {
    json!({"type": "ephemeral"})
}

fn block_json(block: &Block) -> Value {
    match block {
        Block::Text(text) => json!({"type": "text", "text": text}),
        Block::ToolCall {
            id,
            name,
            arguments,
        } => {
            let input: Value = serde_json::from_str(arguments).unwrap_or_else(|_| json!({}));
            json!({"type": "tool_use", "id": id, "name": name, "input": input})
        }
        Block::ToolResult {
            call_id,
            content,
            is_error,
        } => {
            let mut v = json!({"type": "tool_result", "tool_use_id": call_id, "content": content});
            if *is_error {
                v["is_error"] = json!(true);
            }
            v
        }
    }
}

/// The JSON body of a Messages request.
pub fn request_body(request: &ChatRequest) -> Value {
    let mut messages: Vec<Value> = request
        .messages
        .iter()
        .map(|m| {
            json!({
                "role": match m.role { Role::User => "user", Role::Assistant => "assistant" },
                "content": m.blocks.iter().map(block_json).collect::<Vec<_>>(),
            })
        })
        .collect();
    // Cache the task: the last block of the first user message.
    if let Some(first) = messages.first_mut()
        && let Some(last) = first["content"].as_array_mut().and_then(|c| c.last_mut())
    {
        last["cache_control"] = ephemeral();
    }
    let mut body = json!({
        "model": request.model,
        "max_tokens": request.max_tokens,
        "messages": messages,
    });
    if let Some(system) = &request.system {
        body["system"] = json!([{"type": "text", "text": system, "cache_control": ephemeral()}]);
    }
    if !request.tools.is_empty() {
        let count = request.tools.len();
        body["tools"] = request
            .tools
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let schema: Value = serde_json::from_str(&t.parameters)
                    .unwrap_or_else(|_| json!({"type": "object"}));
                let mut tool =
                    json!({"name": t.name, "description": t.description, "input_schema": schema});
                if i + 1 == count {
                    tool["cache_control"] = ephemeral();
                }
                tool
            })
            .collect();
    }
    body
}

#[derive(Deserialize)]
struct Response {
    #[serde(default)]
    model: String,
    content: Vec<ContentJson>,
    stop_reason: Option<String>,
    usage: Option<UsageJson>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ContentJson {
    Text {
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct UsageJson {
    input_tokens: u64,
    output_tokens: u64,
    cache_creation_input_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
}

/// Parse a successful (2xx) body.
pub fn parse_response(body: &[u8]) -> Result<ChatResponse, WireError> {
    let response: Response = serde_json::from_slice(body).map_err(|e| WireError::Malformed {
        reason: e.to_string(),
        excerpt: excerpt(body),
    })?;
    let stop = match response.stop_reason.as_deref() {
        Some("end_turn") => StopReason::EndTurn,
        Some("max_tokens") => StopReason::MaxTokens,
        Some("tool_use") => StopReason::ToolUse,
        Some("stop_sequence") => StopReason::StopSequence,
        Some("refusal") => StopReason::Refusal,
        Some("pause_turn") => StopReason::Paused,
        Some("model_context_window_exceeded") => StopReason::ContextWindow,
        Some(other) => return Err(WireError::UnknownStop(other.to_string())),
        None => return Err(WireError::UnknownStop("(none)".to_string())),
    };
    let blocks = response
        .content
        .into_iter()
        .filter_map(|c| match c {
            ContentJson::Text { text } => Some(Block::Text(text)),
            ContentJson::ToolUse { id, name, input } => Some(Block::ToolCall {
                id,
                name,
                arguments: input.to_string(),
            }),
            ContentJson::Other => None,
        })
        .collect();
    Ok(ChatResponse {
        model: response.model,
        blocks,
        stop,
        usage: response.usage.map(|u| {
            from_anthropic(
                u.input_tokens,
                u.output_tokens,
                u.cache_read_input_tokens,
                u.cache_creation_input_tokens,
            )
        }),
    })
}

/// The provider's own message from an error body
/// (`{"type":"error","error":{"type":...,"message":...}}`), if any.
pub fn error_message(body: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let error = &value["error"];
    let message = error["message"].as_str()?;
    Some(match error["type"].as_str() {
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
    fn marks_the_stable_prefix_for_caching() {
        let request = ChatRequest {
            model: "claude-haiku-4-5".into(),
            system: Some("You fix bugs.".into()),
            messages: vec![Message::user("Task: fix it"), Message::assistant("ok")],
            tools: vec![
                ToolSpec {
                    name: "a".into(),
                    description: "A".into(),
                    parameters: "{}".into(),
                },
                ToolSpec {
                    name: "b".into(),
                    description: "B".into(),
                    parameters: r#"{"type":"object"}"#.into(),
                },
            ],
            max_tokens: 1024,
        };
        let body = request_body(&request);
        assert_eq!(
            body["system"][0]["cache_control"],
            json!({"type": "ephemeral"})
        );
        assert!(body["tools"][0].get("cache_control").is_none());
        assert_eq!(
            body["tools"][1]["cache_control"],
            json!({"type": "ephemeral"})
        );
        assert_eq!(body["tools"][1]["input_schema"], json!({"type": "object"}));
        assert_eq!(
            body["messages"][0]["content"][0]["cache_control"],
            json!({"type": "ephemeral"})
        );
        assert!(
            body["messages"][1]["content"][0]
                .get("cache_control")
                .is_none()
        );
        assert_eq!(body["max_tokens"], 1024);
    }

    #[test]
    fn tool_round_trip_blocks() {
        let request = ChatRequest {
            model: "m".into(),
            messages: vec![
                Message {
                    role: Role::Assistant,
                    blocks: vec![Block::ToolCall {
                        id: "toolu_1".into(),
                        name: "read_file".into(),
                        arguments: r#"{"path":"a"}"#.into(),
                    }],
                },
                Message {
                    role: Role::User,
                    blocks: vec![Block::ToolResult {
                        call_id: "toolu_1".into(),
                        content: "no such file".into(),
                        is_error: true,
                    }],
                },
            ],
            max_tokens: 10,
            ..ChatRequest::default()
        };
        let body = request_body(&request);
        assert_eq!(
            body["messages"][0]["content"][0],
            json!({"type": "tool_use", "id": "toolu_1", "name": "read_file", "input": {"path": "a"}, "cache_control": {"type": "ephemeral"}})
        );
        assert_eq!(
            body["messages"][1]["content"][0],
            json!({"type": "tool_result", "tool_use_id": "toolu_1", "content": "no such file", "is_error": true})
        );
    }

    #[test]
    fn parses_tool_use_and_cache_usage() {
        let body = br#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-haiku-4-5-20251001",
            "content":[{"type":"text","text":"Reading."},{"type":"tool_use","id":"toolu_1","name":"read_file","input":{"path":"src/a.rs"}}],
            "stop_reason":"tool_use","stop_sequence":null,
            "usage":{"input_tokens":12,"output_tokens":40,"cache_creation_input_tokens":200,"cache_read_input_tokens":1000,
                     "cache_creation":{"ephemeral_5m_input_tokens":200,"ephemeral_1h_input_tokens":0}}}"#;
        let response = parse_response(body).unwrap();
        assert_eq!(response.text(), "Reading.");
        assert_eq!(
            response.tool_calls().collect::<Vec<_>>(),
            [("toolu_1", "read_file", r#"{"path":"src/a.rs"}"#)]
        );
        assert_eq!(response.stop, StopReason::ToolUse);
        assert_eq!(
            response.usage,
            Some(TokenCounts {
                input: 12,
                cache_read: 1_000,
                cache_write: 200,
                output: 40
            })
        );
    }

    #[test]
    fn errors_carry_the_providers_words() {
        let body = br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_1"}"#;
        assert_eq!(
            error_message(body),
            Some("overloaded_error: Overloaded".into())
        );
        assert!(matches!(
            parse_response(br#"{"content":[],"stop_reason":"nap"}"#),
            Err(WireError::UnknownStop(_))
        ));
        assert!(matches!(
            parse_response(br#"{"content":[{"type":"text","text":"x"}],"#),
            Err(WireError::Malformed { .. })
        ));
    }
}

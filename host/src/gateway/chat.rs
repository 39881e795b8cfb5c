//! A model call in provider-neutral terms: what the agent loop and plugins build, and what
//! each provider module turns into its own wire format and back.

use crate::store::TokenCounts;

/// Who speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
}

/// One piece of a message.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Block {
    Text(String),
    /// The model asks for a tool; `arguments` is a JSON object in text form.
    ToolCall {
        id: String,
        name: String,
        arguments: String,
    },
    /// The answer to a tool call.
    ToolResult {
        call_id: String,
        content: String,
        is_error: bool,
    },
}

/// One message of the conversation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Message {
    pub role: Role,
    pub blocks: Vec<Block>,
}

impl Message {
    /// A user message with plain text.
    pub fn user(text: impl Into<String>) -> Message {
        Message {
            role: Role::User,
            blocks: vec![Block::Text(text.into())],
        }
    }

    /// An assistant message with plain text.
    pub fn assistant(text: impl Into<String>) -> Message {
        Message {
            role: Role::Assistant,
            blocks: vec![Block::Text(text.into())],
        }
    }
}

/// A tool the model may call.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    /// JSON Schema of the arguments, as JSON text.
    pub parameters: String,
}

/// A request for one model call.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChatRequest {
    /// The provider's model id (`claude-haiku-4-5`, `gpt-4.1-mini`, `qwen2.5-coder:7b`).
    pub model: String,
    pub system: Option<String>,
    pub messages: Vec<Message>,
    pub tools: Vec<ToolSpec>,
    pub max_tokens: u32,
}

impl ChatRequest {
    /// An upper bound on the input tokens of this request, without a tokenizer: a token is
    /// never shorter than one byte of UTF-8, and each message, block and tool costs a few
    /// framing tokens at most.
    pub fn input_token_bound(&self) -> u64 {
        const PER_MESSAGE: u64 = 8;
        const PER_BLOCK: u64 = 8;
        const PER_TOOL: u64 = 16;
        let mut bytes = self
            .system
            .as_ref()
            .map_or(0, |s| s.len() as u64 + PER_MESSAGE);
        for message in &self.messages {
            bytes += PER_MESSAGE;
            for block in &message.blocks {
                bytes += PER_BLOCK
                    + match block {
                        Block::Text(text) => text.len() as u64,
                        Block::ToolCall {
                            id,
                            name,
                            arguments,
                        } => (id.len() + name.len() + arguments.len()) as u64,
                        Block::ToolResult {
                            call_id, content, ..
                        } => (call_id.len() + content.len()) as u64,
                    };
            }
        }
        for tool in &self.tools {
            bytes += PER_TOOL
                + (tool.name.len() + tool.description.len() + tool.parameters.len()) as u64;
        }
        bytes
    }
}

/// Why the model stopped, normalised across providers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StopReason {
    /// It finished its answer.
    EndTurn,
    /// It hit `max_tokens`.
    MaxTokens,
    /// It wants tools to run.
    ToolUse,
    /// A stop sequence matched.
    StopSequence,
    /// It refused, or a content filter stopped it.
    Refusal,
    /// The context window is full.
    ContextWindow,
    /// The provider paused a long turn (Anthropic `pause_turn`); send it back to continue.
    Paused,
}

impl StopReason {
    /// The name plugins are given (the contract's `stop-reason`: `end_turn`, `max_tokens`,
    /// `tool_use`, `stop_sequence`, `refusal`, `context_window`, `pause_turn`).
    pub fn contract_name(&self) -> &'static str {
        match self {
            StopReason::EndTurn => "end_turn",
            StopReason::MaxTokens => "max_tokens",
            StopReason::ToolUse => "tool_use",
            StopReason::StopSequence => "stop_sequence",
            StopReason::Refusal => "refusal",
            StopReason::ContextWindow => "context_window",
            StopReason::Paused => "pause_turn",
        }
    }
}

/// The answer of one model call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatResponse {
    /// The model as the provider names it in the answer.
    pub model: String,
    /// Text and tool calls, in order.
    pub blocks: Vec<Block>,
    pub stop: StopReason,
    /// Normalised usage; `None` when the provider reported none (the call is then charged
    /// its reservation).
    pub usage: Option<TokenCounts>,
}

impl ChatResponse {
    /// All text blocks joined.
    pub fn text(&self) -> String {
        self.blocks
            .iter()
            .filter_map(|b| match b {
                Block::Text(t) => Some(t.as_str()),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("")
    }

    /// The tool calls, in order.
    pub fn tool_calls(&self) -> impl Iterator<Item = (&str, &str, &str)> {
        self.blocks.iter().filter_map(|b| match b {
            Block::ToolCall {
                id,
                name,
                arguments,
            } => Some((id.as_str(), name.as_str(), arguments.as_str())),
            _ => None,
        })
    }
}

/// A response the gateway cannot use, with the provider's own words where there are any.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("the provider's answer is not the JSON expected: {reason}; body starts: {excerpt}")]
    Malformed { reason: String, excerpt: String },
    #[error("the provider's answer has an unknown finish reason `{0}`")]
    UnknownStop(String),
    #[error("the provider's answer has no choices")]
    NoChoices,
    #[error("the provider's usage is inconsistent: {0}")]
    Usage(String),
}

/// The first part of a body, for error messages.
pub fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut cut: String = text.chars().take(200).collect();
    if text.chars().count() > 200 {
        cut.push('…');
    }
    cut
}

//! A scripted model provider: an HTTP server on 127.0.0.1 that speaks OpenAI's Chat Completions
//! wire format and Anthropic's streamed Messages, and answers from a script of tool calls (a
//! "solutions file"). It is a simulation — the demo and the end-to-end tests run the real
//! gateway, ledger, agent, git and plugins against it, without an API key and without the
//! network. Over Anthropic's format it plays the script to Claude Code: the built-in agent's
//! tools become Claude Code's (`write_file` a `Read` then a `Write` of the absolute path under
//! the working directory Claude Code names in its system prompt, `run_command` a `Bash`,
//! `finish` the final text).
//!
//! The script says, per task (found by a string in the conversation's first user message) and
//! per model id, what the model does at each turn. Usage is counted from the bytes it received
//! and sent (about four bytes a token) and logged with every call, so a test can check the
//! ledger against what the provider reported.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// One tool call a scripted model makes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScriptedCall {
    pub name: String,
    /// The tool's arguments (a JSON object).
    pub arguments: Value,
}

/// One turn of a scripted model: text, tool calls, or both.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Turn {
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub calls: Vec<ScriptedCall>,
    /// Wait this long before answering (a slow model).
    #[serde(default)]
    pub delay_ms: u64,
}

/// What the models do on one task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskScript {
    /// A string of the task's first message (its title, say) that identifies it.
    #[serde(rename = "match")]
    pub matches: String,
    /// Per model id, its turns in order.
    pub models: HashMap<String, Vec<Turn>>,
}

/// The whole script (the demo repository's `solutions.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Script {
    pub tasks: Vec<TaskScript>,
}

/// One call the provider answered, as it reported it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoggedCall {
    pub model: String,
    /// The task script that answered (`None`: no script matched).
    pub task: Option<String>,
    /// The turn of the conversation (assistant messages before this call).
    pub turn: usize,
    /// Usage as reported: `prompt_tokens` includes `cached_tokens`.
    pub prompt_tokens: u64,
    pub cached_tokens: u64,
    pub completion_tokens: u64,
    /// The request as received.
    pub request: Value,
}

struct Inner {
    script: Script,
    log: Mutex<Vec<LoggedCall>>,
    /// Prompt tokens of the previous call of each conversation, for the cache count.
    previous: Mutex<HashMap<String, u64>>,
}

/// A running scripted provider.
pub struct ScriptedProvider {
    address: SocketAddr,
    inner: Arc<Inner>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for ScriptedProvider {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl ScriptedProvider {
    /// Serve `script` on 127.0.0.1, on a port the system picks.
    pub async fn start(script: Script) -> std::io::Result<ScriptedProvider> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let inner = Arc::new(Inner {
            script,
            log: Mutex::new(Vec::new()),
            previous: Mutex::new(HashMap::new()),
        });
        let app = axum::Router::new()
            .route("/v1/chat/completions", axum::routing::post(complete))
            .route("/v1/messages", axum::routing::post(messages))
            .with_state(inner.clone());
        let server = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::error!(%error, "the scripted provider stopped");
            }
        });
        Ok(ScriptedProvider {
            address,
            inner,
            server,
        })
    }

    /// The base URL to configure (`.../v1`).
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.address)
    }

    /// The base URL of its Anthropic Messages side (the server's root).
    pub fn anthropic_base_url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Every call answered so far.
    pub fn log(&self) -> Vec<LoggedCall> {
        self.inner.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

fn error(status: StatusCode, message: String) -> Response {
    (
        status,
        Json(json!({"error": {"message": message, "type": "invalid_request_error"}})),
    )
        .into_response()
}

/// Tokens of a text, as the simulation counts them: a token per four bytes, rounded up.
fn tokens(bytes: usize) -> u64 {
    (bytes as u64).div_ceil(4)
}

/// The step a scripted model takes at `turn` of the task whose first message is `first_user`.
fn next_step(inner: &Inner, model: &str, first_user: &str, turn: usize) -> (Option<String>, Turn) {
    let script = inner
        .script
        .tasks
        .iter()
        .find(|t| first_user.contains(&t.matches));
    let step = script
        .and_then(|t| t.models.get(model))
        .and_then(|turns| turns.get(turn))
        .cloned();
    let step = match (script, step) {
        (_, Some(step)) => step,
        // The script ran out, or has nothing for this model: the model gives up.
        (Some(_), None) => Turn {
            calls: vec![ScriptedCall {
                name: "finish".into(),
                arguments: json!({"summary": "I could not complete this task."}),
            }],
            ..Turn::default()
        },
        (None, None) => Turn {
            text: Some("There is no scripted answer for this conversation.".into()),
            ..Turn::default()
        },
    };
    (script.map(|s| s.matches.clone()), step)
}

/// Log `call` with its cached tokens and return them: the conversation's earlier prompt is
/// its cached prefix (the prompt keeps a stable prefix), remembered for the next call.
fn record(inner: &Inner, mut call: LoggedCall, first_user: &str) -> u64 {
    let conversation = format!("{}\u{0}{first_user}", call.model);
    let mut previous = match inner.previous.lock() {
        Ok(p) => p,
        Err(p) => p.into_inner(),
    };
    call.cached_tokens = if call.turn == 0 {
        0
    } else {
        previous
            .get(&conversation)
            .copied()
            .unwrap_or(0)
            .min(call.prompt_tokens)
    };
    previous.insert(conversation, call.prompt_tokens);
    let cached = call.cached_tokens;
    if let Ok(mut log) = inner.log.lock() {
        log.push(call);
    }
    cached
}

/// A request's JSON and its model, or the error to answer (no JSON, no model, no messages).
fn parse_request(body: &str) -> Result<(Value, String), Box<Response>> {
    let request: Value = serde_json::from_str(body).map_err(|e| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            format!("body is not JSON: {e}"),
        ))
    })?;
    let model = request["model"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| Box::new(error(StatusCode::BAD_REQUEST, "`model` is missing".into())))?;
    if !request["messages"].is_array() {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "`messages` is missing".into(),
        )));
    }
    Ok((request, model))
}

async fn complete(State(inner): State<Arc<Inner>>, body: String) -> Response {
    let (request, model) = match parse_request(&body) {
        Ok(parsed) => parsed,
        Err(answer) => return *answer,
    };
    let messages = request["messages"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    let first_user = messages
        .iter()
        .find(|m| m["role"] == "user")
        .and_then(|m| m["content"].as_str())
        .unwrap_or("")
        .to_string();
    let turn = messages.iter().filter(|m| m["role"] == "assistant").count();
    let (task, step) = next_step(&inner, &model, &first_user, turn);
    if step.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(step.delay_ms)).await;
    }
    let tool_calls: Vec<Value> = step
        .calls
        .iter()
        .enumerate()
        .map(|(i, c)| {
            json!({
                "id": format!("call_{turn}_{i}"),
                "type": "function",
                "function": {"name": c.name, "arguments": c.arguments.to_string()},
            })
        })
        .collect();
    let mut message = json!({"role": "assistant", "content": step.text});
    let finish_reason = if tool_calls.is_empty() {
        "stop"
    } else {
        message["tool_calls"] = Value::Array(tool_calls);
        "tool_calls"
    };
    let prompt_tokens = tokens(body.len());
    let completion_tokens = tokens(message.to_string().len());
    let cached_tokens = record(
        &inner,
        LoggedCall {
            model: model.clone(),
            task,
            turn,
            prompt_tokens,
            cached_tokens: 0,
            completion_tokens,
            request: request.clone(),
        },
        &first_user,
    );
    Json(json!({
        "id": format!("chatcmpl-scripted-{turn}"),
        "object": "chat.completion",
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": cached_tokens},
        },
    }))
    .into_response()
}

/// The text of an Anthropic message's content (a string, or its text blocks).
fn anthropic_text(content: &Value) -> String {
    match content {
        Value::String(text) => text.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter_map(|b| b["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// The working directory Claude Code names in its system prompt.
fn working_directory(request: &Value) -> Option<String> {
    let system = anthropic_text(&request["system"]);
    let line = system.lines().find_map(|l| {
        l.trim()
            .trim_start_matches("- ")
            .strip_prefix("Primary working directory:")
    })?;
    Some(line.trim().to_string())
}

/// A built-in tool call as Claude Code's tools (a file is read before it is written, as Claude
/// Code requires of a file that exists).
fn claude_code_calls(call: &ScriptedCall, cwd: &str) -> Vec<(String, Value)> {
    let path = |key: &str| {
        let rel = call.arguments[key].as_str().unwrap_or(".");
        format!(
            "{}/{}",
            cwd.trim_end_matches('/'),
            rel.trim_start_matches("./")
        )
    };
    let read = |p: String| ("Read".to_string(), json!({"file_path": p}));
    match call.name.as_str() {
        "read_file" => vec![read(path("path"))],
        "write_file" => vec![
            read(path("path")),
            (
                "Write".to_string(),
                json!({"file_path": path("path"), "content": call.arguments["content"]}),
            ),
        ],
        "edit" => vec![
            read(path("path")),
            (
                "Edit".to_string(),
                json!({"file_path": path("path"), "old_string": call.arguments["old"],
                       "new_string": call.arguments["new"]}),
            ),
        ],
        "list_files" => vec![(
            "Bash".to_string(),
            json!({"command": format!("ls -la {}", call.arguments["path"].as_str().unwrap_or(".")),
                   "description": "List files"}),
        )],
        "search" => vec![(
            "Grep".to_string(),
            json!({"pattern": call.arguments["pattern"], "path": call.arguments["path"]}),
        )],
        _ => vec![(
            "Bash".to_string(),
            json!({"command": call.arguments["command"], "description": "Run a command"}),
        )],
    }
}

/// Anthropic Messages, streamed: the script played to Claude Code.
async fn messages(State(inner): State<Arc<Inner>>, body: String) -> Response {
    let (request, model) = match parse_request(&body) {
        Ok(parsed) => parsed,
        Err(answer) => return *answer,
    };
    let history = request["messages"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    // Claude Code puts its own context (the environment, recent commits) beside the prompt in
    // the first message: the task is found in gaffer's prompt, the block that starts `Task `.
    let first_user = history
        .iter()
        .find(|m| m["role"] == "user")
        .map(|m| {
            m["content"]
                .as_array()
                .and_then(|blocks| {
                    blocks
                        .iter()
                        .filter_map(|b| b["text"].as_str())
                        .find(|text| text.starts_with("Task "))
                        .map(str::to_string)
                })
                .unwrap_or_else(|| anthropic_text(&m["content"]))
        })
        .unwrap_or_default();
    let turn = history.iter().filter(|m| m["role"] == "assistant").count();
    let (task, step) = next_step(&inner, &model, &first_user, turn);
    if step.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(step.delay_ms)).await;
    }
    let cwd = working_directory(&request).unwrap_or_else(|| ".".to_string());
    let mut blocks: Vec<Value> = Vec::new();
    if let Some(text) = &step.text {
        blocks.push(json!({"type": "text", "text": text}));
    }
    for call in &step.calls {
        if call.name == "finish" {
            let summary = call.arguments["summary"].as_str().unwrap_or("Done.");
            blocks.push(json!({"type": "text", "text": summary}));
            continue;
        }
        for (name, input) in claude_code_calls(call, &cwd) {
            blocks.push(
                json!({"type": "tool_use", "id": format!("toolu_{turn}_{}", blocks.len()),
                               "name": name, "input": input}),
            );
        }
    }
    let stop = if blocks.iter().any(|b| b["type"] == "tool_use") {
        "tool_use"
    } else {
        "end_turn"
    };
    let prompt_tokens = tokens(body.len());
    let completion_tokens = tokens(Value::Array(blocks.clone()).to_string().len());
    let cached = record(
        &inner,
        LoggedCall {
            model: model.clone(),
            task,
            turn,
            prompt_tokens,
            cached_tokens: 0,
            completion_tokens,
            request: request.clone(),
        },
        &first_user,
    );
    let mut events = String::new();
    let mut event = |name: &str, data: Value| {
        events.push_str(&format!("event: {name}\ndata: {data}\n\n"));
    };
    event(
        "message_start",
        json!({"type": "message_start", "message": {
            "id": format!("msg_scripted_{turn}"), "type": "message", "role": "assistant",
            "model": model, "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": prompt_tokens - cached, "cache_read_input_tokens": cached,
                      "cache_creation_input_tokens": 0, "output_tokens": 1}}}),
    );
    for (index, block) in blocks.iter().enumerate() {
        if block["type"] == "text" {
            event(
                "content_block_start",
                json!({"type": "content_block_start", "index": index,
                "content_block": {"type": "text", "text": ""}}),
            );
            event(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index,
                "delta": {"type": "text_delta", "text": block["text"]}}),
            );
        } else {
            event(
                "content_block_start",
                json!({"type": "content_block_start", "index": index,
                "content_block": {"type": "tool_use", "id": block["id"], "name": block["name"],
                                  "input": {}}}),
            );
            event(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index,
                "delta": {"type": "input_json_delta", "partial_json": block["input"].to_string()}}),
            );
        }
        event(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        );
    }
    event(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null},
               "usage": {"output_tokens": completion_tokens}}),
    );
    event("message_stop", json!({"type": "message_stop"}));
    (
        [
            (axum::http::header::CONTENT_TYPE, "text/event-stream"),
            (axum::http::header::CACHE_CONTROL, "no-cache"),
        ],
        events,
    )
        .into_response()
}

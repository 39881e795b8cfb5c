//! One attempt's agent: a tool-using conversation with one model through the metered gateway,
//! in the attempt's worktree. Every tool call is put to the hooks first (`pre-tool`), every
//! file change too (`on-edit`); each model call is tagged with the phase of the work.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::tools::{self, ToolArgs};
use super::workspace::{ToolError, Workspace};
use crate::gateway::chat::{Block, ChatRequest, Message, Role, StopReason};
use crate::gateway::metered::{CallTag, Gateway, GatewayError};
use crate::ledger::BudgetExhausted;
use crate::plugin::BoxFuture;
use crate::plugin::types::{FileEdit, Task, ToolCall};
use crate::sandbox::{CommandLimits, Confinement, run_command};
use crate::store::{MicroUsd, Phase};

/// How long a file tool may take (they read at most 1 MiB; only a stuck file system is slower).
const FILE_TOOL_TIMEOUT: Duration = Duration::from_secs(30);

/// What the hooks answer about a tool call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolVerdict {
    Allow,
    /// Refused; the reason goes back to the model as the tool's result.
    Deny(String),
    /// Run with these arguments (JSON) instead.
    Rewrite(String),
}

/// The rules the agent works under: the pipeline puts its hook plugins behind this.
pub trait Hooks: Send + Sync {
    /// Before every tool call.
    fn pre_tool<'a>(&'a self, call: &'a ToolCall) -> BoxFuture<'a, ToolVerdict>;
    /// Before every file change; `Err` holds the reasons it is refused.
    fn on_edit<'a>(&'a self, edit: &'a FileEdit) -> BoxFuture<'a, Result<(), Vec<String>>>;
}

/// No rules (tests of the loop itself).
#[derive(Debug, Default)]
pub struct NoHooks;

impl Hooks for NoHooks {
    fn pre_tool<'a>(&'a self, _call: &'a ToolCall) -> BoxFuture<'a, ToolVerdict> {
        Box::pin(async { ToolVerdict::Allow })
    }
    fn on_edit<'a>(&'a self, _edit: &'a FileEdit) -> BoxFuture<'a, Result<(), Vec<String>>> {
        Box::pin(async { Ok(()) })
    }
}

/// Limits of one agent run.
#[derive(Debug, Clone)]
pub struct AgentSettings {
    /// Model calls at most.
    pub max_turns: u32,
    /// Output tokens per call (0: the model's configured maximum).
    pub max_tokens: u32,
    /// Bytes of one tool result the model sees.
    pub tool_output_cap: usize,
    /// How `run_command` runs.
    pub command: CommandLimits,
}

impl Default for AgentSettings {
    fn default() -> Self {
        AgentSettings {
            max_turns: 40,
            max_tokens: 0,
            tool_output_cap: 16 * 1024,
            command: CommandLimits::default(),
        }
    }
}

/// How an agent run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentEnd {
    /// The model called `finish` (or ended its turn with text only).
    Finished { summary: String },
    /// `max_turns` model calls were made without finishing.
    TurnLimit,
    /// A call was refused by a money cap.
    Budget(BudgetExhausted),
    /// The provider failed (after retries and fallbacks).
    Provider(String),
    /// The conversation no longer fits the model's context window.
    ContextFull,
    /// The run is stopping (a signal); the attempt is parked.
    Stopped,
    /// The implementer could not run at all (an external agent's program missing, a model
    /// whose provider does not speak its format); the attempt fails with the reason.
    Failed(String),
}

/// What the agent did.
#[derive(Debug, Clone)]
pub struct AgentReport {
    pub end: AgentEnd,
    /// An external agent's own account of its cost and turns, beside gaffer's ledger.
    pub agent_figure: Option<super::external::AgentFigure>,
    /// Model calls made.
    pub turns: u32,
    /// Dollars charged for them, in µ$.
    pub charged: MicroUsd,
    pub tool_calls: u32,
    /// Hook denials, as the model saw them.
    pub denials: Vec<String>,
    /// Commands that exited non-zero or timed out.
    pub failed_commands: u32,
    /// How the last command was confined.
    pub confinement: Option<Confinement>,
}

/// The fixed system prompt: identical for every task, so providers cache it with the tools.
pub const SYSTEM_PROMPT: &str = "You are a careful software engineer working in a git worktree of \
the project. Implement the task you are given with the tools: explore the code, make the change, \
run the project's tests with run_command, and call finish with a short summary when the change is \
complete and the tests pass. Paths are relative to the repository root; you cannot leave it. \
Team rules run as hooks: when a tool call or an edit is denied, the reason is given to you; do not \
try to get around it. Keep changes small and focused on the task.";

/// The first user message: the task, and what earlier attempts were told.
pub fn task_prompt(task: &Task, earlier: &[String], test_command: Option<&str>) -> String {
    let mut text = format!("Task {}: {}\n\n{}\n", task.id, task.title, task.body.trim());
    if !task.labels.is_empty() {
        text.push_str(&format!("\nLabels: {}\n", task.labels.join(", ")));
    }
    if !task.paths.is_empty() {
        text.push_str(&format!("Likely files: {}\n", task.paths.join(", ")));
    }
    if let Some(command) = test_command.filter(|c| !c.trim().is_empty()) {
        text.push_str(&format!("\nThe project's tests: `{command}`\n"));
    }
    if !earlier.is_empty() {
        text.push_str("\nEarlier attempts at this task were rejected:\n");
        for reason in earlier {
            text.push_str(&format!("- {reason}\n"));
        }
    }
    text
}

/// One attempt's agent.
pub struct Agent<'a> {
    pub gateway: &'a Gateway,
    pub workspace: &'a Workspace,
    pub hooks: &'a dyn Hooks,
    pub settings: &'a AgentSettings,
    /// The ledger scope of its calls; the phase is set per call.
    pub tag: CallTag,
    /// The model key the router chose.
    pub model: String,
    /// Cancelled when the run is stopping: the agent ends before its next call.
    pub stop: CancellationToken,
}

/// What the model sees after its tool call, and what the loop learns from it.
struct ToolOutcome {
    content: String,
    is_error: bool,
    changed_file: bool,
    failed_command: bool,
    finished: Option<String>,
}

impl ToolOutcome {
    fn ok(content: String) -> ToolOutcome {
        ToolOutcome {
            content,
            is_error: false,
            changed_file: false,
            failed_command: false,
            finished: None,
        }
    }
    fn error(content: String) -> ToolOutcome {
        ToolOutcome {
            is_error: true,
            ..ToolOutcome::ok(content)
        }
    }
}

impl Agent<'_> {
    /// Work on `task` until the model finishes or a limit ends the run.
    pub async fn run(&self, prompt: String) -> AgentReport {
        // Fixed for the whole attempt: looked up and built once.
        let model = self.gateway.models().find(|m| m.key == self.model);
        let context_window = model.map_or(u64::MAX, |m| m.context_window);
        let output_room = u64::from(if self.settings.max_tokens == 0 {
            model.map_or(0, |m| m.max_tokens)
        } else {
            self.settings.max_tokens
        });
        let tool_specs = tools::specs();
        let mut messages = vec![Message::user(prompt)];
        let mut report = AgentReport {
            end: AgentEnd::TurnLimit,
            agent_figure: None,
            turns: 0,
            charged: MicroUsd::ZERO,
            tool_calls: 0,
            denials: Vec::new(),
            failed_commands: 0,
            confinement: None,
        };
        let mut changed = false;
        let mut failing = false;
        while report.turns < self.settings.max_turns {
            if self.stop.is_cancelled() {
                report.end = AgentEnd::Stopped;
                return report;
            }
            let phase = Phase::of_work(report.turns == 0, failing, changed);
            let mut request = ChatRequest {
                model: String::new(),
                system: Some(SYSTEM_PROMPT.to_string()),
                messages: std::mem::take(&mut messages),
                tools: tool_specs.clone(),
                max_tokens: self.settings.max_tokens,
            };
            if !fit_context(&mut request, context_window.saturating_sub(output_room)) {
                report.end = AgentEnd::ContextFull;
                return report;
            }
            // Keep what was cut: the next request then has the same (cut) prefix. The request
            // goes to the gateway by value, so the conversation is copied once here.
            messages.clone_from(&request.messages);
            let mut tag = self.tag.clone();
            tag.scope.phase = Some(phase);
            report.turns += 1;
            let done = match self.gateway.complete(&tag, &self.model, request).await {
                Ok(done) => done,
                Err(GatewayError::Budget { exhausted, charged }) => {
                    // Earlier tries of the call may have been booked before a retry was refused.
                    report.charged = report.charged.saturating_add(charged);
                    report.end = AgentEnd::Budget(exhausted);
                    return report;
                }
                Err(GatewayError::Provider { error, charged }) => {
                    report.charged = report.charged.saturating_add(charged);
                    report.end = AgentEnd::Provider(error.to_string());
                    return report;
                }
                Err(other) => {
                    report.end = AgentEnd::Provider(other.to_string());
                    return report;
                }
            };
            report.charged = report.charged.saturating_add(done.charged);
            let response = done.response;
            let calls: Vec<(String, String, String)> = response
                .tool_calls()
                .map(|(id, name, args)| (id.to_string(), name.to_string(), args.to_string()))
                .collect();
            messages.push(Message {
                role: Role::Assistant,
                blocks: response.blocks.clone(),
            });
            if calls.is_empty() {
                match response.stop {
                    StopReason::MaxTokens | StopReason::Paused => {
                        messages.push(Message::user(
                            "Your answer was cut off. Continue, using the tools; call finish when done.",
                        ));
                        continue;
                    }
                    StopReason::ContextWindow => {
                        report.end = AgentEnd::ContextFull;
                        return report;
                    }
                    _ => {
                        report.end = AgentEnd::Finished {
                            summary: response.text(),
                        };
                        return report;
                    }
                }
            }
            let mut results = Vec::with_capacity(calls.len());
            let mut finished = None;
            for (id, name, arguments) in calls {
                report.tool_calls += 1;
                let outcome = self.tool(&name, &arguments, &mut report).await;
                changed |= outcome.changed_file;
                if outcome.failed_command {
                    failing = true;
                    report.failed_commands += 1;
                } else if outcome.changed_file {
                    failing = false;
                }
                if outcome.finished.is_some() {
                    finished = outcome.finished.clone();
                }
                results.push(Block::ToolResult {
                    call_id: id,
                    content: tools::cut(&outcome.content, self.settings.tool_output_cap),
                    is_error: outcome.is_error,
                });
            }
            messages.push(Message {
                role: Role::User,
                blocks: results,
            });
            if let Some(summary) = finished {
                report.end = AgentEnd::Finished { summary };
                return report;
            }
        }
        report.end = AgentEnd::TurnLimit;
        report
    }

    /// Put one tool call to the hooks, then run it.
    async fn tool(&self, name: &str, arguments: &str, report: &mut AgentReport) -> ToolOutcome {
        let call = ToolCall {
            name: name.to_string(),
            arguments: arguments.to_string(),
        };
        let arguments = match self.hooks.pre_tool(&call).await {
            ToolVerdict::Allow => arguments.to_string(),
            ToolVerdict::Rewrite(new) => new,
            ToolVerdict::Deny(reason) => {
                let text = format!("denied by the team's rules: {reason}");
                report.denials.push(format!("{name}: {reason}"));
                return ToolOutcome::error(text);
            }
        };
        let args = match tools::parse(name, &arguments) {
            Ok(args) => args,
            Err(message) => return ToolOutcome::error(message),
        };
        match args {
            ToolArgs::ReadFile { path } => match self
                .file_tool("read_file", move |ws| ws.read_file(&path))
                .await
            {
                Ok(text) => ToolOutcome::ok(text),
                Err(e) => ToolOutcome::error(e.to_string()),
            },
            ToolArgs::ListFiles { path } => match self
                .file_tool("list_files", move |ws| ws.list_files(&path, 2, 500))
                .await
            {
                Ok((entries, truncated)) => {
                    let mut text = entries.join("\n");
                    if truncated {
                        text.push_str("\n[… more entries not shown]");
                    }
                    ToolOutcome::ok(text)
                }
                Err(e) => ToolOutcome::error(e.to_string()),
            },
            ToolArgs::Search { pattern, path } => match self
                .file_tool("search", move |ws| ws.search(&pattern, &path, 200))
                .await
            {
                Ok((matches, truncated)) => {
                    let mut text: String = matches
                        .iter()
                        .map(|m| format!("{}:{}: {}\n", m.path, m.line, m.text))
                        .collect();
                    if matches.is_empty() {
                        text = "no matches".to_string();
                    }
                    if truncated {
                        text.push_str("[… more matches not shown]");
                    }
                    ToolOutcome::ok(text)
                }
                Err(e) => ToolOutcome::error(e.to_string()),
            },
            ToolArgs::WriteFile { path, content } => {
                let at = path.clone();
                let before = match self
                    .file_tool("write_file", move |ws| ws.existing(&at))
                    .await
                {
                    Ok(before) => before,
                    Err(e) => return ToolOutcome::error(e.to_string()),
                };
                self.change(&path, before, content, report).await
            }
            ToolArgs::Edit { path, old, new } => {
                let at = path.clone();
                match self
                    .file_tool("edit", move |ws| ws.plan_edit(&at, &old, &new))
                    .await
                {
                    Ok((before, after)) => self.change(&path, Some(before), after, report).await,
                    Err(e) => ToolOutcome::error(e.to_string()),
                }
            }
            ToolArgs::RunCommand { command } => {
                match run_command(self.workspace.root(), &command, &self.settings.command).await {
                    Ok(out) => {
                        report.confinement = Some(out.confinement);
                        let status = if out.timed_out {
                            format!(
                                "timed out after {} s (killed)",
                                self.settings.command.timeout.as_secs()
                            )
                        } else {
                            match out.exit_code {
                                Some(code) => format!("exit code {code}"),
                                None => "killed by a signal".to_string(),
                            }
                        };
                        let failed = out.timed_out || out.exit_code != Some(0);
                        ToolOutcome {
                            content: format!("{status}\n{}", out.output),
                            is_error: failed,
                            changed_file: false,
                            failed_command: failed,
                            finished: None,
                        }
                    }
                    Err(e) => ToolOutcome::error(e.to_string()),
                }
            }
            ToolArgs::Finish { summary } => ToolOutcome {
                finished: Some(summary),
                ..ToolOutcome::ok("finished".to_string())
            },
        }
    }

    /// A file tool on a thread of the blocking pool, given [`FILE_TOOL_TIMEOUT`]: a file system
    /// that hangs (a stuck mount) costs the attempt a tool error, not the worker.
    async fn file_tool<T: Send + 'static>(
        &self,
        tool: &str,
        operation: impl FnOnce(&Workspace) -> Result<T, ToolError> + Send + 'static,
    ) -> Result<T, ToolError> {
        let workspace = self.workspace.try_clone()?;
        let run = tokio::task::spawn_blocking(move || operation(&workspace));
        match tokio::time::timeout(FILE_TOOL_TIMEOUT, run).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => Err(ToolError::Io {
                path: tool.to_string(),
                reason: format!("the tool did not finish: {join}"),
            }),
            Err(_) => Err(ToolError::TimedOut {
                tool: tool.to_string(),
                secs: FILE_TOOL_TIMEOUT.as_secs(),
            }),
        }
    }

    /// Put a file change to the `on-edit` hooks, then write it.
    async fn change(
        &self,
        path: &str,
        before: Option<String>,
        after: String,
        report: &mut AgentReport,
    ) -> ToolOutcome {
        let path = match self.workspace.check_path(path) {
            Ok(path) => path,
            Err(e) => return ToolOutcome::error(e.to_string()),
        };
        let edit = FileEdit {
            path: path.clone(),
            before,
            after: Some(after),
        };
        if let Err(reasons) = self.hooks.on_edit(&edit).await {
            let reason = reasons.join("; ");
            report.denials.push(format!("edit {path}: {reason}"));
            return ToolOutcome::error(format!(
                "the change to {path} was denied by the team's rules: {reason}"
            ));
        }
        let after = edit.after.unwrap_or_default();
        let (at, text) = (path.clone(), after.clone());
        match self
            .file_tool("write_file", move |ws| ws.write_file(&at, &text))
            .await
        {
            Ok(()) => ToolOutcome {
                changed_file: true,
                ..ToolOutcome::ok(format!("wrote {path} ({} bytes)", after.len()))
            },
            Err(e) => ToolOutcome::error(e.to_string()),
        }
    }
}

/// Keep a request inside `room` input tokens by dropping the content of the oldest tool
/// results (never the task). Returns false when even that is not enough.
fn fit_context(request: &mut ChatRequest, room: u64) -> bool {
    const DROPPED: &str = "[output dropped to keep the conversation inside the context window]";
    if request.input_token_bound() <= room {
        return true;
    }
    for i in 1..request.messages.len() {
        for block in &mut request.messages[i].blocks {
            if let Block::ToolResult { content, .. } = block
                && content.len() > DROPPED.len()
            {
                *content = DROPPED.to_string();
            }
        }
        if request.input_token_bound() <= room {
            return true;
        }
    }
    false
}

/// Wall time since `start`, in whole milliseconds.
pub fn millis_since(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_tool_results_are_dropped_first_and_the_task_never() {
        let result = |n: usize| Message {
            role: Role::User,
            blocks: vec![Block::ToolResult {
                call_id: format!("c{n}"),
                content: "x".repeat(1000),
                is_error: false,
            }],
        };
        let mut request = ChatRequest {
            messages: vec![Message::user("t".repeat(500)), result(1), result(2)],
            ..ChatRequest::default()
        };
        let full = request.input_token_bound();
        // Room for the task and one full result, not two.
        assert!(fit_context(&mut request, full - 900));
        let contents: Vec<usize> = request.messages[1..]
            .iter()
            .map(|m| match &m.blocks[0] {
                Block::ToolResult { content, .. } => content.len(),
                _ => 0,
            })
            .collect();
        assert!(contents[0] < 100 && contents[1] == 1000, "{contents:?}");
        // Not even the task fits.
        assert!(!fit_context(&mut request, 100));
    }

    #[test]
    fn the_task_prompt_carries_earlier_rejections() {
        let task = Task {
            id: "T-1".into(),
            title: "Fix it".into(),
            body: "Body".into(),
            labels: vec!["bug".into()],
            paths: vec![],
        };
        let text = task_prompt(&task, &["tests failed: test_x".into()], Some("pytest"));
        assert!(text.starts_with("Task T-1: Fix it"));
        assert!(text.contains("- tests failed: test_x") && text.contains("`pytest`"));
    }
}

//! The plugin contract as the host holds it: tasks, attempts, models, budgets, tool calls,
//! edits, diffs, test results, and the decisions plugins return. These are gaffer's own types,
//! independent of any version of the WIT: git, the agent, the pipeline and the report speak
//! them, and each released WIT version (`super::wit::since_v0_1_0`, ...) converts at its
//! boundary. Money is [`MicroUsd`], token counts are [`TokenCounts`], as everywhere in gaffer.

pub use crate::store::{AttemptOutcome, CapLevel, MicroUsd, Prices, TokenCounts};

/// A task from the backlog.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Task {
    pub id: String,
    pub title: String,
    pub body: String,
    pub labels: Vec<String>,
    /// Paths the task is expected to touch (hints, not limits).
    pub paths: Vec<String>,
}

/// One earlier attempt at a task, as the router and verifier see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub number: u32,
    /// The model key.
    pub model: String,
    pub outcome: AttemptOutcome,
    pub reasons: Vec<String>,
    /// Everything charged to the attempt (agent calls and its plugins' model calls).
    pub cost: MicroUsd,
    pub tokens: TokenCounts,
}

/// A model the router may choose; `id` is the model key of `gaffer.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    pub id: String,
    pub provider: String,
    pub tier: u8,
    /// µ$ per million tokens (zero for a local model priced by electricity).
    pub prices: Prices,
    pub context_window: u32,
    pub tags: Vec<String>,
}

/// The money left at one capped level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MoneyLeft {
    pub level: CapLevel,
    pub cap: MicroUsd,
    pub spent: MicroUsd,
    pub left: MicroUsd,
}

/// What a new attempt may spend: money at every capped level, and plugin fuel.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BudgetView {
    pub money: Vec<MoneyLeft>,
    pub fuel_left_task: u64,
    pub fuel_per_call: u64,
}

impl BudgetView {
    /// The least money left at any level (`MicroUsd::MAX` when nothing is capped).
    pub fn least_left(&self) -> MicroUsd {
        self.money
            .iter()
            .map(|m| m.left)
            .min()
            .unwrap_or(MicroUsd::MAX)
    }
}

/// A tool call the agent wants to make; `arguments` is a JSON object as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    pub name: String,
    pub arguments: String,
}

/// A change to one file: `before` is `None` for a new file, `after` `None` for a deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEdit {
    pub path: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// What a diff line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineKind {
    Context,
    Added,
    Removed,
}

/// One line of a hunk; `line` is its number on its side (new for added and context, old for
/// removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffLine {
    pub kind: LineKind,
    pub line: u32,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hunk {
    pub old_start: u32,
    pub old_lines: u32,
    pub new_start: u32,
    pub new_lines: u32,
    pub lines: Vec<DiffLine>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileStatus {
    Added,
    Modified,
    Deleted,
    Renamed,
}

/// The change to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDiff {
    pub path: String,
    /// The path before a rename.
    pub old_path: Option<String>,
    pub status: FileStatus,
    pub binary: bool,
    pub hunks: Vec<Hunk>,
    pub added: u32,
    pub removed: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DiffStats {
    pub files_changed: u32,
    pub lines_added: u32,
    pub lines_removed: u32,
}

/// A whole change.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Diff {
    pub files: Vec<FileDiff>,
    pub stats: DiffStats,
}

/// The project's test command, as it ran on the attempt.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TestResult {
    pub command: String,
    /// Whether a test command ran at all.
    pub ran: bool,
    pub passed: bool,
    pub exit_code: Option<i32>,
    pub output_tail: String,
    pub duration_ms: u64,
}

/// What the router is asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRequest {
    pub task: Task,
    pub history: Vec<Attempt>,
    pub models: Vec<ModelInfo>,
    pub budget: BudgetView,
}

/// The router's answer: a model key, the most the attempt may spend, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteDecision {
    pub model: String,
    pub attempt_budget: MicroUsd,
    pub reason: String,
}

/// A finding of a verifier or hook, at a place when it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub message: String,
    pub path: Option<String>,
    pub line: Option<u32>,
}

/// What the verifier is asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyRequest {
    pub task: Task,
    pub attempt: u32,
    pub model: String,
    pub diff: Diff,
    pub tests: TestResult,
    pub cost_so_far: MicroUsd,
    pub history: Vec<Attempt>,
}

/// The verifier's judgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Approve,
    Reject(Vec<Finding>),
    NeedsHuman(String),
}

/// A hook's answer about a tool call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookDecision {
    Allow,
    Deny(String),
    /// Run with these arguments (JSON) instead.
    Rewrite(String),
}

/// A hook's answer about an edit or a whole change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleDecision {
    Allow,
    Deny(Vec<Finding>),
}

/// The level of a plugin's log record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// Who speaks in a plugin's model call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptRole {
    System,
    User,
    Assistant,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptMessage {
    pub role: PromptRole,
    pub content: String,
}

/// A plugin's model call through the metered `complete`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletionRequest {
    /// A model key the plugin is granted.
    pub model: String,
    pub messages: Vec<PromptMessage>,
    pub max_tokens: u32,
}

/// The answer of a plugin's model call, with what it cost the task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    pub text: String,
    pub model: String,
    pub usage: TokenCounts,
    pub cost: MicroUsd,
    /// Why the model stopped: `end_turn`, `max_tokens`, `tool_use`, `stop_sequence`,
    /// `refusal`, `context_window` or `pause_turn`.
    pub stop_reason: String,
}

/// Why a host function refused or failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostError {
    NotGranted(String),
    BudgetExhausted(String),
    NotFound(String),
    Failed(String),
}

//! The shape of `gaffer.toml`: every section and key the file may hold, and nothing else. Every
//! struct refuses unknown keys, so a typo (`[budgets]`, `per_tsk`, `[plugin.router]`) is an
//! error naming its line instead of a run without the cap or the plugin it meant.
//!
//! Values stay as the user wrote them (optional, dollars as decimal text): each room resolves its
//! own section into its own typed settings and applies its defaults there, so the meaning of a
//! key lives beside the code that uses it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GafferToml {
    #[serde(default)]
    pub project: ProjectSection,
    #[serde(default)]
    pub agent: AgentSection,
    #[serde(default)]
    pub run: RunSection,
    #[serde(default)]
    pub sandbox: SandboxSection,
    #[serde(default)]
    pub budget: BudgetSection,
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderSection>,
    #[serde(default)]
    pub models: BTreeMap<String, ModelSection>,
    #[serde(default)]
    pub prices: PricesSection,
    #[serde(default)]
    pub plugins: PluginsSection,
    #[serde(default)]
    pub economics: EconomicsSection,
    #[serde(default)]
    pub claude_code: ClaudeCodeSection,
    #[serde(default)]
    pub implementers: BTreeMap<String, ImplementerSection>,
    #[serde(default)]
    pub store: StoreSection,
}

/// `[store]`: where the backlog and the ledger live (resolved by `project`). Absent: the
/// embedded SQLite file in `.gaffer/`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    /// A PostgreSQL URL (`postgres://user@host/db`) shared by several hosts. It must name no
    /// password: this file is in every worktree an agent works in; the password comes from
    /// `PGPASSWORD` or a `.pgpass` file.
    pub url: Option<String>,
}

/// `[implementers.<name>]`: how an external agent is started (resolved by `agent`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImplementerSection {
    /// The agent's program: a path (relative to this file) or a name on `PATH`.
    pub program: Option<String>,
    /// Any other agent: its command line (run by `sh -c` in the worktree).
    pub command: Option<String>,
    /// The wire format a command speaks: `openai-chat` (the default), `openai-responses` or
    /// `anthropic`.
    pub protocol: Option<String>,
    /// The model key its side calls (a small model's name) map to.
    pub side_model: Option<String>,
    /// Fragments of model names that mark a side call.
    pub side_patterns: Option<Vec<String>>,
    /// Wall-clock bound on one attempt's run of the agent.
    pub timeout_secs: Option<u64>,
}

/// `[claude_code]`: how the hook bridge (`gaffer hook claude-code`) reads tools it does not
/// know by itself (resolved by `bridge`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaudeCodeSection {
    /// Tools that write no file (MCP tools, say), let through to the hooks' `pre-tool`.
    #[serde(default)]
    pub read_only_tools: Vec<String>,
    /// Tools that write a file, by name: which input fields hold the path and the content.
    #[serde(default)]
    pub write_tools: BTreeMap<String, WriteToolSection>,
    /// Seconds the bridge may take before it gives up and denies (exit 2).
    pub timeout_secs: Option<u64>,
}

/// One `[claude_code.write_tools."<tool>"]`: the input fields of a tool that writes a file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteToolSection {
    /// The field holding the file's path.
    pub path: Option<String>,
    /// The field holding the file's new content (absent: the content is not known).
    pub content: Option<String>,
}

/// `[project]`: where approved work merges and how it is tested (resolved by `pipeline`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectSection {
    pub target_branch: Option<String>,
    /// The shared remote (a name such as `origin`) that several hosts merge into: each host
    /// works in its own clone and lands a merge by pushing with a compare-and-swap.
    pub remote: Option<String>,
    pub test_command: Option<String>,
    pub test_timeout_secs: Option<u64>,
}

/// `[agent]`: the implementing agent's limits (resolved by `pipeline`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSection {
    /// Who implements: `builtin` (the default) or an external agent (`claude-code`).
    pub implementer: Option<String>,
    pub max_turns: Option<u32>,
    pub max_attempts: Option<u32>,
    pub max_tokens: Option<u32>,
    pub tool_output_cap: Option<usize>,
    pub command_timeout_secs: Option<u64>,
    pub env_allow: Option<Vec<String>>,
    pub confine_commands: Option<bool>,
    pub writable: Option<Vec<String>>,
}

/// `[sandbox]`: what the agent's commands and the test command may reach (resolved by
/// `sandbox`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxSection {
    pub network: Option<bool>,
    pub allow_domains: Option<Vec<String>>,
    pub allow_addresses: Option<Vec<String>>,
    pub read_only: Option<Vec<String>>,
    pub caches: Option<Vec<String>>,
    pub env: Option<BTreeMap<String, String>>,
    pub memory_mib: Option<u64>,
    pub max_processes: Option<u64>,
    pub max_file_mib: Option<u64>,
}

/// `[run]`: workers and leases (resolved by `pipeline`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSection {
    pub workers: Option<usize>,
    pub lease_secs: Option<u64>,
    pub poll_secs: Option<u64>,
}

/// `[budget]`: the money caps (resolved by `ledger`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetSection {
    pub per_call: Option<Dollars>,
    pub per_attempt: Option<Dollars>,
    pub per_task: Option<Dollars>,
    pub per_run: Option<Dollars>,
    pub per_day: Option<Dollars>,
    pub per_month: Option<Dollars>,
    /// Per model key, for the current month.
    #[serde(default)]
    pub per_model: BTreeMap<String, Dollars>,
}

/// `[providers.<name>]` (resolved by `gateway`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSection {
    /// `anthropic` or `openai-compatible`.
    pub kind: Option<String>,
    pub base_url: Option<String>,
    pub api_key_env: Option<String>,
    /// `max_tokens` or `max_completion_tokens`.
    pub max_tokens_field: Option<String>,
    pub timeout_secs: Option<u64>,
    pub max_retries: Option<usize>,
    pub max_total_secs: Option<u64>,
    pub concurrency: Option<usize>,
    /// A local model's power draw: its calls are priced by electricity.
    pub watts: Option<u64>,
    pub usd_per_kwh: Option<Dollars>,
}

/// `[models.<key>]` (resolved by `gateway`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    pub provider: Option<String>,
    /// The implementer for attempts routed to this model (over `[agent] implementer`).
    pub implementer: Option<String>,
    pub id: Option<String>,
    pub tier: Option<u8>,
    pub max_tokens: Option<u32>,
    pub context_window: Option<u64>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Dollars per million tokens; overrides the catalog.
    pub prices: Option<ModelPrices>,
    /// Models of the same tier on other providers, tried in order when this one's provider fails.
    #[serde(default)]
    pub fallbacks: Vec<String>,
}

/// `[models.<key>] prices`: dollars per million tokens.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPrices {
    pub input: Dollars,
    pub output: Dollars,
    pub cache_read: Option<Dollars>,
    pub cache_write: Option<Dollars>,
}

/// `[prices]`: a price file that overrides the built-in catalog (resolved by `gateway`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PricesSection {
    /// A price file in LiteLLM's format, relative to gaffer.toml.
    pub file: Option<PathBuf>,
}

/// `[plugins]` (resolved by `plugin`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginsSection {
    pub router: Option<PluginSection>,
    pub verifier: Option<PluginSection>,
    #[serde(default)]
    pub hooks: Vec<PluginSection>,
}

/// One plugin: `[plugins.router]`, `[plugins.verifier]` or one `[[plugins.hooks]]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginSection {
    /// The `.wasm` component, relative to the directory of gaffer.toml.
    pub path: Option<PathBuf>,
    /// The component's SHA-256 (hex): when given, a file with other bytes is refused.
    pub sha256: Option<String>,
    pub name: Option<String>,
    pub fallback_model: Option<String>,
    pub fuel_per_call: Option<u64>,
    pub fuel_per_task: Option<u64>,
    pub deadline_ms: Option<u64>,
    pub memory_mib: Option<u64>,
    pub max_output_bytes: Option<usize>,
    pub max_faults: Option<u32>,
    pub on_failure: Option<String>,
    #[serde(default)]
    pub grants: GrantsSection,
    /// The plugin's own configuration, handed to it as JSON; its keys are the plugin's to judge.
    pub config: Option<toml::Table>,
}

/// A plugin's `grants`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantsSection {
    /// Model keys the plugin may call through the metered `complete` import.
    #[serde(default)]
    pub complete: Vec<String>,
    /// Whether the plugin may read the task's worktree (read-only).
    #[serde(default)]
    pub files: bool,
}

/// `[economics]`: what a person's time costs, for the comparison (resolved by `report`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EconomicsSection {
    /// Dollars an hour.
    pub hourly_rate: Option<Dollars>,
    /// Hours a person takes for a task.
    pub hours_per_task: Option<f64>,
    /// Hours by label (the largest of a task's labels wins).
    #[serde(default)]
    pub hours_per_label: BTreeMap<String, f64>,
}

/// A dollar amount as written: a string (`"2.00"`, exact) or a number. A TOML number arrives as
/// a float; its shortest round-trip text is the decimal the user typed (for any amount of up to
/// 15 significant digits), which the ledger then parses exactly into micro-dollars.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Dollars {
    Text(String),
    Integer(i64),
    Float(f64),
}

impl Dollars {
    /// The amount as decimal text, for exact parsing.
    pub fn text(&self) -> String {
        match self {
            Dollars::Text(t) => t.clone(),
            Dollars::Integer(i) => i.to_string(),
            Dollars::Float(f) => format!("{f}"),
        }
    }
}

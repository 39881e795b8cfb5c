//! The pipeline's sections of `gaffer.toml`: `[project]` (where work merges, how it is tested),
//! `[agent]` (the implementing agent's limits) and `[run]` (workers and leases).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::agent::AgentSettings;
use crate::agent::command::CommandLimits;

/// `[project]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectToml {
    /// Approved work is merged here.
    #[serde(default = "default_branch")]
    pub target_branch: String,
    /// Run in the attempt's worktree before the verifier; empty: no tests.
    #[serde(default)]
    pub test_command: String,
    #[serde(default = "default_test_timeout")]
    pub test_timeout_secs: u64,
}

impl Default for ProjectToml {
    fn default() -> Self {
        ProjectToml {
            target_branch: default_branch(),
            test_command: String::new(),
            test_timeout_secs: default_test_timeout(),
        }
    }
}

fn default_branch() -> String {
    "main".to_string()
}

fn default_test_timeout() -> u64 {
    600
}

/// `[agent]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentToml {
    /// Model calls per attempt.
    pub max_turns: u32,
    /// Attempts per task before it goes to a person.
    pub max_attempts: u32,
    /// Output tokens per model call (0: the model's `max_tokens`).
    pub max_tokens: u32,
    /// Bytes of one tool result the model sees.
    pub tool_output_cap: usize,
    /// Timeout of one `run_command`.
    pub command_timeout_secs: u64,
    /// Environment variables passed to commands besides the defaults (never put keys here).
    pub env_allow: Vec<String>,
    /// Confine commands' writes to the worktree with Landlock where the kernel has it.
    pub confine_commands: bool,
    /// Directories confined commands may also write beneath (`~/` is the home directory): a
    /// build tool's cache, e.g. `["~/.cargo", "~/.cache"]`.
    pub writable: Vec<String>,
}

impl Default for AgentToml {
    fn default() -> Self {
        let agent = AgentSettings::default();
        AgentToml {
            max_turns: agent.max_turns,
            max_attempts: 3,
            max_tokens: agent.max_tokens,
            tool_output_cap: agent.tool_output_cap,
            command_timeout_secs: agent.command.timeout.as_secs(),
            env_allow: Vec::new(),
            confine_commands: true,
            writable: Vec::new(),
        }
    }
}

/// `[run]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunToml {
    pub workers: usize,
    /// A claimed task's lease; renewed while the worker lives.
    pub lease_secs: u64,
    /// How often `--watch` looks for new tasks.
    pub poll_secs: u64,
}

impl Default for RunToml {
    fn default() -> Self {
        RunToml {
            workers: 1,
            lease_secs: 120,
            poll_secs: 5,
        }
    }
}

/// `~/x` as a path under the home directory; other paths as they are.
fn expand_home(dir: &str) -> PathBuf {
    match (dir.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(dir),
    }
}

/// Everything the runner needs besides its collaborators.
#[derive(Debug, Clone)]
pub struct PipelineSettings {
    pub target_branch: String,
    pub test_command: Option<String>,
    pub test_limits: CommandLimits,
    pub max_attempts: u32,
    pub agent: AgentSettings,
    pub workers: usize,
    /// Stop after claiming this many tasks.
    pub max_tasks: Option<u32>,
    /// Keep polling for new tasks when the backlog is empty.
    pub watch: bool,
    pub poll: Duration,
    pub lease: Duration,
    /// Where attempts' worktrees go (`.gaffer/worktrees`).
    pub worktrees_dir: PathBuf,
    /// Start even when the target branch is checked out with uncommitted changes (results then
    /// wait on `gaffer/merged/<task>`).
    pub allow_dirty: bool,
}

impl PipelineSettings {
    /// Settings from the three sections; `worktrees_dir` is where worktrees go.
    pub fn from_toml(
        project: &ProjectToml,
        agent: &AgentToml,
        run: &RunToml,
        worktrees_dir: PathBuf,
    ) -> PipelineSettings {
        let mut command = CommandLimits {
            timeout: Duration::from_secs(agent.command_timeout_secs.max(1)),
            confine_writes: agent.confine_commands,
            ..CommandLimits::default()
        };
        command.env_allow.extend(agent.env_allow.iter().cloned());
        command.writable = agent.writable.iter().map(|d| expand_home(d)).collect();
        let test_limits = CommandLimits {
            timeout: Duration::from_secs(project.test_timeout_secs.max(1)),
            ..command.clone()
        };
        PipelineSettings {
            target_branch: project.target_branch.clone(),
            test_command: Some(project.test_command.trim().to_string()).filter(|c| !c.is_empty()),
            test_limits,
            max_attempts: agent.max_attempts.max(1),
            agent: AgentSettings {
                max_turns: agent.max_turns.max(1),
                max_tokens: agent.max_tokens,
                tool_output_cap: agent.tool_output_cap.max(256),
                command,
            },
            workers: run.workers.max(1),
            max_tasks: None,
            watch: false,
            poll: Duration::from_secs(run.poll_secs.max(1)),
            lease: Duration::from_secs(run.lease_secs.max(5)),
            worktrees_dir,
            allow_dirty: false,
        }
    }
}

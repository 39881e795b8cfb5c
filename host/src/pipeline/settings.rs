//! The pipeline's sections of `gaffer.toml` resolved: `[project]` (where work merges, how it is
//! tested), `[agent]` (the implementing agent's limits) and `[run]` (workers and leases).
//! Values that would mean nothing (zero workers, a lease too short to renew) are refused with
//! the reason, never raised silently.

use std::path::PathBuf;
use std::time::Duration;

use crate::agent::AgentSettings;
use crate::agent::external::ImplementerSettings;
use crate::config::Invalid;
use crate::config::schema::GafferToml;
use crate::git::MergeTarget;
use crate::sandbox::{CommandLimits, SandboxPolicy};

use crate::project::policy_files::PolicyFiles;

/// The branch approved work merges into when `[project] target_branch` is not given.
const DEFAULT_TARGET_BRANCH: &str = "main";
const DEFAULT_TEST_TIMEOUT_SECS: u64 = 600;
const DEFAULT_MAX_ATTEMPTS: u32 = 3;
const DEFAULT_WORKERS: usize = 1;
const DEFAULT_LEASE_SECS: u64 = 120;
const DEFAULT_POLL_SECS: u64 = 5;
/// A lease is renewed every third of its length, from a thread of its own.
const MIN_LEASE_SECS: u64 = 1;
/// The smallest tool output worth showing a model.
const MIN_TOOL_OUTPUT_CAP: usize = 256;

/// Everything the runner needs besides its collaborators.
#[derive(Debug, Clone)]
pub struct PipelineSettings {
    pub target_branch: String,
    /// The shared remote (`origin`) that several hosts, each in a clone of its own, merge
    /// into: work starts from its `target_branch` and lands there by a push. `None`: work
    /// merges into this repository's own branch.
    pub remote: Option<String>,
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
    /// The files no attempt may change (set by `assemble`, which knows the plugins' paths).
    pub policy_files: PolicyFiles,
    /// Who implements, per routed model (set by `assemble`, which knows the file's directory).
    pub implementers: ImplementerSettings,
}

impl PipelineSettings {
    /// Settings from `[project]`, `[agent]` and `[run]`; `worktrees_dir` is where worktrees go.
    pub fn from_config(
        file: &GafferToml,
        worktrees_dir: PathBuf,
    ) -> Result<PipelineSettings, Invalid> {
        let (project, agent, run) = (&file.project, &file.agent, &file.run);
        let defaults = AgentSettings::default();
        let positive_secs =
            |key: &str, value: Option<u64>, default: u64| -> Result<Duration, Invalid> {
                let secs = Invalid::at_least(
                    key,
                    value.unwrap_or(default),
                    1,
                    "a zero timeout would end every command at once",
                )?;
                Ok(Duration::from_secs(secs))
            };
        let mut command = CommandLimits {
            timeout: positive_secs(
                "agent.command_timeout_secs",
                agent.command_timeout_secs,
                defaults.command.timeout.as_secs(),
            )?,
            sandbox: Some(SandboxPolicy::from_config(&file.sandbox)?),
            ..CommandLimits::default()
        };
        // The keys of the Landlock-only confinement that the sandbox replaced.
        if agent.confine_commands.is_some() {
            return Err(Invalid::new(
                "agent.confine_commands",
                "commands always run in the sandbox now; remove the key (to run them \
                 unconfined, which you should not, pass `gaffer run --unconfined`)",
            ));
        }
        if agent.writable.is_some() {
            return Err(Invalid::new(
                "agent.writable",
                "commands may no longer write outside the worktree; remove the key and list \
                 the toolchains and caches they need to read under `[sandbox] read_only`",
            ));
        }
        command
            .env_allow
            .extend(agent.env_allow.iter().flatten().cloned());
        let test_limits = CommandLimits {
            timeout: positive_secs(
                "project.test_timeout_secs",
                project.test_timeout_secs,
                DEFAULT_TEST_TIMEOUT_SECS,
            )?,
            ..command.clone()
        };
        let target_branch = project
            .target_branch
            .clone()
            .unwrap_or_else(|| DEFAULT_TARGET_BRANCH.to_string());
        if target_branch.trim().is_empty() {
            return Err(Invalid::new("project.target_branch", "is empty"));
        }
        if project
            .remote
            .as_deref()
            .is_some_and(|r| r.trim().is_empty())
        {
            return Err(Invalid::new("project.remote", "is empty"));
        }
        Ok(PipelineSettings {
            target_branch,
            remote: project.remote.clone(),
            test_command: project
                .test_command
                .as_deref()
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_string),
            test_limits,
            max_attempts: Invalid::at_least(
                "agent.max_attempts",
                agent.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS),
                1,
                "a task needs at least one attempt",
            )?,
            agent: AgentSettings {
                max_turns: Invalid::at_least(
                    "agent.max_turns",
                    agent.max_turns.unwrap_or(defaults.max_turns),
                    1,
                    "an attempt needs at least one model call",
                )?,
                max_tokens: agent.max_tokens.unwrap_or(defaults.max_tokens),
                tool_output_cap: Invalid::at_least(
                    "agent.tool_output_cap",
                    agent.tool_output_cap.unwrap_or(defaults.tool_output_cap),
                    MIN_TOOL_OUTPUT_CAP,
                    "bytes of a tool result the model sees",
                )?,
                command,
            },
            workers: Invalid::at_least(
                "run.workers",
                run.workers.unwrap_or(DEFAULT_WORKERS),
                1,
                "a run needs a worker",
            )?,
            max_tasks: None,
            watch: false,
            poll: positive_secs("run.poll_secs", run.poll_secs, DEFAULT_POLL_SECS)?,
            lease: Duration::from_secs(Invalid::at_least(
                "run.lease_secs",
                run.lease_secs.unwrap_or(DEFAULT_LEASE_SECS),
                MIN_LEASE_SECS,
                "a lease is renewed every third of its length",
            )?),
            worktrees_dir,
            allow_dirty: false,
            policy_files: PolicyFiles::default(),
            implementers: ImplementerSettings::default(),
        })
    }

    /// Where approved work lands: `target_branch` on `remote`, or of this repository.
    pub fn merge_target(&self) -> MergeTarget {
        match &self.remote {
            Some(remote) => MergeTarget::on_remote(remote, &self.target_branch),
            None => MergeTarget::local(&self.target_branch),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigFile;
    use std::path::Path;

    fn settings(text: &str) -> Result<PipelineSettings, String> {
        let file = ConfigFile::parse(Path::new("gaffer.toml"), text.to_string())
            .map_err(|e| e.to_string())?;
        file.resolve(|s, _| PipelineSettings::from_config(s, PathBuf::from("w")))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_apply_to_an_empty_file() {
        let s = settings("").unwrap();
        assert_eq!(s.target_branch, "main");
        assert_eq!(s.remote, None);
        assert_eq!(s.merge_target(), MergeTarget::local("main"));
        assert_eq!(s.test_command, None);
        assert_eq!(s.max_attempts, 3);
        assert_eq!(s.workers, 1);
        assert_eq!(s.lease, Duration::from_secs(120));
        assert_eq!(s.test_limits.timeout, Duration::from_secs(600));
        assert_eq!(s.agent.command.sandbox, Some(SandboxPolicy::default()));
        assert_eq!(s.test_limits.sandbox, Some(SandboxPolicy::default()));
    }

    #[test]
    fn a_shared_remote_is_where_work_lands() {
        let s = settings("[project]\ntarget_branch = \"trunk\"\nremote = \"origin\"\n").unwrap();
        assert_eq!(s.remote.as_deref(), Some("origin"));
        assert_eq!(s.merge_target(), MergeTarget::on_remote("origin", "trunk"));
        assert_eq!(s.merge_target().to_string(), "origin/trunk");
    }

    #[test]
    fn nonsense_is_refused_with_the_key_and_line_not_clamped() {
        for (text, key) in [
            (
                "[run]\nworkers = 0\n",
                "gaffer.toml:2: `run.workers`: 0 is too small",
            ),
            (
                "[run]\nlease_secs = 0\n",
                "gaffer.toml:2: `run.lease_secs`: 0 is too small",
            ),
            (
                "[agent]\nmax_attempts = 0\n",
                "gaffer.toml:2: `agent.max_attempts`",
            ),
            (
                "[agent]\nmax_turns = 0\n",
                "gaffer.toml:2: `agent.max_turns`",
            ),
            (
                "[agent]\ntool_output_cap = 10\n",
                "gaffer.toml:2: `agent.tool_output_cap`",
            ),
            (
                "[project]\ntest_timeout_secs = 0\n",
                "gaffer.toml:2: `project.test_timeout_secs`",
            ),
            (
                "[project]\ntarget_branch = \" \"\n",
                "gaffer.toml:2: `project.target_branch`: is empty",
            ),
            (
                "[project]\nremote = \"\"\n",
                "gaffer.toml:2: `project.remote`: is empty",
            ),
            (
                "[project]\nremote = \"  \"\n",
                "gaffer.toml:2: `project.remote`: is empty",
            ),
            (
                "[sandbox]\nmemory_mib = 0\n",
                "gaffer.toml:2: `sandbox.memory_mib`: 0 is too small",
            ),
            (
                "[sandbox]\nread_only = [\"relative/dir\"]\n",
                "gaffer.toml:2: `sandbox.read_only[0]`",
            ),
            (
                "[sandbox]\ncaches = [\"/ok\", \"cache\"]\n",
                "gaffer.toml:2: `sandbox.caches[1]`: `cache` is not an absolute path",
            ),
            (
                "[sandbox]\nnetwork = true\nallow_domains = [\"pypi.org\"]\n",
                "gaffer.toml:3: `sandbox.allow_domains`: applies only while `network = false`",
            ),
            (
                "[sandbox]\nallow_domains = [\"https://pypi.org\"]\n",
                "gaffer.toml:2: `sandbox.allow_domains[0]`: `https://pypi.org` is not a domain",
            ),
            (
                "[sandbox]\nallow_addresses = [\"10.0.0.0/99\"]\n",
                "gaffer.toml:2: `sandbox.allow_addresses[0]`",
            ),
            // The keys of the Landlock-only confinement, with what replaced them.
            (
                "[agent]\nconfine_commands = false\n",
                "gaffer.toml:2: `agent.confine_commands`: commands always run in the sandbox",
            ),
            (
                "[agent]\nwritable = [\"~/.cargo\"]\n",
                "gaffer.toml:2: `agent.writable`: commands may no longer write outside",
            ),
        ] {
            let error = settings(text).unwrap_err();
            assert!(error.starts_with(key), "{text}: {error}");
        }
    }
}

//! External agents as the implementer: Claude Code, Codex CLI, or any command that speaks a
//! provider's wire format, started non-interactively in the attempt's sandbox, with its model
//! calls going to gaffer's metering proxy ([`crate::gateway::metering_proxy`]) instead of the
//! provider. The agent gets the proxy's address and a token valid for this attempt only; the
//! upstream key stays in gaffer. Its prompt and settings, written by gaffer, sit in a
//! directory mounted read-only; its own sandbox is off (gaffer's holds); every process it
//! started ends with the attempt. What differs between agents — the command line, and how its
//! result is read — is in [`claude_code`], [`codex`] and [`command`].

mod claude_code;
mod codex;
mod command;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::session::{AgentEnd, AgentReport};
use crate::config::Invalid;
use crate::config::schema::GafferToml;
use crate::gateway::metered::{CallTag, Gateway};
use crate::gateway::metering_proxy::{AgentProtocol, MeteringProxy, ProxySettings};
use crate::ledger::MicroUsd;
use crate::sandbox::{CommandLimits, Mount, run_command};

/// How long the proxy waits for streams still open after the agent ended.
const SETTLE_GRACE: Duration = Duration::from_secs(10);

/// Bytes of the agent's last message kept with the attempt.
const SAID_BYTES: usize = 600;

/// Bytes of the agent's output kept (its JSON result is the last line).
const OUTPUT_CAP: usize = 1024 * 1024;

/// Which external agent, and how it is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExternalKind {
    /// Anthropic's Claude Code CLI (`claude -p --output-format json`).
    ClaudeCode,
    /// OpenAI's Codex CLI (`codex exec --json`), over the Responses API.
    Codex,
    /// Any command line (Aider, mini-swe-agent, a team's own script), given the prompt file
    /// and the proxy's base URLs in its environment; it speaks `protocol`.
    Command {
        command: String,
        protocol: AgentProtocol,
    },
}

impl ExternalKind {
    /// The agents gaffer knows by name; any other `[implementers.<name>]` is a `command`.
    pub const NAMES: &[&str] = &["claude-code", "codex"];

    /// The agent a known name stands for.
    pub fn from_name(name: &str) -> Option<ExternalKind> {
        match name {
            "claude-code" => Some(ExternalKind::ClaudeCode),
            "codex" => Some(ExternalKind::Codex),
            _ => None,
        }
    }

    /// Its program on `PATH` when `[implementers.<name>] program` is not given.
    fn default_program(&self) -> Option<&'static str> {
        match self {
            ExternalKind::ClaudeCode => Some("claude"),
            ExternalKind::Codex => Some("codex"),
            ExternalKind::Command { .. } => None,
        }
    }

    /// The model-name fragments of its side calls.
    fn default_side_patterns(&self) -> Vec<String> {
        match self {
            ExternalKind::ClaudeCode => vec!["haiku".to_string()],
            ExternalKind::Codex | ExternalKind::Command { .. } => Vec::new(),
        }
    }

    /// The wire format it speaks to the proxy.
    pub fn protocol(&self) -> AgentProtocol {
        match self {
            ExternalKind::ClaudeCode => AgentProtocol::Anthropic,
            ExternalKind::Codex => AgentProtocol::OpenaiResponses,
            ExternalKind::Command { protocol, .. } => *protocol,
        }
    }
}

/// An external implementer as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalImplementer {
    /// Its name in `gaffer.toml` (`claude-code`, `codex`, or a command's own name).
    pub name: String,
    pub kind: ExternalKind,
    /// The agent's program (found on `PATH` when not a path); for a command, a program its
    /// command line runs that must be shown in the sandbox, if any.
    pub program: Option<PathBuf>,
    /// The model key its side calls (a small model's name) map to.
    pub side_model: Option<String>,
    /// Lower-case fragments of model names that mark a side call.
    pub side_patterns: Vec<String>,
    /// Wall-clock bound on one attempt's run of the agent.
    pub timeout: Duration,
}

/// The default wall-clock bound on one attempt's run of an external agent.
const DEFAULT_TIMEOUT_SECS: u64 = 1_800;

/// Who implements each attempt: the built-in loop, or an external agent, per routed model.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImplementerSettings {
    /// `[agent] implementer`; `None` is the built-in loop.
    pub default: Option<ExternalImplementer>,
    /// `[models.<key>] implementer`, where given (`None`: the built-in loop for that model).
    pub per_model: BTreeMap<String, Option<ExternalImplementer>>,
    /// The team's hooks inside an external agent (set by the pipeline's assembly when hooks
    /// are configured).
    pub bridge: Option<HookBridge>,
}

/// What an external agent needs to run the team's hooks on its tool calls from inside the
/// sandbox: the bridge's command and the files it reads, shown read-only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookBridge {
    /// The bridge's command ([`hook_program`]).
    pub program: Vec<String>,
    /// The run's `gaffer.toml` (the user's, never the worktree's copy).
    pub config: PathBuf,
    /// Files and directories the bridge reads: its program, the configuration, the hooks'
    /// components, the compiled-plugin cache.
    pub read_only: Vec<PathBuf>,
    /// The compiled-plugin cache (`GAFFER_PLUGIN_CACHE` for the bridge).
    pub cache_dir: PathBuf,
}

impl ImplementerSettings {
    /// The external agent for an attempt routed to `model`, or `None` for the built-in loop.
    pub fn for_model(&self, model: &str) -> Option<&ExternalImplementer> {
        match self.per_model.get(model) {
            Some(choice) => choice.as_ref(),
            None => self.default.as_ref(),
        }
    }

    /// `[agent] implementer`, `[models.<key>] implementer` and `[implementers.<name>]`;
    /// relative program paths are taken from `base` (the directory of `gaffer.toml`).
    pub fn from_config(file: &GafferToml, base: &Path) -> Result<ImplementerSettings, Invalid> {
        let choose = |key: String, name: &str| -> Result<Option<ExternalImplementer>, Invalid> {
            if name == "builtin" {
                return Ok(None);
            }
            let section = file.implementers.get(name).cloned().unwrap_or_default();
            let at = |field: &str| format!("implementers.{name}.{field}");
            let kind = match (ExternalKind::from_name(name), section.command.clone()) {
                (Some(_), Some(_)) => {
                    return Err(Invalid::new(
                        at("command"),
                        format!("`{name}` is started by gaffer; `command` is for other agents"),
                    ));
                }
                (Some(kind), None) => kind,
                (None, Some(command)) => {
                    let protocol = section.protocol.as_deref().unwrap_or("openai-chat");
                    let protocol = match protocol {
                        "anthropic" => AgentProtocol::Anthropic,
                        "openai-chat" => AgentProtocol::OpenaiChat,
                        "openai-responses" => AgentProtocol::OpenaiResponses,
                        other => {
                            return Err(Invalid::new(
                                at("protocol"),
                                format!(
                                    "`{other}` is not a wire format (anthropic, openai-chat, \
                                     openai-responses)"
                                ),
                            ));
                        }
                    };
                    ExternalKind::Command { command, protocol }
                }
                (None, None) => {
                    return Err(Invalid::new(
                        key.clone(),
                        format!(
                            "`{name}` is not an implementer (builtin, {}, or an \
                             [implementers.{name}] section with a `command`)",
                            ExternalKind::NAMES.join(", ")
                        ),
                    ));
                }
            };
            if section.protocol.is_some() && !matches!(kind, ExternalKind::Command { .. }) {
                return Err(Invalid::new(
                    at("protocol"),
                    format!("`{name}` speaks its own format; `protocol` is for commands"),
                ));
            }
            if let Some(side) = &section.side_model
                && !file.models.contains_key(side)
            {
                return Err(Invalid::new(
                    at("side_model"),
                    format!("names model `{side}`, which has no [models.{side}] section"),
                ));
            }
            let timeout = Invalid::at_least(
                at("timeout_secs"),
                section.timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS),
                1,
                "a zero timeout would end every attempt at once",
            )?;
            let program = section
                .program
                .as_deref()
                .or(kind.default_program())
                .map(|program| {
                    if program.contains('/') {
                        base.join(program)
                    } else {
                        PathBuf::from(program)
                    }
                });
            Ok(Some(ExternalImplementer {
                name: name.to_string(),
                side_patterns: section
                    .side_patterns
                    .unwrap_or_else(|| kind.default_side_patterns())
                    .iter()
                    .map(|p| p.to_ascii_lowercase())
                    .collect(),
                kind,
                program,
                side_model: section.side_model,
                timeout: Duration::from_secs(timeout),
            }))
        };
        let default = match &file.agent.implementer {
            Some(name) => choose("agent.implementer".to_string(), name)?,
            None => None,
        };
        let mut per_model = BTreeMap::new();
        for (key, model) in &file.models {
            if let Some(name) = &model.implementer {
                per_model.insert(
                    key.clone(),
                    choose(format!("models.{key}.implementer"), name)?,
                );
            }
        }
        // A section no implementer choice names is still checked (a typo is said now).
        for name in file.implementers.keys() {
            choose(format!("implementers.{name}"), name)?;
        }
        Ok(ImplementerSettings {
            default,
            per_model,
            bridge: None,
        })
    }
}

/// The agent's own account of its run, beside gaffer's ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentFigure {
    /// What the agent computed its calls cost (Claude Code's `total_cost_usd`), in µ$.
    pub cost: Option<MicroUsd>,
    /// Its turns.
    pub turns: Option<u32>,
    /// Its last message (its summary, or the error it showed), cut to a few hundred bytes.
    pub said: Option<String>,
}

/// One attempt's run of an external agent.
pub struct ExternalAgent<'a> {
    pub gateway: &'a Arc<Gateway>,
    pub implementer: &'a ExternalImplementer,
    /// The team's hooks on the agent's tool calls, when there are any.
    pub bridge: Option<&'a HookBridge>,
    pub tag: CallTag,
    /// The routed model key.
    pub model: String,
    pub worktree: &'a Path,
    /// The sandbox, scratch and mounts of the attempt's commands.
    pub limits: &'a CommandLimits,
    pub max_turns: u32,
    pub stop: CancellationToken,
}

/// Why an external agent could not run (the attempt fails with this).
#[derive(Debug, thiserror::Error)]
pub enum ExternalError {
    #[error("{agent}: {reason}")]
    Start { agent: String, reason: String },
}

impl ExternalAgent<'_> {
    /// Run the agent on `prompt` to its end; the report's charge is what the proxy booked.
    pub async fn run(&self, prompt: &str) -> AgentReport {
        match self.run_inner(prompt).await {
            Ok(done) => done,
            Err(error) => report(AgentEnd::Failed(error.to_string()), 0, MicroUsd::ZERO),
        }
    }

    async fn run_inner(&self, prompt: &str) -> Result<AgentReport, ExternalError> {
        let implementer = self.implementer;
        let fail = |reason: String| ExternalError::Start {
            agent: implementer.name.clone(),
            reason,
        };
        let program = match &implementer.program {
            Some(program) => Some(resolve_program(program).ok_or_else(|| {
                fail(format!(
                    "cannot find the program `{}` (set [implementers.{}] program, or run \
                     scripts/setup.sh, which installs Claude Code and Codex into tools/agents)",
                    program.display(),
                    implementer.name
                ))
            })?),
            None => None,
        };
        let mut proxy = MeteringProxy::start(
            Arc::clone(self.gateway),
            ProxySettings {
                protocol: implementer.kind.protocol(),
                routed: self.model.clone(),
                side: implementer.side_model.clone(),
                side_patterns: implementer.side_patterns.clone(),
                tag: self.tag.clone(),
                max_calls: Some(u64::from(self.max_turns)),
            },
        )
        .await
        .map_err(|e| fail(e.to_string()))?;
        let (model, _) = self
            .gateway
            .model_and_provider(&self.model)
            .map_err(|e| fail(e.to_string()))?;
        let model = model.clone();
        // The agent's read-only files: the prompt, its settings, the proxy's socket. Outside
        // every writable mount, so the agent cannot change them.
        let private = tempfile::Builder::new()
            .prefix("gaffer-agent-")
            .tempdir()
            .map_err(|e| fail(format!("cannot make the agent's directory: {e}")))?;
        let prompt_file = private.path().join("prompt.md");
        std::fs::write(&prompt_file, prompt)
            .map_err(|e| fail(format!("cannot write the prompt: {e}")))?;
        let mut limits = self.limits.clone();
        limits.timeout = implementer.timeout;
        limits.output_cap = OUTPUT_CAP;
        let sandboxed = limits.sandbox.is_some();
        let base_url = if sandboxed {
            let socket = private.path().join("model.sock");
            proxy
                .listen_unix(&socket)
                .map_err(|e| fail(e.to_string()))?;
            limits.model_socket = Some(socket);
            format!("http://127.0.0.1:{}", crate::sandbox::init::MODEL_PORT)
        } else {
            proxy.base_url().to_string()
        };
        limits.mounts.push(Mount {
            path: private.path().to_path_buf(),
            writable: false,
        });
        if let Some(dir) = program.as_deref().and_then(program_tree) {
            limits.mounts.push(Mount {
                path: dir,
                writable: false,
            });
        }
        let launch = Launch {
            program: program.as_deref(),
            prompt_file: &prompt_file,
            private_dir: private.path(),
            model_id: &model.id,
            base_url: &base_url,
            token: proxy.token(),
            sandboxed,
        };
        let command = match &implementer.kind {
            ExternalKind::ClaudeCode => {
                let hook_command = self.bridge.map(|bridge| {
                    let mut words = bridge.program.clone();
                    words.extend([
                        "--config".to_string(),
                        bridge.config.display().to_string(),
                        "--root".to_string(),
                        self.worktree.display().to_string(),
                    ]);
                    words
                });
                if let Some(bridge) = self.bridge {
                    limits
                        .mounts
                        .extend(bridge.read_only.iter().map(|path| Mount {
                            path: path.clone(),
                            writable: false,
                        }));
                    limits.env_set.push((
                        "GAFFER_PLUGIN_CACHE".to_string(),
                        bridge.cache_dir.display().to_string(),
                    ));
                }
                claude_code::launch(&launch, hook_command.as_deref(), &mut limits.env_set)
            }
            ExternalKind::Codex => codex::launch(&launch, &mut limits.env_set),
            ExternalKind::Command { command, protocol } => {
                command::launch(&launch, command, *protocol, &mut limits.env_set)
            }
        }
        .map_err(|e| fail(format!("cannot write the agent's files: {e}")))?;
        let ran = tokio::select! {
            ran = run_command(self.worktree, &command, &limits) => Some(ran),
            () = self.stop.cancelled() => None,
        };
        let summary = proxy.finish(SETTLE_GRACE).await;
        let Some(ran) = ran else {
            return Ok(report(AgentEnd::Stopped, summary.calls, summary.charged));
        };
        let output = ran.map_err(|e| fail(e.to_string()))?;
        let read = match &implementer.kind {
            ExternalKind::ClaudeCode => claude_code::read_result(&output.output),
            ExternalKind::Codex => codex::read_result(&output.output, &model),
            ExternalKind::Command { .. } => command::read_result(&output),
        };
        let end = if let Some(exhausted) = summary.budget {
            AgentEnd::Budget(exhausted)
        } else if output.timed_out || summary.call_limit_hit {
            AgentEnd::TurnLimit
        } else {
            match read.end {
                Some(end) => end,
                None => AgentEnd::Failed(format!(
                    "{} ended (exit {}) without its result: {}",
                    implementer.name,
                    output
                        .exit_code
                        .map_or_else(|| "by a signal".to_string(), |c| c.to_string()),
                    tail(&output.output, 2_000)
                )),
            }
        };
        let turns = read
            .figure
            .as_ref()
            .and_then(|f| f.turns)
            .map_or(summary.calls, u64::from);
        let mut done = report(end, summary.calls.max(turns), summary.charged);
        done.confinement = Some(output.confinement);
        done.agent_figure = read.figure;
        Ok(done)
    }
}

/// What every agent's launch is given.
struct Launch<'a> {
    /// The agent's program, resolved (`None`: a command without one).
    program: Option<&'a Path>,
    /// The task prompt, in a file the agent may read and not change.
    prompt_file: &'a Path,
    /// Where gaffer may write the agent's other files (shown read-only).
    private_dir: &'a Path,
    /// The routed model's provider id, which the agent asks for.
    model_id: &'a str,
    /// The proxy's root (`/v1` follows for OpenAI's formats).
    base_url: &'a str,
    /// The agent's key for the proxy (never the upstream key).
    token: &'a str,
    /// The agent runs in the sandbox (else with gaffer's rights, `--unconfined`).
    sandboxed: bool,
}

impl Launch<'_> {
    /// The resolved program, quoted for `sh`.
    fn quoted_program(&self) -> String {
        shell_quote(
            &self
                .program
                .map(|p| p.to_string_lossy())
                .unwrap_or_default(),
        )
    }
}

/// What an agent's output says: how it ended (`None`: it said nothing readable) and its own
/// account.
struct ReadResult {
    end: Option<AgentEnd>,
    figure: Option<AgentFigure>,
}

fn report(end: AgentEnd, turns: u64, charged: MicroUsd) -> AgentReport {
    AgentReport {
        end,
        agent_figure: None,
        turns: u32::try_from(turns).unwrap_or(u32::MAX),
        charged,
        tool_calls: 0,
        denials: Vec::new(),
        failed_commands: 0,
        confinement: None,
    }
}

/// Claude Code settings that run the team's hooks (gaffer's bridge, `hook_command`) on every
/// tool call, before and after. Meant for a place the policed agent cannot write — the
/// machine's managed settings, or a file outside every writable mount passed as `claude
/// --settings FILE` — never the project's `.claude/settings.json`. Every tool is matched (an
/// unknown one is denied), a hook that fails to start, times out or crashes blocks
/// (`onFailure: block`; Claude Code's default lets the call through), hooks cannot be switched
/// off by a lower settings file (`disableAllHooks: false` from `--settings` outranks user,
/// project and local settings, also mid-session, as observed with Claude Code 2.1.328), skills
/// run no shell lines, and only managed hooks run where these are the managed settings.
pub fn hook_settings(hook_command: &[String]) -> Value {
    let quote = |word: &String| {
        if word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-:=".contains(c))
        {
            word.clone()
        } else {
            shell_quote(word)
        }
    };
    let hook = json!({
        "type": "command",
        "command": hook_command.iter().map(quote).collect::<Vec<_>>().join(" "),
        "timeout": 60,
        "onFailure": "block",
    });
    json!({
        "allowManagedHooksOnly": true,
        "disableAllHooks": false,
        "disableSkillShellExecution": true,
        "hooks": {
            "PreToolUse": [{"matcher": "*", "hooks": [hook.clone()]}],
            "PostToolUse": [{"matcher": "*", "hooks": [hook]}],
        }
    })
}

/// The command that runs the bridge: `gaffer-hook claude-code` beside the running program when
/// it is installed, else the running program's `hook claude-code`.
pub fn hook_program() -> std::io::Result<Vec<String>> {
    let exe = std::env::current_exe()?;
    let small = exe.with_file_name("gaffer-hook");
    Ok(if small.is_file() {
        vec![small.display().to_string(), "claude-code".to_string()]
    } else {
        vec![
            exe.display().to_string(),
            "hook".to_string(),
            "claude-code".to_string(),
        ]
    })
}

/// Dollars as a float (an agent's own figure) to µ$, to the nearest.
fn dollars_to_micro(dollars: f64) -> MicroUsd {
    if dollars.is_finite() && dollars > 0.0 {
        // The float is the agent's; the rounding to whole µ$ is the only step here.
        MicroUsd((dollars * 1_000_000.0).round() as u64)
    } else {
        MicroUsd::ZERO
    }
}

/// The program as an absolute path, its symbolic links resolved (the sandbox mounts its
/// directory); a bare name is looked up on `PATH`.
fn resolve_program(program: &Path) -> Option<PathBuf> {
    let found = if program.components().count() > 1 || program.is_absolute() {
        program.to_path_buf()
    } else {
        std::env::split_paths(&std::env::var_os("PATH")?)
            .map(|dir| dir.join(program))
            .find(|candidate| candidate.is_file())?
    };
    std::fs::canonicalize(found).ok().filter(|p| p.is_file())
}

/// What of the host the sandbox shows for an agent's program: the whole `node_modules` tree an
/// npm-installed agent lives in (its wrapper finds its native binary in a sibling package),
/// else the program's directory.
fn program_tree(program: &Path) -> Option<PathBuf> {
    program
        .ancestors()
        .filter(|dir| dir.file_name().is_some_and(|name| name == "node_modules"))
        .last()
        .or_else(|| program.parent())
        .map(Path::to_path_buf)
}

/// `text` in single quotes for `sh`.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// The start of `text`, at most `bytes` long.
fn head(text: &str, bytes: usize) -> &str {
    let mut end = bytes.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn tail(text: &str, bytes: usize) -> &str {
    let mut start = text.len().saturating_sub(bytes);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_npm_agent_is_shown_its_whole_package_tree() {
        assert_eq!(
            program_tree(Path::new(
                "/p/tools/agents/node_modules/@openai/codex/bin/codex.js"
            )),
            Some(PathBuf::from("/p/tools/agents/node_modules"))
        );
        assert_eq!(
            program_tree(Path::new("/usr/local/bin/aider")),
            Some(PathBuf::from("/usr/local/bin"))
        );
    }

    #[test]
    fn quoting_survives_quotes() {
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }

    #[test]
    fn an_agents_float_dollars_round_to_the_nearest_micro_dollar() {
        assert_eq!(dollars_to_micro(0.015179999999999999), MicroUsd(15_180));
        assert_eq!(dollars_to_micro(-1.0), MicroUsd::ZERO);
        assert_eq!(dollars_to_micro(f64::NAN), MicroUsd::ZERO);
    }
}

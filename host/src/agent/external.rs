//! External agents as the implementer: Claude Code (and, by the same path, any CLI that speaks
//! a provider's wire format), started non-interactively in the attempt's sandbox, with its
//! model calls going to gaffer's metering proxy ([`crate::gateway::metering_proxy`]) instead of
//! the provider. The agent gets the proxy's address and a token valid for this attempt only;
//! the upstream key stays in gaffer. Its own settings, written by gaffer, sit in a directory
//! mounted read-only (the project's `.claude/` settings are not read), its own sandbox is off
//! (gaffer's holds), and every process it started ends with the attempt.

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

/// The tools Claude Code may use without asking (everything else is denied: no prompt can be
/// answered in a non-interactive run). Its web tools are not among them; they would fail in
/// the sandbox, and the proxy refuses the provider-side search.
const CLAUDE_CODE_TOOLS: &str = "Read Write Edit Bash Glob Grep NotebookEdit";

/// Bytes of the agent's last message kept with the attempt.
const SAID_BYTES: usize = 600;

/// Bytes of the agent's output kept (its JSON result is the last line).
const OUTPUT_CAP: usize = 1024 * 1024;

/// Which external agent, and how it is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExternalKind {
    /// Anthropic's Claude Code CLI (`claude -p --output-format json`).
    ClaudeCode,
}

impl ExternalKind {
    /// The names `gaffer.toml` knows.
    pub const NAMES: &[&str] = &["claude-code"];

    pub fn from_name(name: &str) -> Option<ExternalKind> {
        match name {
            "claude-code" => Some(ExternalKind::ClaudeCode),
            _ => None,
        }
    }

    /// Its program on `PATH` when `[implementers.<name>] program` is not given.
    pub fn default_program(&self) -> &'static str {
        match self {
            ExternalKind::ClaudeCode => "claude",
        }
    }

    /// The model-name fragments of its side calls.
    pub fn default_side_patterns(&self) -> Vec<String> {
        match self {
            ExternalKind::ClaudeCode => vec!["haiku".to_string()],
        }
    }

    /// The wire format it speaks to the proxy.
    pub fn protocol(&self) -> AgentProtocol {
        match self {
            ExternalKind::ClaudeCode => AgentProtocol::Anthropic,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            ExternalKind::ClaudeCode => "claude-code",
        }
    }
}

/// An external implementer as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalImplementer {
    pub kind: ExternalKind,
    /// The agent's program (found on `PATH` when not a path).
    pub program: PathBuf,
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
        for name in file.implementers.keys() {
            if ExternalKind::from_name(name).is_none() {
                return Err(Invalid::new(
                    format!("implementers.{name}"),
                    format!(
                        "is not an external agent gaffer knows (known: {})",
                        ExternalKind::NAMES.join(", ")
                    ),
                ));
            }
        }
        let choose = |key: String, name: &str| -> Result<Option<ExternalImplementer>, Invalid> {
            if name == "builtin" {
                return Ok(None);
            }
            let kind = ExternalKind::from_name(name).ok_or_else(|| {
                Invalid::new(
                    key.clone(),
                    format!(
                        "`{name}` is not an implementer (known: builtin, {})",
                        ExternalKind::NAMES.join(", ")
                    ),
                )
            })?;
            let section = file.implementers.get(name).cloned().unwrap_or_default();
            let at = |field: &str| format!("implementers.{name}.{field}");
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
            let program = section.program.as_deref().unwrap_or(kind.default_program());
            let program = if program.contains('/') {
                base.join(program)
            } else {
                PathBuf::from(program)
            };
            Ok(Some(ExternalImplementer {
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
    Start { agent: &'static str, reason: String },
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
        let agent = self.implementer.kind.name();
        let fail = |reason: String| ExternalError::Start { agent, reason };
        let program = resolve_program(&self.implementer.program).ok_or_else(|| {
            fail(format!(
                "cannot find the program `{}` (set [implementers.{agent}] program, or run \
                 scripts/setup.sh, which installs it into tools/agents)",
                self.implementer.program.display()
            ))
        })?;
        let mut proxy = MeteringProxy::start(
            Arc::clone(self.gateway),
            ProxySettings {
                protocol: self.implementer.kind.protocol(),
                routed: self.model.clone(),
                side: self.implementer.side_model.clone(),
                side_patterns: self.implementer.side_patterns.clone(),
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
        let model_id = model.id.clone();
        // The agent's read-only files: the prompt, its settings, the proxy's socket. Outside
        // every writable mount, so the agent cannot change them.
        let private = tempfile::Builder::new()
            .prefix("gaffer-agent-")
            .tempdir()
            .map_err(|e| fail(format!("cannot make the agent's directory: {e}")))?;
        let prompt_file = private.path().join("prompt.md");
        let settings_file = private.path().join("settings.json");
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
        let settings = claude_code_settings(hook_command.as_deref());
        std::fs::write(&prompt_file, prompt)
            .and_then(|()| std::fs::write(&settings_file, settings.to_string()))
            .map_err(|e| fail(format!("cannot write the agent's files: {e}")))?;
        let mut limits = self.limits.clone();
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
        limits.timeout = self.implementer.timeout;
        limits.output_cap = OUTPUT_CAP;
        let base_url = if limits.sandbox.is_some() {
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
        if let Some(dir) = program.parent() {
            limits.mounts.push(Mount {
                path: dir.to_path_buf(),
                writable: false,
            });
        }
        limits.env_set.extend(
            [
                ("ANTHROPIC_BASE_URL", base_url.as_str()),
                ("ANTHROPIC_API_KEY", proxy.token()),
                // Only the model calls: no update checks, telemetry or error reports.
                ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1"),
                ("DISABLE_AUTOUPDATER", "1"),
                ("DISABLE_TELEMETRY", "1"),
                ("DISABLE_ERROR_REPORTING", "1"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        let command = format!(
            "exec {program} -p \"$(cat {prompt})\" --output-format json --model {model} \
             --permission-mode dontAsk --allowedTools {tools} --settings {settings} \
             --setting-sources '' --strict-mcp-config --disable-slash-commands \
             --no-session-persistence",
            program = shell_quote(&program.to_string_lossy()),
            prompt = shell_quote(&prompt_file.to_string_lossy()),
            model = shell_quote(&model_id),
            tools = shell_quote(CLAUDE_CODE_TOOLS),
            settings = shell_quote(&settings_file.to_string_lossy()),
        );
        let ran = tokio::select! {
            ran = run_command(self.worktree, &command, &limits) => Some(ran),
            () = self.stop.cancelled() => None,
        };
        let summary = proxy.finish(SETTLE_GRACE).await;
        let Some(ran) = ran else {
            return Ok(report(AgentEnd::Stopped, summary.calls, summary.charged));
        };
        let output = ran.map_err(|e| fail(e.to_string()))?;
        let result = last_result(&output.output);
        let figure = result.as_ref().map(|r| AgentFigure {
            cost: r
                .get("total_cost_usd")
                .and_then(Value::as_f64)
                .map(dollars_to_micro),
            turns: r
                .get("num_turns")
                .and_then(Value::as_u64)
                .and_then(|t| u32::try_from(t).ok()),
            said: r
                .get("result")
                .and_then(Value::as_str)
                .map(|text| head(text, SAID_BYTES).to_string()),
        });
        let turns = figure
            .as_ref()
            .and_then(|f| f.turns)
            .map_or(summary.calls, u64::from);
        let end = if let Some(exhausted) = summary.budget {
            AgentEnd::Budget(exhausted)
        } else if output.timed_out || summary.call_limit_hit {
            AgentEnd::TurnLimit
        } else {
            match &result {
                Some(result) => claude_code_end(result),
                None => AgentEnd::Failed(format!(
                    "{agent} ended (exit {}) without its result: {}",
                    output
                        .exit_code
                        .map_or_else(|| "by a signal".to_string(), |c| c.to_string()),
                    tail(&output.output, 2_000)
                )),
            }
        };
        let mut done = report(end, summary.calls.max(turns), summary.charged);
        done.confinement = Some(output.confinement);
        done.agent_figure = figure;
        Ok(done)
    }
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

/// How Claude Code's result object says the run ended.
fn claude_code_end(result: &Value) -> AgentEnd {
    let text = result
        .get("result")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let is_error = result.get("is_error").and_then(Value::as_bool) == Some(true);
    let subtype = result.get("subtype").and_then(Value::as_str).unwrap_or("");
    if subtype == "error_max_turns" {
        return AgentEnd::TurnLimit;
    }
    match result.get("api_error_status").and_then(Value::as_u64) {
        Some(status) if is_error && (status == 429 || status >= 500) => AgentEnd::Provider(text),
        _ => AgentEnd::Finished { summary: text },
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

/// Claude Code's settings for a run under gaffer: the team's hooks when there are any, its
/// own sandbox off (gaffer's holds), no project MCP servers, hooks that stay on and skills
/// that run no shell (also without hooks), nothing kept between runs.
fn claude_code_settings(hook_command: Option<&[String]>) -> Value {
    let mut settings = match hook_command {
        Some(command) => hook_settings(command),
        None => json!({"disableAllHooks": false, "disableSkillShellExecution": true}),
    };
    if let Some(object) = settings.as_object_mut() {
        object.insert("sandbox".into(), json!({ "enabled": false }));
        object.insert("enableAllProjectMcpServers".into(), json!(false));
        object.insert("cleanupPeriodDays".into(), json!(1));
        object.insert("includeCoAuthoredBy".into(), json!(false));
    }
    settings
}

/// The last line of `output` that is Claude Code's result object.
fn last_result(output: &str) -> Option<Value> {
    output.lines().rev().find_map(|line| {
        let line = line.trim();
        if !line.starts_with('{') {
            return None;
        }
        serde_json::from_str::<Value>(line)
            .ok()
            .filter(|v| v.get("type").and_then(Value::as_str) == Some("result"))
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
    fn the_result_is_the_last_json_line_of_type_result() {
        let output = "warning: something\n{\"type\":\"system\"}\n{\"type\":\"result\",\"total_cost_usd\":0.01518,\"num_turns\":2}\n";
        let result = last_result(output).unwrap();
        assert_eq!(result["num_turns"], 2);
        assert_eq!(dollars_to_micro(0.015179999999999999), MicroUsd(15_180));
        assert_eq!(last_result("no json here"), None);
    }

    #[test]
    fn quoting_survives_quotes() {
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }

    #[test]
    fn an_api_error_of_the_provider_is_a_provider_ending() {
        let end = claude_code_end(&json!({"type": "result", "is_error": true,
            "api_error_status": 529, "result": "API Error: overloaded"}));
        assert!(matches!(end, AgentEnd::Provider(_)));
        let end = claude_code_end(&json!({"type": "result", "subtype": "error_max_turns"}));
        assert_eq!(end, AgentEnd::TurnLimit);
    }
}

//! Any command as the implementer (Aider, mini-swe-agent, a team's own script): its command
//! line from `gaffer.toml`, run in the worktree with the task prompt in a file and the proxy's
//! base URL and token in the variables its kind of client reads. It gives no figure of its own;
//! the diff it leaves is its result.

use super::{Launch, ReadResult, SAID_BYTES, tail};
use crate::agent::session::AgentEnd;
use crate::gateway::metering_proxy::AgentProtocol;
use crate::sandbox::CommandOutput;

/// Set its environment and give its command line (as configured).
pub(super) fn launch(
    launch: &Launch<'_>,
    command: &str,
    protocol: AgentProtocol,
    env: &mut Vec<(String, String)>,
) -> std::io::Result<String> {
    let mut set = |name: &str, value: String| env.push((name.to_string(), value));
    set(
        "GAFFER_PROMPT_FILE",
        launch.prompt_file.display().to_string(),
    );
    set("GAFFER_MODEL", launch.model_id.to_string());
    match protocol {
        AgentProtocol::Anthropic => {
            set("ANTHROPIC_BASE_URL", launch.base_url.to_string());
            set("ANTHROPIC_API_KEY", launch.token.to_string());
        }
        AgentProtocol::OpenaiChat | AgentProtocol::OpenaiResponses => {
            let base = format!("{}/v1", launch.base_url);
            // OPENAI_API_BASE for older clients (LiteLLM, hence Aider).
            set("OPENAI_BASE_URL", base.clone());
            set("OPENAI_API_BASE", base);
            set("OPENAI_API_KEY", launch.token.to_string());
        }
    }
    Ok(command.to_string())
}

/// A command's result is its exit and the diff it leaves; a command that could not be found or
/// run (the shell's 127 or 126) did not implement anything.
pub(super) fn read_result(output: &CommandOutput) -> ReadResult {
    let said = tail(output.output.trim_end(), SAID_BYTES).to_string();
    let end = match output.exit_code {
        Some(127 | 126) => None,
        _ => Some(AgentEnd::Finished { summary: said }),
    };
    ReadResult { end, figure: None }
}

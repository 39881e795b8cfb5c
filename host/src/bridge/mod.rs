//! The team's hooks inside other agents' hook systems: `gaffer hook claude-code` (and the
//! `gaffer-hook` binary) answers Claude Code's command hooks with the WebAssembly hooks of
//! `gaffer.toml`, and denies whenever it cannot decide.

pub mod claude_code;

//! The implementing agent: a tool-using loop over the gateway, with tools confined to the
//! attempt's worktree.

pub mod external;
pub mod session;
pub mod tools;
pub mod workspace;

pub use session::{Agent, AgentEnd, AgentReport, AgentSettings, Hooks, NoHooks, ToolVerdict};

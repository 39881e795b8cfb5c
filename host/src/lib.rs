//! gaffer: a foreman for autonomous coding agents.
//!
//! Routers, verifiers and hooks are sandboxed WebAssembly components (see `wit/`); the host owns
//! model calls, git and the ledger. This crate is the host: the library and the `gaffer` and
//! `gaffer-hook` binaries. Its rooms, lowest first (a room imports only rooms below it):
//!
//! - [`config`], [`store`], [`confined`]: the file's schema; persistence and the stored
//!   vocabulary; worktree files opened safely;
//! - [`ledger`], [`plugin`], [`gateway`], [`sandbox`]: budgets; the plugin runtime; model
//!   providers; the processes the agent starts;
//! - [`git`], [`agent`], [`report`]: worktrees and merges; the implementing agent; economics;
//! - [`project`], [`pipeline`], [`bridge`]: the project on disk; a run; other agents' hooks;
//! - [`cli`], [`demo`]: the commands, and the offline demo (the two that know every room).

pub mod agent;
pub mod bridge;
pub mod cli;
pub mod config;
pub mod confined;
pub mod demo;
pub mod gateway;
pub mod git;
pub mod ledger;
pub mod pipeline;
pub mod plugin;
pub mod project;
pub mod report;
pub mod sandbox;
pub mod store;

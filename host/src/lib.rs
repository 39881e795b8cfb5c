//! gaffer: a foreman for autonomous coding agents.
//!
//! Routers, verifiers and hooks are sandboxed WebAssembly components (see `wit/`); the host owns
//! model calls, git and the ledger. This crate is the host: the library and the `gaffer` binary.

pub mod agent;
pub mod cli;
pub mod demo;
pub mod gateway;
pub mod git;
pub mod ledger;
pub mod pipeline;
pub mod plugin;
pub mod report;
pub mod store;

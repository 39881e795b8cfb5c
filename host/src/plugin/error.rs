//! What can go wrong with a plugin, each error naming the plugin and the figure at fault.

use std::path::PathBuf;
use std::time::Duration;

/// A plugin fault or load failure. Every variant names the plugin.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PluginError {
    /// The `.wasm` file could not be read.
    #[error("plugin `{plugin}`: cannot read {path}: {reason}")]
    Read {
        plugin: String,
        path: PathBuf,
        reason: String,
    },
    /// The file is not a valid WebAssembly component (or failed to compile).
    #[error("plugin `{plugin}`: {path} is not a loadable WebAssembly component: {reason}")]
    Compile {
        plugin: String,
        path: PathBuf,
        reason: String,
    },
    /// The component does not implement the world it was configured as, or imports what the
    /// host does not provide.
    #[error(
        "plugin `{plugin}`: incompatible component: expected the `{expected}` world of gaffer:plugin@0.1.0, \
         but it exports [{exports}]{detail}"
    )]
    Incompatible {
        plugin: String,
        expected: &'static str,
        /// The component's exports, comma-separated.
        exports: String,
        /// Extra detail (e.g. an import the host does not provide), starting with "; " when present.
        detail: String,
    },
    /// The file's bytes are not the ones `gaffer.toml` pins with `sha256`.
    #[error(
        "plugin `{plugin}`: {path} has SHA-256 {found}, but gaffer.toml pins {expected}; \
         a plugin file changed since it was configured"
    )]
    HashMismatch {
        plugin: String,
        path: PathBuf,
        expected: String,
        found: String,
    },
    /// The call used up its fuel allowance.
    #[error(
        "plugin `{plugin}`: out of fuel in `{function}`: used all {allowance} instructions allowed to the call"
    )]
    OutOfFuel {
        plugin: String,
        function: &'static str,
        allowance: u64,
    },
    /// The call ran past its wall-clock deadline (computing, or awaiting a host call).
    #[error("plugin `{plugin}`: `{function}` passed its deadline of {} ms", deadline.as_millis())]
    Deadline {
        plugin: String,
        function: &'static str,
        deadline: Duration,
    },
    /// The plugin tried to grow its memory past its cap.
    #[error(
        "plugin `{plugin}`: memory limit in `{function}`: its memories and tables together would hold {requested} bytes, cap is {cap} bytes"
    )]
    MemoryLimit {
        plugin: String,
        function: &'static str,
        requested: u64,
        cap: u64,
    },
    /// The plugin trapped (a panic, an unreachable, a stack overflow, ...).
    #[error("plugin `{plugin}`: trapped in `{function}`: {message}{}", backtrace_suffix(.backtrace))]
    Trap {
        plugin: String,
        function: &'static str,
        message: String,
        /// The WebAssembly backtrace, when there is one.
        backtrace: Option<String>,
    },
    /// The plugin returned an `Err` of its own.
    #[error("plugin `{plugin}`: `{function}` returned an error: {message}")]
    Returned {
        plugin: String,
        function: &'static str,
        message: String,
    },
    /// The plugin returned something the host cannot accept (too big, naming an unknown model, ...).
    #[error("plugin `{plugin}`: `{function}` returned malformed output: {reason}")]
    MalformedOutput {
        plugin: String,
        function: &'static str,
        reason: String,
    },
    /// The plugin returned more bytes than allowed.
    #[error("plugin `{plugin}`: `{function}` returned {size} bytes, more than the {cap} allowed")]
    OversizedOutput {
        plugin: String,
        function: &'static str,
        size: usize,
        cap: usize,
    },
    /// The runtime itself failed to set up the call (should not happen; reported, not hidden).
    #[error("plugin `{plugin}`: host error in `{function}`: {reason}")]
    Host {
        plugin: String,
        function: &'static str,
        reason: String,
    },
}

fn backtrace_suffix(backtrace: &Option<String>) -> String {
    match backtrace {
        Some(bt) if !bt.trim().is_empty() => format!("\nwasm backtrace:\n{bt}"),
        _ => String::new(),
    }
}

impl PluginError {
    /// The name of the plugin at fault.
    pub fn plugin(&self) -> &str {
        match self {
            PluginError::Read { plugin, .. }
            | PluginError::Compile { plugin, .. }
            | PluginError::Incompatible { plugin, .. }
            | PluginError::HashMismatch { plugin, .. }
            | PluginError::OutOfFuel { plugin, .. }
            | PluginError::Deadline { plugin, .. }
            | PluginError::MemoryLimit { plugin, .. }
            | PluginError::Trap { plugin, .. }
            | PluginError::Returned { plugin, .. }
            | PluginError::MalformedOutput { plugin, .. }
            | PluginError::OversizedOutput { plugin, .. }
            | PluginError::Host { plugin, .. } => plugin,
        }
    }

    /// A short machine-readable kind, for ledger rows and JSON output.
    pub fn kind(&self) -> &'static str {
        match self {
            PluginError::Read { .. } => "read",
            PluginError::Compile { .. } => "compile",
            PluginError::Incompatible { .. } => "incompatible",
            PluginError::HashMismatch { .. } => "hash-mismatch",
            PluginError::OutOfFuel { .. } => "out-of-fuel",
            PluginError::Deadline { .. } => "deadline",
            PluginError::MemoryLimit { .. } => "memory-limit",
            PluginError::Trap { .. } => "trap",
            PluginError::Returned { .. } => "returned-error",
            PluginError::MalformedOutput { .. } => "malformed-output",
            PluginError::OversizedOutput { .. } => "oversized-output",
            PluginError::Host { .. } => "host-error",
        }
    }
}

/// A call that produced no decision. Unlike a fault answered by the fail policy, these stop the
/// work and say why.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The task's cumulative plugin fuel is spent.
    #[error(
        "task `{task}`: plugin fuel budget exhausted: {used} of {budget} instructions used, `{plugin}` needs more"
    )]
    TaskFuelExhausted {
        task: String,
        plugin: String,
        budget: u64,
        used: u64,
    },
    /// The plugin faulted too often in this run; the run should stop.
    #[error("plugin `{plugin}` faulted {faults} times (limit {limit}); last fault: {last}")]
    FaultLimit {
        plugin: String,
        faults: u32,
        limit: u32,
        last: String,
    },
    /// The plugin faulted and its policy is `stop`.
    #[error("{0}")]
    Stopped(PluginError),
}

//! What a wasmtime error from a call stands for: fuel or time run out, memory refused, or a
//! trap (with what the plugin wrote to stderr or logged as an error, and the WebAssembly
//! backtrace).

use std::time::Duration;

use wasmtime::{Store, Trap, WasmBacktrace};

use crate::plugin::error::PluginError;
use crate::plugin::state::PluginState;

/// Turn a wasmtime error from a call into the fault it stands for.
pub(super) fn classify_trap(
    error: &wasmtime::Error,
    store: &Store<PluginState>,
    plugin: &str,
    function: &'static str,
    allowance: u64,
    deadline: Duration,
) -> PluginError {
    let plugin = plugin.to_string();
    let trap = error.downcast_ref::<Trap>().copied();
    match trap {
        Some(Trap::OutOfFuel) => {
            return PluginError::OutOfFuel {
                plugin,
                function,
                allowance,
            };
        }
        Some(Trap::Interrupt) => {
            return PluginError::Deadline {
                plugin,
                function,
                deadline,
            };
        }
        _ => {}
    }
    let state = store.data();
    if let Some(requested) = state.limiter.refused {
        return PluginError::MemoryLimit {
            plugin,
            function,
            requested,
            cap: state.limiter.cap(),
        };
    }
    let mut message = match trap {
        Some(trap) => trap.to_string(),
        None => format!("{error:#}"),
    };
    // What the plugin said before it trapped: its stderr (where Rust's panic message goes with
    // WASI), else its last `error` log record (where the SDK sends it without WASI).
    let stderr = state.stderr_text();
    let said = if !stderr.is_empty() {
        Some(("wrote", stderr.as_str()))
    } else {
        state.last_error_log().map(|text| ("logged", text))
    };
    if let Some((verb, text)) = said {
        let tail: String = text
            .chars()
            .rev()
            .take(2000)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        message.push_str(&format!("; the plugin {verb}: {tail}"));
    }
    let backtrace = error
        .downcast_ref::<WasmBacktrace>()
        .map(|bt| bt.to_string());
    PluginError::Trap {
        plugin,
        function,
        message,
        backtrace,
    }
}

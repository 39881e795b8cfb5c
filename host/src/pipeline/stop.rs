//! One stop signal for a run: the first reason to stop wins, every part of the run sees it, and
//! the process's exit code follows from the reason, not from its wording.

use std::sync::Mutex;

use tokio_util::sync::CancellationToken;

use crate::store::CapLevel;

/// Why a run stopped before its backlog was done.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum StopReason {
    /// SIGINT or SIGTERM.
    Signal,
    /// A run-wide cap (run, day, month, a model's month) is reached.
    Cap { level: CapLevel, message: String },
    /// A plugin whose fail policy is `stop`, or that passed its fault limit.
    Plugin { message: String },
    /// The provider failed after its retries and fallbacks.
    Provider { message: String },
    /// The store (backlog or ledger) cannot be read or written.
    Store { message: String },
}

impl StopReason {
    /// The exit code of `gaffer run` that stopped for this reason: 130 for a signal (as shells
    /// do), 3 for every other early stop.
    pub fn exit_code(&self) -> u8 {
        match self {
            StopReason::Signal => 130,
            _ => 3,
        }
    }
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StopReason::Signal => f.write_str("stopped by a signal"),
            StopReason::Cap { message, .. } => write!(f, "stopped: {message}"),
            StopReason::Plugin { message } => write!(f, "stopped: {message}"),
            StopReason::Provider { message } => {
                write!(f, "stopped: the provider failed: {message}")
            }
            StopReason::Store { message } => write!(f, "stopped: the store failed: {message}"),
        }
    }
}

/// The run's stop signal: set once, with the first reason; its token tells the agent to end
/// before its next call.
#[derive(Debug, Default)]
pub struct StopSignal {
    token: CancellationToken,
    reason: Mutex<Option<StopReason>>,
}

impl StopSignal {
    pub fn new() -> StopSignal {
        StopSignal::default()
    }

    /// Ask the run to stop: no new claims, current steps park at their next boundary. A later
    /// request keeps the first reason.
    pub fn request(&self, reason: StopReason) {
        match self.reason.lock() {
            Ok(mut slot) => {
                slot.get_or_insert(reason);
            }
            Err(poisoned) => {
                poisoned.into_inner().get_or_insert(reason);
            }
        }
        self.token.cancel();
    }

    /// Whether a stop was requested.
    pub fn is_requested(&self) -> bool {
        self.token.is_cancelled()
    }

    /// The first reason given.
    pub fn reason(&self) -> Option<StopReason> {
        match self.reason.lock() {
            Ok(slot) => slot.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// A token that is cancelled when the run stops (for the agent, which knows no reasons).
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_reason_wins_and_decides_the_exit_code() {
        let signal = StopSignal::new();
        assert!(!signal.is_requested());
        assert_eq!(signal.reason(), None);
        signal.request(StopReason::Cap {
            level: CapLevel::Month,
            message: "the month cap is spent".into(),
        });
        signal.request(StopReason::Signal);
        assert!(signal.is_requested());
        assert!(signal.token().is_cancelled());
        let reason = signal.reason().unwrap();
        assert_eq!(reason.exit_code(), 3);
        assert_eq!(reason.to_string(), "stopped: the month cap is spent");
        let signal = StopSignal::new();
        signal.request(StopReason::Signal);
        assert_eq!(signal.reason().unwrap().exit_code(), 130);
    }
}

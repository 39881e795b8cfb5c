//! Every plugin run as a ledger row: zero tokens, its fuel and wall time, its outcome, under
//! the plugin's role and stage.

use std::sync::Arc;

use super::role_of;
use crate::ledger::Ledger;
use crate::plugin::{PluginRun, RunRecorder};
use crate::store::RowScope;

/// A [`RunRecorder`] that writes each plugin run into the ledger.
pub struct LedgerRecorder {
    ledger: Arc<Ledger>,
    run_id: String,
}

impl LedgerRecorder {
    pub fn new(ledger: Arc<Ledger>, run_id: impl Into<String>) -> LedgerRecorder {
        LedgerRecorder {
            ledger,
            run_id: run_id.into(),
        }
    }
}

impl RunRecorder for LedgerRecorder {
    fn record(&self, run: &PluginRun) {
        let scope = RowScope {
            model: run.plugin.clone(),
            ..RowScope::attempt(
                &self.run_id,
                &run.task_id,
                run.attempt,
                run.stage,
                role_of(run.world),
            )
        };
        let wall_ms = u64::try_from(run.wall.as_millis()).unwrap_or(u64::MAX);
        // A failed write must not fail the plugin call; it is said loudly instead.
        if let Err(error) =
            self.ledger
                .record_plugin_run(&scope, run.fuel_used, wall_ms, run.outcome)
        {
            tracing::error!(plugin = %run.plugin, %error, "cannot record a plugin run in the ledger");
        }
    }
}

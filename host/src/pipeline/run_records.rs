//! Every plugin run as a ledger row: zero tokens, its fuel and wall time, its outcome, under
//! the plugin's role and stage.

use std::sync::Arc;

use super::stage_and_role;
use crate::plugin::{PluginRun, RunRecorder};
use crate::store::{LedgerStore, RowScope};

/// A [`RunRecorder`] that writes each plugin run into the ledger.
pub struct LedgerRecorder {
    store: Arc<dyn LedgerStore>,
    run_id: String,
}

impl LedgerRecorder {
    pub fn new(store: Arc<dyn LedgerStore>, run_id: impl Into<String>) -> LedgerRecorder {
        LedgerRecorder {
            store,
            run_id: run_id.into(),
        }
    }
}

impl RunRecorder for LedgerRecorder {
    fn record(&self, run: &PluginRun) {
        let (stage, role) = stage_and_role(run.world);
        let scope = RowScope {
            run_id: self.run_id.clone(),
            task_id: Some(run.task_id.clone()),
            attempt: Some(run.attempt),
            stage: stage.to_string(),
            phase: None,
            role: role.to_string(),
            model: run.plugin.clone(),
        };
        let wall_ms = u64::try_from(run.wall.as_millis()).unwrap_or(u64::MAX);
        // A failed write must not fail the plugin call; it is said loudly instead.
        if let Err(error) =
            self.store
                .record_plugin_run(&scope, run.fuel_used, wall_ms, run.outcome)
        {
            tracing::error!(plugin = %run.plugin, %error, "cannot record a plugin run in the ledger");
        }
    }
}

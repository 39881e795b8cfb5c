//! The hook plugins as the agent's rules, through the chains of [`crate::plugin::chain`] (which
//! also serve `gaffer hook claude-code`): booked at the stage they are asked in; a hook whose
//! policy is `stop` (or that passed its fault limit) stops the run; a task out of plugin fuel
//! ends its attempt.

use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use super::stop::{StopReason, StopSignal};
use crate::agent::{Hooks, ToolVerdict};
use crate::plugin::chain::{diff_denials, edit_denials, pre_tool_chain};
use crate::plugin::types::{Diff, FileEdit, HookDecision, Task, ToolCall};
use crate::plugin::{BoxFuture, CallContext, CallError, Plugin};
use crate::store::Stage;

/// The hooks of one attempt.
pub struct PluginHooks {
    hooks: Vec<Arc<Plugin>>,
    task: Task,
    /// The attempt's context; the hooks' runs are booked at the stage they are asked in.
    ctx: CallContext,
    /// Set when a hook's failure must stop the run; the agent sees a denial meanwhile.
    stop: Arc<StopSignal>,
    /// Cancelled to end the attempt (its task ran out of plugin fuel).
    attempt: CancellationToken,
    /// The task's plugin fuel ran out: the attempt ends as budget-exhausted.
    fuel_exhausted: Mutex<Option<CallError>>,
}

impl PluginHooks {
    pub fn new(
        hooks: Vec<Arc<Plugin>>,
        task: Task,
        ctx: CallContext,
        stop: Arc<StopSignal>,
        attempt: CancellationToken,
    ) -> PluginHooks {
        PluginHooks {
            hooks,
            task,
            ctx,
            stop,
            attempt,
            fuel_exhausted: Mutex::new(None),
        }
    }

    /// A hook produced no decision: the task out of fuel ends the attempt; any other fault
    /// stops the run. The agent is told either way.
    fn halt(&self, error: CallError) -> String {
        let reason = error.to_string();
        if matches!(error, CallError::TaskFuelExhausted { .. }) {
            if let Ok(mut slot) = self.fuel_exhausted.lock() {
                slot.get_or_insert(error);
            }
            self.attempt.cancel();
            return format!("the attempt is ending: {reason}");
        }
        self.stop.request(StopReason::Plugin {
            message: reason.clone(),
        });
        format!("the run is stopping: {reason}")
    }

    /// Why the attempt had to end for its task's plugin fuel, if it did.
    pub fn fuel_exhausted(&self) -> Option<CallError> {
        self.fuel_exhausted
            .lock()
            .ok()
            .and_then(|slot| slot.clone())
    }

    /// Ask every hook about the whole change (the check stage); the findings of all that deny,
    /// each named by its hook. `Err`: a hook produced no decision.
    pub async fn on_diff(&self, diff: &Diff) -> Result<Vec<String>, CallError> {
        let ctx = self.ctx.clone().at_stage(Stage::Check);
        diff_denials(&self.hooks, &ctx, &self.task, diff).await
    }
}

/// While the agent works: `pre-tool` and `on-edit`, booked at the implement stage.
impl Hooks for PluginHooks {
    fn pre_tool<'a>(&'a self, call: &'a ToolCall) -> BoxFuture<'a, ToolVerdict> {
        Box::pin(async move {
            let ctx = self.ctx.clone().at_stage(Stage::Implement);
            match pre_tool_chain(&self.hooks, &ctx, &self.task, call).await {
                Ok(HookDecision::Allow) => ToolVerdict::Allow,
                Ok(HookDecision::Deny(reason)) => ToolVerdict::Deny(reason),
                Ok(HookDecision::Rewrite(arguments)) => ToolVerdict::Rewrite(arguments),
                Err(error) => ToolVerdict::Deny(self.halt(error)),
            }
        })
    }

    fn on_edit<'a>(&'a self, edit: &'a FileEdit) -> BoxFuture<'a, Result<(), Vec<String>>> {
        Box::pin(async move {
            let ctx = self.ctx.clone().at_stage(Stage::Implement);
            match edit_denials(&self.hooks, &ctx, &self.task, edit).await {
                Ok(denials) if denials.is_empty() => Ok(()),
                Ok(denials) => Err(denials),
                Err(error) => Err(vec![self.halt(error)]),
            }
        })
    }
}

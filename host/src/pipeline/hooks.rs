//! The hook plugins as the agent's rules: every configured hook is asked in order; the first
//! denial wins, a rewrite feeds the next hook. A hook whose policy is `stop` (or that passed its
//! fault limit) stops the run.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::agent::{Hooks, ToolVerdict};
use crate::plugin::types::{Diff, FileEdit, Finding, HookDecision, RuleDecision, Task, ToolCall};
use crate::plugin::{BoxFuture, CallContext, CallError, Plugin};

/// The hooks of one attempt.
pub struct PluginHooks {
    pub hooks: Vec<Arc<Plugin>>,
    pub task: Task,
    pub ctx: CallContext,
    /// Set when a hook's failure must stop the run; the agent sees a denial meanwhile.
    pub stop: Arc<AtomicBool>,
    /// Why the run must stop, when a hook said so.
    pub stop_reason: Arc<Mutex<Option<String>>>,
}

impl PluginHooks {
    fn halt(&self, error: &CallError) -> String {
        let reason = error.to_string();
        if let Ok(mut slot) = self.stop_reason.lock() {
            slot.get_or_insert_with(|| reason.clone());
        }
        self.stop.store(true, Ordering::SeqCst);
        format!("the run is stopping: {reason}")
    }

    /// Ask every hook about the whole change; the findings of all that deny, each named by its
    /// hook. `Err` when a hook stops the run.
    pub async fn on_diff(&self, diff: &Diff) -> Result<Vec<String>, String> {
        let mut denials = Vec::new();
        for hook in &self.hooks {
            match hook.on_diff(&self.ctx, &self.task, diff).await {
                Ok(called) => {
                    if let RuleDecision::Deny(findings) = called.decision {
                        denials.extend(describe(hook.name(), &findings));
                    }
                }
                Err(error) => return Err(self.halt(&error)),
            }
        }
        Ok(denials)
    }
}

/// Findings as sentences naming the hook, the file and the line.
pub fn describe(hook: &str, findings: &[Finding]) -> Vec<String> {
    findings
        .iter()
        .map(|f| match (&f.path, f.line) {
            (Some(path), Some(line)) => format!("{hook}: {path}:{line}: {}", f.message),
            (Some(path), None) => format!("{hook}: {path}: {}", f.message),
            _ => format!("{hook}: {}", f.message),
        })
        .collect()
}

impl Hooks for PluginHooks {
    fn pre_tool<'a>(&'a self, call: &'a ToolCall) -> BoxFuture<'a, ToolVerdict> {
        Box::pin(async move {
            let mut current = call.clone();
            let mut rewritten = false;
            for hook in &self.hooks {
                match hook.pre_tool(&self.ctx, &self.task, &current).await {
                    Ok(called) => match called.decision {
                        HookDecision::Allow => {}
                        HookDecision::Deny(reason) => {
                            return ToolVerdict::Deny(format!("{}: {reason}", hook.name()));
                        }
                        HookDecision::Rewrite(arguments) => {
                            current.arguments = arguments;
                            rewritten = true;
                        }
                    },
                    Err(error) => return ToolVerdict::Deny(self.halt(&error)),
                }
            }
            if rewritten {
                ToolVerdict::Rewrite(current.arguments)
            } else {
                ToolVerdict::Allow
            }
        })
    }

    fn on_edit<'a>(&'a self, edit: &'a FileEdit) -> BoxFuture<'a, Result<(), Vec<String>>> {
        Box::pin(async move {
            let mut denials = Vec::new();
            for hook in &self.hooks {
                match hook.on_edit(&self.ctx, &self.task, edit).await {
                    Ok(called) => {
                        if let RuleDecision::Deny(findings) = called.decision {
                            denials.extend(describe(hook.name(), &findings));
                        }
                    }
                    Err(error) => return Err(vec![self.halt(&error)]),
                }
            }
            if denials.is_empty() {
                Ok(())
            } else {
                Err(denials)
            }
        })
    }
}

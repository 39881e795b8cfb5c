//! The hook plugins as the agent's rules: every configured hook is asked in order; the first
//! denial wins, a rewrite feeds the next hook. A hook whose policy is `stop` (or that passed its
//! fault limit) stops the run. The chains themselves ([`pre_tool_chain`], [`edit_denials`],
//! [`diff_denials`]) also serve `gaffer hook claude-code`.

use std::borrow::Borrow;
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
        diff_denials(&self.hooks, &self.ctx, &self.task, diff)
            .await
            .map_err(|error| self.halt(&error))
    }
}

/// Ask each hook in order about a tool call: the first denial wins (named by its hook), a
/// rewrite is what the next hook sees. `Rewrite` carries the final arguments when any hook
/// rewrote them. `Err` is a fault the fail policy did not answer.
pub async fn pre_tool_chain<H: Borrow<Plugin>>(
    hooks: &[H],
    ctx: &CallContext,
    task: &Task,
    call: &ToolCall,
) -> Result<HookDecision, CallError> {
    let mut current = call.clone();
    let mut rewritten = false;
    for hook in hooks {
        let hook = hook.borrow();
        match hook.pre_tool(ctx, task, &current).await?.decision {
            HookDecision::Allow => {}
            HookDecision::Deny(reason) => {
                return Ok(HookDecision::Deny(format!("{}: {reason}", hook.name())));
            }
            HookDecision::Rewrite(arguments) => {
                current.arguments = arguments;
                rewritten = true;
            }
        }
    }
    Ok(if rewritten {
        HookDecision::Rewrite(current.arguments)
    } else {
        HookDecision::Allow
    })
}

/// Ask every hook about a file edit: the findings of all that deny, each named by its hook.
pub async fn edit_denials<H: Borrow<Plugin>>(
    hooks: &[H],
    ctx: &CallContext,
    task: &Task,
    edit: &FileEdit,
) -> Result<Vec<String>, CallError> {
    let mut denials = Vec::new();
    for hook in hooks {
        let hook = hook.borrow();
        if let RuleDecision::Deny(findings) = hook.on_edit(ctx, task, edit).await?.decision {
            denials.extend(describe(hook.name(), &findings));
        }
    }
    Ok(denials)
}

/// Ask every hook about a whole change: the findings of all that deny, each named by its hook.
pub async fn diff_denials<H: Borrow<Plugin>>(
    hooks: &[H],
    ctx: &CallContext,
    task: &Task,
    diff: &Diff,
) -> Result<Vec<String>, CallError> {
    let mut denials = Vec::new();
    for hook in hooks {
        let hook = hook.borrow();
        if let RuleDecision::Deny(findings) = hook.on_diff(ctx, task, diff).await?.decision {
            denials.extend(describe(hook.name(), &findings));
        }
    }
    Ok(denials)
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
            match pre_tool_chain(&self.hooks, &self.ctx, &self.task, call).await {
                Ok(HookDecision::Allow) => ToolVerdict::Allow,
                Ok(HookDecision::Deny(reason)) => ToolVerdict::Deny(reason),
                Ok(HookDecision::Rewrite(arguments)) => ToolVerdict::Rewrite(arguments),
                Err(error) => ToolVerdict::Deny(self.halt(&error)),
            }
        })
    }

    fn on_edit<'a>(&'a self, edit: &'a FileEdit) -> BoxFuture<'a, Result<(), Vec<String>>> {
        Box::pin(async move {
            match edit_denials(&self.hooks, &self.ctx, &self.task, edit).await {
                Ok(denials) if denials.is_empty() => Ok(()),
                Ok(denials) => Err(denials),
                Err(error) => Err(vec![self.halt(&error)]),
            }
        })
    }
}

//! Hooks asked as one rule set: in order, the first denial wins (named by its hook), a rewrite
//! is what the next hook sees; edits and whole changes collect the findings of every hook that
//! denies. The pipeline and the Claude Code bridge both ask through these.

use std::borrow::Borrow;

use super::types::{Diff, FileEdit, Finding, HookDecision, RuleDecision, Task, ToolCall};
use super::{CallContext, CallError, Plugin};

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

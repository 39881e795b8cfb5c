//! The fail policy: a fault never takes the host down. Each export's fault is answered as the
//! plugin's `on_failure` says (a hook denies, a verifier asks for a person, a router falls back)
//! or handed to the caller (`stop`); every run is recorded and faults are counted.

use std::sync::atomic::Ordering;

use super::Plugin;
use super::call::{CallArgs, CallOk, RawRun, narrow};
use crate::plugin::error::{CallError, PluginError};
use crate::plugin::output::{check_hook_decision, check_route, check_rule_decision, check_verdict};
use crate::plugin::run::{CallContext, Called, PluginRun};
use crate::plugin::spec::{OnFailure, World};
use crate::plugin::types::{
    Diff, FileEdit, Finding, HookDecision, RouteDecision, RouteRequest, RuleDecision, Task,
    ToolCall, Verdict, VerifyRequest,
};

impl Plugin {
    /// Apply the fail policy to a raw run, record it, and count faults.
    fn settle<T>(
        &self,
        ctx: &CallContext,
        function: &'static str,
        raw: RawRun<T>,
        validate: impl FnOnce(&T) -> Result<(), String>,
        on_fault: impl FnOnce(OnFailure, &PluginError) -> Option<T>,
    ) -> Result<Called<T>, CallError> {
        let result = raw.result.and_then(|value| match validate(&value) {
            Ok(()) => Ok(value),
            Err(reason) => Err(PluginError::MalformedOutput {
                plugin: self.spec.name.clone(),
                function,
                reason,
            }),
        });
        let mut run = PluginRun {
            plugin: self.spec.name.clone(),
            world: self.spec.world,
            function,
            task_id: ctx.task_id.clone(),
            attempt: ctx.attempt,
            stage: ctx.stage_of(self.spec.world),
            fuel_used: raw.fuel_used,
            fuel_allowance: raw.fuel_allowance,
            wall: raw.wall,
            memory_bytes: raw.memory_bytes,
            outcome: "ok",
            fault: None,
            policy: None,
            component: raw.component,
        };
        match result {
            Ok(decision) => {
                self.runtime.recorder.record(&run);
                Ok(Called {
                    decision,
                    fault: None,
                    run,
                })
            }
            Err(fault) => {
                run.outcome = fault.kind();
                run.fault = Some(fault.to_string());
                if raw.task_fuel_ran_out {
                    self.runtime.recorder.record(&run);
                    let used = ctx.fuel.used(&self.spec.name);
                    return Err(CallError::TaskFuelExhausted {
                        task: ctx.task_id.clone(),
                        plugin: self.spec.name.clone(),
                        budget: self.spec.limits.fuel_per_task,
                        used,
                    });
                }
                let faults = self.faults.fetch_add(1, Ordering::Relaxed) + 1;
                if let Ok(mut last) = self.last_fault.lock() {
                    *last = Some(fault.to_string());
                }
                let policy = self.spec.on_failure;
                run.policy = Some(policy);
                self.runtime.recorder.record(&run);
                tracing::warn!(
                    plugin = %self.spec.name,
                    task = %ctx.task_id,
                    faults,
                    policy = policy.name(),
                    "{fault}"
                );
                match on_fault(policy, &fault) {
                    Some(decision) => Ok(Called {
                        decision,
                        fault: Some(fault),
                        run,
                    }),
                    None => Err(CallError::Stopped(fault)),
                }
            }
        }
    }

    fn wrong_world(&self, function: &'static str, wanted: World) -> CallError {
        CallError::Stopped(PluginError::Incompatible {
            plugin: self.spec.name.clone(),
            expected: wanted.name(),
            exports: format!("the exports of the `{}` world", self.spec.world),
            detail: format!("; `{function}` was called on a {}", self.spec.world),
        })
    }

    /// Check the world, run the export `args` names, and narrow the answer with `pick`.
    async fn run_export<T>(
        &self,
        ctx: &CallContext,
        args: CallArgs<'_>,
        pick: fn(CallOk) -> Option<T>,
    ) -> Result<RawRun<T>, CallError> {
        let (world, function) = args.export();
        if self.spec.world != world {
            return Err(self.wrong_world(function, world));
        }
        let raw = self.invoke(ctx, function, args).await?;
        Ok(narrow(raw, pick, &self.spec.name, function))
    }

    /// Ask a router for the next attempt's model. A fault falls back to `fallback_model`
    /// (unless the policy is `stop`).
    pub async fn route(
        &self,
        ctx: &CallContext,
        request: &RouteRequest,
    ) -> Result<Called<RouteDecision>, CallError> {
        let raw = self
            .run_export(ctx, CallArgs::Route(request), CallOk::route)
            .await?;
        let budget_left = request.budget.least_left();
        self.settle(
            ctx,
            "route",
            raw,
            |d| check_route(d, &request.models),
            |policy, fault| match (policy, &self.spec.fallback_model) {
                (OnFailure::Fallback, Some(model)) => Some(RouteDecision {
                    reason: format!(
                        "router `{}` faulted ({}); fell back to `{model}`",
                        self.spec.name,
                        fault.kind()
                    ),
                    model: model.clone(),
                    attempt_budget: budget_left,
                }),
                _ => None,
            },
        )
    }

    /// Ask a verifier to judge an attempt. A fault makes the attempt `needs-human` by default.
    pub async fn verify(
        &self,
        ctx: &CallContext,
        request: &VerifyRequest,
    ) -> Result<Called<Verdict>, CallError> {
        let raw = self
            .run_export(ctx, CallArgs::Verify(request), CallOk::verdict)
            .await?;
        self.settle(ctx, "verify", raw, check_verdict, |policy, fault| {
            let reason = format!("verifier `{}` failed: {fault}", self.spec.name);
            match policy {
                OnFailure::NeedsHuman => Some(Verdict::NeedsHuman(reason)),
                OnFailure::Reject => Some(Verdict::Reject(vec![Finding {
                    message: reason,
                    path: None,
                    line: None,
                }])),
                _ => None,
            }
        })
    }

    /// Ask a hook about a tool call. A fault denies by default (fail closed).
    pub async fn pre_tool(
        &self,
        ctx: &CallContext,
        task: &Task,
        call: &ToolCall,
    ) -> Result<Called<HookDecision>, CallError> {
        let raw = self
            .run_export(ctx, CallArgs::PreTool(task, call), CallOk::hook)
            .await?;
        self.settle(
            ctx,
            "pre-tool",
            raw,
            check_hook_decision,
            |policy, fault| match policy {
                OnFailure::Deny => Some(HookDecision::Deny(format!(
                    "hook `{}` failed, so the call is denied (hooks fail closed): {fault}",
                    self.spec.name
                ))),
                OnFailure::Allow => Some(HookDecision::Allow),
                _ => None,
            },
        )
    }

    /// Ask a hook about a file change. A fault denies by default (fail closed).
    pub async fn on_edit(
        &self,
        ctx: &CallContext,
        task: &Task,
        edit: &FileEdit,
    ) -> Result<Called<RuleDecision>, CallError> {
        let raw = self
            .run_export(ctx, CallArgs::OnEdit(task, edit), CallOk::rule)
            .await?;
        self.settle(ctx, "on-edit", raw, check_rule_decision, |policy, fault| {
            self.rule_fault_decision(policy, fault, Some(edit.path.clone()))
        })
    }

    /// Ask a hook about a whole change. A fault denies by default (fail closed).
    pub async fn on_diff(
        &self,
        ctx: &CallContext,
        task: &Task,
        diff: &Diff,
    ) -> Result<Called<RuleDecision>, CallError> {
        let raw = self
            .run_export(ctx, CallArgs::OnDiff(task, diff), CallOk::rule)
            .await?;
        self.settle(ctx, "on-diff", raw, check_rule_decision, |policy, fault| {
            self.rule_fault_decision(policy, fault, None)
        })
    }

    fn rule_fault_decision(
        &self,
        policy: OnFailure,
        fault: &PluginError,
        path: Option<String>,
    ) -> Option<RuleDecision> {
        match policy {
            OnFailure::Deny => Some(RuleDecision::Deny(vec![Finding {
                message: format!(
                    "hook `{}` failed, so the change is denied (hooks fail closed): {fault}",
                    self.spec.name
                ),
                path,
                line: None,
            }])),
            OnFailure::Allow => Some(RuleDecision::Allow),
            _ => None,
        }
    }
}

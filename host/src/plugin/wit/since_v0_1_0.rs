//! `gaffer:plugin@0.1.0` (`wit/0.1.0`): the generated bindings of its interfaces, the calls of
//! its three worlds' exports, the host functions it imports, and the conversions between its
//! types and gaffer's own ([`crate::plugin::types`]). Nothing outside this module sees a type generated from this
//! version; a later version goes beside it with conversions of its own.

use std::sync::atomic::{AtomicBool, Ordering};

use wasmtime::Store;
use wasmtime::component::{
    ComponentExportIndex, Func, HasSelf, Instance, InstancePre, Linker, TypedFunc,
};

use crate::plugin::World;
use crate::plugin::runtime::{CallArgs, CallOk};
use crate::plugin::state::PluginState;
use crate::plugin::types as host;

/// The bindings of the `router` world, whose `types` and `host` interfaces are the version's
/// (the `verifier` and `hook` worlds import the same two; their exports are called through
/// [`Pre`], by index, so they need no bindings of their own).
mod router {
    wasmtime::component::bindgen!({
        path: "../wit/0.1.0",
        world: "router",
        imports: { default: async },
        exports: { default: async },
    });
}

use router::gaffer::plugin::host as wit_host;
use router::gaffer::plugin::types as wit;

/// Add this version's imports (`types`, `host`) to the linker. The three worlds import the same
/// interfaces; adding them once serves all of them.
pub(crate) fn add_to_linker(linker: &mut Linker<PluginState>) -> wasmtime::Result<()> {
    router::Router::add_to_linker::<_, HasSelf<PluginState>>(linker, |s| s)
}

/// A component of this version, pre-instantiated for its world, with the indices of its
/// world's exports looked up once.
///
/// A call instantiates it and calls the export through its index. The generated bindings'
/// `instantiate` would look each export up and type-check it against this version's Rust
/// types on every call (2.8 % of a route call's samples in the runtime bench, 2026-12-02);
/// the types of a component's exports are the same in every instance of it (these worlds
/// have no resources, whose types are per instance), so the first call checks them and
/// later calls take the function unchecked.
pub(crate) struct Pre {
    instance_pre: InstancePre<PluginState>,
    exports: Exports,
    /// Whether an instance of this component has had its exports type-checked.
    checked: AtomicBool,
}

/// The indices of a world's exports in one component.
enum Exports {
    Router {
        route: ComponentExportIndex,
    },
    Verifier {
        verify: ComponentExportIndex,
    },
    Hook {
        pre_tool: ComponentExportIndex,
        on_edit: ComponentExportIndex,
        on_diff: ComponentExportIndex,
    },
}

/// The typed signature of each export, for a borrowed argument of lifetime `'a`.
type Route<'a> = TypedFunc<(&'a wit::RouteRequest,), (Result<wit::RouteDecision, String>,)>;
type Verify<'a> = TypedFunc<(&'a wit::VerifyRequest,), (Result<wit::Verdict, String>,)>;
type PreTool<'a> =
    TypedFunc<(&'a wit::Task, &'a wit::ToolCall), (Result<wit::HookDecision, String>,)>;
type OnEdit<'a> =
    TypedFunc<(&'a wit::Task, &'a wit::FileEdit), (Result<wit::RuleDecision, String>,)>;
type OnDiff<'a> = TypedFunc<(&'a wit::Task, &'a wit::Diff), (Result<wit::RuleDecision, String>,)>;

impl Pre {
    /// Check that the pre-instantiated component has `world`'s exports, and look up their
    /// indices.
    pub(crate) fn new(world: World, pre: InstancePre<PluginState>) -> wasmtime::Result<Pre> {
        let index = |name: &str| {
            pre.component()
                .get_export_index(None, name)
                .ok_or_else(|| wasmtime::format_err!("no export named `{name}`"))
        };
        let exports = match world {
            World::Router => Exports::Router {
                route: index("route")?,
            },
            World::Verifier => Exports::Verifier {
                verify: index("verify")?,
            },
            World::Hook => Exports::Hook {
                pre_tool: index("pre-tool")?,
                on_edit: index("on-edit")?,
                on_diff: index("on-diff")?,
            },
        };
        Ok(Pre {
            instance_pre: pre,
            exports,
            checked: AtomicBool::new(false),
        })
    }

    /// Type-check the exports of `instance` against this version's types, once per component.
    fn check_once(
        &self,
        store: &mut Store<PluginState>,
        instance: &Instance,
    ) -> wasmtime::Result<()> {
        if self.checked.load(Ordering::Acquire) {
            return Ok(());
        }
        match &self.exports {
            Exports::Router { route } => {
                let _: Route<'_> = instance.get_typed_func(&mut *store, route)?;
            }
            Exports::Verifier { verify } => {
                let _: Verify<'_> = instance.get_typed_func(&mut *store, verify)?;
            }
            Exports::Hook {
                pre_tool,
                on_edit,
                on_diff,
            } => {
                let _: PreTool<'_> = instance.get_typed_func(&mut *store, pre_tool)?;
                let _: OnEdit<'_> = instance.get_typed_func(&mut *store, on_edit)?;
                let _: OnDiff<'_> = instance.get_typed_func(&mut *store, on_diff)?;
            }
        }
        self.checked.store(true, Ordering::Release);
        Ok(())
    }

    /// A fresh instance in `store`, its exports checked, and the function at `index` in it.
    async fn export(
        &self,
        store: &mut Store<PluginState>,
        index: &ComponentExportIndex,
    ) -> wasmtime::Result<Func> {
        let instance = self.instance_pre.instantiate_async(&mut *store).await?;
        self.check_once(store, &instance)?;
        instance
            .get_func(&mut *store, index)
            .ok_or_else(|| wasmtime::format_err!("the instance lacks an export its component has"))
    }

    /// Instantiate in `store` and call the export `args` names, converting on the way in and
    /// out.
    pub(crate) async fn call(
        &self,
        store: &mut Store<PluginState>,
        args: CallArgs<'_>,
    ) -> wasmtime::Result<Result<CallOk, String>> {
        // SAFETY (every `new_unchecked` below): `export` returned only after `check_once` has
        // type-checked this component's exports with exactly these signatures, on an instance
        // of the same component; the types of an export do not change between its instances.
        match (&self.exports, args) {
            (Exports::Router { route }, CallArgs::Route(request)) => {
                let func = self.export(store, route).await?;
                let request = wit::RouteRequest::from(request);
                let typed: Route<'_> = unsafe { TypedFunc::new_unchecked(func) };
                let (result,) = typed.call_async(&mut *store, (&request,)).await?;
                Ok(result.map(|d| CallOk::Route(d.into())))
            }
            (Exports::Verifier { verify }, CallArgs::Verify(request)) => {
                let func = self.export(store, verify).await?;
                let request = wit::VerifyRequest::from(request);
                let typed: Verify<'_> = unsafe { TypedFunc::new_unchecked(func) };
                let (result,) = typed.call_async(&mut *store, (&request,)).await?;
                Ok(result.map(|v| CallOk::Verdict(v.into())))
            }
            (Exports::Hook { pre_tool, .. }, CallArgs::PreTool(task, call)) => {
                let func = self.export(store, pre_tool).await?;
                let (task, call) = (wit::Task::from(task), wit::ToolCall::from(call));
                let typed: PreTool<'_> = unsafe { TypedFunc::new_unchecked(func) };
                let (result,) = typed.call_async(&mut *store, (&task, &call)).await?;
                Ok(result.map(|d| CallOk::Hook(d.into())))
            }
            (Exports::Hook { on_edit, .. }, CallArgs::OnEdit(task, edit)) => {
                let func = self.export(store, on_edit).await?;
                let (task, edit) = (wit::Task::from(task), wit::FileEdit::from(edit));
                let typed: OnEdit<'_> = unsafe { TypedFunc::new_unchecked(func) };
                let (result,) = typed.call_async(&mut *store, (&task, &edit)).await?;
                Ok(result.map(|d| CallOk::Rule(d.into())))
            }
            (Exports::Hook { on_diff, .. }, CallArgs::OnDiff(task, diff)) => {
                let func = self.export(store, on_diff).await?;
                let (task, diff) = (wit::Task::from(task), wit::Diff::from(diff));
                let typed: OnDiff<'_> = unsafe { TypedFunc::new_unchecked(func) };
                let (result,) = typed.call_async(&mut *store, (&task, &diff)).await?;
                Ok(result.map(|d| CallOk::Rule(d.into())))
            }
            _ => Err(wasmtime::format_err!(
                "the call does not match the plugin's world"
            )),
        }
    }
}

impl wit::Host for PluginState {}

impl wit_host::Host for PluginState {
    async fn log(
        &mut self,
        level: wit_host::LogLevel,
        message: String,
        fields: Vec<(String, String)>,
    ) {
        PluginState::log(self, level.into(), message, fields);
    }

    async fn config(&mut self) -> String {
        PluginState::config(self)
    }

    async fn complete(
        &mut self,
        request: wit_host::CompletionRequest,
    ) -> Result<wit_host::Completion, wit_host::HostError> {
        PluginState::complete(self, request.into())
            .await
            .map(Into::into)
            .map_err(Into::into)
    }

    async fn read_file(&mut self, path: String) -> Result<String, wit_host::HostError> {
        PluginState::read_file(self, &path).map_err(Into::into)
    }

    async fn list_files(&mut self, dir: String) -> Result<Vec<String>, wit_host::HostError> {
        PluginState::list_files(self, &dir).map_err(Into::into)
    }
}

// Host types into this version's types (what a plugin is given).

impl From<&host::Task> for wit::Task {
    fn from(t: &host::Task) -> wit::Task {
        wit::Task {
            id: t.id.clone(),
            title: t.title.clone(),
            body: t.body.clone(),
            labels: t.labels.clone(),
            paths: t.paths.clone(),
        }
    }
}

impl From<&host::TokenCounts> for wit::TokenUsage {
    fn from(t: &host::TokenCounts) -> wit::TokenUsage {
        wit::TokenUsage {
            input: t.input,
            output: t.output,
            cache_read: t.cache_read,
            cache_write: t.cache_write,
        }
    }
}

impl From<host::AttemptOutcome> for wit::AttemptOutcome {
    fn from(o: host::AttemptOutcome) -> wit::AttemptOutcome {
        match o {
            host::AttemptOutcome::Approved => wit::AttemptOutcome::Approved,
            // A merge conflict is, to this version, a rejection of the attempt's change.
            host::AttemptOutcome::Rejected | host::AttemptOutcome::Conflict => {
                wit::AttemptOutcome::Rejected
            }
            host::AttemptOutcome::NeedsHuman => wit::AttemptOutcome::NeedsHuman,
            host::AttemptOutcome::BudgetExhausted => wit::AttemptOutcome::BudgetExhausted,
            host::AttemptOutcome::Failed => wit::AttemptOutcome::Failed,
        }
    }
}

impl From<&host::Attempt> for wit::Attempt {
    fn from(a: &host::Attempt) -> wit::Attempt {
        wit::Attempt {
            number: a.number,
            model: a.model.clone(),
            outcome: a.outcome.into(),
            reasons: a.reasons.clone(),
            cost: a.cost.into(),
            tokens: (&a.tokens).into(),
        }
    }
}

impl From<&host::Prices> for wit::Prices {
    fn from(p: &host::Prices) -> wit::Prices {
        wit::Prices {
            input: p.input.into(),
            output: p.output.into(),
            cache_read: p.cache_read.into(),
            cache_write: p.cache_write.into(),
        }
    }
}

impl From<&host::ModelInfo> for wit::ModelInfo {
    fn from(m: &host::ModelInfo) -> wit::ModelInfo {
        wit::ModelInfo {
            id: m.id.clone(),
            provider: m.provider.clone(),
            tier: m.tier,
            prices: (&m.prices).into(),
            context_window: m.context_window,
            tags: m.tags.clone(),
        }
    }
}

/// This version's budget levels; a level it does not know (a model's month) is not shown.
fn budget_level(level: host::CapLevel) -> Option<wit::BudgetLevel> {
    Some(match level {
        host::CapLevel::Call => wit::BudgetLevel::Call,
        host::CapLevel::Attempt => wit::BudgetLevel::Attempt,
        host::CapLevel::Task => wit::BudgetLevel::Task,
        host::CapLevel::Run => wit::BudgetLevel::Run,
        host::CapLevel::Day => wit::BudgetLevel::Day,
        host::CapLevel::Month => wit::BudgetLevel::Month,
        host::CapLevel::Model => return None,
    })
}

impl From<&host::BudgetView> for wit::BudgetView {
    fn from(b: &host::BudgetView) -> wit::BudgetView {
        wit::BudgetView {
            money: b
                .money
                .iter()
                .filter_map(|m| {
                    Some(wit::MoneyLeft {
                        level: budget_level(m.level)?,
                        cap: m.cap.into(),
                        spent: m.spent.into(),
                        left: m.left.into(),
                    })
                })
                .collect(),
            fuel_left_task: b.fuel_left_task,
            fuel_per_call: b.fuel_per_call,
        }
    }
}

impl From<&host::RouteRequest> for wit::RouteRequest {
    fn from(r: &host::RouteRequest) -> wit::RouteRequest {
        wit::RouteRequest {
            task: (&r.task).into(),
            history: r.history.iter().map(Into::into).collect(),
            models: r.models.iter().map(Into::into).collect(),
            budget: (&r.budget).into(),
        }
    }
}

impl From<&host::ToolCall> for wit::ToolCall {
    fn from(c: &host::ToolCall) -> wit::ToolCall {
        wit::ToolCall {
            name: c.name.clone(),
            arguments: c.arguments.clone(),
        }
    }
}

impl From<&host::FileEdit> for wit::FileEdit {
    fn from(e: &host::FileEdit) -> wit::FileEdit {
        wit::FileEdit {
            path: e.path.clone(),
            before: e.before.clone(),
            after: e.after.clone(),
        }
    }
}

impl From<&host::Hunk> for wit::Hunk {
    fn from(h: &host::Hunk) -> wit::Hunk {
        wit::Hunk {
            old_start: h.old_start,
            old_lines: h.old_lines,
            new_start: h.new_start,
            new_lines: h.new_lines,
            lines: h
                .lines
                .iter()
                .map(|l| wit::DiffLine {
                    kind: match l.kind {
                        host::LineKind::Context => wit::LineKind::Context,
                        host::LineKind::Added => wit::LineKind::Added,
                        host::LineKind::Removed => wit::LineKind::Removed,
                    },
                    line: l.line,
                    text: l.text.clone(),
                })
                .collect(),
        }
    }
}

impl From<&host::FileDiff> for wit::FileDiff {
    fn from(f: &host::FileDiff) -> wit::FileDiff {
        wit::FileDiff {
            path: f.path.clone(),
            old_path: f.old_path.clone(),
            status: match f.status {
                host::FileStatus::Added => wit::FileStatus::Added,
                host::FileStatus::Modified => wit::FileStatus::Modified,
                host::FileStatus::Deleted => wit::FileStatus::Deleted,
                host::FileStatus::Renamed => wit::FileStatus::Renamed,
            },
            binary: f.binary,
            hunks: f.hunks.iter().map(Into::into).collect(),
            added: f.added,
            removed: f.removed,
        }
    }
}

impl From<&host::Diff> for wit::Diff {
    fn from(d: &host::Diff) -> wit::Diff {
        wit::Diff {
            files: d.files.iter().map(Into::into).collect(),
            stats: wit::DiffStats {
                files_changed: d.stats.files_changed,
                lines_added: d.stats.lines_added,
                lines_removed: d.stats.lines_removed,
            },
        }
    }
}

impl From<&host::TestResult> for wit::TestResult {
    fn from(t: &host::TestResult) -> wit::TestResult {
        wit::TestResult {
            command: t.command.clone(),
            ran: t.ran,
            passed: t.passed,
            exit_code: t.exit_code,
            output_tail: t.output_tail.clone(),
            duration_ms: t.duration_ms,
        }
    }
}

impl From<&host::VerifyRequest> for wit::VerifyRequest {
    fn from(r: &host::VerifyRequest) -> wit::VerifyRequest {
        wit::VerifyRequest {
            task: (&r.task).into(),
            attempt: r.attempt,
            model: r.model.clone(),
            diff: (&r.diff).into(),
            tests: (&r.tests).into(),
            cost_so_far: r.cost_so_far.into(),
            history: r.history.iter().map(Into::into).collect(),
        }
    }
}

impl From<host::Completion> for wit_host::Completion {
    fn from(c: host::Completion) -> wit_host::Completion {
        wit_host::Completion {
            text: c.text,
            model: c.model,
            usage: (&c.usage).into(),
            cost: c.cost.into(),
            stop_reason: c.stop_reason,
        }
    }
}

impl From<host::HostError> for wit_host::HostError {
    fn from(e: host::HostError) -> wit_host::HostError {
        match e {
            host::HostError::NotGranted(m) => wit_host::HostError::NotGranted(m),
            host::HostError::BudgetExhausted(m) => wit_host::HostError::BudgetExhausted(m),
            host::HostError::NotFound(m) => wit_host::HostError::NotFound(m),
            host::HostError::Failed(m) => wit_host::HostError::Failed(m),
        }
    }
}

// This version's types into host types (what a plugin gives back).

impl From<wit::Finding> for host::Finding {
    fn from(f: wit::Finding) -> host::Finding {
        host::Finding {
            message: f.message,
            path: f.path,
            line: f.line,
        }
    }
}

impl From<wit::RouteDecision> for host::RouteDecision {
    fn from(d: wit::RouteDecision) -> host::RouteDecision {
        host::RouteDecision {
            model: d.model,
            attempt_budget: d.attempt_budget.into(),
            reason: d.reason,
        }
    }
}

impl From<wit::Verdict> for host::Verdict {
    fn from(v: wit::Verdict) -> host::Verdict {
        match v {
            wit::Verdict::Approve => host::Verdict::Approve,
            wit::Verdict::Reject(findings) => {
                host::Verdict::Reject(findings.into_iter().map(Into::into).collect())
            }
            wit::Verdict::NeedsHuman(reason) => host::Verdict::NeedsHuman(reason),
        }
    }
}

impl From<wit::HookDecision> for host::HookDecision {
    fn from(d: wit::HookDecision) -> host::HookDecision {
        match d {
            wit::HookDecision::Allow => host::HookDecision::Allow,
            wit::HookDecision::Deny(reason) => host::HookDecision::Deny(reason),
            wit::HookDecision::Rewrite(arguments) => host::HookDecision::Rewrite(arguments),
        }
    }
}

impl From<wit::RuleDecision> for host::RuleDecision {
    fn from(d: wit::RuleDecision) -> host::RuleDecision {
        match d {
            wit::RuleDecision::Allow => host::RuleDecision::Allow,
            wit::RuleDecision::Deny(findings) => {
                host::RuleDecision::Deny(findings.into_iter().map(Into::into).collect())
            }
        }
    }
}

impl From<wit_host::LogLevel> for host::LogLevel {
    fn from(l: wit_host::LogLevel) -> host::LogLevel {
        match l {
            wit_host::LogLevel::Trace => host::LogLevel::Trace,
            wit_host::LogLevel::Debug => host::LogLevel::Debug,
            wit_host::LogLevel::Info => host::LogLevel::Info,
            wit_host::LogLevel::Warn => host::LogLevel::Warn,
            wit_host::LogLevel::Error => host::LogLevel::Error,
        }
    }
}

impl From<wit_host::CompletionRequest> for host::CompletionRequest {
    fn from(r: wit_host::CompletionRequest) -> host::CompletionRequest {
        host::CompletionRequest {
            model: r.model,
            messages: r
                .messages
                .into_iter()
                .map(|m| host::PromptMessage {
                    role: match m.role {
                        wit_host::Role::System => host::PromptRole::System,
                        wit_host::Role::User => host::PromptRole::User,
                        wit_host::Role::Assistant => host::PromptRole::Assistant,
                    },
                    content: m.content,
                })
                .collect(),
            max_tokens: r.max_tokens,
        }
    }
}

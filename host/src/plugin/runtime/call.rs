//! One call of a plugin's export: a fresh store with the plugin's memory cap, its fuel (the
//! smaller of the per-call allowance and what its task has left), the epoch deadline and the
//! wall-clock backstop, its grants; then the raw outcome, before the fail policy.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use wasmtime::Store;

use super::Inner;
use super::load::{FileStamp, Loaded};
use super::trap::classify_trap;
use crate::plugin::cache::CacheOutcome;
use crate::plugin::error::{CallError, PluginError};
use crate::plugin::output::OutputSize;
use crate::plugin::run::CallContext;
use crate::plugin::spec::{PluginSpec, World};
use crate::plugin::state::{HostContext, PluginCaller, PluginState};
use crate::plugin::types::{
    Diff, FileEdit, HookDecision, RouteDecision, RouteRequest, RuleDecision, Task, ToolCall,
    Verdict, VerifyRequest,
};

/// A loaded plugin. Calls run in a fresh sandbox each; a changed `.wasm` on disk serves only
/// after [`Plugin::reload`], and a replacement that fails to load leaves the previous one
/// serving.
pub struct Plugin {
    pub(super) runtime: Arc<Inner>,
    pub(super) spec: PluginSpec,
    /// The config handed to every call, shared rather than copied per call.
    config_json: Arc<str>,
    current: RwLock<Arc<Loaded>>,
    pub(super) faults: AtomicU32,
    pub(super) last_fault: Mutex<Option<String>>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.spec.name)
            .field("world", &self.spec.world)
            .field("path", &self.spec.path)
            .finish()
    }
}

/// The raw result of running one export, before the fail policy.
pub(super) struct RawRun<T> {
    pub(super) result: Result<T, PluginError>,
    pub(super) fuel_used: u64,
    pub(super) fuel_allowance: u64,
    pub(super) wall: Duration,
    pub(super) memory_bytes: u64,
    pub(super) component: String,
    /// The call ran out of the task's fuel rather than its own per-call allowance.
    pub(super) task_fuel_ran_out: bool,
}

/// The arguments of one export call, in gaffer's types (each WIT version converts them).
pub(crate) enum CallArgs<'r> {
    Route(&'r RouteRequest),
    Verify(&'r VerifyRequest),
    PreTool(&'r Task, &'r ToolCall),
    OnEdit(&'r Task, &'r FileEdit),
    OnDiff(&'r Task, &'r Diff),
}

impl CallArgs<'_> {
    /// The world and the export name of the call.
    pub(super) fn export(&self) -> (World, &'static str) {
        match self {
            CallArgs::Route(_) => (World::Router, "route"),
            CallArgs::Verify(_) => (World::Verifier, "verify"),
            CallArgs::PreTool(..) => (World::Hook, "pre-tool"),
            CallArgs::OnEdit(..) => (World::Hook, "on-edit"),
            CallArgs::OnDiff(..) => (World::Hook, "on-diff"),
        }
    }
}

/// What an export returned, in gaffer's types, before the fail policy.
pub(crate) enum CallOk {
    Route(RouteDecision),
    Verdict(Verdict),
    Hook(HookDecision),
    Rule(RuleDecision),
}

impl CallOk {
    pub(super) fn route(self) -> Option<RouteDecision> {
        match self {
            CallOk::Route(value) => Some(value),
            _ => None,
        }
    }
    pub(super) fn verdict(self) -> Option<Verdict> {
        match self {
            CallOk::Verdict(value) => Some(value),
            _ => None,
        }
    }
    pub(super) fn hook(self) -> Option<HookDecision> {
        match self {
            CallOk::Hook(value) => Some(value),
            _ => None,
        }
    }
    pub(super) fn rule(self) -> Option<RuleDecision> {
        match self {
            CallOk::Rule(value) => Some(value),
            _ => None,
        }
    }
}

impl OutputSize for CallOk {
    fn output_size(&self) -> usize {
        match self {
            CallOk::Route(d) => d.output_size(),
            CallOk::Verdict(v) => v.output_size(),
            CallOk::Hook(h) => h.output_size(),
            CallOk::Rule(r) => r.output_size(),
        }
    }
}

/// Narrow a raw run to the answer type of one export.
pub(super) fn narrow<T>(
    raw: RawRun<CallOk>,
    pick: impl FnOnce(CallOk) -> Option<T>,
    plugin: &str,
    function: &'static str,
) -> RawRun<T> {
    let result = raw.result.and_then(|ok| {
        pick(ok).ok_or_else(|| PluginError::Host {
            plugin: plugin.to_string(),
            function,
            reason: "the export returned another world's answer".to_string(),
        })
    });
    RawRun {
        result,
        fuel_used: raw.fuel_used,
        fuel_allowance: raw.fuel_allowance,
        wall: raw.wall,
        memory_bytes: raw.memory_bytes,
        component: raw.component,
        task_fuel_ran_out: raw.task_fuel_ran_out,
    }
}

impl Plugin {
    pub(super) fn new(runtime: Arc<Inner>, spec: PluginSpec, loaded: Loaded) -> Plugin {
        Plugin {
            runtime,
            config_json: Arc::from(spec.config_json.as_str()),
            spec,
            current: RwLock::new(Arc::new(loaded)),
            faults: AtomicU32::new(0),
            last_fault: Mutex::new(None),
        }
    }

    /// The plugin's resolved configuration.
    pub fn spec(&self) -> &PluginSpec {
        &self.spec
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Content hash of the component now serving.
    pub fn content_hash(&self) -> String {
        self.loaded().content_hash.clone()
    }

    /// Whether the serving component came from the disk cache.
    pub fn cache_outcome(&self) -> CacheOutcome {
        self.loaded().cache
    }

    /// Faults counted so far in this run.
    pub fn faults(&self) -> u32 {
        self.faults.load(Ordering::Relaxed)
    }

    fn loaded(&self) -> Arc<Loaded> {
        match self.current.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Load the `.wasm` again if its file changed since it was loaded: an explicit reload,
    /// never a side effect of a call (the policy of a run is what it was when asked). `Ok(true)`
    /// when a new component now serves; on failure the previous one keeps serving.
    pub fn reload(&self) -> Result<bool, PluginError> {
        let stamp = FileStamp::of(&self.spec.path).map_err(|e| PluginError::Read {
            plugin: self.spec.name.clone(),
            path: self.spec.path.clone(),
            reason: e.to_string(),
        })?;
        if self.loaded().stamp == Some(stamp) {
            return Ok(false);
        }
        let loaded = self.runtime.compile(&self.spec)?;
        tracing::info!(
            plugin = %self.spec.name,
            hash = %loaded.content_hash,
            "plugin file changed; the new component serves from the next call"
        );
        match self.current.write() {
            Ok(mut guard) => *guard = Arc::new(loaded),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(loaded),
        }
        Ok(true)
    }

    /// Whether the file on disk is still the one loaded.
    pub fn file_unchanged(&self) -> bool {
        FileStamp::of(&self.spec.path).ok() == self.loaded().stamp
    }

    pub(super) fn check_fault_limit(&self) -> Result<(), CallError> {
        let faults = self.faults.load(Ordering::Relaxed);
        if faults >= self.spec.limits.max_faults {
            let last = self
                .last_fault
                .lock()
                .ok()
                .and_then(|l| l.clone())
                .unwrap_or_default();
            return Err(CallError::FaultLimit {
                plugin: self.spec.name.clone(),
                faults,
                limit: self.spec.limits.max_faults,
                last,
            });
        }
        Ok(())
    }

    /// Run one export in a fresh store with the plugin's limits.
    pub(super) async fn invoke(
        &self,
        ctx: &CallContext,
        function: &'static str,
        args: CallArgs<'_>,
    ) -> Result<RawRun<CallOk>, CallError> {
        self.check_fault_limit()?;
        let limits = self.spec.limits;
        let metering = self.runtime.metering;
        let used = ctx.fuel.used(&self.spec.name);
        let task_left = limits.fuel_per_task.saturating_sub(used);
        if metering.fuel && task_left == 0 {
            return Err(CallError::TaskFuelExhausted {
                task: ctx.task_id.clone(),
                plugin: self.spec.name.clone(),
                budget: limits.fuel_per_task,
                used,
            });
        }
        let allowance = limits.fuel_per_call.min(task_left);
        let loaded = self.loaded();
        let worktree = match (&ctx.worktree, self.spec.grants.files) {
            (Some(path), true) => {
                match cap_std::fs::Dir::open_ambient_dir(path, cap_std::ambient_authority()) {
                    Ok(dir) => Some(Arc::new(dir)),
                    Err(e) => {
                        tracing::warn!(worktree = %path.display(), error = %e, "cannot open the worktree for a plugin");
                        None
                    }
                }
            }
            _ => None,
        };
        let host = HostContext::new(
            PluginCaller {
                plugin: self.spec.name.clone(),
                world: self.spec.world,
                task_id: ctx.task_id.clone(),
                attempt: ctx.attempt,
                stage: ctx.stage_of(self.spec.world),
            },
            Arc::clone(&self.config_json),
            self.spec.grants.clone(),
            Arc::clone(&self.runtime.models),
            worktree,
        );
        let mut store = Store::new(
            &self.runtime.handle.engine,
            PluginState::new(host, limits.memory_bytes),
        );
        store.limiter(|state| &mut state.limiter);
        let host_err = |reason: String| PluginError::Host {
            plugin: self.spec.name.clone(),
            function,
            reason,
        };
        if metering.fuel {
            if let Err(e) = store.set_fuel(allowance) {
                return Ok(self.raw_failure(host_err(format!("{e:#}")), allowance, &loaded));
            }
            if let Err(e) = store.fuel_async_yield_interval(Some(self.runtime.fuel_yield_interval))
            {
                return Ok(self.raw_failure(host_err(format!("{e:#}")), allowance, &loaded));
            }
        }
        let tick = self.runtime.handle.epoch_tick();
        if let Some(tick) = tick {
            let ticks = limits.deadline.as_nanos().div_ceil(tick.as_nanos().max(1));
            store.set_epoch_deadline(u64::try_from(ticks).unwrap_or(u64::MAX));
            store.epoch_deadline_trap();
        }
        // The wall-clock deadline. It fires whenever the call yields: at every fuel yield point
        // while the plugin computes, and while it awaits a host call (a model call that
        // hangs). With epoch interruption on, the epoch also traps at the deadline.
        let backstop = limits.deadline + tick.unwrap_or(Duration::ZERO) * 2;
        let started = Instant::now();
        let outcome = tokio::time::timeout(backstop, loaded.pre.call(&mut store, args)).await;
        let wall = started.elapsed();
        let fuel_used = if metering.fuel {
            allowance.saturating_sub(store.get_fuel().unwrap_or(0))
        } else {
            0
        };
        ctx.fuel.add(&self.spec.name, fuel_used);
        let plugin = &self.spec.name;
        let mut task_fuel_ran_out = false;
        let result = match outcome {
            Err(_elapsed) => Err(PluginError::Deadline {
                plugin: plugin.clone(),
                function,
                deadline: limits.deadline,
            }),
            Ok(Ok(Ok(value))) => {
                let size = value.output_size();
                if size > limits.max_output_bytes {
                    Err(PluginError::OversizedOutput {
                        plugin: plugin.clone(),
                        function,
                        size,
                        cap: limits.max_output_bytes,
                    })
                } else {
                    Ok(value)
                }
            }
            Ok(Ok(Err(message))) => {
                if message.len() > limits.max_output_bytes {
                    Err(PluginError::OversizedOutput {
                        plugin: plugin.clone(),
                        function,
                        size: message.len(),
                        cap: limits.max_output_bytes,
                    })
                } else {
                    Err(PluginError::Returned {
                        plugin: plugin.clone(),
                        function,
                        message,
                    })
                }
            }
            Ok(Err(error)) => {
                let classified =
                    classify_trap(&error, &store, plugin, function, allowance, limits.deadline);
                if matches!(classified, PluginError::OutOfFuel { .. })
                    && allowance < limits.fuel_per_call
                {
                    task_fuel_ran_out = true;
                }
                Err(classified)
            }
        };
        Ok(RawRun {
            result,
            fuel_used,
            fuel_allowance: allowance,
            wall,
            memory_bytes: store.data().limiter.in_use,
            component: loaded.content_hash.clone(),
            task_fuel_ran_out,
        })
    }

    pub(super) fn raw_failure<T>(
        &self,
        error: PluginError,
        allowance: u64,
        loaded: &Loaded,
    ) -> RawRun<T> {
        RawRun {
            result: Err(error),
            fuel_used: 0,
            fuel_allowance: allowance,
            wall: Duration::ZERO,
            memory_bytes: 0,
            component: loaded.content_hash.clone(),
            task_fuel_ran_out: false,
        }
    }
}

//! The runtime: compiles and loads components, reloads them when their file changes, and runs
//! each call in a fresh sandbox with its limits, then applies the fail policy.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use wasmtime::component::{Component, HasSelf, Linker, types::ComponentItem};
use wasmtime::{Store, Trap, WasmBacktrace};

use super::bindings::hook::HookPre;
use super::bindings::router;
use super::bindings::router::RouterPre;
use super::bindings::types::{
    Diff, FileEdit, Finding, HookDecision, RouteDecision, RouteRequest, RuleDecision, Task,
    ToolCall, Verdict, VerifyRequest,
};
use super::bindings::verifier::VerifierPre;
use super::cache::{self, CacheOutcome, CompileCache};
use super::engine::{AllocatorKind, EngineHandle, EngineOptions, Metering};
use super::error::{CallError, PluginError};
use super::host_api::{HostContext, ModelAccess, NoModels, PluginCaller, PluginState};
use super::output::{
    OutputSize, check_hook_decision, check_route, check_rule_decision, check_verdict,
};
use super::run::{CallContext, Called, LogRecorder, PluginRun, RunRecorder};
use super::spec::{OnFailure, PluginSpec, World};

/// Builds a [`PluginRuntime`].
pub struct RuntimeBuilder {
    options: EngineOptions,
    cache_dir: Option<PathBuf>,
    models: Arc<dyn ModelAccess>,
    recorder: Arc<dyn RunRecorder>,
}

impl RuntimeBuilder {
    /// Engine options (allocator, metering, pool size); the defaults are what gaffer ships.
    pub fn options(mut self, options: EngineOptions) -> Self {
        self.options = options;
        self
    }
    /// Where compiled components are cached; `None` disables the disk cache.
    pub fn cache_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.cache_dir = dir;
        self
    }
    /// What `complete` reaches: the model gateway, or a test double.
    pub fn models(mut self, models: Arc<dyn ModelAccess>) -> Self {
        self.models = models;
        self
    }
    /// Who receives a record of every plugin run (the ledger).
    pub fn recorder(mut self, recorder: Arc<dyn RunRecorder>) -> Self {
        self.recorder = recorder;
        self
    }
    pub fn build(self) -> Result<PluginRuntime, PluginError> {
        let handle = EngineHandle::new(&self.options)?;
        let mut linker: Linker<PluginState> = Linker::new(&handle.engine);
        let link_err = |e: wasmtime::Error| PluginError::Host {
            plugin: "-".to_string(),
            function: "linker",
            reason: format!("{e:#}"),
        };
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(link_err)?;
        // The three worlds import the same `types` and `host` interfaces; adding them once
        // serves all of them.
        router::Router::add_to_linker::<_, HasSelf<PluginState>>(&mut linker, |s| s)
            .map_err(link_err)?;
        let cache = CompileCache::new(&handle.engine, self.cache_dir);
        Ok(PluginRuntime {
            inner: Arc::new(Inner {
                handle,
                linker,
                cache,
                models: self.models,
                recorder: self.recorder,
                fuel_yield_interval: self.options.fuel_yield_interval,
                metering: self.options.metering,
            }),
        })
    }
}

/// One wasmtime engine with its linker, compile cache, model access and run recorder. Cheap to
/// clone; plugins loaded from it share it.
#[derive(Clone)]
pub struct PluginRuntime {
    inner: Arc<Inner>,
}

struct Inner {
    handle: EngineHandle,
    linker: Linker<PluginState>,
    cache: CompileCache,
    models: Arc<dyn ModelAccess>,
    recorder: Arc<dyn RunRecorder>,
    fuel_yield_interval: u64,
    metering: Metering,
}

/// What `plugin check` reports about a component file.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ComponentInfo {
    pub path: PathBuf,
    pub size_bytes: u64,
    pub content_hash: String,
    /// The world its exports match, if any.
    pub world: Option<World>,
    pub imports: Vec<String>,
    pub exports: Vec<String>,
    pub cache: CacheOutcome,
    #[serde(serialize_with = "super::run::serialize_micros")]
    pub load_time: Duration,
}

impl PluginRuntime {
    /// A builder with the shipped defaults: pooling where possible, fuel on (see `Metering`), the
    /// default disk cache, no model gateway, runs logged.
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder {
            options: EngineOptions::default(),
            cache_dir: CompileCache::default_dir(),
            models: Arc::new(NoModels),
            recorder: Arc::new(LogRecorder),
        }
    }

    /// The instance allocator in use.
    pub fn allocator(&self) -> AllocatorKind {
        self.inner.handle.allocator
    }

    /// Why pooling was refused, when it was.
    pub fn pooling_refused(&self) -> Option<&str> {
        self.inner.handle.pooling_refused.as_deref()
    }

    /// The compile cache directory, if any.
    pub fn cache_dir(&self) -> Option<&Path> {
        self.inner.cache.dir()
    }

    /// Load a plugin: compile (or take from the cache), check that it implements the configured
    /// world with what this host provides, and pre-instantiate it.
    pub fn load(&self, spec: PluginSpec) -> Result<Plugin, PluginError> {
        let loaded = self.inner.compile(&spec)?;
        Ok(Plugin {
            runtime: Arc::clone(&self.inner),
            config_json: Arc::from(spec.config_json.as_str()),
            spec,
            current: RwLock::new(Arc::new(loaded)),
            reload: Mutex::new(ReloadState::default()),
            faults: AtomicU32::new(0),
            last_fault: Mutex::new(None),
        })
    }

    /// Describe a component file: its imports, exports and the world they match.
    pub fn inspect(&self, path: &Path) -> Result<ComponentInfo, PluginError> {
        let plugin = display_name(path);
        let started = Instant::now();
        let loaded = self.inner.load_file(&plugin, path)?;
        let component = loaded.component;
        let engine = &self.inner.handle.engine;
        let ty = component.component_type();
        let imports = ty
            .imports(engine)
            .map(|(name, _)| name.to_string())
            .collect();
        let exports: Vec<String> = exported_functions(&component, engine);
        Ok(ComponentInfo {
            path: path.to_path_buf(),
            size_bytes: loaded.size_bytes,
            content_hash: loaded.content_hash,
            world: world_of_exports(&exports),
            imports,
            exports,
            cache: loaded.outcome,
            load_time: started.elapsed(),
        })
    }
}

fn display_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

fn exported_functions(component: &Component, engine: &wasmtime::Engine) -> Vec<String> {
    component
        .component_type()
        .exports(engine)
        .map(|(name, item)| match item.ty {
            ComponentItem::ComponentFunc(_) => name.to_string(),
            ComponentItem::ComponentInstance(_) => format!("{name} (interface)"),
            _ => format!("{name} (other)"),
        })
        .collect()
}

/// The world whose exports a component has.
pub fn world_of_exports(exports: &[String]) -> Option<World> {
    let has = |n: &str| exports.iter().any(|e| e == n);
    if has("route") {
        Some(World::Router)
    } else if has("verify") {
        Some(World::Verifier)
    } else if has("pre-tool") && has("on-edit") && has("on-diff") {
        Some(World::Hook)
    } else {
        None
    }
}

/// Identity of a file on disk, to notice a replaced `.wasm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileStamp {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

impl FileStamp {
    pub(crate) fn of(path: &Path) -> std::io::Result<FileStamp> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path)?;
        Ok(FileStamp {
            len: meta.len(),
            modified: meta.modified().ok(),
            inode: meta.ino(),
        })
    }
}

enum WorldPre {
    Router(RouterPre<PluginState>),
    Verifier(VerifierPre<PluginState>),
    Hook(HookPre<PluginState>),
}

struct Loaded {
    stamp: Option<FileStamp>,
    content_hash: String,
    cache: CacheOutcome,
    pre: WorldPre,
}

impl Inner {
    /// Load a component file through the compile cache.
    fn load_file(&self, plugin: &str, path: &Path) -> Result<cache::Loaded, PluginError> {
        self.cache
            .load_file(&self.handle.engine, path)
            .map_err(|e| match e {
                cache::LoadError::Read(reason) => PluginError::Read {
                    plugin: plugin.to_string(),
                    path: path.to_path_buf(),
                    reason,
                },
                cache::LoadError::Compile(reason) => PluginError::Compile {
                    plugin: plugin.to_string(),
                    path: path.to_path_buf(),
                    reason,
                },
            })
    }

    fn compile(&self, spec: &PluginSpec) -> Result<Loaded, PluginError> {
        let stamp = FileStamp::of(&spec.path).ok();
        let cache::Loaded {
            component,
            outcome: cache,
            content_hash,
            ..
        } = self.load_file(&spec.name, &spec.path)?;
        let engine = &self.handle.engine;
        let exports = exported_functions(&component, engine);
        let incompatible = |detail: String| PluginError::Incompatible {
            plugin: spec.name.clone(),
            expected: spec.world.name(),
            exports: exports.join(", "),
            detail,
        };
        let found_world = world_of_exports(&exports);
        if found_world != Some(spec.world) {
            let detail = match found_world {
                Some(w) => format!("; that is the `{w}` world"),
                None => String::new(),
            };
            return Err(incompatible(detail));
        }
        let instance_pre = self.linker.instantiate_pre(&component).map_err(|e| {
            incompatible(format!(
                "; it imports what this host does not provide: {e:#}"
            ))
        })?;
        let pre_err = |e: wasmtime::Error| incompatible(format!("; {e:#}"));
        let pre = match spec.world {
            World::Router => WorldPre::Router(RouterPre::new(instance_pre).map_err(pre_err)?),
            World::Verifier => WorldPre::Verifier(VerifierPre::new(instance_pre).map_err(pre_err)?),
            World::Hook => WorldPre::Hook(HookPre::new(instance_pre).map_err(pre_err)?),
        };
        Ok(Loaded {
            stamp,
            content_hash,
            cache,
            pre,
        })
    }
}

#[derive(Default)]
struct ReloadState {
    /// The file identity whose load failed, so a broken file is not recompiled at every call.
    failed_stamp: Option<FileStamp>,
    last_error: Option<PluginError>,
}

/// A loaded plugin. Calls run in a fresh sandbox each; a changed `.wasm` on disk is picked up
/// by the next call, and a replacement that fails to load leaves the previous one serving.
pub struct Plugin {
    runtime: Arc<Inner>,
    spec: PluginSpec,
    /// The config handed to every call, shared rather than copied per call.
    config_json: Arc<str>,
    current: RwLock<Arc<Loaded>>,
    reload: Mutex<ReloadState>,
    faults: AtomicU32,
    last_fault: Mutex<Option<String>>,
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
struct RawRun<T> {
    result: Result<T, PluginError>,
    fuel_used: u64,
    fuel_allowance: u64,
    wall: Duration,
    memory_bytes: u64,
    component: String,
    /// The call ran out of the task's fuel rather than its own per-call allowance.
    task_fuel_ran_out: bool,
}

/// The arguments of one export call.
enum CallArgs<'r> {
    Route(&'r RouteRequest),
    Verify(&'r VerifyRequest),
    PreTool(&'r Task, &'r ToolCall),
    OnEdit(&'r Task, &'r FileEdit),
    OnDiff(&'r Task, &'r Diff),
}

impl CallArgs<'_> {
    /// The world and the export name of the call.
    fn export(&self) -> (World, &'static str) {
        match self {
            CallArgs::Route(_) => (World::Router, "route"),
            CallArgs::Verify(_) => (World::Verifier, "verify"),
            CallArgs::PreTool(..) => (World::Hook, "pre-tool"),
            CallArgs::OnEdit(..) => (World::Hook, "on-edit"),
            CallArgs::OnDiff(..) => (World::Hook, "on-diff"),
        }
    }
}

/// What an export returned, before the fail policy.
enum CallOk {
    Route(RouteDecision),
    Verdict(Verdict),
    Hook(HookDecision),
    Rule(RuleDecision),
}

impl CallOk {
    fn route(self) -> Option<RouteDecision> {
        match self {
            CallOk::Route(value) => Some(value),
            _ => None,
        }
    }
    fn verdict(self) -> Option<Verdict> {
        match self {
            CallOk::Verdict(value) => Some(value),
            _ => None,
        }
    }
    fn hook(self) -> Option<HookDecision> {
        match self {
            CallOk::Hook(value) => Some(value),
            _ => None,
        }
    }
    fn rule(self) -> Option<RuleDecision> {
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

/// Instantiate the pre-instantiated component in `store` and call the export `args` names.
async fn dispatch(
    store: &mut Store<PluginState>,
    pre: &WorldPre,
    args: CallArgs<'_>,
) -> wasmtime::Result<Result<CallOk, String>> {
    match (pre, args) {
        (WorldPre::Router(pre), CallArgs::Route(request)) => {
            let bindings = pre.instantiate_async(&mut *store).await?;
            Ok(bindings
                .call_route(&mut *store, request)
                .await?
                .map(CallOk::Route))
        }
        (WorldPre::Verifier(pre), CallArgs::Verify(request)) => {
            let bindings = pre.instantiate_async(&mut *store).await?;
            Ok(bindings
                .call_verify(&mut *store, request)
                .await?
                .map(CallOk::Verdict))
        }
        (WorldPre::Hook(pre), CallArgs::PreTool(task, call)) => {
            let bindings = pre.instantiate_async(&mut *store).await?;
            Ok(bindings
                .call_pre_tool(&mut *store, task, call)
                .await?
                .map(CallOk::Hook))
        }
        (WorldPre::Hook(pre), CallArgs::OnEdit(task, edit)) => {
            let bindings = pre.instantiate_async(&mut *store).await?;
            Ok(bindings
                .call_on_edit(&mut *store, task, edit)
                .await?
                .map(CallOk::Rule))
        }
        (WorldPre::Hook(pre), CallArgs::OnDiff(task, diff)) => {
            let bindings = pre.instantiate_async(&mut *store).await?;
            Ok(bindings
                .call_on_diff(&mut *store, task, diff)
                .await?
                .map(CallOk::Rule))
        }
        _ => Err(wasmtime::format_err!(
            "the call does not match the plugin's world"
        )),
    }
}

/// Narrow a raw run to the answer type of one export.
fn narrow<T>(
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

    /// Why the latest replacement of the `.wasm` failed to load, if it did.
    pub fn last_reload_error(&self) -> Option<PluginError> {
        self.reload.lock().ok().and_then(|r| r.last_error.clone())
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

    /// Pick up a changed `.wasm`. Costs one `stat` per call.
    fn maybe_reload(&self) {
        let Ok(stamp) = FileStamp::of(&self.spec.path) else {
            return; // gone or unreadable: keep serving what is loaded
        };
        if self.loaded().stamp == Some(stamp) {
            return;
        }
        let Ok(mut reload) = self.reload.lock() else {
            return;
        };
        if reload.failed_stamp == Some(stamp) {
            return;
        }
        // Another call may have reloaded while we waited for the lock.
        if self.loaded().stamp == Some(stamp) {
            return;
        }
        match self.runtime.compile(&self.spec) {
            Ok(loaded) => {
                tracing::info!(
                    plugin = %self.spec.name,
                    hash = %loaded.content_hash,
                    "plugin file changed; the new component serves from this call on"
                );
                match self.current.write() {
                    Ok(mut guard) => *guard = Arc::new(loaded),
                    Err(poisoned) => *poisoned.into_inner() = Arc::new(loaded),
                }
                reload.failed_stamp = None;
                reload.last_error = None;
            }
            Err(error) => {
                tracing::warn!(
                    plugin = %self.spec.name,
                    %error,
                    "plugin file changed but the new file does not load; the previous component keeps serving"
                );
                reload.failed_stamp = Some(stamp);
                reload.last_error = Some(error);
            }
        }
    }

    fn check_fault_limit(&self) -> Result<(), CallError> {
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
    async fn invoke(
        &self,
        ctx: &CallContext,
        function: &'static str,
        args: CallArgs<'_>,
    ) -> Result<RawRun<CallOk>, CallError> {
        self.maybe_reload();
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
        let outcome = tokio::time::timeout(backstop, dispatch(&mut store, &loaded.pre, args)).await;
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

    fn raw_failure<T>(&self, error: PluginError, allowance: u64, loaded: &Loaded) -> RawRun<T> {
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
        let budget_left = request
            .budget
            .money
            .iter()
            .map(|m| m.left)
            .min()
            .unwrap_or(u64::MAX);
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

/// Turn a wasmtime error from a call into the fault it stands for.
fn classify_trap(
    error: &wasmtime::Error,
    store: &Store<PluginState>,
    plugin: &str,
    function: &'static str,
    allowance: u64,
    deadline: Duration,
) -> PluginError {
    let plugin = plugin.to_string();
    let trap = error.downcast_ref::<Trap>().copied();
    match trap {
        Some(Trap::OutOfFuel) => {
            return PluginError::OutOfFuel {
                plugin,
                function,
                allowance,
            };
        }
        Some(Trap::Interrupt) => {
            return PluginError::Deadline {
                plugin,
                function,
                deadline,
            };
        }
        _ => {}
    }
    let state = store.data();
    if let Some(requested) = state.limiter.refused {
        return PluginError::MemoryLimit {
            plugin,
            function,
            requested,
            cap: state.limiter.cap(),
        };
    }
    let mut message = match trap {
        Some(trap) => trap.to_string(),
        None => format!("{error:#}"),
    };
    let stderr = state.stderr_text();
    if !stderr.is_empty() {
        let tail: String = stderr
            .chars()
            .rev()
            .take(2000)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        message.push_str(&format!("; the plugin wrote: {tail}"));
    }
    let backtrace = error
        .downcast_ref::<WasmBacktrace>()
        .map(|bt| bt.to_string());
    PluginError::Trap {
        plugin,
        function,
        message,
        backtrace,
    }
}

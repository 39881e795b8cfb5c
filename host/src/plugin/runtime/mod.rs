//! The runtime: one engine and linker, components compiled (or taken from the disk cache) and
//! checked against their world, each call run in a fresh sandbox with its limits, and the fail
//! policy applied to every fault.
//!
//! - `load`: compiling and checking a component;
//! - `call`: one export in a fresh sandbox (store, fuel, deadline, memory, grants);
//! - `policy`: the fail policy applied to a call's fault, per world;
//! - `trap`: what a wasmtime error stands for (fuel, deadline, memory, trap);
//! - `wasi_link`: all of WASI in the shared linker, or only what each component imports.

mod call;
mod load;
mod policy;
mod trap;
mod wasi_link;

pub use call::Plugin;
pub use wasi_link::WasiLinking;

pub(crate) use call::{CallArgs, CallOk};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{Component, Linker, types::ComponentItem};

use super::cache::{CacheOutcome, CompileCache};
use super::engine::{AllocatorKind, EngineHandle, EngineOptions, Metering};
use super::error::PluginError;
use super::run::{LogRecorder, RunRecorder};
use super::spec::{PluginSpec, World};
use super::state::{ModelAccess, NoModels, PluginState};
use super::wit::since_v0_1_0;

/// Builds a [`PluginRuntime`].
pub struct RuntimeBuilder {
    options: EngineOptions,
    cache_dir: Option<PathBuf>,
    models: Arc<dyn ModelAccess>,
    recorder: Arc<dyn RunRecorder>,
    wasi: WasiLinking,
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
    /// Which WASI interfaces components are linked with (see [`WasiLinking`]).
    pub fn wasi_linking(mut self, wasi: WasiLinking) -> Self {
        self.wasi = wasi;
        self
    }
    pub fn build(self) -> Result<PluginRuntime, PluginError> {
        let handle = EngineHandle::new(&self.options)?;
        let linker = match self.wasi {
            WasiLinking::Whole => Some(linker_with("-", &handle.engine, |linker| {
                wasi_link::link_whole(linker)
            })?),
            WasiLinking::Imported => None,
        };
        let cache = CompileCache::new(&handle, self.cache_dir);
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
    /// The linker every component shares ([`WasiLinking::Whole`]); `None` when each component
    /// gets a linker of its own with the WASI interfaces it imports.
    linker: Option<Linker<PluginState>>,
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
    /// A builder with the shipped defaults: pooling where possible, fuel and epoch on (see
    /// `Metering`), the default disk cache, no model gateway, runs logged.
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder {
            options: EngineOptions::default(),
            cache_dir: CompileCache::default_dir(),
            models: Arc::new(NoModels),
            recorder: Arc::new(LogRecorder),
            wasi: WasiLinking::Whole,
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
        Ok(Plugin::new(Arc::clone(&self.inner), spec, loaded))
    }

    /// Describe a component file: its imports, exports and the world they match.
    pub fn inspect(&self, path: &Path) -> Result<ComponentInfo, PluginError> {
        let plugin = display_name(path);
        let started = Instant::now();
        let loaded = self.inner.load_file(&plugin, path, None)?;
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

/// A linker with gaffer's own interfaces (every WIT version's) and what `wasi` adds.
fn linker_with(
    plugin: &str,
    engine: &wasmtime::Engine,
    wasi: impl FnOnce(&mut Linker<PluginState>) -> wasmtime::Result<()>,
) -> Result<Linker<PluginState>, PluginError> {
    let mut linker: Linker<PluginState> = Linker::new(engine);
    let link_err = |e: wasmtime::Error| PluginError::Host {
        plugin: plugin.to_string(),
        function: "linker",
        reason: format!("{e:#}"),
    };
    wasi(&mut linker).map_err(link_err)?;
    since_v0_1_0::add_to_linker(&mut linker).map_err(link_err)?;
    Ok(linker)
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

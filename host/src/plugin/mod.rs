//! The plugin runtime: one wasmtime engine, compiled components cached on disk, a fresh sandbox
//! per call with fuel, deadline and memory limits, and the fail policy applied to every fault.
//!
//! This module knows nothing of the pipeline: it runs a component and returns a typed outcome.

pub mod bindings;
pub mod cache;
pub mod engine;
pub mod error;
pub mod host_api;
pub mod output;
pub mod run;
pub mod runtime;
pub mod samples;
pub mod set;
pub mod spec;

pub use bindings::types;
pub use cache::CacheOutcome;
pub use engine::{AllocatorChoice, AllocatorKind, EngineOptions, Metering};
pub use error::{CallError, PluginError};
pub use host_api::{BoxFuture, ModelAccess, NoModels, PluginCaller};
pub use run::{CallContext, Called, LogRecorder, MemoryRecorder, PluginRun, RunRecorder, TaskFuel};
pub use runtime::{ComponentInfo, Plugin, PluginRuntime, RuntimeBuilder, world_of_exports};
pub use set::{ActivePlugins, PluginSet, read_plugin_specs};
pub use spec::{Grants, Limits, OnFailure, PluginSpec, PluginSpecs, PluginsToml, World};

//! The plugin runtime: one wasmtime engine, compiled components cached on disk, a fresh sandbox
//! per call with fuel, deadline and memory limits, and the fail policy applied to every fault.
//!
//! This module knows nothing of the pipeline: it runs a component and returns a typed outcome,
//! in gaffer's own [`types`]; the WIT versions it loads live in [`wit`].

pub mod cache;
pub mod cases;
pub mod chain;
pub mod engine;
pub mod error;
pub mod output;
pub mod reference;
pub mod run;
pub mod runtime;
pub mod samples;
pub mod scaffold;
pub mod set;
pub mod shape;
pub mod spec;
pub mod state;
pub mod types;
pub mod wit;

pub use cache::CacheOutcome;
pub use engine::{AllocatorChoice, AllocatorKind, EngineOptions, Metering};
pub use error::{CallError, PluginError};
pub use run::{CallContext, Called, LogRecorder, MemoryRecorder, PluginRun, RunRecorder, TaskFuel};
pub use runtime::{
    ComponentInfo, Plugin, PluginRuntime, RuntimeBuilder, WasiLinking, world_of_exports,
};
pub use set::{ActivePlugins, PluginSet};
pub use spec::{Grants, Limits, OnFailure, PluginSpec, PluginSpecs, World};
pub use state::{BoxFuture, ModelAccess, NoModels, PluginCaller};

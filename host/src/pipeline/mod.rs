//! The pipeline: its assembly from a project's configuration, then claim → route → implement →
//! check → verify → merge, with workers, leases, crash recovery and a clean stop; the plugins'
//! metered model access and their runs as ledger rows; the backlog's import formats.
//!
//! - `assemble`: every room put together from `gaffer.toml` (the only place besides `cli` and
//!   the demo that knows them all);
//! - `runner`: workers, claims, leases, the end of an attempt written down;
//! - `stages`: one attempt's stages, one function each;
//! - `start`: the checks before a run, and recovery from a crashed one;
//! - `stop`: the run's one stop signal and its reasons;

pub mod assemble;
pub mod history;
pub mod hooks;
pub mod import;
pub mod plugin_models;
pub mod progress;
pub mod run_records;
pub mod runner;
pub mod settings;
mod stages;
mod start;
pub mod stop;

pub use assemble::{AssembleError, RunOptions, assemble};
pub use runner::{AttemptSummary, Pipeline, PipelineBuilder, RunError, RunSummary, new_run_id};
pub use settings::PipelineSettings;
pub use stop::{StopReason, StopSignal};

use crate::plugin::World;
use crate::store::Role;

/// The ledger role of a plugin's rows, from its world.
pub(crate) fn role_of(world: World) -> Role {
    match world {
        World::Router => Role::Router,
        World::Verifier => Role::Verifier,
        World::Hook => Role::Hook,
    }
}

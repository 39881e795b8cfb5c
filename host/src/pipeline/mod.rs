//! The pipeline: claim → route → implement → check → verify → merge, with workers, leases,
//! crash recovery and a clean stop; the plugins' metered model access and their runs as ledger
//! rows; the backlog's import formats.

pub mod history;
pub mod hooks;
pub mod import;
pub mod plugin_models;
pub mod progress;
pub mod run_records;
pub mod runner;
pub mod settings;

pub use runner::{AttemptSummary, Pipeline, RunError, RunSummary};
pub use settings::PipelineSettings;

use crate::plugin::World;

/// A plugin's ledger stage and role, from its world.
pub(crate) fn stage_and_role(world: World) -> (&'static str, &'static str) {
    match world {
        World::Router => ("route", "router"),
        World::Verifier => ("verify", "verifier"),
        World::Hook => ("check", "hook"),
    }
}

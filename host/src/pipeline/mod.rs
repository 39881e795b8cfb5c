//! The pipeline: claim → route → implement → check → verify → merge. So far: the plugins'
//! metered model access over the gateway, and their runs as ledger rows.

pub mod import;
pub mod plugin_models;
pub mod run_records;

use crate::plugin::World;

/// A plugin's ledger stage and role, from its world.
pub(crate) fn stage_and_role(world: World) -> (&'static str, &'static str) {
    match world {
        World::Router => ("route", "router"),
        World::Verifier => ("verify", "verifier"),
        World::Hook => ("check", "hook"),
    }
}

//! The pipeline: claim → route → implement → check → verify → merge. So far: the plugins'
//! metered model access over the gateway.

pub mod plugin_models;

//! The offline demo's parts: a sample repository with a real backlog, and a scripted model
//! provider that plays the models from the repository's solutions file. Both are a
//! simulation, labelled as such wherever they are shown; everything between them (gateway,
//! ledger, agent, git, plugins) is the real pipeline.

pub mod pipeline;
pub mod sample;
pub mod scripted_provider;

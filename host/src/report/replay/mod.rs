//! `gaffer replay`: what a routing policy would have done on recorded outcomes. Each attempt
//! costs what the data says that model cost on that task and succeeds when the data says it
//! resolved it; a simulated verifier may wrongly accept or reject (seeded, so a replay is
//! repeatable). Policies: a router plugin (any `.wasm` of the router world), a fixed cascade,
//! every single model, and the oracle (the cheapest model that solved each task).
//!
//! The data's prices are its own: costs are the recorded dollars, the price catalog is not
//! consulted, and model keys are used verbatim.

mod dataset;
mod policies;
mod render;
mod search;

pub use dataset::{DataTask, Dataset, RunOutcome};
pub(crate) use policies::draw;
pub use policies::{Policy, PolicyResult, Replayer, VerifierErrors, check_cascade};
pub use render::{render_svg, render_text};
pub use search::{Searched, cascade_config, cascade_name, cascades, choose, pareto};

/// Why a replay cannot run; names the file and line, or the model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    #[error("{file}: {reason}")]
    Read { file: String, reason: String },
    #[error("{file}:{line}: {reason}")]
    Line {
        file: String,
        line: usize,
        reason: String,
    },
    #[error("model `{model}` is not in the data (known: {known})")]
    UnknownModel { model: String, known: String },
    #[error("router `{plugin}` on task `{task}`: {reason}")]
    Router {
        plugin: String,
        task: String,
        reason: String,
    },
    #[error(
        "model `{model}` is named twice in the cascade `{cascade}`: a cascade tries each model once"
    )]
    RepeatedModel { model: String, cascade: String },
    #[error("{0}")]
    Invalid(String),
}

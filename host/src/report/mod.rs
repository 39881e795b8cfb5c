//! Economics: the report over the ledger (cost per task end to end, failed attempts and
//! verifier cycles included, where the tokens went, where agents fail, the month ahead, a
//! person's cost), its HTML page, and `replay` of routing policies over recorded outcomes.

pub mod assets;
pub mod dashboard;
pub mod economics;
pub mod estimate;
pub mod html;
pub mod ledger_report;
pub mod replay;

pub use economics::Economics;
pub use ledger_report::{
    Filter, History, HumanRates, Options, Report, build, render_csv, render_text,
};

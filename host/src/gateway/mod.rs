//! The model gateway: providers' wire formats, the price catalog, usage, retries. `ledger`
//! sees only usage and prices; only this module knows what a provider sends.

pub mod anthropic;
pub mod catalog;
pub mod chat;
pub mod metered;
pub mod metering_proxy;
pub mod openai;
pub mod provider;
pub mod settings;
pub mod usage;

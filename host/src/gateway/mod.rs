//! The model gateway: providers' wire formats, the price catalog, usage, retries. So far: the
//! normalisation of each provider's usage into the ledger's four counts.

pub mod usage;

//! The ledger: money in integer micro-dollars, what calls cost, and the caps and reservations
//! that keep every budget from being exceeded. It knows usage and prices, never a
//! provider's wire format.

pub mod budget;
pub mod cost;
pub mod money;

pub use crate::store::{CallTry, MicroUsd, Prices, TokenCounts};
pub use budget::{BudgetExhausted, Caps, Ledger, LedgerError, Reservation, WorstCase};
pub use cost::Electricity;
pub use money::{
    AmountError, decimal_dollars, dollars_at, format_dollars, format_dollars_fixed, parse_dollars,
    price_at,
};

//! Caps and the reservation protocol: reserve the worst case against every cap before a call,
//! mark it sent before the request leaves (in the same transaction as the reservation when the
//! caller sends at once), settle it to the real cost after.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::money::{dollars_at, format_dollars};
use crate::config::Invalid;
use crate::config::schema::{BudgetSection, ModelSection};
use crate::store::{
    CallTry, CapLevel, CapLimit, LedgerRow, LedgerStore, MicroUsd, Prices, Recovery, ReservationId,
    RowScope, Settled, Settlement, StoreError, TokenCounts, at_once_or_off_runtime, off_runtime,
};

/// The money caps of a configuration; every level is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caps {
    pub per_call: Option<MicroUsd>,
    pub per_attempt: Option<MicroUsd>,
    pub per_task: Option<MicroUsd>,
    pub per_run: Option<MicroUsd>,
    pub per_day: Option<MicroUsd>,
    pub per_month: Option<MicroUsd>,
    /// Per model key, for the current month.
    pub per_model_month: BTreeMap<String, MicroUsd>,
}

impl Caps {
    /// The caps of `[budget]`; a per-model cap must name a configured model.
    pub fn from_config(
        budget: &BudgetSection,
        models: &BTreeMap<String, ModelSection>,
    ) -> Result<Caps, Invalid> {
        let cap = |name: &str, value: &Option<crate::config::Dollars>| {
            value
                .as_ref()
                .map(|d| dollars_at(&format!("budget.{name}"), d))
                .transpose()
        };
        let mut per_model_month = BTreeMap::new();
        for (model, dollars) in &budget.per_model {
            let key = format!("budget.per_model.{model}");
            if !models.contains_key(model) {
                return Err(Invalid::new(
                    key,
                    format!("names model `{model}`, which has no [models.{model}] section"),
                ));
            }
            per_model_month.insert(model.clone(), dollars_at(&key, dollars)?);
        }
        Ok(Caps {
            per_call: cap("per_call", &budget.per_call)?,
            per_attempt: cap("per_attempt", &budget.per_attempt)?,
            per_task: cap("per_task", &budget.per_task)?,
            per_run: cap("per_run", &budget.per_run)?,
            per_day: cap("per_day", &budget.per_day)?,
            per_month: cap("per_month", &budget.per_month)?,
            per_model_month,
        })
    }

    /// The caps covering one call of `model`; `attempt_cap` is the router's money cap for the
    /// attempt, which applies with the configured one (the smaller wins).
    ///
    /// Broadest first: when a call exceeds several caps, the refusal names the broadest, which
    /// decides what happens next (a month cap stops the run; an attempt cap only the attempt).
    pub fn limits_for(&self, model: &str, attempt_cap: Option<MicroUsd>) -> Vec<CapLimit> {
        let attempt = match (self.per_attempt, attempt_cap) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        [
            (CapLevel::Model, self.per_model_month.get(model).copied()),
            (CapLevel::Month, self.per_month),
            (CapLevel::Day, self.per_day),
            (CapLevel::Run, self.per_run),
            (CapLevel::Task, self.per_task),
            (CapLevel::Attempt, attempt),
            (CapLevel::Call, self.per_call),
        ]
        .into_iter()
        .filter_map(|(level, limit)| limit.map(|limit| CapLimit { level, limit }))
        .collect()
    }
}

/// A call refused before it was sent, because a cap would be exceeded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "budget exhausted: the {level} cap of {} would be exceeded by {} (spent or reserved {}, this call needs up to {}{})",
    format_dollars(*limit),
    format_dollars(spent.saturating_add(*needed).saturating_sub(*limit)),
    format_dollars(*spent),
    format_dollars(*needed),
    model.as_ref().map(|m| format!(" with model `{m}`")).unwrap_or_default()
)]
pub struct BudgetExhausted {
    pub level: CapLevel,
    pub limit: MicroUsd,
    pub spent: MicroUsd,
    pub needed: MicroUsd,
    pub model: Option<String>,
}

/// What can go wrong with the ledger.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    #[error(transparent)]
    Exhausted(#[from] BudgetExhausted),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for LedgerError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::CapExceeded {
                level,
                limit,
                spent,
                needed,
            } => LedgerError::Exhausted(BudgetExhausted {
                level,
                limit,
                spent,
                needed,
                model: None,
            }),
            other => LedgerError::Store(other),
        }
    }
}

/// A reservation held for one try of a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub id: ReservationId,
    pub amount: MicroUsd,
    pub prices: Prices,
    /// The call this try belongs to; the next try of the same call reserves under it.
    pub call: CallTry,
}

impl Reservation {
    /// The next try of the same call.
    pub fn next_try(&self) -> CallTry {
        CallTry {
            call_id: self.call.call_id,
            number: self.call.number.saturating_add(1),
        }
    }
}

/// The worst case of one call: what gets reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorstCase {
    /// A priced API model: an upper bound on input tokens and `max_tokens`.
    Tokens {
        prices: Prices,
        max_input_tokens: u64,
        max_output_tokens: u64,
    },
    /// Anything else with a known upper bound (a local model: watts × the request timeout).
    Amount(MicroUsd),
}

impl WorstCase {
    pub fn amount(&self) -> MicroUsd {
        match self {
            WorstCase::Tokens {
                prices,
                max_input_tokens,
                max_output_tokens,
            } => prices.worst_case(*max_input_tokens, *max_output_tokens),
            WorstCase::Amount(amount) => *amount,
        }
    }
}

/// The budget keeper: caps over a store.
pub struct Ledger {
    store: Arc<dyn LedgerStore>,
    caps: Caps,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger").field("caps", &self.caps).finish()
    }
}

impl Ledger {
    pub fn new(store: Arc<dyn LedgerStore>, caps: Caps) -> Ledger {
        Ledger { store, caps }
    }

    pub fn caps(&self) -> &Caps {
        &self.caps
    }

    /// The store itself, for a thread of its own (the run's lease and its sweep of dead runs).
    pub fn blocking_store(&self) -> Arc<dyn LedgerStore> {
        Arc::clone(&self.store)
    }

    /// Run `operation` on the store off the async runtime (SQLite writes may wait for another
    /// process's transaction).
    async fn on_store<T: Send + 'static>(
        &self,
        operation: impl FnOnce(&dyn LedgerStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = Arc::clone(&self.store);
        off_runtime(move || operation(store.as_ref())).await
    }

    /// Run one of a model call's short writes (reserve, mark sent, settle, release) or a
    /// task's read of its rows on this thread when the store can do it without waiting, else
    /// off the runtime: a call makes two writes, and the hand-off to the blocking pool costs
    /// more than they do (see [`at_once_or_off_runtime`]).
    async fn on_store_at_once<T: Send + 'static>(
        &self,
        operation: impl Fn(&dyn LedgerStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = Arc::clone(&self.store);
        let at_once = store.can_refuse_to_wait();
        at_once_or_off_runtime(at_once, move || operation(store.as_ref())).await
    }

    /// Spent and reserved against the cap at `level` for a call in `scope` (what the caps see).
    pub async fn spent(&self, level: CapLevel, scope: &RowScope) -> Result<MicroUsd, StoreError> {
        let scope = scope.clone();
        self.on_store(move |store| store.spent(level, &scope)).await
    }

    /// [`Ledger::spent`] from code that cannot wait (a progress line); a short read.
    pub fn spent_now(&self, level: CapLevel, scope: &RowScope) -> Result<MicroUsd, StoreError> {
        self.store.spent(level, scope)
    }

    /// The rows of one task, oldest first: its cost end to end, its plugins' fuel.
    pub async fn task_rows(&self, task: &str) -> Result<Vec<LedgerRow>, StoreError> {
        let task = task.to_string();
        self.on_store_at_once(move |store| store.task_rows(&task))
            .await
    }

    /// After a crash: release the unsent reservations of dead owners, charge their sent ones
    /// at the reserved amount (flagged).
    pub async fn recover(&self, is_alive: fn(&str) -> bool) -> Result<Recovery, StoreError> {
        self.on_store(move |store| store.recover(&is_alive)).await
    }

    /// Record a plugin run (zero tokens, its fuel and wall time). Synchronous, as plugin runs
    /// are recorded where they end: one short insert.
    pub fn record_plugin_run(
        &self,
        scope: &RowScope,
        fuel: u64,
        wall_ms: u64,
        outcome: &str,
    ) -> Result<(), StoreError> {
        self.store.record_plugin_run(scope, fuel, wall_ms, outcome)
    }

    /// Reserve the worst case of one try of a call against every cap that covers it,
    /// atomically, or refuse it before anything is sent. Each try reserves again, so the caps
    /// bound the sum of all tries.
    ///
    /// The reservation is held unsent: [`Ledger::mark_sent`] before the request leaves, or
    /// [`Ledger::release`] when it does not. A caller that sends at once uses
    /// [`Ledger::reserve_sent`], one transaction instead of two.
    pub async fn reserve(
        &self,
        scope: &RowScope,
        call: CallTry,
        worst: WorstCase,
        attempt_cap: Option<MicroUsd>,
    ) -> Result<Reservation, LedgerError> {
        self.reserve_in(false, scope, call, worst, attempt_cap)
            .await
    }

    /// [`Ledger::reserve`] and [`Ledger::mark_sent`] in one transaction, for a caller that
    /// sends the request right after reserving: from the moment this returns, a crash charges
    /// the reservation (never under-charging a try that may have left). A try that is not sent
    /// after all is booked with [`Ledger::release_unbilled`]. See
    /// [`LedgerStore::try_reserve_sent`] for why.
    pub async fn reserve_sent(
        &self,
        scope: &RowScope,
        call: CallTry,
        worst: WorstCase,
        attempt_cap: Option<MicroUsd>,
    ) -> Result<Reservation, LedgerError> {
        self.reserve_in(true, scope, call, worst, attempt_cap).await
    }

    async fn reserve_in(
        &self,
        sent: bool,
        scope: &RowScope,
        call: CallTry,
        worst: WorstCase,
        attempt_cap: Option<MicroUsd>,
    ) -> Result<Reservation, LedgerError> {
        let amount = worst.amount();
        let limits = self.caps.limits_for(&scope.model, attempt_cap);
        let prices = match worst {
            WorstCase::Tokens { prices, .. } => prices,
            WorstCase::Amount(_) => Prices::default(),
        };
        let owned = scope.clone();
        match self
            .on_store_at_once(move |store| {
                if sent {
                    store.try_reserve_sent(&owned, call, amount, &limits)
                } else {
                    store.try_reserve(&owned, call, amount, &limits)
                }
            })
            .await
        {
            Ok(reserved) => Ok(Reservation {
                id: reserved.id,
                amount,
                prices,
                call: CallTry {
                    call_id: Some(reserved.call_id),
                    number: call.number,
                },
            }),
            Err(error) => Err(match LedgerError::from(error) {
                LedgerError::Exhausted(mut exhausted) => {
                    exhausted.model = Some(scope.model.clone());
                    LedgerError::Exhausted(exhausted)
                }
                other => other,
            }),
        }
    }

    /// Mark a reservation as sent: from now on a crash charges it.
    pub async fn mark_sent(&self, reservation: &Reservation) -> Result<(), LedgerError> {
        let id = reservation.id;
        Ok(self
            .on_store_at_once(move |store| store.mark_sent(id))
            .await?)
    }

    /// Release a reservation whose request was never sent.
    pub async fn release(&self, reservation: &Reservation) -> Result<(), LedgerError> {
        let id = reservation.id;
        Ok(self
            .on_store_at_once(move |store| store.release(id))
            .await?)
    }

    /// Release a sent try that the provider certainly did not bill: the row stays with its
    /// outcome, its reservation goes back to the caps.
    pub async fn release_unbilled(
        &self,
        reservation: &Reservation,
        wall: Duration,
        outcome: &str,
    ) -> Result<(), LedgerError> {
        let id = reservation.id;
        let wall_ms = u64::try_from(wall.as_millis()).unwrap_or(u64::MAX);
        let outcome = outcome.to_string();
        Ok(self
            .on_store_at_once(move |store| store.release_unbilled(id, wall_ms, &outcome))
            .await?)
    }

    /// Settle a sent call to its real cost (`usage` `None`: the provider reported none, so the
    /// reservation stands as the charge).
    pub async fn settle(
        &self,
        reservation: &Reservation,
        usage: Option<TokenCounts>,
        wall: Duration,
        outcome: &str,
    ) -> Result<Settled, LedgerError> {
        let prices = reservation.prices;
        let settlement = Settlement {
            tokens: usage.unwrap_or_default(),
            prices,
            cost: usage.map(|u| prices.cost(&u)),
            wall_ms: u64::try_from(wall.as_millis()).unwrap_or(u64::MAX),
            outcome: outcome.to_string(),
        };
        self.settle_with(reservation, settlement).await
    }

    /// Settle a local model's call at its electricity cost.
    pub async fn settle_amount(
        &self,
        reservation: &Reservation,
        amount: MicroUsd,
        usage: TokenCounts,
        wall: Duration,
        outcome: &str,
    ) -> Result<Settled, LedgerError> {
        let settlement = Settlement {
            tokens: usage,
            prices: Prices::default(),
            cost: Some(amount),
            wall_ms: u64::try_from(wall.as_millis()).unwrap_or(u64::MAX),
            outcome: outcome.to_string(),
        };
        self.settle_with(reservation, settlement).await
    }

    async fn settle_with(
        &self,
        reservation: &Reservation,
        settlement: Settlement,
    ) -> Result<Settled, LedgerError> {
        let id = reservation.id;
        Ok(self
            .on_store_at_once(move |store| store.settle(id, &settlement))
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_router_cap_and_the_configured_cap_both_bound_the_attempt() {
        let caps = Caps {
            per_attempt: Some(MicroUsd(500_000)),
            per_task: Some(MicroUsd(2_000_000)),
            ..Caps::default()
        };
        let limits = caps.limits_for("cheap", Some(MicroUsd(300_000)));
        assert_eq!(
            limits,
            vec![
                CapLimit {
                    level: CapLevel::Task,
                    limit: MicroUsd(2_000_000)
                },
                CapLimit {
                    level: CapLevel::Attempt,
                    limit: MicroUsd(300_000)
                },
            ]
        );
        assert_eq!(caps.limits_for("cheap", None)[1].limit, MicroUsd(500_000));
    }

    #[test]
    fn exhaustion_says_which_cap_by_how_much_in_dollars() {
        let error = BudgetExhausted {
            level: CapLevel::Task,
            limit: MicroUsd(2_000_000),
            spent: MicroUsd(1_900_000),
            needed: MicroUsd(250_000),
            model: Some("strong".to_string()),
        };
        assert_eq!(
            error.to_string(),
            "budget exhausted: the task cap of $2.00 would be exceeded by $0.15 \
             (spent or reserved $1.90, this call needs up to $0.25 with model `strong`)"
        );
    }
}

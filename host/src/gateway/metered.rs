//! The metered call: reserve the worst case against every cap and mark it sent (one
//! transaction), call the provider, settle to what it really cost. Every model call goes
//! through here.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::chat::{ChatRequest, ChatResponse};
use super::provider::{Billing, Provider, ProviderError};
use crate::ledger::{
    BudgetExhausted, CallTry, Electricity, Ledger, LedgerError, MicroUsd, Prices, Reservation,
    TokenCounts, WorstCase,
};
use crate::store::RowScope;

/// How a model is priced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pricing {
    /// An API model: prices per million tokens.
    Tokens(Prices),
    /// A local model: the power it draws.
    Electricity(Electricity),
}

/// A model as configured (`[models.<key>]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelEntry {
    pub key: String,
    /// The provider key it is reached through.
    pub provider: String,
    /// The provider's model id.
    pub id: String,
    pub pricing: Pricing,
    /// The most output tokens a call may ask for (and the gateway reserves).
    pub max_tokens: u32,
    pub context_window: u64,
    /// Model keys to try, in order, when this model's provider fails after its retries (the
    /// same class of model on another provider).
    pub fallbacks: Vec<String>,
}

/// Who a call is for: the ledger row's scope (its `model` is filled in by the gateway) and the
/// router's money cap for the attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallTag {
    pub scope: RowScope,
    pub attempt_cap: Option<MicroUsd>,
}

/// A call that was made, and what it cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completed {
    /// The model key that answered (a fallback's when the first provider failed).
    pub model: String,
    pub response: ChatResponse,
    /// Every try of the call, failed ones and fallbacks' included.
    pub charged: MicroUsd,
    /// The answering try's charge exceeded its reservation.
    pub overrun: bool,
    /// The answering try reported no usage (charged its reservation).
    pub usage_missing: bool,
    /// Tries on the wire, over every model of the call.
    pub attempts: usize,
}

/// Why a metered call produced no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    #[error("model `{model}` is not configured (known: {known})")]
    UnknownModel { model: String, known: String },
    #[error("model `{model}` names provider `{provider}`, which is not configured")]
    UnknownProvider { model: String, provider: String },
    /// A try was refused before it was sent; `charged` is what the call's earlier tries were
    /// booked at (zero when the first try was refused).
    #[error("{exhausted}")]
    Budget {
        exhausted: BudgetExhausted,
        charged: MicroUsd,
    },
    /// The provider failed; `charged` is what the call's tries were booked at.
    #[error("{error} (booked at {} µ$)", charged.get())]
    Provider {
        error: ProviderError,
        charged: MicroUsd,
    },
    #[error("ledger: {0}")]
    Ledger(String),
}

impl From<LedgerError> for GatewayError {
    fn from(error: LedgerError) -> Self {
        match error {
            LedgerError::Exhausted(exhausted) => GatewayError::Budget {
                exhausted,
                charged: MicroUsd::ZERO,
            },
            LedgerError::Store(e) => GatewayError::Ledger(e.to_string()),
        }
    }
}

/// One logical call as it goes: the next try's place in the call, and what its tries cost.
#[derive(Debug)]
struct CallProgress {
    next: CallTry,
    charged: MicroUsd,
    tries: usize,
}

/// The gateway: providers, models and the ledger that meters them.
pub struct Gateway {
    providers: BTreeMap<String, Arc<Provider>>,
    models: BTreeMap<String, ModelEntry>,
    ledger: Arc<Ledger>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("providers", &self.providers.keys().collect::<Vec<_>>())
            .field("models", &self.models.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Gateway {
    pub fn new(
        providers: impl IntoIterator<Item = Provider>,
        models: impl IntoIterator<Item = ModelEntry>,
        ledger: Arc<Ledger>,
    ) -> Gateway {
        Gateway {
            providers: providers
                .into_iter()
                .map(|p| (p.config().name.clone(), Arc::new(p)))
                .collect(),
            models: models.into_iter().map(|m| (m.key.clone(), m)).collect(),
            ledger,
        }
    }

    pub fn models(&self) -> impl Iterator<Item = &ModelEntry> {
        self.models.values()
    }

    /// The configured model `key` and the provider that serves it.
    pub fn model_and_provider(
        &self,
        key: &str,
    ) -> Result<(&ModelEntry, &Arc<Provider>), GatewayError> {
        let model = self
            .models
            .get(key)
            .ok_or_else(|| GatewayError::UnknownModel {
                model: key.to_string(),
                known: self.models.keys().cloned().collect::<Vec<_>>().join(", "),
            })?;
        let provider =
            self.providers
                .get(&model.provider)
                .ok_or_else(|| GatewayError::UnknownProvider {
                    model: model.key.clone(),
                    provider: model.provider.clone(),
                })?;
        Ok((model, provider))
    }

    /// The ledger every call is reserved and booked in.
    pub(super) fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Make one metered call of `model_key` for `tag`; when its provider fails after its
    /// retries, try the model's fallbacks in order. Every try on the wire, retries and
    /// fallbacks included, is its own ledger row of the same call, reserved before it leaves.
    pub async fn complete(
        &self,
        tag: &CallTag,
        model_key: &str,
        request: ChatRequest,
    ) -> Result<Completed, GatewayError> {
        let chain: Vec<String> = match self.models.get(model_key) {
            Some(model) => std::iter::once(model_key.to_string())
                .chain(model.fallbacks.iter().cloned())
                .collect(),
            None => vec![model_key.to_string()],
        };
        let mut progress = CallProgress {
            next: CallTry::FIRST,
            charged: MicroUsd::ZERO,
            tries: 0,
        };
        let mut last = None;
        for (i, key) in chain.iter().enumerate() {
            match self
                .complete_one(tag, key, request.clone(), &mut progress)
                .await
            {
                Err(GatewayError::Provider { error, charged }) if i + 1 < chain.len() => {
                    tracing::warn!(model = %key, next = %chain[i + 1], "{error}; trying the fallback");
                    last = Some(GatewayError::Provider { error, charged });
                }
                other => return other,
            }
        }
        Err(last.unwrap_or_else(|| GatewayError::UnknownModel {
            model: model_key.to_string(),
            known: String::new(),
        }))
    }

    /// The tries of one model, without fallbacks: each reserved before it is sent and settled
    /// on its own outcome, with the provider's backoff between them.
    async fn complete_one(
        &self,
        tag: &CallTag,
        model_key: &str,
        mut request: ChatRequest,
        progress: &mut CallProgress,
    ) -> Result<Completed, GatewayError> {
        let (model, provider) = self.model_and_provider(model_key)?;
        request.model = model.id.clone();
        request.max_tokens = if request.max_tokens == 0 {
            model.max_tokens
        } else {
            request.max_tokens.min(model.max_tokens)
        };
        let worst = worst_case(
            model,
            provider,
            request.input_token_bound(),
            u64::from(request.max_tokens),
        );
        let mut scope = tag.scope.clone();
        scope.model = model.key.clone();
        let body = provider.request_body(&request);
        let mut schedule = provider.retry_schedule();
        let mut tries_here = 0usize;
        loop {
            // Every try reserves again, so the caps bound the sum of all tries.
            // Reserved as sent, in one transaction: the request leaves right after, so from
            // here on a crash charges the reservation.
            let reservation = match self
                .ledger
                .reserve_sent(&scope, progress.next, worst, tag.attempt_cap)
                .await
            {
                Ok(reservation) => reservation,
                Err(LedgerError::Exhausted(exhausted)) => {
                    return Err(GatewayError::Budget {
                        exhausted,
                        charged: progress.charged,
                    });
                }
                Err(other) => return Err(other.into()),
            };
            progress.next = reservation.next_try();
            progress.tries += 1;
            tries_here += 1;
            let started = Instant::now();
            let outcome = provider.try_once(&body).await;
            let wall = started.elapsed();
            let error = match outcome.result {
                Ok(response) => {
                    let settled = self
                        .settle_success(model, &reservation, response.usage, wall)
                        .await?;
                    progress.charged = progress.charged.saturating_add(settled.charged);
                    return Ok(Completed {
                        model: model.key.clone(),
                        response,
                        charged: progress.charged,
                        overrun: settled.overrun,
                        usage_missing: settled.usage_missing,
                        attempts: progress.tries,
                    });
                }
                Err(error) => error,
            };
            let charged = self
                .settle_failure(model, &reservation, outcome.billing, wall, &error)
                .await?;
            progress.charged = progress.charged.saturating_add(charged);
            match schedule.next_wait(&error) {
                Some(wait) => {
                    tracing::warn!(
                        provider = %provider.config().name,
                        wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                        "{error}; retrying"
                    );
                    tokio::time::sleep(wait).await;
                }
                None => {
                    let error = if tries_here > 1 && error.is_retryable() {
                        ProviderError::RetriesExhausted {
                            provider: provider.config().name.clone(),
                            attempts: tries_here,
                            last: Box::new(error),
                        }
                    } else {
                        error
                    };
                    return Err(GatewayError::Provider {
                        error,
                        charged: progress.charged,
                    });
                }
            }
        }
    }

    /// Book a try that failed, by how sure it is that the provider billed it; returns what it
    /// was charged.
    pub(super) async fn settle_failure(
        &self,
        model: &ModelEntry,
        reservation: &Reservation,
        billing: Billing,
        wall: Duration,
        error: &ProviderError,
    ) -> Result<MicroUsd, GatewayError> {
        let outcome = format!("error: {error}");
        Ok(match (billing, model.pricing) {
            // Nothing reached the model: free, and the reservation goes back to the caps.
            (Billing::NotBilled, _) => {
                self.ledger
                    .release_unbilled(reservation, wall, &format!("not billed: {outcome}"))
                    .await?;
                MicroUsd::ZERO
            }
            // A local model drew power for as long as the try ran.
            (Billing::Answered | Billing::MaybeBilled, Pricing::Electricity(power)) => {
                self.ledger
                    .settle_amount(
                        reservation,
                        power.cost(wall),
                        TokenCounts::default(),
                        wall,
                        &outcome,
                    )
                    .await?
                    .charged
            }
            // The provider may have billed it and said nothing: the reservation is the charge,
            // flagged as usage missing.
            (Billing::Answered | Billing::MaybeBilled, Pricing::Tokens(_)) => {
                self.ledger
                    .settle(reservation, None, wall, &outcome)
                    .await?
                    .charged
            }
        })
    }

    /// Book a try that was answered, at its usage (at its reservation when it reported none).
    pub(super) async fn settle_success(
        &self,
        model: &ModelEntry,
        reservation: &Reservation,
        usage: Option<TokenCounts>,
        wall: Duration,
    ) -> Result<crate::store::Settled, GatewayError> {
        Ok(match model.pricing {
            Pricing::Tokens(_) => self.ledger.settle(reservation, usage, wall, "ok").await?,
            Pricing::Electricity(power) => {
                self.ledger
                    .settle_amount(
                        reservation,
                        power.cost(wall),
                        usage.unwrap_or_default(),
                        wall,
                        "ok",
                    )
                    .await?
            }
        })
    }
}

/// What one try of `model` may cost at most: `max_input_tokens` (bounded by the model's
/// context window) at the highest input-side price and `max_output_tokens` at the output
/// price; for a local model, its power over the provider's bound on one call's time.
pub(super) fn worst_case(
    model: &ModelEntry,
    provider: &Provider,
    max_input_tokens: u64,
    max_output_tokens: u64,
) -> WorstCase {
    match model.pricing {
        Pricing::Tokens(prices) => WorstCase::Tokens {
            prices,
            max_input_tokens: max_input_tokens.min(model.context_window),
            max_output_tokens,
        },
        Pricing::Electricity(power) => {
            WorstCase::Amount(power.cost(provider.config().max_total_time))
        }
    }
}

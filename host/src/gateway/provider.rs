//! One configured provider: its wire format, base URL, key, timeouts, retries and concurrency.
//! Sends a [`ChatRequest`] and returns the parsed answer, retrying what is worth retrying.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::chat::{ChatRequest, ChatResponse, WireError};
use super::{anthropic, openai};

/// A provider's wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderKind {
    Anthropic,
    OpenaiCompatible,
}

impl ProviderKind {
    /// The names `kind` takes in `gaffer.toml`.
    pub const NAMES: &[&str] = &["anthropic", "openai-compatible"];

    /// The kind a `gaffer.toml` name stands for.
    pub fn from_name(name: &str) -> Option<ProviderKind> {
        match name {
            "anthropic" => Some(ProviderKind::Anthropic),
            "openai-compatible" => Some(ProviderKind::OpenaiCompatible),
            _ => None,
        }
    }

    /// Whether an answer with this error status may have been billed. Both formats refuse a
    /// request with a 4xx before any model runs (bad request, authentication, permission,
    /// not found, too large, rate limited): not billed. Anthropic's 529 (`overloaded_error`)
    /// and an OpenAI-compatible server's 503 (overloaded, "slow down") are refusals before any
    /// work too. Any other 5xx (500, 502, 504, ...) may come after the model ran, or from a
    /// proxy in front of one that did: perhaps billed.
    pub fn bills_error_status(self, status: u16) -> bool {
        !matches!(
            (self, status),
            (_, 400..=499) | (ProviderKind::Anthropic, 529) | (ProviderKind::OpenaiCompatible, 503)
        )
    }

    /// Where the provider's public API is when `base_url` is not given.
    pub fn default_base_url(self) -> &'static str {
        match self {
            ProviderKind::Anthropic => "https://api.anthropic.com",
            ProviderKind::OpenaiCompatible => "https://api.openai.com/v1",
        }
    }
}

/// A provider as configured.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderConfig {
    /// The key in `gaffer.toml` (`[providers.<name>]`).
    pub name: String,
    pub kind: ProviderKind,
    /// E.g. `https://api.anthropic.com` or `http://127.0.0.1:11434/v1`.
    pub base_url: String,
    /// The environment variable that holds the API key; `None` for local servers without one.
    pub api_key_env: Option<String>,
    /// OpenAI-compatible only: the output-limit field the server honours.
    pub max_tokens_field: openai::MaxTokensField,
    /// One HTTP request, from sending to the whole body read.
    pub request_timeout: Duration,
    /// Retries after the first attempt.
    pub max_retries: usize,
    /// Bound on the time spent in one call, retries and waits included.
    pub max_total_time: Duration,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// The first retry's wait (doubling, with jitter, up to a minute) unless `Retry-After` says.
    pub retry_min_delay: Duration,
}

impl ProviderConfig {
    /// Defaults for `kind` at `base_url`.
    pub fn new(
        name: impl Into<String>,
        kind: ProviderKind,
        base_url: impl Into<String>,
    ) -> ProviderConfig {
        ProviderConfig {
            name: name.into(),
            kind,
            base_url: base_url.into(),
            api_key_env: None,
            max_tokens_field: openai::MaxTokensField::default(),
            request_timeout: Duration::from_secs(300),
            max_retries: 4,
            max_total_time: Duration::from_secs(900),
            concurrency: 8,
            retry_min_delay: Duration::from_millis(500),
        }
    }
}

/// Why a provider call failed. Never carries the API key or request headers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    #[error("provider `{provider}`: the API key variable `{env}` is not set")]
    MissingKey { provider: String, env: String },
    #[error("provider `{provider}`: HTTP {status}: {message}")]
    Status {
        provider: String,
        status: u16,
        /// The provider's own message, or an excerpt of the body.
        message: String,
        /// What `Retry-After` asked for.
        retry_after: Option<Duration>,
    },
    #[error("provider `{provider}`: no answer within {} s", timeout.as_secs_f64())]
    Timeout { provider: String, timeout: Duration },
    #[error("provider `{provider}`: {reason}")]
    Transport { provider: String, reason: String },
    #[error("provider `{provider}`: {error}")]
    Wire { provider: String, error: WireError },
    #[error("provider `{provider}`: gave up after {attempts} attempts: {last}")]
    RetriesExhausted {
        provider: String,
        attempts: usize,
        last: Box<ProviderError>,
    },
}

impl ProviderError {
    /// Worth another try: rate limits, overload, server errors, timeouts, broken connections.
    pub fn is_retryable(&self) -> bool {
        match self {
            ProviderError::Status { status, .. } => {
                *status == 429 || *status == 408 || *status >= 500
            }
            ProviderError::Timeout { .. } | ProviderError::Transport { .. } => true,
            _ => false,
        }
    }
}

/// Whether the provider may have billed one try on the wire. A billed try is never recorded as
/// free; a try is recorded as free only when it certainly was not billed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Billing {
    /// The provider answered: its usage says what it billed (when it says nothing, the try
    /// may have been billed and is charged its reservation).
    Answered,
    /// Certainly not billed: the connection could not be made (nothing was sent), or the
    /// provider refused the request with a status it does not bill
    /// ([`ProviderKind::bills_error_status`]).
    NotBilled,
    /// Perhaps billed: the request left and the answer is unknown (timed out after sending, cut
    /// off, unreadable, or an error status the provider may bill).
    MaybeBilled,
}

/// One try on the wire: the answer or the error, and whether the provider may have billed it.
#[derive(Debug)]
pub struct TryOutcome {
    pub result: Result<ChatResponse, ProviderError>,
    pub billing: Billing,
}

/// The waits between the tries of one call: exponential backoff with jitter from the
/// provider's settings, `Retry-After` when the provider says, and never past the call's time
/// bound. The gateway drives it, so that each try is reserved and booked on its own.
pub struct RetrySchedule {
    backoff: backon::ExponentialBackoff,
    started: Instant,
    max_total: Duration,
}

impl std::fmt::Debug for RetrySchedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetrySchedule")
            .field("elapsed", &self.started.elapsed())
            .field("max_total", &self.max_total)
            .finish()
    }
}

impl RetrySchedule {
    /// The wait before another try after `error`; `None` when the error is not worth another
    /// try, the retries are spent, or the wait would pass the call's time bound.
    pub fn next_wait(&mut self, error: &ProviderError) -> Option<Duration> {
        if !error.is_retryable() {
            return None;
        }
        let next = self.backoff.next()?;
        let wait = match error {
            ProviderError::Status {
                retry_after: Some(after),
                ..
            } => *after,
            _ => next,
        };
        (self.started.elapsed() + wait <= self.max_total).then_some(wait)
    }
}

/// Where [`Provider::forward`] sends a body: the endpoints of both wire formats that the
/// metering proxy passes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// Anthropic Messages (`/v1/messages`).
    Messages,
    /// Anthropic token counting (`/v1/messages/count_tokens`), free of charge.
    CountTokens,
    /// OpenAI Chat Completions (`/chat/completions`).
    ChatCompletions,
    /// OpenAI Responses (`/responses`).
    Responses,
}

impl Endpoint {
    /// The endpoint's path after a provider's base URL, when a provider of `kind` has it.
    fn path_for(self, kind: ProviderKind) -> Option<&'static str> {
        match (kind, self) {
            (ProviderKind::Anthropic, Endpoint::Messages) => Some("/v1/messages"),
            (ProviderKind::Anthropic, Endpoint::CountTokens) => Some("/v1/messages/count_tokens"),
            (ProviderKind::OpenaiCompatible, Endpoint::ChatCompletions) => {
                Some("/chat/completions")
            }
            (ProviderKind::OpenaiCompatible, Endpoint::Responses) => Some("/responses"),
            _ => None,
        }
    }

    /// The endpoint a metered call of a provider of `kind` goes to.
    fn of_calls(kind: ProviderKind) -> Endpoint {
        match kind {
            ProviderKind::Anthropic => Endpoint::Messages,
            ProviderKind::OpenaiCompatible => Endpoint::ChatCompletions,
        }
    }
}

/// `Retry-After` of an answer (public for the metering proxy, which passes it on).
pub fn retry_after_of(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    retry_after(headers)
}

/// A configured provider with its HTTP client.
pub struct Provider {
    config: ProviderConfig,
    client: reqwest::Client,
    api_key: Option<String>,
    slots: Arc<Semaphore>,
    /// Where a metered call is sent, parsed once: parsing it on every call was about a
    /// twentieth of a metered call's own time.
    endpoint: reqwest::Url,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("Provider")
            .field("name", &self.config.name)
            .field("base_url", &self.config.base_url)
            .field("has_key", &self.api_key.is_some())
            .finish()
    }
}

/// `Retry-After` as seconds or an HTTP date; `retry-after-ms` first (OpenAI's SDK does too).
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    if let Some(ms) = headers
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v >= 0.0)
    {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    let value = headers.get("retry-after")?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// `endpoint`'s URL at the provider of `config`, when its kind has that endpoint.
fn url_of(config: &ProviderConfig, endpoint: Endpoint) -> Option<String> {
    let base = config.base_url.trim_end_matches('/');
    endpoint
        .path_for(config.kind)
        .map(|path| format!("{base}{path}"))
}

impl Provider {
    /// Build the client; the key is read from the environment now, so a missing one is said
    /// at start, not at the first call.
    pub fn new(config: ProviderConfig) -> Result<Provider, ProviderError> {
        let api_key = match &config.api_key_env {
            Some(env) => Some(std::env::var(env).map_err(|_| ProviderError::MissingKey {
                provider: config.name.clone(),
                env: env.clone(),
            })?),
            None => None,
        };
        let client = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout.min(Duration::from_secs(30)))
            .build()
            .map_err(|e| ProviderError::Transport {
                provider: config.name.clone(),
                reason: format!("cannot build the HTTP client: {e}"),
            })?;
        let slots = Arc::new(Semaphore::new(config.concurrency.max(1)));
        let endpoint = url_of(&config, Endpoint::of_calls(config.kind)).unwrap_or_default();
        let endpoint = reqwest::Url::parse(&endpoint).map_err(|e| ProviderError::Transport {
            provider: config.name.clone(),
            reason: format!("`{endpoint}` is not a URL: {e}"),
        })?;
        Ok(Provider {
            config,
            client,
            api_key,
            slots,
            endpoint,
        })
    }

    pub fn config(&self) -> &ProviderConfig {
        &self.config
    }

    /// The body of `request` in the provider's wire format.
    pub fn request_body(&self, request: &ChatRequest) -> String {
        match self.config.kind {
            ProviderKind::Anthropic => anthropic::request_body(request),
            ProviderKind::OpenaiCompatible => {
                openai::request_body(request, self.config.max_tokens_field)
            }
        }
        .to_string()
    }

    /// The waits between the tries of a call that starts now.
    pub fn retry_schedule(&self) -> RetrySchedule {
        RetrySchedule {
            backoff: ExponentialBuilder::default()
                .with_jitter()
                .with_min_delay(self.config.retry_min_delay)
                .with_max_delay(Duration::from_secs(60))
                .with_max_times(self.config.max_retries)
                .build(),
            started: Instant::now(),
            max_total: self.config.max_total_time,
        }
    }

    /// One try on the wire, and whether the provider may have billed it.
    pub async fn try_once(&self, body: &str) -> TryOutcome {
        match self.attempt(body).await {
            Ok(response) => TryOutcome {
                result: Ok(response),
                billing: Billing::Answered,
            },
            Err((error, billing)) => TryOutcome {
                result: Err(error),
                billing,
            },
        }
    }

    /// One HTTP exchange; an error says whether the provider may have billed it.
    async fn attempt(&self, body: &str) -> Result<ChatResponse, (ProviderError, Billing)> {
        let _slot = self.slot().await?;
        let builder = self
            .authorised(self.client.post(self.endpoint.clone()))
            .body(body.to_string());
        let response = builder.send().await.map_err(|e| self.transport_error(e))?;
        let status = response.status();
        let after = retry_after(response.headers());
        let bytes = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(e))?;
        if !status.is_success() {
            return Err(self.status_error(status.as_u16(), after, &bytes));
        }
        let parsed = match self.config.kind {
            ProviderKind::Anthropic => anthropic::parse_response(&bytes),
            ProviderKind::OpenaiCompatible => openai::parse_response(&bytes),
        };
        // A success status with a body we cannot read: the provider did the work.
        parsed.map_err(|error| {
            (
                ProviderError::Wire {
                    provider: self.config.name.clone(),
                    error: match error {
                        WireError::Malformed { reason, excerpt } => WireError::Malformed {
                            reason,
                            excerpt: self.redact(excerpt),
                        },
                        other => other,
                    },
                },
                Billing::MaybeBilled,
            )
        })
    }

    /// Send a body that is already in this provider's wire format to `endpoint` (the
    /// metering proxy's way out): the provider's own key and version headers are added here,
    /// nothing of the client's. The answer comes back unread, whatever its status, with the
    /// request slot it holds until it is dropped (a stream holds it as long as it runs).
    pub async fn forward(
        &self,
        endpoint: Endpoint,
        body: Vec<u8>,
        anthropic_beta: Option<&str>,
    ) -> Result<(reqwest::Response, OwnedSemaphorePermit), (ProviderError, Billing)> {
        let slot = self.slot().await?;
        let Some(url) = url_of(&self.config, endpoint) else {
            return Err((
                ProviderError::Transport {
                    provider: self.config.name.clone(),
                    reason: format!(
                        "a {:?} provider has no {endpoint:?} endpoint",
                        self.config.kind
                    ),
                },
                Billing::NotBilled,
            ));
        };
        let mut builder = self.authorised(self.client.post(url)).body(body);
        if let (ProviderKind::Anthropic, Some(beta)) = (self.config.kind, anthropic_beta) {
            builder = builder.header("anthropic-beta", beta);
        }
        let response = builder.send().await.map_err(|e| self.transport_error(e))?;
        Ok((response, slot))
    }

    /// A request slot (the provider's concurrency bound).
    async fn slot(&self) -> Result<OwnedSemaphorePermit, (ProviderError, Billing)> {
        Arc::clone(&self.slots).acquire_owned().await.map_err(|_| {
            (
                ProviderError::Transport {
                    provider: self.config.name.clone(),
                    reason: "the provider's request slots are closed".to_string(),
                },
                Billing::NotBilled,
            )
        })
    }

    /// The provider's content type, version and key headers.
    fn authorised(&self, builder: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let builder = builder.header("content-type", "application/json");
        match (self.config.kind, &self.api_key) {
            (ProviderKind::Anthropic, key) => {
                let b = builder.header("anthropic-version", anthropic::API_VERSION);
                match key {
                    Some(key) => b.header("x-api-key", key),
                    None => b,
                }
            }
            (ProviderKind::OpenaiCompatible, Some(key)) => builder.bearer_auth(key),
            (ProviderKind::OpenaiCompatible, None) => builder,
        }
    }

    /// A transport failure, and whether the provider may have billed it.
    pub fn transport_error(&self, e: reqwest::Error) -> (ProviderError, Billing) {
        // Nothing left when the connection could not be made (refused, no route, DNS, TLS,
        // or the connect timeout): certainly not billed. Anything later may have reached the
        // provider.
        let billing = if e.is_connect() || e.is_builder() {
            Billing::NotBilled
        } else {
            Billing::MaybeBilled
        };
        let error = if e.is_timeout() {
            ProviderError::Timeout {
                provider: self.config.name.clone(),
                timeout: self.config.request_timeout,
            }
        } else {
            // Without the URL: it is not secret, but the error chain is enough.
            ProviderError::Transport {
                provider: self.config.name.clone(),
                reason: e.without_url().to_string(),
            }
        };
        (error, billing)
    }

    /// An answer with an error status: the provider's own message (the key redacted), and
    /// whether it may have been billed ([`ProviderKind::bills_error_status`]).
    pub fn status_error(
        &self,
        status: u16,
        retry_after: Option<Duration>,
        body: &[u8],
    ) -> (ProviderError, Billing) {
        let message = match self.config.kind {
            ProviderKind::Anthropic => anthropic::error_message(body),
            ProviderKind::OpenaiCompatible => openai::error_message(body),
        }
        .unwrap_or_else(|| super::chat::excerpt(body));
        let billing = if self.config.kind.bills_error_status(status) {
            Billing::MaybeBilled
        } else {
            Billing::NotBilled
        };
        (
            ProviderError::Status {
                provider: self.config.name.clone(),
                status,
                message: self.redact(message),
                retry_after,
            },
            billing,
        )
    }

    /// Some providers echo the key in their error text: it never leaves this module.
    pub fn redact(&self, text: String) -> String {
        match &self.api_key {
            Some(key) if !key.is_empty() && text.contains(key.as_str()) => {
                text.replace(key.as_str(), "[redacted]")
            }
            _ => text,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};

    #[test]
    fn retry_after_in_all_its_forms() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("2"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert("retry-after-ms", HeaderValue::from_static("150"));
        assert_eq!(retry_after(&h), Some(Duration::from_millis(150)));
        let mut h = HeaderMap::new();
        h.insert(
            "retry-after",
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(
            retry_after(&h),
            Some(Duration::ZERO),
            "a date in the past means now"
        );
        h.insert("retry-after", HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn a_missing_key_names_the_variable_not_a_value() {
        let mut config =
            ProviderConfig::new("anthropic", ProviderKind::Anthropic, "http://127.0.0.1:9");
        config.api_key_env = Some("GAFFER_TEST_SURELY_UNSET_KEY".into());
        let error = Provider::new(config).unwrap_err();
        assert_eq!(
            error.to_string(),
            "provider `anthropic`: the API key variable `GAFFER_TEST_SURELY_UNSET_KEY` is not set"
        );
    }

    #[test]
    fn which_error_statuses_may_be_billed() {
        use ProviderKind::{Anthropic, OpenaiCompatible};
        for kind in [Anthropic, OpenaiCompatible] {
            for refused in [400, 401, 403, 404, 408, 413, 422, 429] {
                assert!(!kind.bills_error_status(refused), "{kind:?} {refused}");
            }
            for perhaps in [500, 502, 504] {
                assert!(kind.bills_error_status(perhaps), "{kind:?} {perhaps}");
            }
        }
        assert!(!Anthropic.bills_error_status(529));
        assert!(Anthropic.bills_error_status(503));
        assert!(!OpenaiCompatible.bills_error_status(503));
        assert!(OpenaiCompatible.bills_error_status(529));
    }

    #[test]
    fn what_is_retried() {
        let status = |status| ProviderError::Status {
            provider: "p".into(),
            status,
            message: String::new(),
            retry_after: None,
        };
        assert!(status(429).is_retryable());
        assert!(status(529).is_retryable());
        assert!(status(500).is_retryable());
        assert!(!status(400).is_retryable());
        assert!(!status(401).is_retryable());
        assert!(
            !ProviderError::Wire {
                provider: "p".into(),
                error: WireError::NoChoices
            }
            .is_retryable()
        );
    }
}

//! One configured provider: its wire format, base URL, key, timeouts, retries and concurrency.
//! Sends a [`ChatRequest`] and returns the parsed answer, retrying what is worth retrying.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use backon::{ExponentialBuilder, Retryable};
use tokio::sync::Semaphore;

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

/// The outcome of one logical call: the answer or the error, and whether the provider may
/// have billed it (a request that timed out or broke after being sent, or an answer we could
/// not read). A billed call is never recorded as free.
#[derive(Debug)]
pub struct Sent {
    pub result: Result<ChatResponse, ProviderError>,
    pub maybe_billed: bool,
    pub attempts: usize,
}

/// A configured provider with its HTTP client.
pub struct Provider {
    config: ProviderConfig,
    client: reqwest::Client,
    api_key: Option<String>,
    slots: Arc<Semaphore>,
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
        Ok(Provider {
            config,
            client,
            api_key,
            slots,
        })
    }

    pub fn config(&self) -> &ProviderConfig {
        &self.config
    }

    fn endpoint(&self) -> String {
        let base = self.config.base_url.trim_end_matches('/');
        match self.config.kind {
            ProviderKind::Anthropic => format!("{base}/v1/messages"),
            ProviderKind::OpenaiCompatible => format!("{base}/chat/completions"),
        }
    }

    /// Send `request`, retrying with exponential backoff and jitter (honouring `Retry-After`)
    /// within the configured bounds.
    pub async fn send(&self, request: &ChatRequest) -> Sent {
        let body = match self.config.kind {
            ProviderKind::Anthropic => anthropic::request_body(request),
            ProviderKind::OpenaiCompatible => {
                openai::request_body(request, self.config.max_tokens_field)
            }
        };
        let body = body.to_string();
        let started = Instant::now();
        let maybe_billed = AtomicBool::new(false);
        let attempts = std::sync::atomic::AtomicUsize::new(0);
        let max_total = self.config.max_total_time;
        let backoff = ExponentialBuilder::default()
            .with_jitter()
            .with_min_delay(self.config.retry_min_delay)
            .with_max_delay(Duration::from_secs(60))
            .with_max_times(self.config.max_retries);
        let result = (|| async {
            attempts.fetch_add(1, Ordering::Relaxed);
            let outcome = self.attempt(&body).await;
            if let Err(error) = &outcome
                && matches!(
                    error,
                    ProviderError::Timeout { .. }
                        | ProviderError::Transport { .. }
                        | ProviderError::Wire { .. }
                )
            {
                maybe_billed.store(true, Ordering::Relaxed);
            }
            outcome
        })
        .retry(backoff)
        .when(ProviderError::is_retryable)
        .adjust(|error, next| {
            let next = next?;
            let wait = match error {
                ProviderError::Status {
                    retry_after: Some(after),
                    ..
                } => *after,
                _ => next,
            };
            // Stop when the wait would pass the call's time bound.
            (started.elapsed() + wait <= max_total).then_some(wait)
        })
        .notify(|error, wait| {
            tracing::warn!(
                provider = %self.config.name,
                wait_ms = wait.as_millis() as u64,
                "{error}; retrying"
            )
        })
        .await;
        let attempts = attempts.load(Ordering::Relaxed);
        let result = match result {
            Err(error) if attempts > 1 && error.is_retryable() => {
                Err(ProviderError::RetriesExhausted {
                    provider: self.config.name.clone(),
                    attempts,
                    last: Box::new(error),
                })
            }
            other => other,
        };
        Sent {
            maybe_billed: maybe_billed.load(Ordering::Relaxed) || result.is_ok(),
            result,
            attempts,
        }
    }

    /// One HTTP exchange.
    async fn attempt(&self, body: &str) -> Result<ChatResponse, ProviderError> {
        let provider = || self.config.name.clone();
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| ProviderError::Transport {
                provider: provider(),
                reason: "the provider's request slots are closed".to_string(),
            })?;
        let mut builder = self
            .client
            .post(self.endpoint())
            .header("content-type", "application/json")
            .body(body.to_string());
        builder = match (self.config.kind, &self.api_key) {
            (ProviderKind::Anthropic, key) => {
                let b = builder.header("anthropic-version", anthropic::API_VERSION);
                match key {
                    Some(key) => b.header("x-api-key", key),
                    None => b,
                }
            }
            (ProviderKind::OpenaiCompatible, Some(key)) => builder.bearer_auth(key),
            (ProviderKind::OpenaiCompatible, None) => builder,
        };
        let transport = |e: reqwest::Error| {
            if e.is_timeout() {
                ProviderError::Timeout {
                    provider: provider(),
                    timeout: self.config.request_timeout,
                }
            } else {
                // Without the URL: it is not secret, but the error chain is enough.
                ProviderError::Transport {
                    provider: provider(),
                    reason: e.without_url().to_string(),
                }
            }
        };
        let response = builder.send().await.map_err(transport)?;
        let status = response.status();
        let after = retry_after(response.headers());
        let bytes = response.bytes().await.map_err(transport)?;
        if !status.is_success() {
            let message = match self.config.kind {
                ProviderKind::Anthropic => anthropic::error_message(&bytes),
                ProviderKind::OpenaiCompatible => openai::error_message(&bytes),
            }
            .unwrap_or_else(|| super::chat::excerpt(&bytes));
            let message = self.redact(message);
            return Err(ProviderError::Status {
                provider: provider(),
                status: status.as_u16(),
                message,
                retry_after: after,
            });
        }
        let parsed = match self.config.kind {
            ProviderKind::Anthropic => anthropic::parse_response(&bytes),
            ProviderKind::OpenaiCompatible => openai::parse_response(&bytes),
        };
        parsed.map_err(|error| ProviderError::Wire {
            provider: provider(),
            error: match error {
                WireError::Malformed { reason, excerpt } => WireError::Malformed {
                    reason,
                    excerpt: self.redact(excerpt),
                },
                other => other,
            },
        })
    }

    /// Some providers echo the key in their error text: it never leaves this module.
    fn redact(&self, text: String) -> String {
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

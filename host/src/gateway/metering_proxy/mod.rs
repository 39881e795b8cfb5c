//! The metering proxy: where an external agent (Claude Code, Codex, any CLI) sends its own
//! model calls, on loopback, for the duration of one attempt. It speaks the agent's wire
//! format (Anthropic Messages with `count_tokens`, OpenAI Chat Completions, OpenAI Responses;
//! streaming or not) and forwards to the provider of the model the router chose, through the
//! gateway's ledger: each call is reserved before it leaves (its output bound clamped to what
//! the caps still allow), marked sent, and settled from the usage of the final event or body,
//! tagged with the attempt's task, attempt and phase.
//!
//! What the agent gets: a base URL and a token valid for this proxy only, never the upstream
//! key. Whatever model name it asks for maps to the routed model (a side-call model, such as
//! Claude Code's small one, to the side model), and a configured model that was not granted is
//! refused. A call a cap refuses gets an error in the format's own shape with the cap's
//! message, which the agent shows. Provider-side tools, `mcp_servers` and continuations the
//! reservation cannot bound are refused ([`wire::inspect`]). The proxy forwards bodies in the
//! agent's format and does not translate: a routed model whose provider speaks another format
//! is refused when the proxy starts ([`ProxyError::WireMismatch`]).

mod sse;
pub mod wire;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::Value;
use tokio_util::task::TaskTracker;

use super::metered::{CallTag, Gateway, ModelEntry, Pricing, worst_case};
use super::provider::{Billing, Endpoint, Provider, ProviderError, retry_after_of};
use crate::ledger::{BudgetExhausted, CallTry, LedgerError, MicroUsd, Reservation};
use sse::StreamUsage;
pub use wire::AgentProtocol;
use wire::Refusal;

/// The largest request body the proxy reads (a long conversation with images).
const MAX_REQUEST_BYTES: usize = 64 * 1024 * 1024;

/// Input tokens counted for each image, whose tokens are not bounded by its bytes: more than
/// any provider documents for one image at its largest size.
const TOKENS_PER_IMAGE: u64 = 6_000;

/// When a call's output bound is clamped to fit what the caps still allow, the least it may
/// be clamped to; below that the call is refused (an answer cut at a few tokens only makes
/// the agent ask again).
const MIN_CLAMPED_OUTPUT_TOKENS: u64 = 1_024;

/// The least thinking budget Anthropic accepts.
const MIN_THINKING_BUDGET: u64 = 1_024;

/// What one attempt's proxy serves.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    /// The wire format the agent speaks.
    pub protocol: AgentProtocol,
    /// The model key the router chose: every request maps to it unless it is a side call.
    pub routed: String,
    /// The model key side calls map to (the cheapest granted model); the routed one if none.
    pub side: Option<String>,
    /// Lower-case fragments of model names that mark a side call (`haiku`, `mini`).
    pub side_patterns: Vec<String>,
    /// The ledger tag of the attempt.
    pub tag: CallTag,
    /// Generation calls the attempt may make (its turns); `None`: no bound but the caps.
    pub max_calls: Option<u64>,
}

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("the metering proxy: {0}")]
    Model(#[from] super::metered::GatewayError),
    #[error(
        "model `{model}` is served by provider `{provider}` in the {provider_format} format, but \
         the agent speaks {agent_format}; gaffer does not translate between them: route this \
         agent to a model of a provider of kind `{wanted}`"
    )]
    WireMismatch {
        model: String,
        provider: String,
        provider_format: &'static str,
        agent_format: &'static str,
        wanted: &'static str,
    },
    #[error("the metering proxy cannot listen: {0}")]
    Bind(std::io::Error),
    #[error("the metering proxy cannot make its token: {0}")]
    Token(std::io::Error),
}

/// What the proxy did over the attempt.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxySummary {
    /// Calls forwarded to a provider.
    pub calls: u64,
    /// What they were booked at.
    pub charged: MicroUsd,
    /// Requests refused before they left (caps, refused features, unknown token).
    pub refused: u64,
    /// The last cap that refused a call, if one did: the attempt ends budget-exhausted.
    pub budget: Option<BudgetExhausted>,
    /// A call was refused because the attempt's calls were used up.
    pub call_limit_hit: bool,
}

struct Shared {
    gateway: Arc<Gateway>,
    settings: ProxySettings,
    token: String,
    summary: Mutex<ProxySummary>,
    /// Generation calls admitted so far (refused ones not counted).
    admitted: std::sync::atomic::AtomicU64,
    /// Streams still settling.
    settling: TaskTracker,
}

/// A running proxy; it stops when [`MeteringProxy::finish`] is called or it is dropped.
pub struct MeteringProxy {
    base_url: String,
    shared: Arc<Shared>,
    /// The loopback listener's server, and the Unix socket's when there is one.
    servers: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for MeteringProxy {
    fn drop(&mut self) {
        for server in &self.servers {
            server.abort();
        }
    }
}

impl std::fmt::Debug for MeteringProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the token.
        f.debug_struct("MeteringProxy")
            .field("base_url", &self.base_url)
            .field("protocol", &self.shared.settings.protocol)
            .finish()
    }
}

impl MeteringProxy {
    /// Check that every model the agent may reach speaks its format, then listen on
    /// 127.0.0.1 (port 0).
    pub async fn start(
        gateway: Arc<Gateway>,
        settings: ProxySettings,
    ) -> Result<MeteringProxy, ProxyError> {
        for key in std::iter::once(&settings.routed).chain(settings.side.as_ref()) {
            let (model, provider) = gateway.model_and_provider(key)?;
            let wanted = settings.protocol.provider_kind();
            if provider.config().kind != wanted {
                return Err(ProxyError::WireMismatch {
                    model: model.key.clone(),
                    provider: provider.config().name.clone(),
                    provider_format: kind_format(provider.config().kind),
                    agent_format: settings.protocol.describe(),
                    wanted: kind_name(wanted),
                });
            }
        }
        let token = new_token().map_err(ProxyError::Token)?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(ProxyError::Bind)?;
        let address = listener.local_addr().map_err(ProxyError::Bind)?;
        let shared = Arc::new(Shared {
            gateway,
            settings,
            token,
            summary: Mutex::new(ProxySummary::default()),
            admitted: std::sync::atomic::AtomicU64::new(0),
            settling: TaskTracker::new(),
        });
        let app = router(Arc::clone(&shared));
        // A streamed answer goes out in small writes: without TCP_NODELAY, Nagle's algorithm
        // and the client's delayed ACKs hold each one for up to 40 ms (measured: 30 ms a call).
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            if let Err(error) = tcp.set_nodelay(true) {
                tracing::debug!("the metering proxy cannot set TCP_NODELAY: {error}");
            }
        });
        let server = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::warn!("the metering proxy stopped: {error}");
            }
        });
        Ok(MeteringProxy {
            base_url: format!("http://{address}"),
            shared,
            servers: vec![server],
        })
    }

    /// Serve on the Unix socket `path` as well: the sandbox has its own network namespace,
    /// and gaffer's init relays the agent's `127.0.0.1:3129` to this socket.
    pub fn listen_unix(&mut self, path: &std::path::Path) -> Result<(), ProxyError> {
        let listener = tokio::net::UnixListener::bind(path).map_err(ProxyError::Bind)?;
        let app = router(Arc::clone(&self.shared));
        self.servers.push(tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::warn!("the metering proxy's socket stopped: {error}");
            }
        }));
        Ok(())
    }

    /// `http://127.0.0.1:<port>`: the Anthropic base URL (`ANTHROPIC_BASE_URL`); OpenAI
    /// clients take [`MeteringProxy::openai_base_url`].
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The base URL with `/v1`, as OpenAI clients expect it (`OPENAI_BASE_URL`).
    pub fn openai_base_url(&self) -> String {
        format!("{}/v1", self.base_url)
    }

    /// The key the agent uses; valid for this proxy only, for as long as it runs.
    pub fn token(&self) -> &str {
        &self.shared.token
    }

    /// What the proxy did so far.
    pub fn summary(&self) -> ProxySummary {
        lock(&self.shared.summary).clone()
    }

    /// Stop listening, wait (at most `grace`) for the streams still open to settle, and say
    /// what the proxy did. A stream still open after `grace` settles on its own when it ends.
    pub async fn finish(self, grace: Duration) -> ProxySummary {
        for server in &self.servers {
            server.abort();
        }
        self.shared.settling.close();
        let _ = tokio::time::timeout(grace, self.shared.settling.wait()).await;
        self.summary()
    }
}

fn router(shared: Arc<Shared>) -> axum::Router {
    axum::Router::new()
        .route("/v1/messages", post(messages))
        .route("/v1/messages/count_tokens", post(count_tokens))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/chat/completions", post(chat_completions))
        .route("/v1/responses", post(responses))
        .route("/responses", post(responses))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
        .with_state(shared)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn kind_name(kind: super::provider::ProviderKind) -> &'static str {
    match kind {
        super::provider::ProviderKind::Anthropic => "anthropic",
        super::provider::ProviderKind::OpenaiCompatible => "openai-compatible",
    }
}

fn kind_format(kind: super::provider::ProviderKind) -> &'static str {
    match kind {
        super::provider::ProviderKind::Anthropic => "Anthropic Messages",
        super::provider::ProviderKind::OpenaiCompatible => "OpenAI-compatible",
    }
}

/// 32 random bytes from the kernel, as hex.
fn new_token() -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(format!("gaffer-proxy-{}", hex::encode(bytes)))
}

impl Shared {
    /// Whether the request carries this proxy's token (`x-api-key` or a bearer token),
    /// compared in constant time.
    fn authorised(&self, headers: &HeaderMap) -> bool {
        let given = headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .or_else(|| {
                headers
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
            });
        given.is_some_and(|given| {
            let (a, b) = (given.as_bytes(), self.token.as_bytes());
            a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
        })
    }

    /// The model key a requested name maps to: a configured model by its key or provider id
    /// (refused unless granted), else a side-call name to the side model, else the routed one.
    fn resolve(&self, requested: &str) -> Result<String, Refusal> {
        let settings = &self.settings;
        let granted: Vec<&String> = std::iter::once(&settings.routed)
            .chain(settings.side.as_ref())
            .collect();
        if let Some(model) = self
            .gateway
            .models()
            .find(|m| m.key == requested || m.id == requested)
        {
            // The routed model's id may also be another model's: granted wins.
            if let Some(key) = granted.iter().find(|key| **key == requested).or_else(|| {
                granted.iter().find(|key| {
                    self.gateway
                        .model_and_provider(key)
                        .is_ok_and(|(m, _)| m.id == requested)
                })
            }) {
                return Ok((*key).clone());
            }
            return Err(Refusal::forbidden(format!(
                "gaffer: model `{requested}` (`{}`) is not granted to this attempt; it may use `{}`",
                model.key, settings.routed
            )));
        }
        let lower = requested.to_ascii_lowercase();
        if settings
            .side_patterns
            .iter()
            .any(|pattern| !pattern.is_empty() && lower.contains(pattern.as_str()))
        {
            return Ok(settings
                .side
                .clone()
                .unwrap_or_else(|| settings.routed.clone()));
        }
        Ok(settings.routed.clone())
    }

    fn count_refusal(&self, budget: Option<BudgetExhausted>) {
        let mut summary = lock(&self.summary);
        summary.refused += 1;
        if budget.is_some() {
            summary.budget = budget;
        }
    }

    fn count_call(&self, charged: MicroUsd) {
        let mut summary = lock(&self.summary);
        summary.calls += 1;
        summary.charged = summary.charged.saturating_add(charged);
    }
}

fn error_response(protocol: AgentProtocol, status: u16, kind: &str, message: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    (
        status,
        axum::Json(wire::error_body(protocol, kind, message)),
    )
        .into_response()
}

fn refuse(shared: &Shared, protocol: AgentProtocol, refusal: Refusal) -> Response {
    tracing::warn!(
        status = refusal.status,
        "the metering proxy refused a call: {}",
        refusal.message
    );
    shared.count_refusal(None);
    error_response(protocol, refusal.status, refusal.kind, &refusal.message)
}

async fn not_found(State(shared): State<Arc<Shared>>) -> Response {
    error_response(
        shared.settings.protocol,
        404,
        "not_found_error",
        "gaffer's metering proxy serves only the model endpoints of the agent's format",
    )
}

async fn messages(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    generate(&shared, AgentProtocol::Anthropic, &headers, body).await
}

async fn chat_completions(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    generate(&shared, AgentProtocol::OpenaiChat, &headers, body).await
}

async fn responses(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    generate(&shared, AgentProtocol::OpenaiResponses, &headers, body).await
}

/// Checks every generation request passes before anything is reserved: the token, the
/// format, the body, the refusals, the model.
fn admit<'a>(
    shared: &'a Shared,
    protocol: AgentProtocol,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(Value, wire::Inspected, &'a ModelEntry, &'a Arc<Provider>), Box<Response>> {
    if !shared.authorised(headers) {
        shared.count_refusal(None);
        return Err(Box::new(error_response(
            protocol,
            401,
            "authentication_error",
            "gaffer's metering proxy: this token is not valid here",
        )));
    }
    if protocol != shared.settings.protocol {
        return Err(Box::new(refuse(
            shared,
            protocol,
            Refusal::invalid(format!(
                "gaffer's metering proxy for this attempt speaks {}, not {}",
                shared.settings.protocol.describe(),
                protocol.describe()
            )),
        )));
    }
    let request: Value = serde_json::from_slice(body).map_err(|e| {
        Box::new(refuse(
            shared,
            protocol,
            Refusal::invalid(format!("the request body is not JSON: {e}")),
        ))
    })?;
    let inspected =
        wire::inspect(protocol, &request).map_err(|r| Box::new(refuse(shared, protocol, r)))?;
    let key = shared
        .resolve(&inspected.model)
        .map_err(|r| Box::new(refuse(shared, protocol, r)))?;
    let (model, provider) = shared.gateway.model_and_provider(&key).map_err(|e| {
        Box::new(error_response(
            protocol,
            500,
            "api_error",
            &format!("gaffer: {e}"),
        ))
    })?;
    Ok((request, inspected, model, provider))
}

/// The body to forward with the output bound `max_tokens`: the model id and the bound written
/// in, and a thinking budget that no longer fits under the bound halved (Anthropic requires it
/// below `max_tokens`), or turned off when half is under the least budget Anthropic accepts.
/// Rewrites `request` in place; calling it again with a smaller bound gives the body a first
/// call with that bound would have.
fn forwarded_body(
    protocol: AgentProtocol,
    request: &mut Value,
    inspected: &wire::Inspected,
    model_id: &str,
    max_tokens: u64,
) -> Result<Vec<u8>, serde_json::Error> {
    if let Some(budget) = inspected.thinking_budget
        && budget >= max_tokens
    {
        let halved = max_tokens / 2;
        if let Some(thinking) = request.get_mut("thinking").and_then(Value::as_object_mut) {
            if halved >= MIN_THINKING_BUDGET {
                thinking.insert("budget_tokens".into(), Value::from(halved));
            } else {
                thinking.clear();
                thinking.insert("type".into(), Value::from("disabled"));
            }
        }
    }
    wire::rewrite(protocol, request, model_id, max_tokens, inspected.stream);
    serde_json::to_vec(request)
}

/// One generation request: admit, reserve (clamping the output bound to what the caps still
/// allow), forward, settle.
async fn generate(
    shared: &Arc<Shared>,
    protocol: AgentProtocol,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let (mut request, inspected, model, provider) = match admit(shared, protocol, headers, &body) {
        Ok(admitted) => admitted,
        Err(response) => return *response,
    };
    if let Some(max) = shared.settings.max_calls {
        let admitted = shared
            .admitted
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if admitted >= max {
            shared
                .admitted
                .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            lock(&shared.summary).call_limit_hit = true;
            shared.count_refusal(None);
            return budget_refusal(
                protocol,
                &format!("gaffer: this attempt's {max} model calls are used up"),
            );
        }
    }
    let input_bound = (body.len() as u64).saturating_add(inspected.images * TOKENS_PER_IMAGE);
    let mut max_tokens = inspected
        .max_tokens
        .unwrap_or(u64::from(model.max_tokens))
        .min(u64::from(model.max_tokens));
    let mut scope = shared.settings.tag.scope.clone();
    scope.model = model.key.clone();
    scope.phase = Some(wire::phase(protocol, &request));
    let ledger = shared.gateway.ledger();
    // Each refusal names one cap; clamping to it may meet a narrower one, hence the loop
    // (bounded by the number of cap levels). The body is rewritten for the bound before each
    // reservation (the rewrite is idempotent, and the bound only shrinks), so that the
    // reservation can be made as sent: the request leaves right after it, and nothing between
    // the two can fail.
    let mut clamps_left = 8;
    let (reservation, forwarded) = loop {
        let forwarded =
            match forwarded_body(protocol, &mut request, &inspected, &model.id, max_tokens) {
                Ok(bytes) => bytes,
                Err(e) => {
                    return error_response(protocol, 500, "api_error", &format!("gaffer: {e}"));
                }
            };
        let worst = worst_case(model, provider, input_bound, max_tokens);
        match ledger
            .reserve_sent(
                &scope,
                CallTry::FIRST,
                worst,
                shared.settings.tag.attempt_cap,
            )
            .await
        {
            Ok(reservation) => break (reservation, forwarded),
            Err(LedgerError::Exhausted(exhausted)) => {
                let clamped = clamp_output(model, input_bound, &exhausted);
                match clamped {
                    Some(tokens) if clamps_left > 0 && tokens < max_tokens => {
                        clamps_left -= 1;
                        max_tokens = tokens;
                    }
                    _ => {
                        let message = format!("gaffer: {exhausted}");
                        tracing::warn!("the metering proxy refused a call: {message}");
                        shared.count_refusal(Some(exhausted));
                        return budget_refusal(protocol, &message);
                    }
                }
            }
            Err(LedgerError::Store(error)) => {
                return error_response(protocol, 500, "api_error", &format!("gaffer: {error}"));
            }
        }
    };
    let started = Instant::now();
    let beta = headers.get("anthropic-beta").and_then(|v| v.to_str().ok());
    let (response, slot) = match provider.forward(protocol.endpoint(), forwarded, beta).await {
        Ok(answer) => answer,
        Err((error, billing)) => {
            let charged =
                settle_failure(shared, model, &reservation, billing, started, &error).await;
            shared.count_call(charged);
            return error_response(
                protocol,
                502,
                "api_error",
                &format!("gaffer could not reach the provider: {error}"),
            );
        }
    };
    let status = response.status();
    let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
    if !status.is_success() {
        let after = retry_after_of(response.headers());
        let bytes = response.bytes().await.unwrap_or_default();
        drop(slot);
        let (error, billing) = provider.status_error(status.as_u16(), after, &bytes);
        let charged = settle_failure(shared, model, &reservation, billing, started, &error).await;
        shared.count_call(charged);
        // The provider's own answer goes on (the agent's retries read it), its key redacted.
        let text = provider.redact(String::from_utf8_lossy(&bytes).into_owned());
        let mut out = (status, text).into_response();
        set_content_type(&mut out, content_type);
        if let Some(after) = after {
            out.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(after.as_secs().max(u64::from(!after.is_zero()))),
            );
        }
        return out;
    }
    if !inspected.stream {
        let answer = response.bytes().await;
        drop(slot);
        return match answer {
            Ok(bytes) => {
                let usage = wire::body_usage(protocol, &bytes);
                let charged = settle_answer(shared, model, &reservation, usage, started).await;
                shared.count_call(charged);
                let mut out = (StatusCode::OK, bytes).into_response();
                set_content_type(&mut out, content_type);
                out
            }
            Err(e) => {
                let (error, billing) = provider.transport_error(e);
                let charged =
                    settle_failure(shared, model, &reservation, billing, started, &error).await;
                shared.count_call(charged);
                error_response(protocol, 502, "api_error", &format!("gaffer: {error}"))
            }
        };
    }
    stream(
        Arc::clone(shared),
        protocol,
        model.clone(),
        Arc::clone(provider),
        reservation,
        response,
        slot,
        started,
        content_type,
    )
}

/// Pass a streamed answer through as it comes, watching its events for the usage; settle
/// when it ends. A client that goes away ends the upstream request too (nothing more is
/// generated for no one), and the try is charged its reservation.
#[allow(clippy::too_many_arguments)]
fn stream(
    shared: Arc<Shared>,
    protocol: AgentProtocol,
    model: ModelEntry,
    provider: Arc<Provider>,
    reservation: Reservation,
    mut response: reqwest::Response,
    slot: tokio::sync::OwnedSemaphorePermit,
    started: Instant,
    content_type: Option<HeaderValue>,
) -> Response {
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(32);
    let settling = shared.settling.clone();
    settling.spawn(async move {
        let _slot = slot;
        let mut watch = StreamUsage::new(protocol);
        let mut failure: Option<ProviderError> = None;
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    watch.feed(&chunk);
                    if sender.send(Ok(chunk)).await.is_err() {
                        failure = Some(ProviderError::Transport {
                            provider: provider.config().name.clone(),
                            reason: "the agent closed the stream before its end".to_string(),
                        });
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let (error, _) = provider.transport_error(e);
                    let _ = sender
                        .send(Err(std::io::Error::other(error.to_string())))
                        .await;
                    failure = Some(error);
                    break;
                }
            }
        }
        drop(response);
        let charged = if failure.is_none() && watch.finished && watch.error.is_none() {
            settle_answer(
                &shared,
                &model,
                &reservation,
                watch.settled_usage(),
                started,
            )
            .await
        } else {
            let error = failure.unwrap_or_else(|| ProviderError::Transport {
                provider: provider.config().name.clone(),
                reason: match &watch.error {
                    Some(message) => format!("the stream reported an error: {message}"),
                    None => "the stream ended before its last event".to_string(),
                },
            });
            settle_failure(
                &shared,
                &model,
                &reservation,
                Billing::MaybeBilled,
                started,
                &error,
            )
            .await
        };
        shared.count_call(charged);
    });
    let body = futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    });
    let mut out = Response::new(Body::from_stream(body));
    set_content_type(
        &mut out,
        content_type.or(Some(HeaderValue::from_static("text/event-stream"))),
    );
    out.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    out
}

fn set_content_type(response: &mut Response, content_type: Option<HeaderValue>) {
    let value = content_type.unwrap_or(HeaderValue::from_static("application/json"));
    response.headers_mut().insert(header::CONTENT_TYPE, value);
}

/// A cap's refusal, in the format's shape, with the status that makes each kind of agent show
/// the message and stop: for Anthropic's format 402 `billing_error`, Anthropic's own status
/// for a request refused over billing (Claude Code 2.1.328 stops at once; a 400 it retries five
/// times with features removed, a 429 ten times); for OpenAI's formats 400, which Codex 0.169.0
/// shows at once (a 402 it retries five times, a 429 `insufficient_quota` it replaces with
/// its own words).
fn budget_refusal(protocol: AgentProtocol, message: &str) -> Response {
    match protocol {
        AgentProtocol::Anthropic => error_response(protocol, 402, "billing_error", message),
        AgentProtocol::OpenaiChat | AgentProtocol::OpenaiResponses => {
            error_response(protocol, 400, "budget_exhausted", message)
        }
    }
}

/// The largest output bound that fits under the cap that refused, with the input at its
/// worst; `None` when even the input does not fit or the model is not priced by tokens.
fn clamp_output(model: &ModelEntry, input_bound: u64, exhausted: &BudgetExhausted) -> Option<u64> {
    let Pricing::Tokens(prices) = model.pricing else {
        return None;
    };
    let headroom = u128::from(exhausted.limit.get().saturating_sub(exhausted.spent.get()));
    let input = u128::from(input_bound.min(model.context_window))
        * u128::from(prices.highest_input().get());
    let room = (headroom * 1_000_000).checked_sub(input)?;
    let output_price = u128::from(prices.output.get().max(1));
    let tokens = u64::try_from(room / output_price).unwrap_or(u64::MAX);
    (tokens >= MIN_CLAMPED_OUTPUT_TOKENS).then_some(tokens)
}

async fn settle_answer(
    shared: &Shared,
    model: &ModelEntry,
    reservation: &Reservation,
    usage: Option<crate::store::TokenCounts>,
    started: Instant,
) -> MicroUsd {
    match shared
        .gateway
        .settle_success(model, reservation, usage, started.elapsed())
        .await
    {
        Ok(settled) => settled.charged,
        Err(error) => {
            tracing::error!("the metering proxy could not settle a call: {error}");
            reservation.amount
        }
    }
}

async fn settle_failure(
    shared: &Shared,
    model: &ModelEntry,
    reservation: &Reservation,
    billing: Billing,
    started: Instant,
    error: &ProviderError,
) -> MicroUsd {
    match shared
        .gateway
        .settle_failure(model, reservation, billing, started.elapsed(), error)
        .await
    {
        Ok(charged) => charged,
        Err(error) => {
            tracing::error!("the metering proxy could not book a failed call: {error}");
            reservation.amount
        }
    }
}

/// `count_tokens` is free: it is passed to the routed model's provider unmetered, with the
/// same checks as a generation request.
async fn count_tokens(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let protocol = AgentProtocol::Anthropic;
    let (mut request, _, model, provider) = match admit(&shared, protocol, &headers, &body) {
        Ok(admitted) => admitted,
        Err(response) => return *response,
    };
    if let Some(object) = request.as_object_mut() {
        object.insert("model".into(), Value::from(model.id.clone()));
    }
    let beta = headers.get("anthropic-beta").and_then(|v| v.to_str().ok());
    let forwarded = serde_json::to_vec(&request).unwrap_or_default();
    match provider
        .forward(Endpoint::CountTokens, forwarded, beta)
        .await
    {
        Ok((response, _slot)) => {
            let status = response.status();
            let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
            let bytes = response.bytes().await.unwrap_or_default();
            let text = provider.redact(String::from_utf8_lossy(&bytes).into_owned());
            let mut out = (status, text).into_response();
            set_content_type(&mut out, content_type);
            out
        }
        Err((error, _)) => error_response(
            protocol,
            502,
            "api_error",
            &format!("gaffer could not reach the provider: {error}"),
        ),
    }
}

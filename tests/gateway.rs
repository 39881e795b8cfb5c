//! The metered gateway against a local fake provider speaking both wire formats: what reaches
//! the provider, what the ledger books, and each failure the issue names. Expected charges are
//! computed here from the fake provider's own log of the usage it returned, with plain
//! arithmetic, not with the ledger's cost function.

#[path = "support/fake_provider.rs"]
mod fake_provider;

use std::sync::Arc;
use std::time::Duration;

use fake_provider::{FakeProvider, Reply};
use gaffer::gateway::chat::{Block, ChatRequest, Message, StopReason, ToolSpec};
use gaffer::gateway::metered::{CallTag, Gateway, GatewayError, ModelEntry, Pricing};
use gaffer::gateway::provider::{Provider, ProviderConfig, ProviderError, ProviderKind};
use gaffer::ledger::{Caps, Electricity, Ledger, MicroUsd, Prices};
use gaffer::store::{
    CapLevel, Certainty, LedgerRow, LedgerStore, Phase, Role, RowScope, RowState, SqliteStore,
    Stage,
};
use serde_json::{Value, json};

// µ$ per Mtok: $1 in, $5 out, $0.10 cache read, $1.25 cache write.
const PRICES: Prices = Prices {
    input: MicroUsd(1_000_000),
    output: MicroUsd(5_000_000),
    cache_read: MicroUsd(100_000),
    cache_write: MicroUsd(1_250_000),
};

struct Setup {
    fake: FakeProvider,
    gateway: Gateway,
    store: Arc<SqliteStore>,
    _dir: tempfile::TempDir,
}

fn config(kind: ProviderKind, base_url: &str) -> ProviderConfig {
    let base = match kind {
        ProviderKind::Anthropic => base_url.to_string(),
        ProviderKind::OpenaiCompatible => format!("{base_url}/v1"),
    };
    let mut config = ProviderConfig::new("fake", kind, base);
    config.retry_min_delay = Duration::from_millis(10);
    config.max_retries = 2;
    config.request_timeout = Duration::from_secs(10);
    config
}

async fn setup(
    kind: ProviderKind,
    script: Vec<Reply>,
    caps: Caps,
    adjust: impl FnOnce(&mut ProviderConfig),
) -> Setup {
    let fake = FakeProvider::start(script).await;
    let mut config = config(kind, &fake.base_url);
    adjust(&mut config);
    let provider = Provider::new(config).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("gaffer.db")).unwrap());
    let ledger = Arc::new(Ledger::new(store.clone(), caps));
    let model = ModelEntry {
        key: "cheap".into(),
        provider: "fake".into(),
        id: "fake-model-1".into(),
        pricing: Pricing::Tokens(PRICES),
        max_tokens: 1_000,
        context_window: 200_000,
        fallbacks: vec![],
    };
    Setup {
        fake,
        gateway: Gateway::new([provider], [model], ledger),
        store,
        _dir: dir,
    }
}

fn tag() -> CallTag {
    CallTag {
        scope: RowScope {
            phase: Some(Phase::Explore),
            ..RowScope::attempt("run-1", "T-1", 1, Stage::Implement, Role::Agent)
        },
        attempt_cap: None,
    }
}

fn request() -> ChatRequest {
    ChatRequest {
        system: Some("You fix bugs.".into()),
        messages: vec![Message::user("Fix the pagination bug in src/api/users.rs")],
        max_tokens: 500,
        ..ChatRequest::default()
    }
}

fn openai_reply(prompt: u64, completion: u64, cached: u64) -> Reply {
    Reply::json(
        200,
        json!({
            "id": "chatcmpl-1", "object": "chat.completion", "model": "fake-model-1-2026",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Done."}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
                      "prompt_tokens_details": {"cached_tokens": cached}}
        }),
    )
}

/// The charge for an OpenAI usage object, by hand: uncached = prompt − cached.
fn openai_charge(usage: &Value) -> u64 {
    let prompt = usage["prompt_tokens"].as_u64().unwrap();
    let completion = usage["completion_tokens"].as_u64().unwrap();
    let cached = usage["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap_or(0);
    let micro_token_dollars = (prompt - cached) as u128 * 1_000_000
        + cached as u128 * 100_000
        + completion as u128 * 5_000_000;
    micro_token_dollars.div_ceil(1_000_000) as u64
}

fn only_row(setup: &Setup) -> LedgerRow {
    let rows = setup.store.rows().unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    rows.into_iter().next().unwrap()
}

/// The reservation for `request()` against model `cheap`, by hand: every input byte (+ framing)
/// at the dearest input price ($1.25/Mtok) and 500 output tokens at $5/Mtok.
fn reservation_for(request: &ChatRequest) -> u64 {
    let bound = request.input_token_bound() as u128;
    (bound * 1_250_000 + 500 * 5_000_000).div_ceil(1_000_000) as u64
}

/// The call of `request()` on `cheap`, which must fail.
async fn failed_call(setup: &Setup) -> GatewayError {
    setup
        .gateway
        .complete(&tag(), "cheap", request())
        .await
        .unwrap_err()
}

/// A call whose provider's retries ran out: its tries on this provider, the last error, and
/// what all its tries were booked at.
fn retries_exhausted(err: &GatewayError) -> (usize, &ProviderError, MicroUsd) {
    match err {
        GatewayError::Provider {
            error: ProviderError::RetriesExhausted { attempts, last, .. },
            charged,
        } => (*attempts, last.as_ref(), *charged),
        other => panic!("expected exhausted retries, got {other:?}"),
    }
}

#[tokio::test]
async fn an_openai_answer_is_booked_at_what_its_usage_says() {
    let setup = setup(
        ProviderKind::OpenaiCompatible,
        vec![openai_reply(1_200, 80, 1_000)],
        Caps::default(),
        |_| {},
    )
    .await;
    let done = setup
        .gateway
        .complete(&tag(), "cheap", request())
        .await
        .unwrap();
    assert_eq!(done.response.text(), "Done.");
    assert_eq!(done.response.stop, StopReason::EndTurn);

    let received = setup.fake.received();
    assert_eq!(received.len(), 1);
    let sent = &received[0];
    assert_eq!(sent.path, "/v1/chat/completions");
    assert_eq!(sent.body["model"], "fake-model-1");
    assert_eq!(sent.body["max_tokens"], 500);
    assert_eq!(sent.body["messages"][0]["role"], "system");

    let expected = openai_charge(&sent.reply_json().unwrap()["usage"]);
    // (200 × 1 + 1 000 × 0.1 + 80 × 5) = 700 µ$.
    assert_eq!(expected, 700);
    assert_eq!(done.charged, MicroUsd(expected));
    let row = only_row(&setup);
    assert_eq!(
        (row.state, row.charged),
        (RowState::Settled, MicroUsd(expected))
    );
    assert_eq!(
        (row.tokens.input, row.tokens.cache_read, row.tokens.output),
        (200, 1_000, 80)
    );
    assert_eq!(row.scope.model, "cheap");
    assert_eq!(row.reserved, MicroUsd(reservation_for(&request())));
    assert!(!row.usage_missing && !row.overrun);
}

#[tokio::test]
async fn an_anthropic_tool_call_with_cache_usage_is_booked_exactly() {
    let reply = Reply::json(
        200,
        json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "fake-model-1",
            "content": [{"type": "text", "text": "Let me look."},
                        {"type": "tool_use", "id": "toolu_1", "name": "read_file", "input": {"path": "src/api/users.rs"}}],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 30, "output_tokens": 45, "cache_creation_input_tokens": 1_500, "cache_read_input_tokens": 2_000}
        }),
    );
    let setup = setup(
        ProviderKind::Anthropic,
        vec![reply],
        Caps::default(),
        |_| {},
    )
    .await;
    let mut req = request();
    req.tools = vec![ToolSpec {
        name: "read_file".into(),
        description: "Read a file".into(),
        parameters: r#"{"type":"object"}"#.into(),
    }];
    let done = setup.gateway.complete(&tag(), "cheap", req).await.unwrap();
    assert_eq!(done.response.stop, StopReason::ToolUse);
    assert_eq!(
        done.response.blocks[1],
        Block::ToolCall {
            id: "toolu_1".into(),
            name: "read_file".into(),
            arguments: r#"{"path":"src/api/users.rs"}"#.into()
        }
    );

    let sent = &setup.fake.received()[0];
    assert_eq!(sent.path, "/v1/messages");
    assert_eq!(sent.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(sent.body["tools"][0]["cache_control"]["type"], "ephemeral");
    let usage = &sent.reply_json().unwrap()["usage"];
    // Anthropic's input_tokens exclude the cache: 30 × 1 + 1 500 × 1.25 + 2 000 × 0.1 + 45 × 5
    //   = 30 + 1 875 + 200 + 225 = 2 330 µ$.
    let by_hand = (usage["input_tokens"].as_u64().unwrap() as u128 * 1_000_000
        + usage["cache_creation_input_tokens"].as_u64().unwrap() as u128 * 1_250_000
        + usage["cache_read_input_tokens"].as_u64().unwrap() as u128 * 100_000
        + usage["output_tokens"].as_u64().unwrap() as u128 * 5_000_000)
        .div_ceil(1_000_000) as u64;
    assert_eq!(by_hand, 2_330);
    assert_eq!(done.charged, MicroUsd(by_hand));
    let row = only_row(&setup);
    assert_eq!(
        (row.tokens.cache_write, row.tokens.cache_read),
        (1_500, 2_000)
    );
}

#[tokio::test]
async fn a_429_waits_as_long_as_retry_after_says() {
    let script = vec![
        Reply::json(
            429,
            json!({"error": {"message": "Rate limit reached", "type": "rate_limit_exceeded"}}),
        )
        .header("retry-after", "1"),
        openai_reply(100, 10, 0),
    ];
    let setup = setup(
        ProviderKind::OpenaiCompatible,
        script,
        Caps::default(),
        |_| {},
    )
    .await;
    let done = setup
        .gateway
        .complete(&tag(), "cheap", request())
        .await
        .unwrap();
    assert_eq!(done.attempts, 2);
    let received = setup.fake.received();
    assert_eq!(received.len(), 2);
    let waited = received[1].at - received[0].at;
    assert!(
        waited >= Duration::from_secs(1),
        "retried after {waited:?}, before the 1 s Retry-After"
    );
    assert_eq!(
        done.charged,
        MicroUsd(openai_charge(&received[1].reply_json().unwrap()["usage"]))
    );
    // The 429 is a refusal, not billed: its try is kept, released; the answer is charged.
    let rows = setup.store.rows().unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(
        (rows[0].state, rows[0].charged),
        (RowState::Released, MicroUsd(0))
    );
    assert_eq!(rows[1].charged, done.charged);
}

#[tokio::test]
async fn an_overloaded_provider_is_retried_and_its_refusals_cost_nothing() {
    // An OpenAI-compatible 503 ("overloaded") is a refusal before any model runs: each try is
    // its own row, released, and the call's reservation is free again for the next try.
    let error = || {
        Reply::json(
            503,
            json!({"error": {"message": "engine overloaded", "type": "server_error"}}),
        )
    };
    let setup = setup(
        ProviderKind::OpenaiCompatible,
        vec![error(), error(), error()],
        Caps::default(),
        |_| {},
    )
    .await;
    let err = failed_call(&setup).await;
    let (attempts, last, charged) = retries_exhausted(&err);
    assert_eq!(attempts, 3, "the first try and max_retries = 2");
    assert_eq!(charged, MicroUsd(0), "a refusal is not billed");
    assert!(
        last.to_string()
            .contains("HTTP 503: server_error: engine overloaded"),
        "{last}"
    );
    assert_eq!(setup.fake.received().len(), 3);
    let rows = setup.store.rows().unwrap();
    assert_eq!(rows.len(), 3, "one row per try on the wire: {rows:?}");
    for (i, row) in rows.iter().enumerate() {
        assert_eq!((row.state, row.charged), (RowState::Released, MicroUsd(0)));
        assert_eq!(row.call_id, Some(rows[0].id), "one call");
        assert_eq!(row.try_number, Some(i as u32 + 1));
        assert!(row.outcome.as_deref().unwrap().starts_with("not billed: "));
    }
    assert_eq!(
        setup.store.spent(CapLevel::Task, &tag().scope).unwrap(),
        MicroUsd(0),
        "nothing stays held against the caps"
    );
}

#[tokio::test]
async fn server_errors_that_may_be_billed_are_charged_each_try_its_reservation() {
    // A 500 may come after the model ran (or from a proxy in front of one that did): each try
    // is charged its reservation, flagged as usage missing.
    let error = || {
        Reply::json(
            500,
            json!({"error": {"message": "upstream exploded", "type": "server_error"}}),
        )
    };
    let setup = setup(
        ProviderKind::OpenaiCompatible,
        vec![error(), error(), error()],
        Caps::default(),
        |_| {},
    )
    .await;
    let reservation = reservation_for(&request());
    let err = failed_call(&setup).await;
    let (attempts, _, charged) = retries_exhausted(&err);
    assert_eq!((attempts, charged), (3, MicroUsd(3 * reservation)));
    assert_eq!(setup.fake.received().len(), 3);
    let rows = setup.store.rows().unwrap();
    assert_eq!(rows.len(), 3);
    for row in &rows {
        assert_eq!(
            (row.state, row.charged),
            (RowState::Settled, MicroUsd(reservation))
        );
        assert_eq!(row.certainty(), Some(Certainty::Estimated));
        assert!(
            row.outcome
                .as_deref()
                .unwrap()
                .contains("upstream exploded")
        );
    }
}

#[tokio::test]
async fn a_client_error_is_not_retried() {
    let reply = Reply::json(
        400,
        json!({"type": "error", "error": {"type": "invalid_request_error", "message": "max_tokens: too large"}}),
    );
    let setup = setup(
        ProviderKind::Anthropic,
        vec![reply],
        Caps::default(),
        |_| {},
    )
    .await;
    let err = setup
        .gateway
        .complete(&tag(), "cheap", request())
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("HTTP 400: invalid_request_error: max_tokens: too large"),
        "{err}"
    );
    assert_eq!(setup.fake.received().len(), 1);
    // Refused before the model ran: the try is kept, free, its reservation given back.
    let row = only_row(&setup);
    assert_eq!((row.state, row.charged), (RowState::Released, MicroUsd(0)));
    assert_eq!(row.certainty(), None);
}

#[tokio::test]
async fn a_cut_off_try_and_its_good_retry_are_both_charged() {
    // The provider billed two answers: the first was cut off on the way (the reservation
    // stands for it, flagged), the second arrived with its usage.
    let setup = setup(
        ProviderKind::OpenaiCompatible,
        vec![
            openai_reply(120, 40, 0).truncated(40),
            openai_reply(120, 40, 0),
        ],
        Caps::default(),
        |_| {},
    )
    .await;
    let done = setup
        .gateway
        .complete(&tag(), "cheap", request())
        .await
        .unwrap();
    let received = setup.fake.received();
    assert_eq!(received.len(), 2);
    let answered = openai_charge(&received[1].reply_json().unwrap()["usage"]);
    let reservation = reservation_for(&request());
    assert_eq!(done.charged, MicroUsd(reservation + answered));
    assert_eq!(done.attempts, 2);
    let rows = setup.store.rows().unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0].charged, MicroUsd(reservation));
    assert_eq!(rows[0].certainty(), Some(Certainty::Estimated));
    assert_eq!(rows[1].charged, MicroUsd(answered));
    assert_eq!(rows[1].certainty(), Some(Certainty::Measured));
    assert_eq!(
        (rows[0].call_id, rows[1].call_id),
        (Some(rows[0].id), Some(rows[0].id))
    );
    assert_eq!(
        setup.store.spent(CapLevel::Task, &tag().scope).unwrap(),
        MicroUsd(reservation + answered)
    );
}

#[tokio::test]
async fn every_timed_out_try_is_charged_when_retries_run_out() {
    // Three tries that time out after the request left: the provider may have billed each.
    let slow = || openai_reply(2_500, 900, 0).delayed(Duration::from_secs(3));
    let setup = setup(
        ProviderKind::OpenaiCompatible,
        vec![slow(), slow(), slow()],
        Caps::default(),
        |c| c.request_timeout = Duration::from_millis(300),
    )
    .await;
    let reservation = reservation_for(&request());
    let err = failed_call(&setup).await;
    let (attempts, _, charged) = retries_exhausted(&err);
    assert_eq!((attempts, charged), (3, MicroUsd(3 * reservation)));
    assert_eq!(setup.fake.received().len(), 3);
    let rows = setup.store.rows().unwrap();
    assert_eq!(rows.len(), 3);
    assert!(
        rows.iter()
            .all(|r| r.charged == MicroUsd(reservation)
                && r.certainty() == Some(Certainty::Estimated))
    );
}

#[tokio::test]
async fn the_caps_bound_the_sum_of_a_calls_tries() {
    // Room for two tries' reservations under the task cap, not three: the third try is
    // refused before it leaves, and the call stops on the budget with the two charged.
    let reservation = reservation_for(&request());
    let caps = Caps {
        per_task: Some(MicroUsd(2 * reservation + reservation / 2)),
        ..Caps::default()
    };
    let slow = || openai_reply(2_500, 900, 0).delayed(Duration::from_secs(3));
    let setup = setup(
        ProviderKind::OpenaiCompatible,
        vec![slow(), slow(), slow()],
        caps,
        |c| c.request_timeout = Duration::from_millis(300),
    )
    .await;
    let err = setup
        .gateway
        .complete(&tag(), "cheap", request())
        .await
        .unwrap_err();
    match &err {
        GatewayError::Budget { exhausted, charged } => {
            assert_eq!(*charged, MicroUsd(2 * reservation));
            assert_eq!(exhausted.spent, MicroUsd(2 * reservation));
        }
        other => panic!("expected the budget to stop the call, got {other:?}"),
    }
    assert_eq!(setup.fake.received().len(), 2, "the third try never left");
    let rows = setup.store.rows().unwrap();
    assert_eq!(rows.len(), 2);
    let total: MicroUsd = rows.iter().map(|r| r.charged).sum();
    assert_eq!(total, MicroUsd(2 * reservation));
    assert!(total <= MicroUsd(2 * reservation + reservation / 2));
}

#[tokio::test]
async fn a_refused_connection_costs_nothing_however_often_it_is_tried() {
    // A port with nothing listening: the connection is never made, nothing is sent.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("gaffer.db")).unwrap());
    let ledger = Arc::new(Ledger::new(store.clone(), Caps::default()));
    let model = ModelEntry {
        key: "cheap".into(),
        provider: "fake".into(),
        id: "fake-model-1".into(),
        pricing: Pricing::Tokens(PRICES),
        max_tokens: 1_000,
        context_window: 200_000,
        fallbacks: vec![],
    };
    let provider = Provider::new(config(ProviderKind::OpenaiCompatible, &base)).unwrap();
    let gateway = Gateway::new([provider], [model], ledger);
    for _run in 0..2 {
        let err = gateway
            .complete(&tag(), "cheap", request())
            .await
            .unwrap_err();
        let (attempts, last, charged) = retries_exhausted(&err);
        assert_eq!((attempts, charged), (3, MicroUsd(0)));
        assert!(matches!(last, ProviderError::Transport { .. }), "{last}");
    }
    let rows = store.rows().unwrap();
    assert_eq!(rows.len(), 6, "three tries a run, each kept as a row");
    assert!(
        rows.iter()
            .all(|r| r.state == RowState::Released && r.charged.is_zero())
    );
    assert_eq!(
        rows.iter()
            .filter_map(|r| r.call_id)
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        2,
        "two calls"
    );
    for level in [CapLevel::Task, CapLevel::Day, CapLevel::Month] {
        assert_eq!(
            store.spent(level, &tag().scope).unwrap(),
            MicroUsd(0),
            "{level}"
        );
    }
}

#[tokio::test]
async fn a_slow_answer_past_the_timeout_is_charged_its_reservation() {
    let slow = openai_reply(100, 10, 0).delayed(Duration::from_secs(3));
    let setup = setup(
        ProviderKind::OpenaiCompatible,
        vec![slow],
        Caps::default(),
        |c| {
            c.request_timeout = Duration::from_millis(300);
            c.max_retries = 0;
        },
    )
    .await;
    let err = setup
        .gateway
        .complete(&tag(), "cheap", request())
        .await
        .unwrap_err();
    match &err {
        GatewayError::Provider {
            error: ProviderError::Timeout { .. },
            charged,
        } => {
            // The provider may have done (and billed) the work: never free.
            assert_eq!(*charged, MicroUsd(reservation_for(&request())));
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(only_row(&setup).usage_missing);
}

#[tokio::test]
async fn garbage_is_a_typed_error_charged_its_reservation() {
    let setup = setup(
        ProviderKind::OpenaiCompatible,
        vec![Reply::raw(200, b"<html>Bad gateway</html>")],
        Caps::default(),
        |_| {},
    )
    .await;
    let err = setup
        .gateway
        .complete(&tag(), "cheap", request())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("not the JSON expected"), "{text}");
    assert!(text.contains("<html>Bad gateway</html>"), "{text}");
    let row = only_row(&setup);
    assert_eq!(row.charged, MicroUsd(reservation_for(&request())));
    assert!(row.usage_missing);
}

#[tokio::test]
async fn a_truncated_body_is_an_error_charged_its_reservation() {
    let cut = openai_reply(100, 10, 0).truncated(40);
    let setup = setup(
        ProviderKind::OpenaiCompatible,
        vec![cut],
        Caps::default(),
        |c| c.max_retries = 0,
    )
    .await;
    let err = setup
        .gateway
        .complete(&tag(), "cheap", request())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            GatewayError::Provider {
                error: ProviderError::Transport { .. } | ProviderError::Wire { .. },
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        only_row(&setup).charged,
        MicroUsd(reservation_for(&request()))
    );
}

#[tokio::test]
async fn missing_usage_is_never_free() {
    let reply = Reply::json(
        200,
        json!({"choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}]}),
    );
    let setup = setup(
        ProviderKind::OpenaiCompatible,
        vec![reply],
        Caps::default(),
        |_| {},
    )
    .await;
    let done = setup
        .gateway
        .complete(&tag(), "cheap", request())
        .await
        .unwrap();
    assert!(done.usage_missing);
    assert_eq!(done.charged, MicroUsd(reservation_for(&request())));
    assert!(only_row(&setup).usage_missing);
}

#[tokio::test]
async fn a_call_over_budget_never_reaches_the_provider() {
    let caps = Caps {
        per_task: Some(MicroUsd(1_000)),
        ..Caps::default()
    };
    let setup = setup(
        ProviderKind::OpenaiCompatible,
        vec![openai_reply(1, 1, 0)],
        caps,
        |_| {},
    )
    .await;
    let err = setup
        .gateway
        .complete(&tag(), "cheap", request())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, GatewayError::Budget { .. }), "{text}");
    assert!(
        text.starts_with("budget exhausted: the task cap of $0.001 would be exceeded"),
        "{text}"
    );
    assert!(setup.fake.received().is_empty());
    assert!(setup.store.rows().unwrap().is_empty());
}

#[tokio::test]
async fn a_local_model_is_charged_for_its_power() {
    let setup = setup(
        ProviderKind::OpenaiCompatible,
        vec![openai_reply(100, 10, 0)],
        Caps::default(),
        |_| {},
    )
    .await;
    // Rebuild the gateway with a local model on the same fake.
    let provider =
        Provider::new(config(ProviderKind::OpenaiCompatible, &setup.fake.base_url)).unwrap();
    let ledger = Arc::new(Ledger::new(setup.store.clone(), Caps::default()));
    let local = ModelEntry {
        key: "local".into(),
        provider: "fake".into(),
        id: "qwen".into(),
        pricing: Pricing::Electricity(Electricity {
            watts: 350,
            micro_usd_per_kwh: MicroUsd(300_000),
        }),
        max_tokens: 1_000,
        context_window: 32_000,
        fallbacks: vec![],
    };
    let gateway = Gateway::new([provider], [local], ledger);
    let done = gateway.complete(&tag(), "local", request()).await.unwrap();
    let row = only_row(&setup);
    // 350 W × wall × $0.30/kWh, rounded up: at least 1 µ$, and exactly what the formula gives.
    let by_hand = (350u128 * row.wall_ms as u128 * 300_000).div_ceil(3_600_000_000) as u64;
    assert_eq!(done.charged, MicroUsd(by_hand));
    assert_eq!(row.charged, MicroUsd(by_hand));
    assert_eq!(row.tokens.output, 10);
    // The reservation was the power for the provider's whole time bound (900 s): 26 250 µ$.
    assert_eq!(row.reserved, MicroUsd(26_250));
}

#[tokio::test]
async fn the_api_key_appears_nowhere() {
    let env = format!("GAFFER_TEST_KEY_{}", std::process::id());
    let key = "sk-test-7f3a9c2e-DO-NOT-LEAK";
    // SAFETY: the variable name is unique to this test process and test.
    unsafe { std::env::set_var(&env, key) };
    let echo = Reply::json(
        401,
        json!({"error": {"message": format!("Incorrect API key provided: {key}"), "type": "invalid_request_error"}}),
    );
    let setup = setup(
        ProviderKind::OpenaiCompatible,
        vec![echo],
        Caps::default(),
        |c| c.api_key_env = Some(env.clone()),
    )
    .await;
    let err = setup
        .gateway
        .complete(&tag(), "cheap", request())
        .await
        .unwrap_err();
    // The key did go to the provider...
    assert_eq!(
        setup.fake.received()[0].header("authorization"),
        Some(format!("Bearer {key}").as_str())
    );
    // ...and nowhere else.
    let text = format!("{err} {err:?}");
    assert!(!text.contains(key), "{text}");
    assert!(text.contains("[redacted]"), "{text}");
    let rows = format!("{:?}", setup.store.rows().unwrap());
    assert!(!rows.contains(key), "{rows}");
    assert!(!format!("{:?}", setup.gateway).contains(key));
}

/// A small deterministic generator: the usage mixes vary widely and the test stays repeatable.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below
    }
}

/// The charge for an Anthropic usage object, by hand.
fn anthropic_charge(usage: &Value) -> u64 {
    let n = |k: &str| usage[k].as_u64().unwrap_or(0) as u128;
    (n("input_tokens") * 1_000_000
        + n("cache_creation_input_tokens") * 1_250_000
        + n("cache_read_input_tokens") * 100_000
        + n("output_tokens") * 5_000_000)
        .div_ceil(1_000_000) as u64
}

#[tokio::test]
async fn ledger_totals_equal_the_sum_of_usage_times_price_for_every_mix() {
    const CALLS: usize = 60;
    let mut rng = Lcg(0x5eed);
    for kind in [ProviderKind::OpenaiCompatible, ProviderKind::Anthropic] {
        let script: Vec<Reply> = (0..CALLS)
            .map(|_| {
                // Mixes from all-zero to large, with and without each cache field.
                let scale = [1, 10, 1_000, 100_000][rng.next(4) as usize];
                let (a, b, c, d) = (rng.next(scale), rng.next(scale), rng.next(scale), rng.next(scale));
                match kind {
                    ProviderKind::OpenaiCompatible => openai_reply(a + b, c, b),
                    ProviderKind::Anthropic => {
                        let mut usage = json!({"input_tokens": a, "output_tokens": c});
                        if rng.next(2) == 0 { usage["cache_read_input_tokens"] = json!(b); }
                        if rng.next(2) == 0 { usage["cache_creation_input_tokens"] = json!(d); }
                        Reply::json(200, json!({
                            "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn", "usage": usage
                        }))
                    }
                }
            })
            .collect();
        let setup = setup(kind, script, Caps::default(), |_| {}).await;
        for _ in 0..CALLS {
            setup
                .gateway
                .complete(&tag(), "cheap", request())
                .await
                .unwrap();
        }
        let expected: u64 = setup
            .fake
            .received()
            .iter()
            .map(|r| {
                let usage = &r.reply_json().unwrap()["usage"];
                match kind {
                    ProviderKind::OpenaiCompatible => openai_charge(usage),
                    ProviderKind::Anthropic => anthropic_charge(usage),
                }
            })
            .sum();
        let booked: u64 = setup
            .store
            .rows()
            .unwrap()
            .iter()
            .map(|r| r.charged.get())
            .sum();
        assert_eq!(booked, expected, "{kind:?}");
        assert_eq!(setup.store.rows().unwrap().len(), CALLS);
    }
}

/// A gateway over two fake providers, `first` and `second`, with model `cheap` on the first
/// falling back to `cheap-elsewhere` on the second.
async fn two_providers(
    first: Vec<Reply>,
    second: Vec<Reply>,
    caps: Caps,
) -> (
    FakeProvider,
    FakeProvider,
    Gateway,
    Arc<SqliteStore>,
    tempfile::TempDir,
) {
    let primary = FakeProvider::start(first).await;
    let secondary = FakeProvider::start(second).await;
    let provider = |name: &str, fake: &FakeProvider| {
        let mut c = config(ProviderKind::OpenaiCompatible, &fake.base_url);
        c.name = name.to_string();
        c.max_retries = 1;
        Provider::new(c).unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("gaffer.db")).unwrap());
    let model = |key: &str, provider: &str, fallbacks: Vec<String>| ModelEntry {
        key: key.into(),
        provider: provider.into(),
        id: "m".into(),
        pricing: Pricing::Tokens(PRICES),
        max_tokens: 1_000,
        context_window: 200_000,
        fallbacks,
    };
    let gateway = Gateway::new(
        [provider("first", &primary), provider("second", &secondary)],
        [
            model("cheap", "first", vec!["cheap-elsewhere".into()]),
            model("cheap-elsewhere", "second", vec![]),
        ],
        Arc::new(Ledger::new(store.clone(), caps)),
    );
    (primary, secondary, gateway, store, dir)
}

#[tokio::test]
async fn a_failing_provider_falls_back_to_the_same_class_elsewhere() {
    let error = || {
        Reply::json(
            503,
            json!({"error": {"message": "overloaded", "type": "server_error"}}),
        )
    };
    let (primary, secondary, gateway, store, _dir) = two_providers(
        vec![error(), error()],
        vec![openai_reply(100, 10, 0)],
        Caps::default(),
    )
    .await;
    let done = gateway.complete(&tag(), "cheap", request()).await.unwrap();
    assert_eq!(done.model, "cheap-elsewhere");
    assert_eq!(
        primary.received().len(),
        2,
        "the first try and its one retry"
    );
    let rows = store.rows().unwrap();
    assert_eq!(rows.len(), 3, "each try is booked on its own");
    for row in &rows[..2] {
        assert_eq!(
            (row.scope.model.as_str(), row.state, row.charged),
            ("cheap", RowState::Released, MicroUsd(0))
        );
        assert!(row.outcome.as_deref().unwrap().contains("overloaded"));
    }
    let expected = openai_charge(&secondary.received()[0].reply_json().unwrap()["usage"]);
    assert_eq!(
        (rows[2].scope.model.as_str(), rows[2].charged),
        ("cheap-elsewhere", MicroUsd(expected))
    );
    assert_eq!(done.charged, MicroUsd(expected));
    assert_eq!(done.attempts, 3);
    assert!(
        rows.iter().all(|r| r.call_id == Some(rows[0].id)),
        "the fallback's try belongs to the same call"
    );
    assert_eq!(
        rows.iter().map(|r| r.try_number).collect::<Vec<_>>(),
        [Some(1), Some(2), Some(3)]
    );
}

#[tokio::test]
async fn a_budget_refusal_does_not_fall_back() {
    let caps = Caps {
        per_task: Some(MicroUsd(10)),
        ..Caps::default()
    };
    let (primary, secondary, gateway, _store, _dir) =
        two_providers(vec![], vec![openai_reply(1, 1, 0)], caps).await;
    assert!(matches!(
        gateway.complete(&tag(), "cheap", request()).await,
        Err(GatewayError::Budget { .. })
    ));
    assert!(primary.received().is_empty() && secondary.received().is_empty());
}

#[tokio::test]
async fn a_provider_never_has_more_requests_in_flight_than_its_limit() {
    for limit in [1usize, 3] {
        let slow = || openai_reply(10, 1, 0).delayed(Duration::from_millis(150));
        let setup = setup(
            ProviderKind::OpenaiCompatible,
            vec![slow(), slow(), slow()],
            Caps::default(),
            |c| c.concurrency = limit,
        )
        .await;
        let tag = tag();
        let calls = (0..3).map(|_| setup.gateway.complete(&tag, "cheap", request()));
        for result in futures_join_all(calls).await {
            result.unwrap();
        }
        assert_eq!(setup.fake.max_in_flight(), limit, "concurrency = {limit}");
    }
}

/// Join futures without another dependency: they all run on this task, so the provider's
/// limit is what serialises them.
async fn futures_join_all<F: std::future::Future>(
    futures: impl IntoIterator<Item = F>,
) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futures {
        set.push(Box::pin(f));
    }
    let mut out: Vec<Option<F::Output>> = set.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter()
        .map(|v| v.expect("every future finished"))
        .collect()
}

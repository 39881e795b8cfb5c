//! The metering proxy that external agents call, against the scripted provider in all three
//! wire formats, streaming and not: what reaches the provider (the routed model, the clamped
//! output bound, the upstream key and never the agent's token), what the agent gets back
//! (the provider's bytes, or an error in the format's own shape), and what the ledger books.
//! Expected charges are computed here by hand from the usage the scripted provider returned.

#[path = "support/fake_provider.rs"]
mod fake_provider;

use std::sync::Arc;
use std::time::Duration;

use fake_provider::{FakeProvider, Reply};
use gaffer::gateway::metered::{CallTag, Gateway, ModelEntry, Pricing};
use gaffer::gateway::metering_proxy::{AgentProtocol, MeteringProxy, ProxyError, ProxySettings};
use gaffer::gateway::provider::{Provider, ProviderConfig, ProviderKind};
use gaffer::ledger::{Caps, Ledger, MicroUsd, Prices};
use gaffer::store::{Certainty, LedgerStore, Phase, Role, RowScope, RowState, SqliteStore, Stage};
use serde_json::{Value, json};

/// µ$ per Mtok of the routed model: $3 in, $15 out, $0.30 cache read, $3.75 cache write.
const STRONG: Prices = Prices {
    input: MicroUsd(3_000_000),
    output: MicroUsd(15_000_000),
    cache_read: MicroUsd(300_000),
    cache_write: MicroUsd(3_750_000),
};
/// The side model: $1 in, $5 out, $0.10 cache read, $1.25 cache write.
const CHEAP: Prices = Prices {
    input: MicroUsd(1_000_000),
    output: MicroUsd(5_000_000),
    cache_read: MicroUsd(100_000),
    cache_write: MicroUsd(1_250_000),
};
const UPSTREAM_KEY: &str = "sk-upstream-CANARY-7c1e55d0a4";
const KEY_ENV: &str = "GAFFER_TEST_METERING_PROXY_UPSTREAM_KEY";

struct Setup {
    fake: FakeProvider,
    proxy: MeteringProxy,
    store: Arc<SqliteStore>,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

fn model(key: &str, id: &str, prices: Prices) -> ModelEntry {
    ModelEntry {
        key: key.into(),
        provider: "upstream".into(),
        id: id.into(),
        pricing: Pricing::Tokens(prices),
        max_tokens: 8_192,
        context_window: 200_000,
        fallbacks: vec![],
    }
}

fn gateway(
    kind: ProviderKind,
    base_url: &str,
    caps: Caps,
) -> (Arc<Gateway>, Arc<SqliteStore>, tempfile::TempDir) {
    // SAFETY: every test of this binary sets the same value.
    unsafe { std::env::set_var(KEY_ENV, UPSTREAM_KEY) };
    let base = match kind {
        ProviderKind::Anthropic => base_url.to_string(),
        ProviderKind::OpenaiCompatible => format!("{base_url}/v1"),
    };
    let mut config = ProviderConfig::new("upstream", kind, base);
    config.api_key_env = Some(KEY_ENV.into());
    config.request_timeout = Duration::from_secs(10);
    let provider = Provider::new(config).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("gaffer.db")).unwrap());
    let ledger = Arc::new(Ledger::new(store.clone(), caps));
    let models = [
        model("strong", "claude-sonnet-4-5", STRONG),
        model("cheap", "claude-haiku-4-5", CHEAP),
        model("opus", "claude-opus-4-5", STRONG),
    ];
    (
        Arc::new(Gateway::new([provider], models, ledger)),
        store,
        dir,
    )
}

fn settings(protocol: AgentProtocol) -> ProxySettings {
    ProxySettings {
        protocol,
        routed: "strong".into(),
        side: Some("cheap".into()),
        side_patterns: vec!["haiku".into()],
        tag: CallTag {
            scope: RowScope {
                phase: Some(Phase::Implement),
                ..RowScope::attempt("run-1", "T-1", 1, Stage::Implement, Role::Agent)
            },
            attempt_cap: None,
        },
        max_calls: Some(3),
    }
}

async fn setup(protocol: AgentProtocol, script: Vec<Reply>, caps: Caps) -> Setup {
    let fake = FakeProvider::start(script).await;
    let (gateway, store, dir) = gateway(protocol.provider_kind(), &fake.base_url, caps);
    let proxy = MeteringProxy::start(gateway, settings(protocol))
        .await
        .unwrap();
    Setup {
        fake,
        proxy,
        store,
        client: reqwest::Client::new(),
        _dir: dir,
    }
}

impl Setup {
    /// POST `body` to the proxy's `path` as the agent would, with its token.
    async fn post(&self, path: &str, body: &Value) -> (u16, String) {
        let response = self
            .client
            .post(format!("{}{path}", self.proxy.base_url()))
            .header("x-api-key", self.proxy.token())
            .header("authorization", format!("Bearer {}", self.proxy.token()))
            .header("anthropic-version", "2023-06-01")
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    }

    /// The ledger's rows once every stream has settled.
    async fn rows(&self) -> Vec<gaffer::store::LedgerRow> {
        for _ in 0..200 {
            let rows = self.store.rows().unwrap();
            if rows
                .iter()
                .all(|r| r.state != RowState::Reserved && r.state != RowState::Sent)
            {
                return rows;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("a row never settled: {:?}", self.store.rows().unwrap());
    }
}

/// The charge of four counts at `prices`, by hand: Σ count × price per Mtok, rounded up once.
fn charge(prices: Prices, input: u64, cache_read: u64, cache_write: u64, output: u64) -> u64 {
    let sum = input as u128 * prices.input.get() as u128
        + cache_read as u128 * prices.cache_read.get() as u128
        + cache_write as u128 * prices.cache_write.get() as u128
        + output as u128 * prices.output.get() as u128;
    sum.div_ceil(1_000_000) as u64
}

fn anthropic_stream(input: u64, cache_read: u64, cache_write: u64, output: u64) -> Reply {
    Reply::sse(&[
        (
            "message_start",
            json!({"type": "message_start", "message": {
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": input, "cache_read_input_tokens": cache_read,
                      "cache_creation_input_tokens": cache_write, "output_tokens": 1}}}),
        ),
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "text", "text": ""}}),
        ),
        ("ping", json!({"type": "ping"})),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "text_delta", "text": "Done."}}),
        ),
        (
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ),
        (
            "message_delta",
            json!({"type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": null},
            "usage": {"output_tokens": output}}),
        ),
        ("message_stop", json!({"type": "message_stop"})),
    ])
}

/// A whole Anthropic answer of one input and one output token.
fn short_answer() -> Reply {
    Reply::json(
        200,
        json!({"id": "m", "type": "message", "role": "assistant", "model": "x",
            "content": [], "stop_reason": "end_turn", "usage": {"input_tokens": 1, "output_tokens": 1}}),
    )
}

fn anthropic_request(model: &str, stream: bool) -> Value {
    json!({
        "model": model,
        "max_tokens": 32_000,
        "stream": stream,
        "system": [{"type": "text", "text": "You are a coding agent."}],
        "messages": [{"role": "user", "content": "Fix the pagination bug."}],
        "tools": [{"name": "Write", "description": "Write a file",
                   "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"}}}}],
    })
}

#[tokio::test]
async fn an_anthropic_stream_passes_through_and_is_booked_at_its_usage() {
    let reply = anthropic_stream(1_000, 300, 400, 200);
    let streamed = String::from_utf8(reply.body.clone()).unwrap();
    let setup = setup(AgentProtocol::Anthropic, vec![reply], Caps::default()).await;
    let (status, body) = setup
        .post(
            "/v1/messages?beta=true",
            &anthropic_request("claude-sonnet-4-5", true),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body, streamed,
        "the agent gets the provider's bytes unchanged"
    );

    let received = setup.fake.received();
    assert_eq!(received.len(), 1);
    let sent = &received[0];
    assert_eq!(sent.path, "/v1/messages");
    assert_eq!(sent.body["model"], "claude-sonnet-4-5");
    assert_eq!(
        sent.body["max_tokens"], 8_192,
        "clamped to the model's max_tokens"
    );
    assert_eq!(sent.header("x-api-key"), Some(UPSTREAM_KEY));
    assert!(
        !format!("{:?}", sent.headers).contains(setup.proxy.token()),
        "the agent's token never reaches the provider"
    );

    let rows = setup.rows().await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = &rows[0];
    // 1,000 × 3 + 300 × 0.30 + 400 × 3.75 + 200 × 15 = 3,000 + 90 + 1,500 + 3,000 µ$.
    assert_eq!(row.charged.get(), 7_590);
    assert_eq!(row.charged.get(), charge(STRONG, 1_000, 300, 400, 200));
    assert_eq!(row.scope.model, "strong");
    assert_eq!(row.scope.task_id.as_deref(), Some("T-1"));
    assert_eq!(row.scope.attempt, Some(1));
    // The agent's first call of the conversation reads the task.
    assert_eq!(row.scope.phase, Some(Phase::ReadTask));
    assert_eq!(row.certainty(), Some(Certainty::Measured));
    let summary = setup.proxy.finish(Duration::from_secs(5)).await;
    assert_eq!(summary.calls, 1);
    assert_eq!(summary.charged, MicroUsd(7_590));
}

#[tokio::test]
async fn a_whole_anthropic_answer_is_booked_from_its_body() {
    let answer = json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
        "content": [{"type": "text", "text": "a title"}], "stop_reason": "end_turn",
        "usage": {"input_tokens": 120, "output_tokens": 9, "cache_read_input_tokens": 0,
                  "cache_creation_input_tokens": 0}
    });
    let setup = setup(
        AgentProtocol::Anthropic,
        vec![Reply::json(200, answer.clone())],
        Caps::default(),
    )
    .await;
    // A side call for a small model maps to the side model.
    let (status, body) = setup
        .post(
            "/v1/messages",
            &anthropic_request("claude-3-5-haiku-20241022", false),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), answer);
    assert_eq!(setup.fake.received()[0].body["model"], "claude-haiku-4-5");
    let rows = setup.rows().await;
    assert_eq!(rows[0].scope.model, "cheap");
    // 120 × 1 + 9 × 5 µ$.
    assert_eq!(rows[0].charged.get(), 165);
}

#[tokio::test]
async fn any_model_name_maps_to_the_routed_model_and_an_ungranted_one_is_refused() {
    let setup = setup(
        AgentProtocol::Anthropic,
        vec![short_answer(), short_answer()],
        Caps::default(),
    )
    .await;
    let (status, _) = setup
        .post(
            "/v1/messages",
            &anthropic_request("some-model-the-agent-likes", false),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = setup
        .post("/v1/messages", &anthropic_request("strong", false))
        .await;
    assert_eq!(status, 200);
    let ids: Vec<Value> = setup
        .fake
        .received()
        .iter()
        .map(|r| r.body["model"].clone())
        .collect();
    assert_eq!(
        ids,
        vec![json!("claude-sonnet-4-5"), json!("claude-sonnet-4-5")]
    );

    // A configured model the router did not grant: refused, in Anthropic's error shape.
    let (status, body) = setup
        .post("/v1/messages", &anthropic_request("claude-opus-4-5", false))
        .await;
    assert_eq!(status, 403, "{body}");
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["type"], "error");
    assert_eq!(error["error"]["type"], "permission_error");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not granted"),
        "{body}"
    );
    assert_eq!(
        setup.fake.received().len(),
        2,
        "the refused call never left"
    );
    assert_eq!(setup.rows().await.len(), 2);
}

#[tokio::test]
async fn the_attempts_turns_bound_its_calls() {
    let setup = setup(
        AgentProtocol::Anthropic,
        vec![short_answer(); 4],
        Caps::default(),
    )
    .await;
    for _ in 0..3 {
        let (status, _) = setup
            .post(
                "/v1/messages",
                &anthropic_request("claude-sonnet-4-5", false),
            )
            .await;
        assert_eq!(status, 200);
    }
    let (status, body) = setup
        .post(
            "/v1/messages",
            &anthropic_request("claude-sonnet-4-5", false),
        )
        .await;
    assert_eq!(status, 402, "{body}");
    assert!(body.contains("3 model calls are used up"), "{body}");
    assert_eq!(setup.fake.received().len(), 3);
    assert!(setup.proxy.summary().call_limit_hit);
}

#[tokio::test]
async fn without_the_attempts_token_nothing_passes() {
    let setup = setup(AgentProtocol::Anthropic, vec![], Caps::default()).await;
    for key in ["", "sk-ant-guess", UPSTREAM_KEY] {
        let response = setup
            .client
            .post(format!("{}/v1/messages", setup.proxy.base_url()))
            .header("x-api-key", key)
            .header("content-type", "application/json")
            .body(anthropic_request("claude-sonnet-4-5", false).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 401, "key {key:?}");
        let body: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
        assert_eq!(body["error"]["type"], "authentication_error");
    }
    assert!(setup.fake.received().is_empty());
    assert!(setup.store.rows().unwrap().is_empty());
}

#[tokio::test]
async fn provider_side_tools_and_mcp_servers_never_leave() {
    let setup = setup(AgentProtocol::Anthropic, vec![], Caps::default()).await;
    let mut with_search = anthropic_request("claude-sonnet-4-5", true);
    with_search["tools"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "web_search_20250305", "name": "web_search", "max_uses": 5}));
    let mut with_fetch = anthropic_request("claude-sonnet-4-5", true);
    with_fetch["tools"] = json!([{"type": "web_fetch_20250910", "name": "web_fetch"}]);
    let mut with_code = anthropic_request("claude-sonnet-4-5", true);
    with_code["tools"] = json!([{"type": "code_execution_20250825", "name": "code_execution"}]);
    let mut with_mcp = anthropic_request("claude-sonnet-4-5", true);
    with_mcp["mcp_servers"] =
        json!([{"type": "url", "url": "https://canary.invalid/mcp", "name": "x"}]);
    for request in [with_search, with_fetch, with_code, with_mcp] {
        let (status, body) = setup.post("/v1/messages", &request).await;
        assert_eq!(status, 403, "{body}");
        assert!(body.contains("gaffer refuses"), "{body}");
    }
    assert!(setup.fake.received().is_empty());
    assert!(setup.store.rows().unwrap().is_empty());
    assert_eq!(setup.proxy.summary().refused, 4);
}

#[tokio::test]
async fn the_output_bound_is_clamped_to_what_the_cap_still_allows() {
    let caps = Caps {
        per_task: Some(MicroUsd(50_000)),
        ..Caps::default()
    };
    let setup = setup(
        AgentProtocol::Anthropic,
        vec![anthropic_stream(100, 0, 0, 50)],
        caps,
    )
    .await;
    let request = anthropic_request("claude-sonnet-4-5", true);
    let (status, _) = setup.post("/v1/messages", &request).await;
    assert_eq!(status, 200);
    // The whole body's bytes bound its input tokens, at the dearest input price ($3.75);
    // what is left of $0.05 buys floor(left / $15 per Mtok) output tokens.
    let bytes = serde_json::to_vec(&request).unwrap().len() as u128;
    let expected = (50_000u128 * 1_000_000 - bytes * 3_750_000) / 15_000_000;
    assert!(expected < 8_192 && expected > 1_024, "{expected}");
    assert_eq!(setup.fake.received()[0].body["max_tokens"], expected as u64);
}

#[tokio::test]
async fn a_call_the_cap_refuses_gets_the_caps_message_in_the_formats_shape() {
    // The first call (100 in, 50 out: 1,050 µ$) fits; then a $0.01 task cap cannot hold the
    // next call's input plus even 1,024 output tokens (15,360 µ$ alone).
    let caps = Caps {
        per_task: Some(MicroUsd(10_000)),
        ..Caps::default()
    };
    let setup = setup(
        AgentProtocol::Anthropic,
        vec![anthropic_stream(100, 0, 0, 50)],
        caps,
    )
    .await;
    let mut small = anthropic_request("claude-sonnet-4-5", true);
    small["max_tokens"] = json!(300);
    let (status, _) = setup.post("/v1/messages", &small).await;
    assert_eq!(status, 200);
    let (status, body) = setup
        .post(
            "/v1/messages",
            &anthropic_request("claude-sonnet-4-5", true),
        )
        .await;
    assert_eq!(status, 402, "{body}");
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["type"], "error");
    assert_eq!(error["error"]["type"], "billing_error");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("gaffer: budget exhausted: the task cap of $0.01"),
        "{message}"
    );
    assert_eq!(
        setup.fake.received().len(),
        1,
        "the refused call never left"
    );
    let rows = setup.rows().await;
    let spent: u64 = rows.iter().map(|r| r.charged.get()).sum();
    assert_eq!(spent, charge(STRONG, 100, 0, 0, 50));
    assert!(spent <= 10_000);
    let summary = setup.proxy.finish(Duration::from_secs(5)).await;
    let budget = summary
        .budget
        .expect("the refusal is kept for the attempt's ending");
    assert_eq!(budget.limit, MicroUsd(10_000));
}

#[tokio::test]
async fn a_stream_cut_off_is_charged_its_reservation_flagged() {
    let reply = anthropic_stream(1_000, 0, 0, 200);
    let cut = reply.body.len() / 2;
    let setup = setup(
        AgentProtocol::Anthropic,
        vec![reply.truncated(cut)],
        Caps::default(),
    )
    .await;
    let request = anthropic_request("claude-sonnet-4-5", true);
    let _ = setup.post("/v1/messages", &request).await;
    let rows = setup.rows().await;
    assert_eq!(rows.len(), 1);
    // The reservation: every body byte at $3.75 plus 8,192 output tokens at $15.
    let bytes = serde_json::to_vec(&request).unwrap().len() as u128;
    let reserved = (bytes * 3_750_000 + 8_192 * 15_000_000).div_ceil(1_000_000) as u64;
    assert_eq!(rows[0].charged.get(), reserved);
    assert!(rows[0].usage_missing, "{:?}", rows[0]);
    assert_eq!(rows[0].certainty(), Some(Certainty::Estimated));
}

#[tokio::test]
async fn a_refusal_by_the_provider_is_passed_on_and_not_billed() {
    let setup = setup(
        AgentProtocol::Anthropic,
        vec![
            Reply::json(
                429,
                json!({"type": "error", "error": {"type": "rate_limit_error",
                    "message": format!("slow down, key {UPSTREAM_KEY}")}}),
            )
            .header("retry-after", "7"),
        ],
        Caps::default(),
    )
    .await;
    let response = setup
        .client
        .post(format!("{}/v1/messages", setup.proxy.base_url()))
        .header("x-api-key", setup.proxy.token())
        .header("content-type", "application/json")
        .body(anthropic_request("claude-sonnet-4-5", false).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 429);
    assert_eq!(
        response
            .headers()
            .get("retry-after")
            .unwrap()
            .to_str()
            .unwrap(),
        "7"
    );
    let body = response.text().await.unwrap();
    assert!(
        !body.contains(UPSTREAM_KEY),
        "the upstream key is redacted: {body}"
    );
    assert!(body.contains("rate_limit_error"));
    let rows = setup.rows().await;
    assert_eq!(rows[0].charged.get(), 0);
    assert!(rows[0].released_unbilled(), "{:?}", rows[0]);
}

#[tokio::test]
async fn count_tokens_is_passed_on_unmetered() {
    let setup = setup(
        AgentProtocol::Anthropic,
        vec![Reply::json(200, json!({"input_tokens": 42}))],
        Caps::default(),
    )
    .await;
    let (status, body) = setup
        .post(
            "/v1/messages/count_tokens",
            &json!({"model": "claude-3-5-haiku-latest", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["input_tokens"],
        42
    );
    let sent = &setup.fake.received()[0];
    assert_eq!(sent.path, "/v1/messages/count_tokens");
    assert_eq!(sent.body["model"], "claude-haiku-4-5");
    assert!(setup.store.rows().unwrap().is_empty());
}

#[tokio::test]
async fn an_openai_chat_stream_is_asked_for_its_usage_and_booked_at_it() {
    let reply = Reply::sse(&[
        (
            "",
            json!({"id": "c1", "object": "chat.completion.chunk", "choices": [
            {"index": 0, "delta": {"role": "assistant", "content": "Done."}, "finish_reason": null}]}),
        ),
        (
            "",
            json!({"id": "c1", "object": "chat.completion.chunk", "choices": [
            {"index": 0, "delta": {}, "finish_reason": "stop"}]}),
        ),
        (
            "",
            json!({"id": "c1", "object": "chat.completion.chunk", "choices": [],
            "usage": {"prompt_tokens": 2_006, "completion_tokens": 300,
                      "prompt_tokens_details": {"cached_tokens": 1_920}}}),
        ),
        ("", json!("[DONE]")),
    ]);
    let setup = setup(AgentProtocol::OpenaiChat, vec![reply], Caps::default()).await;
    let (status, body) = setup
        .post(
            "/v1/chat/completions",
            &json!({"model": "gpt-whatever", "stream": true, "max_tokens": 1_000,
                    "messages": [{"role": "user", "content": "Fix it."}]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.ends_with("data: [DONE]\n\n"));
    let sent = &setup.fake.received()[0];
    assert_eq!(sent.path, "/v1/chat/completions");
    assert_eq!(sent.body["stream_options"]["include_usage"], true);
    assert_eq!(sent.body["model"], "claude-sonnet-4-5");
    assert_eq!(
        sent.header("authorization"),
        Some(format!("Bearer {UPSTREAM_KEY}").as_str())
    );
    let rows = setup.rows().await;
    // Uncached 2,006 − 1,920 = 86 at $3, 1,920 cached at $0.30, 300 out at $15.
    assert_eq!(rows[0].charged.get(), 86 * 3 + 576 + 300 * 15);
    assert_eq!(rows[0].charged.get(), charge(STRONG, 86, 1_920, 0, 300));
}

#[tokio::test]
async fn a_responses_stream_is_booked_at_the_usage_of_its_completion() {
    let reply = Reply::sse(&[
        (
            "response.created",
            json!({"type": "response.created", "response": {"id": "resp_1", "status": "in_progress"}}),
        ),
        (
            "response.output_text.delta",
            json!({"type": "response.output_text.delta", "delta": "Done."}),
        ),
        (
            "response.completed",
            json!({"type": "response.completed", "response": {
            "id": "resp_1", "status": "completed",
            "usage": {"input_tokens": 5_000, "input_tokens_details": {"cached_tokens": 4_000},
                      "output_tokens": 700, "output_tokens_details": {"reasoning_tokens": 300},
                      "total_tokens": 5_700}}}),
        ),
    ]);
    let setup = setup(AgentProtocol::OpenaiResponses, vec![reply], Caps::default()).await;
    let (status, _) = setup
        .post(
            "/v1/responses",
            &json!({"model": "gpt-5-codex", "stream": true, "store": false,
                    "input": [{"role": "user", "content": "Fix it."}],
                    "tools": [{"type": "function", "name": "shell", "parameters": {}}]}),
        )
        .await;
    assert_eq!(status, 200);
    let sent = &setup.fake.received()[0];
    assert_eq!(sent.path, "/v1/responses");
    assert_eq!(sent.body["max_output_tokens"], 8_192);
    let rows = setup.rows().await;
    // 1,000 uncached at $3, 4,000 cached at $0.30, 700 out (reasoning included) at $15.
    assert_eq!(rows[0].charged.get(), 3_000 + 1_200 + 10_500);

    let (status, body) = setup
        .post(
            "/v1/responses",
            &json!({"model": "gpt-5-codex", "previous_response_id": "resp_1", "input": []}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(body.contains("previous_response_id"), "{body}");
    assert_eq!(setup.fake.received().len(), 1);
}

#[tokio::test]
async fn an_agent_whose_format_the_routed_provider_does_not_speak_is_refused_at_start() {
    let fake = FakeProvider::start(vec![]).await;
    let (gateway, _store, _dir) = gateway(
        ProviderKind::OpenaiCompatible,
        &fake.base_url,
        Caps::default(),
    );
    let error = MeteringProxy::start(gateway, settings(AgentProtocol::Anthropic))
        .await
        .unwrap_err();
    assert!(
        matches!(error, ProxyError::WireMismatch { .. }),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "model `strong` is served by provider `upstream` in the OpenAI-compatible format, but the \
         agent speaks Anthropic Messages; gaffer does not translate between them: route this \
         agent to a model of a provider of kind `anthropic`"
    );
}

#[tokio::test]
async fn thinking_is_cut_to_fit_the_clamped_output_bound() {
    // $0.10 of task cap: the body's bytes at $3.75 per Mtok, the rest buys about 6,600 output
    // tokens at $15 (thinking on half); $0.03: about 1,950 (too few to halve: no thinking).
    for (cap, halved) in [(100_000u64, true), (30_000, false)] {
        let setup = setup(
            AgentProtocol::Anthropic,
            vec![short_answer()],
            Caps {
                per_task: Some(MicroUsd(cap)),
                ..Caps::default()
            },
        )
        .await;
        let mut request = anthropic_request("claude-sonnet-4-5", false);
        request["thinking"] = json!({"type": "enabled", "budget_tokens": 31_999});
        let (status, body) = setup.post("/v1/messages", &request).await;
        assert_eq!(status, 200, "{body}");
        let bytes = serde_json::to_vec(&request).unwrap().len() as u64;
        let max_tokens = (cap * 1_000_000 - bytes * 3_750_000) / 15_000_000;
        let sent = &setup.fake.received()[0].body;
        assert_eq!(sent["max_tokens"], max_tokens);
        if halved {
            assert_eq!(
                sent["thinking"],
                json!({"type": "enabled", "budget_tokens": max_tokens / 2})
            );
        } else {
            assert!(max_tokens / 2 < 1_024);
            assert_eq!(sent["thinking"], json!({"type": "disabled"}));
        }
    }
}

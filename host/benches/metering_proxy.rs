//! What the metering proxy adds to an external agent's model call — checking its token and
//! body, the worst-case reservation against every cap in the SQLite ledger (written as sent in
//! the same transaction), forwarding, watching the stream for its usage, settling — against the same streamed call
//! made directly to the same local server, in the same run: to the first byte of the stream,
//! and to its end.

#[path = "../../tests/support/fake_provider.rs"]
mod fake_provider;

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use fake_provider::{FakeProvider, Reply};
use gaffer::gateway::metered::{CallTag, Gateway, ModelEntry, Pricing};
use gaffer::gateway::metering_proxy::{AgentProtocol, MeteringProxy, ProxySettings};
use gaffer::gateway::provider::{Provider, ProviderConfig, ProviderKind};
use gaffer::ledger::{Caps, Ledger, MicroUsd, Prices};
use gaffer::store::{Phase, Role, RowScope, SqliteStore, Stage};
use serde_json::json;

/// A streamed Anthropic answer of a few events, as a provider sends one.
fn stream() -> Reply {
    Reply::sse(&[
        (
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg", "type": "message",
            "role": "assistant", "model": "m", "content": [], "stop_reason": null,
            "usage": {"input_tokens": 1200, "cache_read_input_tokens": 1000, "output_tokens": 1}}}),
        ),
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "text", "text": ""}}),
        ),
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
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"},
            "usage": {"output_tokens": 80}}),
        ),
        ("message_stop", json!({"type": "message_stop"})),
    ])
}

fn bench_proxy(c: &mut Criterion) {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let fake = tokio.block_on(FakeProvider::repeating(stream()));
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("gaffer.db")).unwrap());
    // Caps at every level, as a real configuration has them: each is checked per call.
    let caps = Caps {
        per_call: Some(MicroUsd(1_000_000_000)),
        per_attempt: Some(MicroUsd(1_000_000_000)),
        per_task: Some(MicroUsd(u64::MAX / 4)),
        per_run: Some(MicroUsd(u64::MAX / 4)),
        per_day: Some(MicroUsd(u64::MAX / 4)),
        per_month: Some(MicroUsd(u64::MAX / 4)),
        ..Caps::default()
    };
    let ledger = Arc::new(Ledger::new(store, caps));
    let provider = Provider::new(ProviderConfig::new(
        "fake",
        ProviderKind::Anthropic,
        fake.base_url.clone(),
    ))
    .unwrap();
    let model = ModelEntry {
        key: "strong".into(),
        provider: "fake".into(),
        id: "claude-sonnet-4-5".into(),
        pricing: Pricing::Tokens(Prices {
            input: MicroUsd(3_000_000),
            output: MicroUsd(15_000_000),
            cache_read: MicroUsd(300_000),
            cache_write: MicroUsd(3_750_000),
        }),
        max_tokens: 8_192,
        context_window: 200_000,
        fallbacks: vec![],
    };
    let gateway = Arc::new(Gateway::new([provider], [model], ledger));
    let proxy = tokio
        .block_on(MeteringProxy::start(
            gateway,
            ProxySettings {
                protocol: AgentProtocol::Anthropic,
                routed: "strong".into(),
                side: None,
                side_patterns: vec![],
                tag: CallTag {
                    scope: RowScope {
                        phase: Some(Phase::Implement),
                        ..RowScope::attempt("bench", "T-1", 1, Stage::Implement, Role::Agent)
                    },
                    attempt_cap: None,
                },
                max_calls: None,
            },
        ))
        .unwrap();
    let body = json!({
        "model": "claude-sonnet-4-5", "max_tokens": 1024, "stream": true,
        "system": [{"type": "text", "text": "You are a coding agent."}],
        "messages": [{"role": "user", "content": "Fix the pagination bug in src/api/users.rs"}],
    })
    .to_string();
    let client = reqwest::Client::new();
    let direct = format!("{}/v1/messages", fake.base_url);
    let proxied = format!("{}/v1/messages", proxy.base_url());
    let token = proxy.token().to_string();
    let send = |url: &str| {
        client
            .post(url)
            .header("x-api-key", &token)
            .header("content-type", "application/json")
            .body(body.clone())
    };

    let mut group = c.benchmark_group("metering-proxy");
    for (name, url) in [("direct", &direct), ("proxied", &proxied)] {
        group.bench_function(format!("{name}-first-byte"), |b| {
            b.iter(|| {
                tokio.block_on(async {
                    let mut response = send(url).send().await.unwrap();
                    response.chunk().await.unwrap()
                })
            })
        });
        group.bench_function(format!("{name}-whole-call"), |b| {
            b.iter(|| {
                tokio.block_on(async {
                    let response = send(url).send().await.unwrap();
                    response.bytes().await.unwrap()
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_proxy);
criterion_main!(benches);

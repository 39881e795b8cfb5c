//! The overhead the gateway adds to a model call — worst-case reservation against the caps in
//! the SQLite ledger, written as sent in the same transaction, building the request, parsing
//! the answer, settling — against
//! the same HTTP exchange made directly with reqwest, in the same run, with a local server that
//! answers at once.

#[path = "../../tests/support/fake_provider.rs"]
mod fake_provider;

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use fake_provider::{FakeProvider, Reply};
use gaffer::gateway::chat::{ChatRequest, Message};
use gaffer::gateway::metered::{CallTag, Gateway, ModelEntry, Pricing};
use gaffer::gateway::provider::{Provider, ProviderConfig, ProviderKind};
use gaffer::ledger::{Caps, Ledger, MicroUsd, Prices};
use gaffer::store::{Phase, Role, RowScope, SqliteStore, Stage};
use serde_json::json;

fn bench_gateway(c: &mut Criterion) {
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let reply = Reply::json(
        200,
        json!({
            "model": "m", "choices": [{"message": {"content": "ok"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1200, "completion_tokens": 80, "prompt_tokens_details": {"cached_tokens": 1000}}
        }),
    );
    let fake = tokio.block_on(FakeProvider::repeating(reply));
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
        ProviderKind::OpenaiCompatible,
        format!("{}/v1", fake.base_url),
    ))
    .unwrap();
    let model = ModelEntry {
        key: "cheap".into(),
        provider: "fake".into(),
        id: "m".into(),
        pricing: Pricing::Tokens(Prices {
            input: MicroUsd(1_000_000),
            output: MicroUsd(5_000_000),
            cache_read: MicroUsd(100_000),
            cache_write: MicroUsd(1_250_000),
        }),
        max_tokens: 1_000,
        context_window: 200_000,
        fallbacks: vec![],
    };
    let gateway = Gateway::new([provider], [model], ledger);
    let tag = CallTag {
        scope: RowScope {
            phase: Some(Phase::Implement),
            ..RowScope::attempt("bench", "T-1", 1, Stage::Implement, Role::Agent)
        },
        attempt_cap: None,
    };
    let request = ChatRequest {
        system: Some("You fix bugs.".into()),
        messages: vec![Message::user("Fix the pagination bug in src/api/users.rs")],
        max_tokens: 500,
        ..ChatRequest::default()
    };
    let body = gaffer::gateway::openai::request_body(&request, Default::default()).to_string();
    let client = reqwest::Client::new();
    let url = format!("{}/v1/chat/completions", fake.base_url);

    let mut group = c.benchmark_group("gateway");
    group.bench_function("raw-http-post", |b| {
        b.iter(|| {
            tokio.block_on(async {
                let response = client.post(&url).body(body.clone()).send().await.unwrap();
                response.bytes().await.unwrap()
            })
        })
    });
    group.bench_function("metered-call-sqlite-ledger", |b| {
        b.iter(|| {
            tokio
                .block_on(gateway.complete(&tag, "cheap", request.clone()))
                .unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, bench_gateway);
criterion_main!(benches);

//! The model-backed reference plugins through the real runtime, with the plugins' metered
//! `complete` reaching the gateway and a local fake provider: their decisions, their fallbacks,
//! and their cost in the ledger under the plugin's role and stage.

#[path = "support/fake_provider.rs"]
mod fake_provider;
mod support;

use std::sync::{Arc, Mutex};

use fake_provider::{FakeProvider, Reply};
use gaffer::gateway::metered::{Gateway, ModelEntry, Pricing};
use gaffer::gateway::provider::{Provider, ProviderConfig, ProviderKind};
use gaffer::ledger::{Caps, Ledger, MicroUsd, Prices};
use gaffer::pipeline::plugin_models::GatewayModels;
use gaffer::plugin::types::{
    CapLevel, Completion, CompletionRequest, HostError, MoneyLeft, TokenCounts, Verdict,
};
use gaffer::plugin::{
    BoxFuture, CallContext, ModelAccess, Plugin, PluginCaller, PluginSpec, World, samples,
};
use gaffer::store::{LedgerStore, Role, SqliteStore, Stage};
use serde_json::json;
use support::{guest, runtime_with};

/// The gateway's model access, keeping every answer it hands to the plugin: what the plugin's
/// `complete` received.
struct Answers {
    inner: GatewayModels,
    given: Mutex<Vec<Result<Completion, HostError>>>,
}

impl Answers {
    fn given(&self) -> Vec<Result<Completion, HostError>> {
        self.given.lock().unwrap().clone()
    }
}

impl ModelAccess for Answers {
    fn complete<'a>(
        &'a self,
        caller: &'a PluginCaller,
        request: CompletionRequest,
    ) -> BoxFuture<'a, Result<Completion, HostError>> {
        Box::pin(async move {
            let answer = self.inner.complete(caller, request).await;
            self.given.lock().unwrap().push(answer.clone());
            answer
        })
    }
}

struct Setup {
    fake: FakeProvider,
    store: Arc<SqliteStore>,
    plugin: Plugin,
    answers: Arc<Answers>,
    _dir: tempfile::TempDir,
}

async fn setup(world: World, name: &str, answers: &[&str], caps: Caps) -> Setup {
    let script = answers
        .iter()
        .map(|text| {
            Reply::json(
                200,
                json!({
                    "model": "fake-cheap",
                    "choices": [{"message": {"content": text}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 900, "completion_tokens": 12}
                }),
            )
        })
        .collect();
    let fake = FakeProvider::start(script).await;
    let mut config = ProviderConfig::new(
        "fake",
        ProviderKind::OpenaiCompatible,
        format!("{}/v1", fake.base_url),
    );
    config.max_retries = 0;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("gaffer.db")).unwrap());
    let ledger = Arc::new(Ledger::new(store.clone(), caps));
    let model = ModelEntry {
        key: "cheap".into(),
        provider: "fake".into(),
        id: "fake-cheap".into(),
        pricing: Pricing::Tokens(Prices {
            input: MicroUsd(1_000_000),
            output: MicroUsd(5_000_000),
            cache_read: MicroUsd(100_000),
            cache_write: MicroUsd(1_250_000),
        }),
        max_tokens: 2_000,
        context_window: 200_000,
        fallbacks: vec![],
    };
    let gateway = Arc::new(Gateway::new(
        [Provider::new(config).unwrap()],
        [model],
        ledger,
    ));
    let answers = Arc::new(Answers {
        inner: GatewayModels::new(gateway, "run-1"),
        given: Mutex::new(Vec::new()),
    });
    let (runtime, _) = runtime_with(answers.clone());
    let mut spec = PluginSpec::new(world, guest(name));
    spec.grants.complete = vec!["cheap".into()];
    if world == World::Router {
        spec.fallback_model = Some("cheap".into());
    }
    Setup {
        plugin: runtime.load(spec).unwrap(),
        fake,
        store,
        answers,
        _dir: dir,
    }
}

/// 900 prompt tokens × $1/Mtok + 12 completion tokens × $5/Mtok = 900 + 60 = 960 µ$.
const ONE_ANSWER: MicroUsd = MicroUsd(960);

#[tokio::test]
async fn model_review_approves_on_the_models_word_and_books_it_as_verifier_cost() {
    let s = setup(
        World::Verifier,
        "model-review",
        &["{\"verdict\": \"approve\"}"],
        Caps::default(),
    )
    .await;
    let called = s
        .plugin
        .verify(&CallContext::new("T-1", 2), &samples::verify_request())
        .await
        .unwrap();
    assert_eq!(called.decision, Verdict::Approve);
    let sent = &s.fake.received()[0];
    let prompt = sent.body["messages"][1]["content"].as_str().unwrap();
    assert!(prompt.contains("Fix off-by-one in pagination"), "{prompt}");
    assert!(
        prompt.contains("+    let last = (pages - 1) * size;"),
        "the diff is in the prompt: {prompt}"
    );
    let rows = s.store.rows().unwrap();
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(
        (row.scope.role, row.scope.stage),
        (Role::Verifier, Stage::Verify)
    );
    assert_eq!(
        (row.scope.task_id.as_deref(), row.scope.attempt),
        (Some("T-1"), Some(2))
    );
    assert_eq!(row.charged, ONE_ANSWER);
    // What the plugin's `complete` received from the gateway: the fake provider's OpenAI
    // `finish_reason: "stop"` in the contract's name, its usage and the charge.
    let given = s.answers.given();
    assert_eq!(given.len(), 1);
    let answer = given[0].as_ref().expect("the gateway answered");
    assert_eq!(answer.stop_reason, "end_turn");
    assert_eq!(answer.text, "{\"verdict\": \"approve\"}");
    assert_eq!(answer.model, "fake-cheap");
    assert_eq!(
        answer.usage,
        TokenCounts {
            input: 900,
            output: 12,
            cache_read: 0,
            cache_write: 0,
        }
    );
    assert_eq!(answer.cost, ONE_ANSWER);
}

#[tokio::test]
async fn model_review_rejects_with_the_models_reasons() {
    let answer = "Here you go:\n```json\n{\"verdict\": \"reject\", \"reasons\": [{\"message\": \"the last page is still dropped when total < size\", \"path\": \"src/api/users.rs\", \"line\": 11}]}\n```";
    let s = setup(World::Verifier, "model-review", &[answer], Caps::default()).await;
    let called = s
        .plugin
        .verify(&CallContext::new("T-1", 1), &samples::verify_request())
        .await
        .unwrap();
    let Verdict::Reject(findings) = called.decision else {
        panic!("expected a rejection")
    };
    assert_eq!(findings[0].path.as_deref(), Some("src/api/users.rs"));
    assert_eq!(findings[0].line, Some(11));
}

#[tokio::test]
async fn model_review_fails_closed_on_an_answer_it_cannot_parse() {
    let s = setup(
        World::Verifier,
        "model-review",
        &["Looks great to me!"],
        Caps::default(),
    )
    .await;
    let called = s
        .plugin
        .verify(&CallContext::new("T-1", 1), &samples::verify_request())
        .await
        .unwrap();
    let Verdict::Reject(findings) = called.decision else {
        panic!("an unreadable review must reject")
    };
    assert!(
        findings[0].message.contains("fail closed"),
        "{}",
        findings[0].message
    );
    assert_eq!(
        s.store.rows().unwrap()[0].charged,
        ONE_ANSWER,
        "the review was still paid for"
    );
}

#[tokio::test]
async fn model_review_hands_over_when_the_budget_refuses() {
    let caps = Caps {
        per_task: Some(MicroUsd(100)),
        ..Caps::default()
    };
    let s = setup(
        World::Verifier,
        "model-review",
        &["{\"verdict\": \"approve\"}"],
        caps,
    )
    .await;
    let called = s
        .plugin
        .verify(&CallContext::new("T-1", 1), &samples::verify_request())
        .await
        .unwrap();
    let Verdict::NeedsHuman(reason) = &called.decision else {
        panic!("expected needs-human, got {:?}", called.decision)
    };
    assert!(
        reason.contains("budget exhausted: the task cap of $0.0001"),
        "{reason}"
    );
    assert!(s.fake.received().is_empty(), "nothing was sent");
}

#[tokio::test]
async fn triage_routes_by_the_models_class() {
    let s = setup(World::Router, "triage", &["architectural"], Caps::default()).await;
    let mut request = samples::route_request();
    request.budget.money = vec![MoneyLeft {
        level: CapLevel::Task,
        cap: MicroUsd(20_000_000),
        spent: MicroUsd(0),
        left: MicroUsd(20_000_000),
    }];
    let called = s
        .plugin
        .route(&CallContext::new("T-1", 1), &request)
        .await
        .unwrap();
    assert!(called.fault.is_none(), "{:?}", called.fault);
    assert_eq!(
        called.decision.model, "strong",
        "{}",
        called.decision.reason
    );
    assert!(
        called
            .decision
            .reason
            .starts_with("the triage model classed the task `architectural`"),
        "{}",
        called.decision.reason
    );
    let row = &s.store.rows().unwrap()[0];
    assert_eq!(
        (row.scope.role, row.scope.stage, row.charged),
        (Role::Router, Stage::Route, ONE_ANSWER)
    );
    let given = s.answers.given();
    assert_eq!(given.len(), 1);
    let answer = given[0].as_ref().expect("the gateway answered");
    assert_eq!(
        (answer.text.as_str(), answer.stop_reason.as_str()),
        ("architectural", "end_turn")
    );
}

#[tokio::test]
async fn triage_falls_back_to_the_rules_when_the_budget_refuses() {
    let caps = Caps {
        per_task: Some(MicroUsd(100)),
        ..Caps::default()
    };
    let s = setup(World::Router, "triage", &["architectural"], caps).await;
    let called = s
        .plugin
        .route(&CallContext::new("T-1", 1), &samples::route_request())
        .await
        .unwrap();
    assert!(called.fault.is_none());
    assert_eq!(
        called.decision.model, "cheap",
        "cost-tier's rules start cheap for a bug"
    );
    assert!(
        called
            .decision
            .reason
            .contains("could not be asked: budget exhausted"),
        "{}",
        called.decision.reason
    );
    assert!(
        called.decision.reason.contains("cost-tier rules: tier 1"),
        "{}",
        called.decision.reason
    );
    assert!(s.fake.received().is_empty());
}

#[tokio::test]
async fn triage_falls_back_when_the_answer_is_not_a_class() {
    let s = setup(World::Router, "triage", &["It depends."], Caps::default()).await;
    let called = s
        .plugin
        .route(&CallContext::new("T-1", 1), &samples::route_request())
        .await
        .unwrap();
    assert!(
        called
            .decision
            .reason
            .starts_with("the triage model answered `It depends.`, not one class"),
        "{}",
        called.decision.reason
    );
    assert_eq!(s.store.rows().unwrap()[0].charged, ONE_ANSWER);
}

#[tokio::test]
async fn every_plugin_run_is_a_ledger_row_with_its_fuel() {
    use gaffer::pipeline::run_records::LedgerRecorder;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("gaffer.db")).unwrap());
    let runtime = gaffer::plugin::PluginRuntime::builder()
        .cache_dir(Some(support::test_cache_dir()))
        .recorder(Arc::new(LedgerRecorder::new(
            Arc::new(Ledger::new(store.clone(), Caps::default())),
            "run-7",
        )))
        .build()
        .unwrap();
    let hook = runtime
        .load(PluginSpec::new(World::Hook, guest("protected-paths")))
        .unwrap();
    let called = hook
        .pre_tool(
            &CallContext::new("T-3", 2),
            &samples::task(),
            &samples::tool_call(),
        )
        .await
        .unwrap();
    let rows = store.rows().unwrap();
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(
        (row.scope.role, row.scope.stage),
        (Role::Hook, Stage::Check)
    );
    assert_eq!(
        (
            row.scope.run_id.as_str(),
            row.scope.task_id.as_deref(),
            row.scope.attempt
        ),
        ("run-7", Some("T-3"), Some(2))
    );
    assert_eq!(row.scope.model, "protected_paths");
    assert_eq!(row.fuel, called.run.fuel_used);
    assert!(row.fuel > 0);
    assert_eq!(
        (row.charged, row.tokens.input, row.outcome.as_deref()),
        (MicroUsd(0), 0, Some("ok"))
    );
}

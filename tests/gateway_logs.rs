//! The provider's key in no log line, even when the provider echoes it in an error that is
//! retried and logged. A test binary of its own: `tracing` caches whether a log line's callsite
//! is wanted, globally, and a test in the same process that logs the same line on another
//! thread while this one installs its subscriber can leave it cached as unwanted (the line
//! then never reaches this test's capture, and the test could not see a leak).

#[path = "support/fake_provider.rs"]
mod fake_provider;

use std::sync::Arc;
use std::time::Duration;

use fake_provider::{FakeProvider, Reply};
use gaffer::gateway::chat::{ChatRequest, Message};
use gaffer::gateway::metered::{CallTag, Gateway, ModelEntry, Pricing};
use gaffer::gateway::provider::{Provider, ProviderConfig, ProviderKind};
use gaffer::ledger::{Caps, Ledger, MicroUsd, Prices};
use gaffer::store::{Role, RowScope, SqliteStore, Stage};
use serde_json::json;

/// A writer the test's log subscriber writes into.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn the_api_key_appears_in_no_log_line() {
    let env = format!("GAFFER_TEST_LOG_KEY_{}", std::process::id());
    let key = "sk-test-logs-91be-DO-NOT-LEAK";
    // SAFETY: the variable name is unique to this test process and test.
    unsafe { std::env::set_var(&env, key) };
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    // A 500 that echoes the key is retried, and each retry is logged.
    let echo = || {
        Reply::json(
            500,
            json!({"error": {"message": format!("upstream rejected key {key}")}}),
        )
    };
    let fake = FakeProvider::start(vec![echo(), echo(), echo()]).await;
    let mut config = ProviderConfig::new(
        "fake",
        ProviderKind::OpenaiCompatible,
        format!("{}/v1", fake.base_url),
    );
    config.retry_min_delay = Duration::from_millis(10);
    config.max_retries = 2;
    config.api_key_env = Some(env.clone());
    let provider = Provider::new(config).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("gaffer.db")).unwrap());
    let model = ModelEntry {
        key: "cheap".into(),
        provider: "fake".into(),
        id: "fake-model-1".into(),
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
    let gateway = Gateway::new(
        [provider],
        [model],
        Arc::new(Ledger::new(store, Caps::default())),
    );
    let tag = CallTag {
        scope: RowScope::attempt("run-1", "T-1", 1, Stage::Implement, Role::Agent),
        attempt_cap: None,
    };
    let request = ChatRequest {
        messages: vec![Message::user("Fix the pagination bug")],
        max_tokens: 500,
        ..ChatRequest::default()
    };
    let err = gateway.complete(&tag, "cheap", request).await.unwrap_err();
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("retrying"), "the retries were logged: {logs}");
    assert!(logs.contains("[redacted]"), "{logs}");
    assert!(!logs.contains(key), "{logs}");
    assert!(!err.to_string().contains(key));
}

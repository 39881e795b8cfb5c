//! Ledger rows written by hand through the store's own API, for the tests that check what the
//! report, `status` and the pages make of a ledger whose every figure the test chose.

use gaffer::store::{
    CallTry, LedgerStore, MicroUsd, Prices, Reserved, Role, RowScope, Settlement, SqliteStore,
    Stage, TokenCounts,
};

/// The scope of a call in `run` for attempt `attempt` of `task` by `role` on `model` (the
/// verifier's calls are in the verify stage, everyone else's in implement).
pub fn scope(run: &str, task: &str, attempt: u32, role: Role, model: &str) -> RowScope {
    let stage = if role == Role::Verifier {
        Stage::Verify
    } else {
        Stage::Implement
    };
    RowScope {
        model: model.to_string(),
        ..RowScope::attempt(run, task, attempt, stage, role)
    }
}

/// Reserve `reserved` µ$ for one try of `call` and mark it sent.
pub fn send(store: &SqliteStore, scope: &RowScope, call: CallTry, reserved: u64) -> Reserved {
    let r = store
        .try_reserve(scope, call, MicroUsd(reserved), &[])
        .unwrap();
    store.mark_sent(r.id).unwrap();
    r
}

/// Settle a sent try at `cost` µ$ (`None`: the provider reported no usage) with `input` and
/// `output` tokens.
pub fn settle(store: &SqliteStore, r: Reserved, cost: Option<u64>, input: u64, output: u64) {
    store
        .settle(
            r.id,
            &Settlement {
                tokens: TokenCounts {
                    input,
                    output,
                    ..TokenCounts::default()
                },
                prices: Prices::default(),
                cost: cost.map(MicroUsd),
                wall_ms: 10,
                outcome: "ok".into(),
            },
        )
        .unwrap();
}

//! Realistic sample inputs for each world: `plugin check` makes one sample call with them,
//! `plugin bench` and the benchmarks time calls on them, the demo shows decisions on them.

use super::types::{
    Attempt, AttemptOutcome, BudgetView, CapLevel, Diff, DiffLine, DiffStats, FileDiff, FileEdit,
    FileStatus, Hunk, LineKind, MicroUsd, ModelInfo, MoneyLeft, Prices, RouteRequest, Task,
    TestResult, TokenCounts, ToolCall, VerifyRequest,
};

/// Three models at three tiers. Prices are placeholders in µ$ per million tokens for the
/// samples only; real prices come from the gateway's catalog.
pub fn models() -> Vec<ModelInfo> {
    vec![
        model("cheap", 1, 1_000_000, 5_000_000),
        model("mid", 2, 3_000_000, 15_000_000),
        model("strong", 3, 15_000_000, 75_000_000),
    ]
}

/// A sample model with input and output prices in µ$ per million tokens (cache reads at a
/// tenth of input, cache writes at 1.25×, as the providers price them).
pub fn model(id: &str, tier: u8, input: u64, output: u64) -> ModelInfo {
    ModelInfo {
        id: id.to_string(),
        provider: "sample".to_string(),
        tier,
        prices: Prices {
            input: MicroUsd(input),
            output: MicroUsd(output),
            cache_read: MicroUsd(input / 10),
            cache_write: MicroUsd(input + input / 4),
        },
        context_window: 200_000,
        tags: vec![],
    }
}

/// A small bug-fix task.
pub fn task() -> Task {
    Task {
        id: "T-1".to_string(),
        title: "Fix off-by-one in pagination".to_string(),
        body: "The last page of `list_users` drops one item when the total is a multiple of the \
               page size. See src/api/users.rs."
            .to_string(),
        labels: vec!["bug".to_string()],
        paths: vec!["src/api/users.rs".to_string()],
    }
}

/// The budget of a task with $2 per task and $20 per run, partly spent.
pub fn budget() -> BudgetView {
    BudgetView {
        money: vec![
            MoneyLeft {
                level: CapLevel::Task,
                cap: MicroUsd(2_000_000),
                spent: MicroUsd(350_000),
                left: MicroUsd(1_650_000),
            },
            MoneyLeft {
                level: CapLevel::Run,
                cap: MicroUsd(20_000_000),
                spent: MicroUsd(4_200_000),
                left: MicroUsd(15_800_000),
            },
        ],
        fuel_left_task: 50_000_000_000,
        fuel_per_call: 1_000_000_000,
    }
}

/// An earlier attempt that the verifier rejected.
pub fn rejected_attempt() -> Attempt {
    Attempt {
        number: 1,
        model: "cheap".to_string(),
        outcome: AttemptOutcome::Rejected,
        reasons: vec!["tests failed: `cargo test` exited with 101".to_string()],
        cost: MicroUsd(350_000),
        tokens: TokenCounts {
            input: 120_000,
            output: 9_000,
            cache_read: 80_000,
            cache_write: 20_000,
        },
    }
}

/// A routing request for the sample task with no history.
pub fn route_request() -> RouteRequest {
    RouteRequest {
        task: task(),
        history: vec![],
        models: models(),
        budget: budget(),
    }
}

/// A one-file change that adds a line.
pub fn diff() -> Diff {
    Diff {
        files: vec![FileDiff {
            path: "src/api/users.rs".to_string(),
            old_path: None,
            status: FileStatus::Modified,
            binary: false,
            hunks: vec![Hunk {
                old_start: 10,
                old_lines: 3,
                new_start: 10,
                new_lines: 4,
                lines: vec![
                    DiffLine {
                        kind: LineKind::Context,
                        line: 10,
                        text: "    let pages = total / size;".to_string(),
                    },
                    DiffLine {
                        kind: LineKind::Removed,
                        line: 11,
                        text: "    let last = pages * size;".to_string(),
                    },
                    DiffLine {
                        kind: LineKind::Added,
                        line: 11,
                        text: "    let last = (pages - 1) * size;".to_string(),
                    },
                    DiffLine {
                        kind: LineKind::Added,
                        line: 12,
                        text: "    // the last page may be full".to_string(),
                    },
                    DiffLine {
                        kind: LineKind::Context,
                        line: 13,
                        text: "    items[last..].to_vec()".to_string(),
                    },
                ],
            }],
            added: 2,
            removed: 1,
        }],
        stats: DiffStats {
            files_changed: 1,
            lines_added: 2,
            lines_removed: 1,
        },
    }
}

/// Passing tests.
pub fn tests_passed() -> TestResult {
    TestResult {
        command: "cargo test".to_string(),
        ran: true,
        passed: true,
        exit_code: Some(0),
        output_tail: "test result: ok. 12 passed; 0 failed".to_string(),
        duration_ms: 4_200,
    }
}

/// A verification request for the sample change.
pub fn verify_request() -> VerifyRequest {
    VerifyRequest {
        task: task(),
        attempt: 1,
        model: "cheap".to_string(),
        diff: diff(),
        tests: tests_passed(),
        cost_so_far: MicroUsd(350_000),
        history: vec![],
    }
}

/// The agent writing a file.
pub fn tool_call() -> ToolCall {
    ToolCall {
        name: "write_file".to_string(),
        arguments: r#"{"path":"src/api/users.rs","content":"pub fn list_users() {}\n"}"#
            .to_string(),
    }
}

/// An edit of one file.
pub fn file_edit() -> FileEdit {
    FileEdit {
        path: "src/api/users.rs".to_string(),
        before: Some("pub fn list_users() {}\n".to_string()),
        after: Some("pub fn list_users() -> Vec<User> { vec![] }\n".to_string()),
    }
}

//! The host's own overhead per task: claim, route (router plugin), the attempt's worktree of a
//! ~2,000-file repository, the agent's two model calls through the metered gateway (to the
//! scripted provider on 127.0.0.1: its answer takes no thinking time), hooks, the snapshot and
//! its clean checkout, the verifier, the merge into the checked-out target branch: everything
//! except model latency and the test command. One `gaffer run` per task, so each figure also
//! carries a run's start and end. Shipped configuration: plugins with fuel and deadlines on, the
//! SQLite ledger, the reference router/verifier/hook.
//!
//! The baseline: a bare `git worktree add` + `remove` of a fresh repository with the same
//! files. Its first iteration, the figure the aims compare with, is measured before anything
//! else; criterion's ten samples of it after gaffer's figures. Every removal frees 2,000 inodes,
//! and on ext4 without a journal (these VMs) the allocator skips inodes freed in the last
//! minutes, so repeated adds slow each other down (0.22 s → 2.2 s within ten), and so would
//! every file gaffer creates if they ran first. gaffer recycles its worktrees for that reason;
//! criterion's warm-up runs the first task, which makes the worktree, so the figures are the
//! steady state.
//!
//! After the timed runs and before the baseline's samples, 20 tasks on 4 workers; the process's
//! peak resident memory is printed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use gaffer::demo::pipeline::demo_config;
use gaffer::demo::sample;
use gaffer::demo::scripted_provider::{Script, ScriptedCall, ScriptedProvider, TaskScript, Turn};
use gaffer::pipeline::progress::{Progress, Recorded};
use gaffer::pipeline::{RunOptions, assemble};
use gaffer::project::{CONFIG_FILE, Project};
use gaffer::store::{AttemptOutcome, BacklogStore, NewTask, SqliteStore};
use serde_json::json;

const FILES: usize = 2_000;
/// Task titles the script answers: enough for every timed iteration and the 4-worker batch.
const TASKS: usize = 4_000;

fn plugins_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/guests/wasm32-unknown-unknown/plugin")
}

fn title(i: usize) -> String {
    format!("Bench note {i:05}")
}

fn script() -> Script {
    let tasks = (0..TASKS)
        .map(|i| TaskScript {
            matches: title(i),
            models: [(
                sample::SMALL.to_string(),
                vec![
                    Turn {
                        calls: vec![ScriptedCall {
                            name: "write_file".into(),
                            arguments: json!({"path": format!("notes/{i:05}.txt"), "content": "note\n"}),
                        }],
                        ..Turn::default()
                    },
                    Turn {
                        calls: vec![ScriptedCall {
                            name: "finish".into(),
                            arguments: json!({"summary": "done"}),
                        }],
                        ..Turn::default()
                    },
                ],
            )]
            .into_iter()
            .collect(),
        })
        .collect();
    Script { tasks }
}

/// A sample repository grown to ~2,000 files in nested directories, committed.
fn repository(root: &Path) {
    sample::create(root, false).expect("sample repository");
    for i in 0..FILES {
        let file = root.join(format!(
            "src/m{:02}/d{:02}/f{i:04}.py",
            i / 100,
            (i / 10) % 10
        ));
        std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
        std::fs::write(&file, format!("def f{i}():\n    return {i}\n")).expect("write");
    }
    let status = std::process::Command::new("git")
        .args(["-c", "user.name=b", "-c", "user.email=b@b.invalid"])
        .args(["add", "-A"])
        .current_dir(root)
        .status()
        .expect("git add");
    assert!(status.success());
    let status = std::process::Command::new("git")
        .args(["-c", "user.name=b", "-c", "user.email=b@b.invalid"])
        .args(["commit", "-q", "-m", "2000 files"])
        .current_dir(root)
        .status()
        .expect("git commit");
    assert!(status.success());
}

/// One bare `git worktree add` + `remove` of the repository at `fresh`, timed.
fn bare_worktree(fresh: &Path, scratch: &Path) -> Duration {
    let git = |args: &[&str]| {
        let status = std::process::Command::new("git")
            .args(args)
            .current_dir(fresh)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("git");
        assert!(status.success(), "git {args:?}");
    };
    let dir = scratch.display().to_string();
    let start = Instant::now();
    git(&["worktree", "add", "-q", "--detach", &dir, "main"]);
    git(&["worktree", "remove", "--force", &dir]);
    start.elapsed()
}

fn peak_rss_kib() -> i64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a rusage into the pointer it is given.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    usage.ru_maxrss
}

fn bench(c: &mut Criterion) {
    // `cargo bench` runs this with its own library path set, and every git process gaffer and
    // the baseline start would inherit it: a dynamically linked program then looks for each of
    // its libraries in each of cargo's directories first (about 200 failed opens per process),
    // which a user's `gaffer run` does not pay. Removed before any thread of the bench exists.
    // SAFETY: no other thread runs yet (the runtime is built below), so nothing reads the
    // environment while it changes.
    unsafe { std::env::remove_var("LD_LIBRARY_PATH") };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("repo");
    repository(&root);
    let provider = rt
        .block_on(ScriptedProvider::start(script()))
        .expect("provider");
    let config = demo_config(&provider.base_url(), &plugins_dir())
        .replace(sample::TEST_COMMAND, "")
        .replace("require_tests = true", "require_tests = false")
        .replace("per_run = \"5.00\"", "per_run = \"1000.00\"");
    // The same with a test command: `true`, run sandboxed on a clean checkout of the snapshot.
    let tested_config = config.replace("test_command = \"\"", "test_command = \"true\"");
    assert!(tested_config.contains("test_command = \"true\""));
    std::fs::write(root.join("gaffer-tested.toml"), tested_config).expect("config");
    std::fs::write(root.join("gaffer.toml"), config).expect("config");
    std::fs::create_dir_all(root.join(".gaffer")).expect("state dir");
    let store = SqliteStore::open(root.join(".gaffer/gaffer.db")).expect("store");
    let next = std::sync::atomic::AtomicUsize::new(0);
    let project = Project::at(&root, Path::new(CONFIG_FILE));
    let options = RunOptions::default();
    let quiet = |_: usize, _: Arc<gaffer::ledger::Ledger>, _: &str| -> Arc<dyn Progress> {
        Arc::new(Recorded::default())
    };

    // Baseline: the bare git cost of a fresh worktree, in a repository gaffer never touched.
    // Its first add + remove is the figure the aims compare with, measured before anything
    // else on a calm disk; criterion's ten samples of it come after gaffer's figures, so that
    // the 20,000 inodes they free do not slow gaffer's file creations down (see the module
    // comment) while gaffer is measured.
    let fresh = tmp.path().join("fresh");
    repository(&fresh);
    let scratch = tmp.path().join("bare-worktree");
    let first = bare_worktree(&fresh, &scratch);

    let mut group = c.benchmark_group("pipeline");
    group.sample_size(20);
    group.sampling_mode(SamplingMode::Auto);
    group.warm_up_time(Duration::from_secs(5));
    group.measurement_time(Duration::from_secs(20));
    let tested = Project::at(&root, Path::new("gaffer-tested.toml"));
    for (name, project) in [
        ("one task, host overhead (2000-file repo)", &project),
        (
            "one task with a test command (`true`, sandboxed, clean checkout of the snapshot)",
            &tested,
        ),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    store
                        .add_tasks(&[NewTask {
                            title: title(i),
                            ..NewTask::default()
                        }])
                        .expect("task");
                    let pipeline = assemble(project, &options, quiet).expect("pipeline");
                    let start = Instant::now();
                    let summary = rt.block_on(pipeline.run()).expect("run");
                    total += start.elapsed();
                    assert_eq!(summary.attempts.len(), 1);
                    assert_eq!(
                        summary.attempts[0].outcome,
                        Some(AttemptOutcome::Approved),
                        "{:?}",
                        summary.attempts[0]
                    );
                }
                total
            })
        });
    }
    // The marginal cost of a task in a run with a backlog: each sample runs one worker over
    // N tasks (N = 1, 2, … 10: linear sampling), so criterion's slope is the cost of one more
    // task, without the run's start and end (preflight, recovery, parking the worktree).
    let one_worker = RunOptions {
        workers: Some(1),
        ..options.clone()
    };
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Linear);
    group.warm_up_time(Duration::from_secs(3));
    group.measurement_time(Duration::from_secs(15));
    group.bench_function(
        "per task in a run of many, one worker (2000-file repo)",
        |b| {
            b.iter_custom(|iters| {
                let first = next.fetch_add(iters as usize, std::sync::atomic::Ordering::SeqCst);
                let tasks: Vec<NewTask> = (first..first + iters as usize)
                    .map(|i| NewTask {
                        title: title(i),
                        ..NewTask::default()
                    })
                    .collect();
                store.add_tasks(&tasks).expect("tasks");
                let pipeline = assemble(&project, &one_worker, quiet).expect("pipeline");
                let start = Instant::now();
                let summary = rt.block_on(pipeline.run()).expect("run");
                let took = start.elapsed();
                assert_eq!(summary.attempts.len(), iters as usize);
                assert!(
                    summary
                        .attempts
                        .iter()
                        .all(|a| a.outcome == Some(AttemptOutcome::Approved)),
                    "{:?}",
                    summary.attempts
                );
                took
            })
        },
    );
    // 20 tasks on 4 workers, before the baseline's samples free their inodes: peak memory of the
    // whole process.
    let first_task = next.load(std::sync::atomic::Ordering::SeqCst);
    let batch: Vec<NewTask> = (first_task..first_task + 20)
        .map(|i| NewTask {
            title: title(i),
            ..NewTask::default()
        })
        .collect();
    store.add_tasks(&batch).expect("batch");
    let four = RunOptions {
        workers: Some(4),
        ..options.clone()
    };
    let pipeline = assemble(&project, &four, quiet).expect("pipeline");
    let start = Instant::now();
    let summary = rt.block_on(pipeline.run()).expect("run");
    let merged = summary
        .attempts
        .iter()
        .filter(|a| a.outcome == Some(AttemptOutcome::Approved))
        .count();
    println!(
        "4 workers: {merged}/20 tasks merged in {:?}; peak RSS of the bench process {} KiB",
        start.elapsed(),
        peak_rss_kib()
    );

    // The baseline's ten samples of one iteration each (flat sampling), after one warm-up
    // iteration. Every iteration's time is printed after the group: they show the disk
    // slowing down as freed inodes pile up.
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_millis(1));
    group.measurement_time(Duration::from_millis(1));
    let each = std::cell::RefCell::new(vec![first]);
    group.bench_function(
        "baseline: git worktree add + remove (fresh 2000-file repo)",
        |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let took = bare_worktree(&fresh, &scratch);
                    each.borrow_mut().push(took);
                    total += took;
                }
                total
            })
        },
    );
    group.finish();
    let each = each.into_inner();
    let shown: Vec<String> = each
        .iter()
        .map(|d| format!("{:.1}", d.as_secs_f64() * 1000.0))
        .collect();
    println!(
        "baseline, each add + remove in order (ms; the first before gaffer's figures, the \
         rest after): {}",
        shown.join(", ")
    );
    // For `scripts/bench.sh --summary`, beside criterion's own results: the fresh figure is
    // the first iteration's.
    let home = std::env::var_os("CRITERION_HOME").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/criterion"),
        PathBuf::from,
    );
    let record = json!({
        "first_ns": first.as_nanos() as f64,
        "each_ns": each.iter().map(|d| d.as_nanos() as f64).collect::<Vec<_>>(),
    });
    let _ = std::fs::create_dir_all(&home);
    let _ = std::fs::write(
        home.join("pipeline-baseline-iterations.json"),
        record.to_string(),
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);

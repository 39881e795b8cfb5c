//! Several hosts on one PostgreSQL store and one shared remote. Each host is a `gaffer run`
//! process in its own clone and its own PID namespace (`unshare --pid`), so that no host can see
//! another's processes and only the store's leases can say who is alive. Expected values come
//! from git on the bare remote, the scripted provider's log and hand computation.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gaffer::demo::pipeline::demo_config;
use gaffer::demo::sample;
use gaffer::demo::scripted_provider::{Script, ScriptedProvider, TaskScript, Turn};
use gaffer::ledger::{Caps, Ledger, LedgerError, MicroUsd, TokenCounts, WorstCase};
use gaffer::store::{CallTry, NewTask, Phase, Role, RowScope, RowState, Stage, Store, TaskState};
use serde_json::json;
use support::backends::open_location;

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `program` as the first process of a PID namespace of its own (with its own /proc), killed
/// with everything in that namespace when the `unshare` wrapper is.
fn in_own_pid_namespace(program: &Path) -> tokio::process::Command {
    let mut command = tokio::process::Command::new("unshare");
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        command.args(["--user", "--map-root-user"]);
    }
    command
        .args(["--pid", "--fork", "--mount-proc", "--kill-child=SIGKILL"])
        .arg(program);
    command
}

/// The task whose scripted turns write `notes/nNN.txt`.
fn note_task(n: usize) -> (NewTask, TaskScript) {
    let title = format!("Write note N{n:02}");
    let write = |path: String| Turn {
        calls: vec![gaffer::demo::scripted_provider::ScriptedCall {
            name: "write_file".into(),
            arguments: json!({"path": path, "content": format!("note {n}\n")}),
        }],
        ..Turn::default()
    };
    let finish = Turn {
        calls: vec![gaffer::demo::scripted_provider::ScriptedCall {
            name: "finish".into(),
            arguments: json!({"summary": format!("wrote note {n}")}),
        }],
        ..Turn::default()
    };
    let turns = vec![write(format!("notes/n{n:02}.txt")), finish];
    let task = NewTask {
        title: title.clone(),
        body: format!("Add the file notes/n{n:02}.txt saying `note {n}`."),
        labels: vec!["docs".into()],
        paths: vec![format!("notes/n{n:02}.txt")],
        source: None,
    };
    let script = TaskScript {
        matches: title,
        models: [
            (sample::SMALL.to_string(), turns.clone()),
            (sample::LARGE.to_string(), turns),
        ]
        .into_iter()
        .collect(),
    };
    (task, script)
}

/// A shared bare remote made from the sample repository, clones of it (one per host), and
/// one PostgreSQL database for all of them.
struct Cluster {
    tmp: tempfile::TempDir,
    bare: PathBuf,
    db: String,
}

impl Cluster {
    fn new() -> Cluster {
        let tmp = tempfile::tempdir().unwrap();
        let seed = tmp.path().join("seed");
        sample::create(&seed, true).unwrap();
        git(
            tmp.path(),
            &["clone", "--quiet", "--bare", "seed", "shared.git"],
        );
        Cluster {
            bare: tmp.path().join("shared.git"),
            db: support::postgres::server().fresh_database(),
            tmp,
        }
    }

    fn store(&self) -> Arc<dyn Store> {
        open_location(&self.db)
    }

    /// A host's clone, configured for `provider`, the shared store and the remote; `edit`
    /// changes its `gaffer.toml`.
    fn host(
        &self,
        name: &str,
        provider: &ScriptedProvider,
        edit: &dyn Fn(String) -> String,
    ) -> PathBuf {
        let root = self.tmp.path().join(name);
        git(
            self.tmp.path(),
            &["clone", "--quiet", self.bare.to_str().unwrap(), name],
        );
        let plugins = support::guest("cost-tier").parent().unwrap().to_path_buf();
        support::guest("tests-and-limits");
        support::guest("protected-paths");
        let config = demo_config(&provider.base_url(), &plugins).replace(
            "target_branch = \"main\"\n",
            "target_branch = \"main\"\nremote = \"origin\"\n",
        );
        let config = format!(
            "{}\n[store]\nurl = \"{}\"\n",
            edit(config),
            self.db.replace('"', "\\\"")
        );
        std::fs::write(root.join("gaffer.toml"), config).unwrap();
        root
    }

    /// `git` on the remote.
    fn remote(&self, args: &[&str]) -> String {
        let dir = format!("--git-dir={}", self.bare.display());
        let mut all = vec![dir.as_str()];
        all.extend_from_slice(args);
        git(self.tmp.path(), &all)
    }
}

/// `gaffer run ARGS` in `root`, in a PID namespace of its own.
fn gaffer_run(root: &Path, args: &[&str]) -> tokio::process::Command {
    let mut command = in_own_pid_namespace(Path::new(env!("CARGO_BIN_EXE_gaffer")));
    command
        .arg("run")
        .args(args)
        .current_dir(root)
        .env("GAFFER_PLUGIN_CACHE", support::test_cache_dir())
        .env("GAFFER_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

fn show(name: &str, out: &Output) {
    eprintln!(
        "--- {name}: {}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn three_hosts_in_their_own_pid_namespaces_merge_sixty_tasks_exactly_once() {
    const TASKS: usize = 60;
    let (tasks, scripts): (Vec<NewTask>, Vec<TaskScript>) = (1..=TASKS).map(note_task).unzip();
    let provider = ScriptedProvider::start(Script { tasks: scripts })
        .await
        .unwrap();
    let cluster = Cluster::new();
    let workers = |t: String| {
        t.replace(
            "[agent]\n",
            "[run]\nworkers = 2\nlease_secs = 10\n\n[agent]\n",
        )
    };
    let hosts: Vec<PathBuf> = ["host-a", "host-b", "host-c"]
        .iter()
        .map(|name| cluster.host(name, &provider, &workers))
        .collect();
    let ids = cluster.store().add_tasks(&tasks).unwrap();
    assert_eq!(ids.len(), TASKS);

    let runs: Vec<_> = hosts
        .iter()
        .map(|root| gaffer_run(root, &[]).spawn().unwrap())
        .collect();
    let mut outputs = Vec::new();
    for run in runs {
        outputs.push(run.wait_with_output().await.unwrap());
    }
    for (i, out) in outputs.iter().enumerate() {
        show(&format!("host {i}"), out);
        assert!(out.status.success(), "host {i} failed");
    }

    let store = cluster.store();
    // Every task merged, each once: one landing per task on the shared remote's first-parent
    // history (the task's commit when it fast-forwarded, else the merge commit naming it).
    let states: BTreeMap<TaskState, usize> =
        store
            .tasks()
            .unwrap()
            .iter()
            .fold(BTreeMap::new(), |mut m, t| {
                *m.entry(t.state).or_default() += 1;
                m
            });
    assert_eq!(states, BTreeMap::from([(TaskState::Merged, TASKS)]));
    let log = cluster.remote(&["log", "--first-parent", "--format=%s", "refs/heads/main"]);
    let mut per_task: BTreeMap<String, usize> = BTreeMap::new();
    for subject in log.lines().filter(|s| s.starts_with("T-")) {
        let id = subject.split(':').next().unwrap().to_string();
        *per_task.entry(id).or_default() += 1;
    }
    assert_eq!(per_task.len(), TASKS, "{log}");
    assert!(per_task.values().all(|&n| n == 1), "{per_task:?}");
    let files = cluster.remote(&["ls-tree", "--name-only", "refs/heads/main", "notes/"]);
    assert_eq!(files.lines().count(), TASKS, "{files}");

    // The ledger is complete: nothing open, and every call the provider answered is one
    // settled row with the provider's token counts.
    let rows = store.rows().unwrap();
    assert!(
        rows.iter().all(|r| matches!(r.state, RowState::Settled)),
        "open or released rows"
    );
    let calls: Vec<_> = rows.iter().filter(|r| r.is_model_call()).collect();
    let answered = provider.log();
    assert_eq!(calls.len(), answered.len());
    let tokens = |input: u64, output: u64| (input, output);
    let ledger_tokens = calls.iter().fold((0, 0), |(i, o), r| {
        (
            i + r.tokens.input + r.tokens.cache_read,
            o + r.tokens.output,
        )
    });
    let provider_tokens = answered.iter().fold((0, 0), |(i, o), c| {
        (i + c.prompt_tokens, o + c.completion_tokens)
    });
    assert_eq!(tokens(ledger_tokens.0, ledger_tokens.1), provider_tokens);

    // Three runs registered, each from a PID namespace of its own, and all left cleanly; the
    // work was shared.
    let runs = store.hosts().unwrap();
    assert_eq!(runs.len(), 3, "{runs:?}");
    assert!(
        runs.iter().all(|h| h.left && h.owner.contains('~')),
        "{runs:?}"
    );
    let owners: BTreeSet<&str> = runs.iter().map(|h| h.owner.as_str()).collect();
    assert_eq!(owners.len(), 3);
    // `gaffer status` on any host shows all three runs, from the store.
    let status = Command::new(env!("CARGO_BIN_EXE_gaffer"))
        .args(["status", "--format", "json"])
        .current_dir(&hosts[1])
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let shown: BTreeSet<&str> = status["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            assert_eq!(
                (h["state"].as_str(), h["workers"].as_u64()),
                (Some("left"), Some(2))
            );
            h["owner"].as_str().unwrap()
        })
        .collect();
    assert_eq!(shown, owners);
    assert_eq!(status["tasks"]["merged"], TASKS);
    let mut merged_by: BTreeMap<String, usize> = BTreeMap::new();
    let mut endings: BTreeMap<String, usize> = BTreeMap::new();
    for id in &ids {
        for attempt in store.attempts(id).unwrap() {
            *merged_by.entry(attempt.run_id).or_default() += 1;
            let why = attempt.reasons.first().cloned().unwrap_or_default();
            let why: String = why.chars().take(32).collect();
            *endings
                .entry(format!("{} {why}", attempt.outcome))
                .or_default() += 1;
        }
    }
    eprintln!("attempts per run: {merged_by:?}");
    eprintln!("attempts by outcome: {endings:#?}");
    // Hosts take turns at the remote (the store's merge lock): no attempt is lost to a race.
    assert_eq!(merged_by.values().sum::<usize>(), TASKS, "{endings:#?}");
    assert!(merged_by.len() >= 2, "only one host worked: {merged_by:?}");
}

/// A child of this test binary: reserve, send and settle calls through the real ledger
/// against a day cap until it has been refused `REFUSALS` times, printing each outcome.
fn racer(location: &str, seed: u64) {
    const REFUSALS: usize = 3;
    let store = open_location(location);
    let ledger = Ledger::new(
        store,
        Caps {
            per_day: Some(MicroUsd(CAP)),
            ..Caps::default()
        },
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let scope = RowScope {
        phase: Some(Phase::Implement),
        model: "cheap".into(),
        ..RowScope::attempt(
            &format!("run-{seed}"),
            &format!("T-{seed}"),
            1,
            Stage::Implement,
            Role::Agent,
        )
    };
    let mut refused = 0;
    let mut n = seed;
    while refused < REFUSALS {
        // Amounts from 1 000 to LARGEST µ$, varied per process.
        n = n
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let amount = 1_000 + (n >> 33) % (LARGEST - 1_000 + 1);
        let reserved = runtime.block_on(ledger.reserve(
            &scope,
            CallTry::FIRST,
            WorstCase::Amount(MicroUsd(amount)),
            None,
        ));
        match reserved {
            Ok(reservation) => {
                runtime.block_on(ledger.mark_sent(&reservation)).unwrap();
                // The provider bills exactly what was reserved: cost = reservation.
                runtime
                    .block_on(ledger.settle_amount(
                        &reservation,
                        MicroUsd(amount),
                        TokenCounts::default(),
                        Duration::from_millis(1),
                        "ok",
                    ))
                    .unwrap();
                println!("ADMITTED {amount}");
            }
            Err(LedgerError::Exhausted(_)) => {
                refused += 1;
                println!("REFUSED {amount}");
            }
            Err(other) => panic!("{other}"),
        }
    }
}

const CAP: u64 = 2_000_000;
const LARGEST: u64 = 60_000;

#[tokio::test(flavor = "multi_thread")]
async fn three_processes_racing_for_the_last_dollars_never_pass_the_cap() {
    if let Ok(location) = std::env::var("GAFFER_RACE_DB") {
        let seed: u64 = std::env::var("GAFFER_RACE_SEED").unwrap().parse().unwrap();
        // The racer blocks on a runtime of its own: not on this test's.
        std::thread::spawn(move || racer(&location, seed))
            .join()
            .unwrap();
        return;
    }
    let db = support::postgres::server().fresh_database();
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (1..=3u64)
        .map(|seed| {
            in_own_pid_namespace(&exe)
                .args([
                    "--exact",
                    "three_processes_racing_for_the_last_dollars_never_pass_the_cap",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("GAFFER_RACE_DB", &db)
                .env("GAFFER_RACE_SEED", seed.to_string())
                .stdout(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .unwrap()
        })
        .collect();
    let mut admitted_total = 0u64;
    let mut largest_seen = 0u64;
    for child in children {
        let out = child.wait_with_output().await.unwrap();
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        let admitted: Vec<u64> = text
            .lines()
            // libtest may print its own words before the first line: look past them.
            .filter_map(|l| l.split("ADMITTED ").nth(1))
            .map(|a| a.trim().parse().unwrap())
            .collect();
        let refused = text.lines().filter(|l| l.contains("REFUSED ")).count();
        assert!(refused >= 1, "a process was never refused:\n{text}");
        eprintln!(
            "a racer: {} calls admitted ({} µ$), {refused} refused",
            admitted.len(),
            admitted.iter().sum::<u64>()
        );
        assert!(
            !admitted.is_empty(),
            "a process never got a call through:\n{text}"
        );
        largest_seen = largest_seen.max(admitted.iter().copied().max().unwrap_or(0));
        admitted_total += admitted.iter().sum::<u64>();
    }
    // The reservations attempted exceed the cap: the admitted ones alone fill it but for less
    // than one call.
    let store = open_location(&db);
    let spent: u64 = store.rows().unwrap().iter().map(|r| r.charged.get()).sum();
    assert_eq!(
        spent, admitted_total,
        "the ledger holds exactly what the processes were told"
    );
    assert!(spent <= CAP, "the cap was exceeded: {spent} > {CAP}");
    assert!(
        spent >= CAP - LARGEST,
        "refused while {spent} left more than the largest call"
    );
    assert!(largest_seen <= LARGEST);
    eprintln!(
        "cap {CAP} µ$, largest call {largest_seen} µ$, spent {spent} µ$ (cap - spent = {})",
        CAP - spent
    );
    let day = store
        .spent(gaffer::store::CapLevel::Day, &RowScope::of_run(""))
        .unwrap();
    assert_eq!(day.get(), spent, "the day total is the rows' sum");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_killed_mid_call_is_taken_over_after_its_lease_and_its_try_charged_once() {
    let (task, script) = note_task(1);
    // Host A's model never answers its first call (it is killed while waiting); host B's
    // answers at once.
    let mut slow = script.clone();
    for turns in slow.models.values_mut() {
        turns[0].delay_ms = 120_000;
    }
    let provider_a = ScriptedProvider::start(Script { tasks: vec![slow] })
        .await
        .unwrap();
    let provider_b = ScriptedProvider::start(Script {
        tasks: vec![script],
    })
    .await
    .unwrap();
    let cluster = Cluster::new();
    let lease = |t: String| {
        t.replace(
            "[agent]\n",
            "[run]\nlease_secs = 2\npoll_secs = 1\n\n[agent]\n",
        )
    };
    let host_a = cluster.host("host-a", &provider_a, &lease);
    let host_b = cluster.host("host-b", &provider_b, &lease);
    let store = cluster.store();
    store.add_tasks(&[task]).unwrap();

    let mut a = gaffer_run(&host_a, &[]).spawn().unwrap();
    // Wait until A's call is on the wire: its row is `sent`.
    let started = Instant::now();
    let sent = loop {
        let rows = store.rows().unwrap();
        if let Some(row) = rows.iter().find(|r| r.state == RowState::Sent) {
            break row.clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "host A never sent its call"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    a.start_kill().unwrap(); // SIGKILL to the namespace's wrapper: everything in it dies
    let killed = a.wait_with_output().await.unwrap();
    show("host A (killed)", &killed);
    assert_eq!(
        store.task("T-1").unwrap().unwrap().state,
        TaskState::Running
    );

    // Host B watches the backlog: the task comes back to the queue only when A's lease lapses.
    let b = gaffer_run(&host_b, &["--watch", "--max-tasks", "1"])
        .spawn()
        .unwrap();
    let b = tokio::time::timeout(Duration::from_secs(120), b.wait_with_output())
        .await
        .expect("host B finishes")
        .unwrap();
    show("host B", &b);
    assert!(b.status.success());

    let t1 = store.task("T-1").unwrap().unwrap();
    assert_eq!((t1.state, t1.attempts), (TaskState::Merged, 2));
    let rows = store.rows().unwrap();
    // A's try: charged once, at its reservation, flagged as recovered with unknown usage.
    let a_rows: Vec<_> = rows
        .iter()
        .filter(|r| r.owner == sent.owner && r.is_model_call())
        .collect();
    assert_eq!(a_rows.len(), 1, "{a_rows:?}");
    let recovered = a_rows[0];
    assert_eq!(
        (recovered.id, recovered.state, recovered.charged),
        (sent.id, RowState::Settled, sent.reserved)
    );
    assert!(recovered.recovered && recovered.usage_missing);
    assert_eq!(rows.iter().filter(|r| r.recovered).count(), 1);
    // B's calls are ordinary settled rows: what provider B answered, one row each.
    let b_calls = rows
        .iter()
        .filter(|r| r.owner != sent.owner && r.is_model_call())
        .count();
    assert_eq!(b_calls, provider_b.log().len());
    assert!(provider_a.log().is_empty(), "A's call was never answered");
    let hosts = store.hosts().unwrap();
    let a_host = hosts.iter().find(|h| h.owner == sent.owner).unwrap();
    assert_eq!(
        (a_host.live, a_host.left),
        (false, false),
        "A lapsed, it did not leave"
    );
    assert_eq!(
        cluster
            .remote(&["log", "--format=%s", "refs/heads/main"])
            .lines()
            .filter(|s| s.starts_with("T-1:"))
            .count(),
        1
    );
}

//! The backlog, on both stores (SQLite and PostgreSQL, one suite): tasks in order, claims under
//! leases that expire by the store's clock, the holder's updates, many workers claiming at once,
//! and the runs' own leases, by which a dead host's tasks and rows are known.

#[macro_use]
mod support;

use std::collections::HashMap;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use gaffer::ledger::{CallTry, MicroUsd};
use gaffer::store::{NewTask, Role, RowScope, RowState, Stage, StoreError, TaskState};
use support::backends::{Backend, open_location};

on_both!(
    tasks_are_added_in_order_and_read_back_whole,
    claims_take_the_oldest_and_a_rejection_comes_back_for_another_attempt,
    an_expired_lease_lets_another_worker_take_the_task,
    expiring_requeues_the_tasks_of_stopped_workers_saying_whose,
    concurrent_workers_never_claim_the_same_task,
    concurrent_hosts_add_tasks_with_ids_in_order_and_no_gaps,
    a_run_whose_lease_lapsed_is_dead_to_recovery_and_a_live_one_is_not,
    hosts_racing_to_recover_a_dead_run_recover_it_exactly_once,
);

fn task(title: &str) -> NewTask {
    NewTask {
        title: title.to_string(),
        body: format!("Do {title}."),
        labels: vec!["bug".into()],
        paths: vec!["src/lib.rs".into()],
        source: Some("test".into()),
    }
}

const MINUTE: Duration = Duration::from_secs(60);

fn tasks_are_added_in_order_and_read_back_whole(backend: Backend) {
    let db = backend.fresh();
    let store = db.open();
    let ids = store.add_tasks(&[task("one"), task("two")]).unwrap();
    assert_eq!(ids, ["T-1", "T-2"]);
    let more = store.add_tasks(&[task("three")]).unwrap();
    assert_eq!(more, ["T-3"]);
    let t = store.task("T-2").unwrap().unwrap();
    assert_eq!((t.title.as_str(), t.body.as_str()), ("two", "Do two."));
    assert_eq!(
        (t.labels, t.paths),
        (vec!["bug".to_string()], vec!["src/lib.rs".to_string()])
    );
    assert_eq!(
        (t.state, t.attempts, t.source.as_deref()),
        (TaskState::Queued, 0, Some("test"))
    );
    assert_eq!(store.tasks().unwrap().len(), 3);
    assert!(store.task("T-9").unwrap().is_none());
}

fn claims_take_the_oldest_and_a_rejection_comes_back_for_another_attempt(backend: Backend) {
    let db = backend.fresh();
    let store = db.open();
    store.add_tasks(&[task("one"), task("two")]).unwrap();
    let first = store.claim("host:1", MINUTE).unwrap().unwrap();
    assert_eq!(
        (first.id.as_str(), first.state, first.stage, first.attempts),
        ("T-1", TaskState::Running, Some(Stage::Route), 1)
    );
    assert_eq!(first.lease_owner.as_deref(), Some("host:1"));
    let second = store.claim("host:1", MINUTE).unwrap().unwrap();
    assert_eq!(second.id, "T-2");
    assert!(
        store.claim("host:1", MINUTE).unwrap().is_none(),
        "nothing left to claim"
    );

    store.set_stage("T-1", "host:1", Stage::Verify).unwrap();
    assert_eq!(
        store.task("T-1").unwrap().unwrap().stage,
        Some(Stage::Verify)
    );
    store
        .finish("T-1", "host:1", TaskState::RejectedRequeued, "tests failed")
        .unwrap();
    let t1 = store.task("T-1").unwrap().unwrap();
    assert_eq!(
        (t1.state, t1.reason.as_deref(), t1.lease_owner),
        (TaskState::RejectedRequeued, Some("tests failed"), None)
    );
    let again = store.claim("host:2", MINUTE).unwrap().unwrap();
    assert_eq!((again.id.as_str(), again.attempts), ("T-1", 2));

    store
        .finish("T-2", "host:1", TaskState::Merged, "approved")
        .unwrap();
    store
        .finish(
            "T-1",
            "host:2",
            TaskState::BudgetExhausted,
            "the task cap of $2.00 would be exceeded",
        )
        .unwrap();
    assert!(
        store.claim("host:3", MINUTE).unwrap().is_none(),
        "merged and exhausted tasks stay put"
    );
}

fn an_expired_lease_lets_another_worker_take_the_task(backend: Backend) {
    let db = backend.fresh();
    let store = db.open();
    store.add_tasks(&[task("one")]).unwrap();
    store.claim("host:1", Duration::ZERO).unwrap().unwrap();
    std::thread::sleep(Duration::from_millis(20)); // the store's clock moves past the lease
    let taken = store.claim("host:2", MINUTE).unwrap().unwrap();
    assert_eq!(
        (
            taken.id.as_str(),
            taken.attempts,
            taken.lease_owner.as_deref()
        ),
        ("T-1", 2, Some("host:2"))
    );
    // The first worker finds out at its next step.
    assert_eq!(
        store.heartbeat("T-1", "host:1", MINUTE),
        Err(StoreError::LeaseLost {
            task: "T-1".into(),
            owner: "host:1".into()
        })
    );
    assert!(matches!(
        store.finish("T-1", "host:1", TaskState::Merged, "x"),
        Err(StoreError::LeaseLost { .. })
    ));
    store.heartbeat("T-1", "host:2", MINUTE).unwrap();
    assert!(matches!(
        store.set_stage("T-404", "host:2", Stage::Check),
        Err(StoreError::NoSuchTask(_))
    ));
}

fn expiring_requeues_the_tasks_of_stopped_workers_saying_whose(backend: Backend) {
    let db = backend.fresh();
    let store = db.open();
    store.add_tasks(&[task("one"), task("two")]).unwrap();
    // The live lease is taken first: were the lapsing one first, the second claim could take
    // its task again once the store's clock moved a millisecond (a claim takes expired leases),
    // and nothing would be left to expire.
    store.claim("host:8", MINUTE).unwrap();
    store.claim("host:7", Duration::ZERO).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(store.expire().unwrap(), 1);
    let t2 = store.task("T-2").unwrap().unwrap();
    assert_eq!(t2.state, TaskState::Queued);
    assert_eq!(
        t2.reason.as_deref(),
        Some("the lease of host:7 expired; requeued")
    );
    assert_eq!(
        store.task("T-1").unwrap().unwrap().state,
        TaskState::Running
    );
}

/// Eight workers, each with its own connection (as separate processes would have), claim
/// until the backlog is empty: every task is claimed exactly once.
fn concurrent_workers_never_claim_the_same_task(backend: Backend) {
    let db = backend.fresh();
    let tasks: Vec<NewTask> = (0..20).map(|i| task(&format!("task {i}"))).collect();
    db.open().add_tasks(&tasks).unwrap();
    let barrier = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|w| {
            let location = db.location.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let store = open_location(&location);
                let owner = format!("host:{w}");
                barrier.wait();
                let mut mine = Vec::new();
                while let Some(t) = store.claim(&owner, MINUTE).unwrap() {
                    store
                        .finish(&t.id, &owner, TaskState::Merged, "done")
                        .unwrap();
                    mine.push(t.id);
                }
                mine
            })
        })
        .collect();
    let mut count: HashMap<String, usize> = HashMap::new();
    for handle in handles {
        for id in handle.join().unwrap() {
            *count.entry(id).or_default() += 1;
        }
    }
    assert_eq!(count.len(), 20);
    assert!(count.values().all(|&n| n == 1), "{count:?}");
}

/// Four hosts add tasks at once: every id is used once, and they run from T-1 without a gap
/// (ids are what people quote; a gap would look like a lost task).
fn concurrent_hosts_add_tasks_with_ids_in_order_and_no_gaps(backend: Backend) {
    let db = backend.fresh();
    // Created and migrated before the race: the race is about the ids.
    drop(db.open());
    let barrier = Arc::new(Barrier::new(4));
    let handles: Vec<_> = (0..4)
        .map(|h| {
            let location = db.location.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let store = open_location(&location);
                barrier.wait();
                (0..5)
                    .flat_map(|i| store.add_tasks(&[task(&format!("h{h} {i}"))]).unwrap())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut ids: Vec<String> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    ids.sort_by_key(|id| id[2..].parse::<u32>().unwrap());
    let expected: Vec<String> = (1..=20).map(|n| format!("T-{n}")).collect();
    assert_eq!(ids, expected);
    assert_eq!(db.open().tasks().unwrap().len(), 20);
}

/// A run on another host (whose process this host cannot see: `is_alive` says yes to all) is
/// alive while its own lease is. Once it lapses, its running task is requeued and its open
/// rows recovered; a live run's are left alone, and a run that left cleanly is shown as such.
fn a_run_whose_lease_lapsed_is_dead_to_recovery_and_a_live_one_is_not(backend: Backend) {
    let db = backend.fresh();
    let store = db.open();
    store.add_tasks(&[task("far"), task("near")]).unwrap();
    store
        .host_beat("far:1", "run-far", 3, Duration::ZERO)
        .unwrap();
    store.host_beat("near:2", "run-near", 2, MINUTE).unwrap();
    store.claim("far:1", MINUTE).unwrap().unwrap();
    store.claim("near:2", MINUTE).unwrap().unwrap();
    let row_scope = |task: &str| RowScope {
        model: "cheap".into(),
        ..RowScope::attempt("run-x", task, 1, Stage::Implement, Role::Agent)
    };
    let far = db.open_as("far:1");
    let sent = far
        .try_reserve(&row_scope("T-1"), CallTry::FIRST, MicroUsd(7_000), &[])
        .unwrap()
        .id;
    far.mark_sent(sent).unwrap();
    far.try_reserve(&row_scope("T-1"), CallTry::FIRST, MicroUsd(500), &[])
        .unwrap();
    let near = db.open_as("near:2");
    let near_sent = near
        .try_reserve(&row_scope("T-2"), CallTry::FIRST, MicroUsd(9_000), &[])
        .unwrap()
        .id;
    near.mark_sent(near_sent).unwrap();
    std::thread::sleep(Duration::from_millis(20)); // far:1's lease of zero lapses

    let hosts = store.hosts().unwrap();
    let by_owner = |owner: &str| hosts.iter().find(|h| h.owner == owner).unwrap().clone();
    assert_eq!(
        (by_owner("near:2").live, by_owner("near:2").workers),
        (true, 2)
    );
    assert_eq!(
        (by_owner("far:1").live, by_owner("far:1").left),
        (false, false)
    );
    assert_eq!(hosts[0].owner, "near:2", "live runs first");

    let everyone_alive = |_: &str| true;
    assert_eq!(store.requeue_orphans(&everyone_alive).unwrap(), ["T-1"]);
    assert_eq!(
        store.task("T-1").unwrap().unwrap().reason.as_deref(),
        Some("its worker far:1 stopped; requeued")
    );
    assert_eq!(
        store.task("T-2").unwrap().unwrap().state,
        TaskState::Running
    );
    let recovery = store.recover(&everyone_alive).unwrap();
    assert_eq!(
        (recovery.released, recovery.charged, recovery.charged_micros),
        (1, 1, MicroUsd(7_000))
    );
    let rows = store.rows().unwrap();
    let state_of = |owner: &str| -> Vec<RowState> {
        rows.iter()
            .filter(|r| r.owner == owner)
            .map(|r| r.state)
            .collect()
    };
    assert_eq!(state_of("far:1"), [RowState::Settled, RowState::Released]);
    assert_eq!(state_of("near:2"), [RowState::Sent]);

    store.host_left("near:2").unwrap();
    let left = store.hosts().unwrap();
    let near = left.iter().find(|h| h.owner == "near:2").unwrap();
    assert_eq!((near.live, near.left), (false, true));
}

/// Four hosts notice the same dead run at the same moment: its sent try is charged once and its
/// unsent reservation released once, whoever gets there first.
fn hosts_racing_to_recover_a_dead_run_recover_it_exactly_once(backend: Backend) {
    let db = backend.fresh();
    let dead = db.open_as("gone:9");
    dead.host_beat("gone:9", "run-gone", 1, Duration::ZERO)
        .unwrap();
    let row_scope = RowScope {
        model: "cheap".into(),
        ..RowScope::attempt("run-gone", "T-1", 1, Stage::Implement, Role::Agent)
    };
    for _ in 0..5 {
        let id = dead
            .try_reserve(&row_scope, CallTry::FIRST, MicroUsd(1_000), &[])
            .unwrap()
            .id;
        dead.mark_sent(id).unwrap();
        dead.try_reserve(&row_scope, CallTry::FIRST, MicroUsd(10), &[])
            .unwrap();
    }
    std::thread::sleep(Duration::from_millis(20));
    let barrier = Arc::new(Barrier::new(4));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let location = db.location.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let store = open_location(&location);
                barrier.wait();
                store.recover(&|_| true).unwrap()
            })
        })
        .collect();
    let (mut released, mut charged, mut micros) = (0, 0, 0);
    for handle in handles {
        let r = handle.join().unwrap();
        released += r.released;
        charged += r.charged;
        micros += r.charged_micros.get();
    }
    assert_eq!((released, charged, micros), (5, 5, 5_000));
    let store = db.open();
    // What the caps see: the five charges, nothing of the released reservations.
    assert_eq!(
        store
            .spent(gaffer::store::CapLevel::Task, &row_scope)
            .unwrap(),
        MicroUsd(5_000)
    );
    assert!(
        store
            .rows()
            .unwrap()
            .iter()
            .all(|r| r.recovered && matches!(r.state, RowState::Settled | RowState::Released))
    );
}

/// Hosts take turns to merge into one target: a second host waits until the first one's turn
/// ends, by being dropped or by its connection dying with its process; another target is not
/// held up.
#[test]
fn postgres_merge_turns_are_taken_one_at_a_time_and_end_with_their_holder() {
    let db = Backend::Postgres.fresh();
    let (a, b) = (db.open(), db.open());
    let turn = a
        .merge_turn("origin/main")
        .unwrap()
        .expect("PostgreSQL gives turns");
    assert!(
        b.merge_turn("origin/other").unwrap().is_some(),
        "another target is free"
    );
    let (sender, waited) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let turn = b.merge_turn("origin/main").unwrap();
        sender.send(()).unwrap();
        turn
    });
    assert!(
        waited.recv_timeout(Duration::from_millis(300)).is_err(),
        "the second host got a turn while the first held it"
    );
    drop(turn);
    waited
        .recv_timeout(Duration::from_secs(30))
        .expect("the turn passes when the first host's ends");
    drop(waiter.join().unwrap());
    // SQLite has no other hosts: no turn to wait for.
    assert!(
        Backend::Sqlite
            .fresh()
            .open()
            .merge_turn("origin/main")
            .unwrap()
            .is_none()
    );
}

/// A task's short steps through the async backlog (claim, stage, finish, its history) need no
/// thread of the blocking pool on SQLite: its only thread is kept busy until they are done, so
/// a step sent there would wait for it and the steps would time out.
#[test]
fn a_tasks_steps_on_sqlite_need_no_thread_of_the_blocking_pool() {
    let db = Backend::Sqlite.fresh();
    let store = db.open();
    store.add_tasks(&[task("one")]).unwrap();
    let backlog = gaffer::store::AsyncBacklog::new(store.clone());
    let done = support::without_the_blocking_pool(async {
        let claimed = backlog.claim("w1", MINUTE).await?.expect("a task");
        backlog.set_stage(&claimed.id, "w1", Stage::Verify).await?;
        let history = backlog.attempts(&claimed.id).await?;
        backlog
            .finish(&claimed.id, "w1", TaskState::Merged, "merged")
            .await?;
        Ok::<_, StoreError>((claimed.id, history.len()))
    });
    let (id, earlier) = done
        .expect("the backlog's steps waited for the blocking pool")
        .unwrap();
    assert_eq!(earlier, 0);
    let task = store.task(&id).unwrap().unwrap();
    assert_eq!(
        (task.state, task.reason.as_deref()),
        (TaskState::Merged, Some("merged"))
    );
}

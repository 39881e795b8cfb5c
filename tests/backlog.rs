//! The backlog in the SQLite store: tasks in order, claims under leases that expire by the
//! store's clock, the holder's updates, and many workers claiming at once.

use std::collections::HashMap;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use gaffer::store::{BacklogStore, NewTask, SqliteStore, Stage, StoreError, TaskState};

fn store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("gaffer.db")).unwrap();
    (dir, store)
}

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

#[test]
fn tasks_are_added_in_order_and_read_back_whole() {
    let (_dir, store) = store();
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

#[test]
fn claims_take_the_oldest_and_a_rejection_comes_back_for_another_attempt() {
    let (_dir, store) = store();
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

#[test]
fn an_expired_lease_lets_another_worker_take_the_task() {
    let (_dir, store) = store();
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

#[test]
fn expiring_requeues_the_tasks_of_stopped_workers_saying_whose() {
    let (_dir, store) = store();
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
#[test]
fn concurrent_workers_never_claim_the_same_task() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gaffer.db");
    let tasks: Vec<NewTask> = (0..20).map(|i| task(&format!("task {i}"))).collect();
    SqliteStore::open(&path).unwrap().add_tasks(&tasks).unwrap();
    let barrier = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|w| {
            let path = path.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let store = SqliteStore::open(&path).unwrap();
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

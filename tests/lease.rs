//! A lease outlives slow work: while a merge takes three times the lease (git slowed by a
//! wrapper for this test) and every worker of the async runtime is busy, the heartbeat (a
//! thread of its own) keeps the lease, and a second worker that tries to claim the task gets
//! nothing. This file holds one test: it changes the process's PATH.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use gaffer::demo::pipeline::demo_config;
use gaffer::demo::sample;
use gaffer::demo::scripted_provider::ScriptedProvider;
use gaffer::pipeline::progress::{Event, Progress, Recorded};
use gaffer::pipeline::{RunOptions, assemble};
use gaffer::project::Project;
use gaffer::store::{AttemptOutcome, BacklogStore, SqliteStore, TaskState};

/// A `git` that sleeps `secs` before moving a branch (`update-ref`, or the fast-forward
/// `merge` of a checked-out target), after touching `mark`.
fn slow_git(dir: &Path, mark: &Path, secs: u64) {
    let real = String::from_utf8(
        std::process::Command::new("sh")
            .args(["-c", "command -v git"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let script = format!(
        "#!/bin/sh\ncase \" $* \" in *\" update-ref \"*|*\" merge \"*) touch '{}'; sleep {secs};; esac\nexec '{}' \"$@\"\n",
        mark.display(),
        real.trim()
    );
    let path = dir.join("git");
    std::fs::write(&path, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn a_one_second_lease_survives_a_three_second_merge_with_every_worker_busy() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("repo");
    sample::create(&root, true).unwrap();
    let slugify = sample::tasks().remove(0);
    std::fs::create_dir_all(root.join(".gaffer")).unwrap();
    let store = SqliteStore::open(root.join(".gaffer/gaffer.db")).unwrap();
    store.add_tasks(&[slugify]).unwrap();
    let bin = tmp.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let mark = tmp.path().join("merging");
    slow_git(&bin, &mark, 3);
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // SAFETY: the only test of this binary, and no other thread reads the environment yet.
    unsafe {
        std::env::set_var("PATH", path);
        std::env::set_var("GAFFER_PLUGIN_CACHE", support::test_cache_dir());
    }
    let plugins = support::guest("cost-tier").parent().unwrap().to_path_buf();

    // One runtime worker: the task below keeps it busy for the whole merge.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let rival = {
        let (mark, db) = (mark.clone(), root.join(".gaffer/gaffer.db"));
        std::thread::spawn(move || {
            let waited = std::time::Instant::now();
            while !mark.exists() {
                if waited.elapsed() > Duration::from_secs(120) {
                    return Some(None);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            // Twice the lease into the merge, another worker tries to claim.
            std::thread::sleep(Duration::from_secs(2));
            let other = SqliteStore::open(db).unwrap();
            Some(other.claim("rival:1", Duration::from_secs(1)).unwrap())
        })
    };
    let progress = Arc::new(Recorded::default());
    let summary = runtime.block_on(async {
        let provider = ScriptedProvider::start(sample::script()).await.unwrap();
        let config = demo_config(&provider.base_url(), &plugins) + "\n[run]\nlease_secs = 1\n";
        std::fs::write(root.join("gaffer.toml"), config).unwrap();
        let recorded: Arc<dyn Progress> = progress.clone();
        let pipeline = assemble(
            &Project::at(&root, Path::new("gaffer.toml")),
            &RunOptions::default(),
            |_, _, _| recorded,
        )
        .unwrap();
        let busy = {
            let mark = mark.clone();
            tokio::spawn(async move {
                let waited = std::time::Instant::now();
                while !mark.exists() {
                    if waited.elapsed() > Duration::from_secs(120) {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                // Blocks the runtime's only worker for longer than the merge.
                std::thread::sleep(Duration::from_secs(4));
            })
        };
        let summary = pipeline.run().await.unwrap();
        busy.await.unwrap();
        summary
    });
    assert!(mark.exists(), "the merge went through the slow git");
    let claimed = rival.join().unwrap().expect("the rival tried to claim");
    assert_eq!(claimed, None, "a second worker claimed the task");
    assert_eq!(store.task("T-1").unwrap().unwrap().state, TaskState::Merged);
    let attempts = store.attempts("T-1").unwrap();
    assert_eq!(
        attempts.iter().map(|a| a.outcome).collect::<Vec<_>>(),
        [AttemptOutcome::Approved]
    );
    assert_eq!(summary.attempts.len(), 1);
    let events = progress.0.lock().unwrap();
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::Note(n) if n.contains("lease was lost"))),
        "{events:?}"
    );
}

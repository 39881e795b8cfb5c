//! The policy of a run changes only when the user asks. A `gaffer.toml` edited while `gaffer run
//! --watch` works changes nothing by itself; SIGHUP reloads it through the same parser, and a
//! configuration that does not load is refused while the plugins in force keep serving.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use gaffer::demo::pipeline::demo_config;
use gaffer::demo::sample;
use gaffer::demo::scripted_provider::ScriptedProvider;
use gaffer::store::{AttemptOutcome, BacklogStore, SqliteStore, TaskState};

fn store(root: &Path) -> SqliteStore {
    SqliteStore::open(root.join(".gaffer/gaffer.db")).unwrap()
}

fn task(title: &str) -> gaffer::store::NewTask {
    sample::tasks()
        .into_iter()
        .find(|t| t.title == title)
        .unwrap()
}

/// Wait until `done` holds, or fail after a minute saying what was awaited.
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out: {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The next stderr line of the run containing `needle`.
fn line_with(lines: &mpsc::Receiver<String>, needle: &str) -> String {
    loop {
        match lines.recv_timeout(Duration::from_secs(60)) {
            Ok(line) if line.contains(needle) => return line,
            Ok(_) => {}
            Err(e) => panic!("no stderr line with {needle:?}: {e}"),
        }
    }
}

fn signal(child: &Child, signal: i32) {
    let pid = i32::try_from(child.id()).unwrap();
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_edited_config_serves_only_after_sighup_and_a_broken_one_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("repo");
    sample::create(&root, true).unwrap();
    let provider = ScriptedProvider::start(sample::script()).await.unwrap();
    let plugins = support::guest("cost-tier").parent().unwrap().to_path_buf();
    let config = demo_config(&provider.base_url(), &plugins) + "\n[run]\npoll_secs = 1\n";
    std::fs::write(root.join("gaffer.toml"), &config).unwrap();
    std::fs::create_dir_all(root.join(".gaffer")).unwrap();
    store(&root).add_tasks(&[]).unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_gaffer"))
        .args(["run", "--watch", "--format", "json"])
        .current_dir(&root)
        .env("GAFFER_PLUGIN_CACHE", support::test_cache_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, lines) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("gaffer: {line}");
            if tx.send(line).is_err() {
                return;
            }
        }
    });

    line_with(&lines, "started");
    // The team protects the code the next task changes; nobody reloads.
    let protect = |text: &str| text.replacen("\".env\", ", "\"textkit/**\", \".env\", ", 1);
    std::fs::write(root.join("gaffer.toml"), protect(&config)).unwrap();
    store(&root).add_tasks(&[task("Add slugify")]).unwrap();
    wait_for("T-1 ends", || {
        store(&root).task("T-1").unwrap().unwrap().state != TaskState::Queued
            && store(&root).task("T-1").unwrap().unwrap().state != TaskState::Running
    });
    // The policy the run started with served: nothing was denied, the change merged.
    let t1 = store(&root).task("T-1").unwrap().unwrap();
    assert_eq!(t1.state, TaskState::Merged, "{:?}", t1.reason);
    let denied = |calls: &[gaffer::demo::scripted_provider::LoggedCall]| {
        calls
            .iter()
            .map(|c| c.request.to_string())
            .any(|r| r.contains("protected_paths") && r.contains("textkit/**"))
    };
    let before_reload = provider.log().len();
    assert!(!denied(&provider.log()));

    // A broken configuration is refused on SIGHUP, naming its line.
    std::fs::write(root.join("gaffer.toml"), protect(&config) + "[budgets]\n").unwrap();
    signal(&child, libc::SIGHUP);
    let refused = line_with(&lines, "reload refused");
    assert!(refused.contains("unknown key `budgets`"), "{refused}");

    // Fixed and reloaded: the new rule holds for the next task.
    std::fs::write(root.join("gaffer.toml"), protect(&config)).unwrap();
    signal(&child, libc::SIGHUP);
    line_with(&lines, "reloaded the plugins");
    store(&root)
        .add_tasks(&[task("Count words, not spaces")])
        .unwrap();
    wait_for("T-2's first attempt ends", || {
        !store(&root).attempts("T-2").unwrap().is_empty()
    });
    let attempt = &store(&root).attempts("T-2").unwrap()[0];
    assert_eq!(
        attempt.outcome,
        AttemptOutcome::Rejected,
        "{:?}",
        attempt.reasons
    );
    // The model was told its edit of textkit/ is denied by the rule now in force.
    assert!(denied(&provider.log()[before_reload..]));

    signal(&child, libc::SIGINT);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
}

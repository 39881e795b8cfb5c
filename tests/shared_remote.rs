//! Several hosts, one shared remote: each host works in a clone of its own and lands a merge by
//! pushing to the remote with a compare-and-swap (`[project] remote`). Real repositories: a bare
//! one as the remote, clones of it as the hosts. At the `Repo` level: landing on a stale clone,
//! the compare-and-swap against another host's push (refused by the lease, and lost at the
//! remote itself), a push refused for another reason, the clone's own branch following only
//! where that is safe, the preflight's checks. At the pipeline level: the `gaffer` binary on a
//! clone whose own branch is behind the remote, on one with uncommitted work, against a remote
//! that keeps moving (a requeue, or on the last attempt a person), and with the remote
//! misnamed. Expected values come from `git` itself, run on the bare repository.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use gaffer::demo::pipeline::demo_config;
use gaffer::demo::sample;
use gaffer::demo::scripted_provider::{Script, ScriptedProvider, TaskScript, Turn};
use gaffer::git::{Candidate, GitError, MergeKind, MergeOutcome, MergeTarget, Repo, Worktree};
use gaffer::store::{AttemptOutcome, BacklogStore, NewTask, SqliteStore, TaskState};

fn git(dir: &Path, args: &[&str]) -> Output {
    Command::new("git")
        .args(["-c", "user.name=host", "-c", "user.email=host@t.invalid"])
        .args(["-c", "commit.gpgsign=false"])
        .args(args)
        .current_dir(dir)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .output()
        .unwrap()
}

fn git_ok(dir: &Path, args: &[&str]) -> String {
    let out = git(dir, args);
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn write(path: &Path, text: &str) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::write(path, text).unwrap();
}

fn executable(path: &Path, text: &str) {
    write(path, text);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A pre-receive hook that plays another host winning the race at the remote: it lands a
/// commit of its own on `main` (out of the push's quarantine, so that the ref may move), then
/// lets the push go on, whose update of `main` the remote then refuses.
const ANOTHER_HOST_FIRST: &str = r#"#!/bin/sh
unset GIT_QUARANTINE_PATH GIT_OBJECT_DIRECTORY GIT_ALTERNATE_OBJECT_DIRECTORIES
tip=$(git rev-parse refs/heads/main)
n=$(git rev-list --count "$tip")
new=$(echo "another host, commit $n" | git -c user.name=other -c user.email=o@t.invalid commit-tree "$tip^{tree}" -p "$tip")
git update-ref refs/heads/main "$new" "$tip"
exit 0
"#;

/// One bare repository as the shared remote, and the clones of the hosts that merge into it.
struct Shared {
    tmp: tempfile::TempDir,
    bare: PathBuf,
}

impl Shared {
    /// A remote whose `main` holds one commit, `initial`, with `README.md` and `shared.txt`.
    fn new() -> Shared {
        let tmp = tempfile::tempdir().unwrap();
        let seed = tmp.path().join("seed");
        std::fs::create_dir_all(&seed).unwrap();
        git_ok(&seed, &["init", "--quiet", "-b", "main"]);
        write(&seed.join("README.md"), "hello\n");
        write(&seed.join("shared.txt"), "a\nb\nc\n");
        git_ok(&seed, &["add", "-A"]);
        git_ok(&seed, &["commit", "--quiet", "-m", "initial"]);
        let bare = tmp.path().join("shared.git");
        git_ok(
            tmp.path(),
            &["clone", "--quiet", "--bare", "seed", "shared.git"],
        );
        Shared { tmp, bare }
    }

    /// A host's clone of the remote (`origin`), with `main` checked out.
    fn clone(&self, name: &str) -> Repo {
        git_ok(
            self.tmp.path(),
            &["clone", "--quiet", self.bare.to_str().unwrap(), name],
        );
        Repo::open(&self.tmp.path().join(name)).unwrap()
    }

    /// `git` on the remote itself.
    fn remote(&self, args: &[&str]) -> String {
        let dir = format!("--git-dir={}", self.bare.display());
        let mut all = vec![dir.as_str()];
        all.extend_from_slice(args);
        git_ok(self.tmp.path(), &all)
    }

    fn remote_tip(&self) -> String {
        self.remote(&["rev-parse", "refs/heads/main"])
    }

    /// The subjects of the remote's `main`, newest first.
    fn remote_log(&self) -> Vec<String> {
        self.remote(&["log", "--format=%s", "refs/heads/main"])
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn remote_has_object(&self, id: &str) -> bool {
        let dir = format!("--git-dir={}", self.bare.display());
        git(self.tmp.path(), &[&dir, "cat-file", "-e", id])
            .status
            .success()
    }

    /// An attempt in `repo`: a worktree on `base`, `file` written, committed as `subject`.
    fn attempt(&self, repo: &Repo, name: &str, base: &str, file: &str, text: &str) -> Worktree {
        let wt = repo
            .add_worktree(
                &self.tmp.path().join("wts").join(name),
                &format!("gaffer/{name}"),
                base,
            )
            .unwrap();
        write(&wt.path.join(file), text);
        wt.commit(&format!("{name}: {file}")).unwrap().unwrap();
        wt
    }
}

fn origin_main() -> MergeTarget {
    MergeTarget::on_remote("origin", "main")
}

/// The subjects in `log`, each with how often it occurs.
fn counted(log: &[String]) -> Vec<(String, usize)> {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for subject in log {
        match counts.iter_mut().find(|(s, _)| s == subject) {
            Some((_, n)) => *n += 1,
            None => counts.push((subject.clone(), 1)),
        }
    }
    counts.sort();
    counts
}

#[test]
fn a_stale_clone_builds_on_the_remote_tip_and_both_changes_land_once() {
    let shared = Shared::new();
    let a = shared.clone("a");
    let b = shared.clone("b");
    let initial = shared.remote_tip();

    // Host A starts from the remote's tip, fetched, and lands by a push.
    let base = a.fetch_target("origin", "main").unwrap();
    assert_eq!(base, initial);
    let wt_a = shared.attempt(&a, "A-1", &base, "a.txt", "from host A\n");
    let candidate = a.candidate(&wt_a, &origin_main(), "Merge A-1").unwrap();
    let Candidate::Ready {
        how: MergeKind::FastForward,
        ..
    } = &candidate
    else {
        panic!("{candidate:?}")
    };
    let landed = a.land(&candidate, &origin_main(), "A-1").unwrap();
    let a_commit = shared.remote_tip();
    assert_eq!(
        landed,
        Some(MergeOutcome::Merged {
            commit: a_commit.clone(),
            how: MergeKind::FastForward,
            user_tree_updated: true,
        })
    );
    assert_eq!(shared.remote_log(), ["A-1: a.txt", "initial"]);
    // A's own checkout (clean, on main) came along.
    assert_eq!(git_ok(a.root(), &["rev-parse", "main"]), a_commit);
    assert!(a.root().join("a.txt").is_file());

    // Host B's own main is stale: its attempt started there, before A's push.
    assert_eq!(git_ok(b.root(), &["rev-parse", "main"]), initial);
    let wt_b = shared.attempt(&b, "B-1", "main", "b.txt", "from host B\n");
    let b_commit = b.branch_tip("gaffer/B-1").unwrap();
    let candidate = b.candidate(&wt_b, &origin_main(), "Merge B-1").unwrap();
    let Candidate::Ready {
        commit,
        how: MergeKind::MergeCommit,
        tip,
    } = &candidate
    else {
        panic!("{candidate:?}")
    };
    // Built on the remote's tip (A's commit), fetched, not on B's stale main.
    assert_eq!(tip, &a_commit);
    assert_eq!(
        git_ok(b.root(), &["rev-list", "--parents", "-n", "1", commit]),
        format!("{commit} {a_commit} {b_commit}")
    );
    let landed = b.land(&candidate, &origin_main(), "B-1").unwrap();
    assert!(
        matches!(&landed, Some(MergeOutcome::Merged { commit: c, how: MergeKind::MergeCommit, user_tree_updated: true }) if c == commit),
        "{landed:?}"
    );
    assert_eq!(&shared.remote_tip(), commit);
    let log = shared.remote_log();
    assert_eq!(
        counted(&log),
        [
            ("A-1: a.txt".to_string(), 1),
            ("B-1: b.txt".to_string(), 1),
            ("Merge B-1".to_string(), 1),
            ("initial".to_string(), 1),
        ]
    );
    assert_eq!(
        shared.remote(&["ls-tree", "--name-only", "refs/heads/main"]),
        "README.md\na.txt\nb.txt\nshared.txt"
    );
    // B's clone followed: its main and its tree are the remote's.
    assert_eq!(git_ok(b.root(), &["rev-parse", "main"]), *commit);
    assert!(b.root().join("a.txt").is_file() && b.root().join("b.txt").is_file());
    assert_eq!(git_ok(b.root(), &["status", "--porcelain"]), "");
}

#[test]
fn a_push_after_the_candidate_was_built_wins_and_the_rebuilt_candidate_lands() {
    let shared = Shared::new();
    let a = shared.clone("a");
    let b = shared.clone("b");
    // B's user has uncommitted work on main: nothing B lands may touch it.
    write(&b.root().join("README.md"), "hello, unsaved\n");
    let b_main = git_ok(b.root(), &["rev-parse", "main"]);

    let base = b.fetch_target("origin", "main").unwrap();
    let wt_b = shared.attempt(&b, "B-1", &base, "b.txt", "from host B\n");
    let b_commit = b.branch_tip("gaffer/B-1").unwrap();
    let stale = b.candidate(&wt_b, &origin_main(), "Merge B-1").unwrap();

    // Meanwhile host A pushes.
    let wt_a = shared.attempt(&a, "A-1", "main", "a.txt", "from host A\n");
    let a_candidate = a.candidate(&wt_a, &origin_main(), "Merge A-1").unwrap();
    assert!(
        a.land(&a_candidate, &origin_main(), "A-1")
            .unwrap()
            .is_some()
    );
    let a_tip = shared.remote_tip();

    // B's compare-and-swap fails: the target moved; nothing of B's reached the remote.
    assert_eq!(b.land(&stale, &origin_main(), "B-1").unwrap(), None);
    assert_eq!(shared.remote_tip(), a_tip);
    assert!(!shared.remote_has_object(&b_commit));
    assert_eq!(shared.remote_log(), ["A-1: a.txt", "initial"]);

    // A new candidate, on the new tip, lands.
    let rebuilt = b.candidate(&wt_b, &origin_main(), "Merge B-1").unwrap();
    let Candidate::Ready { tip, .. } = &rebuilt else {
        panic!("{rebuilt:?}")
    };
    assert_eq!(tip, &a_tip);
    let landed = b.land(&rebuilt, &origin_main(), "B-1").unwrap();
    let Some(MergeOutcome::Merged {
        commit,
        user_tree_updated: false,
        ..
    }) = landed
    else {
        panic!("{landed:?}")
    };
    assert_eq!(shared.remote_tip(), commit);
    assert_eq!(
        counted(&shared.remote_log()),
        [
            ("A-1: a.txt".to_string(), 1),
            ("B-1: b.txt".to_string(), 1),
            ("Merge B-1".to_string(), 1),
            ("initial".to_string(), 1),
        ]
    );
    // The user's tree and B's own main are as they were.
    assert_eq!(
        std::fs::read_to_string(b.root().join("README.md")).unwrap(),
        "hello, unsaved\n"
    );
    assert_eq!(git_ok(b.root(), &["rev-parse", "main"]), b_main);
    assert!(!b.root().join("a.txt").exists());
}

#[test]
fn a_race_lost_at_the_remote_itself_is_a_moved_target_too() {
    let shared = Shared::new();
    let b = shared.clone("b");
    let wt = shared.attempt(&b, "B-1", "main", "b.txt", "from host B\n");
    let b_commit = b.branch_tip("gaffer/B-1").unwrap();
    let candidate = b.candidate(&wt, &origin_main(), "Merge B-1").unwrap();
    let Candidate::Ready { tip, .. } = &candidate else {
        panic!("{candidate:?}")
    };
    // The lease holds when the push starts; another host's update lands at the remote
    // before B's does.
    let hook = shared.bare.join("hooks/pre-receive");
    executable(&hook, ANOTHER_HOST_FIRST);
    assert_eq!(b.land(&candidate, &origin_main(), "B-1").unwrap(), None);
    let moved = shared.remote_tip();
    assert_ne!(&moved, tip);
    assert_eq!(
        shared.remote_log(),
        ["another host, commit 1", "initial"],
        "nothing of B's landed"
    );
    assert!(
        !git(
            shared.tmp.path(),
            &[
                &format!("--git-dir={}", shared.bare.display()),
                "merge-base",
                "--is-ancestor",
                &b_commit,
                "refs/heads/main",
            ],
        )
        .status
        .success()
    );
    std::fs::remove_file(&hook).unwrap();
    let rebuilt = b.candidate(&wt, &origin_main(), "Merge B-1").unwrap();
    let landed = b.land(&rebuilt, &origin_main(), "B-1").unwrap();
    assert!(
        matches!(landed, Some(MergeOutcome::Merged { .. })),
        "{landed:?}"
    );
    assert_eq!(
        counted(&shared.remote_log()),
        [
            ("B-1: b.txt".to_string(), 1),
            ("Merge B-1".to_string(), 1),
            ("another host, commit 1".to_string(), 1),
            ("initial".to_string(), 1),
        ]
    );
}

#[test]
fn a_push_refused_for_another_reason_is_an_error_naming_the_remote() {
    let shared = Shared::new();
    let b = shared.clone("b");
    let wt = shared.attempt(&b, "B-1", "main", "b.txt", "from host B\n");
    let before = shared.remote_tip();

    // The remote's own rule refuses it.
    executable(
        &shared.bare.join("hooks/pre-receive"),
        "#!/bin/sh\necho 'main is frozen for the release' >&2\nexit 1\n",
    );
    let candidate = b.candidate(&wt, &origin_main(), "Merge B-1").unwrap();
    let error = b.land(&candidate, &origin_main(), "B-1").unwrap_err();
    let text = error.to_string();
    assert!(matches!(error, GitError::Command { .. }), "{error:?}");
    for needle in [
        "push",
        "origin",
        "refs/heads/main",
        "pre-receive hook declined",
        "main is frozen for the release",
    ] {
        assert!(text.contains(needle), "{needle:?} not in {text}");
    }
    assert_eq!(shared.remote_tip(), before);
    std::fs::remove_file(shared.bare.join("hooks/pre-receive")).unwrap();

    // The remote is gone.
    let candidate = b.candidate(&wt, &origin_main(), "Merge B-1").unwrap();
    let moved_away = shared.tmp.path().join("moved-away.git");
    std::fs::rename(&shared.bare, &moved_away).unwrap();
    let error = b.land(&candidate, &origin_main(), "B-1").unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("origin") && text.contains("does not appear to be a git repository"),
        "{text}"
    );
    std::fs::rename(&moved_away, &shared.bare).unwrap();
    assert_eq!(shared.remote_tip(), before);
}

#[test]
fn the_local_branch_follows_only_where_that_is_safe() {
    let shared = Shared::new();
    // C has main, but not checked out: its ref follows by a compare-and-swap.
    let c = shared.clone("c");
    git_ok(c.root(), &["checkout", "--quiet", "--detach"]);
    let wt = shared.attempt(&c, "C-1", "main", "c.txt", "from host C\n");
    let candidate = c.candidate(&wt, &origin_main(), "Merge C-1").unwrap();
    let landed = c.land(&candidate, &origin_main(), "C-1").unwrap();
    assert!(
        matches!(
            landed,
            Some(MergeOutcome::Merged {
                user_tree_updated: false,
                ..
            })
        ),
        "{landed:?}"
    );
    assert_eq!(
        git_ok(c.root(), &["rev-parse", "main"]),
        shared.remote_tip()
    );
    assert!(
        git_ok(c.root(), &["reflog", "show", "--format=%gs", "main"])
            .lines()
            .next()
            .unwrap()
            .contains("gaffer: merge C-1 (pushed to origin)")
    );

    // D's main has a commit of its own that was never pushed: it stays where it is.
    let d = shared.clone("d");
    write(&d.root().join("local.txt"), "mine\n");
    git_ok(d.root(), &["add", "-A"]);
    git_ok(d.root(), &["commit", "--quiet", "-m", "local only"]);
    let d_main = git_ok(d.root(), &["rev-parse", "main"]);
    let base = d.fetch_target("origin", "main").unwrap();
    let wt = shared.attempt(&d, "D-1", &base, "d.txt", "from host D\n");
    let candidate = d.candidate(&wt, &origin_main(), "Merge D-1").unwrap();
    let landed = d.land(&candidate, &origin_main(), "D-1").unwrap();
    let Some(MergeOutcome::Merged {
        commit,
        user_tree_updated: false,
        ..
    }) = landed
    else {
        panic!("{landed:?}")
    };
    assert_eq!(shared.remote_tip(), commit);
    assert_eq!(git_ok(d.root(), &["rev-parse", "main"]), d_main);
    assert!(!shared.remote_log().contains(&"local only".to_string()));
}

#[test]
fn the_preflight_checks_name_the_missing_remote_or_branch() {
    let shared = Shared::new();
    let b = shared.clone("b");
    assert_eq!(
        b.check_remote("origin", "main").unwrap(),
        shared.remote_tip()
    );

    let error = b.check_remote("upstream", "main").unwrap_err();
    assert!(
        matches!(&error, GitError::NoSuchRemote { remote, .. } if remote == "upstream"),
        "{error:?}"
    );
    assert!(error.to_string().contains("`upstream`"), "{error}");

    let error = b.check_remote("origin", "trunk").unwrap_err();
    let GitError::NoRemoteBranch {
        remote,
        branch,
        url,
        ..
    } = &error
    else {
        panic!("{error:?}")
    };
    assert_eq!((remote.as_str(), branch.as_str()), ("origin", "trunk"));
    assert_eq!(
        url,
        &git_ok(b.root(), &["config", "--get", "remote.origin.url"])
    );
    let text = error.to_string();
    assert!(
        text.contains("`origin`") && text.contains("`trunk`"),
        "{text}"
    );
    // A branch of that name only in this clone is not on the remote.
    git_ok(b.root(), &["branch", "trunk"]);
    assert!(matches!(
        b.check_remote("origin", "trunk"),
        Err(GitError::NoRemoteBranch { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// The pipeline: the `gaffer` binary on a host's clone.

/// The sample repository as a host's clone of a shared remote (`origin`, a bare repository
/// made from it), with a backlog and a `gaffer.toml` that names the remote.
struct Host {
    tmp: tempfile::TempDir,
    root: PathBuf,
    bare: PathBuf,
    provider: ScriptedProvider,
}

impl Host {
    async fn new(script: Script, tasks: Vec<NewTask>, edit: impl Fn(String) -> String) -> Host {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("repo");
        sample::create(&root, true).unwrap();
        let bare = tmp.path().join("shared.git");
        git_ok(
            tmp.path(),
            &["clone", "--quiet", "--bare", "repo", "shared.git"],
        );
        git_ok(&root, &["remote", "add", "origin", bare.to_str().unwrap()]);
        let provider = ScriptedProvider::start(script).await.unwrap();
        let plugins = support::guest("cost-tier").parent().unwrap().to_path_buf();
        support::guest("tests-and-limits");
        support::guest("protected-paths");
        let config = demo_config(&provider.base_url(), &plugins).replace(
            "target_branch = \"main\"\n",
            "target_branch = \"main\"\nremote = \"origin\"\n",
        );
        assert!(config.contains("remote = \"origin\""));
        std::fs::write(root.join("gaffer.toml"), edit(config)).unwrap();
        std::fs::create_dir_all(root.join(".gaffer")).unwrap();
        let store = SqliteStore::open(root.join(".gaffer/gaffer.db")).unwrap();
        store.add_tasks(&tasks).unwrap();
        Host {
            tmp,
            root,
            bare,
            provider,
        }
    }

    /// `gaffer run ARGS` to the end.
    fn run(&self, args: &[&str]) -> Output {
        let out = Command::new(env!("CARGO_BIN_EXE_gaffer"))
            .arg("run")
            .args(args)
            .current_dir(&self.root)
            .env("GAFFER_PLUGIN_CACHE", support::test_cache_dir())
            .env_remove("GAFFER_LOG")
            .output()
            .unwrap();
        eprintln!(
            "gaffer run: {}\n--- stdout\n{}--- stderr\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn store(&self) -> SqliteStore {
        SqliteStore::open(self.root.join(".gaffer/gaffer.db")).unwrap()
    }

    fn state(&self, id: &str) -> (TaskState, String) {
        let t = self.store().task(id).unwrap().unwrap();
        (t.state, t.reason.unwrap_or_default())
    }

    /// `git` on the remote itself.
    fn remote(&self, args: &[&str]) -> String {
        let dir = format!("--git-dir={}", self.bare.display());
        let mut all = vec![dir.as_str()];
        all.extend_from_slice(args);
        git_ok(self.tmp.path(), &all)
    }

    /// Another host pushes a commit adding `NOTES.md` to the remote's main; its id.
    fn another_host_pushes(&self) -> String {
        let other = self.tmp.path().join("other");
        git_ok(
            self.tmp.path(),
            &["clone", "--quiet", self.bare.to_str().unwrap(), "other"],
        );
        write(&other.join("NOTES.md"), "notes of another host\n");
        git_ok(&other, &["add", "-A"]);
        git_ok(&other, &["commit", "--quiet", "-m", "another host: notes"]);
        git_ok(&other, &["push", "--quiet", "origin", "main"]);
        git_ok(&other, &["rev-parse", "HEAD"])
    }
}

fn slugify() -> (Script, NewTask) {
    let turns: Vec<Turn> = sample::script()
        .tasks
        .into_iter()
        .find(|t| t.matches == "Add slugify")
        .unwrap()
        .models
        .remove(sample::SMALL)
        .unwrap();
    let script = Script {
        tasks: vec![TaskScript {
            matches: "Add slugify".to_string(),
            models: [(sample::SMALL.to_string(), turns)].into_iter().collect(),
        }],
    };
    (script, sample::tasks().remove(0))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_whose_own_main_is_behind_starts_from_the_remote_and_lands_by_a_push() {
    let (script, task) = slugify();
    let host = Host::new(script, vec![task], |t| t).await;
    let stale = git_ok(&host.root, &["rev-parse", "main"]);
    let other = host.another_host_pushes();
    assert_ne!(git_ok(&host.root, &["rev-parse", "main"]), other);

    let out = host.run(&[]);
    assert!(out.status.success());
    let (state, reason) = host.state("T-1");
    assert_eq!(state, TaskState::Merged, "{reason}");
    assert!(reason.contains("merged into origin/main"), "{reason}");

    // The attempt started from the remote's tip (the other host's commit), so its commit
    // fast-forwarded the remote: one parent, that commit.
    let tip = host.remote(&["rev-parse", "refs/heads/main"]);
    assert_eq!(
        host.remote(&["rev-list", "--parents", "-n", "1", "refs/heads/main"]),
        format!("{tip} {other}")
    );
    let log = host.remote(&["log", "--format=%s", "refs/heads/main"]);
    let subjects: Vec<&str> = log.lines().collect();
    assert_eq!(subjects.len(), 3, "{log}");
    assert!(subjects[0].starts_with("T-1: "), "{log}");
    assert_eq!(
        subjects[1..],
        [
            "another host: notes",
            "textkit: the demo's sample repository"
        ]
    );
    let strings = host.remote(&["show", "refs/heads/main:textkit/strings.py"]);
    assert!(strings.contains("re.findall"), "{strings}");
    // The host's own checkout (clean, on main) was brought along to the remote's tip.
    assert_eq!(git_ok(&host.root, &["rev-parse", "main"]), tip);
    assert_ne!(tip, stale);
    assert!(host.root.join("NOTES.md").is_file());
    assert_eq!(
        git_ok(
            &host.root,
            &["status", "--porcelain", "--untracked-files=no"]
        ),
        ""
    );
}

/// One attempt at the slugify task against a remote where another host lands first whenever
/// this one pushes; the host, and the task's state and reason after it.
async fn one_attempt_against_a_remote_that_always_moves(
    edit: impl Fn(String) -> String,
) -> (Host, TaskState, String) {
    let (script, task) = slugify();
    let host = Host::new(script, vec![task], edit).await;
    executable(&host.bare.join("hooks/pre-receive"), ANOTHER_HOST_FIRST);
    let out = host.run(&["--max-tasks", "1"]);
    assert!(out.status.success());
    let (state, reason) = host.state("T-1");
    (host, state, reason)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_remote_that_moves_under_every_try_requeues_the_task_without_blaming_the_model() {
    let (host, state, reason) = one_attempt_against_a_remote_that_always_moves(|t| t).await;
    assert_eq!(state, TaskState::RejectedRequeued, "{reason}");
    assert!(
        reason.starts_with("requeued: origin/main moved during each of"),
        "{reason}"
    );
    let start = host.remote(&["rev-list", "--max-parents=0", "refs/heads/main"]);
    let attempts = host.store().attempts("T-1").unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].outcome, AttemptOutcome::Failed);
    assert_eq!(attempts[0].rejected_by, None);
    assert_eq!(attempts[0].tests_passed, Some(true));

    // Every try lost its race to another host, and nothing of the task reached the remote.
    let log = host.remote(&["log", "--format=%s", "refs/heads/main"]);
    let others = log
        .lines()
        .filter(|s| s.starts_with("another host"))
        .count();
    assert!(
        reason.contains(&format!("each of {others} tries")),
        "{reason}\n{log}"
    );
    assert!(others > 1, "{log}");
    assert_eq!(
        log.lines().count(),
        others + 1,
        "only the other host's commits on top of the start: {log}"
    );
    assert_eq!(
        host.remote(&["rev-list", "--count", &format!("{start}..refs/heads/main")]),
        others.to_string()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn on_its_last_attempt_a_task_whose_remote_kept_moving_goes_to_a_person() {
    let (host, state, reason) = one_attempt_against_a_remote_that_always_moves(|t| {
        t.replace("max_attempts = 3", "max_attempts = 1")
    })
    .await;
    assert_eq!(state, TaskState::NeedsHuman, "{reason}");
    assert!(
        reason.starts_with("origin/main moved during each of")
            && reason.ends_with("(the last of 1 attempts)"),
        "{reason}"
    );
    let attempts = host.store().attempts("T-1").unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].outcome, AttemptOutcome::Failed);
    assert_eq!(attempts[0].rejected_by, None);
}

#[tokio::test(flavor = "multi_thread")]
async fn uncommitted_work_in_the_hosts_checkout_neither_stops_the_run_nor_is_touched() {
    let (script, task) = slugify();
    let host = Host::new(script, vec![task], |t| t).await;
    let readme = host.root.join("README.md");
    let edited = format!(
        "{}my unsaved notes\n",
        std::fs::read_to_string(&readme).unwrap()
    );
    write(&readme, &edited);
    let main = git_ok(&host.root, &["rev-parse", "main"]);

    let out = host.run(&[]);
    assert!(out.status.success());
    let (state, reason) = host.state("T-1");
    assert_eq!(state, TaskState::Merged, "{reason}");
    let log = host.remote(&["log", "--format=%s", "refs/heads/main"]);
    assert!(log.lines().next().unwrap().starts_with("T-1: "), "{log}");
    // The host's checkout is as the user left it: its branch, its edit, no change of the task.
    assert_eq!(git_ok(&host.root, &["rev-parse", "main"]), main);
    assert_eq!(std::fs::read_to_string(&readme).unwrap(), edited);
    assert!(!host.root.join("tests/test_slugify.py").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_misnamed_remote_or_a_branch_missing_on_it_stops_the_run_before_any_work() {
    let (script, task) = slugify();
    let host = Host::new(script, vec![task], |t| {
        t.replace("remote = \"origin\"", "remote = \"upstream\"")
    })
    .await;
    let out = host.run(&[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no remote `upstream`"), "{stderr}");
    assert_eq!(host.state("T-1").0, TaskState::Queued);
    assert!(host.provider.log().is_empty());

    // The remote exists, but its branch is called trunk.
    std::fs::write(
        host.root.join("gaffer.toml"),
        std::fs::read_to_string(host.root.join("gaffer.toml"))
            .unwrap()
            .replace("remote = \"upstream\"", "remote = \"origin\""),
    )
    .unwrap();
    host.remote(&["branch", "-m", "main", "trunk"]);
    let out = host.run(&[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the remote `origin`") && stderr.contains("has no branch `main`"),
        "{stderr}"
    );
    assert_eq!(host.state("T-1").0, TaskState::Queued);
    assert!(host.provider.log().is_empty());
}

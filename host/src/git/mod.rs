//! Git: a worktree and branch per attempt, the change as a diff, commits, and merges into the
//! target branch (of this repository, or of a remote that several hosts share) that never
//! touch the user's uncommitted work.
//!
//! Everything goes through the `git` command line: it is the most faithful implementation of
//! worktrees, merges and rebases, and it is on every machine that runs gaffer. Every command runs
//! with a fixed, minimal environment (see [`Git`]) so that the user's locale, an inherited
//! `GIT_DIR` or a global signing setting cannot change what gaffer does.

mod blocking;
mod command;
mod diff;
mod merge;
mod recycle;
mod ref_files;
mod remote;
mod snapshot;
mod stamp;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub use blocking::AsyncRepo;
pub(crate) use command::Git;
pub use merge::{Candidate, MergeKind, MergeOutcome, MergeTarget};
pub use recycle::PARKED_PREFIX;
use ref_files::HeadFile;
pub use snapshot::{IgnoredFile, Snapshot, changed_since, ignored_changed_since, with_ignored};

/// A failed git operation. Every variant names the repository or worktree it concerns; a failed
/// command also carries its arguments and git's own error output, so the report can say exactly
/// what went wrong without a second look at the machine.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// The path is not inside a git working tree (or does not exist).
    #[error("{} is not a git repository: {reason}", path.display())]
    NotARepository { path: PathBuf, reason: String },
    /// A branch (or commit) the operation needs does not exist.
    #[error("no branch `{branch}` in {}", repo.display())]
    NoSuchBranch { repo: PathBuf, branch: String },
    /// The repository has no remote of that name (`git remote get-url` refused it).
    #[error("no remote `{remote}` in {}: {reason}", repo.display())]
    NoSuchRemote {
        repo: PathBuf,
        remote: String,
        reason: String,
    },
    /// The remote has no branch of that name.
    #[error("the remote `{remote}` of {} ({url}) has no branch `{branch}`", repo.display())]
    NoRemoteBranch {
        repo: PathBuf,
        remote: String,
        url: String,
        branch: String,
    },
    /// A git command failed.
    #[error("`git {args}` in {} failed ({status}): {stderr}", dir.display())]
    Command {
        dir: PathBuf,
        args: String,
        status: String,
        stderr: String,
    },
    /// A file-system operation around git failed, or git could not be started.
    #[error("{}: {reason}", path.display())]
    Io { path: PathBuf, reason: String },
    /// The worktree holds a repository of its own (a directory with a `.git`) that git cannot
    /// stage: it has no commit yet.
    #[error("`{path}` in {} is a repository of its own without a commit", worktree.display())]
    NestedRepository { worktree: PathBuf, path: String },
    /// `git diff` printed something we could not parse.
    #[error("could not parse git diff output: {reason}")]
    Parse { reason: String },
}

/// The user's repository, found from any path inside it, and the locks that make changes to it
/// from this process happen one at a time: merges (two attempts racing to move the same branch
/// would otherwise each see the other's move as a conflict), worktree administration (`git
/// worktree add` reads the other worktrees' entries, which a concurrent add or remove may be
/// half-way through writing) and fetches from a shared remote (two fetches updating the same
/// remote-tracking ref at once would fail on its lock).
#[derive(Debug)]
pub struct Repo {
    root: PathBuf,
    merge_lock: Mutex<()>,
    worktree_lock: Mutex<()>,
    fetch_lock: Mutex<()>,
}

/// A worktree gaffer made for one attempt: its directory, its branch, and the commit it started
/// from (what the diff is taken against).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Worktree {
    /// Directory of the worktree.
    pub path: PathBuf,
    /// Its git dir in the main repository (`.git/worktrees/<name>`), as git reported it when
    /// gaffer made the worktree; every later git command names it.
    pub git_dir: PathBuf,
    /// Branch checked out in it.
    pub branch: String,
    /// Full id of the commit it started from.
    pub base: String,
    /// The commit the worktree is known to match exactly, nothing untracked or ignored in it:
    /// gaffer's own git made it so (the snapshot and its clean, or the reset after the tests)
    /// and nothing has run in it since. Only the pipeline vouches for this, after an attempt
    /// whose snapshot landed as a fast-forward; a recycle to that same commit then only
    /// switches the branch, without a look at the files (see [`Repo::prepare_worktree`]).
    pub clean_at: Option<String>,
}

/// One entry of `git worktree list --porcelain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WorktreeEntry {
    pub(crate) path: PathBuf,
    /// Short branch name, None when detached (or bare).
    pub(crate) branch: Option<String>,
    pub(crate) bare: bool,
    /// Git knows the worktree but its directory is gone.
    pub(crate) prunable: bool,
}

impl Repo {
    /// Opens the repository that contains `path`. The root is the main worktree, also when `path`
    /// lies inside a linked worktree. A bare repository or a path outside any repository is
    /// `NotARepository`.
    pub fn open(path: &Path) -> Result<Repo, GitError> {
        if !path.is_dir() {
            return Err(GitError::NotARepository {
                path: path.to_path_buf(),
                reason: "no such directory (or not a directory)".to_string(),
            });
        }
        if let Some(root) = plain_main_worktree(path) {
            return Ok(Repo::at(root));
        }
        let run = Git::new(path)
            .args(["rev-parse", "--show-toplevel"])
            .output()?;
        if !run.ok() {
            return Err(GitError::NotARepository {
                path: path.to_path_buf(),
                reason: run.stderr().to_string(),
            });
        }
        let toplevel = PathBuf::from(run.stdout.trim_end_matches('\n'));
        // Listed from `path`: with `core.worktree` the top level may lie outside the repository.
        let entries = list_worktrees(path)?;
        let root = match entries.first() {
            Some(main) if !main.bare => main.path.clone(),
            _ => toplevel,
        };
        Ok(Repo::at(root))
    }

    fn at(root: PathBuf) -> Repo {
        Repo {
            root,
            merge_lock: Mutex::new(()),
            worktree_lock: Mutex::new(()),
            fetch_lock: Mutex::new(()),
        }
    }

    /// The root of the user's main worktree.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The full commit id `branch` points at; `NoSuchBranch` when there is no such branch.
    pub fn branch_tip(&self, branch: &str) -> Result<String, GitError> {
        // The branch's loose ref in the repository's `.git` directory says so without a git
        // process, when it is one (see [`ref_files::read_loose_ref`]: a packed ref, a
        // separate git dir or reftable leave it to git). Unlike `^{commit}` this does not
        // peel: a branch holds a commit unless someone pointed it elsewhere with plumbing, and
        // then the git commands that use the id refuse it.
        if let Some(commit) = self.loose_branch_tip(branch) {
            return Ok(commit);
        }
        let run = Git::new(&self.root)
            .args(["rev-parse", "--quiet", "--verify"])
            .arg(format!("refs/heads/{branch}^{{commit}}"))
            .output()?;
        if run.ok() {
            Ok(run.stdout.trim().to_string())
        } else {
            Err(GitError::NoSuchBranch {
                repo: self.root.clone(),
                branch: branch.to_string(),
            })
        }
    }

    /// The commit `branch`'s loose ref in the repository's `.git` directory holds; `None` when
    /// it is not a loose ref there (packed, reftable, a separate git dir): git must be asked.
    pub(crate) fn loose_branch_tip(&self, branch: &str) -> Option<String> {
        ref_files::loose_branch_file(&self.root.join(".git"), branch)
            .and_then(|file| ref_files::read_loose_ref(&file))
    }

    /// The branch the user's main worktree has checked out (None when detached).
    pub fn checked_out_branch(&self) -> Result<Option<String>, GitError> {
        // Its `HEAD` says so without a git process, when it is a plain file of the repository's
        // own `.git` directory (see [`HeadFile`]; a `.git` file is no directory, and reads as
        // `None`); otherwise git is asked.
        match HeadFile::read(&self.root.join(".git")) {
            Some(HeadFile::Branch(branch)) => return Ok(Some(branch)),
            Some(HeadFile::Detached) => return Ok(None),
            None => {}
        }
        let run = Git::new(&self.root)
            .args(["symbolic-ref", "--quiet", "HEAD"])
            .output()?;
        match run.code() {
            Some(0) => {
                let full = run.stdout.trim();
                Ok(Some(
                    full.strip_prefix("refs/heads/").unwrap_or(full).to_string(),
                ))
            }
            Some(1) => Ok(None),
            _ => Err(run.into_error()),
        }
    }

    /// Tracked files with uncommitted changes (staged or not) in the user's main worktree;
    /// untracked files are not counted, since a merge never touches them.
    pub fn uncommitted_changes(&self) -> Result<Vec<String>, GitError> {
        uncommitted_in(&self.root)
    }

    /// Hold while adding or removing worktrees.
    pub(crate) fn worktree_admin(&self) -> std::sync::MutexGuard<'_, ()> {
        self.worktree_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The full id of the commit `base` (a branch name or a commit) names.
    fn commit_of(&self, base: &str) -> Result<String, GitError> {
        let commit = Git::new(&self.root)
            .args(["rev-parse", "--quiet", "--verify"])
            .arg(format!("{base}^{{commit}}"))
            .output()?;
        if !commit.ok() {
            return Err(GitError::NoSuchBranch {
                repo: self.root.clone(),
                branch: base.to_string(),
            });
        }
        Ok(commit.stdout.trim().to_string())
    }

    /// Removes whatever is at `dir` (a crashed earlier try's directory), where a worktree is to
    /// go; never the repository itself or a directory holding it.
    fn clear_place(&self, dir: &Path) -> Result<(), GitError> {
        if !dir.exists() && !dir.is_symlink() {
            return Ok(());
        }
        if same_path(dir, &self.root) || self.root.starts_with(canonical(dir)) {
            return Err(GitError::Io {
                path: dir.to_path_buf(),
                reason: format!(
                    "refusing to replace the repository at {}",
                    self.root.display()
                ),
            });
        }
        remove_dir(dir)
    }

    /// Creates a worktree at `dir` on a new branch `branch` starting at `base` (a branch name or a
    /// commit). A directory or branch of that name left by an earlier crashed try is removed
    /// first, so a retried attempt starts clean.
    pub fn add_worktree(&self, dir: &Path, branch: &str, base: &str) -> Result<Worktree, GitError> {
        let _serialised = self.worktree_admin();
        let base_commit = self.commit_of(base)?;

        // Known to git or not, the directory goes; `worktree prune` below forgets it.
        self.clear_place(dir)?;
        // A crashed try's entry is still locked (see below): unlock it so the prune forgets it.
        unlock_worktree(&self.root, dir);
        Git::new(&self.root).args(["worktree", "prune"]).run()?;
        if self.branch_tip(branch).is_ok() {
            Git::new(&self.root)
                .args(["branch", "-D", "--quiet", branch])
                .run()?;
        }
        // Locked for its life: another worker's `git worktree prune` (each add and remove runs
        // one) must never take this worktree's entry, also when its `.git` is for a moment not
        // a pointer home (the agent's private git dir, or an agent that removed it).
        Git::new(&self.root)
            .args(["worktree", "add", "--quiet", "--lock", "-b", branch])
            .arg(dir)
            .arg(&base_commit)
            .run()?;
        // Asked now, before anything but git has been in the worktree.
        let git_dir = Git::new(dir)
            .args(["rev-parse", "--absolute-git-dir"])
            .run()?;
        Ok(Worktree {
            path: canonical(dir),
            git_dir: PathBuf::from(git_dir.trim_end_matches('\n')),
            branch: branch.to_string(),
            base: base_commit,
            clean_at: None,
        })
    }

    /// Git's automatic housekeeping (`git maintenance run --auto`: packs loose objects and refs
    /// once there are enough of them), which gaffer's own commands leave out (see
    /// `BASE_CONFIG`): once per run, in the background as git itself starts it, instead of a
    /// process after every commit and merge.
    pub fn maintain(&self) -> Result<(), GitError> {
        Git::new(&self.root)
            .args(["maintenance", "run", "--auto", "--quiet", "--detach"])
            .run()?;
        Ok(())
    }

    /// Removes the worktrees directly under `parent` whose directory name `keep` rejects
    /// (force-removed, their branch deleted, then `git worktree prune`), and the leftover
    /// directories under `parent` that git no longer knows and `keep` rejects. Returns the names
    /// removed, sorted. The main worktree and directories holding a repository of their own
    /// (a `.git` directory) are never removed.
    pub fn remove_stale_worktrees(
        &self,
        parent: &Path,
        keep: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<String>, GitError> {
        if !parent.is_dir() {
            return Ok(Vec::new());
        }
        let _serialised = self.worktree_admin();
        let parent = canonical(parent);
        if self.nothing_stale_under(&parent, keep) {
            return Ok(Vec::new());
        }
        let mut removed = Vec::new();
        let entries = list_worktrees(&self.root)?;
        for (i, entry) in entries.iter().enumerate() {
            if i == 0 || entry.bare || same_path(&entry.path, &self.root) {
                continue;
            }
            let path = canonical(&entry.path);
            if path.parent() != Some(parent.as_path()) {
                continue;
            }
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if keep(name) {
                continue;
            }
            if entry.path.exists() || entry.path.is_symlink() {
                remove_dir(&entry.path)?;
            }
            unlock_worktree(&self.root, &entry.path);
            if let Some(branch) = &entry.branch
                && self.branch_tip(branch).is_ok()
            {
                // A worktree whose directory is gone still "has" its branch until pruned.
                Git::new(&self.root).args(["worktree", "prune"]).run()?;
                Git::new(&self.root)
                    .args(["branch", "-D", "--quiet", branch])
                    .run()?;
            }
            removed.push(name.to_string());
        }

        // What git still knows after a prune: the listing less what was removed or is
        // prunable (its directory gone). The prune and a second listing only when there is
        // something to prune.
        let pruning = !removed.is_empty() || entries.iter().any(|e| e.prunable);
        let known: Vec<PathBuf> = if pruning {
            Git::new(&self.root).args(["worktree", "prune"]).run()?;
            list_worktrees(&self.root)?
                .iter()
                .map(|w| canonical(&w.path))
                .collect()
        } else {
            entries.iter().map(|w| canonical(&w.path)).collect()
        };
        let listing = std::fs::read_dir(&parent).map_err(|e| io_error(&parent, e))?;
        for item in listing {
            let item = item.map_err(|e| io_error(&parent, e))?;
            let path = item.path();
            let is_dir = item.file_type().map_err(|e| io_error(&path, e))?.is_dir();
            let Some(name) = path
                .file_name()
                .and_then(|n| n.to_str())
                .map(str::to_string)
            else {
                continue;
            };
            if !is_dir
                || keep(&name)
                || known.iter().any(|k| k == &path || k.starts_with(&path))
                || path.join(".git").is_dir()
            {
                continue;
            }
            remove_dir(&path)?;
            removed.push(name);
        }
        removed.sort();
        removed.dedup();
        Ok(removed)
    }
}

impl Repo {
    /// Whether [`Repo::remove_stale_worktrees`] would find nothing to remove under `parent` (a
    /// canonical path): every directory there, and every worktree git knows there, has a name
    /// `keep` accepts. Read from the files git itself reads for `git worktree list` (each
    /// linked worktree's `gitdir` file under `.git/worktrees`), without a git process: a run
    /// starts with this check, and usually only the parked spares are there. Any doubt (no
    /// `.git` directory, an unreadable entry) is a no, and git is asked.
    fn nothing_stale_under(&self, parent: &Path, keep: &dyn Fn(&str) -> bool) -> bool {
        let kept = |name: &std::ffi::OsStr| name.to_str().is_none_or(keep);
        let Ok(listing) = std::fs::read_dir(parent) else {
            return false;
        };
        for item in listing {
            let Ok(item) = item else { return false };
            let Ok(kind) = item.file_type() else {
                return false;
            };
            if kind.is_dir() && !kept(&item.file_name()) {
                return false;
            }
        }
        let git_dir = self.root.join(".git");
        if !git_dir.is_dir() {
            return false;
        }
        let admin = match std::fs::read_dir(git_dir.join("worktrees")) {
            Ok(admin) => admin,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return true,
            Err(_) => return false,
        };
        for entry in admin {
            let Ok(entry) = entry else { return false };
            let Ok(back) = std::fs::read_to_string(entry.path().join("gitdir")) else {
                return false;
            };
            let Some(path) = Path::new(back.trim_end_matches('\n')).parent() else {
                return false;
            };
            let path = canonical(path);
            if path.parent() == Some(parent) && !path.file_name().is_none_or(kept) {
                return false;
            }
        }
        true
    }
}

/// git's empty tree: what a repository without commits is compared against.
const EMPTY_TREE: &str = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";

/// `git diff` of the staged change against a base, in the one shape [`diff::parse`] reads,
/// whatever the user's git configuration says (external diff drivers, textconv, prefixes, colour).
const STAGED_DIFF: [&str; 10] = [
    "diff",
    "--cached",
    "--text",
    "-M",
    "--no-color",
    "--no-ext-diff",
    "--no-textconv",
    "--unified=3",
    "--src-prefix=a/",
    "--dst-prefix=b/",
];

/// The working tree at `dir` against `HEAD` — tracked changes and new untracked files (ignored
/// ones excluded), so a file a shell command wrote counts — parsed like an attempt's diff. The
/// user's index is not touched: a temporary index in the git directory is filled from `HEAD`
/// and the tree, then removed.
pub fn working_tree_diff(dir: &Path) -> Result<crate::plugin::types::Diff, GitError> {
    let git_dir = Git::new(dir)
        .args(["rev-parse", "--absolute-git-dir"])
        .run()
        .map_err(|e| match e {
            GitError::Command { stderr, .. } => GitError::NotARepository {
                path: dir.to_path_buf(),
                reason: stderr,
            },
            other => other,
        })?;
    let index = PathBuf::from(git_dir.trim()).join(format!("gaffer-index-{}", std::process::id()));
    let base = if Git::new(dir)
        .args(["rev-parse", "--verify", "--quiet", "HEAD"])
        .output()?
        .ok()
    {
        "HEAD"
    } else {
        EMPTY_TREE
    };
    let text = (|| {
        Git::new(dir)
            .with_index(&index)
            .args(["read-tree", base])
            .run()?;
        Git::new(dir).with_index(&index).args(["add", "-A"]).run()?;
        Git::new(dir)
            .with_index(&index)
            .args(STAGED_DIFF)
            .arg(base)
            .arg("--")
            .run()
    })();
    let _ = std::fs::remove_file(&index);
    diff::parse(&text?)
}

impl Worktree {
    /// Everything changed in the worktree against `base`, parsed into the plugin contract's
    /// [`Diff`](crate::plugin::types::Diff). Untracked files count (everything is staged with
    /// `git add -A` first), so a file written by a shell command is judged like any other edit.
    pub fn diff(&self) -> Result<crate::plugin::types::Diff, GitError> {
        diff::parse(&self.diff_text()?)
    }

    /// The same change as unified diff text, for the model and the logs.
    pub fn diff_text(&self) -> Result<String, GitError> {
        Git::in_worktree(self).args(["add", "-A"]).run()?;
        Git::in_worktree(self)
            .args(STAGED_DIFF)
            .arg(&self.base)
            .arg("--")
            .run()
    }

    /// Commits everything in the worktree, staged or not, untracked included (`git add -A`),
    /// with `message`. Returns None when there is nothing to commit, else the new commit id.
    pub fn commit(&self, message: &str) -> Result<Option<String>, GitError> {
        Git::in_worktree(self).args(["add", "-A"]).run()?;
        let staged = Git::in_worktree(self)
            .args(["diff", "--cached", "--quiet"])
            .output()?;
        match staged.code() {
            Some(0) => return Ok(None),
            Some(1) => {}
            _ => return Err(staged.into_error()),
        }
        Git::in_worktree(self)
            .args(["commit", "--quiet", "--no-verify", "-m", message])
            .run()?;
        let head = Git::in_worktree(self)
            .args(["rev-parse", "--verify", "HEAD"])
            .run()?;
        Ok(Some(head.trim().to_string()))
    }

    /// Removes the worktree (whatever is in it) and deletes its branch.
    pub fn remove(&self, repo: &Repo) -> Result<(), GitError> {
        let _serialised = repo.worktree_admin();
        // The directory goes first and git's entry is pruned after: `git worktree remove`
        // would insist that the worktree's `.git` still points home, which an attempt may have
        // changed.
        if self.path.exists() || self.path.is_symlink() {
            remove_dir(&self.path)?;
        }
        unlock_worktree(repo.root(), &self.path);
        Git::new(repo.root()).args(["worktree", "prune"]).run()?;
        if repo.branch_tip(&self.branch).is_ok() {
            Git::new(repo.root())
                .args(["branch", "-D", "--quiet", &self.branch])
                .run()?;
        }
        Ok(())
    }
}

/// Tracked files with uncommitted changes in the worktree at `dir`.
pub(crate) fn uncommitted_in(dir: &Path) -> Result<Vec<String>, GitError> {
    // `--no-optional-locks`: a look at the user's tree never rewrites their index (status
    // otherwise writes back the stat data it refreshed, racing the user's own git).
    let out = Git::new(dir)
        .args([
            "--no-optional-locks",
            "status",
            "--porcelain=v1",
            "-z",
            "--untracked-files=no",
            "--ignore-submodules=none",
        ])
        .run()?;
    // Entries are `XY path\0`; a rename or copy is followed by its source path as `path\0`.
    let mut files = Vec::new();
    let mut fields = out.split('\0').filter(|f| !f.is_empty());
    while let Some(entry) = fields.next() {
        let (Some(code), Some(path)) = (entry.get(..2), entry.get(3..)) else {
            return Err(GitError::Parse {
                reason: format!("unexpected `git status` entry {entry:?}"),
            });
        };
        files.push(path.to_string());
        if code.contains('R') || code.contains('C') {
            fields.next();
        }
    }
    Ok(files)
}

/// `path` itself, made canonical, when it is plainly the main worktree of a repository and
/// that can be seen without a git process (each costs milliseconds of every run): it holds a
/// `.git` directory of this user's that git would take as the repository as it stands (a
/// readable `HEAD`, not a linked worktree's git dir), and whose own config (the only place
/// git reads `core.worktree` and `core.bare` from) neither moves the working tree, nor makes
/// the repository bare, nor includes other files. `None` otherwise: git is asked.
fn plain_main_worktree(path: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let root = std::fs::canonicalize(path).ok()?;
    let git_dir = root.join(".git");
    let meta = std::fs::symlink_metadata(&git_dir).ok()?;
    // git refuses a repository another user owns (`safe.directory`); it says so, not this.
    // SAFETY: geteuid has no preconditions and cannot fail.
    if !meta.is_dir() || meta.uid() != unsafe { libc::geteuid() } {
        return None;
    }
    HeadFile::read(&git_dir)?;
    if git_dir.join("commondir").exists() || !git_dir.join("objects").is_dir() {
        return None;
    }
    let config = std::fs::read_to_string(git_dir.join("config")).ok()?;
    config_keeps_the_tree_here(&config).then_some(root)
}

/// Whether a repository's own config leaves its working tree beside its `.git`: no
/// `core.worktree`, no `core.bare` other than false, no `include` (which could set either).
/// Conservative: any key of those names in any section counts.
fn config_keeps_the_tree_here(config: &str) -> bool {
    config.lines().all(|line| {
        let line = line.trim().to_ascii_lowercase();
        // A value continued on the next line: not worth reading here.
        if line.ends_with('\\') {
            return false;
        }
        // A section header may have a key after it on the same line.
        let setting = match line.strip_prefix('[') {
            Some(section) => match section.split_once(']') {
                Some((name, rest)) if !name.contains("include") => rest.trim(),
                _ => return false,
            },
            None => line.as_str(),
        };
        if setting.is_empty() || setting.starts_with(['#', ';']) {
            return true;
        }
        // A key alone is `true`; a value ends at a comment.
        let (key, value) = match setting.split_once('=') {
            Some((key, value)) => (key.trim(), value.split(['#', ';']).next().unwrap_or("")),
            None => (
                setting.split(['#', ';']).next().unwrap_or("").trim(),
                "true",
            ),
        };
        match key {
            "worktree" => false,
            "bare" => matches!(value.trim(), "false" | "no" | "off" | "0"),
            _ => true,
        }
    })
}

/// Let `git worktree prune` take the entry of the worktree at `path` again. gaffer locks its
/// worktrees while they live; one that is not locked, or that git does not know, needs nothing,
/// so git's refusal then is no error.
fn unlock_worktree(root: &Path, path: &Path) {
    let _ = Git::new(root)
        .args(["worktree", "unlock"])
        .arg(path)
        .output();
}

/// The worktrees git knows, the main worktree first.
pub(crate) fn list_worktrees(dir: &Path) -> Result<Vec<WorktreeEntry>, GitError> {
    let out = Git::new(dir)
        .args(["worktree", "list", "--porcelain"])
        .run()?;
    let mut entries = Vec::new();
    let mut current: Option<WorktreeEntry> = None;
    for line in out.lines() {
        if let Some(path) = line.strip_prefix("worktree ") {
            entries.extend(current.take());
            current = Some(WorktreeEntry {
                path: PathBuf::from(path),
                branch: None,
                bare: false,
                prunable: false,
            });
        } else if let Some(entry) = current.as_mut() {
            if let Some(branch) = line.strip_prefix("branch ") {
                entry.branch = Some(
                    branch
                        .strip_prefix("refs/heads/")
                        .unwrap_or(branch)
                        .to_string(),
                );
            } else if line == "bare" {
                entry.bare = true;
            } else if line == "prunable" || line.starts_with("prunable ") {
                entry.prunable = true;
            }
        }
    }
    entries.extend(current);
    Ok(entries)
}

/// The path with symlinks resolved when it exists (git reports real paths), else as given.
fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

fn same_path(a: &Path, b: &Path) -> bool {
    canonical(a) == canonical(b)
}

fn remove_dir(path: &Path) -> Result<(), GitError> {
    let result = if path.is_symlink() || path.is_file() {
        std::fs::remove_file(path)
    } else {
        std::fs::remove_dir_all(path)
    };
    result.map_err(|e| io_error(path, e))
}

fn io_error(path: &Path, error: std::io::Error) -> GitError {
    GitError::Io {
        path: path.to_path_buf(),
        reason: error.to_string(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::plugin::types::{FileStatus, LineKind};
    use tempfile::TempDir;

    /// Runs git in `dir` and returns its trimmed output; panics on failure (tests only).
    pub(crate) fn sh(dir: &Path, args: &[&str]) -> String {
        Git::new(dir).args(args).run().unwrap().trim().to_string()
    }

    #[test]
    fn the_working_tree_diff_counts_new_files_and_leaves_the_index_alone() {
        let (_tmp, repo) = init_repo(&[(".gitignore", "*.log\n"), ("a.txt", "one\n")]);
        let root = repo.root().to_path_buf();
        write(&root.join("a.txt"), "one\ntwo\n");
        write(&root.join("new.sh"), "echo hi\n");
        write(&root.join("noise.log"), "ignored\n");
        let status_before = sh(&root, &["status", "--porcelain"]);
        let diff = working_tree_diff(&root).unwrap();
        let files: Vec<(&str, FileStatus)> = diff
            .files
            .iter()
            .map(|f| (f.path.as_str(), f.status))
            .collect();
        assert_eq!(
            files,
            [
                ("a.txt", FileStatus::Modified),
                ("new.sh", FileStatus::Added)
            ]
        );
        assert_eq!((diff.stats.lines_added, diff.stats.lines_removed), (2, 0));
        // The user's index and status are as they were; no temporary index is left.
        assert_eq!(sh(&root, &["status", "--porcelain"]), status_before);
        assert_eq!(sh(&root, &["diff", "--cached", "--name-only"]), "");
        let git_dir = root.join(".git");
        assert!(std::fs::read_dir(&git_dir).unwrap().all(|e| {
            !e.unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("gaffer-index")
        }));
        // A repository without commits compares against the empty tree.
        let fresh = TempDir::new().unwrap();
        sh(fresh.path(), &["init", "--quiet"]);
        write(&fresh.path().join("x.txt"), "x\n");
        assert_eq!(working_tree_diff(fresh.path()).unwrap().files.len(), 1);
    }

    /// A temporary directory with a repository in `repo/` (on `main`, one commit holding `files`)
    /// and room for worktrees in `wts/`.
    pub(crate) fn init_repo(files: &[(&str, &str)]) -> (TempDir, Repo) {
        init_repo_with(&[], files)
    }

    /// [`init_repo`] with more options for `git init` (`--ref-format=reftable`).
    pub(crate) fn init_repo_with(options: &[&str], files: &[(&str, &str)]) -> (TempDir, Repo) {
        let tmp = TempDir::new().unwrap();
        let root = tmp.path().join("repo");
        std::fs::create_dir_all(&root).unwrap();
        let mut init = vec!["init", "--quiet", "-b", "main"];
        init.extend_from_slice(options);
        sh(&root, &init);
        for (name, text) in files {
            write(&root.join(name), text);
        }
        sh(&root, &["add", "-A"]);
        sh(&root, &["commit", "--quiet", "-m", "initial"]);
        let repo = Repo::open(&root).unwrap();
        (tmp, repo)
    }

    fn packs(repo: &Repo) -> usize {
        std::fs::read_dir(repo.root().join(".git/objects/pack"))
            .map(|dir| {
                dir.filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".pack"))
                    .count()
            })
            .unwrap_or(0)
    }

    #[test]
    fn a_commit_of_gaffer_leaves_housekeeping_to_the_run_and_maintain_does_it() {
        let (_tmp, repo) = init_repo(&[("a.txt", "one\n")]);
        // Two packs where the repository allows one: git's next automatic maintenance
        // consolidates them.
        sh(repo.root(), &["repack", "-d", "-q"]);
        write(&repo.root().join("b.txt"), "two\n");
        sh(repo.root(), &["add", "-A"]);
        sh(repo.root(), &["commit", "--quiet", "-m", "second"]);
        sh(repo.root(), &["repack", "-d", "-q"]);
        sh(repo.root(), &["config", "gc.autoPackLimit", "1"]);
        assert_eq!(packs(&repo), 2);

        // A commit by gaffer's git starts no maintenance of its own.
        write(&repo.root().join("c.txt"), "three\n");
        sh(repo.root(), &["add", "-A"]);
        sh(repo.root(), &["commit", "--quiet", "-m", "third"]);
        std::thread::sleep(std::time::Duration::from_millis(500));
        assert_eq!(packs(&repo), 2, "a commit ran maintenance");

        repo.maintain().unwrap();
        // Detached, as git starts it: wait for it (generously; it takes milliseconds).
        for _ in 0..300 {
            if packs(&repo) == 1 {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("maintenance left {} packs", packs(&repo));
    }

    pub(crate) fn write(path: &Path, text: &str) {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(path, text).unwrap();
    }

    pub(crate) fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap()
    }

    #[test]
    fn another_workers_prune_never_takes_a_live_worktree() {
        // Worker A's worktree has, for a moment, no `.git` pointer home (its agent removed it,
        // or gaffer is rewriting it); worker B adds and removes worktrees, each of which runs
        // `git worktree prune`. A's entry must survive, and A's snapshot must still commit.
        let (tmp, repo) = init_repo(&[("README.md", "hello\n")]);
        let a = repo
            .add_worktree(&tmp.path().join("wts/T-1-a1"), "gaffer/T-1/a1", "main")
            .unwrap();
        write(&a.path.join("note.txt"), "from A\n");
        std::fs::remove_file(a.path.join(".git")).unwrap();
        let b = repo
            .add_worktree(&tmp.path().join("wts/T-2-a1"), "gaffer/T-2/a1", "main")
            .unwrap();
        b.remove(&repo).unwrap();
        assert!(a.git_dir.is_dir(), "A's entry was pruned");
        let snapshot = a.snapshot("T-1: note").unwrap();
        assert!(!snapshot.commit.is_empty());
        // Removing A unlocks it, so nothing of it is left behind.
        a.remove(&repo).unwrap();
        let listed = sh(repo.root(), &["worktree", "list", "--porcelain"]);
        assert!(
            !listed.contains("T-1-a1") && !listed.contains("T-2-a1"),
            "{listed}"
        );
        assert!(repo.branch_tip("gaffer/T-1/a1").is_err());
    }

    #[test]
    fn an_attempt_cannot_steer_gaffers_git() {
        let (tmp, repo) = init_repo(&[("README.md", "hello\n")]);
        let wt = repo
            .add_worktree(&tmp.path().join("wts/T-1-a1"), "gaffer/T-1/a1", "main")
            .unwrap();
        let marker = tmp.path().join("ran-as-gaffer");
        // The attempt replaces the worktree's `.git` with a repository of its own whose
        // configuration runs a program on `git add` (fsmonitor), on commit (hooks) and on
        // staging (a clean filter its attributes select), and hides a file from diffs.
        let fake = tmp.path().join("fake");
        sh(tmp.path(), &["init", "--quiet", fake.to_str().unwrap()]);
        let program = tmp.path().join("evil.sh");
        write(
            &program,
            &format!("#!/bin/sh\necho ran >> '{}'\ncat\n", marker.display()),
        );
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        let program = program.display().to_string();
        for (key, value) in [
            ("core.fsmonitor", program.as_str()),
            ("filter.evil.clean", program.as_str()),
            ("filter.evil.required", "true"),
            ("core.hooksPath", tmp.path().join("hooks").to_str().unwrap()),
        ] {
            sh(&fake, &["config", key, value]);
        }
        write(
            &tmp.path().join("hooks/pre-commit"),
            &format!("#!/bin/sh\n{program}\n"),
        );
        std::fs::set_permissions(
            tmp.path().join("hooks/pre-commit"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        std::fs::remove_file(wt.path.join(".git")).unwrap();
        std::fs::rename(fake.join(".git"), wt.path.join(".git")).unwrap();
        write(
            &wt.path.join(".gitattributes"),
            "secret.txt -diff\n* filter=evil\n",
        );
        write(&wt.path.join("secret.txt"), "the content hooks must see\n");

        let diff = wt.diff().unwrap();
        let secret = diff.files.iter().find(|f| f.path == "secret.txt").unwrap();
        assert!(!secret.binary);
        assert_eq!(secret.hunks[0].lines[0].text, "the content hooks must see");
        let commit = wt.commit("attempt").unwrap().unwrap();
        assert!(!marker.exists(), "a program of the attempt ran as gaffer");
        // The commit is on gaffer's branch in the main repository, which is intact.
        assert_eq!(repo.branch_tip("gaffer/T-1/a1").unwrap(), commit);
        sh(repo.root(), &["fsck", "--strict", "--no-dangling"]);

        // The control: git as an unhardened host ran it (`git -C worktree add -A`).
        let _ = std::process::Command::new("git")
            .args(["-C", wt.path.to_str().unwrap(), "add", "-A"])
            .output()
            .unwrap();
        assert!(
            marker.exists(),
            "the control did not run the attempt's program"
        );
    }

    #[test]
    fn open_outside_a_repository_is_not_a_repository() {
        let tmp = TempDir::new().unwrap();
        let err = Repo::open(tmp.path()).unwrap_err();
        assert!(matches!(err, GitError::NotARepository { .. }), "{err:?}");
        let err = Repo::open(&tmp.path().join("missing")).unwrap_err();
        assert!(matches!(err, GitError::NotARepository { .. }), "{err:?}");
    }

    #[test]
    fn open_finds_the_main_worktree_from_a_subdirectory_and_a_linked_worktree() {
        let (tmp, repo) = init_repo(&[("src/lib.rs", "fn f() {}\n")]);
        let from_sub = Repo::open(&repo.root().join("src")).unwrap();
        assert_eq!(from_sub.root(), repo.root());
        let wt = repo
            .add_worktree(&tmp.path().join("wts/a"), "gaffer/a", "main")
            .unwrap();
        assert_eq!(Repo::open(&wt.path).unwrap().root(), repo.root());
    }

    /// The main worktree as git names it: the first entry of `git worktree list`.
    fn main_worktree_by_git(path: &Path) -> PathBuf {
        let list = sh(path, &["worktree", "list", "--porcelain"]);
        let first = list.lines().next().unwrap();
        PathBuf::from(first.strip_prefix("worktree ").unwrap())
    }

    /// A plain repository opens without git, and every layout git alone can read (a moved
    /// working tree, an included config, a separate git dir, a symbolic link on the way) opens
    /// where git says its main worktree is.
    #[test]
    fn open_agrees_with_git_on_every_layout() {
        let (tmp, repo) = init_repo(&[("a.txt", "a\n")]);
        let plain = repo.root().to_path_buf();
        assert_eq!(
            plain_main_worktree(&plain).as_deref(),
            Some(plain.as_path())
        );
        assert_eq!(
            Repo::open(&plain).unwrap().root(),
            main_worktree_by_git(&plain)
        );

        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&plain, &link).unwrap();
        assert_eq!(
            Repo::open(&link).unwrap().root(),
            main_worktree_by_git(&plain)
        );

        let moved = tmp.path().join("moved");
        std::fs::create_dir_all(&moved).unwrap();
        let (_t2, other) = init_repo(&[("b.txt", "b\n")]);
        sh(
            other.root(),
            &["config", "core.worktree", moved.to_str().unwrap()],
        );
        assert_eq!(plain_main_worktree(other.root()), None);
        assert_eq!(
            Repo::open(other.root()).unwrap().root(),
            main_worktree_by_git(other.root())
        );

        let (_t3, included) = init_repo(&[("c.txt", "c\n")]);
        sh(included.root(), &["config", "include.path", "../extra"]);
        assert_eq!(plain_main_worktree(included.root()), None);
        assert_eq!(
            Repo::open(included.root()).unwrap().root(),
            main_worktree_by_git(included.root())
        );

        let separate = tmp.path().join("separate");
        sh(
            tmp.path(),
            &[
                "init",
                "--quiet",
                "--separate-git-dir",
                tmp.path().join("separate.git").to_str().unwrap(),
                separate.to_str().unwrap(),
            ],
        );
        assert_eq!(plain_main_worktree(&separate), None);
        assert_eq!(
            Repo::open(&separate).unwrap().root(),
            main_worktree_by_git(&separate)
        );

        let bare = tmp.path().join("bare");
        sh(tmp.path(), &["init", "--quiet", bare.to_str().unwrap()]);
        sh(&bare, &["config", "core.bare", "true"]);
        assert_eq!(plain_main_worktree(&bare), None);
        assert!(matches!(
            Repo::open(&bare),
            Err(GitError::NotARepository { .. })
        ));
    }

    #[test]
    fn a_config_that_moves_or_hides_the_tree_is_left_to_git() {
        let keeps =
            "[core]\n\trepositoryformatversion = 0\n\tbare = false\n\tlogallrefupdates = true\n";
        assert!(config_keeps_the_tree_here(keeps));
        assert!(config_keeps_the_tree_here(
            "[core]\n\tbare = no ; said twice\n"
        ));
        for config in [
            "[core]\n\tbare = true\n",
            "[core]\n\tbare\n",
            "[core]\n\tBare = 1\n",
            "[core] bare = true\n",
            "[core]\n\tworktree = /elsewhere\n",
            "[core]\n\tWorkTree=../x\n",
            "[include]\n\tpath = other\n",
            "[includeIf \"gitdir:/x/\"]\n\tpath = other\n",
            "[core]\n\tbare = \\\ntrue\n",
        ] {
            assert!(!config_keeps_the_tree_here(config), "{config:?}");
        }
    }

    /// A branch's tip from its loose ref, and from git when the ref is packed or the
    /// repository keeps refs in a reftable: the commit `git rev-parse` names each time.
    #[test]
    fn branch_tip_from_a_loose_ref_a_packed_ref_and_a_reftable() {
        for options in [&[][..], &["--ref-format=reftable"][..]] {
            let (_tmp, repo) = init_repo_with(options, &[("a.txt", "a\n")]);
            sh(repo.root(), &["branch", "topic/x"]);
            write(&repo.root().join("a.txt"), "b\n");
            sh(repo.root(), &["commit", "--quiet", "-am", "second"]);
            for branch in ["main", "topic/x"] {
                let by_git = sh(repo.root(), &["rev-parse", &format!("refs/heads/{branch}")]);
                assert_eq!(
                    repo.branch_tip(branch).unwrap(),
                    by_git,
                    "{options:?} {branch}"
                );
            }
            if options.is_empty() {
                sh(repo.root(), &["pack-refs", "--all"]);
                assert!(!repo.root().join(".git/refs/heads/topic/x").exists());
            }
            let packed = sh(repo.root(), &["rev-parse", "refs/heads/topic/x"]);
            assert_eq!(repo.branch_tip("topic/x").unwrap(), packed, "{options:?}");
            assert!(matches!(
                repo.branch_tip("topic/none"),
                Err(GitError::NoSuchBranch { .. })
            ));
        }
    }

    #[test]
    fn worktrees_added_and_removed_from_many_threads_at_once_all_succeed() {
        let (tmp, repo) = init_repo(&[("a.txt", "a\n")]);
        let repo = std::sync::Arc::new(repo);
        let handles: Vec<_> = (0..12)
            .map(|i| {
                let repo = repo.clone();
                let base = tmp.path().join("wts");
                std::thread::spawn(move || -> Result<(), GitError> {
                    for round in 0..4 {
                        let name = format!("t{i}-{round}");
                        let wt = repo.add_worktree(
                            &base.join(&name),
                            &format!("gaffer/{name}"),
                            "main",
                        )?;
                        wt.remove(&repo)?;
                    }
                    Ok(())
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap().unwrap();
        }
        assert_eq!(list_worktrees(repo.root()).unwrap().len(), 1);
    }

    #[test]
    fn branch_tip_of_a_missing_branch_is_no_such_branch() {
        let (_tmp, repo) = init_repo(&[("README.md", "hello\n")]);
        let tip = repo.branch_tip("main").unwrap();
        assert_eq!(tip, sh(repo.root(), &["rev-parse", "HEAD"]));
        assert_eq!(tip.len(), 40);
        match repo.branch_tip("nope").unwrap_err() {
            GitError::NoSuchBranch { branch, repo: path } => {
                assert_eq!(branch, "nope");
                assert_eq!(path, repo.root());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn checked_out_branch_and_uncommitted_changes_of_the_main_worktree() {
        let (_tmp, repo) = init_repo(&[("a.txt", "a\n"), ("b.txt", "b\n")]);
        assert_eq!(repo.checked_out_branch().unwrap().as_deref(), Some("main"));
        assert!(repo.uncommitted_changes().unwrap().is_empty());
        write(&repo.root().join("a.txt"), "changed\n");
        write(&repo.root().join("untracked.txt"), "new\n");
        sh(repo.root(), &["mv", "b.txt", "b moved.txt"]);
        let mut changes = repo.uncommitted_changes().unwrap();
        changes.sort();
        assert_eq!(changes, ["a.txt", "b moved.txt"]);
        sh(repo.root(), &["checkout", "--quiet", "--detach"]);
        assert_eq!(repo.checked_out_branch().unwrap(), None);
    }

    #[test]
    fn diff_reports_every_kind_of_change_without_touching_the_main_worktree() {
        let (tmp, repo) = init_repo(&[
            ("README.md", "hello\n"),
            ("keep.txt", "one\ntwo\nthree\nfour\nfive\n"),
            ("gone.txt", "bye\nfor now\n"),
            ("old name.txt", "alpha\nbeta\ngamma\ndelta\nepsilon\n"),
            ("moved.txt", "l1\nl2\nl3\nl4\nl5\nl6\n"),
        ]);
        let head_before = repo.branch_tip("main").unwrap();
        let wt = repo
            .add_worktree(&tmp.path().join("wts/T-1-1"), "gaffer/T-1-1", "main")
            .unwrap();
        assert_eq!(wt.base, head_before);
        let p = &wt.path;
        write(&p.join("new file.txt"), "first\nsecond");
        write(&p.join("keep.txt"), "one\n2\nthree\nfour\nfive\nsix\n");
        std::fs::remove_file(p.join("gone.txt")).unwrap();
        std::fs::create_dir_all(p.join("renamed dir")).unwrap();
        std::fs::rename(p.join("old name.txt"), p.join("renamed dir/new name.txt")).unwrap();
        std::fs::remove_file(p.join("moved.txt")).unwrap();
        write(&p.join("moved2.txt"), "l1\nl2\nl3\nl4\nl5\nL6\n");
        std::fs::write(p.join("image.bin"), [0u8, 1, 2, 255, 0, 10]).unwrap();

        let diff = wt.diff().unwrap();
        let mut files = diff.files.clone();
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let summary: Vec<_> = files
            .iter()
            .map(|f| {
                (
                    f.path.as_str(),
                    f.old_path.as_deref(),
                    f.status,
                    f.binary,
                    f.added,
                    f.removed,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("gone.txt", None, FileStatus::Deleted, false, 0, 2),
                // Diffs are taken with --text: the bytes are shown, binary by their NULs.
                ("image.bin", None, FileStatus::Added, true, 1, 0),
                ("keep.txt", None, FileStatus::Modified, false, 2, 1),
                (
                    "moved2.txt",
                    Some("moved.txt"),
                    FileStatus::Renamed,
                    false,
                    1,
                    1
                ),
                ("new file.txt", None, FileStatus::Added, false, 2, 0),
                (
                    "renamed dir/new name.txt",
                    Some("old name.txt"),
                    FileStatus::Renamed,
                    false,
                    0,
                    0
                ),
            ]
        );
        let hunks = |path: &str| {
            let file = files.iter().find(|f| f.path == path).unwrap();
            file.hunks
                .iter()
                .map(|h| {
                    let lines: Vec<_> = h
                        .lines
                        .iter()
                        .map(|l| (l.kind, l.line, l.text.clone()))
                        .collect();
                    ((h.old_start, h.old_lines, h.new_start, h.new_lines), lines)
                })
                .collect::<Vec<_>>()
        };
        let s = |t: &str| t.to_string();
        use LineKind::{Added, Context, Removed};
        assert_eq!(
            hunks("gone.txt"),
            [(
                (1, 2, 0, 0),
                vec![(Removed, 1, s("bye")), (Removed, 2, s("for now"))]
            )]
        );
        // The bytes 0 1 2 255 0 (255 is not UTF-8: shown as U+FFFD).
        assert_eq!(
            hunks("image.bin"),
            [((0, 0, 1, 1), vec![(Added, 1, s("\0\u{1}\u{2}\u{FFFD}\0"))])]
        );
        assert!(hunks("renamed dir/new name.txt").is_empty());
        assert_eq!(
            hunks("keep.txt"),
            [(
                (1, 5, 1, 6),
                vec![
                    (Context, 1, s("one")),
                    (Removed, 2, s("two")),
                    (Added, 2, s("2")),
                    (Context, 3, s("three")),
                    (Context, 4, s("four")),
                    (Context, 5, s("five")),
                    (Added, 6, s("six")),
                ]
            )]
        );
        assert_eq!(
            hunks("moved2.txt"),
            [(
                (3, 4, 3, 4),
                vec![
                    (Context, 3, s("l3")),
                    (Context, 4, s("l4")),
                    (Context, 5, s("l5")),
                    (Removed, 6, s("l6")),
                    (Added, 6, s("L6")),
                ]
            )]
        );
        assert_eq!(
            hunks("new file.txt"),
            [(
                (0, 0, 1, 2),
                vec![(Added, 1, s("first")), (Added, 2, s("second"))]
            )]
        );
        assert_eq!(
            (
                diff.stats.files_changed,
                diff.stats.lines_added,
                diff.stats.lines_removed
            ),
            (6, 6, 4)
        );

        let text = wt.diff_text().unwrap();
        assert!(
            text.contains("rename from old name.txt\nrename to renamed dir/new name.txt\n"),
            "{text}"
        );

        // The user's main worktree saw none of it.
        assert_eq!(sh(repo.root(), &["status", "--porcelain"]), "");
        assert_eq!(repo.branch_tip("main").unwrap(), head_before);
        assert!(repo.root().join("gone.txt").exists());
        assert!(!repo.root().join("new file.txt").exists());
    }

    #[test]
    fn commit_returns_none_when_nothing_changed() {
        let (tmp, repo) = init_repo(&[("README.md", "hello\n")]);
        let wt = repo
            .add_worktree(&tmp.path().join("wts/x"), "gaffer/x", "main")
            .unwrap();
        assert_eq!(wt.commit("nothing").unwrap(), None);
        write(&wt.path.join("new.txt"), "new\n");
        let id = wt.commit("add new.txt").unwrap().unwrap();
        assert_eq!(repo.branch_tip("gaffer/x").unwrap(), id);
        assert_eq!(
            sh(&wt.path, &["log", "-1", "--format=%an <%ae>|%cn <%ce>|%s"]),
            "gaffer <gaffer@localhost>|gaffer <gaffer@localhost>|add new.txt"
        );
        assert_eq!(wt.commit("again").unwrap(), None);
    }

    #[test]
    fn add_worktree_replaces_leftovers_of_a_crashed_try() {
        let (tmp, repo) = init_repo(&[("README.md", "hello\n")]);
        let dir = tmp.path().join("wts/T-9-1");
        let first = repo.add_worktree(&dir, "gaffer/T-9-1", "main").unwrap();
        write(&first.path.join("junk.txt"), "junk\n");
        first.commit("junk").unwrap().unwrap();
        let second = repo.add_worktree(&dir, "gaffer/T-9-1", "main").unwrap();
        assert_eq!(second.base, repo.branch_tip("main").unwrap());
        assert_eq!(repo.branch_tip("gaffer/T-9-1").unwrap(), second.base);
        assert!(!second.path.join("junk.txt").exists());

        // A plain directory git never knew is replaced too.
        let other = tmp.path().join("wts/T-9-2");
        write(&other.join("stray.txt"), "stray\n");
        let third = repo.add_worktree(&other, "gaffer/T-9-2", "main").unwrap();
        assert!(!third.path.join("stray.txt").exists());
        assert!(third.path.join("README.md").exists());
    }

    #[test]
    fn remove_stale_worktrees_removes_rejected_keeps_accepted_and_cleans_leftovers() {
        let (tmp, repo) = init_repo(&[("README.md", "hello\n")]);
        let parent = tmp.path().join("wts");
        let stale = repo
            .add_worktree(&parent.join("T-1-1"), "gaffer/T-1-1", "main")
            .unwrap();
        let live = repo
            .add_worktree(&parent.join("T-2-1"), "gaffer/T-2-1", "main")
            .unwrap();
        write(&parent.join("T-3-1/file.txt"), "left over\n");
        let elsewhere = repo
            .add_worktree(&tmp.path().join("other/T-4-1"), "gaffer/T-4-1", "main")
            .unwrap();

        let removed = repo
            .remove_stale_worktrees(&parent, &|name| name == "T-2-1")
            .unwrap();
        assert_eq!(removed, ["T-1-1", "T-3-1"]);
        assert!(!stale.path.exists());
        assert!(matches!(
            repo.branch_tip("gaffer/T-1-1"),
            Err(GitError::NoSuchBranch { .. })
        ));
        assert!(!parent.join("T-3-1").exists());
        assert!(live.path.join("README.md").exists());
        assert!(repo.branch_tip("gaffer/T-2-1").is_ok());
        assert!(elsewhere.path.exists());
        let mut known: Vec<_> = list_worktrees(repo.root())
            .unwrap()
            .into_iter()
            .map(|w| w.path)
            .collect();
        known.sort();
        let mut expected = [
            repo.root().to_path_buf(),
            live.path.clone(),
            elsewhere.path.clone(),
        ];
        expected.sort();
        assert_eq!(known, expected);
        assert!(repo.root().join("README.md").exists());
    }

    /// Where every name is one to keep, nothing goes (the check that asks no git); a worktree
    /// git knows whose directory vanished still goes when its name is not kept, and so does a
    /// stray directory beside kept ones.
    #[test]
    fn remove_stale_worktrees_keeps_all_kept_and_still_finds_a_vanished_or_stray_one() {
        let (tmp, repo) = init_repo(&[("README.md", "hello\n")]);
        let parent = tmp.path().join("wts");
        let spare = repo
            .add_worktree(&parent.join("spare-0"), "gaffer/spare", "main")
            .unwrap();
        let live = repo
            .add_worktree(&parent.join("T-2-1"), "gaffer/T-2-1", "main")
            .unwrap();
        write(
            &parent.join("a-file-not-a-directory"),
            "kept: not a directory\n",
        );
        let keep = |name: &str| name.starts_with("spare-") || name == "T-2-1";
        assert!(
            repo.remove_stale_worktrees(&parent, &keep)
                .unwrap()
                .is_empty()
        );
        assert!(spare.path.join("README.md").exists() && live.path.join("README.md").exists());
        assert_eq!(list_worktrees(repo.root()).unwrap().len(), 3);

        let vanished = repo
            .add_worktree(&parent.join("T-1-1"), "gaffer/T-1-1", "main")
            .unwrap();
        std::fs::remove_dir_all(&vanished.path).unwrap();
        assert_eq!(
            repo.remove_stale_worktrees(&parent, &keep).unwrap(),
            ["T-1-1"]
        );
        assert!(matches!(
            repo.branch_tip("gaffer/T-1-1"),
            Err(GitError::NoSuchBranch { .. })
        ));
        assert_eq!(list_worktrees(repo.root()).unwrap().len(), 3);

        write(&parent.join("T-9-1/left.txt"), "left over\n");
        assert_eq!(
            repo.remove_stale_worktrees(&parent, &keep).unwrap(),
            ["T-9-1"]
        );
        assert!(!parent.join("T-9-1").exists());
        assert!(spare.path.exists() && live.path.exists());
    }

    /// The branch of the main worktree comes from its `HEAD` file where git keeps refs in files,
    /// and from git where it does not (reftable's `HEAD` is a placeholder).
    #[test]
    fn checked_out_branch_with_either_ref_storage() {
        for options in [&[][..], &["--ref-format=reftable"][..]] {
            let (_tmp, repo) = init_repo_with(options, &[("a.txt", "a\n")]);
            sh(repo.root(), &["checkout", "--quiet", "-b", "topic/x"]);
            assert_eq!(
                repo.checked_out_branch().unwrap().as_deref(),
                Some("topic/x"),
                "{options:?}"
            );
            sh(repo.root(), &["checkout", "--quiet", "--detach"]);
            assert_eq!(repo.checked_out_branch().unwrap(), None, "{options:?}");
        }
    }

    #[test]
    fn worktree_remove_deletes_directory_and_branch() {
        let (tmp, repo) = init_repo(&[("README.md", "hello\n")]);
        let wt = repo
            .add_worktree(&tmp.path().join("wts/T-5-1"), "gaffer/T-5-1", "main")
            .unwrap();
        write(&wt.path.join("dirty.txt"), "uncommitted\n");
        wt.remove(&repo).unwrap();
        assert!(!wt.path.exists());
        assert!(matches!(
            repo.branch_tip("gaffer/T-5-1"),
            Err(GitError::NoSuchBranch { .. })
        ));
        assert_eq!(list_worktrees(repo.root()).unwrap().len(), 1);
    }
}

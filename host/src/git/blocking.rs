//! The repository seen from async code. Every git operation runs `git` processes and waits for
//! them (a merge holds the merge lock across several), so async callers go through
//! [`AsyncRepo`], which runs each on tokio's blocking pool: a slow merge never holds a runtime
//! worker that the lease heartbeat or another attempt needs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{
    Candidate, GitError, IgnoredFile, MergeOutcome, MergeTarget, Repo, Snapshot, Worktree,
};
use crate::plugin::types::Diff;

/// Run a blocking git operation on the blocking pool.
async fn off_runtime<T: Send + 'static>(
    dir: PathBuf,
    operation: impl FnOnce() -> Result<T, GitError> + Send + 'static,
) -> Result<T, GitError> {
    tokio::task::spawn_blocking(operation)
        .await
        .unwrap_or_else(|e| {
            Err(GitError::Io {
                path: dir,
                reason: format!("a git operation did not finish: {e}"),
            })
        })
}

/// The repository's operations for async code.
#[derive(Debug, Clone)]
pub struct AsyncRepo {
    repo: Arc<Repo>,
}

impl AsyncRepo {
    pub fn new(repo: Arc<Repo>) -> AsyncRepo {
        AsyncRepo { repo }
    }

    /// The repository, for blocking code.
    pub fn blocking(&self) -> &Arc<Repo> {
        &self.repo
    }

    pub fn root(&self) -> &Path {
        self.repo.root()
    }

    async fn run<T: Send + 'static>(
        &self,
        operation: impl FnOnce(&Repo) -> Result<T, GitError> + Send + 'static,
    ) -> Result<T, GitError> {
        let repo = Arc::clone(&self.repo);
        off_runtime(repo.root().to_path_buf(), move || operation(&repo)).await
    }

    pub async fn branch_tip(&self, branch: &str) -> Result<String, GitError> {
        let branch = branch.to_string();
        self.run(move |repo| repo.branch_tip(&branch)).await
    }

    pub async fn checked_out_branch(&self) -> Result<Option<String>, GitError> {
        self.run(|repo| repo.checked_out_branch()).await
    }

    pub async fn uncommitted_changes(&self) -> Result<Vec<String>, GitError> {
        self.run(|repo| repo.uncommitted_changes()).await
    }

    /// The worktree of a new attempt, `spare` recycled when it can be (see
    /// [`Repo::prepare_worktree`]).
    pub async fn prepare_worktree(
        &self,
        spare: Option<Worktree>,
        dir: &Path,
        branch: &str,
        base: &str,
    ) -> Result<Worktree, GitError> {
        let (dir, branch, base) = (dir.to_path_buf(), branch.to_string(), base.to_string());
        self.run(move |repo| repo.prepare_worktree(spare, &dir, &branch, &base))
            .await
    }

    /// Park the worktree for a later run (see [`Repo::park_worktree`]).
    pub async fn park_worktree(
        &self,
        worktree: &Worktree,
        parent: &Path,
        slot: usize,
    ) -> Result<(), GitError> {
        let (worktree, parent) = (worktree.clone(), parent.to_path_buf());
        self.run(move |repo| repo.park_worktree(&worktree, &parent, slot))
            .await
    }

    /// Git's housekeeping, once per run (see [`Repo::maintain`]).
    pub async fn maintain(&self) -> Result<(), GitError> {
        self.run(|repo| repo.maintain()).await
    }

    pub async fn remove_stale_worktrees(
        &self,
        dir: &Path,
        keep: impl Fn(&str) -> bool + Send + 'static,
    ) -> Result<Vec<String>, GitError> {
        let dir = dir.to_path_buf();
        self.run(move |repo| repo.remove_stale_worktrees(&dir, &keep))
            .await
    }

    /// Check that `remote` exists and has `branch` (see [`Repo::check_remote`]).
    pub async fn check_remote(&self, remote: &str, branch: &str) -> Result<String, GitError> {
        let (remote, branch) = (remote.to_string(), branch.to_string());
        self.run(move |repo| repo.check_remote(&remote, &branch))
            .await
    }

    /// Fetch `branch` from `remote`; the commit it is at (see [`Repo::fetch_target`]).
    pub async fn fetch_target(&self, remote: &str, branch: &str) -> Result<String, GitError> {
        let (remote, branch) = (remote.to_string(), branch.to_string());
        self.run(move |repo| repo.fetch_target(&remote, &branch))
            .await
    }

    /// A merge candidate of the worktree's branch onto `target` (see [`Repo::candidate`]).
    pub async fn candidate(
        &self,
        worktree: &Worktree,
        target: &MergeTarget,
        message: &str,
    ) -> Result<Candidate, GitError> {
        let (worktree, target, message) = (worktree.clone(), target.clone(), message.to_string());
        self.run(move |repo| repo.candidate(&worktree, &target, &message))
            .await
    }

    /// Move `target` to the candidate if it has not moved (see [`Repo::land`]).
    pub async fn land(
        &self,
        candidate: &Candidate,
        target: &MergeTarget,
        task_id: &str,
    ) -> Result<Option<MergeOutcome>, GitError> {
        let (candidate, target, task_id) = (candidate.clone(), target.clone(), task_id.to_string());
        self.run(move |repo| repo.land(&candidate, &target, &task_id))
            .await
    }

    /// Commit the worktree as it is (see [`Worktree::snapshot`]).
    pub async fn snapshot(&self, worktree: &Worktree, message: &str) -> Result<Snapshot, GitError> {
        let (worktree, message) = (worktree.clone(), message.to_string());
        off_runtime(worktree.path.clone(), move || worktree.snapshot(&message)).await
    }

    /// A git dir of the attempt's own (see [`Worktree::private_git_dir`]).
    pub async fn private_git_dir(
        &self,
        worktree: &Worktree,
        dir: &Path,
    ) -> Result<Vec<(PathBuf, bool)>, GitError> {
        let (worktree, dir) = (worktree.clone(), dir.to_path_buf());
        off_runtime(worktree.path.clone(), move || {
            worktree.private_git_dir(&dir)
        })
        .await
    }

    /// The files git ignores in the worktree (see [`Worktree::ignored_files`]).
    pub async fn ignored_files(
        &self,
        worktree: &Worktree,
        cap: u64,
    ) -> Result<Vec<IgnoredFile>, GitError> {
        let worktree = worktree.clone();
        off_runtime(worktree.path.clone(), move || worktree.ignored_files(cap)).await
    }

    /// Make the worktree exactly `commit` (see [`Worktree::reset_to`]).
    pub async fn reset_to(&self, worktree: &Worktree, commit: &str) -> Result<(), GitError> {
        let (worktree, commit) = (worktree.clone(), commit.to_string());
        off_runtime(worktree.path.clone(), move || worktree.reset_to(&commit)).await
    }

    /// Make the worktree exactly its snapshot, just taken (see [`Worktree::remove_untracked`]).
    pub async fn remove_untracked(&self, worktree: &Worktree) -> Result<(), GitError> {
        let worktree = worktree.clone();
        off_runtime(worktree.path.clone(), move || worktree.remove_untracked()).await
    }

    /// The change between two commits, parsed.
    pub async fn diff_commits(
        &self,
        worktree: &Worktree,
        from: &str,
        to: &str,
    ) -> Result<Diff, GitError> {
        let (worktree, from, to) = (worktree.clone(), from.to_string(), to.to_string());
        off_runtime(worktree.path.clone(), move || {
            worktree.diff_commits(&from, &to)
        })
        .await
    }

    /// Remove the worktree and its branch.
    pub async fn remove_worktree(&self, worktree: &Worktree) -> Result<(), GitError> {
        let worktree = worktree.clone();
        self.run(move |repo| worktree.remove(repo)).await
    }
}

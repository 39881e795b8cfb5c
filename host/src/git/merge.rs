//! Merging an attempt's branch into the target branch.
//!
//! The merge is built in gaffer's own worktree, never in the user's: fast-forward when possible,
//! else a merge commit, else one rebase. The target branch is then moved with a compare-and-swap
//! when nobody has it checked out; when the user has it checked out, their working tree is
//! fast-forwarded only when it is clean, and otherwise the result waits on
//! `gaffer/merged/<task>`. Nothing here can discard the user's changes: the user's tree is only
//! ever touched by `git merge --ff-only`, which refuses rather than overwrite.
//!
//! A target on a shared remote (see `remote.rs`) is built on the remote's tip, fetched first,
//! and landed by a push that is itself the compare-and-swap.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::PoisonError;

use super::{Git, GitError, HeadFile, Repo, Worktree, list_worktrees, uncommitted_in};

/// How many times the merge starts over when a target branch of this repository moves under
/// it: only a person or another process on this machine moves it.
const LOCAL_TRIES: usize = 3;

/// How many times the merge starts over when the target branch on a shared remote moves under
/// it. Every host pushes there, so it moves far more often; and another try costs a fetch, a
/// merge and (for a merge commit) one run of the tests and hooks, where giving up costs a
/// whole new attempt, the model's work included.
const REMOTE_TRIES: usize = 5;

/// Where approved work lands: a branch of this repository, or a branch of a shared remote that
/// several hosts, each in a clone of its own, merge into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeTarget {
    /// The branch's short name (`main`).
    pub branch: String,
    /// The remote's name (`origin`); `None`: the branch of this repository.
    pub remote: Option<String>,
}

impl MergeTarget {
    /// `branch` of this repository.
    pub fn local(branch: impl Into<String>) -> MergeTarget {
        MergeTarget {
            branch: branch.into(),
            remote: None,
        }
    }

    /// `branch` on the remote named `remote`.
    pub fn on_remote(remote: impl Into<String>, branch: impl Into<String>) -> MergeTarget {
        MergeTarget {
            branch: branch.into(),
            remote: Some(remote.into()),
        }
    }

    /// How many candidates a merge builds before it gives up on a target that moved under each.
    pub fn tries(&self) -> usize {
        if self.remote.is_some() {
            REMOTE_TRIES
        } else {
            LOCAL_TRIES
        }
    }
}

/// The branch's name, after its remote's (`origin/main`) when it is on one.
impl fmt::Display for MergeTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.remote {
            Some(remote) => write!(f, "{remote}/{}", self.branch),
            None => f.write_str(&self.branch),
        }
    }
}

/// The result of [`Repo::merge`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeOutcome {
    /// The target branch now points at `commit`. `how` says how the commit was made;
    /// `user_tree_updated` is true when a checked-out working tree of the target was
    /// fast-forwarded along with it.
    Merged {
        commit: String,
        how: MergeKind,
        user_tree_updated: bool,
    },
    /// The user has the target checked out with uncommitted changes (or a fast-forward of their
    /// tree was refused): nothing of theirs was touched, and the result waits on `branch`
    /// (`gaffer/merged/<task>`). `reason` says so in a sentence naming the branch.
    Parked {
        branch: String,
        commit: String,
        reason: String,
    },
    /// The change conflicts with the target, and one rebase did not solve it. Nothing changed on
    /// the target; `reason` names the conflicting files.
    Conflict { reason: String },
}

/// How the merged commit came about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeKind {
    /// The target had not moved: it simply advances to the attempt's commit.
    FastForward,
    /// The target had moved: a merge commit whose first parent is the target's tip.
    MergeCommit,
    /// The merge conflicted, but the attempt's commits rebased cleanly onto the target's tip.
    Rebased,
}

/// A commit ready to become the target's tip (built on `tip`, the target as it was), or the
/// conflict that prevented it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Candidate {
    Ready {
        commit: String,
        how: MergeKind,
        tip: String,
    },
    Conflict(String),
}

impl Repo {
    /// Merges the worktree's committed branch into `target` (uncommitted files in the worktree
    /// are not part of it): [`Repo::candidate`], then [`Repo::land`], starting over when
    /// `target` moved meanwhile, at most [`MergeTarget::tries`] times. The pipeline uses the
    /// two steps itself, to test a merged tree before the target moves to it.
    pub fn merge(
        &self,
        worktree: &Worktree,
        target: &MergeTarget,
        task_id: &str,
        message: &str,
    ) -> Result<MergeOutcome, GitError> {
        for _ in 0..target.tries() {
            let candidate = self.candidate(worktree, target, message)?;
            if let Candidate::Conflict(reason) = candidate {
                return Ok(MergeOutcome::Conflict { reason });
            }
            if let Some(outcome) = self.land(&candidate, target, task_id)? {
                return Ok(outcome);
            }
        }
        Err(self.moved_every_time(target))
    }

    /// The error when `target` moved during each try.
    pub fn moved_every_time(&self, target: &MergeTarget) -> GitError {
        let branch = &target.branch;
        GitError::Command {
            dir: self.root.clone(),
            args: match &target.remote {
                Some(remote) => format!("push {remote} refs/heads/{branch}"),
                None => format!("update-ref refs/heads/{branch}"),
            },
            status: "not attempted".to_string(),
            stderr: format!(
                "`{target}` moved during each of {} tries to merge into it",
                target.tries()
            ),
        }
    }

    /// A commit that has the target's current tip as an ancestor and contains the worktree's
    /// branch: the branch itself when the target has not moved (fast-forward), else a merge
    /// commit, else the branch rebased; built in the worktree, which is left checked out at it.
    /// A target on a remote is fetched first, and the candidate built on the remote's tip
    /// (this repository's own branch of that name may be behind it).
    pub fn candidate(
        &self,
        worktree: &Worktree,
        target: &MergeTarget,
        message: &str,
    ) -> Result<Candidate, GitError> {
        let branch = worktree.branch.as_str();
        let (tip, (head, parents)) = match &target.remote {
            Some(remote) => (
                self.fetch_target(remote, &target.branch)?,
                self.tip_and_parents(branch)?,
            ),
            None => self.tips_and_parents(&target.branch, branch)?,
        };
        self.build_candidate(
            worktree,
            &target.to_string(),
            &tip,
            (head, parents),
            message,
        )
    }

    /// Moves `target` to a ready candidate if it is still at the candidate's tip (a
    /// compare-and-swap), or parks the result; `None` when `target` moved meanwhile (build a
    /// new candidate). On a remote the compare-and-swap is the push, and nothing parks: once
    /// pushed the result is merged, and this clone's own branch follows where that is safe.
    /// Landings from this process are serialised.
    pub fn land(
        &self,
        candidate: &Candidate,
        target: &MergeTarget,
        task_id: &str,
    ) -> Result<Option<MergeOutcome>, GitError> {
        let Candidate::Ready { commit, how, tip } = candidate else {
            return Ok(None);
        };
        let _serialised = self
            .merge_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match &target.remote {
            Some(remote) => {
                self.push_target(remote, &target.branch, tip, commit.clone(), *how, task_id)
            }
            None => self.move_target(&target.branch, tip, commit.clone(), *how, task_id),
        }
    }

    /// Steps 1 and 2: a commit that has `tip` as an ancestor and contains the worktree's
    /// branch, whose tip is `head` with `parents`.
    fn build_candidate(
        &self,
        worktree: &Worktree,
        target: &str,
        tip: &str,
        (head, parents): (String, Vec<String>),
        message: &str,
    ) -> Result<Candidate, GitError> {
        let branch = worktree.branch.as_str();
        abort_leftover_operations(worktree)?;
        // The branch's parents are known: the usual attempt is one commit on the tip it started
        // from, which makes the merge-base question moot.
        if head == tip || parents.iter().any(|p| p == tip) || is_ancestor(&self.root, tip, &head)? {
            return Ok(Candidate::Ready {
                commit: head,
                how: MergeKind::FastForward,
                tip: tip.to_string(),
            });
        }

        Git::in_worktree(worktree)
            .args(["checkout", "--quiet", "--detach", tip])
            .run()?;
        let merge = Git::in_worktree(worktree)
            .args([
                "merge",
                "--no-ff",
                "--no-edit",
                "--quiet",
                "-m",
                message,
                branch,
            ])
            .output()?;
        if merge.ok() {
            let commit = rev_parse(worktree, "HEAD")?;
            return Ok(Candidate::Ready {
                commit,
                how: MergeKind::MergeCommit,
                tip: tip.to_string(),
            });
        }
        let merge_conflicts = unmerged_files(worktree)?;
        Git::in_worktree(worktree)
            .args(["merge", "--abort"])
            .run()?;
        if merge_conflicts.is_empty() {
            return Err(merge.into_error());
        }

        Git::in_worktree(worktree)
            .args(["checkout", "--quiet", branch])
            .run()?;
        let rebase = Git::in_worktree(worktree)
            .args(["rebase", "--quiet", "--no-autosquash", "--no-verify", tip])
            .output()?;
        if rebase.ok() {
            let commit = self.branch_tip(branch)?;
            return Ok(Candidate::Ready {
                commit,
                how: MergeKind::Rebased,
                tip: tip.to_string(),
            });
        }
        let rebase_conflicts = unmerged_files(worktree)?;
        Git::in_worktree(worktree)
            .args(["rebase", "--abort"])
            .run()?;
        if rebase_conflicts.is_empty() {
            return Err(rebase.into_error());
        }
        let short = tip.get(..12).unwrap_or(tip);
        Ok(Candidate::Conflict(format!(
            "merging {branch} into {target} conflicts in {}, and rebasing it onto {target} \
             ({short}) conflicts in {}; {target} is unchanged",
            merge_conflicts.join(", "),
            rebase_conflicts.join(", "),
        )))
    }

    /// The commit local branch `target` points at, and [`Repo::tip_and_parents`] of `branch`,
    /// in one process (a git process costs milliseconds of every attempt). When either branch
    /// is missing, the error of the one that is.
    fn tips_and_parents(
        &self,
        target: &str,
        branch: &str,
    ) -> Result<(String, (String, Vec<String>)), GitError> {
        let run = Git::new(&self.root)
            .arg("rev-parse")
            .arg(format!("refs/heads/{target}^{{commit}}"))
            .arg(format!("refs/heads/{branch}^{{commit}}"))
            .arg(format!("refs/heads/{branch}^@"))
            .arg("--")
            .output()?;
        // One id per line, then the `--` that ends the revisions.
        let mut ids = run
            .stdout
            .lines()
            .map(str::trim)
            .take_while(|line| *line != "--")
            .filter(|line| !line.is_empty());
        match (run.ok(), ids.next(), ids.next()) {
            (true, Some(tip), Some(head)) => Ok((
                tip.to_string(),
                (head.to_string(), ids.map(str::to_string).collect()),
            )),
            _ => Ok((self.branch_tip(target)?, self.tip_and_parents(branch)?)),
        }
    }

    /// The commit `branch` points at, and that commit's parents.
    fn tip_and_parents(&self, branch: &str) -> Result<(String, Vec<String>), GitError> {
        let run = Git::new(&self.root)
            .args(["rev-list", "--parents", "-n", "1"])
            .arg(format!("refs/heads/{branch}"))
            .arg("--")
            .output()?;
        let line = run.stdout.trim();
        let mut ids = line.split(' ');
        match ids.next() {
            Some(head) if run.ok() && !head.is_empty() => {
                Ok((head.to_string(), ids.map(str::to_string).collect()))
            }
            _ => Err(GitError::NoSuchBranch {
                repo: self.root.clone(),
                branch: branch.to_string(),
            }),
        }
    }

    /// Step 3: moves `target` from `tip` to `commit`, or parks the result. None when `target`
    /// moved meanwhile and the merge must start over.
    fn move_target(
        &self,
        target: &str,
        tip: &str,
        commit: String,
        how: MergeKind,
        task_id: &str,
    ) -> Result<Option<MergeOutcome>, GitError> {
        let Some(holder) = self.checked_out_in(target)? else {
            let update = Git::new(&self.root)
                .arg("update-ref")
                .arg("-m")
                .arg(format!("gaffer: merge {task_id}"))
                .arg(format!("refs/heads/{target}"))
                .arg(&commit)
                .arg(tip)
                .output()?;
            if update.ok() {
                return Ok(Some(MergeOutcome::Merged {
                    commit,
                    how,
                    user_tree_updated: false,
                }));
            }
            if self.branch_tip(target)? != tip {
                return Ok(None);
            }
            return Err(update.into_error());
        };

        let changes = uncommitted_in(&holder)?;
        if !changes.is_empty() {
            let why = format!(
                "{target} is checked out in {} with uncommitted changes ({})",
                holder.display(),
                changes.join(", ")
            );
            return self.park(task_id, commit, &why).map(Some);
        }
        // The compare-and-swap comes after the merge: a fast-forward to `commit` that succeeds
        // leaves the target containing it whatever the target was (`commit` descends from
        // `tip`), and only a refusal needs to know whether the target moved (start over) or
        // the checkout would not let it (park).
        let forward = Git::new(&holder)
            .args(["merge", "--ff-only", "--quiet", &commit])
            .output()?;
        if forward.ok() {
            return Ok(Some(MergeOutcome::Merged {
                commit,
                how,
                user_tree_updated: true,
            }));
        }
        if self.branch_tip(target)? != tip {
            return Ok(None);
        }
        let why = format!(
            "fast-forwarding the checkout of {target} in {} was refused ({})",
            holder.display(),
            forward.stderr().lines().next().unwrap_or("no reason given")
        );
        self.park(task_id, commit, &why).map(Some)
    }

    /// The working tree that has `branch` checked out, if one does.
    pub(super) fn checked_out_in(&self, branch: &str) -> Result<Option<PathBuf>, GitError> {
        // Usually the user's own checkout: its HEAD, a file in the repository's `.git`
        // directory (the user's, not an attempt's), says so without a git process. git lets
        // a branch be checked out in one worktree only, so no other can hold it then.
        if HeadFile::read(&self.root.join(".git")) == Some(HeadFile::Branch(branch.into())) {
            return Ok(Some(self.root.clone()));
        }
        // Read while no worktree is half added or removed.
        let worktrees = {
            let _serialised = self.worktree_admin();
            list_worktrees(&self.root)?
        };
        Ok(worktrees
            .into_iter()
            .find(|w| {
                !w.bare && !w.prunable && w.branch.as_deref() == Some(branch) && w.path.is_dir()
            })
            .map(|w| w.path))
    }

    /// Points `gaffer/merged/<task_id>` at `commit` and says why in a sentence.
    fn park(&self, task_id: &str, commit: String, why: &str) -> Result<MergeOutcome, GitError> {
        let branch = format!("gaffer/merged/{task_id}");
        Git::new(&self.root)
            .args(["branch", "--force", &branch, &commit])
            .run()?;
        let reason = format!(
            "{why}, so nothing there was touched; the merged result waits on branch {branch} \
             (`git merge {branch}` when ready)"
        );
        Ok(MergeOutcome::Parked {
            branch,
            commit,
            reason,
        })
    }
}

/// True when `ancestor` is an ancestor of (or equal to) `descendant`.
pub(super) fn is_ancestor(dir: &Path, ancestor: &str, descendant: &str) -> Result<bool, GitError> {
    let run = Git::new(dir)
        .args(["merge-base", "--is-ancestor", ancestor, descendant])
        .output()?;
    match run.code() {
        Some(0) => Ok(true),
        Some(1) => Ok(false),
        _ => Err(run.into_error()),
    }
}

fn rev_parse(worktree: &Worktree, rev: &str) -> Result<String, GitError> {
    Ok(Git::in_worktree(worktree)
        .args(["rev-parse", "--verify", rev])
        .run()?
        .trim()
        .to_string())
}

/// Files left unmerged by a stopped merge or rebase.
fn unmerged_files(worktree: &Worktree) -> Result<Vec<String>, GitError> {
    let out = Git::in_worktree(worktree)
        .args(["diff", "--name-only", "--diff-filter=U", "-z"])
        .run()?;
    Ok(out
        .split('\0')
        .filter(|f| !f.is_empty())
        .map(str::to_string)
        .collect())
}

/// Aborts a merge or rebase a crashed earlier run left half-done in gaffer's worktree.
fn abort_leftover_operations(worktree: &Worktree) -> Result<(), GitError> {
    // Read as a file (git writes MERGE_HEAD in the worktree's git dir, where nothing in the
    // worktree reaches): a `rev-parse` process would cost more than the check.
    if worktree.git_dir.join("MERGE_HEAD").exists() {
        Git::in_worktree(worktree)
            .args(["merge", "--abort"])
            .run()?;
    }
    for state in ["rebase-merge", "rebase-apply"] {
        if worktree.git_dir.join(state).exists() {
            Git::in_worktree(worktree)
                .args(["rebase", "--abort"])
                .run()?;
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::tests::{init_repo, read, sh, write};
    use super::*;

    fn commit_in_root(repo: &Repo, file: &str, text: &str) -> String {
        write(&repo.root().join(file), text);
        sh(repo.root(), &["add", "-A"]);
        sh(
            repo.root(),
            &["commit", "--quiet", "-m", &format!("user edits {file}")],
        );
        repo.branch_tip("main").unwrap()
    }

    #[test]
    fn fast_forward_when_target_did_not_move_updates_the_clean_checkout() {
        let (tmp, repo) = init_repo(&[("README.md", "hello\n")]);
        let wt = repo
            .add_worktree(&tmp.path().join("wts/T-1-1"), "gaffer/T-1-1", "main")
            .unwrap();
        write(&wt.path.join("feature.txt"), "feature\n");
        let commit = wt.commit("add feature").unwrap().unwrap();

        let outcome = repo
            .merge(&wt, &MergeTarget::local("main"), "T-1", "Merge T-1")
            .unwrap();
        assert_eq!(
            outcome,
            MergeOutcome::Merged {
                commit: commit.clone(),
                how: MergeKind::FastForward,
                user_tree_updated: true
            }
        );
        assert_eq!(repo.branch_tip("main").unwrap(), commit);
        assert_eq!(read(&repo.root().join("feature.txt")), "feature\n");
        assert_eq!(sh(repo.root(), &["status", "--porcelain"]), "");
    }

    #[test]
    fn merge_commit_when_target_moved_without_conflict() {
        let (tmp, repo) = init_repo(&[("README.md", "hello\n")]);
        sh(repo.root(), &["branch", "release"]);
        let wt = repo
            .add_worktree(&tmp.path().join("wts/T-2-1"), "gaffer/T-2-1", "release")
            .unwrap();
        write(&wt.path.join("agent.txt"), "agent\n");
        let agent_commit = wt.commit("agent work").unwrap().unwrap();
        // `release` moves on, in a worktree of its own, while the attempt runs.
        let side = tmp.path().join("side");
        sh(
            repo.root(),
            &[
                "worktree",
                "add",
                "--quiet",
                "--detach",
                side.to_str().unwrap(),
                "release",
            ],
        );
        write(&side.join("user.txt"), "user\n");
        sh(&side, &["add", "-A"]);
        sh(&side, &["commit", "--quiet", "-m", "user work"]);
        let moved = sh(&side, &["rev-parse", "HEAD"]);
        sh(repo.root(), &["update-ref", "refs/heads/release", &moved]);
        let main_before = repo.branch_tip("main").unwrap();

        let outcome = repo
            .merge(
                &wt,
                &MergeTarget::local("release"),
                "T-2",
                "Merge T-2: agent work",
            )
            .unwrap();
        let MergeOutcome::Merged {
            commit,
            how: MergeKind::MergeCommit,
            user_tree_updated: false,
        } = outcome
        else {
            panic!("{outcome:?}");
        };
        assert_eq!(repo.branch_tip("release").unwrap(), commit);
        let parents = sh(repo.root(), &["rev-list", "--parents", "-n", "1", &commit]);
        assert_eq!(parents, format!("{commit} {moved} {agent_commit}"));
        let tree = sh(repo.root(), &["ls-tree", "--name-only", &commit]);
        assert_eq!(tree, "README.md\nagent.txt\nuser.txt");
        assert_eq!(
            sh(repo.root(), &["log", "-1", "--format=%s|%an", &commit]),
            "Merge T-2: agent work|gaffer"
        );
        // The user's main worktree (on main) saw nothing.
        assert_eq!(repo.branch_tip("main").unwrap(), main_before);
        assert!(!repo.root().join("agent.txt").exists());
    }

    #[test]
    fn merge_commit_into_the_clean_checked_out_target_updates_the_user_tree() {
        let (tmp, repo) = init_repo(&[("README.md", "hello\n")]);
        let wt = repo
            .add_worktree(&tmp.path().join("wts/T-3-1"), "gaffer/T-3-1", "main")
            .unwrap();
        write(&wt.path.join("agent.txt"), "agent\n");
        wt.commit("agent work").unwrap().unwrap();
        let moved = commit_in_root(&repo, "user.txt", "user\n");

        let outcome = repo
            .merge(&wt, &MergeTarget::local("main"), "T-3", "Merge T-3")
            .unwrap();
        let MergeOutcome::Merged {
            commit,
            how: MergeKind::MergeCommit,
            user_tree_updated: true,
        } = outcome
        else {
            panic!("{outcome:?}");
        };
        assert_eq!(repo.branch_tip("main").unwrap(), commit);
        assert_eq!(
            sh(repo.root(), &["rev-parse", &format!("{commit}^1")]),
            moved
        );
        assert_eq!(read(&repo.root().join("agent.txt")), "agent\n");
        assert_eq!(read(&repo.root().join("user.txt")), "user\n");
    }

    #[test]
    fn conflict_when_merge_and_rebase_both_fail_leaves_target_unchanged() {
        let (tmp, repo) = init_repo(&[("shared.txt", "a\nb\nc\n"), ("other.txt", "x\n")]);
        let wt = repo
            .add_worktree(&tmp.path().join("wts/T-4-1"), "gaffer/T-4-1", "main")
            .unwrap();
        write(&wt.path.join("shared.txt"), "a\nagent\nc\n");
        let agent_commit = wt.commit("agent edits line 2").unwrap().unwrap();
        let moved = commit_in_root(&repo, "shared.txt", "a\nuser\nc\n");

        let outcome = repo
            .merge(&wt, &MergeTarget::local("main"), "T-4", "Merge T-4")
            .unwrap();
        let MergeOutcome::Conflict { reason } = outcome else {
            panic!("{outcome:?}")
        };
        assert!(reason.contains("shared.txt"), "{reason}");
        assert!(!reason.contains("other.txt"), "{reason}");
        assert_eq!(repo.branch_tip("main").unwrap(), moved);
        assert_eq!(read(&repo.root().join("shared.txt")), "a\nuser\nc\n");
        assert_eq!(sh(repo.root(), &["status", "--porcelain"]), "");
        // The attempt's worktree is back on its branch, unchanged and clean.
        assert_eq!(repo.branch_tip("gaffer/T-4-1").unwrap(), agent_commit);
        assert_eq!(
            sh(&wt.path, &["symbolic-ref", "HEAD"]),
            "refs/heads/gaffer/T-4-1"
        );
        assert_eq!(sh(&wt.path, &["status", "--porcelain"]), "");
    }

    #[test]
    fn rebase_when_the_merge_conflicts_but_the_commits_apply_one_by_one() {
        let (tmp, repo) = init_repo(&[("shared.txt", "a\nb\nc\n")]);
        let wt = repo
            .add_worktree(&tmp.path().join("wts/T-5-1"), "gaffer/T-5-1", "main")
            .unwrap();
        // The agent first makes the same edit the user makes, then builds on it.
        write(&wt.path.join("shared.txt"), "a\nuser\nc\n");
        wt.commit("same edit as the user").unwrap().unwrap();
        write(&wt.path.join("shared.txt"), "a\nagent\nc\n");
        wt.commit("agent edit").unwrap().unwrap();
        let moved = commit_in_root(&repo, "shared.txt", "a\nuser\nc\n");

        let outcome = repo
            .merge(&wt, &MergeTarget::local("main"), "T-5", "Merge T-5")
            .unwrap();
        let MergeOutcome::Merged {
            commit,
            how: MergeKind::Rebased,
            user_tree_updated: true,
        } = outcome
        else {
            panic!("{outcome:?}");
        };
        assert_eq!(repo.branch_tip("main").unwrap(), commit);
        // The duplicate commit was dropped; the agent's edit sits right on the user's commit.
        assert_eq!(
            sh(repo.root(), &["rev-parse", &format!("{commit}^")]),
            moved
        );
        assert_eq!(read(&repo.root().join("shared.txt")), "a\nagent\nc\n");
    }

    #[test]
    fn parked_when_the_user_has_uncommitted_changes_on_the_target() {
        let (tmp, repo) = init_repo(&[("README.md", "hello\n")]);
        let wt = repo
            .add_worktree(&tmp.path().join("wts/T-7-1"), "gaffer/T-7-1", "main")
            .unwrap();
        write(&wt.path.join("feature.txt"), "feature\n");
        let commit = wt.commit("add feature").unwrap().unwrap();
        let tip = repo.branch_tip("main").unwrap();
        write(&repo.root().join("README.md"), "hello, my unsaved work\n");

        let outcome = repo
            .merge(&wt, &MergeTarget::local("main"), "T-7", "Merge T-7")
            .unwrap();
        let MergeOutcome::Parked {
            branch,
            commit: parked,
            reason,
        } = outcome
        else {
            panic!("{outcome:?}")
        };
        assert_eq!(branch, "gaffer/merged/T-7");
        assert_eq!(parked, commit);
        assert!(
            reason.contains("gaffer/merged/T-7") && reason.contains("README.md"),
            "{reason}"
        );
        assert_eq!(
            read(&repo.root().join("README.md")),
            "hello, my unsaved work\n"
        );
        assert!(!repo.root().join("feature.txt").exists());
        assert_eq!(repo.branch_tip("main").unwrap(), tip);
        assert_eq!(repo.branch_tip("gaffer/merged/T-7").unwrap(), commit);
        assert_eq!(
            sh(repo.root(), &["show", "gaffer/merged/T-7:feature.txt"]),
            "feature"
        );
    }

    #[test]
    fn parked_when_an_untracked_user_file_blocks_the_fast_forward() {
        let (tmp, repo) = init_repo(&[("README.md", "hello\n")]);
        let wt = repo
            .add_worktree(&tmp.path().join("wts/T-8-1"), "gaffer/T-8-1", "main")
            .unwrap();
        write(&wt.path.join("notes.txt"), "agent notes\n");
        let commit = wt.commit("add notes").unwrap().unwrap();
        let tip = repo.branch_tip("main").unwrap();
        write(&repo.root().join("notes.txt"), "the user's own notes\n");

        let outcome = repo
            .merge(&wt, &MergeTarget::local("main"), "T-8", "Merge T-8")
            .unwrap();
        let MergeOutcome::Parked {
            branch,
            commit: parked,
            ..
        } = outcome
        else {
            panic!("{outcome:?}")
        };
        assert_eq!(
            (branch.as_str(), parked.as_str()),
            ("gaffer/merged/T-8", commit.as_str())
        );
        assert_eq!(
            read(&repo.root().join("notes.txt")),
            "the user's own notes\n"
        );
        assert_eq!(repo.branch_tip("main").unwrap(), tip);
    }

    /// The user commits to the checked-out target between the candidate and the landing: the
    /// fast-forward is refused, and because the target moved the landing says start over
    /// (nothing parked); the next candidate is a merge commit on the user's commit.
    #[test]
    fn a_target_that_moves_before_the_landing_means_a_new_candidate_not_a_parked_one() {
        let (tmp, repo) = init_repo(&[("README.md", "hello\n")]);
        let wt = repo
            .add_worktree(&tmp.path().join("wts/T-9-1"), "gaffer/T-9-1", "main")
            .unwrap();
        write(&wt.path.join("feature.txt"), "feature\n");
        let commit = wt.commit("add feature").unwrap().unwrap();
        let target = MergeTarget::local("main");
        let candidate = repo.candidate(&wt, &target, "Merge T-9").unwrap();
        assert!(matches!(
            &candidate,
            Candidate::Ready { commit: c, how: MergeKind::FastForward, .. } if *c == commit
        ));
        let moved = commit_in_root(&repo, "user.txt", "the user's\n");
        assert_eq!(repo.land(&candidate, &target, "T-9").unwrap(), None);
        assert_eq!(repo.branch_tip("main").unwrap(), moved);
        let branches = sh(repo.root(), &["branch", "--list", "gaffer/merged/*"]);
        assert!(branches.is_empty(), "{branches}");

        let outcome = repo.merge(&wt, &target, "T-9", "Merge T-9").unwrap();
        let MergeOutcome::Merged {
            commit: merged,
            how,
            ..
        } = outcome
        else {
            panic!("{outcome:?}")
        };
        assert_eq!(how, MergeKind::MergeCommit);
        let parents = sh(repo.root(), &["rev-list", "--parents", "-n", "1", &merged]);
        assert_eq!(parents.trim(), format!("{merged} {moved} {commit}"));
    }

    /// The target checked out in a worktree of the user's other than the main one (which has
    /// another branch): found there, and fast-forwarded there.
    #[test]
    fn a_target_checked_out_in_a_linked_worktree_is_updated_there() {
        let (tmp, repo) = init_repo(&[("README.md", "hello\n")]);
        sh(repo.root(), &["checkout", "-q", "-b", "dev"]);
        let linked = tmp.path().join("user-main");
        sh(
            repo.root(),
            &["worktree", "add", "-q", linked.to_str().unwrap(), "main"],
        );
        let wt = repo
            .add_worktree(&tmp.path().join("wts/T-11-1"), "gaffer/T-11-1", "main")
            .unwrap();
        write(&wt.path.join("feature.txt"), "feature\n");
        let commit = wt.commit("add feature").unwrap().unwrap();
        let outcome = repo
            .merge(&wt, &MergeTarget::local("main"), "T-11", "Merge T-11")
            .unwrap();
        assert_eq!(
            outcome,
            MergeOutcome::Merged {
                commit,
                how: MergeKind::FastForward,
                user_tree_updated: true
            }
        );
        assert_eq!(read(&linked.join("feature.txt")), "feature\n");
        assert!(!repo.root().join("feature.txt").exists());
    }

    /// The target's tip and the branch's tip and parents come from one `rev-parse`; a missing
    /// branch on either side is named as such.
    #[test]
    fn tips_and_parents_read_both_branches_and_name_a_missing_one() {
        let (tmp, repo) = init_repo(&[("README.md", "hello\n")]);
        let base = repo.branch_tip("main").unwrap();
        let wt = repo
            .add_worktree(&tmp.path().join("wts/T-10-1"), "gaffer/T-10-1", "main")
            .unwrap();
        write(&wt.path.join("feature.txt"), "feature\n");
        let commit = wt.commit("add feature").unwrap().unwrap();
        assert_eq!(
            repo.tips_and_parents("main", "gaffer/T-10-1").unwrap(),
            (base.clone(), (commit, vec![base]))
        );
        for (target, branch, missing) in [
            ("nope", "gaffer/T-10-1", "nope"),
            ("main", "gaffer/none", "gaffer/none"),
        ] {
            match repo.tips_and_parents(target, branch).unwrap_err() {
                GitError::NoSuchBranch { branch, .. } => assert_eq!(branch, missing),
                other => panic!("{other:?}"),
            }
        }
    }
}

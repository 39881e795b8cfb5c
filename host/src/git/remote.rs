//! A target branch on a shared remote: several hosts, each running gaffer in a clone of its own,
//! merge into one branch of one remote (a bare repository such as `origin`).
//!
//! The remote is the truth. An attempt's worktree starts from the remote's tip, fetched into
//! `refs/remotes/<remote>/<branch>` just before; a merge candidate is built on the tip fetched
//! again; and it lands by a push with an explicit lease
//! (`--force-with-lease=refs/heads/<branch>:<tip>`), which the remote applies only while its
//! branch is still at `<tip>`: a compare-and-swap across hosts. A push refused because the
//! branch moved is the "moved" answer (build a new candidate on the new tip); any other refusal
//! is an error. After a push this clone's own branch follows where that is safe, as a local
//! landing would move it, but it is never the measure of success.

use super::merge::is_ancestor;
use super::{Git, GitError, MergeKind, MergeOutcome, Repo, uncommitted_in};

/// `git push --porcelain` reasons for a ref it did not send because the remote's branch was not
/// where the push expected it: the lease's `stale info`, and the plain push's words for the same.
const MOVED_REASONS: [&str; 3] = ["(stale info)", "(fetch first)", "(non-fast-forward)"];

/// How `git push --porcelain` reported one ref: its flag and its summary (with the reason).
#[derive(Debug, Clone, PartialEq, Eq)]
struct PushStatus {
    flag: char,
    summary: String,
    line: String,
}

impl PushStatus {
    /// The ref now has the pushed value: pushed (fast-forward, forced or new) or already there.
    fn landed(&self) -> bool {
        matches!(self.flag, ' ' | '+' | '*' | '=')
    }

    /// Not sent because the remote's ref had moved from the expected value.
    fn moved(&self) -> bool {
        self.flag == '!'
            && self.summary.starts_with("[rejected]")
            && MOVED_REASONS.iter().any(|r| self.summary.ends_with(r))
    }
}

/// The status line of the push to `dst` (a full ref name) in `git push --porcelain` output:
/// `<flag> TAB <from>:<to> TAB <summary> (<reason>)`.
fn push_status(stdout: &str, dst: &str) -> Option<PushStatus> {
    stdout.lines().find_map(|line| {
        let mut fields = line.splitn(3, '\t');
        let (flag, refs, summary) = (fields.next()?, fields.next()?, fields.next()?);
        let mut chars = flag.chars();
        let (Some(flag), None) = (chars.next(), chars.next()) else {
            return None;
        };
        let (_, to) = refs.rsplit_once(':')?;
        (to == dst).then(|| PushStatus {
            flag,
            summary: summary.trim().to_string(),
            line: line.trim().to_string(),
        })
    })
}

impl Repo {
    /// Checks that `remote` is a remote of this repository and has `branch`; the branch's tip
    /// there. Changes nothing (`git remote get-url`, `git ls-remote`). `NoSuchRemote` and
    /// `NoRemoteBranch` say which is missing; an unreachable remote is the command's error.
    pub fn check_remote(&self, remote: &str, branch: &str) -> Result<String, GitError> {
        let url = self.remote_url(remote)?;
        self.remote_tip(remote, branch)?
            .ok_or_else(|| GitError::NoRemoteBranch {
                repo: self.root.clone(),
                remote: remote.to_string(),
                url,
                branch: branch.to_string(),
            })
    }

    /// The URL of `remote`; `NoSuchRemote` when this repository has no remote of that name.
    pub fn remote_url(&self, remote: &str) -> Result<String, GitError> {
        let run = Git::new(&self.root)
            .args(["remote", "get-url", "--", remote])
            .output()?;
        match run.code() {
            Some(0) => Ok(run.stdout.trim().to_string()),
            // git's status for "no such remote".
            Some(2) => Err(GitError::NoSuchRemote {
                repo: self.root.clone(),
                remote: remote.to_string(),
                reason: run.stderr().to_string(),
            }),
            _ => Err(run.into_error()),
        }
    }

    /// The commit `branch` points at on `remote`, as the remote says now (`git ls-remote`,
    /// which changes nothing here); `None` when the remote has no such branch.
    pub fn remote_tip(&self, remote: &str, branch: &str) -> Result<Option<String>, GitError> {
        let wanted = format!("refs/heads/{branch}");
        let run = Git::new(&self.root)
            .args(["ls-remote", "--exit-code", "--", remote, &wanted])
            .output()?;
        match run.code() {
            Some(0) => Ok(run.stdout.lines().find_map(|line| {
                let (id, name) = line.split_once('\t')?;
                (name == wanted).then(|| id.to_string())
            })),
            // git's status for "no matching ref".
            Some(2) => Ok(None),
            _ => Err(run.into_error()),
        }
    }

    /// Fetches `branch` from `remote` into `refs/remotes/<remote>/<branch>` and returns the
    /// commit it is at: the tip a worktree or a merge candidate starts from. Nothing else is
    /// fetched or written (no tags, no submodules, no `FETCH_HEAD` that a person's `git pull`
    /// could be reading); fetches from this process are serialised.
    pub fn fetch_target(&self, remote: &str, branch: &str) -> Result<String, GitError> {
        let _serialised = self
            .fetch_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let tracking = format!("refs/remotes/{remote}/{branch}");
        Git::new(&self.root)
            .args([
                "fetch",
                "--quiet",
                "--no-tags",
                "--no-recurse-submodules",
                "--no-write-fetch-head",
                "--",
                remote,
            ])
            .arg(format!("+refs/heads/{branch}:{tracking}"))
            .run()?;
        Ok(Git::new(&self.root)
            .args(["rev-parse", "--quiet", "--verify"])
            .arg(format!("{tracking}^{{commit}}"))
            .run()?
            .trim()
            .to_string())
    }

    /// Lands `commit` on `branch` of `remote` if the remote's branch is still at `tip`: a push
    /// with that explicit lease, which the remote checks and applies as one step. `None` when
    /// the branch had moved (build a new candidate on its new tip); any other refusal is an
    /// error with git's words. Once the push succeeded the outcome is `Merged`, whatever
    /// happens to this clone's own branch (see `follow_pushed`). The caller holds the
    /// merge lock.
    pub(super) fn push_target(
        &self,
        remote: &str,
        branch: &str,
        tip: &str,
        commit: String,
        how: MergeKind,
        task_id: &str,
    ) -> Result<Option<MergeOutcome>, GitError> {
        let dst = format!("refs/heads/{branch}");
        // The user's push settings must not sign, take tags or submodules along, or weaken
        // the lease.
        let run = Git::new(&self.root)
            .args([
                "push",
                "--porcelain",
                "--no-signed",
                "--no-follow-tags",
                "--recurse-submodules=no",
                "--no-force-if-includes",
            ])
            .arg(format!("--force-with-lease={dst}:{tip}"))
            .args(["--", remote])
            .arg(format!("{commit}:{dst}"))
            .output()?;
        let status = push_status(&run.stdout, &dst);
        let landed = match &status {
            Some(status) if status.landed() => true,
            Some(status) if status.moved() => return Ok(None),
            // Refused by the remote, cut off, or no status at all: ask the remote where its
            // branch is now. Another host's push that won the race at the remote itself
            // (between the ref advertisement and the update) is a move like any other; a
            // connection lost after the remote took the update is a landing.
            _ => match self.remote_tip(remote, branch) {
                Ok(Some(now)) if now == commit => true,
                Ok(Some(now)) if now != tip => return Ok(None),
                _ => false,
            },
        };
        if !landed {
            let detail = status.map(|s| s.line).unwrap_or_default();
            return Err(run.into_error_with(&detail));
        }
        let user_tree_updated = self.follow_pushed(remote, branch, &commit, task_id);
        Ok(Some(MergeOutcome::Merged {
            commit,
            how,
            user_tree_updated,
        }))
    }

    /// After a push: brings this clone's own `branch` to `commit` where that is safe, as a local
    /// landing moves it: by a compare-and-swap of the ref when nobody has it checked out, by
    /// `git merge --ff-only` of a clean checked-out tree. Only a branch behind `commit` moves:
    /// one with commits of its own here, or a tree with uncommitted changes, is left as it is,
    /// and so is a clone without the branch. True when a checked-out tree was updated. Never an
    /// error: the push is what merged, and the next fetch brings the clone along anyway.
    fn follow_pushed(&self, remote: &str, branch: &str, commit: &str, task_id: &str) -> bool {
        let follow = || -> Result<bool, GitError> {
            let Ok(local) = self.branch_tip(branch) else {
                return Ok(false);
            };
            if local == commit || !is_ancestor(&self.root, &local, commit)? {
                return Ok(false);
            }
            let Some(holder) = self.checked_out_in(branch)? else {
                // A branch moved meanwhile keeps its new place (the old value is the lease).
                Git::new(&self.root)
                    .arg("update-ref")
                    .arg("-m")
                    .arg(format!("gaffer: merge {task_id} (pushed to {remote})"))
                    .arg(format!("refs/heads/{branch}"))
                    .arg(commit)
                    .arg(&local)
                    .output()?;
                return Ok(false);
            };
            if !uncommitted_in(&holder)?.is_empty() {
                return Ok(false);
            }
            Ok(Git::new(&holder)
                .args(["merge", "--ff-only", "--quiet", commit])
                .output()?
                .ok())
        };
        follow().unwrap_or_else(|error| {
            tracing::warn!(%error, branch, remote, "the local branch stays behind the remote's");
            false
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_status_reads_the_line_of_the_pushed_ref() {
        let out = "To /srv/shared.git\n\
                   !\tabc:refs/heads/mainline\t[rejected] (stale info)\n\
                   \x20\tabc:refs/heads/main\t1111111..2222222\n\
                   Done\n";
        let status = push_status(out, "refs/heads/main").unwrap();
        assert_eq!(status.flag, ' ');
        assert!(status.landed() && !status.moved());
        let status = push_status(out, "refs/heads/mainline").unwrap();
        assert!(status.moved() && !status.landed());
        assert_eq!(push_status(out, "refs/heads/other"), None);
        let refused = "!\tabc:refs/heads/main\t[remote rejected] (pre-receive hook declined)\n";
        let status = push_status(refused, "refs/heads/main").unwrap();
        assert!(!status.moved() && !status.landed());
        assert_eq!(
            push_status("fatal: no such repository\n", "refs/heads/main"),
            None
        );
    }
}

//! Worktrees recycled between attempts. Making a worktree writes every file of the repository
//! and removing it frees every one of them; recycling the previous attempt's worktree rewrites
//! only the files that differ from the new base. Beyond the writes, churn is expensive in
//! itself: ext4 without a journal (as on these VMs) skips the inodes freed in the last minutes
//! when it allocates new ones, each skip a lookup, so after a few thousand files removed every
//! file creation on that disk slows down, the user's own `git` included (a bare `git worktree
//! add` of 2,000 files went from 0.22 s to 2.2 s after gaffer ran five tasks).

use std::path::Path;

use super::ref_files::{
    HeadFile, delete_loose_branch, is_commit_id, loose_branch_file, write_head, write_loose_ref,
};
use super::{GitError, Repo, Worktree, canonical, io_error, same_path, stamp};
use crate::git::Git;

/// The name, under the worktrees directory, of a worktree parked between runs (followed by the
/// worker's number): a run's workers start from these instead of making fresh worktrees.
pub const PARKED_PREFIX: &str = "spare-";

/// The file, in a parked worktree's git dir (gaffer's, out of the worktree's reach), that
/// vouches for it across runs: the commit it was clean at when parked and the [`stamp`] of its
/// tree then. Read once and removed by the run that claims the worktree.
const PARKED_CLEAN_AT: &str = "gaffer-parked-clean-at";

/// Operations a failed merge or rebase can leave in a worktree's git dir: a worktree with one
/// of these is not recycled.
const UNFINISHED: [&str; 6] = [
    "MERGE_HEAD",
    "rebase-merge",
    "rebase-apply",
    "CHERRY_PICK_HEAD",
    "REVERT_HEAD",
    "BISECT_LOG",
];

impl Repo {
    /// The worktree of a new attempt at `dir`, on a new branch `branch` at `base`: `spare` (the
    /// worktree of an attempt that has ended) recycled when it can be, else a fresh one (see
    /// [`Repo::add_worktree`]). A spare that cannot be recycled is removed first, whatever is
    /// wrong with it.
    pub fn prepare_worktree(
        &self,
        spare: Option<Worktree>,
        dir: &Path,
        branch: &str,
        base: &str,
    ) -> Result<Worktree, GitError> {
        let spare = spare.or_else(|| self.claim_parked(dir));
        if let Some(spare) = spare {
            match self.recycle(&spare, dir, branch, base) {
                Ok(worktree) => return Ok(worktree),
                Err(error) => {
                    tracing::debug!(spare = %spare.path.display(), %error, "a fresh worktree instead");
                    // Wherever the failure left it: at its old place or already at `dir`
                    // (`add_worktree` clears `dir` and a branch of the new name).
                    let _ = spare.remove(self);
                }
            }
        }
        self.add_worktree(dir, branch, base)
    }

    /// Parks `worktree` (whatever is in it) under `parent` as `spare-<slot>` for a later run,
    /// its branch deleted and its HEAD detached; removed instead when that place is taken or
    /// parking fails. The next run recycles it (see [`Repo::prepare_worktree`]). A worktree
    /// vouched for ([`Worktree::clean_at`]) stays vouched for across runs while its tree's
    /// [`stamp`] is unchanged: the next run then only changes its branch.
    pub fn park_worktree(
        &self,
        worktree: &Worktree,
        parent: &Path,
        slot: usize,
    ) -> Result<(), GitError> {
        let place = parent.join(format!("{PARKED_PREFIX}{slot}"));
        let parked = (|| {
            let _serialised = self.worktree_admin();
            if place.exists() || place.is_symlink() {
                return Err(GitError::Io {
                    path: place.clone(),
                    reason: "taken".to_string(),
                });
            }
            worktree.restore_git_pointer()?;
            self.detach_head(worktree)?;
            // The branch's loose ref removed directly where that is all git would do.
            if !delete_loose_branch(&self.root.join(".git"), &worktree.branch) {
                Git::new(&self.root)
                    .args([
                        "update-ref",
                        "-d",
                        &format!("refs/heads/{}", worktree.branch),
                    ])
                    .run()?;
            }
            self.move_worktree(worktree, &place)
        })();
        match parked {
            Ok(()) => {
                if let Some(commit) = &worktree.clean_at {
                    vouch_across_runs(&place, &worktree.git_dir, commit);
                }
                Ok(())
            }
            Err(error) => {
                tracing::debug!(worktree = %worktree.path.display(), %error, "removed, not parked");
                worktree.remove(self)
            }
        }
    }

    /// A worktree parked under `dir`'s parent, moved to `dir` (the rename is the claim: of two
    /// processes after the same one, one wins). Found from git's side (each linked worktree's
    /// `gitdir` file in the main git dir), never from anything in a worktree.
    fn claim_parked(&self, dir: &Path) -> Option<Worktree> {
        let parent = canonical(dir.parent()?);
        if dir.exists() || dir.is_symlink() {
            return None;
        }
        let admin = self.root.join(".git/worktrees");
        for entry in std::fs::read_dir(&admin).ok()?.flatten() {
            let git_dir = entry.path();
            let Ok(back) = std::fs::read_to_string(git_dir.join("gitdir")) else {
                continue;
            };
            let Some(path) = Path::new(back.trim_end_matches('\n')).parent() else {
                continue;
            };
            let parked = path.parent() == Some(parent.as_path())
                && path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(PARKED_PREFIX));
            if !parked || !path.is_dir() || path.is_symlink() {
                continue;
            }
            let _serialised = self.worktree_admin();
            let spare = Worktree {
                path: path.to_path_buf(),
                git_dir: git_dir.clone(),
                branch: String::new(),
                base: String::new(),
                clean_at: vouched_across_runs(path, &git_dir),
            };
            if self.move_worktree(&spare, dir).is_ok() {
                return Some(Worktree {
                    path: canonical(dir),
                    ..spare
                });
            }
        }
        None
    }

    /// Detaches the worktree's `HEAD` where it is, as `git update-ref --no-deref HEAD HEAD`
    /// would: `HEAD` itself rewritten, no file or index touched (a `checkout --detach` would
    /// scan the tree). Written directly when `HEAD` names a branch whose loose ref file in the
    /// repository's `.git` holds its commit (what the snapshot's `update-ref` leaves), since a
    /// git process costs milliseconds of every task; git does it otherwise.
    fn detach_head(&self, worktree: &Worktree) -> Result<(), GitError> {
        if let Some(HeadFile::Branch(branch)) = HeadFile::read(&worktree.git_dir)
            && let Some(commit) = self.loose_branch_tip(&branch)
        {
            return write_head(&worktree.git_dir, &format!("{commit}\n"));
        }
        Git::in_worktree(worktree)
            .args(["update-ref", "--no-deref", "HEAD", "HEAD"])
            .run()?;
        Ok(())
    }

    /// Renames the worktree's directory to `to` and tells git (the `gitdir` file in its
    /// admin directory, gitrepository-layout(5)); the admin directory itself stays.
    fn move_worktree(&self, worktree: &Worktree, to: &Path) -> Result<(), GitError> {
        std::fs::rename(&worktree.path, to).map_err(|e| io_error(to, e))?;
        let back = worktree.git_dir.join("gitdir");
        let moved = canonical(to).join(".git");
        std::fs::write(&back, format!("{}\n", moved.display())).map_err(|e| io_error(&back, e))
    }

    /// `spare` renamed to `dir` and made exactly `base` on `branch`: every tracked file as in
    /// `base` (only those that differ are written), nothing untracked or ignored left, no nested
    /// repository, its old branch deleted. The check at the end (a dry run of the clean finds
    /// nothing more to remove) holds whatever the attempt did to the files: one attempt never
    /// leaves anything for the next. A spare the pipeline vouched for as exactly `base` already
    /// ([`Worktree::clean_at`]) only changes branch. Errors leave cleaning up to the caller.
    fn recycle(
        &self,
        spare: &Worktree,
        dir: &Path,
        branch: &str,
        base: &str,
    ) -> Result<Worktree, GitError> {
        // A vouched-for spare names the commit it is clean at: the branch transaction below
        // checks that `base` is still there instead of a `rev-parse` reading it first.
        let base_commit = match &spare.clean_at {
            Some(clean_at) => clean_at.clone(),
            None => self.commit_of(base)?,
        };
        let _serialised = self.worktree_admin();
        if !spare.path.is_dir() || spare.path.is_symlink() {
            return Err(GitError::Io {
                path: spare.path.clone(),
                reason: "the worktree to recycle is gone".to_string(),
            });
        }
        if let Some(state) = UNFINISHED
            .iter()
            .find(|state| spare.git_dir.join(state).exists())
        {
            return Err(GitError::Io {
                path: spare.git_dir.clone(),
                reason: format!("an unfinished operation ({state})"),
            });
        }
        if !same_path(&spare.path, dir) {
            self.clear_place(dir)?;
            self.move_worktree(spare, dir)?;
        }
        let mut worktree = Worktree {
            path: canonical(dir),
            git_dir: spare.git_dir.clone(),
            branch: branch.to_string(),
            base: base_commit,
            clean_at: None,
        };
        worktree.restore_git_pointer()?;
        let old_branch = (!spare.branch.is_empty() && spare.branch != branch)
            .then(|| format!("refs/heads/{}", spare.branch));
        if spare.clean_at.is_some() {
            // Vouched for: its index and files are exactly the commit it is clean at, so when
            // `base` is still that commit (verified in the transaction that makes the new
            // branch there and deletes the old one) HEAD is pointed at the new branch and the
            // files are not looked at (a checkout and two cleans would read every one of them
            // to find nothing to do). Where both are loose refs of the repository's `.git`
            // (see `ref_files`), no git process: the base read, the new branch written.
            if old_branch.is_none()
                && self.loose_branch_tip(base).as_deref() == Some(worktree.base.as_str())
                && let Some(file) = loose_branch_file(&self.root.join(".git"), branch)
                && write_loose_ref(&file, &worktree.base).is_ok()
            {
                point_head_at(&worktree, branch)?;
                return Ok(worktree);
            }
            let mut instructions = format!(
                "verify refs/heads/{base} {at}\nupdate refs/heads/{branch} {at}\n",
                at = worktree.base
            );
            if let Some(old) = &old_branch {
                instructions.push_str(&format!("delete {old}\n"));
            }
            let made = Git::new(&self.root)
                .args(["update-ref", "--stdin"])
                .input(instructions)
                .output()?;
            if made.ok() {
                point_head_at(&worktree, branch)?;
                return Ok(worktree);
            }
            // `base` moved (or names no branch): its commit, and the whole reset.
            worktree.base = self.commit_of(base)?;
        }
        self.reset_and_check(&worktree, branch)?;
        if let Some(old) = old_branch {
            // `update-ref -d` of a missing ref succeeds: one process whatever is there.
            Git::new(&self.root)
                .args(["update-ref", "-d", &old])
                .run()?;
        }
        Ok(worktree)
    }

    /// Makes `worktree` exactly its base on `branch`, whatever is in it: a forced checkout, a
    /// clean of everything untracked or ignored (nested repositories too), and the check.
    fn reset_and_check(&self, worktree: &Worktree, branch: &str) -> Result<(), GitError> {
        Git::in_worktree(worktree)
            .args([
                "checkout",
                "--quiet",
                "--force",
                "--no-recurse-submodules",
                "-B",
                branch,
                &worktree.base,
            ])
            .run()?;
        Git::in_worktree(worktree).args(["clean", "-ffdxq"]).run()?;
        // The check: what a second clean would still remove (untracked, ignored, nested
        // repositories) must be nothing. Tracked files need no second look: `checkout --force`
        // either made each one match `base` (by content wherever its stat data changed, and
        // gaffer's index is its own: the attempt's git has a copy) or failed.
        let left = Git::in_worktree(worktree).args(["clean", "-ffdxn"]).run()?;
        if !left.is_empty() {
            return Err(GitError::Io {
                path: worktree.path.clone(),
                reason: format!(
                    "still differs from {} after the reset: {}",
                    worktree.base,
                    left.trim().replace('\n', "; ")
                ),
            });
        }
        Ok(())
    }
}

/// Writes the vouch of a worktree parked at `place` as clean at `commit`: the commit and the
/// [`stamp`] of its tree now. A failure only costs the next run the whole reset.
fn vouch_across_runs(place: &Path, git_dir: &Path, commit: &str) {
    let file = git_dir.join(PARKED_CLEAN_AT);
    let written = stamp::take(place)
        .and_then(|stamped| std::fs::write(&file, format!("{commit}\n{stamped}")));
    if let Err(error) = written {
        tracing::debug!(file = %file.display(), %error, "parked without a vouch");
    }
}

/// The commit a worktree parked at `place` is still exactly at, when the vouch its run wrote
/// is there and its tree passes the [`stamp`]'s check. The vouch is removed first, read or
/// not: it serves one claim.
fn vouched_across_runs(place: &Path, git_dir: &Path) -> Option<String> {
    let file = git_dir.join(PARKED_CLEAN_AT);
    let vouch = std::fs::read_to_string(&file).ok();
    std::fs::remove_file(&file).ok()?;
    let vouch = vouch?;
    let (commit, stamped) = vouch.split_once('\n')?;
    if is_commit_id(commit) && stamp::unchanged_since(place, stamped) {
        return Some(commit.to_string());
    }
    tracing::debug!(worktree = %place.display(), "changed since it was parked: the whole reset");
    None
}

/// Points the worktree's `HEAD` (in its git dir, which is gaffer's: nothing in the worktree
/// reaches it) at `branch`, as `git symbolic-ref` would. Written directly (see [`write_head`])
/// when the repository keeps its refs in files, because a git process costs milliseconds of
/// every attempt; with the reftable backend `HEAD` lives in the table, and git writes it.
fn point_head_at(worktree: &Worktree, branch: &str) -> Result<(), GitError> {
    if HeadFile::read(&worktree.git_dir).is_none() {
        Git::in_worktree(worktree)
            .args(["symbolic-ref", "HEAD", &format!("refs/heads/{branch}")])
            .run()?;
        return Ok(());
    }
    write_head(&worktree.git_dir, &format!("ref: refs/heads/{branch}\n"))
}

#[cfg(test)]
mod tests {
    use super::super::remove_dir;
    use super::super::stamp::tests::keeping_mtime;
    use super::super::tests::{init_repo, init_repo_with, read, sh, write};
    use super::*;

    fn tracked(repo: &Repo) -> String {
        sh(repo.root(), &["rev-parse", "HEAD"]).trim().to_string()
    }

    #[test]
    fn a_spare_comes_back_exactly_at_the_new_base_under_the_new_name() {
        let (_tmp, repo) = init_repo(&[("README.md", "hello\n")]);
        let base = tracked(&repo);
        let parent = repo.root().join(".gaffer/worktrees");
        let first = repo
            .add_worktree(&parent.join("T-1-a1"), "gaffer/T-1/a1", "main")
            .unwrap();
        // What an attempt leaves: a changed file, a new one, an ignored one, a nested
        // repository, a replaced `.git`, a committed change on its branch.
        write(&first.path.join("README.md"), "changed by the attempt\n");
        write(&first.path.join("new.txt"), "new\n");
        write(&first.path.join(".gitignore"), "*.log\n");
        sh(&first.path, &["add", ".gitignore"]);
        sh(&first.path, &["commit", "-q", "-m", "ignore logs"]);
        write(&first.path.join("debug.log"), "secret\n");
        std::fs::create_dir_all(first.path.join("inner")).unwrap();
        sh(&first.path.join("inner"), &["init", "-q"]);
        std::fs::write(first.path.join(".git"), "gitdir: /somewhere/else\n").unwrap();

        let second = repo
            .prepare_worktree(
                Some(first.clone()),
                &parent.join("T-2-a1"),
                "gaffer/T-2/a1",
                "main",
            )
            .unwrap();
        assert_eq!(second.git_dir, first.git_dir, "recycled, not made anew");
        assert!(!first.path.exists());
        assert_eq!(second.path, canonical(&parent.join("T-2-a1")));
        assert_eq!(second.base, base);
        assert_eq!(
            read(&second.path.join("README.md")),
            read(&repo.root().join("README.md"))
        );
        for gone in ["new.txt", ".gitignore", "debug.log", "inner"] {
            assert!(!second.path.join(gone).exists(), "{gone} survived");
        }
        assert_eq!(
            sh(&second.path, &["rev-parse", "--abbrev-ref", "HEAD"]).trim(),
            "gaffer/T-2/a1"
        );
        assert!(sh(&second.path, &["status", "--porcelain", "--ignored"]).is_empty());
        let branches = sh(repo.root(), &["branch", "--list", "gaffer/*"]);
        assert!(!branches.contains("T-1"), "{branches}");
        // git itself still knows it, at its new place, and can remove it.
        let listed = sh(repo.root(), &["worktree", "list", "--porcelain"]);
        assert!(
            listed.contains(&format!("worktree {}", second.path.display())),
            "{listed}"
        );
        second.remove(&repo).unwrap();
        assert!(
            !sh(repo.root(), &["worktree", "list"]).contains("T-2"),
            "pruned"
        );
    }

    /// An attempt whose snapshot became `main` by a fast-forward: its worktree, committed and
    /// clean, and the commit.
    fn landed_attempt(repo: &Repo, parent: &Path) -> (Worktree, String) {
        let first = repo
            .add_worktree(&parent.join("T-1-a1"), "gaffer/T-1/a1", "main")
            .unwrap();
        write(&first.path.join("feature.txt"), "feature\n");
        let snapshot = first.snapshot("T-1").unwrap().commit;
        sh(repo.root(), &["merge", "--ff-only", "-q", &snapshot]);
        (first, snapshot)
    }

    /// The worktree of the next attempt (`T-2-a1` on `main`), from `first` vouched for as
    /// exactly `clean_at`.
    fn next_attempt(repo: &Repo, parent: &Path, first: &Worktree, clean_at: &str) -> Worktree {
        let vouched = Worktree {
            clean_at: Some(clean_at.to_string()),
            ..first.clone()
        };
        repo.prepare_worktree(
            Some(vouched),
            &parent.join("T-2-a1"),
            "gaffer/T-2/a1",
            "main",
        )
        .unwrap()
    }

    #[test]
    fn a_spare_vouched_for_at_the_new_base_only_changes_branch() {
        let (_tmp, repo) = init_repo(&[("README.md", "hello\n")]);
        let parent = repo.root().join(".gaffer/worktrees");
        let (first, snapshot) = landed_attempt(&repo, &parent);
        let index = first.git_dir.join("index");
        let index_before = std::fs::metadata(&index).unwrap().modified().unwrap();
        let second = next_attempt(&repo, &parent, &first, &snapshot);
        // No checkout: the index was not rewritten.
        assert_eq!(
            std::fs::metadata(&index).unwrap().modified().unwrap(),
            index_before
        );
        assert_eq!(second.git_dir, first.git_dir);
        assert_eq!(second.base, snapshot);
        assert_eq!(
            second.clean_at, None,
            "the next attempt's worktree is not vouched for"
        );
        assert_eq!(
            sh(&second.path, &["symbolic-ref", "HEAD"]),
            "refs/heads/gaffer/T-2/a1"
        );
        assert_eq!(sh(&second.path, &["rev-parse", "HEAD"]), snapshot);
        assert!(!second.git_dir.join("HEAD.lock").exists());
        assert!(sh(&second.path, &["status", "--porcelain", "--ignored"]).is_empty());
        assert_eq!(read(&second.path.join("feature.txt")), "feature\n");
        let branches = sh(repo.root(), &["branch", "--list", "gaffer/*"]);
        assert!(!branches.contains("T-1"), "{branches}");
        assert!(branches.contains("gaffer/T-2/a1"), "{branches}");
    }

    /// A lock on the worktree's `HEAD` (a git that was at work there and died): the spare is
    /// not pointed at the new branch behind the lock's back; a fresh worktree takes its place.
    #[test]
    fn a_vouched_spare_whose_head_is_locked_gives_way_to_a_fresh_worktree() {
        let (_tmp, repo) = init_repo(&[("README.md", "hello\n")]);
        let parent = repo.root().join(".gaffer/worktrees");
        let (first, snapshot) = landed_attempt(&repo, &parent);
        let lock = first.git_dir.join("HEAD.lock");
        std::fs::write(&lock, "someone else's\n").unwrap();
        let second = next_attempt(&repo, &parent, &first, &snapshot);
        assert_ne!(second.git_dir, first.git_dir);
        assert_eq!(
            sh(&second.path, &["symbolic-ref", "HEAD"]),
            "refs/heads/gaffer/T-2/a1"
        );
        assert_eq!(sh(&second.path, &["rev-parse", "HEAD"]), snapshot);
    }

    #[test]
    fn a_vouch_for_another_commit_than_the_base_gets_the_whole_reset() {
        let (_tmp, repo) = init_repo(&[("README.md", "hello\n")]);
        let parent = repo.root().join(".gaffer/worktrees");
        let (first, snapshot) = landed_attempt(&repo, &parent);
        // The target moved on (another worker's merge), and something was left behind.
        write(&repo.root().join("other.txt"), "other\n");
        sh(repo.root(), &["add", "other.txt"]);
        sh(repo.root(), &["commit", "-q", "-m", "moved"]);
        write(&first.path.join("canary.txt"), "canary\n");
        write(&first.path.join("feature.txt"), "changed\n");
        let second = next_attempt(&repo, &parent, &first, &snapshot);
        assert_eq!(second.base, tracked(&repo));
        assert!(!second.path.join("canary.txt").exists());
        assert_eq!(read(&second.path.join("feature.txt")), "feature\n");
        assert_eq!(read(&second.path.join("other.txt")), "other\n");
        assert!(sh(&second.path, &["status", "--porcelain", "--ignored"]).is_empty());
    }

    #[test]
    fn a_spare_that_cannot_be_recycled_gives_way_to_a_fresh_worktree() {
        let (_tmp, repo) = init_repo(&[("README.md", "hello\n")]);
        let parent = repo.root().join(".gaffer/worktrees");
        let first = repo
            .add_worktree(&parent.join("T-1-a1"), "gaffer/T-1/a1", "main")
            .unwrap();
        // A merge left half-way.
        std::fs::write(first.git_dir.join("MERGE_HEAD"), "0000\n").unwrap();
        write(&first.path.join("left.txt"), "left\n");
        let second = repo
            .prepare_worktree(
                Some(first.clone()),
                &parent.join("T-2-a1"),
                "gaffer/T-2/a1",
                "main",
            )
            .unwrap();
        assert_ne!(second.git_dir, first.git_dir, "made anew");
        assert!(!first.path.exists());
        assert!(!second.path.join("left.txt").exists());
        assert!(
            !sh(repo.root(), &["branch", "--list", "gaffer/*"]).contains("T-1"),
            "the spare's branch went with it"
        );

        // A spare whose directory is gone (another process's start removed it).
        remove_dir(&second.path).unwrap();
        let third = repo
            .prepare_worktree(
                Some(second),
                &parent.join("T-3-a1"),
                "gaffer/T-3/a1",
                "main",
            )
            .unwrap();
        assert!(third.path.join("README.md").exists());
        let listed = sh(repo.root(), &["worktree", "list"]);
        assert!(!listed.contains("T-2"), "{listed}");
    }

    #[test]
    fn a_parked_worktree_is_claimed_once_and_a_taken_place_removes_instead() {
        let (_tmp, repo) = init_repo(&[("README.md", "hello\n")]);
        let parent = repo.root().join(".gaffer/worktrees");
        let first = repo
            .add_worktree(&parent.join("T-1-a1"), "gaffer/T-1/a1", "main")
            .unwrap();
        write(&first.path.join("left.txt"), "left by T-1\n");
        repo.park_worktree(&first, &parent, 0).unwrap();
        let spare = parent.join("spare-0");
        assert!(spare.join("left.txt").is_file(), "parked as it was");
        assert!(
            sh(repo.root(), &["branch", "--list", "gaffer/*"]).is_empty(),
            "its branch deleted"
        );
        let listed = sh(repo.root(), &["worktree", "list", "--porcelain"]);
        assert!(listed.contains("detached"), "{listed}");

        // The next run: the first claim takes it, the second finds none and makes a fresh one.
        let second = repo
            .prepare_worktree(None, &parent.join("T-2-a1"), "gaffer/T-2/a1", "main")
            .unwrap();
        assert_eq!(second.git_dir, first.git_dir, "claimed from the park");
        assert!(!spare.exists());
        assert!(!second.path.join("left.txt").exists());
        let third = repo
            .prepare_worktree(None, &parent.join("T-3-a1"), "gaffer/T-3/a1", "main")
            .unwrap();
        assert_ne!(third.git_dir, second.git_dir, "nothing left to claim");

        // Two workers parking at one place: the second is removed instead.
        repo.park_worktree(&second, &parent, 0).unwrap();
        repo.park_worktree(&third, &parent, 0).unwrap();
        assert!(!third.path.exists());
        let names: Vec<String> = std::fs::read_dir(&parent)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["spare-0"]);
        let listed = sh(repo.root(), &["worktree", "list", "--porcelain"]);
        assert_eq!(listed.matches("worktree ").count(), 2, "{listed}");
    }

    /// Parking detaches `HEAD` at the commit its branch pointed at (written directly, no lock
    /// left behind), and the next attempt's claim points it at the new branch.
    #[test]
    fn a_parked_worktree_is_detached_at_its_tip_and_claimed_on_the_new_branch() {
        let (_tmp, repo) = init_repo(&[("README.md", "hello\n")]);
        let parent = repo.root().join(".gaffer/worktrees");
        let (first, snapshot) = parked_vouched(&repo, &parent);
        let spare = parent.join("spare-0");
        assert_eq!(sh(&spare, &["rev-parse", "HEAD"]), snapshot);
        assert_eq!(read(&first.git_dir.join("HEAD")), format!("{snapshot}\n"));
        assert!(!first.git_dir.join("HEAD.lock").exists());
        assert!(sh(&spare, &["status", "--porcelain"]).is_empty());
        let second = repo
            .prepare_worktree(None, &parent.join("T-2-a1"), "gaffer/T-2/a1", "main")
            .unwrap();
        assert_eq!(
            sh(&second.path, &["symbolic-ref", "HEAD"]),
            "refs/heads/gaffer/T-2/a1"
        );
        assert_eq!(sh(&second.path, &["rev-parse", "HEAD"]), snapshot);
    }

    /// With the reftable backend `HEAD` and the branches live in the table, not in files: the
    /// snapshot, the park and the vouched claim leave them to git, and each is where git says.
    #[test]
    fn a_reftable_repository_recycles_with_heads_and_branches_where_git_reads_them() {
        let (_tmp, repo) = init_repo_with(&["--ref-format=reftable"], &[("README.md", "hello\n")]);
        assert_eq!(
            sh(repo.root(), &["rev-parse", "--show-ref-format"]),
            "reftable"
        );
        let parent = repo.root().join(".gaffer/worktrees");
        let (first, snapshot) = landed_attempt(&repo, &parent);
        assert_eq!(sh(repo.root(), &["rev-parse", "gaffer/T-1/a1"]), snapshot);
        std::thread::sleep(super::stamp::RACY * 2);
        let vouched = Worktree {
            clean_at: Some(snapshot.clone()),
            ..first.clone()
        };
        repo.park_worktree(&vouched, &parent, 0).unwrap();
        let spare = parent.join("spare-0");
        assert_eq!(sh(&spare, &["rev-parse", "HEAD"]), snapshot);
        let symbolic = Git::new(&spare)
            .args(["symbolic-ref", "--quiet", "HEAD"])
            .output()
            .unwrap();
        assert_eq!(symbolic.code(), Some(1), "detached");
        let second = repo
            .prepare_worktree(None, &parent.join("T-2-a1"), "gaffer/T-2/a1", "main")
            .unwrap();
        assert_eq!(second.git_dir, first.git_dir, "claimed from the park");
        assert_eq!(
            sh(&second.path, &["symbolic-ref", "HEAD"]),
            "refs/heads/gaffer/T-2/a1"
        );
        write(&second.path.join("second.txt"), "second\n");
        let next = second.snapshot("T-2").unwrap().commit;
        assert_eq!(sh(repo.root(), &["rev-parse", "gaffer/T-2/a1"]), next);
        assert_eq!(sh(&second.path, &["rev-parse", "HEAD"]), next);
    }

    /// A landed attempt's worktree parked vouched for, after the racy window of its stamp.
    fn parked_vouched(repo: &Repo, parent: &Path) -> (Worktree, String) {
        let (first, snapshot) = landed_attempt(repo, parent);
        std::thread::sleep(super::stamp::RACY * 2);
        let vouched = Worktree {
            clean_at: Some(snapshot.clone()),
            ..first
        };
        repo.park_worktree(&vouched, parent, 0).unwrap();
        assert!(
            vouched.git_dir.join(PARKED_CLEAN_AT).is_file(),
            "parked with its vouch"
        );
        (vouched, snapshot)
    }

    #[test]
    fn a_vouched_worktree_parked_unchanged_only_changes_branch_in_the_next_run() {
        let (_tmp, repo) = init_repo(&[("README.md", "hello\n")]);
        let parent = repo.root().join(".gaffer/worktrees");
        let (first, snapshot) = parked_vouched(&repo, &parent);
        let index = first.git_dir.join("index");
        let index_before = std::fs::metadata(&index).unwrap().modified().unwrap();
        let second = repo
            .prepare_worktree(None, &parent.join("T-2-a1"), "gaffer/T-2/a1", "main")
            .unwrap();
        assert_eq!(second.git_dir, first.git_dir, "claimed from the park");
        assert_eq!(
            std::fs::metadata(&index).unwrap().modified().unwrap(),
            index_before,
            "no checkout: the index was not rewritten"
        );
        assert!(
            !first.git_dir.join(PARKED_CLEAN_AT).exists(),
            "a vouch serves one claim"
        );
        assert_eq!(second.base, snapshot);
        assert_eq!(sh(&second.path, &["rev-parse", "HEAD"]), snapshot);
        assert_eq!(
            sh(&second.path, &["symbolic-ref", "HEAD"]),
            "refs/heads/gaffer/T-2/a1"
        );
        assert!(sh(&second.path, &["status", "--porcelain", "--ignored"]).is_empty());
    }

    /// Whatever touches a parked worktree between runs (a tracked file rewritten at the same
    /// size with its modification time put back, a file slipped into a directory whose time is
    /// put back): the next run sees the change and gives it the whole reset.
    #[test]
    fn a_vouched_worktree_changed_while_parked_gets_the_whole_reset() {
        const CANARY: &str = "canary-0b7e-slipped-into-a-parked-worktree";
        let (_tmp, repo) = init_repo(&[("README.md", "hello\n"), ("src/lib.rs", "fn a() {}\n")]);
        let parent = repo.root().join(".gaffer/worktrees");
        let (first, _) = parked_vouched(&repo, &parent);
        let spare = parent.join("spare-0");
        let readme = spare.join("README.md");
        keeping_mtime(&readme, || std::fs::write(&readme, "HELLO\n").unwrap());
        let src = spare.join("src");
        keeping_mtime(&src, || {
            std::fs::write(src.join("canary.rs"), CANARY).unwrap()
        });

        let second = repo
            .prepare_worktree(None, &parent.join("T-2-a1"), "gaffer/T-2/a1", "main")
            .unwrap();
        assert_eq!(second.git_dir, first.git_dir, "claimed from the park");
        assert_eq!(read(&second.path.join("README.md")), "hello\n");
        assert!(
            !second.path.join("src/canary.rs").exists(),
            "the canary survived"
        );
        assert!(sh(&second.path, &["status", "--porcelain", "--ignored"]).is_empty());
    }
}

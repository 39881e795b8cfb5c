//! One snapshot per attempt, and a clean checkout of it: what is tested, hooked, verified and
//! merged is exactly one commit made from the worktree when the agent stopped (every process of
//! the attempt is dead by then). Files the attempt left that git ignores never reach the commit;
//! they are listed (path, size, sha256, and up to a cap their content) for the `on-diff` hooks,
//! then removed with everything else untracked before the tests run.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::ref_files::{HeadFile, loose_branch_file, write_loose_ref};
use super::{Git, GitError, STAGED_DIFF, Worktree, diff};
use crate::plugin::types::{Diff, DiffLine, FileDiff, FileStatus, Hunk, LineKind};

/// The commit an attempt's worktree became.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub commit: String,
    /// Paths staged as gitlinks that the base did not have: directories holding a repository
    /// (with a commit) of their own, which a merge would record as submodules.
    pub nested_repositories: Vec<String>,
}

/// A file (or a wholly ignored directory) the attempt left that git ignores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoredFile {
    /// Relative to the worktree; a directory ends with `/` and carries no content.
    pub path: String,
    /// Bytes (a directory: 0).
    pub size: u64,
    /// SHA-256 of the content, hex (a directory: empty).
    pub sha256: String,
    /// The content when it is at most the cap; `None` past it (or for a directory).
    pub content: Option<Vec<u8>>,
}

impl Worktree {
    /// Commit the worktree as it is, untracked files included and ignored ones not, on top of
    /// its base, and point its branch at the commit. The worktree's `.git` is put back first
    /// (an attempt may have replaced it; gaffer's git never reads it, but the next `git` of a
    /// person in the worktree would).
    pub fn snapshot(&self, message: &str) -> Result<Snapshot, GitError> {
        self.restore_git_pointer()?;
        let add = Git::in_worktree(self).args(["add", "-A"]).output()?;
        if !add.ok() {
            // git's words for a directory holding a repository without a commit.
            if let Some(path) = add
                .stderr()
                .split_once("error: '")
                .and_then(|(_, rest)| rest.split_once("' does not have a commit checked out"))
                .map(|(path, _)| path.trim_end_matches('/').to_string())
            {
                return Err(GitError::NestedRepository {
                    worktree: self.path.clone(),
                    path,
                });
            }
            return Err(add.into_error());
        }
        // A directory with a repository (and a commit) of its own is staged as a gitlink.
        let raw = Git::in_worktree(self)
            .args([
                "diff",
                "--cached",
                "--raw",
                "-z",
                "--no-renames",
                &self.base,
            ])
            .run()?;
        let nested_repositories = gitlinks_added(&raw);
        let tree = Git::in_worktree(self).arg("write-tree").run()?;
        let commit = Git::in_worktree(self)
            .args(["commit-tree", "-p", &self.base, "-m", message, tree.trim()])
            .run()?;
        let commit = commit.trim().to_string();
        self.point_branch_at(&commit)?;
        Ok(Snapshot {
            commit,
            nested_repositories,
        })
    }

    /// Points the worktree's branch at `commit`, as `git update-ref` would: the loose ref file
    /// written directly when the repository keeps its refs in files (see `ref_files`), by git
    /// otherwise or when that fails.
    fn point_branch_at(&self, commit: &str) -> Result<(), GitError> {
        if HeadFile::read(&self.git_dir).is_some()
            && let Ok(common) = self.common_dir()
            && let Some(file) = loose_branch_file(&common, &self.branch)
        {
            match write_loose_ref(&file, commit) {
                Ok(()) => return Ok(()),
                Err(error) => tracing::debug!(%error, "the branch by git instead"),
            }
        }
        Git::in_worktree(self)
            .args(["update-ref", &format!("refs/heads/{}", self.branch), commit])
            .run()?;
        Ok(())
    }

    /// The files git ignores in the worktree (a directory ignored as a whole is one entry), with
    /// their content when it is at most `cap` bytes. A fresh worktree has none: every one was
    /// made by the attempt (or its tests).
    pub fn ignored_files(&self, cap: u64) -> Result<Vec<IgnoredFile>, GitError> {
        let listing = Git::in_worktree(self)
            .args([
                "ls-files",
                "--others",
                "--ignored",
                "--exclude-standard",
                "--directory",
                "-z",
            ])
            .run()?;
        let mut files = Vec::new();
        for path in listing.split('\0').filter(|p| !p.is_empty()) {
            if path.ends_with('/') {
                files.push(IgnoredFile {
                    path: path.to_string(),
                    size: 0,
                    sha256: String::new(),
                    content: None,
                });
                continue;
            }
            files.push(read_ignored(&self.path, path, cap)?);
        }
        Ok(files)
    }

    /// Make the worktree exactly `commit`: its `.git` put back, the index and files reset, and
    /// everything untracked or ignored removed (nested repositories too).
    pub fn reset_to(&self, commit: &str) -> Result<(), GitError> {
        self.restore_git_pointer()?;
        Git::in_worktree(self)
            .args(["reset", "--quiet", "--hard", commit])
            .run()?;
        Git::in_worktree(self).args(["clean", "-ffdxq"]).run()?;
        Ok(())
    }

    /// Right after [`Worktree::snapshot`], make the worktree exactly the snapshot: remove what
    /// is untracked or ignored (nested repositories too). No reset is needed: the snapshot
    /// staged every file that is not ignored (tracked ones whatever the ignore rules say), so
    /// the index, the commit and those files already agree, and `git reset --hard` would only
    /// scan the tree again to find that out.
    pub fn remove_untracked(&self) -> Result<(), GitError> {
        Git::in_worktree(self).args(["clean", "-ffdxq"]).run()?;
        Ok(())
    }

    /// The change from `from` to `to` (commits), parsed.
    pub fn diff_commits(&self, from: &str, to: &str) -> Result<Diff, GitError> {
        // STAGED_DIFF compares the index; between two commits, the same flags without it.
        let flags = STAGED_DIFF.iter().filter(|f| **f != "--cached");
        let text = Git::in_worktree(self)
            .args(flags)
            .args([from, to, "--"])
            .run()?;
        diff::parse(&text)
    }

    /// A git dir of the attempt's own at `dir`, for git inside the sandbox: the main
    /// repository's objects as a read-only alternate, one branch (the attempt's, at its base),
    /// the worktree's index, an identity for commits; the worktree's `.git` then points at it.
    /// What the agent does with it (commits, branches, resets) stays there: gaffer's git names
    /// the git dir it recorded and snapshots the files. Returns the mounts the sandbox needs:
    /// `dir` read-write, the main objects read-only.
    pub fn private_git_dir(&self, dir: &Path) -> Result<Vec<(std::path::PathBuf, bool)>, GitError> {
        let io = |path: &Path, e: std::io::Error| GitError::Io {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        let objects = self.common_dir()?.join("objects");
        // Written directly rather than by `git init`, `update-ref`, `symbolic-ref` and three
        // `git config`: the layout is gitrepository-layout(5)'s, and each git process here costs
        // a few milliseconds of every attempt. Bare at first would make no difference: the
        // worktree's `.git` file makes the worktree its work tree. The branch is in
        // `packed-refs` rather than a file of its own under `refs/heads/gaffer/<task>/`: every
        // directory and file here is an inode made and freed again with the attempt, and on
        // ext4 without a journal finding a free inode gets slower with each one freed.
        let refs = dir.join("refs");
        for sub in [dir.join("objects/info"), refs] {
            std::fs::create_dir_all(&sub).map_err(|e| io(&sub, e))?;
        }
        let files = [
            (
                dir.join("objects/info/alternates"),
                format!("{}\n", objects.display()),
            ),
            (
                dir.join("packed-refs"),
                format!("{} refs/heads/{}\n", self.base, self.branch),
            ),
            (
                dir.join("HEAD"),
                format!("ref: refs/heads/{}\n", self.branch),
            ),
            (
                dir.join("config"),
                "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = false\n\
                 [user]\n\tname = agent\n\temail = agent@sandbox.invalid\n"
                    .to_string(),
            ),
        ];
        for (path, text) in files {
            std::fs::write(&path, text).map_err(|e| io(&path, e))?;
        }
        let index = self.git_dir.join("index");
        std::fs::copy(&index, dir.join("index")).map_err(|e| io(&index, e))?;
        let pointer = self.path.join(".git");
        std::fs::write(&pointer, format!("gitdir: {}\n", dir.display()))
            .map_err(|e| io(&pointer, e))?;
        Ok(vec![(dir.to_path_buf(), true), (objects, false)])
    }

    /// The main repository's git dir, from the worktree's git dir (its `commondir` file, which
    /// git writes and nothing in the worktree can change); git asked when there is none.
    fn common_dir(&self) -> Result<PathBuf, GitError> {
        if let Ok(common) = std::fs::read_to_string(self.git_dir.join("commondir")) {
            let common = self.git_dir.join(common.trim_end_matches('\n'));
            if let Ok(common) = std::fs::canonicalize(&common) {
                return Ok(common);
            }
        }
        let common = Git::in_worktree(self)
            .args(["rev-parse", "--path-format=absolute", "--git-common-dir"])
            .run()?;
        Ok(PathBuf::from(common.trim_end_matches('\n')))
    }

    /// The worktree's `.git` as git wrote it: a file pointing at the git dir gaffer recorded.
    pub(super) fn restore_git_pointer(&self) -> Result<(), GitError> {
        let pointer = self.path.join(".git");
        let io = |e: std::io::Error| GitError::Io {
            path: pointer.clone(),
            reason: e.to_string(),
        };
        let expected = format!("gitdir: {}\n", self.git_dir.display());
        match std::fs::symlink_metadata(&pointer) {
            Ok(meta) if meta.is_file() => {
                if std::fs::read_to_string(&pointer).ok().as_deref() == Some(expected.as_str()) {
                    return Ok(());
                }
            }
            // A directory (or anything else) cannot be renamed over: it goes first.
            Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(&pointer).map_err(io)?,
            Ok(meta) if !meta.is_file() => std::fs::remove_file(&pointer).map_err(io)?,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        // Written beside and renamed over, so `.git` never stops existing (git prunes a
        // worktree whose `.git` is missing).
        let fresh = self
            .path
            .join(format!(".git.gaffer-{}", std::process::id()));
        std::fs::write(&fresh, expected).map_err(io)?;
        std::fs::rename(&fresh, &pointer).map_err(io)
    }
}

/// One ignored file: size and hash always, content up to `cap`. Read without following a
/// symlink (its target is shown instead) and without blocking (a FIFO is shown empty).
fn read_ignored(root: &Path, path: &str, cap: u64) -> Result<IgnoredFile, GitError> {
    let full = root.join(path);
    let io = |e: std::io::Error| GitError::Io {
        path: full.clone(),
        reason: e.to_string(),
    };
    let meta = std::fs::symlink_metadata(&full).map_err(io)?;
    let bytes = if meta.file_type().is_symlink() {
        std::fs::read_link(&full)
            .map_err(io)?
            .into_os_string()
            .into_encoded_bytes()
    } else if meta.is_file() {
        let mut bytes = Vec::new();
        std::fs::File::open(&full)
            .map_err(io)?
            .take(cap.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(io)?;
        bytes
    } else {
        Vec::new()
    };
    let size = if meta.is_file() {
        meta.len()
    } else {
        bytes.len() as u64
    };
    let sha256 = if meta.is_file() && size > cap {
        // Hash the whole file without holding it.
        let mut hasher = Sha256::new();
        let mut file = std::fs::File::open(&full).map_err(io)?;
        std::io::copy(&mut file, &mut hasher).map_err(io)?;
        hex::encode(hasher.finalize())
    } else {
        hex::encode(Sha256::digest(&bytes))
    };
    Ok(IgnoredFile {
        path: path.to_string(),
        size,
        sha256,
        content: (size <= cap).then_some(bytes),
    })
}

/// The paths whose new mode is a gitlink (160000) in `git diff --raw -z` output: records
/// `:old_mode new_mode old_sha new_sha status\0path\0`.
fn gitlinks_added(raw: &str) -> Vec<String> {
    let mut fields = raw.split('\0');
    let mut paths = Vec::new();
    while let Some(record) = fields.next() {
        let Some(path) = fields.next() else { break };
        let mut modes = record.trim_start_matches(':').split(' ');
        let (_old, new) = (modes.next(), modes.next());
        if new == Some("160000") {
            paths.push(path.to_string());
        }
    }
    paths
}

/// The change as the `on-diff` hooks see it: every file that merges, and each file (or wholly
/// ignored directory) git ignores that the attempt left, as an added file with its content.
/// Ignored files never merge; a rule on `.env` holds even when `.env` is ignored.
pub fn with_ignored(diff: &Diff, ignored: &[IgnoredFile]) -> Diff {
    let mut shown = diff.clone();
    for file in ignored {
        let text = file
            .content
            .as_deref()
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        let lines: Vec<DiffLine> = text
            .lines()
            .enumerate()
            .map(|(i, line)| DiffLine {
                kind: LineKind::Added,
                line: u32::try_from(i + 1).unwrap_or(u32::MAX),
                text: line.to_string(),
            })
            .collect();
        let added = u32::try_from(lines.len()).unwrap_or(u32::MAX);
        let binary = file
            .content
            .as_deref()
            .is_some_and(|c| c.contains(&0) || std::str::from_utf8(c).is_err());
        let hunks = if lines.is_empty() {
            Vec::new()
        } else {
            vec![Hunk {
                old_start: 0,
                old_lines: 0,
                new_start: 1,
                new_lines: added,
                lines,
            }]
        };
        shown.files.push(FileDiff {
            path: file.path.clone(),
            old_path: None,
            status: FileStatus::Added,
            binary,
            hunks,
            added,
            removed: 0,
        });
    }
    shown
}

/// Whether the file at `path` changed at `since` or later, or is gone: by its status-change
/// time (which a process cannot set back, unlike the modification time), in whole seconds, so
/// a change within the second `since` falls in.
pub fn changed_since(path: &Path, since: std::time::SystemTime) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return true;
    };
    let since = since
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    meta.ctime().max(meta.mtime()) >= since
}

/// The files git ignores in the working tree at `dir` (a user's repository, not an attempt's)
/// that were created or changed at `since` or later (by their status-change time, which a
/// process cannot set back), each with its content up to `cap` bytes; at most `limit` of them,
/// and `Err` past that, so that a caller that must judge them all can refuse.
pub fn ignored_changed_since(
    dir: &Path,
    since: std::time::SystemTime,
    cap: u64,
    limit: usize,
) -> Result<Vec<IgnoredFile>, GitError> {
    let listing = Git::new(dir)
        .args([
            "ls-files",
            "--others",
            "--ignored",
            "--exclude-standard",
            "-z",
        ])
        .run()?;
    let mut files = Vec::new();
    for path in listing.split('\0').filter(|p| !p.is_empty()) {
        let full = dir.join(path);
        let gone = std::fs::symlink_metadata(&full).is_err();
        if gone || !changed_since(&full, since) {
            continue;
        }
        if files.len() == limit {
            return Err(GitError::Io {
                path: dir.to_path_buf(),
                reason: format!("more than {limit} ignored files changed; too many to judge"),
            });
        }
        files.push(read_ignored(dir, path, cap)?);
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gitlinks_are_found_in_raw_diff_records() {
        let raw = ":000000 100644 0000000 1111111 A\0a.txt\0:000000 160000 0000000 2222222 A\0vendor/lib\0:100644 100644 3333333 4444444 M\0b.txt\0";
        assert_eq!(gitlinks_added(raw), ["vendor/lib"]);
        assert!(gitlinks_added("").is_empty());
    }
}

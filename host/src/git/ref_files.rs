//! Refs read and written as files, without a git process, where git's default ref storage (the
//! "files" backend) makes that exactly what git itself would do: `HEAD` files of gaffer's own
//! worktrees and the loose refs of gaffer's own branches. Each git process costs milliseconds of
//! every task; each function here says when it must leave the work to git instead (the reftable
//! backend, anything unexpected), and its callers then run git.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::{GitError, io_error};

/// What a `HEAD` file in a git dir says, when it can be read without git: the repository keeps
/// its refs in files (git's default), so `HEAD` is either a symbolic ref to a branch or a
/// commit id. A repository with the reftable backend keeps only a placeholder there
/// (`ref: refs/heads/.invalid`, so that older gits still recognise the directory) and its real
/// `HEAD` in the table: that, or anything else unexpected, is `None`, and git must be asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HeadFile {
    /// `ref: refs/heads/<branch>`: the short branch name.
    Branch(String),
    /// A commit id: detached.
    Detached,
}

impl HeadFile {
    /// Reads `HEAD` in `git_dir`; `None` when git must be asked (see [`HeadFile`]).
    pub(crate) fn read(git_dir: &Path) -> Option<HeadFile> {
        let head = git_dir.join("HEAD");
        // A symbolic link (`core.preferSymlinkRefs`) would read as its target's content.
        if !std::fs::symlink_metadata(&head).ok()?.is_file() {
            return None;
        }
        let text = std::fs::read_to_string(&head).ok()?;
        let line = text.strip_suffix('\n').unwrap_or(&text);
        if let Some(branch) = line.strip_prefix("ref: refs/heads/") {
            let valid = !branch.is_empty() && branch != ".invalid" && !branch.contains('\n');
            return valid.then(|| HeadFile::Branch(branch.to_string()));
        }
        is_commit_id(line).then_some(HeadFile::Detached)
    }
}

/// A full commit id in hex (SHA-1 or SHA-256).
pub(crate) fn is_commit_id(text: &str) -> bool {
    matches!(text.len(), 40 | 64) && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Replaces `HEAD` in `git_dir` with `content` as git does: the new content in `HEAD.lock`,
/// renamed over `HEAD`. A lock file already there means another git is at work on it, and is
/// an error.
pub(crate) fn write_head(git_dir: &Path, content: &str) -> Result<(), GitError> {
    replace_locked(&git_dir.join("HEAD"), content)
}

/// The file of the loose ref `refs/heads/<branch>` in `common_dir`, when `branch` is a name
/// whose every part is a plain path component (git refuses the others anyway).
pub(crate) fn loose_branch_file(common_dir: &Path, branch: &str) -> Option<PathBuf> {
    let plain = branch
        .split('/')
        .all(|part| !part.is_empty() && part != "." && part != ".." && !part.ends_with(".lock"));
    plain.then(|| common_dir.join("refs/heads").join(branch))
}

/// The commit the loose ref file `file` holds; `None` when it holds anything else (a
/// symbolic ref) or is missing (the ref may be packed, or absent): git must be asked.
pub(crate) fn read_loose_ref(file: &Path) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    let commit = text.strip_suffix('\n')?;
    is_commit_id(commit).then(|| commit.to_string())
}

/// Points the loose ref file `file` at `commit` as `git update-ref` does in the files backend:
/// the directories made, the content written to `<file>.lock` and renamed over the file. A
/// loose ref overrides a packed one of the same name. Fails (for the caller to run git) when a
/// lock is held or a file stands where a directory must go.
pub(crate) fn write_loose_ref(file: &Path, commit: &str) -> Result<(), GitError> {
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
    }
    replace_locked(file, &format!("{commit}\n"))
}

/// Deletes the branch `branch` as `git update-ref -d` does in the files backend, when it is
/// only a loose ref in `common_dir`: taken under its lock, removed, then its directories left
/// empty. `false` (nothing changed, for the caller to run git) when the branch may also be
/// packed (`packed-refs` names it), has a reflog to go with it, is no loose ref here, or its
/// lock is held.
pub(crate) fn delete_loose_branch(common_dir: &Path, branch: &str) -> bool {
    let Some(file) = loose_branch_file(common_dir, branch) else {
        return false;
    };
    let name = format!("refs/heads/{branch}");
    let packed = match std::fs::read(common_dir.join("packed-refs")) {
        Ok(packed) => packed.split(|b| *b == b'\n').any(|line| {
            line.strip_suffix(name.as_bytes())
                .is_some_and(|id| id.ends_with(b" "))
        }),
        Err(e) => e.kind() != std::io::ErrorKind::NotFound,
    };
    if packed
        || common_dir.join("logs").join(&name).exists()
        || !std::fs::symlink_metadata(&file).is_ok_and(|m| m.is_file())
    {
        return false;
    }
    let Ok((lock, _)) = take_lock(file.as_path()) else {
        return false;
    };
    let removed = std::fs::remove_file(&file).is_ok();
    let _ = std::fs::remove_file(&lock);
    // Directories the branch's name made, now empty (git removes them too); a non-empty one
    // stops the walk.
    let heads = common_dir.join("refs/heads");
    let mut dir = file.parent();
    while let Some(current) = dir {
        if current == heads || std::fs::remove_dir(current).is_err() {
            break;
        }
        dir = current.parent();
    }
    removed
}

/// Git's lock of `file`: `<file>.lock`, created only if no one holds it.
fn take_lock(file: &Path) -> Result<(PathBuf, std::fs::File), GitError> {
    let mut lock_name = file.as_os_str().to_os_string();
    lock_name.push(".lock");
    let lock = PathBuf::from(lock_name);
    let handle = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&lock)
        .map_err(|e| io_error(&lock, e))?;
    Ok((lock, handle))
}

/// `content` written to `<file>.lock` (which must not exist) and renamed over `file`.
fn replace_locked(file: &Path, content: &str) -> Result<(), GitError> {
    let (lock, mut handle) = take_lock(file)?;
    let written = handle
        .write_all(content.as_bytes())
        .and_then(|()| std::fs::rename(&lock, file));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&lock);
        return Err(io_error(file, e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git_dir_with_head(content: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("HEAD"), content).unwrap();
        dir
    }

    #[test]
    fn a_head_file_is_read_only_when_it_is_what_git_writes_for_files() {
        let branch = git_dir_with_head("ref: refs/heads/gaffer/T-1/a1\n");
        assert_eq!(
            HeadFile::read(branch.path()),
            Some(HeadFile::Branch("gaffer/T-1/a1".into()))
        );
        let sha1 = "0123456789abcdef0123456789abcdef01234567";
        let sha256 = "ab".repeat(32);
        for id in [sha1, sha256.as_str()] {
            let detached = git_dir_with_head(&format!("{id}\n"));
            assert_eq!(HeadFile::read(detached.path()), Some(HeadFile::Detached));
        }
        // reftable's placeholder, another kind of ref, a short id, junk, an empty branch name:
        // git must be asked.
        for content in [
            "ref: refs/heads/.invalid\n",
            "ref: refs/remotes/origin/main\n",
            "0123456789abcdef\n",
            "not a head\n",
            "ref: refs/heads/\n",
            "",
        ] {
            let odd = git_dir_with_head(content);
            assert_eq!(HeadFile::read(odd.path()), None, "{content:?}");
        }
        assert_eq!(HeadFile::read(Path::new("/nonexistent/git/dir")), None);
        // A `.git` file (`git init --separate-git-dir`) is no git dir to read `HEAD` in.
        let pointer = git_dir_with_head("ref: refs/heads/main\n");
        std::fs::write(pointer.path().join(".git"), "gitdir: /elsewhere\n").unwrap();
        assert_eq!(HeadFile::read(&pointer.path().join(".git")), None);
    }

    #[test]
    fn a_symbolic_link_head_is_left_to_git() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("target"),
            "0123456789abcdef0123456789abcdef01234567\n",
        )
        .unwrap();
        std::os::unix::fs::symlink(dir.path().join("target"), dir.path().join("HEAD")).unwrap();
        assert_eq!(HeadFile::read(dir.path()), None);
    }

    #[test]
    fn loose_branch_files_only_for_plain_names() {
        let common = Path::new("/repo/.git");
        assert_eq!(
            loose_branch_file(common, "gaffer/T-1/a1"),
            Some(PathBuf::from("/repo/.git/refs/heads/gaffer/T-1/a1"))
        );
        for name in ["../../config", "a//b", "a/./b", "", "x.lock", "a/b.lock/c"] {
            assert_eq!(loose_branch_file(common, name), None, "{name:?}");
        }
    }

    #[test]
    fn a_loose_ref_is_written_through_its_lock_and_read_back() {
        let common = tempfile::tempdir().unwrap();
        let file = loose_branch_file(common.path(), "gaffer/T-1/a1").unwrap();
        assert_eq!(read_loose_ref(&file), None, "missing: ask git");
        let commit = "0123456789abcdef0123456789abcdef01234567";
        write_loose_ref(&file, commit).unwrap();
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            format!("{commit}\n")
        );
        assert_eq!(read_loose_ref(&file).as_deref(), Some(commit));
        assert!(!file.with_file_name("a1.lock").exists());

        // Another git holds the lock: no write, and the ref is as it was.
        std::fs::write(file.with_file_name("a1.lock"), "").unwrap();
        let other = "89abcdef0123456789abcdef0123456789abcdef";
        assert!(write_loose_ref(&file, other).is_err());
        assert_eq!(read_loose_ref(&file).as_deref(), Some(commit));

        // Deleted only while it is nothing but a loose ref: not under a held lock, not when
        // `packed-refs` names it too; then its emptied directories go with it.
        assert!(!delete_loose_branch(common.path(), "gaffer/T-1/a1"));
        std::fs::remove_file(file.with_file_name("a1.lock")).unwrap();
        let packed = common.path().join("packed-refs");
        std::fs::write(
            &packed,
            format!(
                "# pack-refs with: peeled fully-peeled sorted \n{other} refs/heads/gaffer/T-1/a1\n"
            ),
        )
        .unwrap();
        assert!(!delete_loose_branch(common.path(), "gaffer/T-1/a1"));
        assert!(file.exists());
        std::fs::write(&packed, format!("{other} refs/heads/gaffer/T-1/a10\n")).unwrap();
        let sibling = loose_branch_file(common.path(), "gaffer/T-2").unwrap();
        write_loose_ref(&sibling, commit).unwrap();
        assert!(delete_loose_branch(common.path(), "gaffer/T-1/a1"));
        assert!(!file.exists() && !file.with_file_name("a1.lock").exists());
        assert!(!file.parent().unwrap().exists(), "the emptied T-1 stays");
        assert!(sibling.exists(), "a sibling went too");
        assert!(
            !delete_loose_branch(common.path(), "gaffer/T-1/a1"),
            "twice"
        );
        write_loose_ref(&file, commit).unwrap();

        // A symbolic ref in a loose file is not a commit.
        std::fs::write(&file, "ref: refs/heads/main\n").unwrap();
        assert_eq!(read_loose_ref(&file), None);
    }
}

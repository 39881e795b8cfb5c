//! The stamp of a worktree parked between runs: what lets the next run take a worktree that the
//! last one left exactly at a commit without a checkout and two cleans reading every file.
//!
//! A stamp is a SHA-256 over every entry of the tree (hidden, ignored and nested-repository
//! files included, symlinks not followed): its path, type and permissions, inode number and
//! change time (`ctime`). Any later change to the tree changes the stamp: a file written,
//! truncated, chmod-ed or hard-linked changes its `ctime`; one created, removed or renamed
//! changes the set of paths; one replaced gets another inode, or the same inode with a newer
//! `ctime`. Unlike the modification time, `ctime` cannot be set by a program: the kernel sets it
//! to the current time on every change.
//!
//! Timestamps have a granularity: a change made in the same clock tick as the entry's previous
//! change could leave its `ctime` as it was. So an entry changed within [`RACY`] of the moment
//! the stamp is taken makes the stamp refuse (no stamp, the whole reset next time), as git
//! treats its "racily clean" index entries.
//!
//! The root directory's own `ctime` is left out: gaffer renames the root when it parks and
//! claims the worktree, and the set of paths under it already shows every change to its
//! entries.

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

/// How recent a change makes a stamp refuse: well above any clock tick of file timestamps
/// (at most 10 ms on Linux) and any lag between the wall clock and the filesystem's.
pub(super) const RACY: Duration = Duration::from_millis(20);

/// The stamp of the tree at `root` (hex SHA-256), or `None` when an entry changed within
/// [`RACY`] of now: such a stamp could miss a change made in the same clock tick. Errors
/// (an unreadable directory, an entry gone during the walk) are errors: no stamp either.
pub(super) fn take(root: &Path) -> io::Result<Option<String>> {
    let racy_after = SystemTime::now()
        .checked_sub(RACY)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    walk(root, Some(racy_after))
}

/// The stamp of the tree at `root` now, to compare with one [`take`] wrote earlier.
pub(super) fn current(root: &Path) -> io::Result<String> {
    walk(root, None)?.ok_or_else(|| io::Error::other("no stamp"))
}

/// Walks `root` depth first, entries in name order, hashing each. With `racy_after`, an entry
/// changed at or after it ends the walk with `None`.
fn walk(root: &Path, racy_after: Option<SystemTime>) -> io::Result<Option<String>> {
    let mut hash = Sha256::new();
    let top = std::fs::symlink_metadata(root)?;
    if !top.is_dir() {
        return Err(io::Error::other(format!(
            "{} is not a directory",
            root.display()
        )));
    }
    hash.update(top.ino().to_le_bytes());
    let mut pending: Vec<PathBuf> = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(root.join(&relative))?
            .map(|entry| entry.map(|e| e.file_name()))
            .collect::<io::Result<_>>()?;
        entries.sort();
        // Reversed onto the stack, so that directories are walked in name order.
        let mut subdirectories = Vec::new();
        for name in entries {
            let path = relative.join(&name);
            let meta = std::fs::symlink_metadata(root.join(&path))?;
            if let Some(after) = racy_after {
                let changed = SystemTime::UNIX_EPOCH
                    + Duration::new(
                        u64::try_from(meta.ctime()).unwrap_or(0),
                        u32::try_from(meta.ctime_nsec()).unwrap_or(0),
                    );
                if changed >= after {
                    return Ok(None);
                }
            }
            // The path, then a NUL (no path holds one), then the fixed-size fields.
            hash.update(path.as_os_str().as_bytes());
            hash.update([0]);
            hash.update(meta.mode().to_le_bytes());
            hash.update(meta.ino().to_le_bytes());
            hash.update(meta.ctime().to_le_bytes());
            hash.update(meta.ctime_nsec().to_le_bytes());
            if meta.is_dir() {
                subdirectories.push(path);
            }
        }
        pending.extend(subdirectories.into_iter().rev());
    }
    Ok(Some(hex::encode(hash.finalize())))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tree whose entries all changed well before now (so that a stamp is not refused).
    fn settled_tree() -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("src/deep")).unwrap();
        std::fs::write(tmp.path().join("src/deep/a.txt"), "aaaa\n").unwrap();
        std::fs::write(tmp.path().join("README.md"), "hello\n").unwrap();
        std::os::unix::fs::symlink("README.md", tmp.path().join("link")).unwrap();
        std::thread::sleep(RACY * 2);
        tmp
    }

    #[test]
    fn an_unchanged_tree_keeps_its_stamp_and_a_moved_root_too() {
        let tmp = settled_tree();
        let stamp = take(tmp.path()).unwrap().expect("settled");
        assert_eq!(current(tmp.path()).unwrap(), stamp);
        let moved = tmp.path().with_extension("moved");
        std::fs::rename(tmp.path(), &moved).unwrap();
        assert_eq!(current(&moved).unwrap(), stamp);
        std::fs::rename(&moved, tmp.path()).unwrap();
    }

    /// Every kind of change, each on a fresh tree: written with the same size and its
    /// modification time put back, created (and its directory's time put back), removed,
    /// renamed, replaced, chmod-ed, the symlink retargeted.
    #[test]
    fn every_kind_of_change_changes_the_stamp() {
        type Change = fn(&Path);
        let changes: Vec<(&str, Change)> = vec![
            ("same size, mtime put back", |root| {
                let path = root.join("src/deep/a.txt");
                let before = std::fs::metadata(&path).unwrap();
                std::fs::write(&path, "bbbb\n").unwrap();
                std::fs::File::options()
                    .write(true)
                    .open(&path)
                    .unwrap()
                    .set_modified(before.modified().unwrap())
                    .unwrap();
            }),
            ("created, directory mtime put back", |root| {
                let dir = root.join("src/deep");
                let before = std::fs::metadata(&dir).unwrap();
                std::fs::write(dir.join("canary"), "x").unwrap();
                std::fs::File::open(&dir)
                    .unwrap()
                    .set_modified(before.modified().unwrap())
                    .unwrap();
            }),
            ("created hidden at the root", |root| {
                std::fs::create_dir(root.join(".hidden")).unwrap();
            }),
            ("removed", |root| {
                std::fs::remove_file(root.join("README.md")).unwrap();
            }),
            ("renamed", |root| {
                std::fs::rename(root.join("README.md"), root.join("README.txt")).unwrap();
            }),
            ("replaced", |root| {
                std::fs::write(root.join("new"), "hello\n").unwrap();
                std::fs::rename(root.join("new"), root.join("README.md")).unwrap();
            }),
            ("chmod-ed", |root| {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(
                    root.join("README.md"),
                    std::fs::Permissions::from_mode(0o755),
                )
                .unwrap();
            }),
            ("symlink retargeted", |root| {
                std::fs::remove_file(root.join("link")).unwrap();
                std::os::unix::fs::symlink("src", root.join("link")).unwrap();
            }),
        ];
        for (what, change) in changes {
            let tmp = settled_tree();
            let stamp = take(tmp.path()).unwrap().expect("settled");
            change(tmp.path());
            assert_ne!(current(tmp.path()).unwrap(), stamp, "{what}");
        }
    }

    #[test]
    fn a_tree_changed_within_the_racy_window_gets_no_stamp() {
        let tmp = settled_tree();
        assert!(take(tmp.path()).unwrap().is_some());
        std::fs::write(tmp.path().join("src/deep/a.txt"), "just now\n").unwrap();
        assert_eq!(take(tmp.path()).unwrap(), None);
    }
}

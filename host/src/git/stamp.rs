//! The stamp of a worktree parked between runs: what lets the next run take a worktree that the
//! last one left exactly at a commit without a checkout and two cleans reading every file.
//!
//! The stamp is the moment the worktree was parked and the entries of its root directory (name
//! and inode). The next run's check walks the tree once (hidden, ignored and nested-repository
//! files included, symlinks not followed): the root must hold the same entries, and no entry
//! below it may have changed (`ctime`) since [`RACY`] before the park. A file written,
//! truncated, chmod-ed or hard-linked changes its own `ctime`; one created, removed or renamed
//! changes its directory's; one replaced is a new inode, changed at its making. Unlike the
//! modification time, `ctime` cannot be set by a program: the kernel sets it to the current
//! time on every change. The root's own `ctime` is left out (gaffer renames the root when it
//! parks and claims the worktree): its entries are compared instead.
//!
//! An entry that changed within [`RACY`] before the park fails the check as well: timestamps
//! come from a clock that advances by ticks, and a change in the same tick as the park could
//! look older than it is. The check trusts the clock not to be stepped back between the park and
//! the claim by more than [`RACY`] (setting the clock needs a privilege the agent never has).

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirEntryExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, SystemTime};

/// How long before the park a change makes the check fail: well above any clock tick of file
/// timestamps (at most 10 ms on Linux) and any lag between the wall clock and the
/// filesystem's.
pub(super) const RACY: Duration = Duration::from_millis(20);

/// The stamp of the tree at `root` as it is parked now: the time (nanoseconds since the
/// epoch), then one line per entry of the root (inode, hex name), in name order.
pub(super) fn take(root: &Path) -> io::Result<String> {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_err(io::Error::other)?;
    let mut stamp = format!("{}\n", now.as_nanos());
    for entry in root_entries(root)? {
        stamp.push_str(&entry);
        stamp.push('\n');
    }
    Ok(stamp)
}

/// Whether the tree at `root` is as it was when `stamp` was taken: the same entries at the
/// root, nothing changed below it since [`RACY`] before the park. Any doubt (a malformed stamp,
/// an unreadable directory) is a no.
pub(super) fn unchanged_since(root: &Path, stamp: &str) -> bool {
    let mut lines = stamp.lines();
    let Some(parked) = lines.next().and_then(|l| l.parse::<i128>().ok()) else {
        return false;
    };
    let cutoff = parked - RACY.as_nanos() as i128;
    let recorded: Vec<&str> = lines.collect();
    match root_entries(root) {
        Ok(entries) if entries == recorded => settled_below(root, cutoff).unwrap_or(false),
        _ => false,
    }
}

/// The root's entries as the stamp lists them: inode and hex-encoded name, in name order.
fn root_entries(root: &Path) -> io::Result<Vec<String>> {
    let top = std::fs::symlink_metadata(root)?;
    if !top.is_dir() {
        return Err(io::Error::other(format!(
            "{} is not a directory",
            root.display()
        )));
    }
    let mut entries = std::fs::read_dir(root)?
        .map(|entry| entry.map(|e| (hex::encode(e.file_name().as_bytes()), e.ino())))
        .collect::<io::Result<Vec<_>>>()?;
    entries.sort();
    Ok(entries
        .into_iter()
        .map(|(name, ino)| format!("{ino} {name}"))
        .collect())
}

/// Whether every entry under `root` (not the root itself) last changed before `cutoff`
/// (nanoseconds since the epoch). Compared as integers: a timestamp, whatever it is, never
/// overflows a time type here.
///
/// The walk is spread over the machine's cores (at most [`MAX_WALKERS`]): it is one `fstatat`
/// per entry, on the critical path of every claimed worktree. On the 2-core machine the benches
/// run on, the pipeline bench's one-task run (2,000 files) took 89.332 and 86.267 ms with one
/// walker against 80.306 and 76.663 ms with two, alternating in one session.
fn settled_below(root: &Path, cutoff: i128) -> io::Result<bool> {
    let walkers = std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_WALKERS));
    let walk = SharedWalk {
        state: Mutex::new(WalkState {
            pending: vec![root.to_path_buf()],
            walking: 0,
            outcome: None,
        }),
        wake: Condvar::new(),
    };
    std::thread::scope(|scope| {
        for _ in 1..walkers {
            scope.spawn(|| walk.work(cutoff));
        }
        walk.work(cutoff);
    });
    let state = walk.state.into_inner().unwrap_or_else(|p| p.into_inner());
    match state.outcome {
        None => Ok(true),
        Some(Ok(())) => Ok(false),
        Some(Err(e)) => Err(e),
    }
}

/// Walkers of [`settled_below`] at most.
const MAX_WALKERS: usize = 4;

/// The directories left to look at, shared by the walkers.
struct SharedWalk {
    state: Mutex<WalkState>,
    /// Signalled when directories are added, and when the walk is over.
    wake: Condvar,
}

struct WalkState {
    pending: Vec<PathBuf>,
    /// Walkers reading a directory now (each may add more).
    walking: usize,
    /// How the walk ended early: `Ok` an entry changed, `Err` a directory could not be read.
    outcome: Option<io::Result<()>>,
}

impl SharedWalk {
    /// Take directories until none is left and no walker can add more, or the walk ended.
    fn work(&self, cutoff: i128) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if state.outcome.is_some() {
                return;
            }
            let Some(dir) = state.pending.pop() else {
                if state.walking == 0 {
                    self.wake.notify_all();
                    return;
                }
                state = self.wake.wait(state).unwrap_or_else(|p| p.into_inner());
                continue;
            };
            state.walking += 1;
            drop(state);
            let mut below = Vec::new();
            let looked = look_at(&dir, cutoff, &mut below);
            state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            state.walking -= 1;
            match looked {
                Ok(true) => state.pending.append(&mut below),
                Ok(false) => state.outcome = Some(Ok(())),
                Err(e) => state.outcome = Some(Err(e)),
            }
            self.wake.notify_all();
        }
    }
}

/// Whether every entry of `dir` last changed before `cutoff`; its subdirectories go to `below`.
fn look_at(dir: &Path, cutoff: i128, below: &mut Vec<PathBuf>) -> io::Result<bool> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        // Of the entry itself, never a symlink's target; looked up from the open
        // directory (`fstatat`), not through the whole path again.
        let meta = entry.metadata()?;
        let changed = i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec());
        if changed >= cutoff {
            return Ok(false);
        }
        if meta.is_dir() {
            below.push(entry.path());
        }
    }
    Ok(true)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Runs `change`, then puts `path`'s modification time back as it was (what a program
    /// hiding a change would do; only `ctime` still shows it).
    pub(in crate::git) fn keeping_mtime(path: &Path, change: impl FnOnce()) {
        let before = std::fs::metadata(path).unwrap().modified().unwrap();
        change();
        std::fs::File::open(path)
            .unwrap()
            .set_modified(before)
            .unwrap();
    }

    /// A tree whose entries all changed well before now, stamped.
    fn parked_tree() -> (tempfile::TempDir, String) {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("src/deep")).unwrap();
        std::fs::write(tmp.path().join("src/deep/a.txt"), "aaaa\n").unwrap();
        std::fs::write(tmp.path().join("README.md"), "hello\n").unwrap();
        std::os::unix::fs::symlink("README.md", tmp.path().join("link")).unwrap();
        std::thread::sleep(RACY * 2);
        let stamp = take(tmp.path()).unwrap();
        (tmp, stamp)
    }

    #[test]
    fn an_unchanged_tree_passes_and_a_moved_root_too() {
        let (tmp, stamp) = parked_tree();
        assert!(unchanged_since(tmp.path(), &stamp));
        let moved = tmp.path().with_extension("moved");
        std::fs::rename(tmp.path(), &moved).unwrap();
        assert!(unchanged_since(&moved, &stamp));
        std::fs::rename(&moved, tmp.path()).unwrap();
    }

    /// Every kind of change, each on a fresh tree: written with the same size and its
    /// modification time put back, created (and its directory's time put back), removed,
    /// renamed, replaced, chmod-ed, the symlink retargeted; at the root and below it.
    #[test]
    fn every_kind_of_change_fails_the_check() {
        type Change = fn(&Path);
        let changes: Vec<(&str, Change)> = vec![
            ("same size, mtime put back", |root| {
                let path = root.join("src/deep/a.txt");
                keeping_mtime(&path, || std::fs::write(&path, "bbbb\n").unwrap());
            }),
            ("created, directory mtime put back", |root| {
                let dir = root.join("src/deep");
                keeping_mtime(&dir, || std::fs::write(dir.join("canary"), "x").unwrap());
            }),
            ("created hidden at the root", |root| {
                std::fs::create_dir(root.join(".hidden")).unwrap();
            }),
            ("created at the root, root mtime put back", |root| {
                keeping_mtime(root, || std::fs::write(root.join("canary"), "x").unwrap());
            }),
            ("root file written in place", |root| {
                std::fs::write(root.join("README.md"), "HELLO\n").unwrap();
            }),
            ("removed", |root| {
                std::fs::remove_file(root.join("src/deep/a.txt")).unwrap();
            }),
            ("renamed at the root", |root| {
                std::fs::rename(root.join("README.md"), root.join("README.txt")).unwrap();
            }),
            ("replaced at the root", |root| {
                std::fs::write(root.join("new"), "hello\n").unwrap();
                std::fs::rename(root.join("new"), root.join("README.md")).unwrap();
            }),
            ("replaced below", |root| {
                std::fs::write(root.join("src/new"), "aaaa\n").unwrap();
                std::fs::rename(root.join("src/new"), root.join("src/deep/a.txt")).unwrap();
            }),
            ("chmod-ed", |root| {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(
                    root.join("src/deep/a.txt"),
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
            let (tmp, stamp) = parked_tree();
            change(tmp.path());
            assert!(!unchanged_since(tmp.path(), &stamp), "{what}");
        }
    }

    #[test]
    fn a_change_just_before_the_park_fails_the_check() {
        let (tmp, _) = parked_tree();
        std::fs::write(tmp.path().join("src/deep/a.txt"), "just now\n").unwrap();
        let stamp = take(tmp.path()).unwrap();
        assert!(!unchanged_since(tmp.path(), &stamp));
    }

    /// A tree wide and deep enough for every walker to take part: a change in any one of its
    /// files fails the check, and so does a directory that cannot be read; untouched, it
    /// passes.
    #[test]
    fn a_change_anywhere_in_a_large_tree_fails_the_check() {
        let tmp = tempfile::tempdir().unwrap();
        let mut files = Vec::new();
        for m in 0..8 {
            for d in 0..6 {
                let dir = tmp.path().join(format!("m{m}/d{d}/e"));
                std::fs::create_dir_all(&dir).unwrap();
                for f in 0..4 {
                    let file = dir.join(format!("f{f}.txt"));
                    std::fs::write(&file, "text\n").unwrap();
                    files.push(file);
                }
            }
        }
        std::thread::sleep(RACY * 2);
        let stamp = take(tmp.path()).unwrap();
        assert!(unchanged_since(tmp.path(), &stamp));
        for file in [&files[0], &files[files.len() / 2], &files[files.len() - 1]] {
            keeping_mtime(file, || std::fs::write(file, "TEXT\n").unwrap());
            assert!(!unchanged_since(tmp.path(), &stamp), "{}", file.display());
            std::thread::sleep(RACY * 2);
            let again = take(tmp.path()).unwrap();
            assert!(unchanged_since(tmp.path(), &again));
        }
        let locked = tmp.path().join("m5/d3");
        std::fs::set_permissions(&locked, std::os::unix::fs::PermissionsExt::from_mode(0o000))
            .unwrap();
        std::thread::sleep(RACY * 2);
        let stamp = take(tmp.path()).unwrap();
        // root reads any directory anyway; the check then still passes on an unchanged tree.
        let readable = std::fs::read_dir(&locked).is_ok();
        assert_eq!(unchanged_since(tmp.path(), &stamp), readable);
        std::fs::set_permissions(&locked, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
    }

    #[test]
    fn a_malformed_stamp_fails_the_check() {
        let (tmp, stamp) = parked_tree();
        for bad in ["", "not a time\n", &stamp.replace('\n', "\nextra\n")] {
            assert!(!unchanged_since(tmp.path(), bad), "{bad:?}");
        }
    }
}

//! One git command: gaffer's fixed configuration and environment around it (so that the user's
//! locale, an inherited `GIT_DIR` or a global signing setting cannot change what gaffer does),
//! its arguments, and what it printed.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use super::GitError;

/// Configuration every git command runs with: stable path output, a fixed identity for the
/// commits gaffer makes, no signing (no key, no prompt), no automation that could move other
/// refs or stash the user's work behind our back, and nothing a repository could make git run:
/// no hooks (gaffer's merges and commits are its own; a hook an attempt planted must never run
/// as gaffer), no file-system monitor program, no submodule recursion. And no housekeeping per
/// command: git's automatic maintenance (a process of its own after every commit and merge)
/// runs once at the end of a run instead ([`super::Repo::maintain`]), and the throwaway
/// branches of attempts get no reflog (a reflog that existed, like the target branch's, is
/// still written). Every file git creates costs an inode, and on ext4 without a journal an
/// inode is slow to find after many were freed.
const BASE_CONFIG: &[&str] = &[
    "core.quotepath=false",
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "submodule.recurse=false",
    "user.name=gaffer",
    "user.email=gaffer@localhost",
    "commit.gpgsign=false",
    "rerere.enabled=false",
    "merge.autoStash=false",
    "rebase.autoStash=false",
    "rebase.updateRefs=false",
    "maintenance.auto=false",
    "core.logAllRefUpdates=false",
];

/// Inherited variables that would point git at another repository, index or identity.
const SCRUBBED_ENV: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_PREFIX",
    "GIT_CONFIG_PARAMETERS",
    "GIT_CONFIG_COUNT",
    "GIT_AUTHOR_NAME",
    "GIT_AUTHOR_EMAIL",
    "GIT_COMMITTER_NAME",
    "GIT_COMMITTER_EMAIL",
];

/// One git invocation, built up and then run in `dir`.
pub(crate) struct Git {
    dir: PathBuf,
    args: Vec<OsString>,
    index: Option<PathBuf>,
    /// An attempt's worktree: its git dir and work tree named explicitly, attributes read from
    /// its base commit.
    worktree: Option<WorktreeLocation>,
    /// What the command reads on standard input (none: `/dev/null`).
    input: Option<Vec<u8>>,
}

/// Where an attempt's git state is, as recorded when gaffer made the worktree (never as the
/// worktree's own `.git` says: the attempt may have rewritten it).
#[derive(Debug, Clone)]
struct WorktreeLocation {
    git_dir: PathBuf,
    work_tree: PathBuf,
    attributes_from: String,
}

/// What a finished git command printed.
pub(crate) struct GitRun {
    dir: PathBuf,
    args: String,
    status: ExitStatus,
    pub(super) stdout: String,
    stderr: String,
}

impl Git {
    /// A git command that will run in `dir`.
    pub(crate) fn new(dir: &Path) -> Git {
        Git {
            dir: dir.to_path_buf(),
            args: Vec::new(),
            index: None,
            worktree: None,
            input: None,
        }
    }

    /// A git command on an attempt's worktree that nothing in the worktree can steer: the git
    /// dir and work tree are named (the worktree's `.git` file, which the attempt could replace
    /// with a repository of its own, is never read), and `.gitattributes` is read from the
    /// worktree's base commit (`--attr-source`), so an attempt's attributes choose no filter
    /// or driver and hide nothing from a diff.
    pub(crate) fn in_worktree(worktree: &super::Worktree) -> Git {
        Git {
            worktree: Some(WorktreeLocation {
                git_dir: worktree.git_dir.clone(),
                work_tree: worktree.path.clone(),
                attributes_from: worktree.base.clone(),
            }),
            ..Git::new(&worktree.path)
        }
    }

    /// Uses `index` as the index file instead of the repository's own.
    pub(crate) fn with_index(mut self, index: &Path) -> Git {
        self.index = Some(index.to_path_buf());
        self
    }

    /// Gives the command `input` on its standard input (short: instructions such as
    /// `update-ref --stdin`'s, written whole before git's output is read).
    pub(crate) fn input(mut self, input: impl Into<Vec<u8>>) -> Git {
        self.input = Some(input.into());
        self
    }

    /// Appends one argument.
    pub(crate) fn arg(mut self, arg: impl AsRef<OsStr>) -> Git {
        self.args.push(arg.as_ref().to_os_string());
        self
    }

    /// Appends several arguments.
    pub(crate) fn args<I, S>(mut self, args: I) -> Git
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        self
    }

    /// Runs the command and returns its output whatever its exit status.
    pub(crate) fn output(&self) -> Result<GitRun, GitError> {
        let mut cmd = Command::new("git");
        cmd.current_dir(&self.dir);
        for setting in BASE_CONFIG {
            cmd.arg("-c").arg(setting);
        }
        if let Some(location) = &self.worktree {
            let mut git_dir = OsString::from("--git-dir=");
            git_dir.push(&location.git_dir);
            let mut work_tree = OsString::from("--work-tree=");
            work_tree.push(&location.work_tree);
            cmd.arg(git_dir)
                .arg(work_tree)
                .arg(format!("--attr-source={}", location.attributes_from));
        }
        cmd.args(&self.args)
            .env("LC_ALL", "C")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_EDITOR", "true")
            .env("GIT_SEQUENCE_EDITOR", "true")
            .env("GIT_MERGE_AUTOEDIT", "no")
            .stdin(if self.input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            });
        for var in SCRUBBED_ENV {
            cmd.env_remove(var);
        }
        if let Some(index) = &self.index {
            cmd.env("GIT_INDEX_FILE", index);
        }
        let args = self
            .args
            .iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ");
        let failed = |e: std::io::Error| GitError::Io {
            path: self.dir.clone(),
            reason: format!("could not run `git {args}`: {e}"),
        };
        let out = match &self.input {
            None => cmd.output().map_err(failed)?,
            Some(input) => {
                cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
                let mut child = cmd.spawn().map_err(failed)?;
                if let Some(mut stdin) = child.stdin.take() {
                    use std::io::Write;
                    // A git that exits early (refusing its arguments) closes the pipe: its
                    // exit status and error output say why, not the broken pipe.
                    match stdin.write_all(input) {
                        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                            return Err(failed(e));
                        }
                        _ => {}
                    }
                }
                child.wait_with_output().map_err(failed)?
            }
        };
        Ok(GitRun {
            dir: self.dir.clone(),
            args,
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }

    /// Runs the command and returns its standard output; a non-zero exit is an error.
    pub(crate) fn run(&self) -> Result<String, GitError> {
        self.output()?.checked()
    }
}

impl GitRun {
    /// True when git exited with status 0.
    pub(crate) fn ok(&self) -> bool {
        self.status.success()
    }

    /// Git's exit code, when it exited normally.
    pub(crate) fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// The command's failure as an error.
    pub(crate) fn into_error(self) -> GitError {
        GitError::Command {
            dir: self.dir,
            args: self.args,
            status: self.status.to_string(),
            stderr: self.stderr,
        }
    }

    /// The command's failure as an error, with `detail` (what git printed on standard output
    /// about the failure, such as `git push --porcelain`'s status line) after its own error
    /// output.
    pub(crate) fn into_error_with(self, detail: &str) -> GitError {
        let stderr = match (self.stderr.is_empty(), detail.trim()) {
            (_, "") => self.stderr,
            (true, detail) => detail.to_string(),
            (false, detail) => format!("{}; {detail}", self.stderr),
        };
        GitError::Command {
            dir: self.dir,
            args: self.args,
            status: self.status.to_string(),
            stderr,
        }
    }

    /// Standard output, or the error when git failed.
    pub(crate) fn checked(self) -> Result<String, GitError> {
        if self.ok() {
            Ok(self.stdout)
        } else {
            Err(self.into_error())
        }
    }

    /// Standard error, trimmed.
    pub(crate) fn stderr(&self) -> &str {
        &self.stderr
    }
}

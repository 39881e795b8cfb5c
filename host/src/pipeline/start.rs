//! Before a run works: the checks that can refuse it (changing nothing), and recovery from a
//! crashed run (its ledger settled, its tasks requeued, its worktrees removed).

use super::progress::Event;
use super::runner::{Pipeline, RunError};
use crate::git::GitError;
use crate::ledger::format_dollars;
use crate::sandbox::run_command;
use crate::store::{TaskState, owner_is_alive};

/// A text as one shell word.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

impl Pipeline {
    /// Check that the run can start; changes nothing.
    pub async fn preflight(&self) -> Result<(), RunError> {
        if self.models.is_empty() {
            return Err(RunError::NoModels);
        }
        let branch = &self.settings.target_branch;
        if let Some(remote) = &self.settings.remote {
            // Work starts from the remote's branch and lands there: it must exist on the
            // remote. This clone's own branch may be behind, or missing, or checked out with
            // uncommitted changes: a landing only brings it along when that is safe.
            self.repo.check_remote(remote, branch).await?;
        } else {
            match self.repo.branch_tip(branch).await {
                Ok(_) => {}
                Err(GitError::NoSuchBranch { .. }) => {
                    return Err(RunError::NoTargetBranch {
                        branch: branch.clone(),
                        repo: self.repo.root().to_path_buf(),
                    });
                }
                Err(other) => return Err(other.into()),
            }
            if !self.settings.allow_dirty
                && self.repo.checked_out_branch().await?.as_deref() == Some(branch.as_str())
            {
                let changes = self.repo.uncommitted_changes().await?;
                if !changes.is_empty() {
                    return Err(RunError::DirtyTarget {
                        branch: branch.clone(),
                        repo: self.repo.root().to_path_buf(),
                        files: changes.join(", "),
                    });
                }
            }
        }
        if self.settings.agent.command.sandbox.is_some()
            || self.settings.test_limits.sandbox.is_some()
        {
            crate::sandbox::probe().map_err(RunError::SandboxUnavailable)?;
        }
        let caches = [&self.settings.agent.command, &self.settings.test_limits]
            .iter()
            .any(|limits| {
                limits
                    .sandbox
                    .as_ref()
                    .is_some_and(|p| !p.caches.is_empty())
            });
        if caches {
            crate::sandbox::probe_overlay().map_err(RunError::SandboxUnavailable)?;
        }
        if let Some(command) = &self.settings.test_command {
            let program = command.split_whitespace().next().unwrap_or("").to_string();
            let probe = format!("command -v {}", shell_quote(&program));
            // Where the test command will look, but in an empty directory: nothing of the
            // repository is needed to find a program.
            let found = match tempfile::tempdir() {
                Ok(empty) => run_command(empty.path(), &probe, &self.settings.test_limits)
                    .await
                    .map(|out| out.exit_code == Some(0))
                    .unwrap_or(false),
                Err(_) => false,
            };
            if !found {
                return Err(RunError::TestCommandMissing {
                    command: command.clone(),
                    program,
                });
            }
        }
        Ok(())
    }

    /// After a crash: settle the ledger of dead processes, requeue their tasks, remove their
    /// worktrees. Returns what it did, as sentences.
    pub async fn recover(&self) -> Result<Vec<String>, RunError> {
        let mut done = Vec::new();
        let recovery = self.ledger.recover(owner_is_alive).await?;
        if recovery.released + recovery.charged > 0 {
            done.push(format!(
                "ledger: released {} unsent reservation(s); charged {} sent call(s) at their reservation ({})",
                recovery.released,
                recovery.charged,
                format_dollars(recovery.charged_micros)
            ));
        }
        let orphans = self.backlog.requeue_orphans(owner_is_alive).await?;
        if !orphans.is_empty() {
            done.push(format!(
                "requeued {} task(s) of stopped workers: {}",
                orphans.len(),
                orphans.join(", ")
            ));
        }
        let expired = self.backlog.expire().await?;
        if expired > 0 {
            done.push(format!("requeued {expired} task(s) whose lease expired"));
        }
        // Keep only the worktrees of tasks another live process is working on, and the ones
        // parked for the next run.
        let running: Vec<String> = self
            .backlog
            .tasks()
            .await?
            .into_iter()
            .filter(|t| t.state == TaskState::Running)
            .map(|t| t.id)
            .collect();
        let keep = move |name: &str| {
            name.starts_with(crate::git::PARKED_PREFIX)
                || running.iter().any(|id| {
                    name.strip_prefix(id.as_str())
                        .is_some_and(|r| r.starts_with("-a"))
                })
        };
        if self.settings.worktrees_dir.is_dir() {
            let removed = self
                .repo
                .remove_stale_worktrees(&self.settings.worktrees_dir, keep)
                .await?;
            if !removed.is_empty() {
                done.push(format!(
                    "removed {} stale worktree(s): {}",
                    removed.len(),
                    removed.join(", ")
                ));
            }
        }
        for line in &done {
            self.progress.event(Event::Note(line.clone()));
        }
        Ok(done)
    }
}

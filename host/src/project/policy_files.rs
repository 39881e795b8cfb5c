//! The files that steer gaffer itself. A change to them is never the agent's to make, whatever
//! the hooks say: `gaffer.toml` and the plugins it names (the run's policy), gaffer's state
//! (`.gaffer/`), Claude Code's settings and hooks (`.claude/`), and git's metadata, attributes
//! and submodules (`.git`, `.gitattributes`, `.gitmodules`, at any depth: they choose the drivers
//! and filters git runs). An attempt whose change touches one ends as needs-human, with the
//! reason.

use std::path::{Path, PathBuf};

use crate::plugin::types::Diff;

/// The policy files of one run, as paths relative to the repository root.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyFiles {
    named: Vec<String>,
}

impl PolicyFiles {
    /// The configuration file and the files it names (absolute, or relative to the config's
    /// directory); those outside the repository at `root` cannot be in a diff and are left out.
    pub fn new(
        root: &Path,
        config: &Path,
        named: impl IntoIterator<Item = PathBuf>,
    ) -> PolicyFiles {
        let root = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
        let config_dir = config.parent().unwrap_or(Path::new("."));
        let mut files: Vec<String> = std::iter::once(config.to_path_buf())
            .chain(named.into_iter().map(|p| config_dir.join(p)))
            .filter_map(|path| {
                let absolute = match path.canonicalize() {
                    Ok(path) => path,
                    Err(_) if path.is_absolute() => path,
                    Err(_) => root.join(path),
                };
                absolute
                    .strip_prefix(&root)
                    .ok()
                    .map(|p| p.to_string_lossy().into_owned())
            })
            .collect();
        files.sort();
        files.dedup();
        PolicyFiles { named: files }
    }

    /// Why the change may not touch each policy file it touches (empty: none).
    pub fn touched(&self, diff: &Diff) -> Vec<String> {
        let mut reasons = Vec::new();
        for file in &diff.files {
            for path in std::iter::once(&file.path).chain(&file.old_path) {
                if let Some(why) = self.why(path) {
                    reasons.push(format!("`{path}` {why}"));
                }
            }
        }
        reasons.dedup();
        reasons
    }

    /// Why `path` (relative to the repository root, `/`-separated) may not be changed by an
    /// agent, or `None` when it is not a policy file.
    pub fn why(&self, path: &str) -> Option<&'static str> {
        if self.named.iter().any(|n| n == path) {
            return Some("is the run's policy (gaffer.toml or a plugin it names)");
        }
        let parts: Vec<&str> = path.split('/').collect();
        let any = |name: &str| parts.iter().any(|p| p.eq_ignore_ascii_case(name));
        if any(".git") || any(".gitattributes") || any(".gitmodules") {
            return Some("is git's metadata, attributes or submodules (they choose what git runs)");
        }
        if parts
            .first()
            .is_some_and(|p| p.eq_ignore_ascii_case(".gaffer"))
        {
            return Some("is gaffer's state");
        }
        if any(".claude") {
            return Some("is Claude Code's settings and hooks");
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::types::{FileDiff, FileStatus};

    fn diff(paths: &[(&str, Option<&str>)]) -> Diff {
        Diff {
            files: paths
                .iter()
                .map(|(path, old)| FileDiff {
                    path: path.to_string(),
                    old_path: old.map(str::to_string),
                    status: FileStatus::Modified,
                    binary: false,
                    hunks: Vec::new(),
                    added: 1,
                    removed: 0,
                })
                .collect(),
            ..Diff::default()
        }
    }

    #[test]
    fn policy_files_are_named_with_the_reason_and_ordinary_files_pass() {
        let root = tempfile::tempdir().unwrap();
        let policy = PolicyFiles::new(
            root.path(),
            &root.path().join("gaffer.toml"),
            [
                PathBuf::from("plugins/hook.wasm"),
                PathBuf::from("/elsewhere/r.wasm"),
            ],
        );
        assert_eq!(policy.named, ["gaffer.toml", "plugins/hook.wasm"]);
        let reasons = policy.touched(&diff(&[
            ("src/lib.rs", None),
            ("gaffer.toml", None),
            ("new/name.wasm", Some("plugins/hook.wasm")),
            ("vendor/lib/.gitattributes", None),
            ("sub/.GIT/config", None),
            (".gitmodules", None),
            (".gaffer/gaffer.db", None),
            ("tools/.claude/settings.json", None),
            ("docs/gitattributes.md", None),
            ("src/.gaffer/not-state.txt", None),
        ]));
        assert_eq!(
            reasons,
            [
                "`gaffer.toml` is the run's policy (gaffer.toml or a plugin it names)",
                "`plugins/hook.wasm` is the run's policy (gaffer.toml or a plugin it names)",
                "`vendor/lib/.gitattributes` is git's metadata, attributes or submodules (they choose what git runs)",
                "`sub/.GIT/config` is git's metadata, attributes or submodules (they choose what git runs)",
                "`.gitmodules` is git's metadata, attributes or submodules (they choose what git runs)",
                "`.gaffer/gaffer.db` is gaffer's state",
                "`tools/.claude/settings.json` is Claude Code's settings and hooks",
            ]
        );
    }
}

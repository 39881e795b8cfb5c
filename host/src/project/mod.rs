//! The project on disk: its root (a git repository), its `gaffer.toml`, and gaffer's own state
//! directory (`.gaffer/`: the store, the attempts' worktrees, the compiled-plugin cache). Every
//! command that works on a project finds these here, not in paths of its own.

pub mod init;
pub mod policy_files;

use std::path::{Path, PathBuf};

use crate::config::{ConfigError, ConfigFile};
use crate::plugin::cache::CompileCache;
use crate::store::{SqliteStore, StoreError};

/// gaffer's own directory in a project.
pub const STATE_DIR: &str = ".gaffer";
/// The SQLite store (backlog and ledger) in the state directory.
pub const DB_FILE: &str = "gaffer.db";
/// The configuration file `gaffer init` writes and commands read by default.
pub const CONFIG_FILE: &str = "gaffer.toml";

/// Why a project cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    #[error("no {STATE_DIR}/ in {}: run `gaffer init` first", root.display())]
    NotInitialised { root: PathBuf },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{}: {reason}", path.display())]
    Io { path: PathBuf, reason: String },
}

/// A project: a root directory and the configuration file commands use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    root: PathBuf,
    config_path: PathBuf,
}

impl Project {
    /// The project at `root`, configured by `config` (relative to `root` unless absolute).
    /// Paths are made absolute once here, so that every path derived from the project means
    /// the same wherever it is used (git runs in other directories).
    pub fn at(root: impl Into<PathBuf>, config: &Path) -> Project {
        let root = root.into();
        let root = std::path::absolute(&root).unwrap_or(root);
        let config_path = root.join(config);
        Project { root, config_path }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The `gaffer.toml` in use.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// `.gaffer/`.
    pub fn state_dir(&self) -> PathBuf {
        self.root.join(STATE_DIR)
    }

    /// The store's database file.
    pub fn store_path(&self) -> PathBuf {
        self.state_dir().join(DB_FILE)
    }

    /// Where attempts' worktrees go.
    pub fn worktrees_dir(&self) -> PathBuf {
        self.state_dir().join("worktrees")
    }

    /// Where compiled plugins are cached: the user's cache ([`CompileCache::default_dir`]:
    /// `GAFFER_PLUGIN_CACHE` when set, else `~/.cache/gaffer/wasm`), outside the project, where
    /// no agent's command can write (the cache holds native code gaffer loads); only without a
    /// home directory, `.gaffer/plugin-cache`.
    pub fn plugin_cache_dir(&self) -> PathBuf {
        CompileCache::default_dir().unwrap_or_else(|| self.state_dir().join("plugin-cache"))
    }

    /// Read and check the configuration.
    pub fn config(&self) -> Result<ConfigFile, ConfigError> {
        ConfigFile::load(&self.config_path)
    }

    /// Open the project's store, or say how to create it.
    pub fn open_store(&self) -> Result<SqliteStore, ProjectError> {
        let dir = self.state_dir();
        if !dir.is_dir() {
            return Err(ProjectError::NotInitialised {
                root: self.root.clone(),
            });
        }
        Ok(SqliteStore::open(self.store_path())?)
    }

    /// Create the state directory and the store, if missing.
    pub fn create_state(&self) -> Result<SqliteStore, ProjectError> {
        let dir = self.state_dir();
        std::fs::create_dir_all(&dir).map_err(|e| ProjectError::Io {
            path: dir.clone(),
            reason: e.to_string(),
        })?;
        Ok(SqliteStore::open(self.store_path())?)
    }
}

//! The project on disk: its root (a git repository), its `gaffer.toml`, and gaffer's own state
//! directory (`.gaffer/`: the store, the attempts' worktrees, the compiled-plugin cache). Every
//! command that works on a project finds these here, not in paths of its own.

pub mod init;
pub mod policy_files;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::{ConfigError, ConfigFile};
use crate::plugin::cache::CompileCache;
use crate::store::postgres::{ConnectError, StoreUrl};
use crate::store::{PostgresStore, SqliteStore, Store, StoreError};

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
    #[error(transparent)]
    StoreUrl(#[from] ConnectError),
    #[error("{}: [store] cannot be read: {reason}", path.display())]
    StoreSection { path: PathBuf, reason: String },
}

/// Where a project's backlog and ledger live.
#[derive(Debug, Clone)]
pub enum StoreLocation {
    /// The embedded SQLite file (the default: `.gaffer/gaffer.db`).
    Sqlite(PathBuf),
    /// A PostgreSQL database shared by several hosts.
    Postgres(Box<StoreUrl>),
}

/// A project: a root directory and the configuration file commands use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    root: PathBuf,
    config_path: PathBuf,
    /// The store named on the command line (`--db`), over `[store] url`.
    db: Option<String>,
}

impl Project {
    /// The project at `root`, configured by `config` (relative to `root` unless absolute).
    /// Paths are made absolute once here, so that every path derived from the project means
    /// the same wherever it is used (git runs in other directories).
    pub fn at(root: impl Into<PathBuf>, config: &Path) -> Project {
        let root = root.into();
        let root = std::path::absolute(&root).unwrap_or(root);
        let config_path = root.join(config);
        Project {
            root,
            config_path,
            db: None,
        }
    }

    /// The store to use instead of the configured one (`--db`: a `postgres://` URL or a SQLite
    /// file).
    pub fn with_db(mut self, db: Option<String>) -> Project {
        self.db = db.filter(|d| !d.trim().is_empty());
        self
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

    /// Where the store is: `--db`, else `[store] url` in the configuration file, else the
    /// SQLite file in `.gaffer/`. Only the `[store]` table is read here, so that a command
    /// that tolerates a broken file elsewhere (status, report) still finds its store.
    pub fn store_location(&self) -> Result<StoreLocation, ProjectError> {
        if let Some(db) = &self.db {
            return Ok(if StoreUrl::is_postgres(db) {
                StoreLocation::Postgres(Box::new(StoreUrl::from_command_line(db)?))
            } else {
                StoreLocation::Sqlite(PathBuf::from(db))
            });
        }
        let section_error = |reason: String| ProjectError::StoreSection {
            path: self.config_path.clone(),
            reason,
        };
        let text = match std::fs::read_to_string(&self.config_path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(StoreLocation::Sqlite(self.store_path()));
            }
            Err(e) => return Err(section_error(e.to_string())),
        };
        let table: toml::Table = toml::from_str(&text).map_err(|e| section_error(e.to_string()))?;
        let url = match table.get("store").and_then(|s| s.get("url")) {
            None => return Ok(StoreLocation::Sqlite(self.store_path())),
            Some(toml::Value::String(url)) => url,
            Some(_) => return Err(section_error("`url` is not a string".to_string())),
        };
        if !StoreUrl::is_postgres(url) {
            return Err(section_error(format!(
                "`url` must be a postgres:// URL (the SQLite file needs no setting), not `{url}`"
            )));
        }
        Ok(StoreLocation::Postgres(Box::new(StoreUrl::from_config(
            url,
            &self.config_path,
        )?)))
    }

    /// Open the project's store, or say how to create it. A SQLite store needs `gaffer init`
    /// first; a PostgreSQL one is created on first use (each host's clone needs no state of
    /// its own before its first run).
    pub fn open_store(&self) -> Result<Arc<dyn Store>, ProjectError> {
        match self.store_location()? {
            StoreLocation::Postgres(url) => Ok(Arc::new(PostgresStore::open(&url)?)),
            StoreLocation::Sqlite(path) => {
                if self.db.is_none() && !self.state_dir().is_dir() {
                    return Err(ProjectError::NotInitialised {
                        root: self.root.clone(),
                    });
                }
                Ok(Arc::new(SqliteStore::open(path)?))
            }
        }
    }

    /// Create the state directory and the store, if missing.
    pub fn create_state(&self) -> Result<Arc<dyn Store>, ProjectError> {
        let dir = self.state_dir();
        std::fs::create_dir_all(&dir).map_err(|e| ProjectError::Io {
            path: dir.clone(),
            reason: e.to_string(),
        })?;
        self.open_store()
    }
}

//! The SQLite store: WAL, versioned migrations, and every operation in one transaction. Several
//! processes may share one database file; `BEGIN IMMEDIATE` serialises the writers, so a
//! reservation is checked against every cap and inserted atomically.

mod backlog;
mod ledger;
mod schema;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior};

use super::{StoreError, this_process_owner};

/// The store's clock in unix milliseconds, as SQL.
const NOW_MS: &str = "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)";

/// Prepared statements a connection keeps.
const STATEMENT_CACHE: usize = 64;

/// WAL pages after which a commit checkpoints the WAL into the database file (SQLite's default:
/// 1 000). A checkpoint ends in two `fsync`s, which the committing call waits for: a metered
/// call writes some twenty pages (its row, six indexes, its totals, twice), so at the default
/// every fortieth call or so paid for a checkpoint, and on this VM the gateway bench spent
/// about an eighth of its time in `fsync` (230 in 5 s; 11 at this setting). The price is a WAL
/// file of up to about 40 MB between checkpoints; durability is unchanged (WAL with
/// `synchronous = NORMAL`).
const WAL_AUTOCHECKPOINT: i64 = 10_000;

/// How long opening waits for other processes creating the same file.
const OPEN_PATIENCE: Duration = Duration::from_secs(30);

/// Whether SQLite refused for a lock another connection holds.
fn is_busy(error: &rusqlite::Error) -> bool {
    matches!(
        error,
        rusqlite::Error::SqliteFailure(e, _)
            if matches!(e.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// Run `step` until it is not refused for a lock, for at most [`OPEN_PATIENCE`].
fn retry_while_busy<T>(mut step: impl FnMut() -> rusqlite::Result<T>) -> rusqlite::Result<T> {
    let started = std::time::Instant::now();
    loop {
        match step() {
            Err(e) if is_busy(&e) && started.elapsed() < OPEN_PATIENCE => {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

/// A SQLite database file holding the backlog and the ledger.
pub struct SqliteStore {
    path: PathBuf,
    conn: Mutex<Connection>,
    owner: String,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("owner", &self.owner)
            .finish()
    }
}

impl SqliteStore {
    /// Open (creating if needed) the database at `path` and bring its schema up to date.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        let db_err = |reason: String| StoreError::Database {
            path: path.display().to_string(),
            reason,
        };
        let mut conn = Connection::open(&path).map_err(|e| db_err(e.to_string()))?;
        conn.busy_timeout(Duration::from_secs(30))
            .map_err(|e| db_err(e.to_string()))?;
        // Switching a new file to WAL and migrating it take locks that SQLite refuses at once
        // (not after the busy timeout) while another process does the same: hosts starting
        // together on a new file wait their turn instead of failing.
        retry_while_busy(|| conn.pragma_update(None, "journal_mode", "WAL"))
            .map_err(|e| db_err(e.to_string()))?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(|e| db_err(e.to_string()))?;
        // The ledger's statements are prepared once per connection and kept (compiling one
        // costs more than running it): room for all of them, and the backlog's.
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT)
            .map_err(|e| db_err(e.to_string()))?;
        retry_while_busy(|| match schema::migrate(&mut conn) {
            Err(schema::MigrationError::Sqlite(e)) => Err(e),
            Err(schema::MigrationError::Failed { source, .. }) if is_busy(&source) => Err(source),
            other => Ok(other),
        })
        .map_err(|e| db_err(e.to_string()))?
        .map_err(|e| db_err(e.to_string()))?;
        Ok(SqliteStore {
            path,
            conn: Mutex::new(conn),
            owner: this_process_owner(),
        })
    }

    /// Write rows under another owner name (tests of recovery across processes).
    pub fn with_owner(mut self, owner: impl Into<String>) -> SqliteStore {
        self.owner = owner.into();
        self
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn db_err(&self, e: rusqlite::Error) -> StoreError {
        StoreError::Database {
            path: self.path.display().to_string(),
            reason: e.to_string(),
        }
    }

    /// Run `f` in one `BEGIN IMMEDIATE` transaction and commit: every state change goes through
    /// here, so writers from several processes are serialised and nothing is half-done.
    fn write<T>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.with_conn(|conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| self.db_err(e))?;
            let value = f(&tx)?;
            tx.commit().map_err(|e| self.db_err(e))?;
            Ok(value)
        })
    }

    fn with_conn<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut guard = match self.conn.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }
}

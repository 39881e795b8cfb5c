//! The SQLite store: WAL, versioned migrations, and every operation in one transaction. Several
//! processes may share one database file; `BEGIN IMMEDIATE` serialises the writers, so a
//! reservation is checked against every cap and inserted atomically.

mod backlog;
mod ledger;
mod schema;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, Mutex, OnceLock, TryLockError};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior};

use super::blocking::may_wait;
use super::{StoreError, this_process_owner};

/// The store's clock in unix milliseconds, as SQL.
const NOW_MS: &str = "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)";

/// Prepared statements a connection keeps.
const STATEMENT_CACHE: usize = 64;

/// WAL pages after which a commit wakes the store's checkpointer, a thread of its own with its
/// own connection that checkpoints the WAL into the database file while calls go on (SQLite's
/// automatic checkpoint has the same mark). A checkpoint ends in two `fsync`s: run by the
/// committing call, as SQLite does, they stalled it (in the gateway bench one checkpoint of a
/// 40 MB WAL stalled a metered call for 175 ms, an average of some 40 µs per call). The thread
/// is started by the first commit that needs it, so a short-lived process (a hook event) never
/// starts one. Durability is unchanged (WAL with `synchronous = NORMAL`).
const BACKGROUND_CHECKPOINT: i32 = 1_000;

/// WAL pages after which a commit checkpoints the WAL itself, when the checkpointer has not
/// kept up (readers holding old snapshots, another process's checkpoint, a failed connection).
///
/// The connection's WAL hook does what SQLite's automatic checkpoint would, except on a thread
/// that must not wait ([`super::without_waiting`]): there a write is refused once the WAL is
/// this long, and the next write that may wait checkpoints.
const WAL_AUTOCHECKPOINT: i32 = 10_000;

/// How long a write waits for another process's transaction.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// The connection's busy handler: wait for another process's transaction as SQLite's own
/// `busy_timeout` would (sleeps growing from 1 ms to 100 ms, for at most [`BUSY_TIMEOUT`]),
/// except on a thread that must not wait ([`super::without_waiting`]), which is refused at
/// once. `waits` is how many times it was called before for the same lock.
fn wait_while_busy(waits: i32) -> bool {
    const SLEEPS_MS: [u64; 12] = [1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100];
    if !may_wait() {
        return false;
    }
    let waits = usize::try_from(waits).unwrap_or(0);
    let slept_ms: u64 = SLEEPS_MS.iter().take(waits).sum::<u64>()
        + 100 * waits.saturating_sub(SLEEPS_MS.len()) as u64;
    let budget_ms = u64::try_from(BUSY_TIMEOUT.as_millis()).unwrap_or(u64::MAX);
    if slept_ms >= budget_ms {
        return false;
    }
    let next_ms = SLEEPS_MS.get(waits).copied().unwrap_or(100);
    std::thread::sleep(Duration::from_millis(next_ms.min(budget_ms - slept_ms)));
    true
}

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
    /// Pages in the WAL after this connection's last commit (from its WAL hook).
    wal_pages: Arc<AtomicI32>,
    /// The background checkpointer, once a commit has needed it.
    checkpointer: OnceLock<Checkpointer>,
}

/// A thread that checkpoints the WAL when woken (see [`BACKGROUND_CHECKPOINT`]); it ends when
/// its store is dropped.
struct Checkpointer {
    wake: SyncSender<()>,
    thread: JoinHandle<()>,
}

impl Checkpointer {
    fn start(path: &Path) -> Result<Checkpointer, std::io::Error> {
        // One wake-up pending at most: commits while a checkpoint runs ask for the next one.
        let (wake, woken) = std::sync::mpsc::sync_channel::<()>(1);
        let path = path.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("gaffer-sqlite-checkpoint".to_string())
            .spawn(move || Checkpointer::run(&path, &woken))?;
        Ok(Checkpointer { wake, thread })
    }

    fn run(path: &Path, woken: &Receiver<()>) {
        let conn = match Connection::open(path) {
            Ok(conn) => conn,
            Err(e) => {
                // Commits checkpoint themselves past WAL_AUTOCHECKPOINT.
                tracing::debug!("no WAL checkpointer for {}: {e}", path.display());
                return;
            }
        };
        if let Err(e) = conn.pragma_update(None, "synchronous", "NORMAL") {
            tracing::debug!("no WAL checkpointer for {}: {e}", path.display());
            return;
        }
        while woken.recv().is_ok() {
            // PASSIVE: copies what it can without waiting for anyone and never blocks a
            // writer. Frames committed while it ran are taken by a second pass; once every
            // frame is in the database file, the next write starts the WAL from the beginning.
            for _ in 0..2 {
                let done = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
                    Ok((row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
                });
                match done {
                    Ok((in_wal, copied)) if copied >= in_wal => break,
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!("WAL checkpoint of {} deferred: {e}", path.display());
                        break;
                    }
                }
            }
        }
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        if let Some(checkpointer) = self.checkpointer.take() {
            let Checkpointer { wake, thread } = checkpointer;
            // Closing the channel ends the thread after its checkpoint in progress.
            drop(wake);
            let _ = thread.join();
        }
    }
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
        conn.busy_handler(Some(wait_while_busy))
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
        let wal_pages = Arc::new(AtomicI32::new(0));
        let pages_seen = Arc::clone(&wal_pages);
        conn.wal_hook(Some(move |wal: &mut rusqlite::hooks::Wal, pages| {
            pages_seen.store(pages, Ordering::Relaxed);
            if pages >= WAL_AUTOCHECKPOINT && may_wait() {
                // As SQLite's own hook: a passive checkpoint, its failure (another connection
                // checkpointing) no concern of the commit, which has happened.
                if let Err(e) = wal.checkpoint() {
                    tracing::debug!("WAL checkpoint deferred: {e}");
                }
            }
            Ok(())
        }))
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
            wal_pages,
            checkpointer: OnceLock::new(),
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
    ///
    /// On a thread that must not wait ([`super::without_waiting`]) the write is refused
    /// ([`StoreError::WouldWait`], nothing written) when another process holds the write lock
    /// or the WAL is due for a checkpoint.
    fn write<T>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let waits = may_wait();
        if !waits && self.wal_pages.load(Ordering::Relaxed) >= WAL_AUTOCHECKPOINT {
            return Err(StoreError::WouldWait);
        }
        self.with_conn(|conn| {
            // Refused for a lock (the busy handler does not wait on such a thread): nothing
            // was written, as the transaction never began.
            let refused = |e: rusqlite::Error| match e {
                e if !waits && is_busy(&e) => StoreError::WouldWait,
                e => self.db_err(e),
            };
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(refused)?;
            let value = f(&tx)?;
            tx.commit().map_err(|e| self.db_err(e))?;
            Ok(value)
        })
        .inspect(|_| {
            if self.wal_pages.load(Ordering::Relaxed) >= BACKGROUND_CHECKPOINT {
                self.wake_checkpointer();
            }
        })
    }

    /// Ask the checkpointer for a checkpoint, starting it the first time.
    fn wake_checkpointer(&self) {
        if self.checkpointer.get().is_none() {
            match Checkpointer::start(&self.path) {
                Ok(started) => {
                    // Another thread of this process may have started one meanwhile: the
                    // first is kept, this one ends when `started` is dropped here.
                    let _ = self.checkpointer.set(started);
                }
                Err(e) => {
                    tracing::debug!("no WAL checkpointer: {e}");
                    return;
                }
            }
        }
        if let Some(checkpointer) = self.checkpointer.get() {
            // Full: a checkpoint is already asked for.
            let _ = checkpointer.wake.try_send(());
        }
    }

    /// Run `f` on the connection; on a thread that must not wait, refused when another thread
    /// of this process holds it.
    fn with_conn<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut guard = if may_wait() {
            match self.conn.lock() {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            }
        } else {
            match self.conn.try_lock() {
                Ok(guard) => guard,
                Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
                Err(TryLockError::WouldBlock) => return Err(StoreError::WouldWait),
            }
        };
        f(&mut guard)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{CallTry, LedgerStore, MicroUsd, Role, RowScope, Stage, without_waiting};

    fn reserve(store: &SqliteStore) -> Result<crate::store::Reserved, StoreError> {
        let scope = RowScope::attempt("run", "T-1", 1, Stage::Implement, Role::Agent);
        store.try_reserve_sent(&scope, CallTry::FIRST, MicroUsd(1_000), &[])
    }

    /// A checkpoint flushes to disk, which a thread that must not wait does not do: once the
    /// WAL is due for one, such a thread's write is refused, and the next write that may wait
    /// checkpoints (after which the WAL starts again from its beginning).
    #[test]
    fn a_due_checkpoint_is_left_to_a_write_that_may_wait() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("gaffer.db")).unwrap();
        reserve(&store).unwrap();
        let small = store.wal_pages.load(Ordering::Relaxed);
        assert!(0 < small && small < 100, "{small} pages after one write");
        // 45 MB in one commit: some 11 000 pages of 4 KiB, past the checkpoint's mark.
        store
            .write(|tx| {
                tx.execute_batch(
                    "CREATE TABLE filler (b BLOB); INSERT INTO filler VALUES (zeroblob(45000000));",
                )
                .map_err(|e| store.db_err(e))
            })
            .unwrap();
        let due = store.wal_pages.load(Ordering::Relaxed);
        assert!(due >= WAL_AUTOCHECKPOINT, "{due} pages after 45 MB");

        let refused = without_waiting(|| reserve(&store));
        assert!(matches!(refused, Err(StoreError::WouldWait)), "{refused:?}");
        assert_eq!(store.rows().unwrap().len(), 1, "a refused write wrote");

        reserve(&store).unwrap();
        let after = store.wal_pages.load(Ordering::Relaxed);
        assert!(after < 100, "the WAL was not checkpointed: {after} pages");
        without_waiting(|| reserve(&store)).unwrap();
        assert_eq!(store.rows().unwrap().len(), 3);
    }

    /// Past [`BACKGROUND_CHECKPOINT`] pages the store's own thread checkpoints the WAL, so
    /// the WAL starts again from its beginning without any write checkpointing (a write on a
    /// thread that must not wait never does). A store whose WAL stays short starts no thread.
    #[test]
    fn the_wal_is_checkpointed_by_a_thread_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("gaffer.db")).unwrap();
        without_waiting(|| reserve(&store)).unwrap();
        assert!(
            store.checkpointer.get().is_none(),
            "a short WAL started a thread"
        );

        // 6 MB in one commit: some 1,500 pages of 4 KiB, past the mark and short of the one at
        // which a write checkpoints itself.
        without_waiting(|| {
            store.write(|tx| {
                tx.execute_batch(
                    "CREATE TABLE filler (b BLOB); INSERT INTO filler VALUES (zeroblob(6000000));",
                )
                .map_err(|e| store.db_err(e))
            })
        })
        .unwrap();
        let long = store.wal_pages.load(Ordering::Relaxed);
        assert!(
            (BACKGROUND_CHECKPOINT..WAL_AUTOCHECKPOINT).contains(&long),
            "{long} pages after 6 MB"
        );
        assert!(
            store.checkpointer.get().is_some(),
            "no checkpointer started"
        );

        // Only the checkpointer can have copied the WAL; the first write after it has starts
        // the WAL again. (The deadline only keeps a broken checkpointer from hanging the test.)
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            without_waiting(|| reserve(&store)).unwrap();
            let pages = store.wal_pages.load(Ordering::Relaxed);
            if pages < 100 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the WAL was never checkpointed: {pages} pages"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(store);
        // Its thread has ended with it: the database opens and reads as before.
        let again = SqliteStore::open(dir.path().join("gaffer.db")).unwrap();
        assert!(again.rows().unwrap().len() >= 3);
    }
}

//! One store test suite, two backends: each test takes a [`Backend`] and the [`on_both!`] macro
//! runs it against SQLite (a file in a temporary directory) and PostgreSQL (a fresh database on
//! the binary's throwaway server).

use std::sync::Arc;

use gaffer::store::postgres::StoreUrl;
use gaffer::store::{PostgresStore, SqliteStore, Store};

/// Which implementation of the store a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// An empty store of one backend, which tests open as many times as they need connections
/// (several processes' worth).
pub struct TestDb {
    pub backend: Backend,
    /// The SQLite file or the PostgreSQL URL: what `--db` takes.
    pub location: String,
    _dir: Option<tempfile::TempDir>,
}

impl Backend {
    /// A new, empty store.
    pub fn fresh(self) -> TestDb {
        match self {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("a temporary directory");
                let location = dir.path().join("gaffer.db").display().to_string();
                TestDb {
                    backend: self,
                    location,
                    _dir: Some(dir),
                }
            }
            Backend::Postgres => TestDb {
                backend: self,
                location: super::postgres::server().fresh_database(),
                _dir: None,
            },
        }
    }
}

impl TestDb {
    /// A new connection to the store, as a process of its own would open it.
    pub fn open(&self) -> Arc<dyn Store> {
        open_location(&self.location)
    }

    /// A connection that writes rows under `owner`.
    pub fn open_as(&self, owner: &str) -> Arc<dyn Store> {
        match self.backend {
            Backend::Sqlite => Arc::new(
                SqliteStore::open(&self.location)
                    .expect("open the SQLite store")
                    .with_owner(owner),
            ),
            Backend::Postgres => Arc::new(
                PostgresStore::open(&url(&self.location))
                    .expect("open the PostgreSQL store")
                    .with_owner(owner),
            ),
        }
    }
}

/// Open a store by what `--db` would be given: a `postgres://` URL or a SQLite file.
pub fn open_location(location: &str) -> Arc<dyn Store> {
    if StoreUrl::is_postgres(location) {
        Arc::new(PostgresStore::open(&url(location)).expect("open the PostgreSQL store"))
    } else {
        Arc::new(SqliteStore::open(location).expect("open the SQLite store"))
    }
}

fn url(location: &str) -> StoreUrl {
    StoreUrl::from_command_line(location).expect("a PostgreSQL URL")
}

/// Run each named test, `fn name(backend: Backend)`, once per backend: `sqlite::name` and
/// `postgres::name`. Async tests go in a second list after `async:`.
#[allow(unused_macros)]
macro_rules! on_both {
    ($($name:ident),* $(,)? $(; async: $($async_name:ident),* $(,)?)?) => {
        mod sqlite {
            $(#[test] fn $name() { super::$name(crate::support::backends::Backend::Sqlite) })*
            $($(#[tokio::test] async fn $async_name() {
                super::$async_name(crate::support::backends::Backend::Sqlite).await
            })*)?
        }
        mod postgres {
            $(#[test] fn $name() { super::$name(crate::support::backends::Backend::Postgres) })*
            $($(#[tokio::test] async fn $async_name() {
                super::$async_name(crate::support::backends::Backend::Postgres).await
            })*)?
        }
    };
}

//! Throwaway PostgreSQL servers for the tests of gaffer's PostgreSQL store: Debian's server
//! binaries (installed by scripts/setup.sh), a cluster made by `initdb` in a temporary
//! directory, listening on a Unix socket in that directory only (no TCP: nothing leaves the
//! machine and no port is taken), with durability off. One shared server per test binary
//! ([`server`]), a fresh database per test ([`PgServer::fresh_database`]).
//!
//! PostgreSQL refuses to run as root, and CI runs as root: then `initdb` and `postgres` run as
//! `nobody`. The server dies with the test process whatever way that ends: its parent thread
//! stays alive as long as the server does, and the server gets `SIGQUIT` when that thread dies
//! (`PR_SET_PDEATHSIG`, which a SIGKILL of the test process triggers too); a normal exit stops
//! the shared server and removes its directory (`atexit`), and a [`PgServer`] of a test's own
//! does the same when dropped. Directories left by a killed test process are removed by the next
//! start.

#![allow(dead_code)]

use std::ffi::CString;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

/// The port in the socket's name (`.s.PGSQL.5432`); no TCP port is opened.
const PORT: u16 = 5432;
/// The superuser `initdb` creates, and the user of every connection.
const USER: &str = "gaffer";
/// The programs the harness runs.
const PROGRAMS: &[&str] = &["initdb", "postgres", "pg_isready", "createdb", "psql"];
/// Longest wait for a new server to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for a server to exit after `SIGQUIT` (then `SIGKILL`).
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// What the temporary directories' names start with (then the test process's id).
const DIR_PREFIX: &str = "gaffer-pg-";

/// A running PostgreSQL server of the tests, and the temporary directory that holds its
/// cluster (`data/`), its socket and its log (`server.log`).
pub struct PgServer {
    dir: tempfile::TempDir,
    bin_dir: PathBuf,
    /// The password of user `gaffer` on a server that requires one; the harness's own commands
    /// (`createdb`, [`PgServer::psql`]) supply it.
    password: Option<String>,
    pid: libc::pid_t,
    /// Where its parent thread sends the server's exit status; `None` once it has exited or
    /// been stopped (its pid must not be signalled any more).
    exited: Mutex<Option<mpsc::Receiver<io::Result<ExitStatus>>>>,
    next_database: AtomicU64,
}

static SERVER: OnceLock<Result<PgServer, String>> = OnceLock::new();

/// One server per test binary, started on first use.
pub fn server() -> &'static PgServer {
    SERVER
        .get_or_init(|| {
            let server = PgServer::start(None)?;
            // Statics are never dropped: stop it and remove its directory when the process
            // exits normally (the parent-death signal covers every other way).
            extern "C" fn stop_shared_server() {
                if let Some(Ok(server)) = SERVER.get() {
                    server.shutdown();
                }
            }
            // SAFETY: registers a function without arguments that does not unwind.
            unsafe { libc::atexit(stop_shared_server) };
            Ok(server)
        })
        .as_ref()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A server of its own that requires a password (scram-sha-256) for user `gaffer`, for tests of
/// where the password comes from. Stopped and removed when dropped. The URLs of its
/// databases carry no password.
pub fn start_with_password(password: &str) -> PgServer {
    PgServer::start(Some(password)).unwrap_or_else(|e| panic!("{e}"))
}

impl PgServer {
    /// A new empty database on this server; returns its URL for gaffer's `--db`.
    pub fn fresh_database(&self) -> String {
        let n = self.next_database.fetch_add(1, Ordering::Relaxed);
        let name = format!("test_{}_{n}", std::process::id());
        let out = self
            .client("createdb")
            .arg("-w")
            .arg(&name)
            .output()
            .expect("createdb runs");
        assert!(
            out.status.success(),
            "createdb {name} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        self.url(&name)
    }

    /// The URL of database `database` on this server:
    /// `postgres://gaffer@/<database>?host=<socket dir, percent-encoded>&port=5432`, which
    /// tokio-postgres and libpq both read as this server's Unix socket. (The host part is left
    /// empty on purpose: tokio-postgres adds a `host` parameter to the host of the URL's
    /// authority rather than replacing it, and would try TCP `localhost:5432` first.)
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://{USER}@/{}?host={}&port={PORT}",
            percent_encode(database.as_bytes()),
            percent_encode(self.socket_dir().as_os_str().as_bytes())
        )
    }

    /// The directory of the server's Unix socket (`.s.PGSQL.5432`), the `host` of its URLs.
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The path of one of the PostgreSQL programs the server came with, e.g. `bin("psql")`.
    pub fn bin(&self, program: &str) -> PathBuf {
        self.bin_dir.join(program)
    }

    /// Run SQL through psql against `database` (a database's name, or a URL from
    /// [`PgServer::fresh_database`], whose database name is used), returning stdout (for tests
    /// to inspect tables): rows only, one a line, fields separated by `|`. The statements run
    /// one by one, each in a transaction of its own; panics with stderr on failure (the first
    /// statement that fails stops the rest).
    pub fn psql(&self, database: &str, sql: &str) -> String {
        let name = database_name(database);
        let mut child = self
            .client("psql")
            .args([
                "-w",
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-f",
                "-",
                "-d",
            ])
            .arg(&name)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("psql runs");
        let mut stdin = child.stdin.take().expect("psql's stdin");
        let out = std::thread::scope(|scope| {
            // Written from a thread of its own: psql answers as it reads.
            scope.spawn(move || {
                let _ = stdin.write_all(sql.as_bytes());
            });
            child.wait_with_output().expect("psql finishes")
        });
        assert!(
            out.status.success(),
            "psql on {name} failed ({}):\n{}\nSQL:\n{sql}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("psql's output is UTF-8")
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// `program` with the socket, port and user of this server, the server's password if it
    /// has one, and none of the caller's `PG*` variables (nor their `~/.pgpass`).
    fn client(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin(program));
        clear_pg_env(&mut cmd);
        cmd.env("PGPASSFILE", self.dir.path().join("no-pgpass"))
            .arg("-h")
            .arg(self.socket_dir())
            .args(["-p", &PORT.to_string(), "-U", USER])
            .stdin(Stdio::null());
        if let Some(password) = &self.password {
            cmd.env("PGPASSWORD", password);
        }
        cmd
    }

    fn start(password: Option<&str>) -> Result<PgServer, String> {
        let started = Instant::now();
        let bin_dir = bin_dir()?;
        let run_as = unprivileged_user()?;
        let dir = temp_dir(run_as)?;
        let data = dir.path().join("data");

        // The cluster.
        let mut initdb = Command::new(bin_dir.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", USER, "--no-sync", "-E", "UTF8", "--locale=C"]);
        let pwfile = dir.path().join("pwfile");
        match password {
            None => {
                initdb.args(["-A", "trust"]);
            }
            Some(password) => {
                std::fs::write(&pwfile, format!("{password}\n"))
                    .and_then(|()| {
                        std::fs::set_permissions(&pwfile, std::fs::Permissions::from_mode(0o644))
                    })
                    .map_err(|e| format!("cannot write {}: {e}", pwfile.display()))?;
                initdb
                    .args(["-A", "scram-sha-256"])
                    .arg(format!("--pwfile={}", pwfile.display()));
            }
        }
        as_server_user(&mut initdb, dir.path(), run_as);
        let out = initdb
            .output()
            .map_err(|e| format!("cannot run {}: {e}", bin_dir.join("initdb").display()))?;
        let _ = std::fs::remove_file(&pwfile);
        let initdb_took = started.elapsed();
        if !out.status.success() {
            return Err(format!(
                "initdb failed ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }

        // The server, spawned by a thread that lives as long as it does: the parent-death
        // signal is sent when the *thread* that forked the child ends.
        let log_path = dir.path().join("server.log");
        let log = std::fs::File::create(&log_path)
            .map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
        let log_err = log.try_clone().map_err(|e| e.to_string())?;
        let mut postgres = Command::new(bin_dir.join("postgres"));
        postgres
            .arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(dir.path())
            .args(["-p", &PORT.to_string()])
            .args(["-c", "listen_addresses="])
            .args(["-c", "fsync=off"])
            .args(["-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off"])
            .args(["-c", "max_connections=200"])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        as_server_user(&mut postgres, dir.path(), run_as);
        // SAFETY: getpid is async-signal-safe.
        let parent = unsafe { libc::getpid() };
        // SAFETY: the closure calls only async-signal-safe functions and does not allocate. It
        // runs after the uid change, which would otherwise clear the parent-death signal.
        unsafe {
            postgres.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGQUIT as libc::c_ulong) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // The test process died before the signal was armed.
                if libc::getppid() != parent {
                    return Err(io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
        let (pid_tx, pid_rx) = mpsc::channel();
        let (exit_tx, exit_rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("postgres-parent".to_string())
            .spawn(move || match postgres.spawn() {
                Ok(mut child) => {
                    let _ = pid_tx.send(Ok(child.id()));
                    let _ = exit_tx.send(child.wait());
                }
                Err(e) => {
                    let _ = pid_tx.send(Err(e));
                }
            })
            .map_err(|e| format!("cannot start the server's parent thread: {e}"))?;
        let pid = pid_rx
            .recv()
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("cannot run {}: {e}", bin_dir.join("postgres").display()))?;
        let server = PgServer {
            dir,
            bin_dir,
            password: password.map(str::to_string),
            pid: libc::pid_t::try_from(pid).expect("a pid"),
            exited: Mutex::new(Some(exit_rx)),
            next_database: AtomicU64::new(0),
        };

        // Ready when it accepts connections. From here on a failure drops `server`, which
        // stops it and removes its directory.
        loop {
            if let Some(status) = server.exit_status() {
                return Err(format!(
                    "postgres exited ({status}) before accepting connections; its log:\n{}",
                    server.log()
                ));
            }
            let ready = server
                .client("pg_isready")
                .args(["-q", "-d", "postgres"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map_err(|e| format!("cannot run pg_isready: {e}"))?;
            if ready.success() {
                break;
            }
            if started.elapsed() > READY_TIMEOUT {
                return Err(format!(
                    "postgres did not accept connections within {READY_TIMEOUT:?}; its log:\n{}",
                    server.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if std::env::var_os("GAFFER_PG_TIMING").is_some() {
            eprintln!(
                "postgres harness: server in {} accepting connections {} ms after start \
                 (initdb {} ms)",
                server.socket_dir().display(),
                started.elapsed().as_millis(),
                initdb_took.as_millis()
            );
        }
        Ok(server)
    }

    /// The server's exit status if it has exited (once: its parent thread sends it once).
    fn exit_status(&self) -> Option<String> {
        let mut guard = self.exited.lock().unwrap_or_else(|e| e.into_inner());
        let status = match guard.as_ref()?.try_recv() {
            Ok(Ok(status)) => status.to_string(),
            Ok(Err(e)) => e.to_string(),
            Err(mpsc::TryRecvError::Empty) => return None,
            Err(mpsc::TryRecvError::Disconnected) => "unknown status".to_string(),
        };
        // Reaped: its pid must not be signalled any more.
        *guard = None;
        Some(status)
    }

    /// Stop the server (immediate shutdown: `SIGQUIT`, then `SIGKILL`), wait for it to exit and
    /// remove its directory. Idempotent; never panics (it runs at exit).
    fn shutdown(&self) {
        let exited = self.exited.lock().unwrap_or_else(|e| e.into_inner()).take();
        // `None`: stopped already, or exited and reaped.
        if let Some(exited) = exited
            && matches!(exited.try_recv(), Err(mpsc::TryRecvError::Empty))
        {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(self.pid, libc::SIGQUIT) };
            if exited.recv_timeout(STOP_TIMEOUT).is_err() {
                // SAFETY: as above.
                unsafe { libc::kill(self.pid, libc::SIGKILL) };
                let _ = exited.recv_timeout(STOP_TIMEOUT);
            }
        }
        let _ = std::fs::remove_dir_all(self.dir.path());
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The directory of the PostgreSQL programs: `GAFFER_PG_BINDIR` if set, else the newest
/// `/usr/lib/postgresql/<version>/bin` (Debian's layout), else `pg_config --bindir`.
fn bin_dir() -> Result<PathBuf, String> {
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::var_os("GAFFER_PG_BINDIR") {
        candidates.push(PathBuf::from(dir));
    } else {
        let mut versions: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().to_str()?.to_string();
                let version = name
                    .split('.')
                    .map(|part| part.parse().ok())
                    .collect::<Option<Vec<u32>>>()?;
                Some((version, entry.path().join("bin")))
            })
            .collect();
        versions.sort();
        candidates.extend(versions.into_iter().rev().map(|(_, dir)| dir));
        if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
            && out.status.success()
        {
            let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if !candidates.contains(&dir) {
                candidates.push(dir);
            }
        }
    }
    let mut lacking = Vec::new();
    for dir in &candidates {
        let missing: Vec<&str> = PROGRAMS
            .iter()
            .copied()
            .filter(|program| !dir.join(program).is_file())
            .collect();
        if missing.is_empty() {
            return Ok(dir.clone());
        }
        lacking.push(format!("{} lacks {}", dir.display(), missing.join(", ")));
    }
    let looked = if lacking.is_empty() {
        "no /usr/lib/postgresql/<version>/bin, and no pg_config on PATH".to_string()
    } else {
        lacking.join("; ")
    };
    Err(format!(
        "the tests of the PostgreSQL store need PostgreSQL's programs {} in one directory, and \
         found none: {looked}. Run scripts/setup.sh, which installs Debian's postgresql package \
         (or set GAFFER_PG_BINDIR to a directory that has them).",
        PROGRAMS.join(", ")
    ))
}

/// The uid and gid of `nobody` when this process runs as root (PostgreSQL refuses root), else
/// `None`: the server runs as this process's user.
fn unprivileged_user() -> Result<Option<(u32, u32)>, String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let name = CString::new("nobody").expect("no NUL");
    // SAFETY: all-zero is a valid `passwd` (null pointers, zero ids).
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call, and `buf` for its length.
    let rc = unsafe {
        libc::getpwnam_r(
            name.as_ptr(),
            &mut entry,
            buf.as_mut_ptr(),
            buf.len(),
            &mut found,
        )
    };
    if rc != 0 || found.is_null() {
        return Err(
            "running as root, and PostgreSQL refuses root, but there is no user `nobody` to run \
             it as"
                .to_string(),
        );
    }
    Ok(Some((entry.pw_uid, entry.pw_gid)))
}

/// A new temporary directory for a server (named after this process, so that the directories
/// of killed test processes can be told apart and removed), owned by the server's user.
fn temp_dir(run_as: Option<(u32, u32)>) -> Result<tempfile::TempDir, String> {
    // The socket's path must stay under the limit of a Unix socket address (107 bytes), and
    // `nobody` must be able to reach the directory.
    let base = std::env::temp_dir();
    let base = if base.as_os_str().len() <= 64 && (run_as.is_none() || traversable(&base)) {
        base
    } else {
        PathBuf::from("/tmp")
    };
    remove_stale_dirs(&base);
    let dir = tempfile::Builder::new()
        .prefix(&format!("{DIR_PREFIX}{}-", std::process::id()))
        .tempdir_in(&base)
        .map_err(|e| {
            format!(
                "cannot create a temporary directory in {}: {e}",
                base.display()
            )
        })?;
    if let Some((uid, gid)) = run_as {
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
            .map_err(|e| format!("cannot chown {}: {e}", dir.path().display()))?;
    }
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("cannot chmod {}: {e}", dir.path().display()))?;
    Ok(dir)
}

/// Whether every directory from `/` down to `dir` lets others through.
fn traversable(dir: &Path) -> bool {
    dir.ancestors()
        .all(|d| std::fs::metadata(d).is_ok_and(|m| m.permissions().mode() & 0o001 != 0))
}

/// Remove the directories of servers whose test process is gone (killed before it could clean
/// up; its server died with it).
fn remove_stale_dirs(base: &Path) {
    for entry in std::fs::read_dir(base).into_iter().flatten().flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(DIR_PREFIX))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<libc::pid_t>().ok())
        else {
            continue;
        };
        // SAFETY: signal 0 only checks whether the process exists.
        let gone = unsafe { libc::kill(pid, 0) } != 0
            && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        if gone {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Run `cmd` as the server's user, from the server's directory, without the caller's `PG*`
/// variables.
fn as_server_user(cmd: &mut Command, dir: &Path, run_as: Option<(u32, u32)>) {
    clear_pg_env(cmd);
    cmd.current_dir(dir);
    if let Some((uid, gid)) = run_as {
        cmd.uid(uid).gid(gid);
    }
}

fn clear_pg_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        if key.as_bytes().starts_with(b"PG") {
            cmd.env_remove(key);
        }
    }
}

/// The database's name of a URL (`postgres://…/<name>?…`), or `database` itself.
fn database_name(database: &str) -> String {
    let Some(rest) = database
        .strip_prefix("postgres://")
        .or_else(|| database.strip_prefix("postgresql://"))
    else {
        return database.to_string();
    };
    let path = rest.split('?').next().unwrap_or_default();
    let name = path
        .split_once('/')
        .map(|(_, name)| name)
        .unwrap_or_default();
    percent_decode(name)
}

/// Everything but unreserved characters and `/` as `%XX`.
fn percent_encode(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

//! The throwaway PostgreSQL servers of tests/support/postgres.rs, which the tests of the
//! PostgreSQL store run against: the shared server starts and listens on its socket only, fresh
//! databases are distinct and empty, `psql` reads back what it wrote, the password server asks
//! for its password, and no server outlives the test process that started it, whether that
//! process exits or is killed.

mod support;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::postgres;

/// Set (to `exit` or `killed`) for the copy of this test binary that the exit tests start.
const CHILD_ENV: &str = "GAFFER_PG_HARNESS_CHILD";

#[test]
fn the_shared_server_accepts_connections_on_its_socket_only() {
    let server = postgres::server();
    assert!(
        std::ptr::eq(server, postgres::server()),
        "one server per binary"
    );
    assert!(server.socket_dir().join(".s.PGSQL.5432").exists());
    assert_eq!(server.psql("postgres", "SHOW listen_addresses"), "\n");
    assert_eq!(server.psql("postgres", "SELECT current_user"), "gaffer\n");
    assert!(server.bin("psql").is_file());
}

#[test]
fn fresh_databases_are_distinct_and_empty() {
    let server = postgres::server();
    let a = server.fresh_database();
    let b = server.fresh_database();
    assert_ne!(a, b);
    let socket = format!("?host={}&port=5432", server.socket_dir().display());
    for url in [&a, &b] {
        assert!(url.starts_with("postgres://gaffer@/test_"), "{url}");
        assert!(url.ends_with(&socket), "{url}");
        let name = server.psql(url, "SELECT current_database()");
        assert!(
            url.contains(&format!("/{}?", name.trim())),
            "{url} is not {name}"
        );
        let relations = server.psql(
            url,
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')",
        );
        assert_eq!(relations, "0\n", "{url} is not empty");
    }
}

/// gaffer's store reads `--db` with tokio-postgres: the URL names the socket and nothing else.
#[test]
fn tokio_postgres_reads_the_url_as_the_socket_and_connects() {
    use tokio_postgres::config::Host;

    let server = postgres::server();
    let url = server.fresh_database();
    let config: tokio_postgres::Config = url.parse().unwrap();
    assert_eq!(
        config.get_hosts(),
        [Host::Unix(server.socket_dir().to_path_buf())]
    );
    assert_eq!(config.get_ports(), [5432]);
    assert_eq!(config.get_user(), Some("gaffer"));
    let name = url
        .split_once("/test_")
        .unwrap()
        .1
        .split('?')
        .next()
        .unwrap();
    assert_eq!(config.get_dbname(), Some(format!("test_{name}").as_str()));

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let database = runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        let row = client
            .query_one("SELECT current_database()", &[])
            .await
            .unwrap();
        row.get::<_, String>(0)
    });
    assert_eq!(config.get_dbname(), Some(database.as_str()));
}

#[test]
fn psql_creates_a_table_and_reads_it_back() {
    let server = postgres::server();
    let url = server.fresh_database();
    let created = server.psql(
        &url,
        "CREATE TABLE runs (id integer PRIMARY KEY, name text NOT NULL);\n\
         INSERT INTO runs VALUES (1, 'one'), (2, 'two');",
    );
    assert_eq!(created, "");
    assert_eq!(
        server.psql(&url, "SELECT id, name FROM runs ORDER BY id"),
        "1|one\n2|two\n"
    );
    let other = server.fresh_database();
    assert_eq!(
        server.psql(&other, "SELECT to_regclass('runs') IS NULL"),
        "t\n"
    );
}

#[test]
#[should_panic(expected = "relation \"missing\" does not exist")]
fn psql_panics_with_the_error() {
    let server = postgres::server();
    let url = server.fresh_database();
    server.psql(&url, "SELECT * FROM missing");
}

#[test]
fn databases_are_cheap_and_unique_when_made_at_once() {
    let server = postgres::server();
    let started = Instant::now();
    let urls: Vec<String> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..8)
            .map(|_| scope.spawn(|| (0..4).map(|_| server.fresh_database()).collect::<Vec<_>>()))
            .collect();
        threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect()
    });
    let distinct: HashSet<&String> = urls.iter().collect();
    assert_eq!(distinct.len(), 32);
    eprintln!("32 databases from 8 threads in {:?}", started.elapsed());
}

/// `SELECT 1` through psql on `server`'s `postgres` database, with `password` in `PGPASSWORD`
/// and nothing else from the environment that could supply one.
fn psql_select_one(server: &postgres::PgServer, password: Option<&str>) -> Output {
    let mut cmd = Command::new(server.bin("psql"));
    for (key, _) in std::env::vars_os() {
        if key.as_bytes().starts_with(b"PG") {
            cmd.env_remove(key);
        }
    }
    cmd.env("PGPASSFILE", server.socket_dir().join("no-pgpass"))
        .arg("-h")
        .arg(server.socket_dir())
        .args(["-p", "5432", "-U", "gaffer", "-d", "postgres"])
        .args(["-w", "-X", "-A", "-t", "-c", "SELECT 1"])
        .stdin(Stdio::null());
    if let Some(password) = password {
        cmd.env("PGPASSWORD", password);
    }
    cmd.output().expect("psql runs")
}

#[test]
fn the_password_server_refuses_a_connection_without_the_password() {
    let server = postgres::start_with_password("correct horse");
    assert_ne!(server.socket_dir(), postgres::server().socket_dir());

    let without = psql_select_one(&server, None);
    assert!(!without.status.success());
    let stderr = String::from_utf8_lossy(&without.stderr);
    assert!(stderr.contains("no password supplied"), "{stderr}");

    let wrong = psql_select_one(&server, Some("battery staple"));
    assert!(!wrong.status.success());
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        stderr.contains("password authentication failed for user \"gaffer\""),
        "{stderr}"
    );

    let with = psql_select_one(&server, Some("correct horse"));
    assert!(
        with.status.success(),
        "{}",
        String::from_utf8_lossy(&with.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&with.stdout), "1\n");

    // The harness's own commands supply the password; the URLs carry none.
    let url = server.fresh_database();
    assert!(!url.contains("correct"), "{url}");
    assert_eq!(server.psql(&url, "SELECT 1"), "1\n");

    // Dropped: stopped and removed.
    let dir = server.socket_dir().to_path_buf();
    let processes = server_processes(&dir);
    assert!(
        !processes.is_empty(),
        "no server process found for {}",
        dir.display()
    );
    drop(server);
    assert_gone(&processes);
    assert!(!dir.exists(), "{} is left", dir.display());
}

/// Run by the exit tests in a copy of this binary (a no-op otherwise): start the shared
/// server, say where, then return once stdin closes (mode `exit`) or wait to be killed (mode
/// `killed`).
#[test]
fn child_process_of_the_exit_tests() {
    let Ok(mode) = std::env::var(CHILD_ENV) else {
        return;
    };
    let server = postgres::server();
    println!("SOCKET_DIR={}", server.socket_dir().display());
    if mode == "killed" {
        loop {
            std::thread::sleep(Duration::from_secs(60));
        }
    }
    std::io::stdin().lines().for_each(drop);
}

#[test]
fn no_server_outlives_a_test_process_that_exits() {
    let (mut child, dir) = start_child("exit");
    let processes = server_processes(&dir);
    assert!(
        processes.len() >= 2,
        "{processes:?}: the postmaster and its helpers"
    );
    drop(child.stdin.take());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert_gone(&processes);
    assert!(!dir.exists(), "{} is left", dir.display());
}

#[test]
fn no_server_outlives_a_test_process_that_is_killed() {
    let (mut child, dir) = start_child("killed");
    let processes = server_processes(&dir);
    assert!(
        processes.len() >= 2,
        "{processes:?}: the postmaster and its helpers"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert_gone(&processes);
    // Its directory is left behind; the next server started removes it.
    drop(postgres::start_with_password("any"));
    assert!(!dir.exists(), "{} is left", dir.display());
}

/// A copy of this test binary running `child_process_of_the_exit_tests` in `mode`, and the
/// directory of the server it started.
fn start_child(mode: &str) -> (Child, PathBuf) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_process_of_the_exit_tests", "--nocapture"])
        .env(CHILD_ENV, mode)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let dir = loop {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(dir) = line.strip_prefix("SOCKET_DIR=") {
                    break PathBuf::from(dir);
                }
            }
            _ => panic!("the child ({mode}) ended without starting a server"),
        }
    };
    // Keep reading, so that the child never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (child, dir)
}

/// The postmaster whose command line names `dir`, and its children.
fn server_processes(dir: &Path) -> Vec<i32> {
    let needle = dir.as_os_str().as_bytes();
    let mut table = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        let (Ok(cmdline), Ok(stat)) = (
            std::fs::read(entry.path().join("cmdline")),
            std::fs::read_to_string(entry.path().join("stat")),
        ) else {
            continue;
        };
        // `pid (comm) state ppid …`; comm may hold spaces and parentheses.
        let Some(ppid) = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        table.push((pid, ppid, cmdline));
    }
    let postmasters: Vec<i32> = table
        .iter()
        .filter(|(_, _, cmdline)| {
            let program = cmdline.split(|&b| b == 0).next().unwrap_or_default();
            program.ends_with(b"/postgres") && cmdline.windows(needle.len()).any(|w| w == needle)
        })
        .map(|&(pid, _, _)| pid)
        .collect();
    let mut pids = postmasters.clone();
    pids.extend(
        table
            .iter()
            .filter(|(_, ppid, _)| postmasters.contains(ppid))
            .map(|&(pid, _, _)| pid),
    );
    pids
}

/// Whether `pid` is a live process (a zombie is not).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next());
        !matches!(state, Some("Z" | "X") | None)
    })
}

/// Wait (bounded) until none of `pids` is alive.
fn assert_gone(pids: &[i32]) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let left: Vec<i32> = pids.iter().copied().filter(|&p| alive(p)).collect();
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "server processes {left:?} outlived their test process"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

//! The store's per-call work on both backends, in one run so that their ratios compare like
//! with like: SQLite (a file in a temporary directory, WAL, as shipped) against PostgreSQL (a
//! fresh database on the tests' throwaway server: a Unix socket, durability off).
//!
//! - `reservation`: one model call's ledger work as the gateway does it, `try_reserve_sent` (the
//!   reservation written directly as sent, one transaction) + `settle`, checked against caps at
//!   six levels (month, day, run, task, attempt, call: a configuration with its caps on), sized
//!   so that nothing is refused. Beside it, `<backend>-reserve-mark-sent-settle`: the same work
//!   in three steps, `try_reserve` + `mark_sent` + `settle` (what this group measured before
//!   2026-12-02), as the same run's baseline.
//! - `claim`: one task through the backlog, `claim` + `finish` (as merged). The backlog holds
//!   [`BACKLOG`] queued tasks when timing starts and stays near that: every process adds back
//!   what it took, [`TOP_UP`] tasks at a time, untimed. (SQLite's claim sorts every claimable
//!   task to take the oldest, so its cost grows with the queue's length: the figure is for a
//!   queue of this length.)
//! - `reservation_3_processes`, `claim_3_processes`: the same, timed in this process while two
//!   other processes do the same operation on the same database as fast as they can (separate
//!   processes: separate connections and, for SQLite, the file's real locks). They are this
//!   bench binary again, run as load generators (`GAFFER_STORE_BENCH_LOAD`), killed with it.
//!
//! After Criterion, outside it: operations per second across all processes, one and three, for
//! a few seconds each (every process counts what it did), printed as a table.
//!
//! Reading the figures: PostgreSQL's work is round trips to the server's process (nine for a
//! reservation cycle: `BEGIN`, the clock, the locked totals, the insert and the totals' update
//! pipelined, `COMMIT`, then `BEGIN`, the settled row, the totals locked and adjusted in one
//! statement, `COMMIT`; sixteen before; two for a claim cycle), each one waking a process that sleeps. On a
//! virtual machine whose idle vCPUs are halted, that wake-up can cost more than the statement:
//! a single client pays it on every round trip, while busier runs keep the vCPUs awake. Compare
//! the two backends within one run, and look at how busy the machine was.

#[path = "../../tests/support/postgres.rs"]
mod postgres;

use std::cell::Cell;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use criterion::Criterion;
use gaffer::store::postgres::StoreUrl;
use gaffer::store::{
    CallTry, CapLevel, CapLimit, MicroUsd, NewTask, Phase, PostgresStore, Prices, Role, RowScope,
    Settlement, SqliteStore, Stage, Store, TaskState, TokenCounts,
};

/// Set in a load generator's environment: the operation it repeats (`reserve` or `claim`).
const LOAD_OP: &str = "GAFFER_STORE_BENCH_LOAD";
/// The database it works on: a SQLite file or a `postgres://` URL.
const LOAD_DB: &str = "GAFFER_STORE_BENCH_DB";
/// The directory of the files it and the bench talk through (`ready-<n>`, `go`, `stop`,
/// `count-<n>`).
const LOAD_CONTROL: &str = "GAFFER_STORE_BENCH_CONTROL";
/// Which load generator it is (1, 2).
const LOAD_INDEX: &str = "GAFFER_STORE_BENCH_INDEX";

/// How long each throughput count runs.
const THROUGHPUT_WINDOW: Duration = Duration::from_secs(3);
/// Queued tasks when a measurement of claims starts.
const BACKLOG: usize = 1_000;
/// Each process adds back the tasks it claimed, this many at a time (one transaction, not
/// timed), so the queue stays within a few hundred of [`BACKLOG`].
const TOP_UP: usize = 100;
/// A claim's lease: longer than the bench, so no task comes back.
const LEASE: Duration = Duration::from_secs(3_600);

/// The caps of a configuration with all of them on, broadest first (as the ledger passes
/// them), each at $1,000,000,000: nothing is refused.
const GENEROUS: MicroUsd = MicroUsd(1_000_000_000_000_000);
const CAPS: [CapLimit; 6] = [
    CapLimit {
        level: CapLevel::Month,
        limit: GENEROUS,
    },
    CapLimit {
        level: CapLevel::Day,
        limit: GENEROUS,
    },
    CapLimit {
        level: CapLevel::Run,
        limit: GENEROUS,
    },
    CapLimit {
        level: CapLevel::Task,
        limit: GENEROUS,
    },
    CapLimit {
        level: CapLevel::Attempt,
        limit: GENEROUS,
    },
    CapLimit {
        level: CapLevel::Call,
        limit: GENEROUS,
    },
];

/// A call's worst case at $3 / $15 per Mtok: 100 000 tokens in (at the cache-write price),
/// 8 192 out: 497 880 µ$.
const WORST_CASE: MicroUsd = MicroUsd(497_880);
const PRICES: Prices = Prices {
    input: MicroUsd(3_000_000),
    output: MicroUsd(15_000_000),
    cache_read: MicroUsd(300_000),
    cache_write: MicroUsd(3_750_000),
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

const BACKENDS: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// An empty store: a SQLite file in a directory of its own, or a fresh PostgreSQL database.
struct Db {
    location: String,
    _dir: Option<tempfile::TempDir>,
}

impl Db {
    fn fresh(backend: Backend) -> Db {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("a temporary directory");
                let location = dir.path().join("gaffer.db").display().to_string();
                Db {
                    location,
                    _dir: Some(dir),
                }
            }
            Backend::Postgres => Db {
                location: postgres::server().fresh_database(),
                _dir: None,
            },
        }
    }
}

/// A connection of this process to the store at `location`, as `--db` would open it.
fn open(location: &str) -> Arc<dyn Store> {
    if StoreUrl::is_postgres(location) {
        let url = StoreUrl::from_command_line(location).expect("a PostgreSQL URL");
        Arc::new(PostgresStore::open(&url).expect("open the PostgreSQL store"))
    } else {
        Arc::new(SqliteStore::open(location).expect("open the SQLite store"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Reserve,
    Claim,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Reserve => "reserve",
            Op::Claim => "claim",
        }
    }

    fn from_name(name: &str) -> Option<Op> {
        [Op::Reserve, Op::Claim]
            .into_iter()
            .find(|op| op.name() == name)
    }
}

/// One process's worker: its connection, and the run, task and lease owner it works as (each
/// process its own, as separate hosts would be; the day and month totals are shared).
struct Worker {
    store: Arc<dyn Store>,
    scope: RowScope,
    owner: String,
    settlement: Settlement,
    /// Tasks claimed since this worker last topped the backlog up.
    taken: Cell<usize>,
    /// Time spent topping the backlog up (not part of any operation's time).
    topping_up: Cell<Duration>,
    /// Times a claim found the backlog empty (never, unless the top-ups fall behind).
    ran_dry: Cell<u64>,
}

impl Worker {
    fn new(location: &str, name: &str) -> Worker {
        let scope = RowScope {
            phase: Some(Phase::Explore),
            model: "cheap".to_string(),
            ..RowScope::attempt(
                &format!("bench-run-{name}"),
                &format!("T-bench-{name}"),
                1,
                Stage::Implement,
                Role::Agent,
            )
        };
        // 2 000 in, 40 000 cache reads, 1 000 out: 33 000 µ$.
        let settlement = Settlement {
            tokens: TokenCounts {
                input: 2_000,
                output: 1_000,
                cache_read: 40_000,
                cache_write: 0,
            },
            prices: PRICES,
            cost: Some(MicroUsd(33_000)),
            wall_ms: 900,
            outcome: "ok".to_string(),
        };
        Worker {
            store: open(location),
            scope,
            owner: format!("bench-{name}:{}", std::process::id()),
            settlement,
            taken: Cell::new(0),
            topping_up: Cell::new(Duration::ZERO),
            ran_dry: Cell::new(0),
        }
    }

    /// One model call's ledger work.
    fn reserve_cycle(&self) {
        let reserved = self
            .store
            .try_reserve_sent(&self.scope, CallTry::FIRST, WORST_CASE, &CAPS)
            .expect("the reservation fits");
        self.store
            .settle(reserved.id, &self.settlement)
            .expect("settle");
    }

    /// The same call's ledger work in three steps, as callers that reserve before deciding to
    /// send still do it (and the gateway did before 2026-12-02): the same-run baseline of the
    /// folded cycle.
    fn reserve_cycle_unfolded(&self) {
        let reserved = self
            .store
            .try_reserve(&self.scope, CallTry::FIRST, WORST_CASE, &CAPS)
            .expect("the reservation fits");
        self.store.mark_sent(reserved.id).expect("mark sent");
        self.store
            .settle(reserved.id, &self.settlement)
            .expect("settle");
    }

    /// One task claimed and finished; `false` when there was none to claim.
    fn claim_cycle(&self) -> bool {
        match self.store.claim(&self.owner, LEASE).expect("claim") {
            Some(task) => {
                self.store
                    .finish(&task.id, &self.owner, TaskState::Merged, "bench")
                    .expect("finish");
                true
            }
            None => false,
        }
    }

    fn add_tasks(&self, count: usize) {
        let started = Instant::now();
        let tasks: Vec<NewTask> = (0..count)
            .map(|i| NewTask {
                title: format!("Bench task {i}"),
                body: "Do the bench task.".to_string(),
                labels: vec!["bench".to_string()],
                paths: vec!["src/lib.rs".to_string()],
                source: Some("bench".to_string()),
            })
            .collect();
        self.store.add_tasks(&tasks).expect("add tasks");
        self.topping_up
            .set(self.topping_up.get() + started.elapsed());
    }

    /// One operation of `op`, and how long it took. After a claim, untimed, the backlog is
    /// topped up once this worker has taken [`TOP_UP`] tasks from it; a claim that finds it
    /// empty is not counted: the backlog is topped up and the claim made again.
    fn timed(&self, op: Op) -> Duration {
        match op {
            Op::Reserve => {
                let started = Instant::now();
                self.reserve_cycle();
                started.elapsed()
            }
            Op::Claim => loop {
                let started = Instant::now();
                let claimed = self.claim_cycle();
                let took = started.elapsed();
                if claimed {
                    self.taken.set(self.taken.get() + 1);
                    if self.taken.get() >= TOP_UP {
                        self.add_tasks(TOP_UP);
                        self.taken.set(0);
                    }
                    return took;
                }
                self.ran_dry.set(self.ran_dry.get() + 1);
                self.add_tasks(TOP_UP);
            },
        }
    }

    /// Operations of `op`, one after the other, until `done` says so: what this process did.
    fn count(&self, op: Op, done: impl Fn() -> bool) -> Count {
        let started = Instant::now();
        let (topped_up, dry) = (self.topping_up.get(), self.ran_dry.get());
        let mut ops = 0;
        while !done() {
            self.timed(op);
            ops += 1;
        }
        Count {
            ops,
            elapsed: started.elapsed(),
            topping_up: self.topping_up.get() - topped_up,
            ran_dry: self.ran_dry.get() - dry,
        }
    }
}

/// What one process did in a count: operations, over how long, how much of that it spent
/// topping the backlog up, and how often it found the backlog empty.
#[derive(Debug, Clone, Copy)]
struct Count {
    ops: u64,
    elapsed: Duration,
    topping_up: Duration,
    ran_dry: u64,
}

impl Count {
    /// Operations per second of the time not spent topping up.
    fn per_second(&self) -> f64 {
        self.ops as f64 / (self.elapsed - self.topping_up).as_secs_f64()
    }

    fn to_line(self) -> String {
        format!(
            "{} {} {} {}",
            self.ops,
            self.elapsed.as_nanos(),
            self.topping_up.as_nanos(),
            self.ran_dry
        )
    }

    fn from_line(line: &str) -> Count {
        let fields: Vec<u64> = line
            .split_whitespace()
            .map(|f| f.parse().expect("a number"))
            .collect();
        Count {
            ops: fields[0],
            elapsed: Duration::from_nanos(fields[1]),
            topping_up: Duration::from_nanos(fields[2]),
            ran_dry: fields[3],
        }
    }

    fn describe(&self) -> String {
        let mut text = format!(
            "{} in {:.3?} = {:.1}/s",
            self.ops,
            self.elapsed,
            self.per_second()
        );
        if !self.topping_up.is_zero() {
            text.push_str(&format!(" (less {:.3?} topping up)", self.topping_up));
        }
        if self.ran_dry > 0 {
            text.push_str(&format!(", found the backlog empty {} times", self.ran_dry));
        }
        text
    }
}

/// A load generator's life: open the store, say it is ready, wait for `go`, repeat `op` until
/// `stop` appears, write what it did to `count-<n>`.
fn load_generator(op: &str) {
    let op = Op::from_name(op).unwrap_or_else(|| panic!("{LOAD_OP}={op}: no such operation"));
    let location = std::env::var(LOAD_DB).expect("the database of a load generator");
    let control = PathBuf::from(std::env::var_os(LOAD_CONTROL).expect("its control directory"));
    let index = std::env::var(LOAD_INDEX).expect("its index");
    let worker = Worker::new(&location, &format!("load-{index}"));
    std::fs::write(control.join(format!("ready-{index}")), "").expect("say ready");

    // Watch for `go` and `stop` from a thread of its own: one file check a millisecond, not one
    // per operation.
    let (go, stop) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    {
        let (go, stop, control) = (go.clone(), stop.clone(), control.clone());
        std::thread::spawn(move || {
            loop {
                if control.join("go").exists() {
                    go.store(true, Ordering::Release);
                }
                if control.join("stop").exists() {
                    stop.store(true, Ordering::Release);
                    return;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        });
    }
    while !go.load(Ordering::Acquire) && !stop.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let count = worker.count(op, || stop.load(Ordering::Acquire));
    let file = control.join(format!("count-{index}"));
    let temporary = control.join(format!("count-{index}.tmp"));
    std::fs::write(&temporary, count.to_line()).expect("write the count");
    std::fs::rename(&temporary, &file).expect("publish the count");
}

/// Other processes hammering the store, as long as this lives: stopped (`stop` file, then a
/// kill if they do not exit) when finished or dropped, and killed by the kernel if the bench
/// dies first (`PR_SET_PDEATHSIG`).
struct LoadGenerators {
    children: Vec<Child>,
    control: tempfile::TempDir,
}

impl LoadGenerators {
    /// Start `count` load generators repeating `op` on `location`; returns once every one has
    /// opened the store and been told to go.
    fn start(op: Op, location: &str, count: usize) -> LoadGenerators {
        let control = tempfile::tempdir().expect("a control directory");
        let exe = std::env::current_exe().expect("the bench binary");
        let mut load = LoadGenerators {
            children: Vec::new(),
            control,
        };
        // SAFETY: getpid is async-signal-safe.
        let parent = unsafe { libc::getpid() };
        for index in 1..=count {
            let mut cmd = Command::new(&exe);
            cmd.env(LOAD_OP, op.name())
                .env(LOAD_DB, location)
                .env(LOAD_CONTROL, load.control.path())
                .env(LOAD_INDEX, index.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit());
            // SAFETY: the closure calls only async-signal-safe functions and does not allocate.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    // The bench died before the signal was armed.
                    if libc::getppid() != parent {
                        return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                    }
                    Ok(())
                });
            }
            load.children
                .push(cmd.spawn().expect("start a load generator"));
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        for index in 1..=count {
            let ready = load.control.path().join(format!("ready-{index}"));
            while !ready.exists() {
                for child in &mut load.children {
                    if let Ok(Some(status)) = child.try_wait() {
                        panic!("a load generator exited ({status}) before it was ready");
                    }
                }
                assert!(
                    Instant::now() < deadline,
                    "the load generators were not ready within a minute"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        std::fs::write(load.control.path().join("go"), "").expect("tell them to go");
        load
    }

    /// Stop them and return what each did.
    fn finish(mut self) -> Vec<Count> {
        self.stop();
        let mut counts = Vec::new();
        let mut index = 1;
        while let Ok(text) =
            std::fs::read_to_string(self.control.path().join(format!("count-{index}")))
        {
            counts.push(Count::from_line(&text));
            index += 1;
        }
        counts
    }

    /// Ask them to stop, wait for them (killing any that does not exit in time), reap them.
    fn stop(&mut self) {
        let _ = std::fs::write(self.control.path().join("stop"), "");
        let deadline = Instant::now() + Duration::from_secs(30);
        for mut child in self.children.drain(..) {
            loop {
                match child.try_wait() {
                    Ok(Some(status)) => {
                        if !status.success() {
                            eprintln!("a load generator exited with {status}");
                        }
                        break;
                    }
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
    }
}

impl Drop for LoadGenerators {
    fn drop(&mut self) {
        self.stop();
    }
}

fn configure(group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
}

/// `processes` = 1: this process alone; 3: this one timed, two load generators beside it.
fn reservation(c: &mut Criterion, processes: usize) {
    let name = match processes {
        1 => "reservation".to_string(),
        n => format!("reservation_{n}_processes"),
    };
    let mut group = c.benchmark_group(&name);
    configure(&mut group);
    for backend in BACKENDS {
        let db = Db::fresh(backend);
        let worker = Worker::new(&db.location, "main");
        // Its cap totals exist and its connection is warm before timing starts.
        worker.reserve_cycle();
        let load = (processes > 1)
            .then(|| LoadGenerators::start(Op::Reserve, &db.location, processes - 1));
        group.bench_function(backend.name(), |b| b.iter(|| worker.reserve_cycle()));
        if processes == 1 {
            group.bench_function(
                format!("{}-reserve-mark-sent-settle", backend.name()),
                |b| b.iter(|| worker.reserve_cycle_unfolded()),
            );
        }
        if let Some(load) = load {
            report_load(&name, backend, &load.finish());
        }
    }
    group.finish();
}

fn claim(c: &mut Criterion, processes: usize) {
    let name = match processes {
        1 => "claim".to_string(),
        n => format!("claim_{n}_processes"),
    };
    let mut group = c.benchmark_group(&name);
    configure(&mut group);
    for backend in BACKENDS {
        let db = Db::fresh(backend);
        let worker = Worker::new(&db.location, "main");
        worker.add_tasks(BACKLOG);
        let load =
            (processes > 1).then(|| LoadGenerators::start(Op::Claim, &db.location, processes - 1));
        group.bench_function(backend.name(), |b| {
            // Each claim timed on its own, without the top-ups between them.
            b.iter_custom(|iters| (0..iters).map(|_| worker.timed(Op::Claim)).sum())
        });
        if let Some(load) = load {
            report_load(&name, backend, &load.finish());
        }
    }
    group.finish();
}

fn report_load(group: &str, backend: Backend, counts: &[Count]) {
    let each: Vec<String> = counts.iter().map(Count::describe).collect();
    println!(
        "{group}/{}: meanwhile the load generators did {}",
        backend.name(),
        each.join(", ")
    );
}

/// Operations per second of `op` across `processes` processes for [`THROUGHPUT_WINDOW`], on a
/// fresh store; each process's own count too.
fn throughput(backend: Backend, processes: usize, op: Op) -> (f64, Vec<Count>) {
    let db = Db::fresh(backend);
    let worker = Worker::new(&db.location, "main");
    match op {
        Op::Reserve => worker.reserve_cycle(),
        Op::Claim => worker.add_tasks(BACKLOG),
    }
    let load = (processes > 1).then(|| LoadGenerators::start(op, &db.location, processes - 1));
    let started = Instant::now();
    let mut counts = vec![worker.count(op, || started.elapsed() >= THROUGHPUT_WINDOW)];
    if let Some(load) = load {
        let others = load.finish();
        assert_eq!(
            others.len(),
            processes - 1,
            "every load generator reports its count"
        );
        counts.extend(others);
    }
    let total = counts.iter().map(Count::per_second).sum();
    (total, counts)
}

fn throughput_table() {
    struct Line {
        backend: Backend,
        processes: usize,
        reservations: f64,
        claims: f64,
    }
    let mut lines = Vec::new();
    println!(
        "\nThroughput, {} s per count, all processes together:",
        THROUGHPUT_WINDOW.as_secs()
    );
    for backend in BACKENDS {
        for processes in [1, 3] {
            let mut per_op = [0.0; 2];
            for (slot, op) in [Op::Reserve, Op::Claim].into_iter().enumerate() {
                let (total, counts) = throughput(backend, processes, op);
                let each: Vec<String> = counts.iter().map(Count::describe).collect();
                println!(
                    "  {} {} process(es) {}: {}",
                    backend.name(),
                    processes,
                    op.name(),
                    each.join("; ")
                );
                per_op[slot] = total;
            }
            lines.push(Line {
                backend,
                processes,
                reservations: per_op[0],
                claims: per_op[1],
            });
        }
    }
    println!();
    println!(
        "{:<10} {:>9} {:>16} {:>10}",
        "backend", "processes", "reservations/s", "claims/s"
    );
    for line in &lines {
        println!(
            "{:<10} {:>9} {:>16.1} {:>10.1}",
            line.backend.name(),
            line.processes,
            line.reservations,
            line.claims
        );
    }
}

fn main() {
    if let Ok(op) = std::env::var(LOAD_OP) {
        load_generator(&op);
        return;
    }
    let args: Vec<String> = std::env::args().collect();
    let benchmarking = args.iter().any(|a| a == "--bench")
        && !args
            .iter()
            .any(|a| a == "--test" || a == "--list" || a.starts_with("--profile-time"));
    let mut c = Criterion::default().configure_from_args();
    reservation(&mut c, 1);
    claim(&mut c, 1);
    reservation(&mut c, 3);
    claim(&mut c, 3);
    if benchmarking {
        throughput_table();
    }
    c.final_summary();
}

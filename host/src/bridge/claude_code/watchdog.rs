//! The bridge's own deadline, so that a hook or a read stuck where no await returns cannot
//! outlast it: past the limit (counted from the start), exit status 2. The same ticks drive
//! the hooks' epoch clock (their per-call deadlines).
//!
//! A timer signal (`SIGALRM` every [`EpochClock::tick`]) rather than a thread: the bridge is a
//! process per event, and a second thread cost it about half a millisecond (its creation, and
//! the TLB shoot-downs every later `munmap` then needs). Only if the signal cannot be set up
//! does a thread do the same work.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::plugin::engine::{EngineOptions, EpochClock};

/// The process's deadline, read by the signal handler.
struct Deadline {
    started: Instant,
    limit_ms: AtomicU64,
    clock: Arc<EpochClock>,
}

static DEADLINE: OnceLock<Deadline> = OnceLock::new();

/// The running watchdog of this process.
pub(super) struct Watchdog {
    clock: Option<Arc<EpochClock>>,
}

impl Watchdog {
    /// Start the deadline at `limit` from now (once per process: a second start only reads the
    /// first one's clock).
    pub(super) fn start(limit: Duration) -> Watchdog {
        let clock = Arc::new(EpochClock::new(EngineOptions::default().epoch_tick));
        let deadline = Deadline {
            started: Instant::now(),
            limit_ms: AtomicU64::new(millis(limit)),
            clock: Arc::clone(&clock),
        };
        if DEADLINE.set(deadline).is_err() {
            return Watchdog {
                clock: DEADLINE.get().map(|d| Arc::clone(&d.clock)),
            };
        }
        let running = arm_timer_signal(clock.tick()) || start_thread(clock.tick());
        Watchdog {
            clock: running.then_some(clock),
        }
    }

    /// The limit the configuration sets, from the start.
    pub(super) fn set(&self, limit: Duration) {
        if let Some(deadline) = DEADLINE.get() {
            deadline.limit_ms.store(millis(limit), Ordering::Relaxed);
        }
    }

    /// The epoch clock the watchdog ticks, when it runs (else the engine needs a ticker of its
    /// own).
    pub(super) fn clock(&self) -> Option<Arc<EpochClock>> {
        self.clock.clone()
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// One tick: advance the hooks' epoch; past the limit, say so and exit with status 2.
///
/// Runs in a signal handler, so only what is safe there: atomics, the monotonic clock (vDSO),
/// [`EpochClock::advance`], `write` and `_exit`. The message is put together on the stack.
fn tick() {
    let Some(deadline) = DEADLINE.get() else {
        return;
    };
    deadline.clock.advance();
    let limit_ms = deadline.limit_ms.load(Ordering::Relaxed);
    if millis(deadline.started.elapsed()) < limit_ms {
        return;
    }
    let mut message = [0u8; 96];
    let mut len = 0;
    let mut put = |bytes: &[u8]| {
        for &b in bytes {
            if len < message.len() {
                message[len] = b;
                len += 1;
            }
        }
    };
    put(b"gaffer (fail closed): no decision within ");
    let mut digits = [0u8; 20];
    let mut secs = limit_ms / 1000;
    let mut first = digits.len();
    loop {
        first -= 1;
        digits[first] = b'0' + (secs % 10) as u8;
        secs /= 10;
        if secs == 0 || first == 0 {
            break;
        }
    }
    put(&digits[first..]);
    put(b" s; denied\n");
    // SAFETY: `write` and `_exit` are async-signal-safe; the buffer outlives the call.
    unsafe {
        libc::write(2, message.as_ptr().cast(), len);
        libc::_exit(2);
    }
}

extern "C" fn on_timer_signal(_signal: libc::c_int) {
    tick();
}

/// `SIGALRM` every `tick`, handled by [`tick`]. Interrupted system calls restart
/// (`SA_RESTART`); the handler runs on the thread's alternate stack where there is one
/// (`SA_ONSTACK`: a signal may land while WebAssembly runs on a fiber's stack). Returns
/// whether the timer runs.
fn arm_timer_signal(tick: Duration) -> bool {
    let interval = libc::timeval {
        tv_sec: libc::time_t::try_from(tick.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_usec: libc::suseconds_t::from(tick.subsec_micros()),
    };
    let timer = libc::itimerval {
        it_interval: interval,
        it_value: interval,
    };
    // SAFETY: a zeroed `sigaction` is a valid empty one; the handler is an `extern "C"` fn
    // that only does what is safe in a signal handler (see `tick`).
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_timer_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        action.sa_flags = libc::SA_RESTART | libc::SA_ONSTACK;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGALRM, &action, std::ptr::null_mut()) == 0
            && libc::setitimer(libc::ITIMER_REAL, &timer, std::ptr::null_mut()) == 0
    }
}

/// The fallback: a thread that ticks.
fn start_thread(tick_every: Duration) -> bool {
    std::thread::Builder::new()
        .name("gaffer-bridge-timeout".to_string())
        .spawn(move || {
            loop {
                std::thread::sleep(tick_every);
                tick();
            }
        })
        .is_ok()
}

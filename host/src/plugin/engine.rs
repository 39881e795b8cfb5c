//! The process's wasmtime engine: metering configuration, the instance allocator (pooling where
//! the machine allows it), and the epoch ticker that gives calls a wall-clock deadline.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::error::PluginError;
use super::state::{
    MAX_CORE_INSTANCES_PER_COMPONENT, MAX_MEMORIES_PER_COMPONENT, MAX_TABLES_PER_COMPONENT,
};

/// Which instance allocator to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AllocatorChoice {
    /// Pooling where the machine supports it, else on-demand (the default).
    Auto,
    /// Pooling or fail.
    Pooling,
    /// Allocate each instance's memory on demand.
    OnDemand,
}

/// The allocator actually in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AllocatorKind {
    Pooling,
    OnDemand,
}

/// Which meters are compiled into plugin code.
///
/// gaffer ships with both. Fuel is not optional: it is the plugin budget itself (the meter
/// that mirrors token budgets) and it drives the async yield every
/// [`EngineOptions::fuel_yield_interval`] instructions that keeps a spinning plugin from
/// starving other tasks. Epoch interruption is the deadline that holds whatever the plugin
/// does: a deadline checked only where fuel yields never fires while the plugin spends its
/// time in host calls that burn no fuel (a hook passing a 32 MiB string to `log` in a loop
/// ran 752 s against a 2 s deadline), and WASI's imports (random bytes, stream writes) are
/// host calls too, so charging fuel in gaffer's own imports would not close the class. The
/// epoch check sits at every loop header and function entry of the plugin's code, so the
/// call traps within a tick of its deadline once the host call in progress returns.
///
/// The price, on a compute-heavy and a call-heavy guest (the `metering` group of
/// `benches/plugin_runtime.rs`, 2-core machine, criterion means, earlier run):
///
/// | guest                 | unmetered | fuel     | epoch    | fuel + epoch |
/// |-----------------------|-----------|----------|----------|--------------|
/// | serial loop (2M)      | 2.957 ms  | 3.329 ms | 3.620 ms | 3.289 ms     |
/// | recursive fib(25)     | 374.6 µs  | 643.3 µs | 728.0 µs | 1176.6 µs    |
///
/// and in a later run on a busier machine (2026-12-01): serial loop 2.5276 / 2.7386 / 2.8304 /
/// 4.5665 ms, fib(25) 399.14 / 437.67 / 477.60 / 736.72 µs. On a real call (the `route` group,
/// same run, cost-tier, pooling, fresh sandbox) the epoch costs 29.067 µs against 20.930 µs with
/// fuel alone: +8.1 µs, which the deadline is worth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metering {
    pub fuel: bool,
    pub epoch: bool,
}

impl Metering {
    /// Fuel and epoch on: the shipped configuration (see above).
    pub const SHIPPED: Metering = Metering {
        fuel: true,
        epoch: true,
    };
}

/// Options of the runtime as a whole (per-plugin limits live in [`super::spec::Limits`]).
#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub allocator: AllocatorChoice,
    pub metering: Metering,
    /// The largest memory cap any plugin may have; the pooling allocator reserves slots this big.
    pub max_memory_bytes: u64,
    /// Component instances that can be live at once with the pooling allocator.
    pub pool_instances: u32,
    /// Epoch tick: the granularity of deadlines.
    pub epoch_tick: Duration,
    /// A computing plugin yields to the async runtime after this much fuel, so that one spinning
    /// plugin cannot stop other tasks on the same runtime thread (see the starvation test).
    pub fuel_yield_interval: u64,
    /// Whether the engine carries the compiler or compiles only on a cache miss.
    pub compiler: CompilerChoice,
    /// Who advances the epoch: a thread of the engine's own (`None`, ticking every
    /// [`EngineOptions::epoch_tick`]), or a thread the process already has.
    pub epoch_clock: Option<Arc<EpochClock>>,
}

/// An epoch clock driven from outside the engine, for a process that lives for one event and
/// would otherwise start a thread just for the ticks (the hook bridge drives it from a timer
/// signal). The driver must call [`EpochClock::advance`] at least every [`EpochClock::tick`];
/// deadlines are counted in ticks of it.
///
/// It keeps the engines built on it alive for as long as it lives (a clock lives as long as
/// the process that drives it), so that [`EpochClock::advance`] never drops one and is safe in
/// a signal handler.
pub struct EpochClock {
    tick: Duration,
    engines: Mutex<Vec<Engine>>,
}

impl std::fmt::Debug for EpochClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EpochClock")
            .field("tick", &self.tick)
            .finish_non_exhaustive()
    }
}

impl EpochClock {
    /// A clock that its driver advances every `tick`.
    pub fn new(tick: Duration) -> EpochClock {
        EpochClock {
            tick,
            engines: Mutex::new(Vec::new()),
        }
    }

    /// How often the driver advances it.
    pub fn tick(&self) -> Duration {
        self.tick
    }

    /// Advance the epoch of every engine built on this clock.
    ///
    /// Safe in a signal handler: no allocation, no system call, no lock waited for (while an
    /// engine is being registered, this tick is skipped: a deadline comes at most one tick
    /// late), and `Engine::increment_epoch` is an atomic add.
    pub fn advance(&self) {
        let engines = match self.engines.try_lock() {
            Ok(guard) => guard,
            Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return,
        };
        for engine in engines.iter() {
            engine.increment_epoch();
        }
    }

    fn register(&self, engine: &Engine) {
        let mut engines = match self.engines.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        engines.push(engine.clone());
    }
}

/// Whether the engine is built with Cranelift.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompilerChoice {
    /// The engine compiles (the default: a long-lived process loads many plugins).
    InEngine,
    /// The engine runs precompiled code only, from the disk cache; a miss builds a compiling
    /// engine of the same configuration just for that component (see
    /// [`EngineHandle::compiling_config`]). For a process that lives for one event (the hook
    /// bridge), where building Cranelift's target description is a noticeable part of the run
    /// and a miss happens once per component.
    OnCacheMiss,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            allocator: AllocatorChoice::Auto,
            metering: Metering::SHIPPED,
            max_memory_bytes: 512 * 1024 * 1024,
            pool_instances: 64,
            // Deadlines are hundreds of milliseconds or more; a coarser tick wakes the ticker
            // thread less often in a long run.
            epoch_tick: Duration::from_millis(5),
            fuel_yield_interval: 10_000_000,
            compiler: CompilerChoice::InEngine,
            epoch_clock: None,
        }
    }
}

/// Memory of a pooled slot kept resident between calls (see `pooling_config`).
const KEEP_RESIDENT_BYTES: usize = 16 * 1024 * 1024;

/// Wasm stack per call; deep recursion past it traps as a stack overflow.
const MAX_WASM_STACK: usize = 1024 * 1024;
/// Native stack of the fiber an async call runs on; must exceed the wasm stack.
const ASYNC_STACK: usize = 2 * 1024 * 1024 + MAX_WASM_STACK;

fn base_config(options: &EngineOptions) -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.consume_fuel(options.metering.fuel);
    config.epoch_interruption(options.metering.epoch);
    config.wasm_backtrace_max_frames(std::num::NonZeroUsize::new(64));
    config.max_wasm_stack(MAX_WASM_STACK);
    config.async_stack_size(ASYNC_STACK);
    config
}

fn pooling_config(options: &EngineOptions) -> PoolingAllocationConfig {
    let n = options.pool_instances.max(1);
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(n)
        // A component made by wasm-component-ld holds a few core instances (the program, the
        // WASI adapter, shims); Python and JavaScript guests hold more.
        .total_core_instances(n.saturating_mul(16))
        .total_memories(n.saturating_mul(MAX_MEMORIES_PER_COMPONENT))
        .total_tables(n.saturating_mul(MAX_TABLES_PER_COMPONENT / 2))
        .total_stacks(n)
        .max_memories_per_component(MAX_MEMORIES_PER_COMPONENT)
        // The same bounds per module as per component: a multi-memory module is refused by
        // neither allocator unless the component as a whole has too many.
        .max_memories_per_module(MAX_MEMORIES_PER_COMPONENT)
        .max_tables_per_module(MAX_TABLES_PER_COMPONENT)
        .max_tables_per_component(MAX_TABLES_PER_COMPONENT)
        .max_core_instances_per_component(MAX_CORE_INSTANCES_PER_COMPONENT)
        .max_component_instance_size(1 << 20)
        .max_core_instance_size(1 << 20)
        .max_memory_size(usize::try_from(options.max_memory_bytes).unwrap_or(usize::MAX));
    // Reset a freed slot by rewriting only its dirty pages (PAGEMAP_SCAN, Linux 6.7+; off
    // where unsupported) and keep the memory resident, instead of madvise: on this 2-core
    // machine madvise's TLB-shootdown IPIs and the page faults on reuse were most of a fresh
    // call (cost-tier `plugin bench`, pooling: 68.7 µs median as wasmtime ships, 55.5 µs
    // keeping 2 MiB resident, 26.4 µs with the dirty-page scan and 16 MiB resident). Only
    // pages a plugin touched stay resident, at most 16 MiB per slot.
    pool.pagemap_scan(wasmtime::Enabled::Auto)
        .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
        .table_keep_resident(1 << 20);
    pool
}

/// The engine and what came of the allocator probe.
pub struct EngineHandle {
    pub engine: Engine,
    pub allocator: AllocatorKind,
    /// Why pooling is not in use, when it was tried and refused.
    pub pooling_refused: Option<String>,
    /// With [`CompilerChoice::OnCacheMiss`]: the configuration a compiling engine is built from
    /// when a component is not in the cache.
    compiling_config: Option<Config>,
    /// The compiled-code compatibility key (see [`EngineHandle::compatibility_key`]).
    compatibility_key: String,
    ticker: Option<Ticker>,
}

/// What advances an engine's epoch.
enum Ticker {
    Own(EpochTicker),
    Shared(Arc<EpochClock>),
}

impl EngineHandle {
    /// Build the engine. With [`AllocatorChoice::Auto`], pooling is probed (it reserves its
    /// address space up front, which restricted machines refuse) and on-demand is the fallback.
    pub fn new(options: &EngineOptions) -> Result<EngineHandle, PluginError> {
        let host_err = |reason: String| PluginError::Host {
            plugin: "-".to_string(),
            function: "engine",
            reason,
        };
        let loads_only = options.compiler == CompilerChoice::OnCacheMiss;
        let base = || {
            let mut config = base_config(options);
            if loads_only {
                config.enable_compiler(false);
            }
            config
        };
        let try_pooling = || -> Result<Engine, String> {
            let mut config = base();
            config
                .allocation_strategy(InstanceAllocationStrategy::Pooling(pooling_config(options)));
            Engine::new(&config).map_err(|e| format!("{e:#}"))
        };
        let on_demand = || -> Result<Engine, PluginError> {
            let mut config = base();
            config.allocation_strategy(InstanceAllocationStrategy::OnDemand);
            Engine::new(&config).map_err(|e| host_err(format!("{e:#}")))
        };
        let (engine, allocator, pooling_refused) = match options.allocator {
            AllocatorChoice::OnDemand => (on_demand()?, AllocatorKind::OnDemand, None),
            AllocatorChoice::Pooling => (
                try_pooling().map_err(|e| host_err(format!("pooling allocator refused: {e}")))?,
                AllocatorKind::Pooling,
                None,
            ),
            AllocatorChoice::Auto => match try_pooling() {
                Ok(engine) => (engine, AllocatorKind::Pooling, None),
                Err(reason) => (on_demand()?, AllocatorKind::OnDemand, Some(reason)),
            },
        };
        match (&allocator, &pooling_refused) {
            (AllocatorKind::Pooling, _) => tracing::info!(
                instances = options.pool_instances,
                "plugin runtime: pooling instance allocator"
            ),
            (AllocatorKind::OnDemand, Some(reason)) => tracing::info!(
                %reason,
                "plugin runtime: on-demand instance allocator (pooling refused by this machine)"
            ),
            (AllocatorKind::OnDemand, None) => {
                tracing::info!("plugin runtime: on-demand instance allocator (as configured)")
            }
        }
        // The compiling side of a loading-only engine: on-demand instances (it never
        // instantiates), the rest as configured.
        let compiling_config = loads_only.then(|| {
            let mut config = base_config(options);
            config.allocation_strategy(InstanceAllocationStrategy::OnDemand);
            config
        });
        let compatibility_key = if loads_only {
            compatibility_key(&engine)
        } else {
            // The key of this configuration's loading-only twin, so that an engine with the
            // compiler and one without share the cache (see `compatibility_key`).
            let mut config = base_config(options);
            config
                .enable_compiler(false)
                .allocation_strategy(InstanceAllocationStrategy::OnDemand);
            compatibility_key(&Engine::new(&config).map_err(|e| host_err(format!("{e:#}")))?)
        };
        let ticker = options.metering.epoch.then(|| match &options.epoch_clock {
            Some(clock) => {
                clock.register(&engine);
                Ticker::Shared(Arc::clone(clock))
            }
            None => Ticker::Own(EpochTicker::start(&engine, options.epoch_tick)),
        });
        Ok(EngineHandle {
            engine,
            allocator,
            pooling_refused,
            compiling_config,
            compatibility_key,
            ticker,
        })
    }

    /// The key of the code this engine can run, for the disk cache's file names: a hash of what
    /// wasmtime checks an artefact against besides the compiler's flags (tunables — fuel,
    /// epoch, memory layout —, wasm features, wasmtime's version), the same for an engine with
    /// the compiler and one without, so that the hook bridge's loading-only engine finds what
    /// `gaffer` compiled. The compiler's flags (target, CPU features) are left out of the key
    /// because an engine without a compiler cannot know them; they are the host's own for every
    /// gaffer engine, and wasmtime still checks them against the host on every load (an
    /// artefact for other flags is refused and recompiled).
    pub fn compatibility_key(&self) -> &str {
        &self.compatibility_key
    }

    /// The configuration of an engine that compiles what this engine runs: `None` when this
    /// engine compiles itself; with [`CompilerChoice::OnCacheMiss`], this engine's
    /// configuration with Cranelift, whose serialized output this engine loads.
    pub fn compiling_config(&self) -> Option<&Config> {
        self.compiling_config.as_ref()
    }

    /// The epoch tick, when epoch interruption is on.
    pub fn epoch_tick(&self) -> Option<Duration> {
        self.ticker.as_ref().map(|t| match t {
            Ticker::Own(own) => own.tick,
            Ticker::Shared(clock) => clock.tick,
        })
    }
}

/// Hex of SHA-256 over `engine`'s `precompile_compatibility_hash` (first 8 bytes).
fn compatibility_key(engine: &Engine) -> String {
    use sha2::{Digest, Sha256};
    use std::hash::{Hash, Hasher};
    /// `std::hash::Hasher` over SHA-256, to turn the engine's `impl Hash` into a stable key.
    struct Sha256Hasher(Sha256);
    impl Hasher for Sha256Hasher {
        fn finish(&self) -> u64 {
            let digest = self.0.clone().finalize();
            let mut first = [0u8; 8];
            first.copy_from_slice(&digest[..8]);
            u64::from_le_bytes(first)
        }
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
    }
    let mut hasher = Sha256Hasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hex::encode(&hasher.0.finalize()[..8])
}

/// A thread that advances the engine's epoch every tick, so that deadlines can be counted in
/// ticks. It holds only a weak reference and stops when the handle is dropped.
struct EpochTicker {
    tick: Duration,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: &Engine, tick: Duration) -> EpochTicker {
        let stop = Arc::new(AtomicBool::new(false));
        let weak = engine.weak();
        let stop_flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("gaffer-epoch".to_string())
            .spawn(move || {
                while !stop_flag.load(Ordering::Relaxed) {
                    // Parked rather than asleep, so that dropping the engine wakes it at once
                    // instead of waiting out a tick (a hook bridge process ends right after).
                    std::thread::park_timeout(tick);
                    if stop_flag.load(Ordering::Relaxed) {
                        break;
                    }
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .ok();
        EpochTicker { tick, stop, thread }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A loop under a deadline of two ticks of a shared clock stops once its driver has advanced
    /// it twice (with no ticker thread of the engine's own), and not by running out of fuel.
    #[tokio::test]
    async fn an_engine_on_a_shared_clock_stops_a_loop_when_its_driver_ticks() {
        let tick = Duration::from_millis(5);
        let clock = Arc::new(EpochClock::new(tick));
        let handle = EngineHandle::new(&EngineOptions {
            allocator: AllocatorChoice::OnDemand,
            epoch_clock: Some(Arc::clone(&clock)),
            ..EngineOptions::default()
        })
        .expect("engine");
        assert_eq!(handle.epoch_tick(), Some(tick));
        let wasm = wat::parse_str(r#"(module (func (export "spin") (loop br 0)))"#).expect("wat");
        let module = wasmtime::Module::new(&handle.engine, &wasm).expect("module");
        let mut store = wasmtime::Store::new(&handle.engine, ());
        // Fuel enough for seconds of spinning: the deadline must come first.
        store.set_fuel(20_000_000_000).expect("fuel");
        store.set_epoch_deadline(2);
        store.epoch_deadline_trap();
        let instance = wasmtime::Instance::new_async(&mut store, &module, &[])
            .await
            .expect("instance");
        let spin = instance
            .get_typed_func::<(), ()>(&mut store, "spin")
            .expect("export");
        let stop = Arc::new(AtomicBool::new(false));
        let driver = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    clock.advance();
                }
            })
        };
        let error = spin.call_async(&mut store, ()).await.expect_err("stopped");
        stop.store(true, Ordering::Relaxed);
        driver.join().expect("driver");
        assert_eq!(
            error.downcast_ref::<wasmtime::Trap>(),
            Some(&wasmtime::Trap::Interrupt),
            "{error:#}"
        );
    }
}

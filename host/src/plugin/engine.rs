//! The process's wasmtime engine: metering configuration, the instance allocator (pooling where
//! the machine allows it), and the epoch ticker that gives calls a wall-clock deadline.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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
    ticker: Option<EpochTicker>,
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
        let try_pooling = || -> Result<Engine, String> {
            let mut config = base_config(options);
            config
                .allocation_strategy(InstanceAllocationStrategy::Pooling(pooling_config(options)));
            Engine::new(&config).map_err(|e| format!("{e:#}"))
        };
        let on_demand = || -> Result<Engine, PluginError> {
            let mut config = base_config(options);
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
        let ticker = options
            .metering
            .epoch
            .then(|| EpochTicker::start(&engine, options.epoch_tick));
        Ok(EngineHandle {
            engine,
            allocator,
            pooling_refused,
            ticker,
        })
    }

    /// The epoch tick, when epoch interruption is on.
    pub fn epoch_tick(&self) -> Option<Duration> {
        self.ticker.as_ref().map(|t| t.tick)
    }
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

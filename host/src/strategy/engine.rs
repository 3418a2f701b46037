//! The one wasmtime engine: pooling allocator with copy-on-write memory
//! images, epoch interruption ticked by one background thread, and a linker
//! that offers strategies the host imports and a WASI with no capabilities.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::bindings::{Strategy, StrategyPre};
use super::limits::MAX_MEMORY_BYTES;
use super::run::RunState;

/// How often the epoch advances; guest CPU time is counted in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);
/// Strategy instances that may be alive at once (one per in-flight composite request).
const POOL_INSTANCES: u32 = 256;

/// A compiled, pre-instantiated strategy component.
pub struct CompiledStrategy {
    /// Where it came from: `builtin:<name>` or a file path.
    pub source: String,
    /// Content hash (FNV-1a 64), for status pages and caches.
    pub hash: String,
    pub(super) pre: StrategyPre<RunState>,
}

/// The engine and linker every strategy shares.
pub struct StrategyEngine {
    pub(super) engine: Engine,
    linker: Linker<RunState>,
}

static SHARED: OnceLock<Result<Arc<StrategyEngine>, String>> = OnceLock::new();

impl StrategyEngine {
    /// The process-wide engine, created on first use.
    pub fn shared() -> Result<Arc<StrategyEngine>, String> {
        SHARED.get_or_init(|| Self::new().map(Arc::new)).clone()
    }

    fn new() -> Result<Self, String> {
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(POOL_INSTANCES)
            .total_core_instances(POOL_INSTANCES * 16)
            .total_memories(POOL_INSTANCES * 2)
            .total_tables(POOL_INSTANCES * 16)
            .total_stacks(POOL_INSTANCES)
            .max_core_instances_per_component(32)
            .max_memories_per_component(4)
            .max_tables_per_component(32)
            .max_memory_size(MAX_MEMORY_BYTES)
            .max_component_instance_size(1 << 20)
            .max_core_instance_size(1 << 20)
            .table_elements(100_000)
            .linear_memory_keep_resident(1 << 20);
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .memory_init_cow(true)
            .memory_reservation(MAX_MEMORY_BYTES as u64)
            .memory_guard_size(32 << 20)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine =
            Engine::new(&config).map_err(|e| format!("cannot create the wasm engine: {e:#}"))?;

        let mut linker: Linker<RunState> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| format!("linking WASI: {e:#}"))?;
        Strategy::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)
            .map_err(|e| format!("linking host imports: {e:#}"))?;

        let ticker = engine.weak();
        std::thread::Builder::new()
            .name("conclave-epoch".into())
            .spawn(move || {
                while let Some(engine) = ticker.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .map_err(|e| format!("cannot start the epoch thread: {e}"))?;
        Ok(Self { engine, linker })
    }

    /// Compiles and pre-instantiates a component. CPU-heavy for large
    /// components: call it off the request path.
    pub fn compile(&self, source: &str, bytes: &[u8]) -> Result<CompiledStrategy, String> {
        if !bytes.starts_with(b"\0asm") {
            return Err(format!("{source} is not a WebAssembly file"));
        }
        let component = Component::new(&self.engine, bytes)
            .map_err(|e| format!("{source} is not a valid WebAssembly component: {e:#}"))?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| format!("{source} needs imports conclave does not offer: {e:#}"))?;
        let pre = StrategyPre::new(pre).map_err(|e| {
            format!("{source} does not implement the conclave:strategy world: {e:#}")
        })?;
        Ok(CompiledStrategy {
            source: source.to_owned(),
            hash: content_hash(bytes),
            pre,
        })
    }
}

/// FNV-1a 64 of `bytes`, as hex.
pub fn content_hash(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

//! The one wasmtime engine: pooling allocator with copy-on-write memory
//! images, epoch interruption ticked by one background thread while a
//! strategy runs ([`EpochClock`]), a linker
//! that offers strategies the host imports and a WASI with no capabilities,
//! and (when configured) the on-disk compile cache. There is no global:
//! `serve` and `check` make one [`SharedEngine`] and pass it down.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Instant, SystemTime};

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::bindings::{Strategy, StrategyPre};
use super::epoch::EpochClock;
use super::limits::MAX_MEMORY_BYTES;
use super::run::{CompiledStrategy, RunState};
use crate::byte_budget::ByteBudget;
use crate::compile_cache::{CompileCache, Vetted};

/// Strategy instances that may be alive at once (one per in-flight composite request).
pub const POOL_INSTANCES: u32 = 256;

/// What all running guests may hold together: 4 GiB, 64 runs at the
/// default `memory_mb` (most hold far less than their limit). Each run is
/// bounded by its profile's `memory_mb`, but as many runs as the instance
/// pool holds may run at once; growth past this is refused (the run fails
/// with a 503 the client may retry).
pub const GUEST_MEMORY_TOTAL_BYTES: usize = 4 << 30;

/// The engine and linker every strategy shares.
pub struct StrategyEngine {
    pub(super) engine: Engine,
    linker: Linker<RunState>,
    cache: Option<CompileCache>,
    /// Advances the epoch while a strategy runs.
    clock: Arc<EpochClock>,
    /// The memory every running guest holds together.
    memory: Arc<ByteBudget>,
    /// One compilation at a time: they are CPU-bound anyway, and it lets the
    /// cache's hit counter tell which compilation it served.
    compiling: Mutex<()>,
}

/// The process's engine, made the first time a profile needs one: `serve`
/// and `check` create this handle and pass it to every gateway version
/// they build, so all versions share one engine, its instance pool and its
/// compile cache. A config without profiles never pays for the pool or the
/// epoch thread.
pub struct SharedEngine {
    /// The compile cache directory (`None`: no cache).
    cache_dir: Option<PathBuf>,
    engine: OnceLock<Result<Arc<StrategyEngine>, String>>,
}

impl SharedEngine {
    /// A handle whose engine uses the compile cache in `cache_dir`.
    pub fn new(cache_dir: Option<PathBuf>) -> Self {
        Self {
            cache_dir,
            engine: OnceLock::new(),
        }
    }

    /// The engine, created on first use.
    pub fn get(&self) -> Result<Arc<StrategyEngine>, String> {
        self.engine
            .get_or_init(|| {
                let cache = self.cache_dir.as_deref().and_then(|dir| {
                    CompileCache::open(dir)
                        .inspect_err(|e| tracing::warn!(error = %e, "compile cache disabled"))
                        .ok()
                });
                StrategyEngine::new(cache).map(Arc::new)
            })
            .clone()
    }

    /// The engine if a profile needed it already.
    pub fn existing(&self) -> Option<Arc<StrategyEngine>> {
        self.engine.get().and_then(|r| r.as_ref().ok()).cloned()
    }

    /// The compile cache directory the engine uses (or will use).
    pub fn cache_dir(&self) -> Option<&Path> {
        self.cache_dir.as_deref()
    }
}

impl StrategyEngine {
    /// The compile cache in use, if any.
    pub fn compile_cache(&self) -> Option<&CompileCache> {
        self.cache.as_ref()
    }

    /// An engine, with `cache` for compiled code.
    pub fn new(cache: Option<CompileCache>) -> Result<Self, String> {
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
        if let Some(cache) = &cache {
            config.cache(Some(cache.wasmtime()));
        }
        let engine =
            Engine::new(&config).map_err(|e| format!("cannot create the wasm engine: {e:#}"))?;

        let mut linker: Linker<RunState> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| format!("linking WASI: {e:#}"))?;
        Strategy::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)
            .map_err(|e| format!("linking host imports: {e:#}"))?;

        let clock = EpochClock::start(&engine)
            .map_err(|e| format!("cannot start the epoch thread: {e}"))?;
        Ok(Self {
            engine,
            linker,
            cache,
            clock,
            memory: Arc::new(ByteBudget::new(GUEST_MEMORY_TOTAL_BYTES)),
            compiling: Mutex::new(()),
        })
    }

    /// Compiles (or loads from the compile cache) and pre-instantiates a
    /// component. CPU-heavy for large components: call it off the request path.
    pub fn compile(&self, source: &str, bytes: &[u8]) -> Result<CompiledStrategy, String> {
        if !bytes.starts_with(b"\0asm") {
            return Err(format!("{source} is not a WebAssembly file"));
        }
        let hash = crate::digest::sha256_hex(bytes);
        let (component, from_cache, load_time) = {
            let _one_at_a_time = self
                .compiling
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let started = Instant::now();
            let hits_before = self.cache.as_ref().map(CompileCache::hits);
            if let Some(cache) = &self.cache
                && let Vetted::Removed(reason) = cache.vet(&self.engine, bytes)
            {
                tracing::warn!(component = %source, hash = %hash, reason = %reason, "compile cache entry discarded; compiling again");
            }
            let component = Component::new(&self.engine, bytes)
                .map_err(|e| format!("{source} is not a valid WebAssembly component: {e:#}"))?;
            let from_cache = match (&self.cache, hits_before) {
                (Some(cache), Some(before)) => cache.hits() > before,
                _ => false,
            };
            if let Some(cache) = &self.cache
                && !from_cache
                && !cache.seal(&self.engine, bytes)
            {
                tracing::warn!(component = %source, "the compiled component could not be stored in the compile cache");
            }
            (component, from_cache, started.elapsed())
        };
        tracing::info!(
            component = %source,
            hash = %hash,
            from_cache,
            ms = load_time.as_secs_f64() * 1000.0,
            "{}",
            if from_cache {
                "strategy component loaded from the compile cache"
            } else {
                "strategy component compiled"
            }
        );
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| format!("{source} needs imports conclave does not offer: {e:#}"))?;
        let pre = StrategyPre::new(pre).map_err(|e| {
            format!("{source} does not implement the conclave:strategy world: {e:#}")
        })?;
        Ok(CompiledStrategy {
            source: source.to_owned(),
            hash,
            loaded_at: SystemTime::now(),
            from_cache,
            load_time,
            pre,
            clock: Arc::clone(&self.clock),
            memory: self.memory.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_sealed_reused_and_discarded_when_damaged() {
        let dir =
            std::env::temp_dir().join(format!("conclave-engine-cache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let cache = CompileCache::open(&dir).unwrap();
        let engine = StrategyEngine::new(Some(cache.clone())).unwrap();
        let wasm = super::super::builtin::bytes("passthrough").unwrap();

        let first = engine.compile("builtin:passthrough", wasm).unwrap();
        assert!(!first.from_cache);
        // The entry wasmtime wrote is the one conclave computed the name of.
        assert_eq!(cache.vet(&engine.engine, wasm), Vetted::Sealed);
        let second = engine.compile("builtin:passthrough", wasm).unwrap();
        assert!(second.from_cache);

        // Damage that still decompresses is not trusted: flip one byte.
        let modules = dir.join("wasmtime/modules");
        let compiler = std::fs::read_dir(&modules)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let entry = std::fs::read_dir(&compiler)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_none())
            .unwrap();
        let mut bytes = std::fs::read(&entry).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x40;
        std::fs::write(&entry, &bytes).unwrap();
        assert!(matches!(
            cache.vet(&engine.engine, wasm),
            Vetted::Removed(_)
        ));
        let third = engine.compile("builtin:passthrough", wasm).unwrap();
        assert!(!third.from_cache);
        assert_eq!(cache.vet(&engine.engine, wasm), Vetted::Sealed);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

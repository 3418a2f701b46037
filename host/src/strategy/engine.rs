//! The one wasmtime engine: pooling allocator with copy-on-write memory
//! images, epoch interruption ticked by one background thread, a linker
//! that offers strategies the host imports and a WASI with no capabilities,
//! and (when configured) the on-disk compile cache.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::bindings::{Strategy, StrategyPre};
use super::limits::MAX_MEMORY_BYTES;
use super::run::RunState;
use crate::compile_cache::{CompileCache, Vetted};

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
    /// When this version was compiled or loaded.
    pub loaded_at: SystemTime,
    /// Whether its native code came from the compile cache.
    pub from_cache: bool,
    /// How long compiling (or loading from the cache) took.
    pub load_time: Duration,
    pub(super) pre: StrategyPre<RunState>,
}

/// The engine and linker every strategy shares.
pub struct StrategyEngine {
    pub(super) engine: Engine,
    linker: Linker<RunState>,
    cache: Option<CompileCache>,
    /// One compilation at a time: they are CPU-bound anyway, and it lets the
    /// cache's hit counter tell which compilation it served.
    compiling: Mutex<()>,
}

static SHARED: OnceLock<Result<Arc<StrategyEngine>, String>> = OnceLock::new();
/// The compile cache directory of the shared engine (`None`: no cache).
static CACHE_DIR: OnceLock<Option<PathBuf>> = OnceLock::new();

impl StrategyEngine {
    /// The process-wide engine, created on first use.
    pub fn shared() -> Result<Arc<StrategyEngine>, String> {
        SHARED
            .get_or_init(|| {
                let cache =
                    CACHE_DIR.get_or_init(|| None).clone().and_then(
                        |dir| match CompileCache::open(&dir) {
                            Ok(c) => Some(c),
                            Err(e) => {
                                tracing::warn!(error = %e, "compile cache disabled");
                                None
                            }
                        },
                    );
                Self::new(cache).map(Arc::new)
            })
            .clone()
    }

    /// The process-wide engine if it was created (no profile needed one yet otherwise).
    pub fn existing() -> Option<Arc<StrategyEngine>> {
        SHARED.get().and_then(|r| r.as_ref().ok()).cloned()
    }

    /// Chooses the compile cache of the shared engine (`None` turns it off).
    /// Must be called before the first [`StrategyEngine::shared`]; later
    /// calls with a different directory fail, since the engine exists.
    pub fn use_compile_cache(dir: Option<PathBuf>) -> Result<(), String> {
        let chosen = CACHE_DIR.get_or_init(|| dir.clone());
        if *chosen == dir {
            Ok(())
        } else {
            Err(format!(
                "the compile cache is already {}; a change takes effect on restart",
                chosen
                    .as_ref()
                    .map_or("off".to_owned(), |d| d.display().to_string())
            ))
        }
    }

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
        Ok(Self {
            engine,
            linker,
            cache,
            compiling: Mutex::new(()),
        })
    }

    /// Compiles (or loads from the compile cache) and pre-instantiates a
    /// component. CPU-heavy for large components: call it off the request path.
    pub fn compile(&self, source: &str, bytes: &[u8]) -> Result<CompiledStrategy, String> {
        if !bytes.starts_with(b"\0asm") {
            return Err(format!("{source} is not a WebAssembly file"));
        }
        let hash = content_hash(bytes);
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

//! The on-disk cache of compiled strategy components.
//!
//! Compiled code is stored by wasmtime's own cache (`wasmtime::Cache`), so a
//! restart, or a reload back to a version already seen, loads native code
//! instead of compiling. What wasmtime does (wasmtime-internal-cache 48):
//!
//! * the entry for a component is `modules/wasmtime-<version>/<key>` under the
//!   cache directory, where `<key>` is the URL-safe base64 SHA-256 of the
//!   engine's compilation environment (target, Cranelift flags, tunables,
//!   wasm features, wasmtime version) followed by the component's bytes: a
//!   different engine configuration or wasmtime version never shares entries;
//! * an entry is zstd-compressed; one that fails to decompress, or whose ELF
//!   image fails wasmtime's checks (object layout and the engine section that
//!   records target and settings), is treated as a miss: wasmtime compiles
//!   again and overwrites it (write to a temporary file, then rename).
//!
//! Those checks catch garbage and incompatible entries, but not damage that
//! still decompresses to a well-formed image (zstd frames carry no checksum
//! by default, and machine code can sit in raw blocks). So conclave seals
//! every entry it writes: `seals/<key>` holds the SHA-256 of the entry file.
//! Before wasmtime may read an entry, its seal is checked, and an entry
//! without a matching seal is deleted so that it is compiled again. The
//! optimising re-compression of wasmtime's cache worker, which rewrites entry
//! files in place, is turned off so sealed files stay as written.

use std::borrow::Cow;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::{Cache, CacheConfig, Engine};

use crate::digest::sha256_hex;

/// Environment variable naming the cache directory.
pub const DIR_ENV: &str = "CONCLAVE_CACHE_DIR";
/// Environment variable that turns the cache off (`1`, `true`, `yes`, `on`).
pub const DISABLE_ENV: &str = "CONCLAVE_NO_COMPILE_CACHE";

/// The default cache directory: `$XDG_CACHE_HOME/conclave`, else
/// `~/.cache/conclave` (`%LOCALAPPDATA%\conclave` on Windows).
pub fn default_dir() -> Option<PathBuf> {
    let non_empty = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    if let Some(xdg) = non_empty("XDG_CACHE_HOME") {
        return Some(xdg.join("conclave"));
    }
    if cfg!(windows) {
        return non_empty("LOCALAPPDATA").map(|d| d.join("conclave"));
    }
    non_empty("HOME").map(|h| h.join(".cache").join("conclave"))
}

/// Whether an environment flag is set to a true value.
pub fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "1" | "true" | "yes" | "on"
        )
    })
}

/// Where the cache lives, or `None` when it is off. In order: `disabled`
/// (`serve --no-compile-cache`) or `CONCLAVE_NO_COMPILE_CACHE`, then
/// `CONCLAVE_CACHE_DIR`, then `general_settings.compile_cache_dir` (relative
/// to the config file), then [`default_dir`].
pub fn resolve_dir(
    disabled: bool,
    configured: Option<&str>,
    config_path: &Path,
) -> Option<PathBuf> {
    if disabled || env_flag(DISABLE_ENV) {
        return None;
    }
    let absolute = |p: PathBuf| -> PathBuf {
        if p.is_absolute() {
            p
        } else {
            std::env::current_dir().map(|cwd| cwd.join(&p)).unwrap_or(p)
        }
    };
    if let Some(dir) = std::env::var_os(DIR_ENV).filter(|v| !v.is_empty()) {
        return Some(absolute(PathBuf::from(dir)));
    }
    if let Some(dir) = configured.map(str::trim).filter(|d| !d.is_empty()) {
        let base = config_path.parent().unwrap_or_else(|| Path::new("."));
        return Some(absolute(base.join(dir)));
    }
    default_dir()
}

/// An open compile cache.
#[derive(Clone)]
pub struct CompileCache {
    dir: PathBuf,
    wasmtime: Cache,
}

/// What [`CompileCache::vet`] found for a component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Vetted {
    /// No entry: it will be compiled.
    Absent,
    /// An entry whose seal matches: wasmtime may load it.
    Sealed,
    /// An entry that was deleted, and why.
    Removed(String),
}

impl CompileCache {
    /// Opens (creating) the cache at `dir`.
    pub fn open(dir: &Path) -> Result<Self, String> {
        std::fs::create_dir_all(dir.join("seals"))
            .map_err(|e| format!("cannot create the compile cache {}: {e}", dir.display()))?;
        let dir = std::fs::canonicalize(dir)
            .map_err(|e| format!("cannot resolve the compile cache {}: {e}", dir.display()))?;
        let mut config = CacheConfig::new();
        config
            .with_directory(dir.join("wasmtime"))
            // Re-compression rewrites entries in place, which would break their seals.
            .with_optimized_compression_usage_counter_threshold(u64::MAX);
        let wasmtime = Cache::new(config)
            .map_err(|e| format!("cannot open the compile cache {}: {e:#}", dir.display()))?;
        Ok(Self { dir, wasmtime })
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The wasmtime cache to configure the engine with.
    pub fn wasmtime(&self) -> Cache {
        self.wasmtime.clone()
    }

    /// Components loaded from the cache so far.
    pub fn hits(&self) -> usize {
        self.wasmtime.cache_hits()
    }

    /// Components compiled and stored so far.
    pub fn misses(&self) -> usize {
        self.wasmtime.cache_misses()
    }

    /// Checks the entry `engine` would load for `wasm` before it may: an
    /// entry without a seal, or whose contents no longer match it, is deleted.
    pub fn vet(&self, engine: &Engine, wasm: &[u8]) -> Vetted {
        let key = entry_key(engine, wasm);
        let seal = self.seal_path(&key);
        let Some(entry) = self.find_entry(&key) else {
            let _ = std::fs::remove_file(&seal);
            return Vetted::Absent;
        };
        let actual = match std::fs::read(&entry) {
            Ok(bytes) => sha256_hex(&bytes),
            Err(e) => {
                return self.remove(&entry, &seal, format!("unreadable ({e})"));
            }
        };
        match std::fs::read_to_string(&seal) {
            Ok(expected) if expected.trim() == actual => Vetted::Sealed,
            Ok(_) => self.remove(&entry, &seal, "contents do not match its seal".into()),
            Err(_) => self.remove(&entry, &seal, "not sealed by conclave".into()),
        }
    }

    /// Seals the entry just written for `wasm`. False when there is none
    /// (wasmtime could not write it).
    pub fn seal(&self, engine: &Engine, wasm: &[u8]) -> bool {
        let key = entry_key(engine, wasm);
        let Some(entry) = self.find_entry(&key) else {
            return false;
        };
        let Ok(bytes) = std::fs::read(&entry) else {
            return false;
        };
        match crate::fsutil::write_atomic(
            &self.seal_path(&key),
            sha256_hex(&bytes).as_bytes(),
            false,
            false,
        ) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "cannot write a compile cache seal");
                false
            }
        }
    }

    fn seal_path(&self, key: &str) -> PathBuf {
        self.dir.join("seals").join(key)
    }

    /// `wasmtime/modules/<compiler>/<key>`, whichever compiler directory holds it.
    fn find_entry(&self, key: &str) -> Option<PathBuf> {
        let modules = self.dir.join("wasmtime").join("modules");
        std::fs::read_dir(modules)
            .ok()?
            .flatten()
            .map(|d| d.path().join(key))
            .find(|p| p.is_file())
    }

    fn remove(&self, entry: &Path, seal: &Path, reason: String) -> Vetted {
        let _ = std::fs::remove_file(entry);
        let mut stats = entry.as_os_str().to_owned();
        stats.push(".stats");
        let _ = std::fs::remove_file(PathBuf::from(stats));
        let _ = std::fs::remove_file(seal);
        Vetted::Removed(reason)
    }
}

/// The name wasmtime gives the cache entry of `wasm` compiled by `engine`:
/// the same hash of the same values, in the same order, as
/// `CodeBuilder::compile_cached` in wasmtime 48 (the compilation
/// environment, the bytes, no DWARF package, no unsafe-intrinsics import).
fn entry_key(engine: &Engine, wasm: &[u8]) -> String {
    struct Sha(Sha256);
    impl Hasher for Sha {
        fn finish(&self) -> u64 {
            0
        }
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
    }
    let mut hasher = Sha(Sha256::new());
    let wasm: Cow<'_, [u8]> = Cow::Borrowed(wasm);
    let dwarf_package: Option<&[u8]> = None;
    let unsafe_intrinsics_import: Option<&str> = None;
    (
        engine.precompile_compatibility_hash(),
        &wasm,
        &dwarf_package,
        &unsafe_intrinsics_import,
    )
        .hash(&mut hasher);
    let digest: [u8; 32] = hasher.0.finalize().into();
    base64_url_no_pad(&digest)
}

fn base64_url_no_pad(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_url_safe_alphabet_without_padding() {
        assert_eq!(base64_url_no_pad(b""), "");
        assert_eq!(base64_url_no_pad(b"f"), "Zg");
        assert_eq!(base64_url_no_pad(b"fo"), "Zm8");
        assert_eq!(base64_url_no_pad(b"foo"), "Zm9v");
        assert_eq!(base64_url_no_pad(&[0xfb, 0xff]), "-_8");
    }

    #[test]
    fn the_disable_flag_wins_over_every_directory() {
        assert_eq!(resolve_dir(true, Some("/x"), Path::new("/c/c.yaml")), None);
    }
}

//! Compiled components cached on disk, keyed by the component's content hash and the engine's
//! compatibility hash (an artifact compiled under other fuel or epoch settings is refused on
//! load, so the engine configuration is part of the key).

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Where a compiled component came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CacheOutcome {
    /// Loaded from the disk cache.
    Hit,
    /// Compiled now and written to the cache.
    Compiled,
    /// Compiled now; no cache directory is configured or it could not be written.
    CompiledUncached,
}

/// The on-disk cache of compiled components.
#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: Option<PathBuf>,
    engine_key: String,
}

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

impl CompileCache {
    /// A cache in `dir` (created on first write), or no disk cache with `None`.
    pub fn new(engine: &Engine, dir: Option<PathBuf>) -> CompileCache {
        let mut hasher = Sha256Hasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_key = hex::encode(&hasher.0.finalize()[..8]);
        CompileCache { dir, engine_key }
    }

    /// The default cache directory of commands that work outside a repository (`plugin check`,
    /// `test`, `bench`): `$GAFFER_PLUGIN_CACHE` (the variable `gaffer run` honours too), else
    /// `$GAFFER_CACHE_DIR`, else `$XDG_CACHE_HOME/gaffer/wasm`, else `$HOME/.cache/gaffer/wasm`.
    pub fn default_dir() -> Option<PathBuf> {
        for variable in ["GAFFER_PLUGIN_CACHE", "GAFFER_CACHE_DIR"] {
            match std::env::var_os(variable) {
                Some(dir) if !dir.is_empty() => return Some(PathBuf::from(dir)),
                _ => {}
            }
        }
        if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
            return Some(PathBuf::from(dir).join("gaffer").join("wasm"));
        }
        std::env::var_os("HOME")
            .map(|h| PathBuf::from(h).join(".cache").join("gaffer").join("wasm"))
    }

    /// The cache directory, if any.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    fn artifact_path(&self, content_hash: &str) -> Option<PathBuf> {
        self.dir
            .as_ref()
            .map(|d| d.join(format!("{content_hash}-{}.cwasm", self.engine_key)))
    }

    /// Compile `bytes`, or load the artifact compiled earlier from the same bytes by an
    /// engine with the same configuration. A corrupt or refused artifact is recompiled.
    pub fn load(
        &self,
        engine: &Engine,
        bytes: &[u8],
    ) -> Result<(Component, CacheOutcome, String), String> {
        let content_hash = hex::encode(Sha256::digest(bytes));
        let artifact = self.artifact_path(&content_hash);
        if let Some(path) = &artifact
            && path.is_file()
        {
            // Read, not mmap: a mapped artifact truncated by someone else while in use would
            // kill the process with SIGBUS.
            let deserialized =
                std::fs::read(path)
                    .map_err(|e| format!("{e}"))
                    .and_then(|artifact| {
                        // SAFETY: the bytes were written by `Component::serialize` of this cache,
                        // under a key that includes the engine's compatibility hash; wasmtime also
                        // checks the header and refuses an artifact from an incompatible engine,
                        // which we answer by recompiling. The cache directory belongs to the user
                        // running gaffer.
                        unsafe { Component::deserialize(engine, &artifact) }
                            .map_err(|e| format!("{e:#}"))
                    });
            match deserialized {
                Ok(component) => return Ok((component, CacheOutcome::Hit, content_hash)),
                Err(e) => tracing::warn!(
                    artifact = %path.display(),
                    error = %e,
                    "compiled plugin in the cache is unusable; recompiling"
                ),
            }
        }
        let component = Component::new(engine, bytes).map_err(|e| format!("{e:#}"))?;
        let outcome = match &artifact {
            Some(path) => match write_artifact(&component, path) {
                Ok(()) => CacheOutcome::Compiled,
                Err(e) => {
                    tracing::warn!(artifact = %path.display(), error = %e, "cannot write the plugin cache");
                    CacheOutcome::CompiledUncached
                }
            },
            None => CacheOutcome::CompiledUncached,
        };
        Ok((component, outcome, content_hash))
    }
}

/// Write atomically: a reader never sees a half-written artifact.
fn write_artifact(component: &Component, path: &Path) -> Result<(), String> {
    let bytes = component.serialize().map_err(|e| format!("{e:#}"))?;
    let dir = path.parent().ok_or("artifact path has no directory")?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    // Unique per process and per write: two threads may compile the same component at once.
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp{}-{n}", std::process::id()));
    std::fs::write(&tmp, &bytes).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}

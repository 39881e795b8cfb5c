//! Compiled components cached on disk, keyed by the component's content hash and the engine's
//! compatibility key (an artifact compiled under other fuel or epoch settings is refused on
//! load, so the engine configuration is part of the key; see
//! [`EngineHandle::compatibility_key`]). An engine without a compiler (the hook bridge's) reads
//! the same artefacts, and on a miss compiles with a compiling engine of its configuration.
//!
//! Loading is on the path of every `gaffer hook claude-code` process, so a hit avoids reading
//! the component at all: a small stamp file maps the file's identity (path, size, modification
//! time, inode) to its content hash, and the artifact is mapped rather than read and copied. For
//! an 18 MB Python component that took loading from 74 ms to 4 ms on this machine.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Config, Engine};

use super::engine::EngineHandle;

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
#[derive(Clone)]
pub struct CompileCache {
    dir: Option<PathBuf>,
    engine_key: String,
    /// For an engine without a compiler: the configuration of the engine that compiles a miss.
    compiling: Option<Config>,
}

impl std::fmt::Debug for CompileCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompileCache")
            .field("dir", &self.dir)
            .field("engine_key", &self.engine_key)
            .field("compiles_on_miss", &self.compiling.is_some())
            .finish()
    }
}

impl CompileCache {
    /// A cache for the engine of `handle` in `dir` (created on first write), or no disk cache
    /// with `None`.
    pub fn new(handle: &EngineHandle, dir: Option<PathBuf>) -> CompileCache {
        CompileCache {
            dir,
            engine_key: handle.compatibility_key().to_string(),
            compiling: handle.compiling_config().cloned(),
        }
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

    /// Load the component at `path`: from the cache when this file (same path, size,
    /// modification time and inode) was compiled before by an engine with the same
    /// configuration, else from its bytes (see [`CompileCache::load`]). With `pin`, a file whose
    /// SHA-256 is not the pinned one is refused before anything is compiled.
    pub fn load_file(
        &self,
        engine: &Engine,
        path: &Path,
        pin: Option<&str>,
    ) -> Result<Loaded, LoadError> {
        let check_pin = |found: &str| match pin {
            Some(expected) if expected != found => Err(LoadError::Pinned {
                found: found.to_string(),
            }),
            _ => Ok(()),
        };
        let stamp = self.stamp_path(path);
        if let Some(stamp) = &stamp
            && let Ok(content_hash) = std::fs::read_to_string(stamp)
        {
            let content_hash = content_hash.trim();
            check_pin(content_hash)?;
            if let Some(component) = self.deserialize(engine, content_hash) {
                let size_bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
                return Ok(Loaded {
                    component,
                    outcome: CacheOutcome::Hit,
                    content_hash: content_hash.to_string(),
                    size_bytes,
                });
            }
        }
        let bytes = std::fs::read(path).map_err(|e| LoadError::Read(e.to_string()))?;
        check_pin(&hex::encode(Sha256::digest(&bytes)))?;
        let (component, outcome, content_hash) =
            self.load(engine, &bytes).map_err(LoadError::Compile)?;
        if let Some(stamp) = &stamp
            && let Err(e) = write_atomically(stamp, content_hash.as_bytes())
        {
            tracing::warn!(stamp = %stamp.display(), error = %e, "cannot write the plugin cache");
        }
        Ok(Loaded {
            component,
            outcome,
            content_hash,
            size_bytes: bytes.len() as u64,
        })
    }

    /// The stamp of a component file: named by its identity, holding its content hash.
    fn stamp_path(&self, path: &Path) -> Option<PathBuf> {
        use std::os::unix::fs::MetadataExt;
        let dir = self.dir.as_ref()?;
        let canonical = std::fs::canonicalize(path).ok()?;
        let meta = std::fs::metadata(&canonical).ok()?;
        let mut identity = Sha256::new();
        identity.update(canonical.as_os_str().as_encoded_bytes());
        for n in [
            meta.len(),
            meta.mtime() as u64,
            meta.mtime_nsec() as u64,
            meta.ino(),
            meta.dev(),
        ] {
            identity.update(n.to_le_bytes());
        }
        let key = hex::encode(&identity.finalize()[..16]);
        Some(dir.join("stamps").join(key))
    }

    /// The cached artifact of `content_hash`, if there is a usable one.
    fn deserialize(&self, engine: &Engine, content_hash: &str) -> Option<Component> {
        let path = self.artifact_path(content_hash)?;
        if !path.is_file() {
            return None;
        }
        // SAFETY: the artifact was written by `Component::serialize` of this cache, under a key
        // that includes the engine's compatibility key; wasmtime also checks the header (target,
        // compiler flags against the host, tunables, features, version) and refuses an
        // artifact from an incompatible engine, which we answer by recompiling. The
        // cache directory belongs to the user running gaffer. The file is mapped, not copied:
        // gaffer never changes an artifact in place (it writes a new file and renames it over),
        // so a mapping stays valid; truncating a cached artifact in place while a gaffer process
        // uses it would kill that process (SIGBUS), like any mapped executable.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!(
                    artifact = %path.display(),
                    error = %format!("{e:#}"),
                    "compiled plugin in the cache is unusable; recompiling"
                );
                None
            }
        }
    }

    /// Compile `bytes`, or load the artifact compiled earlier from the same bytes by an
    /// engine with the same configuration. A corrupt or refused artifact is recompiled.
    pub fn load(
        &self,
        engine: &Engine,
        bytes: &[u8],
    ) -> Result<(Component, CacheOutcome, String), String> {
        let content_hash = hex::encode(Sha256::digest(bytes));
        if let Some(component) = self.deserialize(engine, &content_hash) {
            return Ok((component, CacheOutcome::Hit, content_hash));
        }
        let artifact = self.artifact_path(&content_hash);
        // What an instance would create is checked before compiling: a cached artifact was
        // checked when it was compiled.
        super::shape::check(bytes)?;
        let (component, serialized) = match &self.compiling {
            None => (
                Component::new(engine, bytes).map_err(|e| format!("{e:#}"))?,
                None,
            ),
            Some(config) => {
                // A loading-only engine: compile with a compiling engine of the same
                // configuration and load its output, checked by wasmtime like any artefact.
                let compiler = Engine::new(config).map_err(|e| format!("{e:#}"))?;
                let serialized = Component::new(&compiler, bytes)
                    .and_then(|c| c.serialize())
                    .map_err(|e| format!("{e:#}"))?;
                // SAFETY: the bytes were serialized just now, in this process, by a compiling
                // engine of this engine's configuration; wasmtime checks their compatibility.
                let component = unsafe { Component::deserialize(engine, &serialized) }
                    .map_err(|e| format!("{e:#}"))?;
                (component, Some(serialized))
            }
        };
        let outcome = match &artifact {
            Some(path) => {
                let written = match serialized {
                    Some(serialized) => write_atomically(path, &serialized),
                    None => write_artifact(&component, path),
                };
                match written {
                    Ok(()) => CacheOutcome::Compiled,
                    Err(e) => {
                        tracing::warn!(artifact = %path.display(), error = %e, "cannot write the plugin cache");
                        CacheOutcome::CompiledUncached
                    }
                }
            }
            None => CacheOutcome::CompiledUncached,
        };
        Ok((component, outcome, content_hash))
    }
}

/// A component loaded through the cache.
pub struct Loaded {
    pub component: Component,
    pub outcome: CacheOutcome,
    /// SHA-256 of the component file, hex.
    pub content_hash: String,
    pub size_bytes: u64,
}

/// Why a component file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{0}")]
    Read(String),
    #[error("{0}")]
    Compile(String),
    /// The file is not the one its configuration pins.
    #[error("its SHA-256 is {found}")]
    Pinned { found: String },
}

fn write_artifact(component: &Component, path: &Path) -> Result<(), String> {
    let bytes = component.serialize().map_err(|e| format!("{e:#}"))?;
    write_atomically(path, &bytes)
}

/// Write atomically: a reader never sees a half-written file, and a file in use (mapped) is
/// replaced, never changed.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let dir = path.parent().ok_or("cache path has no directory")?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    // Unique per process and per write: two threads may compile the same component at once.
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp{}-{n}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::engine::{AllocatorChoice, CompilerChoice, EngineOptions, Metering};

    fn options(compiler: CompilerChoice, metering: Metering) -> EngineOptions {
        EngineOptions {
            allocator: AllocatorChoice::OnDemand,
            metering,
            compiler,
            ..EngineOptions::default()
        }
    }

    /// A component with code in it, made from text (not by the code under test).
    fn component() -> Vec<u8> {
        wat::parse_str(
            r#"(component (core module (func (export "f") (param i32) (result i32) local.get 0)))"#,
        )
        .expect("wat")
    }

    #[test]
    fn an_engine_without_a_compiler_runs_what_gaffer_compiled_and_compiles_a_miss() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bytes = component();
        let full = EngineHandle::new(&options(CompilerChoice::InEngine, Metering::SHIPPED))
            .expect("engine");
        let loading = EngineHandle::new(&options(CompilerChoice::OnCacheMiss, Metering::SHIPPED))
            .expect("engine");
        assert_eq!(full.compatibility_key(), loading.compatibility_key());
        // The loading-only engine cannot compile by itself.
        assert!(Component::new(&loading.engine, &bytes).is_err());

        // What the full engine compiled, the loading-only one takes from the cache.
        let full_cache = CompileCache::new(&full, Some(dir.path().to_path_buf()));
        let (_, outcome, _) = full_cache.load(&full.engine, &bytes).expect("compile");
        assert_eq!(outcome, CacheOutcome::Compiled);
        let cache = CompileCache::new(&loading, Some(dir.path().to_path_buf()));
        let (_, outcome, _) = cache.load(&loading.engine, &bytes).expect("load");
        assert_eq!(outcome, CacheOutcome::Hit);

        // A miss: compiled by a compiling engine of the same configuration, written, then a hit.
        let empty = tempfile::tempdir().expect("tempdir");
        let cache = CompileCache::new(&loading, Some(empty.path().to_path_buf()));
        let (_, outcome, _) = cache
            .load(&loading.engine, &bytes)
            .expect("compile on miss");
        assert_eq!(outcome, CacheOutcome::Compiled);
        let (_, outcome, _) = cache.load(&loading.engine, &bytes).expect("load");
        assert_eq!(outcome, CacheOutcome::Hit);
        // ... and the full engine runs it too.
        let full_cache = CompileCache::new(&full, Some(empty.path().to_path_buf()));
        let (_, outcome, _) = full_cache.load(&full.engine, &bytes).expect("load");
        assert_eq!(outcome, CacheOutcome::Hit);
        // Without a disk cache, a miss still compiles.
        let (_, outcome, _) = CompileCache::new(&loading, None)
            .load(&loading.engine, &bytes)
            .expect("compile uncached");
        assert_eq!(outcome, CacheOutcome::CompiledUncached);
    }

    #[test]
    fn an_artefact_compiled_for_other_meters_is_refused_by_an_engine_without_a_compiler() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bytes = component();
        let unmetered = Metering {
            fuel: false,
            epoch: false,
        };
        let other =
            EngineHandle::new(&options(CompilerChoice::InEngine, unmetered)).expect("engine");
        let loading = EngineHandle::new(&options(CompilerChoice::OnCacheMiss, Metering::SHIPPED))
            .expect("engine");
        assert_ne!(other.compatibility_key(), loading.compatibility_key());
        // An artefact without fuel or epoch checks, put where the metered engine looks for its
        // own: wasmtime refuses it on load and the cache compiles the component again.
        let other_cache = CompileCache::new(&other, Some(dir.path().to_path_buf()));
        other_cache.load(&other.engine, &bytes).expect("compile");
        let hash = hex::encode(Sha256::digest(&bytes));
        let cache = CompileCache::new(&loading, Some(dir.path().to_path_buf()));
        let planted = other_cache.artifact_path(&hash).expect("path");
        let target = cache.artifact_path(&hash).expect("path");
        std::fs::copy(&planted, &target).expect("copy");
        // SAFETY: a test of the refusal; the artefact is gaffer's own.
        assert!(unsafe { Component::deserialize_file(&loading.engine, &target) }.is_err());
        let (_, outcome, _) = cache.load(&loading.engine, &bytes).expect("recompile");
        assert_eq!(outcome, CacheOutcome::Compiled);
    }
}

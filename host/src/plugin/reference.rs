//! The Rust reference plugins, built from this workspace by the host's build script and shipped
//! inside the binary, so that a user who has only the binary gets a working setup (`gaffer
//! init`, `gaffer demo`). The Python and JavaScript reference plugins stay outside.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::spec::World;

mod built {
    include!(concat!(env!("OUT_DIR"), "/embedded_plugins.rs"));
}

/// One embedded plugin.
#[derive(Debug, Clone, Copy)]
pub struct ReferencePlugin {
    /// Its file name (`cost_tier.wasm`).
    pub file: &'static str,
    pub world: World,
    pub bytes: &'static [u8],
}

impl ReferencePlugin {
    /// The SHA-256 of the component, hex: what a `gaffer.toml` pins it with.
    pub fn sha256(&self) -> String {
        hex::encode(Sha256::digest(self.bytes))
    }
}

/// Every plugin this binary carries (none when it was built without the `wasm32-unknown-unknown`
/// target).
pub fn embedded() -> Vec<ReferencePlugin> {
    built::EMBEDDED
        .iter()
        .filter_map(|(file, world, bytes)| {
            let world = match *world {
                "router" => World::Router,
                "verifier" => World::Verifier,
                "hook" => World::Hook,
                _ => return None,
            };
            Some(ReferencePlugin { file, world, bytes })
        })
        .collect()
}

/// Why the reference plugins cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    #[error(
        "this gaffer was built without its reference plugins (the wasm32-unknown-unknown target was \
         missing): build them with scripts/build-plugins.sh and pass their directory"
    )]
    NotEmbedded,
    #[error("{}: {reason}", path.display())]
    Write { path: PathBuf, reason: String },
}

/// Write every embedded plugin into `dir` (created if missing). A file already there with the
/// same bytes is left alone; one with other bytes is replaced only with `overwrite`. Returns the
/// plugins and where each one is.
pub fn write_all(
    dir: &Path,
    overwrite: bool,
) -> Result<Vec<(ReferencePlugin, PathBuf)>, ReferenceError> {
    let plugins = embedded();
    if plugins.is_empty() {
        return Err(ReferenceError::NotEmbedded);
    }
    let failed = |path: &Path, e: std::io::Error| ReferenceError::Write {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    std::fs::create_dir_all(dir).map_err(|e| failed(dir, e))?;
    let mut written = Vec::new();
    for plugin in plugins {
        let path = dir.join(plugin.file);
        match std::fs::read(&path) {
            Ok(existing) if existing == plugin.bytes => {}
            Ok(_) if !overwrite => {
                return Err(ReferenceError::Write {
                    path,
                    reason: "exists with other bytes; pass --force to replace it".to_string(),
                });
            }
            _ => {
                // Write beside it and rename, so a reader never sees half a component.
                let partial = path.with_extension("wasm.partial");
                std::fs::write(&partial, plugin.bytes).map_err(|e| failed(&partial, e))?;
                std::fs::rename(&partial, &path).map_err(|e| failed(&path, e))?;
            }
        }
        written.push((plugin, path));
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_plugins_are_components_of_their_world() {
        let plugins = embedded();
        assert!(
            !plugins.is_empty(),
            "this build embeds the reference plugins"
        );
        let runtime = crate::plugin::PluginRuntime::builder()
            .cache_dir(None)
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        for (plugin, path) in write_all(dir.path(), false).unwrap() {
            let info = runtime.inspect(&path).unwrap();
            assert_eq!(info.world, Some(plugin.world), "{}", plugin.file);
            assert_eq!(info.content_hash, plugin.sha256(), "{}", plugin.file);
        }
        // Written again: the same bytes are left alone; other bytes are refused without force.
        write_all(dir.path(), false).unwrap();
        std::fs::write(dir.path().join("cost_tier.wasm"), b"other").unwrap();
        assert!(write_all(dir.path(), false).is_err());
        write_all(dir.path(), true).unwrap();
    }
}

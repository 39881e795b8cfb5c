//! Loading a component: compile it or take it from the disk cache, check that its exports are
//! the configured world's and that this host provides what it imports, pin its hash, and
//! pre-instantiate it.

use std::path::Path;
use std::time::SystemTime;

use super::{Inner, exported_functions, world_of_exports};
use crate::plugin::cache::{self, CacheOutcome};
use crate::plugin::error::PluginError;
use crate::plugin::spec::PluginSpec;
use crate::plugin::wit::since_v0_1_0;

/// Identity of a file on disk, to notice a replaced `.wasm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileStamp {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

impl FileStamp {
    pub(crate) fn of(path: &Path) -> std::io::Result<FileStamp> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path)?;
        Ok(FileStamp {
            len: meta.len(),
            modified: meta.modified().ok(),
            inode: meta.ino(),
        })
    }
}

/// A component ready to call: its file identity (for an explicit reload), its hash, whether it
/// came from the cache, and its pre-instantiation for its world in the version it was built
/// against.
pub(crate) struct Loaded {
    pub(super) stamp: Option<FileStamp>,
    pub(super) content_hash: String,
    pub(super) cache: CacheOutcome,
    pub(super) pre: since_v0_1_0::Pre,
}

impl Inner {
    /// Load a component file through the compile cache.
    pub(super) fn load_file(
        &self,
        plugin: &str,
        path: &Path,
        pin: Option<&str>,
    ) -> Result<cache::Loaded, PluginError> {
        self.cache
            .load_file(&self.handle.engine, path, pin)
            .map_err(|e| match e {
                cache::LoadError::Pinned { found } => PluginError::HashMismatch {
                    plugin: plugin.to_string(),
                    path: path.to_path_buf(),
                    expected: pin.unwrap_or_default().to_string(),
                    found,
                },
                cache::LoadError::Read(reason) => PluginError::Read {
                    plugin: plugin.to_string(),
                    path: path.to_path_buf(),
                    reason,
                },
                cache::LoadError::Compile(reason) => PluginError::Compile {
                    plugin: plugin.to_string(),
                    path: path.to_path_buf(),
                    reason,
                },
            })
    }

    pub(super) fn compile(&self, spec: &PluginSpec) -> Result<Loaded, PluginError> {
        let stamp = FileStamp::of(&spec.path).ok();
        let cache::Loaded {
            component,
            outcome: cache,
            content_hash,
            ..
        } = self.load_file(&spec.name, &spec.path, spec.sha256.as_deref())?;
        let engine = &self.handle.engine;
        let exports = exported_functions(&component, engine);
        let incompatible = |detail: String| PluginError::Incompatible {
            plugin: spec.name.clone(),
            expected: spec.world.name(),
            exports: exports.join(", "),
            detail,
        };
        let found_world = world_of_exports(&exports);
        if found_world != Some(spec.world) {
            let detail = match found_world {
                Some(w) => format!("; that is the `{w}` world"),
                None => String::new(),
            };
            return Err(incompatible(detail));
        }
        let own_linker;
        let linker = match &self.linker {
            Some(shared) => shared,
            None => {
                let ty = component.component_type();
                own_linker = super::linker_with(&spec.name, engine, |linker| {
                    super::wasi_link::link_imported(
                        linker,
                        ty.imports(engine).map(|(name, _)| name),
                    )
                })?;
                &own_linker
            }
        };
        let instance_pre = linker.instantiate_pre(&component).map_err(|e| {
            incompatible(format!(
                "; it imports what this host does not provide: {e:#}"
            ))
        })?;
        let pre = since_v0_1_0::Pre::new(spec.world, instance_pre)
            .map_err(|e| incompatible(format!("; {e:#}")))?;
        Ok(Loaded {
            stamp,
            content_hash,
            cache,
            pre,
        })
    }
}

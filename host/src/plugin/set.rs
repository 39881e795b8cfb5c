//! The plugins of a configuration, in force for a run. They change only when the user asks
//! ([`PluginSet::reload`] with specs read again by the one config parser): a file changing on
//! disk, by whatever wrote it, never changes the policy a run works under.

use std::sync::{Arc, Mutex};

use super::error::PluginError;
use super::runtime::{Plugin, PluginRuntime};
use super::spec::{PluginSpec, PluginSpecs};

/// The plugins in force for a call.
#[derive(Debug, Default)]
pub struct ActivePlugins {
    pub router: Option<Arc<Plugin>>,
    pub verifier: Option<Arc<Plugin>>,
    pub hooks: Vec<Arc<Plugin>>,
}

/// The plugins of one configuration.
pub struct PluginSet {
    runtime: PluginRuntime,
    active: Mutex<Arc<ActivePlugins>>,
}

impl std::fmt::Debug for PluginSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginSet").finish_non_exhaustive()
    }
}

impl PluginSet {
    /// Load every plugin of `specs`; any failure is an error: gaffer does not run with a broken
    /// configuration.
    pub fn load(runtime: PluginRuntime, specs: &PluginSpecs) -> Result<PluginSet, PluginError> {
        let active = build(&runtime, specs, None)?;
        Ok(PluginSet {
            runtime,
            active: Mutex::new(Arc::new(active)),
        })
    }

    /// The plugins in force now.
    pub fn current(&self) -> Arc<ActivePlugins> {
        match self.active.lock() {
            Ok(active) => Arc::clone(&active),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Put `specs` in force from the next call (the user asked for a reload). Plugins whose spec
    /// and file are unchanged are kept as they are, with their fault counts. All or nothing: on
    /// any failure the previous plugins keep serving and the error says why.
    pub fn reload(&self, specs: &PluginSpecs) -> Result<(), PluginError> {
        let previous = self.current();
        let active = build(&self.runtime, specs, Some(&previous))?;
        match self.active.lock() {
            Ok(mut slot) => *slot = Arc::new(active),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(active),
        }
        Ok(())
    }
}

/// Load the plugins of `specs`, reusing those of `previous` whose spec and file did not change.
fn build(
    runtime: &PluginRuntime,
    specs: &PluginSpecs,
    previous: Option<&ActivePlugins>,
) -> Result<ActivePlugins, PluginError> {
    let slot = |spec: &PluginSpec, old: Option<&Arc<Plugin>>| -> Result<Arc<Plugin>, PluginError> {
        if let Some(old) = old
            && old.spec() == spec
            && old.file_unchanged()
        {
            return Ok(Arc::clone(old));
        }
        Ok(Arc::new(runtime.load(spec.clone())?))
    };
    let router = specs
        .router
        .as_ref()
        .map(|s| slot(s, previous.and_then(|p| p.router.as_ref())))
        .transpose()?;
    let verifier = specs
        .verifier
        .as_ref()
        .map(|s| slot(s, previous.and_then(|p| p.verifier.as_ref())))
        .transpose()?;
    let hooks = specs
        .hooks
        .iter()
        .map(|spec| {
            let old = previous.and_then(|p| p.hooks.iter().find(|h| h.name() == spec.name));
            slot(spec, old)
        })
        .collect::<Result<_, _>>()?;
    Ok(ActivePlugins {
        router,
        verifier,
        hooks,
    })
}

//! The plugins a `gaffer.toml` configures, kept current: when the file changes, the next call
//! gets the new configuration, without a restart. A configuration or plugin that fails to load
//! leaves the previous one serving and says why.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Deserialize;

use super::error::PluginError;
use super::runtime::{FileStamp, Plugin, PluginRuntime};
use super::spec::{PluginSpec, PluginSpecs, PluginsToml};

/// The plugins in force for a call.
#[derive(Debug, Default)]
pub struct ActivePlugins {
    pub router: Option<Arc<Plugin>>,
    pub verifier: Option<Arc<Plugin>>,
    pub hooks: Vec<Arc<Plugin>>,
}

/// The part of `gaffer.toml` this module reads; the other sections belong to other modules.
#[derive(Debug, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    plugins: PluginsToml,
}

/// Read the `[plugins]` section of a `gaffer.toml`; errors name the file, line and field.
pub fn read_plugin_specs(config_path: &Path) -> Result<PluginSpecs, PluginError> {
    let invalid = |reason: String| PluginError::Config {
        plugin: "-".to_string(),
        reason: format!("{}: {reason}", config_path.display()),
    };
    let text = std::fs::read_to_string(config_path).map_err(|e| invalid(e.to_string()))?;
    let file: ConfigFile = toml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
    let base = config_path.parent().unwrap_or(Path::new("."));
    PluginSpecs::from_toml(&file.plugins, base).map_err(|e| match e {
        PluginError::Config { plugin, reason } => PluginError::Config {
            plugin,
            reason: format!("{}: {reason}", config_path.display()),
        },
        other => other,
    })
}

struct SetState {
    stamp: Option<FileStamp>,
    /// The stamp of a configuration that failed, so it is not re-read at every call.
    failed_stamp: Option<FileStamp>,
    active: Arc<ActivePlugins>,
    last_error: Option<PluginError>,
}

/// The plugins of one `gaffer.toml`, reloaded when the file changes.
pub struct PluginSet {
    runtime: PluginRuntime,
    config_path: PathBuf,
    state: Mutex<SetState>,
}

impl std::fmt::Debug for PluginSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginSet")
            .field("config_path", &self.config_path)
            .finish()
    }
}

impl PluginSet {
    /// Load every plugin the file configures. At start, any failure is an error: gaffer does
    /// not run with a broken configuration.
    pub fn open(
        runtime: PluginRuntime,
        config_path: impl Into<PathBuf>,
    ) -> Result<PluginSet, PluginError> {
        let config_path = config_path.into();
        let stamp = FileStamp::of(&config_path).ok();
        let specs = read_plugin_specs(&config_path)?;
        let active = build(&runtime, &specs, None).map_err(|(_, error)| error)?;
        Ok(PluginSet {
            runtime,
            config_path,
            state: Mutex::new(SetState {
                stamp,
                failed_stamp: None,
                active: Arc::new(active),
                last_error: None,
            }),
        })
    }

    /// The plugins in force now, after picking up a changed `gaffer.toml`.
    pub fn current(&self) -> Arc<ActivePlugins> {
        let Ok(mut state) = self.state.lock() else {
            return Arc::new(ActivePlugins::default());
        };
        let stamp = FileStamp::of(&self.config_path).ok();
        if stamp.is_none() || stamp == state.stamp || stamp == state.failed_stamp {
            return Arc::clone(&state.active);
        }
        let outcome = read_plugin_specs(&self.config_path)
            .map_err(|e| (None, e))
            .and_then(|specs| build(&self.runtime, &specs, Some(&state.active)));
        match outcome {
            Ok(active) => {
                tracing::info!(config = %self.config_path.display(), "configuration changed; new plugin settings serve from the next call");
                state.active = Arc::new(active);
                state.stamp = stamp;
                state.failed_stamp = None;
                state.last_error = None;
            }
            Err((_, error)) => {
                tracing::warn!(
                    config = %self.config_path.display(),
                    %error,
                    "configuration changed but does not load; the previous plugins keep serving"
                );
                state.failed_stamp = stamp;
                state.last_error = Some(error);
            }
        }
        Arc::clone(&state.active)
    }

    /// Why the latest change of `gaffer.toml` did not take effect, if it did not.
    pub fn last_error(&self) -> Option<PluginError> {
        self.state.lock().ok().and_then(|s| s.last_error.clone())
    }
}

/// Load the plugins of `specs`, reusing those of `previous` whose spec did not change. Any
/// failure returns the error, and the caller keeps the previous set whole.
fn build(
    runtime: &PluginRuntime,
    specs: &PluginSpecs,
    previous: Option<&ActivePlugins>,
) -> Result<ActivePlugins, (Option<()>, PluginError)> {
    let mut first_error: Option<PluginError> = None;
    let mut slot = |spec: &PluginSpec, old: Option<&Arc<Plugin>>| -> Option<Arc<Plugin>> {
        if let Some(old) = old
            && old.spec() == spec
        {
            return Some(Arc::clone(old));
        }
        match runtime.load(spec.clone()) {
            Ok(plugin) => Some(Arc::new(plugin)),
            Err(error) => {
                first_error.get_or_insert(error);
                None
            }
        }
    };
    let router = specs
        .router
        .as_ref()
        .and_then(|s| slot(s, previous.and_then(|p| p.router.as_ref())));
    let verifier = specs
        .verifier
        .as_ref()
        .and_then(|s| slot(s, previous.and_then(|p| p.verifier.as_ref())));
    let hooks = specs
        .hooks
        .iter()
        .filter_map(|spec| {
            let old = previous.and_then(|p| p.hooks.iter().find(|h| h.name() == spec.name));
            slot(spec, old)
        })
        .collect();
    let active = ActivePlugins {
        router,
        verifier,
        hooks,
    };
    match first_error {
        None => Ok(active),
        // All or nothing: a partial set could silently drop a newly configured hook.
        Some(error) => Err((None, error)),
    }
}

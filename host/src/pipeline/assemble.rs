//! A project's pipeline, put together from its `gaffer.toml`: each room resolves its own
//! section (caps, providers and models, plugins, the run's settings), then the store, the
//! ledger, the gateway, the plugin runtime and the repository are joined. Every check that can
//! fail before work starts happens here or in [`Pipeline::preflight`].

use crate::agent::external::{HookBridge, ImplementerSettings, hook_program};
use std::path::PathBuf;
use std::sync::Arc;

use super::plugin_models::GatewayModels;
use super::progress::Progress;
use super::run_records::LedgerRecorder;
use super::runner::{Pipeline, new_run_id};
use super::settings::PipelineSettings;
use crate::config::{ConfigError, ConfigFile};
use crate::gateway::metered::{Gateway, Pricing};
use crate::gateway::provider::{Provider, ProviderError};
use crate::gateway::settings::{GatewaySettings, ResolvedModel};
use crate::git::{GitError, Repo};
use crate::ledger::{Caps, Ledger};
use crate::plugin::types::{ModelInfo, Prices};
use crate::plugin::{PluginError, PluginRuntime, PluginSet, PluginSpecs};
use crate::project::{Project, ProjectError};

use crate::project::policy_files::PolicyFiles;
use crate::store::{BacklogStore, LedgerStore, MicroUsd};

/// What `gaffer run` adds to the configuration.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub workers: Option<usize>,
    pub max_tasks: Option<u32>,
    pub watch: bool,
    pub allow_dirty: bool,
    /// Run commands outside the sandbox (the user's explicit choice).
    pub unconfined: bool,
    /// Caps that override `[budget]` for this run.
    pub per_task: Option<MicroUsd>,
    pub per_run: Option<MicroUsd>,
    pub per_day: Option<MicroUsd>,
    pub per_month: Option<MicroUsd>,
}

impl RunOptions {
    fn apply_to(&self, caps: &mut Caps) {
        for (slot, value) in [
            (&mut caps.per_task, self.per_task),
            (&mut caps.per_run, self.per_run),
            (&mut caps.per_day, self.per_day),
            (&mut caps.per_month, self.per_month),
        ] {
            if value.is_some() {
                *slot = value;
            }
        }
    }
}

/// Why a pipeline cannot be put together.
#[derive(Debug, thiserror::Error)]
pub enum AssembleError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Project(#[from] ProjectError),
    #[error(transparent)]
    Git(#[from] GitError),
    #[error("{file}: {error}")]
    Provider { file: String, error: ProviderError },
    /// The team's hooks cannot be installed in the external agent.
    #[error("the hook bridge for the external agent: {0}")]
    Bridge(String),
    #[error("loading the plugins of {file}: {error}")]
    Plugin { file: String, error: PluginError },
}

/// The models as the router sees them: the key is the id it answers with.
pub fn model_infos(models: &[ResolvedModel]) -> Vec<ModelInfo> {
    models
        .iter()
        .map(|m| ModelInfo {
            id: m.entry.key.clone(),
            provider: m.entry.provider.clone(),
            tier: m.tier,
            prices: match m.entry.pricing {
                Pricing::Tokens(p) => p,
                // A local model's calls are priced by electricity, not per token.
                Pricing::Electricity(_) => Prices::default(),
            },
            context_window: u32::try_from(m.entry.context_window).unwrap_or(u32::MAX),
            tags: m.tags.clone(),
        })
        .collect()
}

/// The plugins a configuration names, resolved (a reload reads them again with this).
pub fn plugin_specs(config: &ConfigFile) -> Result<PluginSpecs, ConfigError> {
    config.resolve(|sections, dir| PluginSpecs::from_config(&sections.plugins, dir))
}

/// What an external agent needs to run the team's hooks from inside the sandbox: the bridge's
/// program, the user's `gaffer.toml` (never the worktree's copy), the hooks' components and
/// the compiled-plugin cache, every one shown read-only.
fn hook_bridge(
    project: &Project,
    config: &std::path::Path,
    specs: &PluginSpecs,
) -> Result<HookBridge, AssembleError> {
    let io = |what: &str, e: std::io::Error| AssembleError::Bridge(format!("{what}: {e}"));
    let program = hook_program().map_err(|e| io("the hook bridge's program", e))?;
    let config = std::fs::canonicalize(config).map_err(|e| io("the configuration", e))?;
    let cache_dir = project.plugin_cache_dir();
    std::fs::create_dir_all(&cache_dir).map_err(|e| io("the plugin cache", e))?;
    let mut read_only = vec![
        PathBuf::from(&program[0]),
        config.clone(),
        cache_dir.clone(),
    ];
    for spec in &specs.hooks {
        read_only.push(
            std::fs::canonicalize(&spec.path)
                .map_err(|e| io(&format!("hook `{}`", spec.path.display()), e))?,
        );
    }
    Ok(HookBridge {
        program,
        config,
        read_only,
        cache_dir,
    })
}

/// Build the pipeline of `project` from its `gaffer.toml`. `progress_for` makes the progress
/// display once the number of workers, the ledger and the run id are known.
pub fn assemble(
    project: &Project,
    options: &RunOptions,
    progress_for: impl FnOnce(usize, Arc<Ledger>, &str) -> Arc<dyn Progress>,
) -> Result<Arc<Pipeline>, AssembleError> {
    let config = project.config()?;
    let file = config.path().display().to_string();
    let mut caps = config.resolve(|s, _| Caps::from_config(&s.budget, &s.models))?;
    options.apply_to(&mut caps);
    let gateway_settings = config.resolve(GatewaySettings::from_config)?;
    let specs = plugin_specs(&config)?;
    let mut settings =
        config.resolve(|s, _| PipelineSettings::from_config(s, project.worktrees_dir()))?;
    if let Some(n) = options.workers {
        settings.workers = n;
    }
    settings.implementers = config.resolve(ImplementerSettings::from_config)?;
    settings.max_tasks = options.max_tasks;
    settings.watch = options.watch;
    settings.allow_dirty = options.allow_dirty;
    settings.policy_files = PolicyFiles::new(
        project.root(),
        config.path(),
        specs
            .router
            .iter()
            .chain(&specs.verifier)
            .chain(&specs.hooks)
            .map(|spec| spec.path.clone()),
    );
    let external = settings.implementers.default.is_some()
        || settings
            .implementers
            .per_model
            .values()
            .any(Option::is_some);
    if external && !specs.hooks.is_empty() {
        settings.implementers.bridge = Some(hook_bridge(project, config.path(), &specs)?);
    }
    if options.unconfined {
        tracing::warn!(
            "--unconfined: the agent's commands and the test command run with gaffer's own rights, \
             its network and its files"
        );
        settings.agent.command.sandbox = None;
        settings.test_limits.sandbox = None;
    }

    let repo = Arc::new(Repo::open(project.root())?);
    let store = project.open_store()?;
    let ledger_store: Arc<dyn LedgerStore> = store.clone();
    let ledger = Arc::new(Ledger::new(ledger_store, caps));
    let mut providers = Vec::new();
    for provider in &gateway_settings.providers {
        // A provider no model uses need not have its key set.
        if !gateway_settings
            .models
            .iter()
            .any(|m| m.entry.provider == provider.name)
        {
            continue;
        }
        providers.push(Provider::new(provider.clone()).map_err(|error| {
            AssembleError::Provider {
                file: file.clone(),
                error,
            }
        })?);
    }
    let gateway = Arc::new(Gateway::new(
        providers,
        gateway_settings.models.iter().map(|m| m.entry.clone()),
        ledger.clone(),
    ));
    let run_id = new_run_id();
    let plugin_error = |error| AssembleError::Plugin {
        file: file.clone(),
        error,
    };
    let runtime = PluginRuntime::builder()
        .cache_dir(Some(project.plugin_cache_dir()))
        .models(Arc::new(GatewayModels::new(
            gateway.clone(),
            run_id.clone(),
        )))
        .recorder(Arc::new(LedgerRecorder::new(
            ledger.clone(),
            run_id.clone(),
        )))
        .build()
        .map_err(plugin_error)?;
    let plugins = Arc::new(PluginSet::load(runtime, &specs).map_err(plugin_error)?);
    let progress = progress_for(settings.workers, ledger.clone(), &run_id);
    let backlog: Arc<dyn BacklogStore> = store;
    Ok(Arc::new(
        Pipeline::builder(repo, backlog, ledger, gateway, plugins, settings)
            .models(model_infos(&gateway_settings.models))
            .run_id(run_id)
            .progress(progress)
            .build(),
    ))
}

//! A plugin as configured in `gaffer.toml`: where it is, its limits, its grants, its fail policy.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::Invalid;
use crate::config::schema::{PluginSection, PluginsSection};

/// Which world a plugin implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum World {
    Router,
    Verifier,
    Hook,
}

impl World {
    /// The world's name in the WIT package.
    pub fn name(self) -> &'static str {
        match self {
            World::Router => "router",
            World::Verifier => "verifier",
            World::Hook => "hook",
        }
    }

    /// The fail policy that applies when the configuration says nothing (DESIGN.md, "Fail policy").
    pub fn default_on_failure(self) -> OnFailure {
        match self {
            World::Router => OnFailure::Fallback,
            World::Verifier => OnFailure::NeedsHuman,
            World::Hook => OnFailure::Deny,
        }
    }

    /// The policies that make sense for this world.
    pub fn allowed_on_failure(self) -> &'static [OnFailure] {
        match self {
            World::Router => &[OnFailure::Fallback, OnFailure::Stop],
            World::Verifier => &[OnFailure::NeedsHuman, OnFailure::Reject, OnFailure::Stop],
            World::Hook => &[OnFailure::Deny, OnFailure::Allow, OnFailure::Stop],
        }
    }
}

impl std::fmt::Display for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What the host decides when a plugin faults (traps, runs out of fuel or time, exceeds its
/// memory, returns an error or malformed output).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnFailure {
    /// Hooks: deny the tool call or change (fail closed). The default for hooks.
    Deny,
    /// Hooks: allow as if the hook were absent (fail open).
    Allow,
    /// Verifiers: the attempt ends as `needs-human`. The default for verifiers.
    NeedsHuman,
    /// Verifiers: reject the attempt with the fault as the reason.
    Reject,
    /// Routers: use `fallback_model`. The default for routers.
    Fallback,
    /// Any world: report the fault to the caller, which stops the attempt.
    Stop,
}

impl OnFailure {
    const ALL: [OnFailure; 6] = [
        OnFailure::Deny,
        OnFailure::Allow,
        OnFailure::NeedsHuman,
        OnFailure::Reject,
        OnFailure::Fallback,
        OnFailure::Stop,
    ];

    /// The policy a `gaffer.toml` name stands for.
    pub fn from_name(name: &str) -> Option<OnFailure> {
        OnFailure::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The name used in `gaffer.toml`.
    pub fn name(self) -> &'static str {
        match self {
            OnFailure::Deny => "deny",
            OnFailure::Allow => "allow",
            OnFailure::NeedsHuman => "needs-human",
            OnFailure::Reject => "reject",
            OnFailure::Fallback => "fallback",
            OnFailure::Stop => "stop",
        }
    }
}

/// What a plugin may use beyond computing.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Grants {
    /// Model keys the plugin may call through the metered `complete` import.
    pub complete: Vec<String>,
    /// Whether the plugin may read the task's worktree (read-only).
    pub files: bool,
}

/// Default fuel for one plugin call: ~0.1–0.3 s of plain compute here, far more than any
/// reference plugin needs (the cost-tier router uses well under 1 M), small enough that a
/// runaway loop ends quickly.
pub const DEFAULT_FUEL_PER_CALL: u64 = 1_000_000_000;
/// Default cumulative fuel for all plugin calls of one task.
pub const DEFAULT_FUEL_PER_TASK: u64 = 50_000_000_000;
/// Default wall-clock deadline of one call for plugins that may not call models.
pub const DEFAULT_DEADLINE_MS: u64 = 2_000;
/// Default wall-clock deadline of one call for plugins granted `complete` (model calls are slow).
pub const DEFAULT_DEADLINE_WITH_MODELS_MS: u64 = 300_000;
/// Default memory cap per instance. Python and JavaScript guests need a few MiB per instance.
pub const DEFAULT_MEMORY_MIB: u64 = 128;
/// Default cap on what one call may return (strings and lists, summed).
pub const DEFAULT_MAX_OUTPUT_BYTES: usize = 256 * 1024;
/// Default number of faults of one plugin after which the run stops.
pub const DEFAULT_MAX_FAULTS: u32 = 5;

/// Limits that apply to every call of one plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Fuel (instructions) allowed to one call.
    pub fuel_per_call: u64,
    /// Cumulative fuel of this plugin's calls within one task. Each plugin has an account of
    /// its own per task ([`super::TaskFuel`] counts per plugin), so one costly hook cannot use
    /// up the router's fuel; the router's `fuel-left-task` is what its own account has left.
    pub fuel_per_task: u64,
    /// Wall-clock deadline of one call, host calls included.
    pub deadline: Duration,
    /// Memory cap of one instance, in bytes.
    pub memory_bytes: u64,
    /// Cap on the bytes of strings and lists that one call may return.
    pub max_output_bytes: usize,
    /// Faults after which calls are refused for the rest of the run.
    pub max_faults: u32,
}

/// A plugin's configuration, resolved and validated.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginSpec {
    pub name: String,
    pub world: World,
    /// Absolute or config-relative path, resolved against the config's directory.
    pub path: PathBuf,
    /// The SHA-256 (hex) the component must have, when the configuration pins it.
    pub sha256: Option<String>,
    pub fallback_model: Option<String>,
    pub limits: Limits,
    pub on_failure: OnFailure,
    pub grants: Grants,
    /// The `config` table as JSON text ("{}" when absent).
    pub config_json: String,
}

impl PluginSpec {
    /// A spec with default limits and policy, for `plugin check`, tests and benches.
    pub fn new(world: World, path: impl Into<PathBuf>) -> PluginSpec {
        let path = path.into();
        PluginSpec {
            name: default_name(&path),
            world,
            path,
            sha256: None,
            fallback_model: None,
            limits: Limits {
                fuel_per_call: DEFAULT_FUEL_PER_CALL,
                fuel_per_task: DEFAULT_FUEL_PER_TASK,
                deadline: Duration::from_millis(DEFAULT_DEADLINE_MS),
                memory_bytes: DEFAULT_MEMORY_MIB * 1024 * 1024,
                max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
                max_faults: DEFAULT_MAX_FAULTS,
            },
            on_failure: world.default_on_failure(),
            grants: Grants::default(),
            config_json: "{}".to_string(),
        }
    }

    /// Set the plugin's own configuration from a JSON value.
    pub fn with_config(mut self, config: serde_json::Value) -> PluginSpec {
        self.config_json = config.to_string();
        self
    }

    /// Resolve one plugin's section of `gaffer.toml`. `base_dir` is the directory of
    /// `gaffer.toml`; `section` is the section's key path (`plugins.hooks[0]`), which names it
    /// in refusals.
    pub fn from_config(
        world: World,
        raw: &PluginSection,
        base_dir: &Path,
        section: &str,
    ) -> Result<PluginSpec, Invalid> {
        let key = |field: &str| format!("{section}.{field}");
        let path = raw
            .path
            .as_ref()
            .ok_or_else(|| Invalid::required(key("path")))?;
        let path = base_dir.join(path);
        let name = raw.name.clone().unwrap_or_else(|| default_name(&path));
        let on_failure = match &raw.on_failure {
            None => world.default_on_failure(),
            Some(text) => {
                let allowed: Vec<&str> = world
                    .allowed_on_failure()
                    .iter()
                    .map(|p| p.name())
                    .collect();
                match OnFailure::from_name(text) {
                    Some(policy) if world.allowed_on_failure().contains(&policy) => policy,
                    Some(_) => {
                        return Err(Invalid::new(
                            key("on_failure"),
                            format!(
                                "\"{text}\" does not apply to a {world}; use one of {}",
                                allowed.join(", ")
                            ),
                        ));
                    }
                    None => return Err(Invalid::unknown_value(key("on_failure"), text, &allowed)),
                }
            }
        };
        if world == World::Router
            && on_failure == OnFailure::Fallback
            && raw.fallback_model.is_none()
        {
            return Err(Invalid::new(
                section,
                "a router needs `fallback_model` (the model used when the router faults), \
                 or on_failure = \"stop\"",
            ));
        }
        if world != World::Router && raw.fallback_model.is_some() {
            return Err(Invalid::new(
                key("fallback_model"),
                "applies only to the router",
            ));
        }
        if let Some(hash) = &raw.sha256
            && (hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(Invalid::new(
                key("sha256"),
                format!("`{hash}` is not a SHA-256 in hex (64 hexadecimal digits)"),
            ));
        }
        let positive = |field: &str, value: Option<u64>, default: u64| -> Result<u64, Invalid> {
            match value {
                Some(0) => Err(Invalid::new(key(field), "must be greater than 0")),
                Some(v) => Ok(v),
                None => Ok(default),
            }
        };
        let default_deadline = if raw.grants.complete.is_empty() {
            DEFAULT_DEADLINE_MS
        } else {
            DEFAULT_DEADLINE_WITH_MODELS_MS
        };
        let fuel_per_call = positive("fuel_per_call", raw.fuel_per_call, DEFAULT_FUEL_PER_CALL)?;
        let fuel_per_task = positive("fuel_per_task", raw.fuel_per_task, DEFAULT_FUEL_PER_TASK)?;
        let deadline_ms = positive("deadline_ms", raw.deadline_ms, default_deadline)?;
        let memory_mib = positive("memory_mib", raw.memory_mib, DEFAULT_MEMORY_MIB)?;
        let max_output = positive(
            "max_output_bytes",
            raw.max_output_bytes.map(|v| v as u64),
            DEFAULT_MAX_OUTPUT_BYTES as u64,
        )?;
        let max_faults = positive(
            "max_faults",
            raw.max_faults.map(u64::from),
            DEFAULT_MAX_FAULTS.into(),
        )?;
        let config_json = match &raw.config {
            Some(table) => serde_json::to_string(table).map_err(|e| {
                Invalid::new(key("config"), format!("cannot be expressed as JSON: {e}"))
            })?,
            None => "{}".to_string(),
        };
        Ok(PluginSpec {
            name,
            world,
            path,
            sha256: raw.sha256.as_ref().map(|h| h.to_ascii_lowercase()),
            fallback_model: raw.fallback_model.clone(),
            limits: Limits {
                fuel_per_call,
                fuel_per_task,
                deadline: Duration::from_millis(deadline_ms),
                memory_bytes: memory_mib.saturating_mul(1024 * 1024),
                max_output_bytes: usize::try_from(max_output).unwrap_or(usize::MAX),
                max_faults: u32::try_from(max_faults).unwrap_or(u32::MAX),
            },
            on_failure,
            grants: Grants {
                complete: raw.grants.complete.clone(),
                files: raw.grants.files,
            },
            config_json,
        })
    }
}

fn default_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// All plugins of a configuration, resolved.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PluginSpecs {
    pub router: Option<PluginSpec>,
    pub verifier: Option<PluginSpec>,
    pub hooks: Vec<PluginSpec>,
}

impl PluginSpecs {
    /// Resolve the `[plugins]` section; `base_dir` is the directory of `gaffer.toml`.
    pub fn from_config(raw: &PluginsSection, base_dir: &Path) -> Result<PluginSpecs, Invalid> {
        let router = raw
            .router
            .as_ref()
            .map(|r| PluginSpec::from_config(World::Router, r, base_dir, "plugins.router"))
            .transpose()?;
        let verifier = raw
            .verifier
            .as_ref()
            .map(|v| PluginSpec::from_config(World::Verifier, v, base_dir, "plugins.verifier"))
            .transpose()?;
        let hooks = raw
            .hooks
            .iter()
            .enumerate()
            .map(|(i, h)| {
                PluginSpec::from_config(World::Hook, h, base_dir, &format!("plugins.hooks[{i}]"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut names = BTreeMap::new();
        let sections = raw
            .router
            .iter()
            .map(|_| "plugins.router".to_string())
            .chain(raw.verifier.iter().map(|_| "plugins.verifier".to_string()))
            .chain((0..raw.hooks.len()).map(|i| format!("plugins.hooks[{i}]")));
        for (spec, section) in router
            .iter()
            .chain(verifier.iter())
            .chain(hooks.iter())
            .zip(sections)
        {
            if let Some(previous) = names.insert(spec.name.clone(), spec.world) {
                return Err(Invalid::new(
                    section,
                    format!(
                        "two plugins are named `{}` (a {previous} and a {}); give one a `name`",
                        spec.name, spec.world
                    ),
                ));
            }
        }
        Ok(PluginSpecs {
            router,
            verifier,
            hooks,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<PluginSpecs, crate::config::ConfigError> {
        let file =
            crate::config::ConfigFile::parse(Path::new("/project/gaffer.toml"), text.to_string())?;
        file.resolve(|s, base| PluginSpecs::from_config(&s.plugins, base))
    }

    #[test]
    fn defaults_follow_the_design_fail_policy() {
        let specs = parse(
            r#"
            [plugins.router]
            path = "plugins/cost-tier.wasm"
            fallback_model = "cheap"
            [plugins.verifier]
            path = "/abs/verifier.wasm"
            [[plugins.hooks]]
            path = "hooks/protected.wasm"
            config = { globs = [".env"] }
            "#,
        )
        .unwrap();
        let router = specs.router.unwrap();
        assert_eq!(router.on_failure, OnFailure::Fallback);
        assert_eq!(
            router.path,
            PathBuf::from("/project/plugins/cost-tier.wasm")
        );
        assert_eq!(router.name, "cost-tier");
        assert_eq!(router.limits.deadline, Duration::from_millis(2_000));
        assert_eq!(specs.verifier.unwrap().on_failure, OnFailure::NeedsHuman);
        let hook = &specs.hooks[0];
        assert_eq!(hook.on_failure, OnFailure::Deny);
        assert_eq!(hook.config_json, r#"{"globs":[".env"]}"#);
    }

    #[test]
    fn router_without_fallback_is_refused_with_the_section() {
        let err = parse("[plugins.router]\npath = \"r.wasm\"\n").unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("/project/gaffer.toml:1: `plugins.router`: "),
            "{text}"
        );
        assert!(text.contains("fallback_model"), "{text}");
    }

    #[test]
    fn policy_that_does_not_fit_the_world_is_refused() {
        let err = parse("[[plugins.hooks]]\npath = \"h.wasm\"\non_failure = \"fallback\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains(":3: `plugins.hooks[0].on_failure`"), "{err}");
        assert!(err.contains("deny, allow, stop"), "{err}");
        let err = parse("[[plugins.hooks]]\npath = \"h.wasm\"\non_failure = \"dney\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("did you mean `deny`?"), "{err}");
    }

    #[test]
    fn zero_limits_are_refused() {
        let err = parse("[[plugins.hooks]]\npath = \"h.wasm\"\nfuel_per_call = 0\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(":3: `plugins.hooks[0].fuel_per_call`: must be greater than 0"),
            "{err}"
        );
        let err = parse("[[plugins.hooks]]\nsha256 = \"abc\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`plugins.hooks[0].path`: is required"),
            "{err}"
        );
    }

    #[test]
    fn model_grants_lengthen_the_default_deadline() {
        let specs =
            parse("[plugins.verifier]\npath = \"v.wasm\"\ngrants = { complete = [\"cheap\"] }\n")
                .unwrap();
        assert_eq!(
            specs.verifier.unwrap().limits.deadline,
            Duration::from_millis(300_000)
        );
    }

    #[test]
    fn duplicate_names_are_refused() {
        let err = parse(
            "[[plugins.hooks]]\npath = \"a/x.wasm\"\n[[plugins.hooks]]\npath = \"b/x.wasm\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("two plugins are named `x`"), "{err}");
    }
}

//! `gaffer.toml`: the one file a run needs. Each room owns the meaning of its section; this
//! module, at the composition root, reads the file and resolves budgets, providers and models
//! (with their prices) into the gateway's and ledger's types.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::gateway::catalog::PriceCatalog;
use crate::gateway::metered::{ModelEntry, Pricing};
use crate::gateway::openai::MaxTokensField;
use crate::gateway::provider::{ProviderConfig, ProviderKind};
use crate::ledger::money::{AmountError, parse_dollars, parse_price_per_million};
use crate::ledger::{Caps, Electricity, MicroUsd, Prices};

/// A configuration that cannot be used; names the file and the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: {reason}")]
    Invalid { file: String, reason: String },
    #[error("{file}: `{field}`: {error}")]
    Amount {
        file: String,
        field: String,
        error: AmountError,
    },
    #[error(
        "{file}: model `{model}` (id `{id}` on provider `{provider}`) has no price. Add \
         `prices = {{ input = ..., output = ... }}` (dollars per million tokens) to [models.{model}], \
         or point `[prices] file` at a price file in LiteLLM's format; gaffer never counts a model as free"
    )]
    Unpriced {
        file: String,
        model: String,
        id: String,
        provider: String,
    },
}

pub use crate::ledger::money::Dollars;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetToml {
    pub per_call: Option<Dollars>,
    pub per_attempt: Option<Dollars>,
    pub per_task: Option<Dollars>,
    pub per_run: Option<Dollars>,
    pub per_day: Option<Dollars>,
    pub per_month: Option<Dollars>,
    /// Per model key, for the current month.
    #[serde(default)]
    pub per_model: BTreeMap<String, Dollars>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderToml {
    pub kind: ProviderKind,
    pub base_url: Option<String>,
    pub api_key_env: Option<String>,
    pub max_tokens_field: Option<MaxTokensField>,
    pub timeout_secs: Option<u64>,
    pub max_retries: Option<usize>,
    pub max_total_secs: Option<u64>,
    pub concurrency: Option<usize>,
    /// A local model's power draw: its calls are priced by electricity.
    pub watts: Option<u64>,
    pub usd_per_kwh: Option<Dollars>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PricesToml {
    pub input: Dollars,
    pub output: Dollars,
    pub cache_read: Option<Dollars>,
    pub cache_write: Option<Dollars>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelToml {
    pub provider: String,
    pub id: String,
    #[serde(default = "default_tier")]
    pub tier: u8,
    pub max_tokens: Option<u32>,
    pub context_window: Option<u64>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Dollars per million tokens; overrides the catalog.
    pub prices: Option<PricesToml>,
    /// Models of the same tier on other providers, tried in order when this one's provider fails.
    #[serde(default)]
    pub fallbacks: Vec<String>,
}

fn default_tier() -> u8 {
    1
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceFileToml {
    /// A price file in LiteLLM's format, relative to gaffer.toml; its entries override the
    /// built-in catalog.
    pub file: Option<PathBuf>,
}

/// The sections of `gaffer.toml` this module resolves; the others are read by their rooms.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ConfigToml {
    #[serde(default)]
    pub budget: BudgetToml,
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderToml>,
    #[serde(default)]
    pub models: BTreeMap<String, ModelToml>,
    #[serde(default)]
    pub prices: PriceFileToml,
    #[serde(default)]
    pub project: crate::pipeline::settings::ProjectToml,
    #[serde(default)]
    pub agent: crate::pipeline::settings::AgentToml,
    #[serde(default)]
    pub run: crate::pipeline::settings::RunToml,
    #[serde(default)]
    pub economics: crate::report::ledger_report::EconomicsToml,
}

/// Where a model's price comes from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PriceSource {
    Config,
    Catalog(String),
    Electricity,
}

/// A model resolved for the gateway, with what the router sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedModel {
    pub entry: ModelEntry,
    pub tier: u8,
    pub tags: Vec<String>,
    pub price_source: PriceSource,
}

/// Everything resolved.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub caps: Caps,
    pub providers: Vec<ProviderConfig>,
    pub models: Vec<ResolvedModel>,
    pub catalog_source: String,
    pub project: crate::pipeline::settings::ProjectToml,
    pub agent: crate::pipeline::settings::AgentToml,
    pub run: crate::pipeline::settings::RunToml,
    pub economics: crate::report::ledger_report::EconomicsToml,
}

fn amount(
    file: &str,
    field: &str,
    value: &Dollars,
    parse: fn(&str) -> Result<MicroUsd, AmountError>,
) -> Result<MicroUsd, ConfigError> {
    parse(&value.text()).map_err(|error| ConfigError::Amount {
        file: file.to_string(),
        field: field.to_string(),
        error,
    })
}

/// Read and resolve `path`.
pub fn load(path: &Path) -> Result<Resolved, ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Invalid {
        file: file.clone(),
        reason: e.to_string(),
    })?;
    let raw: ConfigToml = toml::from_str(&text).map_err(|e| ConfigError::Invalid {
        file: file.clone(),
        reason: e.to_string(),
    })?;
    resolve(&raw, path.parent().unwrap_or(Path::new(".")), &file)
}

/// Resolve a parsed configuration; `base` is the directory of the file.
pub fn resolve(raw: &ConfigToml, base: &Path, file: &str) -> Result<Resolved, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid {
        file: file.to_string(),
        reason,
    };
    let b = &raw.budget;
    let cap = |name: &str, v: &Option<Dollars>| -> Result<Option<MicroUsd>, ConfigError> {
        v.as_ref()
            .map(|d| amount(file, &format!("budget.{name}"), d, parse_dollars))
            .transpose()
    };
    let mut per_model_month = BTreeMap::new();
    for (model, dollars) in &b.per_model {
        if !raw.models.contains_key(model) {
            return Err(invalid(format!(
                "`budget.per_model.{model}` names a model that is not configured"
            )));
        }
        per_model_month.insert(
            model.clone(),
            amount(
                file,
                &format!("budget.per_model.{model}"),
                dollars,
                parse_dollars,
            )?,
        );
    }
    let caps = Caps {
        per_call: cap("per_call", &b.per_call)?,
        per_attempt: cap("per_attempt", &b.per_attempt)?,
        per_task: cap("per_task", &b.per_task)?,
        per_run: cap("per_run", &b.per_run)?,
        per_day: cap("per_day", &b.per_day)?,
        per_month: cap("per_month", &b.per_month)?,
        per_model_month,
    };

    let mut catalog = PriceCatalog::built_in().map_err(|e| invalid(e.to_string()))?;
    if let Some(price_file) = &raw.prices.file {
        let path = if price_file.is_absolute() {
            price_file.clone()
        } else {
            base.join(price_file)
        };
        let theirs = PriceCatalog::from_litellm_file(&path).map_err(|e| invalid(e.to_string()))?;
        catalog = catalog.overlay(theirs);
    }

    let mut providers = Vec::new();
    let mut electricity = BTreeMap::new();
    for (name, p) in &raw.providers {
        let base_url = match (&p.base_url, p.kind) {
            (Some(url), _) => url.clone(),
            (None, ProviderKind::Anthropic) => "https://api.anthropic.com".to_string(),
            (None, ProviderKind::OpenaiCompatible) => "https://api.openai.com/v1".to_string(),
        };
        let mut config = ProviderConfig::new(name.clone(), p.kind, base_url);
        config.api_key_env = p.api_key_env.clone();
        if let Some(field) = p.max_tokens_field {
            config.max_tokens_field = field;
        }
        if let Some(secs) = p.timeout_secs {
            config.request_timeout = Duration::from_secs(secs);
        }
        if let Some(n) = p.max_retries {
            config.max_retries = n;
        }
        if let Some(secs) = p.max_total_secs {
            config.max_total_time = Duration::from_secs(secs);
        }
        if let Some(n) = p.concurrency {
            config.concurrency = n;
        }
        match (p.watts, &p.usd_per_kwh) {
            (Some(watts), Some(price)) => {
                let micro_usd_per_kwh = amount(
                    file,
                    &format!("providers.{name}.usd_per_kwh"),
                    price,
                    parse_dollars,
                )?;
                electricity.insert(
                    name.clone(),
                    Electricity {
                        watts,
                        micro_usd_per_kwh,
                    },
                );
            }
            (None, None) => {}
            _ => {
                return Err(invalid(format!(
                    "[providers.{name}] needs both `watts` and `usd_per_kwh` to price its models by electricity"
                )));
            }
        }
        providers.push(config);
    }

    let mut models = Vec::new();
    for (key, m) in &raw.models {
        let Some(provider) = raw.providers.get(&m.provider) else {
            return Err(invalid(format!(
                "[models.{key}] names provider `{}`, which has no [providers.{}] section",
                m.provider, m.provider
            )));
        };
        let provider_name = match provider.kind {
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::OpenaiCompatible => "openai",
        };
        let catalog_entry = catalog.lookup(Some(provider_name), &m.id);
        let (pricing, price_source) = if let Some(prices) = &m.prices {
            let field = |f: &str| format!("models.{key}.prices.{f}");
            let input = amount(
                file,
                &field("input"),
                &prices.input,
                parse_price_per_million,
            )?;
            let p = Prices {
                input,
                output: amount(
                    file,
                    &field("output"),
                    &prices.output,
                    parse_price_per_million,
                )?,
                cache_read: prices
                    .cache_read
                    .as_ref()
                    .map(|d| amount(file, &field("cache_read"), d, parse_price_per_million))
                    .transpose()?
                    .unwrap_or(input),
                cache_write: prices
                    .cache_write
                    .as_ref()
                    .map(|d| amount(file, &field("cache_write"), d, parse_price_per_million))
                    .transpose()?
                    .unwrap_or(input),
            };
            (Pricing::Tokens(p), PriceSource::Config)
        } else if let Some(power) = electricity.get(&m.provider) {
            (Pricing::Electricity(*power), PriceSource::Electricity)
        } else if let Some(entry) = catalog_entry {
            (
                Pricing::Tokens(entry.prices),
                PriceSource::Catalog(catalog.source.clone()),
            )
        } else {
            return Err(ConfigError::Unpriced {
                file: file.to_string(),
                model: key.clone(),
                id: m.id.clone(),
                provider: m.provider.clone(),
            });
        };
        let max_tokens = m
            .max_tokens
            .or_else(|| {
                catalog_entry
                    .and_then(|e| e.max_output_tokens)
                    .and_then(|t| u32::try_from(t).ok())
            })
            .unwrap_or(8_192);
        let context_window = m
            .context_window
            .or_else(|| catalog_entry.and_then(|e| e.max_input_tokens))
            .unwrap_or(128_000);
        for fallback in &m.fallbacks {
            match raw.models.get(fallback) {
                None => {
                    return Err(invalid(format!(
                        "[models.{key}] falls back to `{fallback}`, which is not configured"
                    )));
                }
                Some(other) if other.tier != m.tier => {
                    return Err(invalid(format!(
                        "[models.{key}] (tier {}) falls back to `{fallback}` (tier {}): a fallback must be the same class of model",
                        m.tier, other.tier
                    )));
                }
                Some(_) => {}
            }
        }
        models.push(ResolvedModel {
            entry: ModelEntry {
                key: key.clone(),
                provider: m.provider.clone(),
                id: m.id.clone(),
                pricing,
                max_tokens,
                context_window,
                fallbacks: m.fallbacks.clone(),
            },
            tier: m.tier,
            tags: m.tags.clone(),
            price_source,
        });
    }
    Ok(Resolved {
        caps,
        providers,
        models,
        catalog_source: catalog.source,
        project: raw.project.clone(),
        agent: raw.agent.clone(),
        run: raw.run.clone(),
        economics: raw.economics.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Resolved, ConfigError> {
        let raw: ConfigToml = toml::from_str(text).map_err(|e| ConfigError::Invalid {
            file: "gaffer.toml".into(),
            reason: e.to_string(),
        })?;
        resolve(&raw, Path::new("/project"), "gaffer.toml")
    }

    const BASE: &str = r#"
        [budget]
        per_task = 2.00
        per_run = "20"
        per_month = 500
        [providers.anthropic]
        kind = "anthropic"
        api_key_env = "ANTHROPIC_API_KEY"
        [providers.local]
        kind = "openai-compatible"
        base_url = "http://127.0.0.1:11434/v1"
        watts = 350
        usd_per_kwh = 0.30
        [models.cheap]
        provider = "anthropic"
        id = "claude-haiku-4-5"
        tier = 1
        [models.strong]
        provider = "anthropic"
        id = "claude-opus-4-5"
        tier = 3
        max_tokens = 16000
        [models.mine]
        provider = "anthropic"
        id = "my-fine-tune"
        prices = { input = 0.80, output = 4.00, cache_read = 0.08 }
        [models.local]
        provider = "local"
        id = "qwen2.5-coder:7b"
    "#;

    #[test]
    fn budgets_are_exact_micro_dollars() {
        let r = parse(BASE).unwrap();
        assert_eq!(r.caps.per_task, Some(2_000_000));
        assert_eq!(r.caps.per_run, Some(20_000_000));
        assert_eq!(r.caps.per_month, Some(500_000_000));
        assert_eq!(r.caps.per_day, None);
    }

    #[test]
    fn models_are_priced_from_config_catalog_or_electricity() {
        let r = parse(BASE).unwrap();
        let model = |k: &str| r.models.iter().find(|m| m.entry.key == k).unwrap();
        // Catalog: litellm's 0.000001 / 0.000005 / 0.0000001 / 0.00000125 $ per token.
        assert_eq!(
            model("cheap").entry.pricing,
            Pricing::Tokens(Prices {
                input: 1_000_000,
                output: 5_000_000,
                cache_read: 100_000,
                cache_write: 1_250_000
            })
        );
        assert!(matches!(
            model("cheap").price_source,
            PriceSource::Catalog(_)
        ));
        assert_eq!(model("cheap").entry.max_tokens, 64_000, "from the catalog");
        assert_eq!(model("strong").entry.max_tokens, 16_000, "from the config");
        // Config: $0.80 / $4.00 / $0.08 per Mtok; no cache-write price → the input price.
        assert_eq!(
            model("mine").entry.pricing,
            Pricing::Tokens(Prices {
                input: 800_000,
                output: 4_000_000,
                cache_read: 80_000,
                cache_write: 800_000
            })
        );
        assert_eq!(
            model("local").entry.pricing,
            Pricing::Electricity(Electricity {
                watts: 350,
                micro_usd_per_kwh: 300_000
            })
        );
    }

    #[test]
    fn an_unpriced_model_is_refused_with_how_to_price_it() {
        let text = format!(
            "{BASE}\n[models.mystery]\nprovider = \"anthropic\"\nid = \"claude-unknown-9\"\n"
        );
        let error = parse(&text).unwrap_err().to_string();
        assert!(
            error.contains(
                "model `mystery` (id `claude-unknown-9` on provider `anthropic`) has no price"
            ),
            "{error}"
        );
        assert!(
            error.contains("prices = { input = ..., output = ... }"),
            "{error}"
        );
        assert!(error.contains("never counts a model as free"), "{error}");
    }

    #[test]
    fn bad_amounts_and_references_name_the_field() {
        let error = parse(&BASE.replace("per_task = 2.00", "per_task = 0.0000001"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "gaffer.toml: `budget.per_task`: `0.0000001` is more precise than a micro-dollar"
        );
        let error = parse(&BASE.replace("per_task = 2.00", "per_task = -2"))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("`budget.per_task`") && error.contains("negative"),
            "{error}"
        );
        let error = parse(&format!(
            "{BASE}\n[models.x]\nprovider = \"nope\"\nid = \"y\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("[models.x] names provider `nope`"),
            "{error}"
        );
        let error = parse(&BASE.replace("watts = 350\n", ""))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("needs both `watts` and `usd_per_kwh`"),
            "{error}"
        );
        let error = parse(&BASE.replace("tier = 3\n", "tier = 3\nfallbacks = [\"cheap\"]\n"))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("a fallback must be the same class of model"),
            "{error}"
        );
        let error = parse("[budget]\nper_tsk = 1\n").unwrap_err().to_string();
        assert!(error.contains("unknown field `per_tsk`"), "{error}");
    }
}

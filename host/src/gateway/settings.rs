//! `[providers]`, `[models]` and `[prices]` of `gaffer.toml`, resolved: each provider with its
//! wire format and limits, each model with its price (from the file, the catalog, or the power a
//! local model draws). gaffer never counts a model as free: an unpriced model is refused.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::catalog::PriceCatalog;
use super::metered::{ModelEntry, Pricing};
use super::openai::MaxTokensField;
use super::provider::{ProviderConfig, ProviderKind};
use crate::config::Invalid;
use crate::config::schema::{GafferToml, ModelSection, ProviderSection};
use crate::ledger::{Electricity, Prices, dollars_at, price_at};

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

/// The gateway's part of a configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewaySettings {
    pub providers: Vec<ProviderConfig>,
    pub models: Vec<ResolvedModel>,
    /// Where catalog prices come from (the built-in catalog, or it overlaid with a file).
    pub catalog_source: String,
}

/// A model's output cap when neither the file nor the catalog gives one.
const DEFAULT_MAX_TOKENS: u32 = 8_192;
/// A model's context window when neither the file nor the catalog gives one.
const DEFAULT_CONTEXT_WINDOW: u64 = 128_000;

impl GatewaySettings {
    /// Resolve the providers and models of a configuration; `base` is the directory of
    /// `gaffer.toml` (a price file is relative to it).
    pub fn from_config(file: &GafferToml, base: &Path) -> Result<GatewaySettings, Invalid> {
        let mut catalog =
            PriceCatalog::built_in().map_err(|e| Invalid::new("prices", e.to_string()))?;
        if let Some(price_file) = &file.prices.file {
            let path = base.join(price_file);
            let theirs = PriceCatalog::from_litellm_file(&path)
                .map_err(|e| Invalid::new("prices.file", e.to_string()))?;
            catalog = catalog.overlay(theirs);
        }
        let mut providers = Vec::new();
        let mut electricity = BTreeMap::new();
        for (name, section) in &file.providers {
            let (config, power) = provider(name, section)?;
            if let Some(power) = power {
                electricity.insert(name.clone(), power);
            }
            providers.push(config);
        }
        let mut models = Vec::new();
        for (key, section) in &file.models {
            models.push(model(key, section, file, &catalog, &electricity)?);
        }
        Ok(GatewaySettings {
            providers,
            models,
            catalog_source: catalog.source,
        })
    }
}

/// A value that must be above zero: zero would mean no limit or no work, never what was meant.
fn positive<T: PartialOrd + Default + std::fmt::Display + Copy>(
    key: String,
    value: Option<T>,
) -> Result<Option<T>, Invalid> {
    match value {
        Some(v) if v <= T::default() => {
            Err(Invalid::new(key, format!("{v} must be greater than 0")))
        }
        other => Ok(other),
    }
}

fn provider(
    name: &str,
    section: &ProviderSection,
) -> Result<(ProviderConfig, Option<Electricity>), Invalid> {
    let key = |field: &str| format!("providers.{name}.{field}");
    let kind_name = section
        .kind
        .as_deref()
        .ok_or_else(|| Invalid::required(key("kind")))?;
    let kind = ProviderKind::from_name(kind_name)
        .ok_or_else(|| Invalid::unknown_value(key("kind"), kind_name, ProviderKind::NAMES))?;
    let base_url = match &section.base_url {
        Some(url) => {
            reqwest::Url::parse(url)
                .map_err(|e| Invalid::new(key("base_url"), format!("`{url}` is not a URL: {e}")))?;
            url.clone()
        }
        None => kind.default_base_url().to_string(),
    };
    let mut config = ProviderConfig::new(name, kind, base_url);
    config.api_key_env = section.api_key_env.clone();
    if let Some(field) = &section.max_tokens_field {
        config.max_tokens_field = MaxTokensField::from_name(field).ok_or_else(|| {
            Invalid::unknown_value(key("max_tokens_field"), field, MaxTokensField::NAMES)
        })?;
    }
    if let Some(secs) = positive(key("timeout_secs"), section.timeout_secs)? {
        config.request_timeout = Duration::from_secs(secs);
    }
    if let Some(n) = section.max_retries {
        config.max_retries = n;
    }
    if let Some(secs) = positive(key("max_total_secs"), section.max_total_secs)? {
        config.max_total_time = Duration::from_secs(secs);
    }
    if let Some(n) = positive(key("concurrency"), section.concurrency)? {
        config.concurrency = n;
    }
    let power = match (positive(key("watts"), section.watts)?, &section.usd_per_kwh) {
        (Some(watts), Some(price)) => Some(Electricity {
            watts,
            micro_usd_per_kwh: dollars_at(&key("usd_per_kwh"), price)?,
        }),
        (None, None) => None,
        _ => {
            return Err(Invalid::new(
                format!("providers.{name}"),
                "needs both `watts` and `usd_per_kwh` to price its models by electricity",
            ));
        }
    };
    Ok((config, power))
}

fn model(
    key: &str,
    section: &ModelSection,
    file: &GafferToml,
    catalog: &PriceCatalog,
    electricity: &BTreeMap<String, Electricity>,
) -> Result<ResolvedModel, Invalid> {
    let field = |f: &str| format!("models.{key}.{f}");
    let provider_name = section
        .provider
        .as_deref()
        .ok_or_else(|| Invalid::required(field("provider")))?;
    let id = section
        .id
        .as_deref()
        .ok_or_else(|| Invalid::required(field("id")))?;
    let Some(provider) = file.providers.get(provider_name) else {
        return Err(Invalid::new(
            field("provider"),
            format!(
                "names provider `{provider_name}`, which has no [providers.{provider_name}] section"
            ),
        ));
    };
    let tier = section.tier.unwrap_or(1);
    if tier == 0 {
        return Err(Invalid::new(
            field("tier"),
            "tiers start at 1 (the cheapest class)",
        ));
    }
    let catalog_provider = match provider.kind.as_deref().and_then(ProviderKind::from_name) {
        Some(ProviderKind::Anthropic) => "anthropic",
        _ => "openai",
    };
    let catalog_entry = catalog.lookup(Some(catalog_provider), id);
    let (pricing, price_source) = if let Some(prices) = &section.prices {
        let input = price_at(&field("prices.input"), &prices.input)?;
        let optional = |name: &str, value: &Option<crate::config::Dollars>| {
            value
                .as_ref()
                .map(|d| price_at(&field(&format!("prices.{name}")), d))
                .transpose()
        };
        let p = Prices {
            input,
            output: price_at(&field("prices.output"), &prices.output)?,
            cache_read: optional("cache_read", &prices.cache_read)?.unwrap_or(input),
            cache_write: optional("cache_write", &prices.cache_write)?.unwrap_or(input),
        };
        (Pricing::Tokens(p), PriceSource::Config)
    } else if let Some(power) = electricity.get(provider_name) {
        (Pricing::Electricity(*power), PriceSource::Electricity)
    } else if let Some(entry) = catalog_entry {
        (
            Pricing::Tokens(entry.prices),
            PriceSource::Catalog(catalog.source.clone()),
        )
    } else {
        return Err(Invalid::new(
            format!("models.{key}"),
            format!(
                "model `{key}` (id `{id}` on provider `{provider_name}`) has no price. Add \
                 `prices = {{ input = ..., output = ... }}` (dollars per million tokens) to \
                 [models.{key}], or point `[prices] file` at a price file in LiteLLM's format; \
                 gaffer never counts a model as free"
            ),
        ));
    };
    let max_tokens = match positive(field("max_tokens"), section.max_tokens)? {
        Some(n) => n,
        None => catalog_entry
            .and_then(|e| e.max_output_tokens)
            .and_then(|t| u32::try_from(t).ok())
            .unwrap_or(DEFAULT_MAX_TOKENS),
    };
    let context_window = match positive(field("context_window"), section.context_window)? {
        Some(n) => n,
        None => catalog_entry
            .and_then(|e| e.max_input_tokens)
            .unwrap_or(DEFAULT_CONTEXT_WINDOW),
    };
    for (i, fallback) in section.fallbacks.iter().enumerate() {
        match file.models.get(fallback) {
            None => {
                return Err(Invalid::new(
                    format!("models.{key}.fallbacks[{i}]"),
                    format!("falls back to `{fallback}`, which is not configured"),
                ));
            }
            Some(other) if other.tier.unwrap_or(1) != tier => {
                return Err(Invalid::new(
                    format!("models.{key}.fallbacks[{i}]"),
                    format!(
                        "tier {tier} falls back to `{fallback}` (tier {}): a fallback must be the same class of model",
                        other.tier.unwrap_or(1)
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    Ok(ResolvedModel {
        entry: ModelEntry {
            key: key.to_string(),
            provider: provider_name.to_string(),
            id: id.to_string(),
            pricing,
            max_tokens,
            context_window,
            fallbacks: section.fallbacks.clone(),
        },
        tier,
        tags: section.tags.clone(),
        price_source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConfigError, ConfigFile};
    use crate::ledger::Caps;
    use crate::store::MicroUsd;

    fn parse(text: &str) -> Result<(GatewaySettings, Caps), ConfigError> {
        let file = ConfigFile::parse(Path::new("/project/gaffer.toml"), text.to_string())?;
        let gateway = file.resolve(GatewaySettings::from_config)?;
        let caps = file.resolve(|s, _| Caps::from_config(&s.budget, &s.models))?;
        Ok((gateway, caps))
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
        let (_, caps) = parse(BASE).unwrap();
        assert_eq!(caps.per_task, Some(MicroUsd(2_000_000)));
        assert_eq!(caps.per_run, Some(MicroUsd(20_000_000)));
        assert_eq!(caps.per_month, Some(MicroUsd(500_000_000)));
        assert_eq!(caps.per_day, None);
    }

    #[test]
    fn models_are_priced_from_config_catalog_or_electricity() {
        let (r, _) = parse(BASE).unwrap();
        let model = |k: &str| r.models.iter().find(|m| m.entry.key == k).unwrap();
        // Catalog: litellm's 0.000001 / 0.000005 / 0.0000001 / 0.00000125 $ per token.
        assert_eq!(
            model("cheap").entry.pricing,
            Pricing::Tokens(Prices {
                input: MicroUsd(1_000_000),
                output: MicroUsd(5_000_000),
                cache_read: MicroUsd(100_000),
                cache_write: MicroUsd(1_250_000)
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
                input: MicroUsd(800_000),
                output: MicroUsd(4_000_000),
                cache_read: MicroUsd(80_000),
                cache_write: MicroUsd(800_000)
            })
        );
        assert_eq!(
            model("local").entry.pricing,
            Pricing::Electricity(Electricity {
                watts: 350,
                micro_usd_per_kwh: MicroUsd(300_000)
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
    fn bad_amounts_and_references_name_the_field_and_line() {
        let error = parse(&BASE.replace("per_task = 2.00", "per_task = 0.0000001"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "/project/gaffer.toml:3: `budget.per_task`: `0.0000001` is more precise than a micro-dollar"
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
            error.contains("`models.x.provider`: names provider `nope`"),
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
        let error = parse(&BASE.replace("kind = \"anthropic\"", "kind = \"antropic\""))
            .unwrap_err()
            .to_string();
        assert!(error.contains("did you mean `anthropic`?"), "{error}");
    }

    #[test]
    fn zeros_are_refused_not_clamped() {
        for (from, to, key) in [
            (
                "max_tokens = 16000",
                "max_tokens = 0",
                "models.strong.max_tokens",
            ),
            ("tier = 3", "tier = 0", "models.strong.tier"),
            ("watts = 350", "watts = 0", "providers.local.watts"),
        ] {
            let error = parse(&BASE.replace(from, to)).unwrap_err().to_string();
            assert!(error.contains(&format!("`{key}`")), "{error}");
        }
        let error = parse(&BASE.replace(
            "api_key_env = \"ANTHROPIC_API_KEY\"",
            "api_key_env = \"ANTHROPIC_API_KEY\"\nconcurrency = 0",
        ))
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("`providers.anthropic.concurrency`"),
            "{error}"
        );
    }
}

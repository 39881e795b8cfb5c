//! Model prices: the built-in catalog (extracted by `scripts/update-prices.py` from the price
//! file inside a pinned `litellm` release on PyPI), and any price file in LiteLLM's
//! `model_prices_and_context_window.json` format, so users keep prices current without waiting
//! for a gaffer release. Prices are read from their decimal text, never through a float.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::ledger::money::{AmountError, parse_price_per_token};
use crate::ledger::{MicroUsd, Prices};

/// The built-in catalog, with its source and date.
const BUILT_IN: &str = include_str!("../../data/prices/litellm.json");

/// A model's entry in a catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogEntry {
    pub prices: Prices,
    pub max_input_tokens: Option<u64>,
    pub max_output_tokens: Option<u64>,
    /// LiteLLM's provider name (`anthropic`, `openai`, ...).
    pub provider: Option<String>,
}

/// A set of model prices and where they came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceCatalog {
    /// Where the figures come from (`litellm 1.110.2 (PyPI), ...`, or a file path).
    pub source: String,
    /// The release date of that source, when known.
    pub released: Option<String>,
    entries: BTreeMap<String, CatalogEntry>,
}

/// A price file that cannot be used; names the file and the model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    #[error("price file {file}: {reason}")]
    File { file: String, reason: String },
    #[error("price file {file}: model `{model}`, field `{field}`: {error}")]
    Price {
        file: String,
        model: String,
        field: &'static str,
        error: AmountError,
    },
}

#[derive(Deserialize)]
struct RawEntry<'a> {
    #[serde(borrow)]
    input_cost_per_token: Option<&'a RawValue>,
    #[serde(borrow)]
    output_cost_per_token: Option<&'a RawValue>,
    #[serde(borrow)]
    cache_read_input_token_cost: Option<&'a RawValue>,
    #[serde(borrow)]
    cache_creation_input_token_cost: Option<&'a RawValue>,
    max_input_tokens: Option<serde_json::Value>,
    max_output_tokens: Option<serde_json::Value>,
    litellm_provider: Option<String>,
}

#[derive(Deserialize)]
struct BuiltIn<'a> {
    source: String,
    released: Option<String>,
    #[serde(borrow)]
    models: BTreeMap<String, &'a RawValue>,
}

/// A number's decimal text, whether the file wrote it as a number or a string.
fn decimal_text(raw: &RawValue) -> &str {
    raw.get().trim().trim_matches('"')
}

fn tokens(value: &Option<serde_json::Value>) -> Option<u64> {
    value.as_ref().and_then(|v| v.as_u64())
}

impl PriceCatalog {
    /// The catalog compiled into gaffer.
    pub fn built_in() -> Result<PriceCatalog, CatalogError> {
        let file = "built-in catalog";
        let parsed: BuiltIn<'_> =
            serde_json::from_str(BUILT_IN).map_err(|e| CatalogError::File {
                file: file.to_string(),
                reason: e.to_string(),
            })?;
        let mut catalog = PriceCatalog::parse_entries(file, parsed.models)?;
        catalog.source = parsed.source;
        catalog.released = parsed.released;
        Ok(catalog)
    }

    /// A file in LiteLLM's `model_prices_and_context_window.json` format.
    pub fn from_litellm_file(path: &Path) -> Result<PriceCatalog, CatalogError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| CatalogError::File {
            file: file.clone(),
            reason: e.to_string(),
        })?;
        let models: BTreeMap<String, &RawValue> =
            serde_json::from_str(&text).map_err(|e| CatalogError::File {
                file: file.clone(),
                reason: e.to_string(),
            })?;
        PriceCatalog::parse_entries(&file, models)
    }

    fn parse_entries(
        file: &str,
        models: BTreeMap<String, &RawValue>,
    ) -> Result<PriceCatalog, CatalogError> {
        let mut entries = BTreeMap::new();
        for (model, raw) in models {
            // LiteLLM's file has a `sample_spec` entry and entries for non-chat things; an
            // entry without both token prices is not a priced chat model.
            let Ok(entry) = serde_json::from_str::<RawEntry<'_>>(raw.get()) else {
                continue;
            };
            let (Some(input), Some(output)) =
                (entry.input_cost_per_token, entry.output_cost_per_token)
            else {
                continue;
            };
            let price = |field: &'static str,
                         raw: Option<&RawValue>|
             -> Result<Option<MicroUsd>, CatalogError> {
                raw.map(|r| {
                    parse_price_per_token(decimal_text(r)).map_err(|error| CatalogError::Price {
                        file: file.to_string(),
                        model: model.clone(),
                        field,
                        error,
                    })
                })
                .transpose()
            };
            let input_price = price("input_cost_per_token", Some(input))?.unwrap_or_default();
            let prices = Prices {
                input: input_price,
                output: price("output_cost_per_token", Some(output))?.unwrap_or_default(),
                // No cache price published: cache reads are not cheaper, cache writes not dearer
                // than plain input, as far as we know.
                cache_read: price(
                    "cache_read_input_token_cost",
                    entry.cache_read_input_token_cost,
                )?
                .unwrap_or(input_price),
                cache_write: price(
                    "cache_creation_input_token_cost",
                    entry.cache_creation_input_token_cost,
                )?
                .unwrap_or(input_price),
            };
            entries.insert(
                model,
                CatalogEntry {
                    prices,
                    max_input_tokens: tokens(&entry.max_input_tokens),
                    max_output_tokens: tokens(&entry.max_output_tokens),
                    provider: entry.litellm_provider,
                },
            );
        }
        Ok(PriceCatalog {
            source: file.to_string(),
            released: None,
            entries,
        })
    }

    /// The entry for a provider's model id, trying `provider/id` (LiteLLM's key for some
    /// providers) and then `id`.
    pub fn lookup(&self, provider: Option<&str>, id: &str) -> Option<&CatalogEntry> {
        provider
            .and_then(|p| self.entries.get(&format!("{p}/{id}")))
            .or_else(|| self.entries.get(id))
    }

    /// Entries of `other` take precedence over this catalog's.
    pub fn overlay(mut self, other: PriceCatalog) -> PriceCatalog {
        self.source = format!("{} + {}", other.source, self.source);
        self.entries.extend(other.entries);
        self
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MicroUsd;

    #[test]
    fn the_built_in_catalog_names_its_source_and_prices_common_models() {
        let catalog = PriceCatalog::built_in().unwrap();
        assert_eq!(
            catalog.source,
            "litellm 1.110.2 (PyPI), litellm/model_prices_and_context_window_backup.json"
        );
        assert_eq!(catalog.released.as_deref(), Some("2026-11-20"));
        assert!(catalog.len() > 1_000);
        // The file says 0.000001 / 0.000005 / 0.0000001 / 0.00000125 $ per token for
        // claude-haiku-4-5: × 10¹² = µ$ per million tokens.
        let haiku = catalog
            .lookup(Some("anthropic"), "claude-haiku-4-5")
            .unwrap();
        assert_eq!(
            haiku.prices,
            Prices {
                input: MicroUsd(1_000_000),
                output: MicroUsd(5_000_000),
                cache_read: MicroUsd(100_000),
                cache_write: MicroUsd(1_250_000)
            }
        );
        assert_eq!(haiku.max_output_tokens, Some(64_000));
    }

    #[test]
    fn a_litellm_format_file_overrides_with_exact_decimals() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prices.json");
        std::fs::write(
            &path,
            r#"{"sample_spec": {"input_cost_per_token": "price per token"},
                "my-model": {"input_cost_per_token": 3e-06, "output_cost_per_token": 1.5e-05,
                             "cache_read_input_token_cost": 3e-07, "max_input_tokens": 100000,
                             "litellm_provider": "openai", "mode": "chat"},
                "embed": {"input_cost_per_token": 1e-07, "mode": "embedding"}}"#,
        )
        .unwrap();
        let mine = PriceCatalog::from_litellm_file(&path).unwrap();
        let entry = mine.lookup(None, "my-model").unwrap();
        // No cache-write price given: priced as plain input.
        assert_eq!(
            entry.prices,
            Prices {
                input: MicroUsd(3_000_000),
                output: MicroUsd(15_000_000),
                cache_read: MicroUsd(300_000),
                cache_write: MicroUsd(3_000_000)
            }
        );
        assert!(
            mine.lookup(None, "embed").is_none(),
            "no output price: not a chat model"
        );
        let merged = PriceCatalog::built_in().unwrap().overlay(mine);
        assert!(merged.lookup(None, "my-model").is_some());
        assert!(merged.lookup(None, "claude-haiku-4-5").is_some());
    }

    #[test]
    fn a_bad_price_names_file_model_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prices.json");
        std::fs::write(
            &path,
            r#"{"m": {"input_cost_per_token": -1e-06, "output_cost_per_token": 1e-06}}"#,
        )
        .unwrap();
        let error = PriceCatalog::from_litellm_file(&path)
            .unwrap_err()
            .to_string();
        assert!(error.contains("prices.json"), "{error}");
        assert!(
            error.contains("model `m`, field `input_cost_per_token`"),
            "{error}"
        );
        assert!(error.contains("negative"), "{error}");
    }
}

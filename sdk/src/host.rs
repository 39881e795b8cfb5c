//! Functions the host gives to plugins: logging, the plugin's config, metered model calls and
//! read-only access to the task's worktree (where granted).
//!
//! On `wasm32` these call the `gaffer:plugin/host@0.1.0` imports. On native targets they go to
//! the [`MockHost`](crate::testing::MockHost) installed on the current thread; without one,
//! [`config_json`] returns `"{}"`, logging is dropped, and the other calls return
//! `HostError::Failed("no mock host installed")`.

use serde::de::DeserializeOwned;

pub use crate::bindings::imports::gaffer::plugin::host::{
    Completion, CompletionRequest, HostError, LogLevel, Message, Role,
};

#[cfg(target_arch = "wasm32")]
use crate::bindings::imports::gaffer::plugin::host as wit;

/// Write a structured log record, attributed by the host to the plugin and the task.
///
/// ```
/// use gaffer_sdk::host::{self, LogLevel};
/// host::log(LogLevel::Info, "chose a model", &[("model", "mid"), ("tier", "2")]);
/// ```
pub fn log(level: LogLevel, message: &str, fields: &[(&str, &str)]) {
    #[cfg(target_arch = "wasm32")]
    {
        let fields: Vec<(String, String)> = fields
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        wit::log(level, message, &fields);
    }
    #[cfg(not(target_arch = "wasm32"))]
    crate::testing::mock_log(level, message, fields);
}

/// Log at `debug` level without fields.
pub fn debug(message: &str) {
    log(LogLevel::Debug, message, &[]);
}

/// Log at `info` level without fields.
pub fn info(message: &str) {
    log(LogLevel::Info, message, &[]);
}

/// Log at `warn` level without fields.
pub fn warn(message: &str) {
    log(LogLevel::Warn, message, &[]);
}

/// Log at `error` level without fields.
pub fn error(message: &str) {
    log(LogLevel::Error, message, &[]);
}

/// The plugin's own `config` table from `gaffer.toml`, as JSON text (`"{}"` when absent).
pub fn config_json() -> String {
    #[cfg(target_arch = "wasm32")]
    {
        wit::config()
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::testing::mock_config_json()
    }
}

/// The plugin's config, deserialized into `T`.
///
/// An absent or empty config (`"{}"`, `""`, `null`) gives `T::default()`. Give `T`
/// `#[serde(default)]` so that each field is optional, and `#[serde(deny_unknown_fields)]` so
/// that a misspelt key is an error rather than silently ignored. An error names the field, e.g.
/// ``invalid config: `start_tier`: invalid type: string "x", expected u8 at line 1 column 18``.
pub fn config<T: DeserializeOwned + Default>() -> Result<T, String> {
    parse_config(&config_json())
}

/// Parse config JSON text the way [`config`] does (useful in tests).
///
/// ```
/// #[derive(serde::Deserialize, Default, Debug, PartialEq)]
/// #[serde(default, deny_unknown_fields)]
/// struct Config { max_lines: u32 }
///
/// assert_eq!(gaffer_sdk::host::parse_config::<Config>("{}"), Ok(Config { max_lines: 0 }));
/// let err = gaffer_sdk::host::parse_config::<Config>(r#"{"max_lines": -1}"#).unwrap_err();
/// assert!(err.contains("`max_lines`"), "{err}");
/// ```
pub fn parse_config<T: DeserializeOwned + Default>(json: &str) -> Result<T, String> {
    let trimmed = json.trim();
    if trimmed.is_empty() || trimmed == "null" || is_empty_object(trimmed) {
        return Ok(T::default());
    }
    if !trimmed.starts_with('{') {
        let shown: String = trimmed.chars().take(40).collect();
        return Err(format!(
            "invalid config: expected a JSON object, got `{shown}`"
        ));
    }
    let mut de = serde_json::Deserializer::from_str(trimmed);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        if path == "." || path.is_empty() {
            format!("invalid config: {}", e.inner())
        } else {
            format!("invalid config: `{path}`: {}", e.inner())
        }
    })?;
    de.end()
        .map_err(|e| format!("invalid config: trailing characters: {e}"))?;
    Ok(value)
}

fn is_empty_object(s: &str) -> bool {
    s.strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .is_some_and(|inner| inner.trim().is_empty())
}

/// A [`HostError`] in words, for findings and logs (its `Display` is the debug form).
///
/// ```
/// use gaffer_sdk::host::{describe_error, HostError};
/// assert_eq!(describe_error(&HostError::NotFound("a.rs".into())), "not found: a.rs");
/// ```
pub fn describe_error(err: &HostError) -> String {
    match err {
        HostError::NotGranted(what) => format!("not granted: {what}"),
        HostError::BudgetExhausted(what) => format!("budget exhausted: {what}"),
        HostError::NotFound(what) => format!("not found: {what}"),
        HostError::Failed(what) => format!("failed: {what}"),
    }
}

/// Call a model through gaffer's metered gateway.
///
/// The model must be among the plugin's `grants.complete`; the cost is reserved before the call
/// and charged to the calling task, like any other model call.
pub fn complete(request: CompletionRequest) -> Result<Completion, HostError> {
    #[cfg(target_arch = "wasm32")]
    {
        wit::complete(&request)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::testing::mock_complete(request)
    }
}

/// Read a UTF-8 file of the task's worktree (path relative to its root).
///
/// Needs `grants.files = true`; otherwise `HostError::NotGranted`.
pub fn read_file(path: &str) -> Result<String, HostError> {
    #[cfg(target_arch = "wasm32")]
    {
        wit::read_file(path)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::testing::mock_read_file(path)
    }
}

/// List a directory of the task's worktree (`""` or `"."` for the root); directories end with
/// `/`. Needs `grants.files = true`; otherwise `HostError::NotGranted`.
pub fn list_files(dir: &str) -> Result<Vec<String>, HostError> {
    #[cfg(target_arch = "wasm32")]
    {
        wit::list_files(dir)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::testing::mock_list_files(dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[derive(serde::Deserialize, Default, Debug, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Cfg {
        start_tier: u8,
        globs: Vec<String>,
        tiers: BTreeMap<String, u8>,
    }

    #[test]
    fn empty_configs_give_defaults() {
        for json in ["", "  ", "{}", "{ }", "null", " {\n} "] {
            assert_eq!(parse_config::<Cfg>(json), Ok(Cfg::default()), "{json:?}");
        }
    }

    #[test]
    fn partial_config_keeps_other_defaults() {
        let cfg: Cfg = parse_config(r#"{"start_tier": 2}"#).unwrap();
        assert_eq!(cfg.start_tier, 2);
        assert!(cfg.globs.is_empty());
    }

    #[test]
    fn errors_name_the_field() {
        let err = parse_config::<Cfg>(r#"{"start_tier": "x"}"#).unwrap_err();
        assert!(
            err.starts_with("invalid config: `start_tier`: invalid type"),
            "{err}"
        );
        let err = parse_config::<Cfg>(r#"{"globs": ["a", 3]}"#).unwrap_err();
        assert!(err.starts_with("invalid config: `globs[1]`:"), "{err}");
        let err = parse_config::<Cfg>(r#"{"tiers": {"a": 300}}"#).unwrap_err();
        assert!(err.starts_with("invalid config: `tiers.a`:"), "{err}");
        let err = parse_config::<Cfg>(r#"{"start_teir": 1}"#).unwrap_err();
        assert!(err.contains("unknown field `start_teir`"), "{err}");
        let err = parse_config::<Cfg>("[1]").unwrap_err();
        assert_eq!(err, "invalid config: expected a JSON object, got `[1]`");
        let err = parse_config::<Cfg>("{} x").unwrap_err();
        assert!(err.contains("trailing"), "{err}");
    }

    #[test]
    fn without_mock_the_host_is_inert() {
        assert_eq!(config_json(), "{}");
        assert_eq!(config::<Cfg>(), Ok(Cfg::default()));
        info("dropped");
        assert_eq!(
            read_file("a"),
            Err(HostError::Failed("no mock host installed".into()))
        );
        assert_eq!(
            list_files(""),
            Err(HostError::Failed("no mock host installed".into()))
        );
    }
}

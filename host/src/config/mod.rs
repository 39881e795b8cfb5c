//! `gaffer.toml`: the one file a run needs, read by one parser. [`ConfigFile::load`] reads and
//! checks the whole file against [`schema::GafferToml`] once; unknown keys are refused at every
//! level with the file, the line and the nearest valid name. Each room then resolves its own
//! section into its own settings and reports a value it refuses as an [`Invalid`], which
//! [`ConfigFile::locate`] turns into an error naming the file and line of the key.
//!
//! A reload (an explicit user action, never a file watcher) goes through [`ConfigFile::load`]
//! again.

mod error;
pub mod schema;

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::de::{DeTable, DeValue};

pub use error::{ConfigError, Invalid, nearest};
pub use schema::{Dollars, GafferToml};

/// A `gaffer.toml`, read and checked against the schema.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    path: PathBuf,
    text: String,
    sections: GafferToml,
    keys: Vec<KeySpan>,
}

/// Where one key of the file is: its dotted path (`plugins.hooks[0].path`), the span of the key
/// and the span of its value.
#[derive(Debug, Clone)]
struct KeySpan {
    path: String,
    key: Range<usize>,
    value: Range<usize>,
}

impl ConfigFile {
    /// Read and check the file at `path`.
    pub fn load(path: &Path) -> Result<ConfigFile, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            file: path.display().to_string(),
            reason: e.to_string(),
        })?;
        ConfigFile::parse(path, text)
    }

    /// Check `text` as the contents of the file at `path` (which names it in errors and is the
    /// base of the relative paths it holds).
    pub fn parse(path: &Path, text: String) -> Result<ConfigFile, ConfigError> {
        let file = path.display().to_string();
        let table = DeTable::parse(&text).map_err(|e| ConfigError::Syntax {
            file: file.clone(),
            line: e.span().map(|s| line_of(&text, s.start)),
            reason: e.message().to_string(),
        })?;
        let mut keys = Vec::new();
        index_table(table.get_ref(), "", &mut keys);
        let sections = GafferToml::deserialize(toml::de::Deserializer::from(table))
            .map_err(|e| schema_error(&file, &text, &keys, &e))?;
        Ok(ConfigFile {
            path: path.to_path_buf(),
            text,
            sections,
            keys,
        })
    }

    /// The file as given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory relative paths in the file are resolved against.
    pub fn dir(&self) -> &Path {
        match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        }
    }

    /// Every section, as written.
    pub fn sections(&self) -> &GafferToml {
        &self.sections
    }

    /// The file's text, as read.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// A value a room refused, as an error naming this file and the key's line.
    pub fn locate(&self, invalid: Invalid) -> ConfigError {
        ConfigError::Invalid {
            file: self.path.display().to_string(),
            line: self.line_of_key(&invalid.key),
            key: invalid.key,
            reason: invalid.reason,
        }
    }

    /// Resolve a section with `resolve`; a refusal names this file and the key's line.
    pub fn resolve<T>(
        &self,
        resolve: impl FnOnce(&GafferToml, &Path) -> Result<T, Invalid>,
    ) -> Result<T, ConfigError> {
        resolve(&self.sections, self.dir()).map_err(|invalid| self.locate(invalid))
    }

    /// The line of the key at `path`, or of its nearest written ancestor (`models.x.id` when
    /// missing points at `[models.x]`).
    fn line_of_key(&self, path: &str) -> Option<usize> {
        let mut path = path;
        loop {
            if let Some(k) = self.keys.iter().find(|k| k.path == path) {
                return Some(line_of(&self.text, k.key.start));
            }
            let cut = path.rfind(['.', '['])?;
            path = &path[..cut];
        }
    }
}

/// The 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Record where every key of `table` (and of the tables below it) is.
fn index_table(table: &DeTable<'_>, prefix: &str, keys: &mut Vec<KeySpan>) {
    for (key, value) in table.iter() {
        let path = if prefix.is_empty() {
            key.get_ref().to_string()
        } else {
            format!("{prefix}.{}", key.get_ref())
        };
        keys.push(KeySpan {
            path: path.clone(),
            key: key.span(),
            value: value.span(),
        });
        index_value(value.get_ref(), &path, keys);
    }
}

fn index_value(value: &DeValue<'_>, path: &str, keys: &mut Vec<KeySpan>) {
    match value {
        DeValue::Table(table) => index_table(table, path, keys),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let item_path = format!("{path}[{i}]");
                keys.push(KeySpan {
                    path: item_path.clone(),
                    key: item.span(),
                    value: item.span(),
                });
                index_value(item.get_ref(), &item_path, keys);
            }
        }
        _ => {}
    }
}

/// A schema error from serde (an unknown key, a value of the wrong type) as an error naming the
/// file, the line and the full path of the key.
fn schema_error(file: &str, text: &str, keys: &[KeySpan], error: &toml::de::Error) -> ConfigError {
    let span = error.span();
    let line = span.as_ref().map(|s| line_of(text, s.start));
    // The key whose name or value the error points at; else the innermost one around it.
    let key = span.as_ref().and_then(|span| {
        keys.iter()
            .find(|k| k.key == *span)
            .or_else(|| keys.iter().find(|k| k.value == *span))
            .or_else(|| {
                keys.iter()
                    .filter(|k| k.value.start <= span.start && span.end <= k.value.end)
                    .min_by_key(|k| k.value.len())
            })
            .map(|k| k.path.clone())
    });
    let message = error.message();
    if let Some((unknown, valid)) = error::parse_unknown_field(message) {
        // serde names the unknown key alone; the index gives its place in the file.
        let key = match key {
            Some(path) if path.ends_with(&unknown) => path,
            _ => unknown.clone(),
        };
        return ConfigError::UnknownKey {
            file: file.to_string(),
            line,
            suggestion: nearest(&unknown, valid.iter().map(String::as_str)).map(str::to_string),
            key,
            valid,
        };
    }
    ConfigError::Invalid {
        file: file.to_string(),
        line,
        key: key.unwrap_or_default(),
        reason: message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ConfigFile, ConfigError> {
        ConfigFile::parse(Path::new("/p/gaffer.toml"), text.to_string())
    }

    #[test]
    fn an_unknown_section_names_its_line_and_the_nearest_section() {
        let error =
            parse("[project]\ntarget_branch = \"main\"\n\n[budgets]\nper_task = 1\n").unwrap_err();
        assert_eq!(
            error.to_string(),
            "/p/gaffer.toml:4: unknown key `budgets`; did you mean `budget`? (valid here: project, agent, run, sandbox, budget, providers, models, prices, plugins, economics, claude_code, implementers, store)"
        );
    }

    #[test]
    fn an_unknown_key_inside_an_array_of_tables_names_its_path() {
        let error = parse("[[plugins.hooks]]\npath = \"a.wasm\"\n\n[[plugins.hooks]]\npath = \"b.wasm\"\non_failur = \"deny\"\n")
            .unwrap_err();
        match &error {
            ConfigError::UnknownKey {
                line,
                key,
                suggestion,
                ..
            } => {
                assert_eq!(*line, Some(6));
                assert_eq!(key, "plugins.hooks[1].on_failur");
                assert_eq!(suggestion.as_deref(), Some("on_failure"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_value_of_the_wrong_type_names_its_key_and_line() {
        let error = parse("[run]\nworkers = \"two\"\n").unwrap_err();
        let text = error.to_string();
        assert!(
            text.starts_with("/p/gaffer.toml:2: `run.workers`: "),
            "{text}"
        );
    }

    #[test]
    fn a_syntax_error_names_its_line() {
        let error = parse("[run]\nworkers = \n").unwrap_err();
        assert!(
            error.to_string().starts_with("/p/gaffer.toml:2: "),
            "{error}"
        );
    }

    #[test]
    fn a_refused_value_is_located_at_its_key_or_nearest_ancestor() {
        let file = parse("[budget]\nper_run = 5\n\n[models.cheap]\nprovider = \"x\"\n").unwrap();
        let located = file.locate(Invalid::new("budget.per_run", "too small"));
        assert_eq!(
            located.to_string(),
            "/p/gaffer.toml:2: `budget.per_run`: too small"
        );
        let located = file.locate(Invalid::new("models.cheap.id", "is required"));
        assert_eq!(
            located.to_string(),
            "/p/gaffer.toml:4: `models.cheap.id`: is required"
        );
        let located = file.locate(Invalid::new("agent.max_turns", "is zero"));
        assert_eq!(
            located.to_string(),
            "/p/gaffer.toml: `agent.max_turns`: is zero"
        );
    }

    #[test]
    fn relative_paths_resolve_against_the_directory_of_the_file() {
        let file = ConfigFile::parse(Path::new("gaffer.toml"), String::new()).unwrap();
        assert_eq!(file.dir(), Path::new("."));
        let file = parse("").unwrap();
        assert_eq!(file.dir(), Path::new("/p"));
    }
}

//! What can be wrong with a `gaffer.toml`, said with the file, the line, the key and, for a
//! misspelling, the nearest valid name.

/// A configuration gaffer refuses to run with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("{file}: {reason}")]
    Read { file: String, reason: String },
    /// The file is not TOML.
    #[error("{}: {reason}", at(file, *line))]
    Syntax {
        file: String,
        line: Option<usize>,
        reason: String,
    },
    /// A key (or section) the schema does not have: a typo would otherwise run without it.
    #[error("{}: unknown key `{key}`{}", at(file, *line), hint(suggestion.as_deref(), valid))]
    UnknownKey {
        file: String,
        line: Option<usize>,
        /// The full path of the key (`plugins.hooks[1].on_failur`).
        key: String,
        suggestion: Option<String>,
        /// The keys valid at that place.
        valid: Vec<String>,
    },
    /// A value that is refused: the wrong type, zero where zero means nothing, a name that is
    /// not configured.
    #[error("{}: `{key}`: {reason}", at(file, *line))]
    Invalid {
        file: String,
        line: Option<usize>,
        key: String,
        reason: String,
    },
}

fn at(file: &str, line: Option<usize>) -> String {
    match line {
        Some(line) => format!("{file}:{line}"),
        None => file.to_string(),
    }
}

fn hint(suggestion: Option<&str>, valid: &[String]) -> String {
    let mut text = String::new();
    if let Some(s) = suggestion {
        text.push_str(&format!("; did you mean `{s}`?"));
    }
    if !valid.is_empty() {
        text.push_str(&format!(" (valid here: {})", valid.join(", ")));
    }
    text
}

/// A value a room refuses while resolving its section: the key's full dotted path and why.
/// [`super::ConfigFile::locate`] adds the file and line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{key}`: {reason}")]
pub struct Invalid {
    pub key: String,
    pub reason: String,
}

impl Invalid {
    pub fn new(key: impl Into<String>, reason: impl Into<String>) -> Invalid {
        Invalid {
            key: key.into(),
            reason: reason.into(),
        }
    }

    /// A required key that is missing.
    pub fn required(key: impl Into<String>) -> Invalid {
        Invalid::new(key, "is required")
    }

    /// A value outside `allowed`, with the nearest allowed one as a suggestion.
    pub fn unknown_value(key: impl Into<String>, value: &str, allowed: &[&str]) -> Invalid {
        let suggestion = nearest(value, allowed.iter().copied())
            .map(|s| format!("; did you mean `{s}`?"))
            .unwrap_or_default();
        Invalid::new(
            key,
            format!(
                "`{value}` is not one of {}{suggestion}",
                allowed
                    .iter()
                    .map(|a| format!("`{a}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    }

    /// `value` must be at least `min`; a smaller one is refused, never raised silently.
    pub fn at_least<T: PartialOrd + std::fmt::Display>(
        key: impl Into<String>,
        value: T,
        min: T,
        why: &str,
    ) -> Result<T, Invalid> {
        if value < min {
            Err(Invalid::new(
                key,
                format!("{value} is too small: it must be at least {min} ({why})"),
            ))
        } else {
            Ok(value)
        }
    }
}

/// The candidate closest to `word`, when it is close enough to be what was meant.
pub fn nearest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let word_lower = word.to_lowercase();
    candidates
        .into_iter()
        .map(|c| {
            (
                strsim::damerau_levenshtein(&word_lower, &c.to_lowercase()),
                c,
            )
        })
        .filter(|(distance, c)| {
            *distance <= (c.chars().count().max(word.chars().count()) / 3).max(1)
        })
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c)
}

/// Serde's message for an unknown field (`unknown field `x`, expected one of `a`, `b``) as the
/// field and the valid names.
pub(super) fn parse_unknown_field(message: &str) -> Option<(String, Vec<String>)> {
    let rest = message.strip_prefix("unknown field `")?;
    let (unknown, rest) = rest.split_once('`')?;
    let valid = rest
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    Some((unknown.to_string(), valid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_messages_give_the_field_and_the_valid_names() {
        assert_eq!(
            parse_unknown_field("unknown field `per_tsk`, expected one of `per_call`, `per_task`"),
            Some((
                "per_tsk".to_string(),
                vec!["per_call".to_string(), "per_task".to_string()]
            ))
        );
        assert_eq!(
            parse_unknown_field("unknown field `x`, expected `file`"),
            Some(("x".to_string(), vec!["file".to_string()]))
        );
        assert_eq!(
            parse_unknown_field("unknown field `x`, there are no fields"),
            Some(("x".to_string(), vec![]))
        );
        assert_eq!(parse_unknown_field("invalid type: string"), None);
    }

    #[test]
    fn the_nearest_name_is_suggested_only_when_close() {
        let keys = ["per_call", "per_task", "per_run", "per_model"];
        assert_eq!(nearest("per_tsk", keys), Some("per_task"));
        assert_eq!(nearest("PER_RUN", keys), Some("per_run"));
        assert_eq!(nearest("workers", keys), None);
        assert_eq!(nearest("plugin", ["project", "plugins"]), Some("plugins"));
    }

    #[test]
    fn values_below_their_minimum_are_refused_with_the_reason() {
        assert_eq!(Invalid::at_least("run.workers", 2, 1, "workers"), Ok(2));
        let refused = Invalid::at_least("run.workers", 0, 1, "a run needs a worker").unwrap_err();
        assert_eq!(
            refused.to_string(),
            "`run.workers`: 0 is too small: it must be at least 1 (a run needs a worker)"
        );
        let unknown = Invalid::unknown_value(
            "providers.x.kind",
            "antropic",
            &["anthropic", "openai-compatible"],
        );
        assert_eq!(
            unknown.reason,
            "`antropic` is not one of `anthropic`, `openai-compatible`; did you mean `anthropic`?"
        );
    }
}

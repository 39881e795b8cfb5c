//! What several commands take: the project options, the output format, and value parsers that
//! turn a flag's text into its type once (dollars into micro-dollars, days into dates).

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::ledger::parse_dollars;
use crate::project::{CONFIG_FILE, Project};
use crate::store::MicroUsd;

/// Output format of commands that print figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// The project a command works on: the working directory, configured by `--config`.
#[derive(Debug, Clone, Args)]
pub struct ProjectArgs {
    /// The configuration file (relative to the working directory).
    #[arg(long, default_value = CONFIG_FILE)]
    pub config: PathBuf,
    /// The store: a `postgres://` URL shared by several hosts, or a SQLite file. Default:
    /// `[store] url` in the configuration file, else `.gaffer/gaffer.db`.
    #[arg(long, env = "GAFFER_DB", value_name = "URL|FILE")]
    pub db: Option<String>,
}

impl ProjectArgs {
    /// The project in the working directory.
    pub fn project(&self) -> Project {
        Project::at(".", &self.config).with_db(self.db.clone())
    }
}

/// A dollar amount (`2`, `0.50`, `1e-3`) as exact micro-dollars.
pub fn dollars(text: &str) -> Result<MicroUsd, String> {
    parse_dollars(text).map_err(|e| e.to_string())
}

/// A day written `YYYY-MM-DD`, a real one (`2024-02-30` is refused), in that form.
pub fn day(text: &str) -> Result<String, String> {
    let date: jiff::civil::Date = text
        .parse()
        .map_err(|e| format!("`{text}` is not a day written YYYY-MM-DD: {e}"))?;
    let normal = date.to_string();
    if normal != text {
        return Err(format!(
            "`{text}` is not a day written YYYY-MM-DD (did you mean {normal}?)"
        ));
    }
    Ok(normal)
}

/// A probability, from 0 to 1.
pub fn rate(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number"))?;
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(format!("{value}: a rate is between 0 and 1"))
    }
}

/// A positive, finite number (hours, tasks a month).
pub fn positive(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number"))?;
    if value.is_finite() && value > 0.0 {
        Ok(value)
    } else {
        Err(format!("{value}: must be a positive number"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_must_exist_and_be_written_in_full() {
        assert_eq!(day("2024-02-29"), Ok("2024-02-29".to_string()));
        for bad in ["2024-99-99", "2023-02-29", "2024-2-3", "yesterday", ""] {
            assert!(day(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dollars_are_exact_micro_dollars() {
        assert_eq!(dollars("0.5"), Ok(MicroUsd(500_000)));
        assert!(dollars("0.0000001").unwrap_err().contains("more precise"));
        assert!(dollars("-1").is_err());
    }

    #[test]
    fn rates_and_positives_are_bounded() {
        assert_eq!(rate("0.25"), Ok(0.25));
        assert!(rate("1.5").is_err());
        assert!(positive("0").is_err());
        assert!(positive("inf").is_err());
        assert_eq!(positive("2.5"), Ok(2.5));
    }
}

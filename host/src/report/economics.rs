//! `[economics]` of `gaffer.toml` resolved: what a person's time costs, for the comparison with
//! what the agents spent.

use std::collections::BTreeMap;

use super::ledger_report::HumanRates;
use crate::config::Invalid;
use crate::config::schema::EconomicsSection;
use crate::ledger::{MicroUsd, dollars_at};

/// Hours a person takes for a task when neither the file nor the command line says.
pub const DEFAULT_HOURS_PER_TASK: f64 = 2.0;

/// The rates of `[economics]`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Economics {
    /// Dollars an hour, in µ$.
    pub hourly: Option<MicroUsd>,
    pub hours_per_task: Option<f64>,
    pub hours_per_label: BTreeMap<String, f64>,
}

/// Hours must be a positive, finite number: zero hours would make a person free.
fn hours(key: String, value: f64) -> Result<f64, Invalid> {
    if value.is_finite() && value > 0.0 {
        Ok(value)
    } else {
        Err(Invalid::new(
            key,
            format!("{value} hours: must be a positive number"),
        ))
    }
}

impl Economics {
    pub fn from_config(section: &EconomicsSection) -> Result<Economics, Invalid> {
        Ok(Economics {
            hourly: section
                .hourly_rate
                .as_ref()
                .map(|d| dollars_at("economics.hourly_rate", d))
                .transpose()?,
            hours_per_task: section
                .hours_per_task
                .map(|h| hours("economics.hours_per_task".into(), h))
                .transpose()?,
            hours_per_label: section
                .hours_per_label
                .iter()
                .map(|(label, &h)| {
                    Ok((
                        label.clone(),
                        hours(format!("economics.hours_per_label.{label}"), h)?,
                    ))
                })
                .collect::<Result<_, Invalid>>()?,
        })
    }

    /// A person's rates, with the command line's overrides; `None` without an hourly rate.
    pub fn human_rates(
        &self,
        hourly: Option<MicroUsd>,
        hours_per_task: Option<f64>,
    ) -> Option<HumanRates> {
        hourly.or(self.hourly).map(|hourly| HumanRates {
            hourly,
            hours_per_task: hours_per_task
                .or(self.hours_per_task)
                .unwrap_or(DEFAULT_HOURS_PER_TASK),
            hours_per_label: self.hours_per_label.clone(),
        })
    }
}

//! `gaffer models`: the configured models with their prices and where the prices come from.

use std::process::ExitCode;

use clap::Args;

use super::{Format, ProjectArgs};
use crate::gateway::metered::Pricing;
use crate::gateway::settings::{GatewaySettings, PriceSource};
use crate::ledger::format_dollars;

#[derive(Debug, Args)]
pub struct ModelsArgs {
    #[command(flatten)]
    project: ProjectArgs,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

pub fn run(args: ModelsArgs) -> anyhow::Result<ExitCode> {
    let format = args.format;
    let resolved = args
        .project
        .project()
        .config()?
        .resolve(GatewaySettings::from_config)?;
    let rows: Vec<serde_json::Value> = resolved
        .models
        .iter()
        .map(|m| {
            let e = &m.entry;
            let pricing = match e.pricing {
                Pricing::Tokens(p) => serde_json::json!({
                    "micro_usd_per_million_tokens": {
                        "input": p.input, "output": p.output,
                        "cache_read": p.cache_read, "cache_write": p.cache_write
                    }
                }),
                Pricing::Electricity(power) => serde_json::json!({
                    "watts": power.watts, "micro_usd_per_kwh": power.micro_usd_per_kwh
                }),
            };
            serde_json::json!({
                "model": e.key, "provider": e.provider, "id": e.id, "tier": m.tier,
                "max_tokens": e.max_tokens, "context_window": e.context_window,
                "tags": m.tags, "pricing": pricing, "price_source": m.price_source,
            })
        })
        .collect();
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
        Format::Text => {
            println!(
                "{:<10} {:<12} {:<28} {:>4}  {:>9} {:>9} {:>10} {:>11}  source",
                "model", "provider", "id", "tier", "in/Mtok", "out/Mtok", "cache rd", "cache wr"
            );
            for m in &resolved.models {
                let e = &m.entry;
                let prices = match e.pricing {
                    Pricing::Tokens(p) => format!(
                        "{:>9} {:>9} {:>10} {:>11}",
                        format_dollars(p.input),
                        format_dollars(p.output),
                        format_dollars(p.cache_read),
                        format_dollars(p.cache_write)
                    ),
                    Pricing::Electricity(power) => format!(
                        "{:>42}",
                        format!(
                            "{} W at {}/kWh",
                            power.watts,
                            format_dollars(power.micro_usd_per_kwh)
                        )
                    ),
                };
                let source = match &m.price_source {
                    PriceSource::Config => "gaffer.toml".to_string(),
                    PriceSource::Catalog(source) => source.clone(),
                    PriceSource::Electricity => "electricity".to_string(),
                };
                println!(
                    "{:<10} {:<12} {:<28} {:>4}  {prices}  {source}",
                    e.key, e.provider, e.id, m.tier
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

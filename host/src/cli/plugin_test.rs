//! `gaffer plugin test FILE.wasm --cases FILE.toml`: a plugin's own CI. The cases file's format
//! and the running of its cases are [`crate::plugin::cases`]; this command prints each case's
//! outcome (a failing case with its input, the expected and the actual decision) and fails
//! when a case does.

use std::path::Path;
use std::process::ExitCode;

use super::Format;
use crate::plugin::PluginRuntime;
use crate::plugin::cases::{self, CasesFile};

/// `gaffer plugin test`.
pub async fn run(file: &Path, cases_file: &Path, format: Format) -> anyhow::Result<ExitCode> {
    let cases = CasesFile::load(cases_file)?;
    let runtime = PluginRuntime::builder().build()?;
    let outcomes = cases::run(&runtime, file, &cases).await?;
    let failed = outcomes.iter().filter(|o| !o.passed).count();
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&outcomes)?),
        Format::Text => {
            for o in &outcomes {
                if o.passed {
                    println!("ok    {}", o.name);
                } else {
                    println!("FAIL  {}", o.name);
                    println!("      input:    {}", o.input);
                    println!("      expected: {}", o.expected);
                    println!("      actual:   {} {}", o.actual, o.reason);
                }
            }
            println!(
                "{} of {} cases passed",
                outcomes.len() - failed,
                outcomes.len()
            );
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

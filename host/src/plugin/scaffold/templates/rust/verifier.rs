//! A gaffer verifier: reject an attempt whose tests failed (with a finding), hand a change to
//! sensitive paths to a person, approve the rest.
//!
//! Config (the `config` table of `[plugins.verifier]` in gaffer.toml):
//!
//! | field | default | meaning |
//! |---|---|---|
//! | `needs_human_paths` | `["db/migrations/", ".github/workflows/"]` | a change to a path starting with one of these goes to a person |

/// What wit-bindgen makes of `wit/`: `Guest` (the trait the plugin implements), the world's
/// own types (`VerifyRequest`, ...), the other types under `gaffer::plugin::types`, the host
/// functions under `gaffer::plugin::host`, and `export!`.
mod bindings {
    // The generated glue passes a record's fields one by one.
    #![allow(clippy::too_many_arguments)]
    wit_bindgen::generate!({ path: "wit", world: "verifier" });
}

use bindings::gaffer::plugin::host::{self, LogLevel};
use bindings::gaffer::plugin::types::Finding;
use bindings::{Guest, Verdict, VerifyRequest};

/// Path prefixes that need a person when the config gives none.
const DEFAULT_NEEDS_HUMAN_PATHS: [&str; 2] = ["db/migrations/", ".github/workflows/"];

struct Plugin;

impl Guest for Plugin {
    fn verify(request: VerifyRequest) -> Result<Verdict, String> {
        let needs_human_paths = needs_human_paths_from_config(&host::config())?;
        let verdict = judge(&needs_human_paths, &request);
        let name = match &verdict {
            Verdict::Approve => "approve",
            Verdict::Reject(_) => "reject",
            Verdict::NeedsHuman(_) => "needs-human",
        };
        host::log(
            LogLevel::Info,
            "verified",
            &[("verdict".to_string(), name.to_string())],
        );
        Ok(verdict)
    }
}

fn judge(needs_human_paths: &[String], request: &VerifyRequest) -> Verdict {
    let tests = &request.tests;
    if !tests.ran {
        return Verdict::NeedsHuman(format!(
            "the test command `{}` did not run, so nothing checked the change",
            tests.command
        ));
    }
    if !tests.passed {
        let status = match tests.exit_code {
            Some(code) if code != 0 => format!(" (exit code {code})"),
            _ => String::new(),
        };
        return Verdict::Reject(vec![Finding {
            message: format!(
                "the tests failed: `{}`{status}; make them pass",
                tests.command
            ),
            path: None,
            line: None,
        }]);
    }
    if request.diff.files.is_empty() {
        return Verdict::Reject(vec![Finding {
            message: "the attempt changed nothing".to_string(),
            path: None,
            line: None,
        }]);
    }
    for file in &request.diff.files {
        if let Some(prefix) = needs_human_paths
            .iter()
            .find(|prefix| file.path.starts_with(prefix.as_str()))
        {
            return Verdict::NeedsHuman(format!(
                "`{}` is under `{prefix}`: a person reviews changes there",
                file.path
            ));
        }
    }
    Verdict::Approve
}

/// `needs_human_paths` from the config JSON (an object, `{}` when gaffer.toml gives none).
fn needs_human_paths_from_config(text: &str) -> Result<Vec<String>, String> {
    let config: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("invalid config: {e}"))?;
    let Some(value) = config.get("needs_human_paths") else {
        return Ok(DEFAULT_NEEDS_HUMAN_PATHS.map(String::from).to_vec());
    };
    let invalid =
        || format!("invalid config: `needs_human_paths` must be a list of strings, not {value}");
    value
        .as_array()
        .ok_or_else(invalid)?
        .iter()
        .map(|item| item.as_str().map(String::from).ok_or_else(invalid))
        .collect()
}

bindings::export!(Plugin with_types_in bindings);

//! Verifier `model-review`: sends the task, the diff and the test results to a configured model
//! through the host's metered `complete` (its tokens are booked as this attempt's verifier
//! cost), asks for a structured verdict, and parses it. An answer it cannot parse is a
//! rejection (fail closed); a model call the budget refuses hands the attempt to a person.
//!
//! Config: `model` (a model key granted in `grants.complete`, default "cheap"), `max_tokens`
//! (default 1024), `max_diff_chars` (default 24000: longer diffs are cut, and the model is told).

use gaffer_sdk::host;
use gaffer_sdk::types::{
    CompletionRequest, Diff, Finding, HostError, LineKind, Message, Role, Verdict, VerifyRequest,
};
use serde::Deserialize;

/// The plugin.
pub struct ModelReview;

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub model: String,
    pub max_tokens: u32,
    pub max_diff_chars: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            model: "cheap".to_string(),
            max_tokens: 1024,
            max_diff_chars: 24_000,
        }
    }
}

const INSTRUCTIONS: &str = "You review a change made by a coding agent. Judge whether it does what the task \
asks, correctly and safely, and whether the tests support it. Answer with one JSON object and nothing else: \
{\"verdict\": \"approve\"} or {\"verdict\": \"reject\", \"reasons\": [{\"message\": \"...\", \"path\": \"file\", \
\"line\": 12}]}. Every rejection reason names what is wrong, and the file and line where it can.";

/// The diff as unified text, cut at `max` characters.
pub fn render_diff(diff: &Diff, max: usize) -> String {
    let mut out = String::new();
    for file in &diff.files {
        out.push_str(&format!(
            "--- {}\n+++ {}\n",
            file.old_path.as_deref().unwrap_or(&file.path),
            file.path
        ));
        for hunk in &file.hunks {
            out.push_str(&format!(
                "@@ -{},{} +{},{} @@\n",
                hunk.old_start, hunk.old_lines, hunk.new_start, hunk.new_lines
            ));
            for line in &hunk.lines {
                let sign = match line.kind {
                    LineKind::Added => '+',
                    LineKind::Removed => '-',
                    LineKind::Context => ' ',
                };
                out.push(sign);
                out.push_str(&line.text);
                out.push('\n');
            }
        }
    }
    if out.len() > max {
        let mut cut = max;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push_str("\n[diff cut here: longer than the review limit]\n");
    }
    out
}

/// The prompt for one review.
pub fn prompt(request: &VerifyRequest, config: &Config) -> Vec<Message> {
    let tests = &request.tests;
    let tests = if tests.ran {
        format!(
            "`{}` {} (exit {:?}). Last output:\n{}",
            tests.command,
            if tests.passed { "passed" } else { "FAILED" },
            tests.exit_code,
            tests.output_tail
        )
    } else {
        "no test command ran".to_string()
    };
    vec![
        Message {
            role: Role::System,
            content: INSTRUCTIONS.to_string(),
        },
        Message {
            role: Role::User,
            content: format!(
                "Task {}: {}\n\n{}\n\nTests: {}\n\nThe change:\n{}",
                request.task.id,
                request.task.title,
                request.task.body,
                tests,
                render_diff(&request.diff, config.max_diff_chars)
            ),
        },
    ]
}

#[derive(Deserialize)]
struct Answer {
    verdict: String,
    #[serde(default)]
    reasons: Vec<Reason>,
}

#[derive(Deserialize)]
struct Reason {
    message: String,
    path: Option<String>,
    line: Option<u32>,
}

/// Parse the model's answer; anything but a well-formed verdict is a rejection that says why.
pub fn parse_verdict(text: &str) -> Verdict {
    let unparseable = |why: String| {
        let shown: String = text.chars().take(200).collect();
        Verdict::Reject(vec![Finding {
            message: format!(
                "the review model's answer could not be read as a verdict ({why}), so the change is \
                 rejected (fail closed); it answered: {shown}"
            ),
            path: None,
            line: None,
        }])
    };
    // Models wrap JSON in prose or code fences: take the outermost object.
    let (Some(start), Some(end)) = (text.find('{'), text.rfind('}')) else {
        return unparseable("no JSON object".to_string());
    };
    if end < start {
        return unparseable("no JSON object".to_string());
    }
    let answer: Answer = match serde_json::from_str(&text[start..=end]) {
        Ok(a) => a,
        Err(e) => return unparseable(e.to_string()),
    };
    match answer.verdict.as_str() {
        "approve" => Verdict::Approve,
        "reject" => {
            let findings: Vec<Finding> = answer
                .reasons
                .into_iter()
                .filter(|r| !r.message.trim().is_empty())
                .map(|r| Finding {
                    message: r.message,
                    path: r.path,
                    line: r.line,
                })
                .collect();
            if findings.is_empty() {
                unparseable("a rejection without reasons".to_string())
            } else {
                Verdict::Reject(findings)
            }
        }
        other => unparseable(format!("unknown verdict `{other}`")),
    }
}

impl gaffer_sdk::Verifier for ModelReview {
    fn verify(request: VerifyRequest) -> Result<Verdict, String> {
        let config: Config = host::config()?;
        let answer = host::complete(CompletionRequest {
            model: config.model.clone(),
            messages: prompt(&request, &config),
            max_tokens: config.max_tokens,
        });
        match answer {
            Ok(completion) => Ok(parse_verdict(&completion.text)),
            Err(HostError::BudgetExhausted(why)) => Ok(Verdict::NeedsHuman(format!(
                "the review could not be paid for: {why}"
            ))),
            Err(other) => Ok(Verdict::NeedsHuman(format!(
                "the review model could not be asked: {}",
                host::describe_error(&other)
            ))),
        }
    }
}

gaffer_sdk::export_verifier!(ModelReview);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_verdicts_wrapped_in_prose_or_fences() {
        assert_eq!(
            parse_verdict("{\"verdict\": \"approve\"}"),
            Verdict::Approve
        );
        assert_eq!(
            parse_verdict("Sure!\n```json\n{\"verdict\":\"approve\"}\n```"),
            Verdict::Approve
        );
        let v = parse_verdict(
            r#"{"verdict":"reject","reasons":[{"message":"off by one","path":"src/a.rs","line":3}]}"#,
        );
        assert_eq!(
            v,
            Verdict::Reject(vec![Finding {
                message: "off by one".into(),
                path: Some("src/a.rs".into()),
                line: Some(3)
            }])
        );
    }

    #[test]
    fn fails_closed_on_anything_else() {
        for text in [
            "LGTM!",
            "{\"verdict\": \"maybe\"}",
            "{\"verdict\": \"reject\"}",
            "{broken",
            "} {",
        ] {
            match parse_verdict(text) {
                Verdict::Reject(f) => {
                    assert!(f[0].message.contains("fail closed"), "{text}: {f:?}")
                }
                other => panic!("{text}: {other:?}"),
            }
        }
    }
}

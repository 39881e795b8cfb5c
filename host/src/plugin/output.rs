//! Checks on what plugins return: size caps and the shape rules the WIT cannot express.

use super::types::{Finding, HookDecision, ModelInfo, RouteDecision, RuleDecision, Verdict};

/// Bytes of strings and list payloads in a value returned by a plugin, for the output cap.
pub trait OutputSize {
    fn output_size(&self) -> usize;
}

impl OutputSize for String {
    fn output_size(&self) -> usize {
        self.len()
    }
}

impl OutputSize for Finding {
    fn output_size(&self) -> usize {
        self.message.len() + self.path.as_ref().map_or(0, String::len) + 4
    }
}

impl OutputSize for Vec<Finding> {
    fn output_size(&self) -> usize {
        self.iter().map(OutputSize::output_size).sum()
    }
}

impl OutputSize for RouteDecision {
    fn output_size(&self) -> usize {
        self.model.len() + self.reason.len() + 8
    }
}

impl OutputSize for Verdict {
    fn output_size(&self) -> usize {
        match self {
            Verdict::Approve => 0,
            Verdict::Reject(findings) => findings.output_size(),
            Verdict::NeedsHuman(reason) => reason.len(),
        }
    }
}

impl OutputSize for HookDecision {
    fn output_size(&self) -> usize {
        match self {
            HookDecision::Allow => 0,
            HookDecision::Deny(reason) | HookDecision::Rewrite(reason) => reason.len(),
        }
    }
}

impl OutputSize for RuleDecision {
    fn output_size(&self) -> usize {
        match self {
            RuleDecision::Allow => 0,
            RuleDecision::Deny(findings) => findings.output_size(),
        }
    }
}

impl<T: OutputSize> OutputSize for Result<T, String> {
    fn output_size(&self) -> usize {
        match self {
            Ok(value) => value.output_size(),
            Err(message) => message.len(),
        }
    }
}

/// A router must choose one of the models it was offered.
pub fn check_route(decision: &RouteDecision, models: &[ModelInfo]) -> Result<(), String> {
    if models.iter().any(|m| m.id == decision.model) {
        return Ok(());
    }
    let offered: Vec<&str> = models.iter().map(|m| m.id.as_str()).collect();
    Err(format!(
        "chose model `{}`, which is not among the models offered [{}]",
        decision.model,
        offered.join(", ")
    ))
}

/// A rejection or a hand-over must say why.
pub fn check_verdict(verdict: &Verdict) -> Result<(), String> {
    match verdict {
        Verdict::Reject(findings) if findings.is_empty() => {
            Err("rejected without any finding; a rejection must say why".to_string())
        }
        Verdict::Reject(findings) if findings.iter().any(|f| f.message.trim().is_empty()) => {
            Err("rejected with an empty finding message".to_string())
        }
        Verdict::NeedsHuman(reason) if reason.trim().is_empty() => {
            Err("needs-human without a reason".to_string())
        }
        _ => Ok(()),
    }
}

/// A denial must say why; a rewrite must be a JSON object.
pub fn check_hook_decision(decision: &HookDecision) -> Result<(), String> {
    match decision {
        HookDecision::Deny(reason) if reason.trim().is_empty() => {
            Err("denied without a reason".to_string())
        }
        HookDecision::Rewrite(args) => match serde_json::from_str::<serde_json::Value>(args) {
            Ok(serde_json::Value::Object(_)) => Ok(()),
            Ok(_) => Err("rewrite arguments are JSON but not an object".to_string()),
            Err(e) => Err(format!("rewrite arguments are not valid JSON: {e}")),
        },
        _ => Ok(()),
    }
}

/// A rule's denial must carry at least one finding with a message.
pub fn check_rule_decision(decision: &RuleDecision) -> Result<(), String> {
    match decision {
        RuleDecision::Deny(findings) if findings.is_empty() => {
            Err("denied without any finding; a denial must say why".to_string())
        }
        RuleDecision::Deny(findings) if findings.iter().any(|f| f.message.trim().is_empty()) => {
            Err("denied with an empty finding message".to_string())
        }
        _ => Ok(()),
    }
}

/// A finding as a person reads it: `path:line: message`.
pub fn describe_finding(finding: &Finding) -> String {
    match (&finding.path, finding.line) {
        (Some(path), Some(line)) if !finding.message.contains(path.as_str()) => {
            format!("{path}:{line}: {}", finding.message)
        }
        (Some(path), None) if !finding.message.contains(path.as_str()) => {
            format!("{path}: {}", finding.message)
        }
        _ => finding.message.clone(),
    }
}

fn describe_findings(findings: &[Finding]) -> String {
    findings
        .iter()
        .map(describe_finding)
        .collect::<Vec<_>>()
        .join("; ")
}

/// A route decision in one line.
pub fn describe_route(decision: &RouteDecision) -> String {
    format!("{} — {}", decision.model, decision.reason)
}

/// A verdict in one line.
pub fn describe_verdict(verdict: &Verdict) -> String {
    match verdict {
        Verdict::Approve => "approve".to_string(),
        Verdict::Reject(findings) => format!("reject: {}", describe_findings(findings)),
        Verdict::NeedsHuman(reason) => format!("needs-human: {reason}"),
    }
}

/// A hook's answer to a tool call in one line.
pub fn describe_hook_decision(decision: &HookDecision) -> String {
    match decision {
        HookDecision::Allow => "allow".to_string(),
        HookDecision::Deny(reason) => format!("deny: {reason}"),
        HookDecision::Rewrite(args) => format!("rewrite arguments to {args}"),
    }
}

/// A rule's answer in one line.
pub fn describe_rule_decision(decision: &RuleDecision) -> String {
    match decision {
        RuleDecision::Allow => "allow".to_string(),
        RuleDecision::Deny(findings) => format!("deny: {}", describe_findings(findings)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(message: &str) -> Finding {
        Finding {
            message: message.to_string(),
            path: Some("src/a.rs".to_string()),
            line: Some(3),
        }
    }

    #[test]
    fn sizes_count_strings() {
        let v = Verdict::Reject(vec![finding("abc"), finding("de")]);
        // "abc" + "src/a.rs" + 4, "de" + "src/a.rs" + 4
        assert_eq!(v.output_size(), (3 + 8 + 4) + (2 + 8 + 4));
        let r: Result<Verdict, String> = Err("x".repeat(10));
        assert_eq!(r.output_size(), 10);
    }

    #[test]
    fn shape_rules() {
        assert!(check_verdict(&Verdict::Reject(vec![])).is_err());
        assert!(check_verdict(&Verdict::NeedsHuman(" ".into())).is_err());
        assert!(check_verdict(&Verdict::Approve).is_ok());
        assert!(check_hook_decision(&HookDecision::Rewrite("[1]".into())).is_err());
        assert!(check_hook_decision(&HookDecision::Rewrite("{\"path\":\"a\"}".into())).is_ok());
        assert!(check_hook_decision(&HookDecision::Rewrite("{".into())).is_err());
        assert!(check_rule_decision(&RuleDecision::Deny(vec![finding("")])).is_err());
    }
}

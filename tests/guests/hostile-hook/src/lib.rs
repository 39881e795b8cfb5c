//! A hook that never answers a tool call: it spins. The hook bridge's tests check that its
//! deadline stops it (not its fuel, which they set far out of reach) and that the call is
//! denied. Edits and diffs are allowed, so only the spin is under test.

wit_bindgen::generate!({
    path: "../../../wit/0.1.0",
    world: "hook",
});

struct HostileHook;

impl Guest for HostileHook {
    fn pre_tool(_task: Task, _call: ToolCall) -> Result<HookDecision, String> {
        let mut x: u64 = 0;
        loop {
            x = std::hint::black_box(x.wrapping_add(1));
        }
    }

    fn on_edit(_task: Task, _edit: FileEdit) -> Result<RuleDecision, String> {
        Ok(RuleDecision::Allow)
    }

    fn on_diff(_task: Task, _diff: Diff) -> Result<RuleDecision, String> {
        Ok(RuleDecision::Allow)
    }
}

export!(HostileHook);

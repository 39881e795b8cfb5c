//! `gaffer hook claude-code` on hook inputs shaped as Claude Code documents them: allow, deny
//! (through `pre-tool` and through `on-edit`), a shell write caught after the fact by `on-diff`,
//! a broken plugin and unreadable input failing closed; the same with the Python and JavaScript
//! builds of protected-paths.

mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

/// A git repository with a gaffer.toml whose hooks are protected-paths (`.env`, migrations)
/// and file-size (at most 5 lines a file).
fn project() -> tempfile::TempDir {
    project_with(
        &support::guest("protected-paths"),
        Some(&support::guest("file-size")),
    )
}

/// A git repository whose hooks are `protected` (`.env`, migrations) and, when given, `size`
/// (at most 5 lines a file).
fn project_with(protected: &Path, size: Option<&Path>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut config = format!(
        "[[plugins.hooks]]\npath = {:?}\nconfig = {{ globs = [\".env\", \"**/migrations/**\"] }}\n",
        protected.display().to_string(),
    );
    if let Some(size) = size {
        config.push_str(&format!(
            "\n[[plugins.hooks]]\npath = {:?}\nconfig = {{ max_lines = 5 }}\n",
            size.display().to_string()
        ));
    }
    std::fs::write(root.join("gaffer.toml"), config).unwrap();
    std::fs::write(root.join("app.py"), "print('hi')\n").unwrap();
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@t.invalid"])
            .args(args)
            .current_dir(root)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    git(&["init", "-q", "-b", "main"]);
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "start"]);
    dir
}

fn hook(root: &Path, input: &str) -> Output {
    run_bridge(
        Command::new(env!("CARGO_BIN_EXE_gaffer")).args(["hook", "claude-code"]),
        root,
        input,
    )
}

/// The same bridge through the small `gaffer-hook` binary.
fn small_hook(root: &Path, input: &str) -> Output {
    run_bridge(
        Command::new(env!("CARGO_BIN_EXE_gaffer-hook")).arg("claude-code"),
        root,
        input,
    )
}

fn run_bridge(command: &mut Command, root: &Path, input: &str) -> Output {
    let mut child = command
        .current_dir(root)
        .env("GAFFER_PLUGIN_CACHE", support::test_cache_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A bridge that refuses its arguments exits without reading: a broken pipe is its answer.
    let written = child.stdin.take().unwrap().write_all(input.as_bytes());
    if let Err(e) = written {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
    }
    child.wait_with_output().unwrap()
}

/// An event as Claude Code sends it.
fn event(root: &Path, name: &str, tool: &str, input: Value) -> String {
    let mut e = json!({
        "session_id": "abc123",
        "transcript_path": root.join("transcript.jsonl"),
        "cwd": root,
        "permission_mode": "default",
        "hook_event_name": name,
        "tool_name": tool,
        "tool_input": input,
        "tool_use_id": "toolu_01",
    });
    if name == "PostToolUse" {
        e["tool_response"] = json!({"stdout": "", "stderr": "", "interrupted": false});
    }
    e.to_string()
}

fn answer(out: &Output) -> Option<Value> {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    (!text.trim().is_empty()).then(|| serde_json::from_str(&text).unwrap())
}

#[test]
fn allowed_calls_leave_the_decision_to_claude_code() {
    let dir = project();
    let root = dir.path();
    let edit = event(
        root,
        "PreToolUse",
        "Edit",
        json!({"file_path": root.join("app.py"), "old_string": "hi", "new_string": "hello"}),
    );
    assert_eq!(answer(&hook(root, &edit)), None);
    let bash = event(
        root,
        "PreToolUse",
        "Bash",
        json!({"command": "ls", "description": "list"}),
    );
    assert_eq!(answer(&hook(root, &bash)), None);
    // Events the bridge does not judge pass through.
    let prompt = json!({"session_id": "s", "cwd": root, "hook_event_name": "UserPromptSubmit", "prompt": "hi"});
    assert_eq!(answer(&hook(root, &prompt.to_string())), None);
}

#[test]
fn a_protected_write_is_denied_with_the_reason() {
    let dir = project();
    let root = dir.path();
    let write = event(
        root,
        "PreToolUse",
        "Write",
        json!({"file_path": root.join(".env"), "content": "KEY=1\n"}),
    );
    let a = answer(&hook(root, &write)).unwrap();
    let out = &a["hookSpecificOutput"];
    assert_eq!(out["hookEventName"], "PreToolUse");
    assert_eq!(out["permissionDecision"], "deny");
    let reason = out["permissionDecisionReason"].as_str().unwrap();
    assert!(
        reason.contains("protected_paths") && reason.contains(".env"),
        "{reason}"
    );
}

#[test]
fn an_edit_is_judged_by_its_result_on_disk() {
    let dir = project();
    let root = dir.path();
    // One line today; this MultiEdit makes it seven: file-size denies on-edit.
    let edits = json!([
        {"old_string": "print('hi')\n", "new_string": "a\nb\nc\n"},
        {"old_string": "c\n", "new_string": "c\nd\ne\nf\ng\n"}
    ]);
    let multi = event(
        root,
        "PreToolUse",
        "MultiEdit",
        json!({"file_path": root.join("app.py"), "edits": edits}),
    );
    let a = answer(&hook(root, &multi)).unwrap();
    assert_eq!(a["hookSpecificOutput"]["permissionDecision"], "deny");
    let reason = a["hookSpecificOutput"]["permissionDecisionReason"]
        .as_str()
        .unwrap();
    assert!(
        reason.contains("file_size") && reason.contains("app.py"),
        "{reason}"
    );
}

#[test]
fn a_file_written_by_a_shell_command_is_blocked_after_the_fact() {
    let dir = project();
    let root = dir.path();
    // The command ran (PreToolUse saw only `sh -c ...`); now the file is there.
    std::fs::write(root.join(".env"), "KEY=1\n").unwrap();
    let post = event(
        root,
        "PostToolUse",
        "Bash",
        json!({"command": "printf 'KEY=1\\n' > .env"}),
    );
    let a = answer(&hook(root, &post)).unwrap();
    assert_eq!(a["decision"], "block");
    let reason = a["reason"].as_str().unwrap();
    assert!(reason.contains(".env"), "{reason}");
    // A clean tree passes.
    std::fs::remove_file(root.join(".env")).unwrap();
    assert_eq!(answer(&hook(root, &post)), None);
}

#[test]
fn a_broken_plugin_missing_config_or_unreadable_input_denies() {
    let dir = project();
    let root = dir.path();
    std::fs::write(root.join("broken.wasm"), b"\0asm not really").unwrap();
    std::fs::write(
        root.join("gaffer.toml"),
        "[[plugins.hooks]]\npath = \"broken.wasm\"\n",
    )
    .unwrap();
    let bash = event(root, "PreToolUse", "Bash", json!({"command": "ls"}));
    let a = answer(&hook(root, &bash)).unwrap();
    assert_eq!(a["hookSpecificOutput"]["permissionDecision"], "deny");
    let reason = a["hookSpecificOutput"]["permissionDecisionReason"]
        .as_str()
        .unwrap();
    assert!(
        reason.contains("fail closed") && reason.contains("broken"),
        "{reason}"
    );

    let nowhere = tempfile::tempdir().unwrap();
    let lost = event(
        nowhere.path(),
        "PreToolUse",
        "Bash",
        json!({"command": "ls"}),
    );
    let a = answer(&hook(nowhere.path(), &lost)).unwrap();
    let reason = a["hookSpecificOutput"]["permissionDecisionReason"]
        .as_str()
        .unwrap();
    assert!(reason.contains("no gaffer.toml"), "{reason}");

    let out = hook(root, "{\"hook_event_name\": \"PreToolUse\", ");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("fail closed"));
    assert!(out.stdout.is_empty());
}

#[test]
fn python_and_javascript_hooks_judge_like_the_rust_one() {
    for lang in [support::Lang::Python, support::Lang::Js] {
        let dir = project_with(&support::polyglot_guest(lang, "protected-paths"), None);
        let root = dir.path();
        let allowed = event(
            root,
            "PreToolUse",
            "Write",
            json!({"file_path": root.join("notes.md"), "content": "x"}),
        );
        assert_eq!(answer(&hook(root, &allowed)), None, "{lang:?}");

        let denied = event(
            root,
            "PreToolUse",
            "Write",
            json!({"file_path": root.join("db/migrations/001.sql"), "content": "drop"}),
        );
        let a = answer(&hook(root, &denied)).expect("an answer");
        let out = &a["hookSpecificOutput"];
        assert_eq!(out["permissionDecision"], "deny", "{lang:?}: {a}");
        let reason = out["permissionDecisionReason"].as_str().unwrap();
        assert!(
            reason.contains("`db/migrations/001.sql` is protected (matches `**/migrations/**`)"),
            "{lang:?}: {reason}"
        );

        std::fs::write(root.join(".env"), "KEY=1\n").unwrap();
        let shell = event(
            root,
            "PostToolUse",
            "Bash",
            json!({"command": "echo KEY=1 > .env", "description": "write"}),
        );
        let a = answer(&hook(root, &shell)).expect("an answer");
        assert_eq!(a["decision"], "block", "{lang:?}: {a}");
        assert!(
            a["reason"]
                .as_str()
                .unwrap()
                .contains("`.env` is protected"),
            "{lang:?}: {a}"
        );
    }
}

#[test]
fn the_small_gaffer_hook_binary_answers_exactly_as_gaffer_hook_claude_code() {
    let dir = project();
    let root = dir.path();
    std::fs::write(root.join("big.py"), "x = 1\n".repeat(9)).unwrap();
    let events = [
        // allowed: no answer
        event(
            root,
            "PreToolUse",
            "Write",
            json!({"file_path": root.join("notes.md"), "content": "x"}),
        ),
        // denied by pre-tool
        event(
            root,
            "PreToolUse",
            "Write",
            json!({"file_path": root.join(".env"), "content": "K=1"}),
        ),
        // denied by on-edit (the file would be 9 lines)
        event(
            root,
            "PreToolUse",
            "Edit",
            json!({"file_path": root.join("big.py"), "old_string": "x = 1", "new_string": "x = 2"}),
        ),
        // blocked after the fact by on-diff (big.py is new and too long)
        event(
            root,
            "PostToolUse",
            "Bash",
            json!({"command": "true", "description": "nothing"}),
        ),
        // unreadable input: exit status 2, the reason on stderr
        "{not json".to_string(),
    ];
    for input in &events {
        let full = hook(root, input);
        let small = small_hook(root, input);
        assert_eq!(small.status.code(), full.status.code(), "{input}");
        assert_eq!(
            String::from_utf8_lossy(&small.stdout),
            String::from_utf8_lossy(&full.stdout),
            "{input}"
        );
    }
    // The answers are the real ones, not two empty outputs.
    let denied = small_hook(root, &events[1]);
    assert!(String::from_utf8_lossy(&denied.stdout).contains("\"deny\""));
    assert_eq!(small_hook(root, &events[4]).status.code(), Some(2));
    // Arguments it does not know are refused (exit status 2, which blocks in Claude Code).
    let out = run_bridge(
        Command::new(env!("CARGO_BIN_EXE_gaffer-hook")).arg("--frobnicate"),
        root,
        &events[0],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--frobnicate"));
}

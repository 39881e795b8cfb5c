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

/// The `gaffer-hook` binary under test: the one `scripts/test.sh` links as it ships
/// (statically, `scripts/build-hook.sh`) when `GAFFER_HOOK_BIN` names it, else the one cargo
/// linked for this test run.
fn gaffer_hook() -> std::path::PathBuf {
    match std::env::var_os("GAFFER_HOOK_BIN") {
        Some(path) if !path.is_empty() => std::path::PathBuf::from(path),
        _ => std::path::PathBuf::from(env!("CARGO_BIN_EXE_gaffer-hook")),
    }
}

/// The same bridge through the small `gaffer-hook` binary.
fn small_hook(root: &Path, input: &str) -> Output {
    run_bridge(Command::new(gaffer_hook()).arg("claude-code"), root, input)
}

fn run_bridge(command: &mut Command, root: &Path, input: &str) -> Output {
    // Claude Code sets CLAUDE_PROJECT_DIR to the project it was started in.
    run_bridge_in(command.env("CLAUDE_PROJECT_DIR", root), root, input)
}

/// The bridge run as Claude Code runs it, from `cwd`, with the environment `command` has.
fn run_bridge_in(command: &mut Command, cwd: &Path, input: &str) -> Output {
    let mut child = command
        .current_dir(cwd)
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

/// A refusal: exit status 2 (a denial in Claude Code), the reason on stderr, nothing on stdout.
fn refused(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(stderr.contains("fail closed"), "{stderr}");
    stderr
}

/// The reason of a PreToolUse denial.
fn denial(out: &Output) -> String {
    let a = answer(out).expect("an answer");
    let out = &a["hookSpecificOutput"];
    assert_eq!(out["permissionDecision"], "deny", "{a}");
    out["permissionDecisionReason"]
        .as_str()
        .unwrap()
        .to_string()
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
    let reason = refused(&hook(root, &bash));
    assert!(reason.contains("broken"), "{reason}");

    let nowhere = tempfile::tempdir().unwrap();
    let lost = event(
        nowhere.path(),
        "PreToolUse",
        "Bash",
        json!({"command": "ls"}),
    );
    let reason = refused(&hook(nowhere.path(), &lost));
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
        Command::new(gaffer_hook()).arg("--frobnicate"),
        root,
        &events[0],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--frobnicate"));
}

/// `scripts/test.sh` runs this file against `gaffer-hook` as `scripts/build-hook.sh` ships it:
/// a static position-independent executable. Checked from its ELF program headers: no
/// interpreter (no dynamic loader, no shared libraries to map at every event), and still
/// position-independent (`ET_DYN`: the kernel places it at a random address).
#[test]
fn the_shipped_gaffer_hook_needs_no_dynamic_loader_and_keeps_a_random_address() {
    let Some(path) = std::env::var_os("GAFFER_HOOK_BIN").filter(|p| !p.is_empty()) else {
        eprintln!("GAFFER_HOOK_BIN is not set (scripts/test.sh sets it): nothing to check");
        return;
    };
    if !cfg!(all(
        target_os = "linux",
        target_env = "gnu",
        target_arch = "x86_64"
    )) {
        return;
    }
    let elf = std::fs::read(&path).unwrap();
    let u16_at = |at: usize| u16::from_le_bytes([elf[at], elf[at + 1]]);
    let u32_at = |at: usize| u32::from_le_bytes(elf[at..at + 4].try_into().unwrap());
    let u64_at = |at: usize| u64::from_le_bytes(elf[at..at + 8].try_into().unwrap());
    assert_eq!(&elf[..4], b"\x7fELF");
    assert_eq!(elf[4], 2, "a 64-bit ELF");
    const ET_DYN: u16 = 3;
    const PT_INTERP: u32 = 3;
    const PT_DYNAMIC: u32 = 2;
    assert_eq!(u16_at(16), ET_DYN, "position-independent");
    let (phoff, phentsize, phnum) = (u64_at(32) as usize, u16_at(54) as usize, u16_at(56));
    let types: Vec<u32> = (0..usize::from(phnum))
        .map(|i| u32_at(phoff + i * phentsize))
        .collect();
    assert!(
        !types.contains(&PT_INTERP),
        "{}: names a dynamic loader",
        path.to_string_lossy()
    );
    // A static PIE keeps a dynamic section for its own relocations; with no interpreter, no
    // library can be loaded for it.
    assert!(types.contains(&PT_DYNAMIC));
}

/// A Write of `content` to `path` (absolute, or relative to `root`) as Claude Code sends it.
fn write_event(root: &Path, path: &str, content: &str) -> String {
    event(
        root,
        "PreToolUse",
        "Write",
        json!({"file_path": root.join(path), "content": content}),
    )
}

/// Attack 1: the configuration is the project's, whatever the event's `cwd` says.
#[test]
fn the_configuration_is_the_projects_not_the_one_the_events_cwd_leads_to() {
    let dir = project();
    let root = dir.path();
    // An empty gaffer.toml in a subdirectory, and a cwd with none at all.
    std::fs::create_dir(root.join("sub")).unwrap();
    std::fs::write(root.join("sub/gaffer.toml"), "").unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    for cwd in [root.join("sub"), elsewhere.path().to_path_buf()] {
        let mut e: Value = serde_json::from_str(&write_event(root, ".env", "K=1")).unwrap();
        e["cwd"] = json!(cwd);
        let out = run_bridge_in(
            Command::new(gaffer_hook()).env("CLAUDE_PROJECT_DIR", root),
            &cwd,
            &e.to_string(),
        );
        assert!(
            denial(&out).contains("protected_paths"),
            "{}",
            cwd.display()
        );
    }
    // Control: the empty configuration, when it is the project's, judges nothing.
    let out = run_bridge(
        &mut Command::new(gaffer_hook()),
        &root.join("sub"),
        &write_event(root, "sub/.env", "K=1"),
    );
    assert_eq!(answer(&out), None);
    // `--config` wins over CLAUDE_PROJECT_DIR.
    let out = run_bridge(
        Command::new(gaffer_hook())
            .arg("--config")
            .arg(root.join("gaffer.toml")),
        &root.join("sub"),
        &write_event(root, "sub/.env", "K=1"),
    );
    assert!(denial(&out).contains("protected_paths"));
    // Neither: nothing to obey, so nothing is allowed.
    let out = run_bridge_in(
        Command::new(gaffer_hook()).env_remove("CLAUDE_PROJECT_DIR"),
        root,
        &write_event(root, "notes.md", "x"),
    );
    assert!(refused(&out).contains("CLAUDE_PROJECT_DIR"));
}

/// Attack 2: symlinks inside the project and a project reached through a symlinked root.
#[test]
fn symlinks_lead_the_rules_to_the_file_they_point_at() {
    let dir = project();
    let root = dir.path();
    std::fs::create_dir_all(root.join("db/migrations")).unwrap();
    std::os::unix::fs::symlink(".env", root.join("dotenv")).unwrap();
    std::os::unix::fs::symlink("db/migrations", root.join("mig")).unwrap();
    let reason = denial(&hook(root, &write_event(root, "dotenv", "K=1")));
    assert!(reason.contains("`.env` is protected"), "{reason}");
    let reason = denial(&hook(root, &write_event(root, "mig/0001.sql", "drop")));
    assert!(
        reason.contains("`db/migrations/0001.sql` is protected"),
        "{reason}"
    );
    // The project reached through a symlink to its root.
    let outside = tempfile::tempdir().unwrap();
    let alias = outside.path().join("alias");
    std::os::unix::fs::symlink(root, &alias).unwrap();
    let out = run_bridge(
        &mut Command::new(gaffer_hook()),
        &alias,
        &write_event(&alias, ".env", "K=1"),
    );
    assert!(denial(&out).contains("`.env` is protected"));
    // Control: an ordinary file through the same symlinked root is allowed.
    let out = run_bridge(
        &mut Command::new(gaffer_hook()),
        &alias,
        &write_event(&alias, "notes.md", "x"),
    );
    assert_eq!(answer(&out), None);
}

/// Attack 3: the `.git` file itself (and git's metadata at any depth) is never the agent's.
#[test]
fn git_metadata_is_not_the_agents_to_write() {
    let dir = project();
    let root = dir.path();
    for path in [
        ".git",
        ".git/config",
        "vendor/lib/.git",
        ".gitattributes",
        "sub/.gitmodules",
    ] {
        let reason = denial(&hook(root, &write_event(root, path, "x")));
        assert!(reason.contains("git's metadata"), "{path}: {reason}");
    }
    let bash = event(
        root,
        "PreToolUse",
        "Bash",
        json!({"command": "echo 'gitdir: /tmp/x' > .git"}),
    );
    assert!(denial(&hook(root, &bash)).contains("`.git`"));
}

/// Attack 4: every tool that writes is judged; unknown tools and incomplete events are denied.
#[test]
fn every_writing_tool_is_judged_and_what_is_unknown_is_denied() {
    let dir = project();
    let root = dir.path();
    let mut config = std::fs::read_to_string(root.join("gaffer.toml")).unwrap();
    config.push_str(
        "\n[claude_code]\nread_only_tools = [\"mcp__docs__search\"]\n\n[claude_code.write_tools.mcp__fs__write_file]\npath = \"path\"\ncontent = \"content\"\n",
    );
    std::fs::write(root.join("gaffer.toml"), config).unwrap();
    let notebook = event(
        root,
        "PreToolUse",
        "NotebookEdit",
        json!({"notebook_path": root.join("db/migrations/fix.ipynb"), "new_source": "drop", "edit_mode": "insert"}),
    );
    assert!(denial(&hook(root, &notebook)).contains("db/migrations/fix.ipynb"));
    let mcp = event(
        root,
        "PreToolUse",
        "mcp__fs__write_file",
        json!({"path": ".env", "content": "K=1"}),
    );
    assert!(denial(&hook(root, &mcp)).contains("`.env` is protected"));
    // Controls: the same tools on an ordinary file, and a declared read-only tool.
    let mcp_ok = event(
        root,
        "PreToolUse",
        "mcp__fs__write_file",
        json!({"path": "notes.md", "content": "x"}),
    );
    assert_eq!(answer(&hook(root, &mcp_ok)), None);
    let search = event(root, "PreToolUse", "mcp__docs__search", json!({"q": "x"}));
    assert_eq!(answer(&hook(root, &search)), None);
    // Unknown tools, and events missing what the bridge needs.
    let unknown = event(
        root,
        "PreToolUse",
        "mcp__other__write",
        json!({"path": ".env"}),
    );
    assert!(refused(&hook(root, &unknown)).contains("mcp__other__write"));
    let base: Value = serde_json::from_str(&write_event(root, "notes.md", "x")).unwrap();
    for (field, value) in [
        ("hook_event_name", None),
        ("hook_event_name", Some(json!("NoSuchEvent"))),
        ("tool_name", None),
        ("tool_input", None),
        ("tool_input", Some(json!("not an object"))),
    ] {
        let mut e = base.clone();
        match value {
            Some(v) => e[field] = v,
            None => {
                e.as_object_mut().unwrap().remove(field);
            }
        }
        refused(&hook(root, &e.to_string()));
    }
}

/// Waits for the bridge at most `secs` seconds, killing it past that (a hang fails the test
/// instead of stopping the suite).
fn within(secs: u64, mut command: Command, input: &[u8], keep_stdin_open: bool) -> Output {
    use std::time::{Duration, Instant};
    let mut child = command
        .env("GAFFER_PLUGIN_CACHE", support::test_cache_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input).unwrap();
    let _open = keep_stdin_open.then_some(stdin);
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(secs) {
            child.kill().unwrap();
            panic!("the bridge did not answer within {secs} s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Attack 5: a FIFO or a device as the file, and the bridge's own timeout.
#[test]
fn a_fifo_a_device_or_a_stalled_event_cannot_hang_the_bridge() {
    let dir = project();
    let root = dir.path();
    assert!(
        Command::new("mkfifo")
            .arg(root.join("pipe"))
            .status()
            .unwrap()
            .success()
    );
    std::os::unix::fs::symlink("/dev/zero", root.join("zero")).unwrap();
    let bridge = || {
        let mut c = Command::new(gaffer_hook());
        c.current_dir(root).env("CLAUDE_PROJECT_DIR", root);
        c
    };
    let edit = |path: &str| {
        event(
            root,
            "PreToolUse",
            "Edit",
            json!({"file_path": root.join(path), "old_string": "a", "new_string": "b"}),
        )
    };
    // The FIFO has no writer: a plain open would block forever.
    let out = within(30, bridge(), edit("pipe").as_bytes(), false);
    assert!(refused(&out).contains("not a regular file"));
    // /dev/zero, named directly and through a link, is outside the project.
    for path in ["zero", "/dev/zero"] {
        let out = within(30, bridge(), edit(path).as_bytes(), false);
        assert!(denial(&out).contains("outside the project"), "{path}");
    }
    // An event that never ends (stdin left open): the bridge's own timeout denies.
    let mut config = std::fs::read_to_string(root.join("gaffer.toml")).unwrap();
    config.push_str("\n[claude_code]\ntimeout_secs = 1\n");
    std::fs::write(root.join("gaffer.toml"), config).unwrap();
    let out = within(30, bridge(), b"{\"hook_event_name\": ", true);
    assert!(refused(&out).contains("no decision within 1 s"));
}

/// Attack 6: a rewrite is judged as what it becomes; an edit that creates a file is judged by
/// its content; a shell write to an ignored protected file is judged before and after.
#[test]
fn rewrites_creations_and_ignored_shell_writes_are_judged_by_what_they_do() {
    let dir = project();
    let root = dir.path();
    let hooks = tempfile::tempdir().unwrap();
    let to_env =
        support::rewriting_hook(hooks.path(), "to_env", r#"{"path":".env","content":"K=1"}"#);
    let out_of_project = support::rewriting_hook(
        hooks.path(),
        "out",
        r#"{"path":"/tmp/gaffer-rewritten","content":"x"}"#,
    );
    let protected = support::guest("protected-paths");
    let configure = |hooks: &[&Path]| {
        let mut config = String::new();
        for hook in hooks {
            config.push_str(&format!(
                "[[plugins.hooks]]\npath = {:?}\nconfig = {{ globs = [\".env\", \"**/migrations/**\"] }}\n\n",
                hook.display().to_string()
            ));
        }
        std::fs::write(root.join("gaffer.toml"), config).unwrap();
    };
    // The rewriting hook first: protected-paths judges the rewritten call.
    configure(&[&to_env, &protected]);
    let reason = denial(&hook(root, &write_event(root, "notes.md", "x")));
    assert!(reason.contains("`.env` is protected"), "{reason}");
    // The rewriting hook last: the file change of the final call is what on-edit judges.
    configure(&[&protected, &to_env]);
    let reason = denial(&hook(root, &write_event(root, "notes.md", "x")));
    assert!(reason.contains(".env"), "{reason}");
    // A rewrite out of the project is refused, whoever asks for it.
    configure(&[&out_of_project]);
    let reason = denial(&hook(root, &write_event(root, "notes.md", "x")));
    assert!(
        reason.contains("rewrite is refused") && reason.contains("outside the project"),
        "{reason}"
    );
    assert!(!Path::new("/tmp/gaffer-rewritten").exists());

    // An Edit that creates a file (empty old_string) is judged on its content.
    let dir = project();
    let root = dir.path();
    let create = |lines: usize| {
        event(
            root,
            "PreToolUse",
            "Edit",
            json!({"file_path": root.join("new.py"), "old_string": "", "new_string": "x = 1\n".repeat(lines)}),
        )
    };
    assert!(denial(&hook(root, &create(9))).contains("file_size"));
    assert_eq!(answer(&hook(root, &create(3))), None);

    // A shell write to `.env`, which git ignores.
    std::fs::write(root.join(".gitignore"), ".env\n").unwrap();
    let shell = |name: &str, command: &str| event(root, name, "Bash", json!({"command": command}));
    assert!(
        denial(&hook(root, &shell("PreToolUse", "echo K=1 > .env")))
            .contains("`.env` is protected")
    );
    // A write the command's text does not show is caught by its effect.
    let sneaky = "python3 -c \"open('.e'+'nv','w').write('K=1')\"";
    assert_eq!(answer(&hook(root, &shell("PreToolUse", sneaky))), None);
    std::fs::write(root.join(".env"), "K=1\n").unwrap();
    let a = answer(&hook(root, &shell("PostToolUse", sneaky))).unwrap();
    assert_eq!(a["decision"], "block", "{a}");
    assert!(
        a["reason"]
            .as_str()
            .unwrap()
            .contains("`.env` is protected"),
        "{a}"
    );
    // Control: an ignored file the command did not touch is not held against it.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let mut e: Value = serde_json::from_str(&shell("PreToolUse", "ls")).unwrap();
    e["tool_use_id"] = json!("toolu_02");
    assert_eq!(answer(&hook(root, &e.to_string())), None);
    e["hook_event_name"] = json!("PostToolUse");
    e["tool_response"] = json!({"stdout": "", "stderr": "", "interrupted": false});
    let after = hook(root, &e.to_string());
    let a = answer(&after);
    assert!(
        a.as_ref()
            .is_none_or(|a| !a["reason"].as_str().unwrap_or("").contains(".env")),
        "{a:?}"
    );
}

/// Attack 7: the files that configure the agent's hooks (and gaffer's own policy) are not the
/// agent's to write, by any tool.
#[test]
fn the_agent_cannot_rewrite_where_its_hooks_are_configured() {
    let dir = project();
    let root = dir.path();
    for path in [
        ".claude/settings.json",
        ".claude/settings.local.json",
        "gaffer.toml",
        ".gaffer/state",
    ] {
        let reason = denial(&hook(
            root,
            &write_event(root, path, "{\"disableAllHooks\": true}"),
        ));
        assert!(
            reason.contains("only a person may change it"),
            "{path}: {reason}"
        );
    }
    let bash = event(
        root,
        "PreToolUse",
        "Bash",
        json!({"command": "mkdir -p .claude && echo '{\"disableAllHooks\":true}' > .claude/settings.json"}),
    );
    assert!(denial(&hook(root, &bash)).contains(".claude/settings.json"));
    // Written by a command whose text does not show it: blocked after the fact.
    std::fs::create_dir_all(root.join(".claude")).unwrap();
    std::fs::write(
        root.join(".claude/settings.local.json"),
        "{\"disableAllHooks\":true}",
    )
    .unwrap();
    let post = event(
        root,
        "PostToolUse",
        "Bash",
        json!({"command": "./setup.sh"}),
    );
    let a = answer(&hook(root, &post)).unwrap();
    assert_eq!(a["decision"], "block");
    assert!(
        a["reason"]
            .as_str()
            .unwrap()
            .contains(".claude/settings.local.json"),
        "{a}"
    );
}

/// Runs the bridge on `input` and returns its output with its peak resident memory in bytes
/// (from the kernel's accounting of the child, `wait4`).
#[allow(clippy::zombie_processes)] // reaped by `wait4`, which also gives its resource use
fn peak_memory(root: &Path, input: &str) -> (Output, u64) {
    let mut child = Command::new(gaffer_hook())
        .current_dir(root)
        .env("CLAUDE_PROJECT_DIR", root)
        .env("GAFFER_PLUGIN_CACHE", support::test_cache_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    std::io::Read::read_to_end(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    std::io::Read::read_to_end(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    let pid = i32::try_from(child.id()).unwrap();
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid value for wait4 to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, with valid pointers.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid);
    use std::os::unix::process::ExitStatusExt;
    let output = Output {
        status: std::process::ExitStatus::from_raw(status),
        stdout,
        stderr,
    };
    // ru_maxrss is in KiB on Linux.
    (output, u64::try_from(usage.ru_maxrss).unwrap() * 1024)
}

/// Plugin case 9 through the bridge: every memory of a hook counts against one cap, so a hook
/// of three 100 MiB memories under a 256 MiB cap is stopped before it fills them.
#[test]
fn the_bridges_memory_stays_under_a_hooks_cap_whatever_its_memories() {
    const MIB: u64 = 1024 * 1024;
    // What the bridge itself may hold besides the hook's memory: its code, the compiled hook,
    // the event.
    const MARGIN: u64 = 128 * MIB;
    let dir = project();
    let root = dir.path();
    let hooks = tempfile::tempdir().unwrap();
    let wasm = support::many_memories_hook(hooks.path(), 3, 1600);
    let configure = |memory_mib: u64| {
        std::fs::write(
            root.join("gaffer.toml"),
            format!(
                "[[plugins.hooks]]\npath = {:?}\nname = \"three-memories\"\nmemory_mib = {memory_mib}\n",
                wasm.display().to_string()
            ),
        )
        .unwrap();
    };
    let bash = event(root, "PreToolUse", "Bash", json!({"command": "ls"}));
    configure(256);
    let (out, peak) = peak_memory(root, &bash);
    let reason = denial(&out);
    assert!(reason.contains("memory limit"), "{reason}");
    eprintln!("bridge peak, hook capped at 256 MiB: {} KiB", peak / 1024);
    assert!(
        peak < 256 * MIB + MARGIN,
        "the bridge peaked at {} MiB",
        peak / MIB
    );
    // Control: with room for all three, the hook fills them and the bridge holds them.
    configure(512);
    let (out, peak) = peak_memory(root, &bash);
    assert_eq!(answer(&out), None);
    eprintln!(
        "bridge peak, hook's three memories filled: {} KiB",
        peak / 1024
    );
    assert!(
        peak > 300 * MIB,
        "the hook's memories were not filled: {} MiB",
        peak / MIB
    );
    // Forty memories are refused when the hook loads: the bridge cannot decide, so it denies.
    let forty = support::many_memories_hook(hooks.path(), 40, 1);
    std::fs::write(
        root.join("gaffer.toml"),
        format!(
            "[[plugins.hooks]]\npath = {:?}\n",
            forty.display().to_string()
        ),
    )
    .unwrap();
    let reason = refused(&hook(root, &bash));
    assert!(reason.contains("41 linear memories"), "{reason}");
}

/// Attack 7, the setup: the settings gaffer prints put the hook where the agent cannot edit it
/// (not the project's `.claude/`), on every tool, blocking when the hook fails, with the
/// configuration named so that neither the event nor the environment chooses it.
#[test]
fn the_printed_settings_install_a_hook_the_agent_cannot_steer() {
    let dir = project();
    let root = dir.path();
    let out = Command::new(env!("CARGO_BIN_EXE_gaffer"))
        .args(["hook", "claude-code", "--print-settings"])
        .env("CLAUDE_PROJECT_DIR", root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let settings: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(settings["allowManagedHooksOnly"], true);
    // From --settings, this outranks a `disableAllHooks: true` the agent writes into the
    // project's settings.
    assert_eq!(settings["disableAllHooks"], false);
    assert_eq!(settings["disableSkillShellExecution"], true);
    let config = root.join("gaffer.toml").canonicalize().unwrap();
    for event_name in ["PreToolUse", "PostToolUse"] {
        let entry = &settings["hooks"][event_name][0];
        assert_eq!(entry["matcher"], "*", "{settings}");
        let hook = &entry["hooks"][0];
        assert_eq!(hook["type"], "command");
        assert_eq!(hook["onFailure"], "block");
        let command = hook["command"].as_str().unwrap();
        assert!(command.contains(&config.display().to_string()), "{command}");
        // The command as Claude Code runs it (a shell), from anywhere, without
        // CLAUDE_PROJECT_DIR: the rules of this project still judge.
        let elsewhere = tempfile::tempdir().unwrap();
        let input = if event_name == "PreToolUse" {
            write_event(root, ".claude/settings.json", "{}")
        } else {
            std::fs::create_dir_all(root.join(".claude")).unwrap();
            std::fs::write(root.join(".claude/settings.json"), "{}").unwrap();
            event(root, "PostToolUse", "Bash", json!({"command": "./x"}))
        };
        let out = run_bridge_in(
            Command::new("sh")
                .args(["-c", command])
                .env_remove("CLAUDE_PROJECT_DIR"),
            elsewhere.path(),
            &input,
        );
        let a = answer(&out).unwrap();
        let text = a.to_string();
        assert!(text.contains(".claude/settings.json"), "{text}");
        assert!(text.contains("deny") || text.contains("block"), "{text}");
    }
}

/// A hook that never answers is stopped by its own deadline: the call is denied naming the
/// hook, long before the bridge's own limit, and its fuel (set far out of reach) plays no part.
/// Meanwhile the bridge's timer signal lands some sixty times in the spinning WebAssembly
/// (every 5 ms for 300 ms), which must not disturb it. Both binaries.
#[test]
fn a_hook_that_spins_is_stopped_by_its_deadline_and_the_call_denied() {
    let dir = project_with(&support::guest("hostile-hook"), None);
    let root = dir.path();
    let config = format!(
        "[[plugins.hooks]]\npath = {:?}\ndeadline_ms = 300\nfuel_per_call = 1000000000000000\n\n[claude_code]\ntimeout_secs = 60\n",
        support::guest("hostile-hook").display().to_string()
    );
    std::fs::write(root.join("gaffer.toml"), config).unwrap();
    let write = event(
        root,
        "PreToolUse",
        "Write",
        json!({"file_path": root.join("app.py"), "content": "print('bye')\n"}),
    );
    for binary in [
        gaffer_hook(),
        std::path::PathBuf::from(env!("CARGO_BIN_EXE_gaffer")),
    ] {
        let mut command = Command::new(&binary);
        if binary.ends_with("gaffer") {
            command.arg("hook");
        }
        let binary = binary.display();
        command
            .arg("claude-code")
            .current_dir(root)
            .env("CLAUDE_PROJECT_DIR", root);
        // Killed past 30 s, well inside the bridge's own 60 s: a hang fails the test.
        let out = within(30, command, write.as_bytes(), false);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !stderr.contains("no decision within"),
            "{binary}: the bridge's own limit stopped it, not the hook's deadline: {stderr}"
        );
        let decided = match answer(&out) {
            Some(a) => a["hookSpecificOutput"]["permissionDecisionReason"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            None => panic!("{binary}: no decision: {stderr}"),
        };
        assert_eq!(
            answer(&out).unwrap()["hookSpecificOutput"]["permissionDecision"],
            "deny",
            "{binary}"
        );
        assert!(decided.contains("hostile"), "{binary}: {decided}");
        assert!(decided.contains("deadline"), "{binary}: {decided}");
    }
}

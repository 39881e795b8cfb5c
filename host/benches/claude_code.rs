//! `gaffer hook claude-code` as Claude Code runs it: a new process per event, reading the event
//! on stdin, loading the configured hooks (compiled code from the disk cache) and answering.
//! Whole-process time is what a person waits for at every tool call. The same protected-paths
//! hook written in Rust, Python (componentize-py) and JavaScript (jco, QuickJS). Baseline in the
//! same run: a Python command hook making the same decision (one `python3` per event), and the
//! floor of any command hook, `sh -c 'exec /bin/true'` started the same way. `gaffer-hook` is
//! measured as `scripts/build-hook.sh` ships it (statically linked) when `GAFFER_HOOK_BIN` names
//! it, as `scripts/bench.sh` does.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};

/// The protected-paths hook in each language, as scripts/build-plugins.sh builds it.
fn hooks() -> [(&'static str, PathBuf); 3] {
    let guests = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/guests");
    [
        (
            "Rust",
            guests.join("wasm32-unknown-unknown/plugin/protected_paths.wasm"),
        ),
        (
            "Python",
            guests.join("polyglot/python/protected_paths.wasm"),
        ),
        (
            "JavaScript",
            guests.join("polyglot/js/protected-paths.wasm"),
        ),
    ]
}

const PYTHON_HOOK: &str = r#"
import fnmatch, json, os, sys
event = json.load(sys.stdin)
path = event.get("tool_input", {}).get("file_path", "")
rel = os.path.relpath(path, event.get("cwd", "."))
if any(fnmatch.fnmatch(rel, g) or fnmatch.fnmatch(os.path.basename(rel), g) for g in [".env", ".env.*", "**/migrations/**"]):
    print(json.dumps({"hookSpecificOutput": {"hookEventName": "PreToolUse", "permissionDecision": "deny", "permissionDecisionReason": f"{rel} is protected"}}))
"#;

fn run(program: &str, args: &[&str], dir: &Path, input: &[u8]) -> Vec<u8> {
    let mut child = Command::new(program)
        .args(args)
        .current_dir(dir)
        // As Claude Code runs its hooks: the bridge reads the project's gaffer.toml from here.
        .env("CLAUDE_PROJECT_DIR", dir)
        // Not cargo's library path, which `cargo bench` sets for its benches and every process
        // they start would inherit: each dynamically linked program (the exec floor's `sh` and
        // `true`, a dynamic `gaffer-hook`, Python) then looked for libc and every other library
        // in each of its directories first, about 200 failed opens per process, which Claude
        // Code's hooks do not pay.
        .env_remove("LD_LIBRARY_PATH")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    // A program that does not read its input (the exec floor) may have exited already.
    if let Err(e) = child.stdin.take().expect("stdin").write_all(input)
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        panic!("write: {e}");
    }
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success());
    out.stdout
}

/// A git repository whose gaffer.toml configures one hook, and a PreToolUse event for a write
/// to its `.env`.
fn project(hook: &Path) -> (tempfile::TempDir, String) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    std::fs::write(
        root.join("gaffer.toml"),
        format!(
            "[[plugins.hooks]]\npath = {:?}\nconfig = {{ globs = [\".env\", \".env.*\", \"**/migrations/**\"] }}\n",
            hook.display().to_string()
        ),
    )
    .expect("config");
    let status = Command::new("git")
        .args(["init", "-q"])
        .current_dir(root)
        .status()
        .expect("git");
    assert!(status.success());
    let event = serde_json::json!({
        "session_id": "bench", "transcript_path": root.join("t.jsonl"), "cwd": root,
        "permission_mode": "default", "hook_event_name": "PreToolUse", "tool_name": "Write",
        "tool_input": {"file_path": root.join(".env"), "content": "K=1\n"}, "tool_use_id": "toolu_1",
    })
    .to_string();
    (tmp, event)
}

/// A hook's language, its project and its event.
type Project = (&'static str, tempfile::TempDir, String);

fn bench(c: &mut Criterion) {
    let gaffer = env!("CARGO_BIN_EXE_gaffer");
    let projects: Vec<Project> = hooks()
        .into_iter()
        .map(|(lang, hook)| {
            assert!(hook.is_file(), "{} is not built", hook.display());
            let (dir, event) = project(&hook);
            // Warm the compile cache, and check the hook denies.
            let answer = run(
                gaffer,
                &["hook", "claude-code"],
                dir.path(),
                event.as_bytes(),
            );
            assert!(
                String::from_utf8_lossy(&answer).contains("\"deny\""),
                "{lang}"
            );
            (lang, dir, event)
        })
        .collect();
    let (_, root, event) = &projects[0];
    let root = root.path();
    let script = root.join("hook.py");
    std::fs::write(&script, PYTHON_HOOK).expect("script");
    let script = script.display().to_string();
    // The system's interpreter, not a version manager's shim (a pyenv shim is a shell script
    // that adds over 100 ms to every event).
    let python = if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    };
    let answer = run(python, &[&script], root, event.as_bytes());
    assert!(String::from_utf8_lossy(&answer).contains("\"deny\""));

    let mut group = c.benchmark_group("claude-code hook, one process per event");
    group.sample_size(50);
    group.measurement_time(Duration::from_secs(10));
    for (lang, dir, event) in &projects {
        group.bench_function(
            format!("gaffer hook claude-code ({lang} protected-paths, cached)"),
            |b| {
                b.iter(|| {
                    run(
                        gaffer,
                        &["hook", "claude-code"],
                        dir.path(),
                        event.as_bytes(),
                    )
                })
            },
        );
    }
    // The small binary that links only the bridge and the runtime, as it ships: linked
    // statically by `scripts/build-hook.sh`, which `scripts/bench.sh` runs and names in
    // `GAFFER_HOOK_BIN`; without it, the binary cargo linked for this bench.
    let linked_by_cargo = env!("CARGO_BIN_EXE_gaffer-hook");
    let shipped = std::env::var("GAFFER_HOOK_BIN")
        .ok()
        .filter(|path| !path.is_empty());
    let small = shipped.as_deref().unwrap_or(linked_by_cargo);
    // One `gaffer-hook` build on one project: checked to deny, then timed as `name`.
    let mut bench_small = |name: String, binary: &str, (lang, dir, event): &Project| {
        let answer = run(binary, &["claude-code"], dir.path(), event.as_bytes());
        assert!(
            String::from_utf8_lossy(&answer).contains("\"deny\""),
            "{lang}"
        );
        group.bench_function(name, |b| {
            b.iter(|| run(binary, &["claude-code"], dir.path(), event.as_bytes()))
        });
    };
    for project in &projects {
        let lang = project.0;
        bench_small(
            format!("gaffer-hook claude-code ({lang} protected-paths, cached)"),
            small,
            project,
        );
    }
    let rust = &projects[0];
    // What static linking is worth, in the same run: the same binary as cargo links it
    // (dynamically, against libc, libm and libgcc_s).
    if shipped.is_some() {
        bench_small(
            format!(
                "gaffer-hook claude-code ({} protected-paths, cached), linked dynamically",
                rust.0
            ),
            linked_by_cargo,
            rust,
        );
    }
    // Another build of `gaffer-hook` (`GAFFER_HOOK_COMPARE=/path/to/gaffer-hook`), measured in
    // the same run on the same projects, to compare a change with what it replaces on a noisy
    // machine. Its compile cache is its own only if its engine's key differs.
    if let Some(other) = std::env::var_os("GAFFER_HOOK_COMPARE") {
        bench_small(
            format!(
                "compared gaffer-hook claude-code ({} protected-paths, cached)",
                rust.0
            ),
            &other.to_string_lossy(),
            rust,
        );
    }
    // The floor of any command hook: start a process the same way (stdin fed, output read)
    // that does nothing.
    group.bench_function("baseline: sh -c 'exec /bin/true'", |b| {
        b.iter(|| run("/bin/sh", &["-c", "exec /bin/true"], root, event.as_bytes()))
    });
    group.bench_function("baseline: python3 command hook, same rule", |b| {
        b.iter(|| run(python, &[&script], root, event.as_bytes()))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

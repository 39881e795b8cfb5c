//! The binary stands alone: copied away from any checkout (no `target/guests`, no sources), its
//! demo runs the whole pipeline with the reference plugins it carries, and `gaffer init` gives
//! a project those plugins, pinned by their SHA-256, that a run loads (and refuses once a pinned
//! file changes).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The binaries gaffer installs (`gaffer` and its sandbox's init, `gaffer-sandbox`), alone in
/// a directory of their own under `dir`; the path of `gaffer`.
///
/// The programs are copied once per test program, before either test starts a process, and
/// each test gets hard links: a program copied while another thread forks is held open for
/// writing by that thread's child until it execs, and running the copy then fails with "Text
/// file busy" (ETXTBSY). A link opens nothing.
fn lone_binary(dir: &Path) -> PathBuf {
    static COPIED: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let copied = COPIED.get_or_init(|| {
        // In the temporary directory, so that the tests' own directories are on its file
        // system; replaced on every run.
        let bin = std::env::temp_dir().join(format!("gaffer-standalone-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&bin);
        std::fs::create_dir_all(&bin).unwrap();
        for name in ["gaffer", "gaffer-sandbox"] {
            let from = match name {
                "gaffer" => env!("CARGO_BIN_EXE_gaffer"),
                _ => env!("CARGO_BIN_EXE_gaffer-sandbox"),
            };
            std::fs::copy(from, bin.join(name)).unwrap();
        }
        // The tests' links keep the programs alive; the copies go when the test program ends.
        extern "C" fn remove_copies() {
            if let Some(bin) = COPIED.get() {
                let _ = std::fs::remove_dir_all(bin);
            }
        }
        // SAFETY: registers a function without arguments that only removes a directory.
        unsafe { libc::atexit(remove_copies) };
        bin
    });
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for name in ["gaffer", "gaffer-sandbox"] {
        std::fs::hard_link(copied.join(name), bin.join(name)).unwrap();
    }
    bin.join("gaffer")
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_demo_runs_from_a_directory_with_no_checkout() {
    let tmp = tempfile::tempdir().unwrap();
    let gaffer = lone_binary(tmp.path());
    let work = tmp.path().join("elsewhere");
    std::fs::create_dir_all(&work).unwrap();
    let out = Command::new(&gaffer)
        .args(["demo", "sample", "--format", "json"])
        .current_dir(&work)
        .env("GAFFER_PLUGIN_CACHE", tmp.path().join("cache"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // The sample backlog's four tasks all merge (two after an escalation), as the scripted
    // models in its solutions file are written to.
    assert_eq!(report["merged"], 4, "{stderr}");
    let states: Vec<&str> = report["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["merged"; 4]);
    // The plugins came from the binary: nothing of a checkout is around.
    assert!(work.join("sample/.gaffer/plugins/cost_tier.wasm").is_file());
    assert!(!work.join("target").exists());
}

#[test]
fn init_writes_pinned_plugins_that_a_run_loads_and_a_changed_one_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let gaffer = lone_binary(tmp.path());
    let repo = tmp.path().join("repo");
    std::fs::create_dir_all(repo.join("tests")).unwrap();
    std::fs::write(repo.join("calc.py"), "def add(a, b):\n    return a + b\n").unwrap();
    std::fs::write(
        repo.join("tests/test_calc.py"),
        "import unittest\nimport calc\n\nclass T(unittest.TestCase):\n    def test_add(self):\n        self.assertEqual(calc.add(1, 2), 3)\n",
    )
    .unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    let run = |args: &[&str]| {
        Command::new(&gaffer)
            .args(args)
            .current_dir(&repo)
            .env("GAFFER_PLUGIN_CACHE", tmp.path().join("cache"))
            .env("ANTHROPIC_API_KEY", "not-used")
            .output()
            .unwrap()
    };
    let out = run(&["init"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = std::fs::read_to_string(repo.join("gaffer.toml")).unwrap();
    // A plain tests/test_*.py project gets unittest discovery as its test command.
    assert!(
        config.contains("test_command = \"python3 -m unittest discover -s tests\""),
        "{config}"
    );
    // Each enabled plugin is pinned by the SHA-256 of the file written beside the config,
    // computed here from the file itself.
    for file in [
        "cost_tier.wasm",
        "tests_and_limits.wasm",
        "protected_paths.wasm",
    ] {
        let bytes = std::fs::read(repo.join("plugins").join(file)).unwrap();
        let out = Command::new("sha256sum")
            .arg(repo.join("plugins").join(file))
            .output()
            .unwrap();
        let hash = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .to_string();
        assert!(!bytes.is_empty());
        assert!(
            config.contains(&format!("path = \"plugins/{file}\"\nsha256 = \"{hash}\"")),
            "{file} is not pinned by {hash}:\n{config}"
        );
    }
    std::fs::write(repo.join(".gitignore"), "/.gaffer/\n").unwrap();
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "start"]);

    // An empty backlog: the run loads every plugin, checks the project, and ends at once.
    let out = run(&["run"]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Without the sandbox's init beside it, a run refuses and says what is missing and how
    // to run anyway; told to run unconfined, it does.
    std::fs::rename(
        gaffer.with_file_name("gaffer-sandbox"),
        repo.join(".gaffer/gaffer-sandbox"),
    )
    .unwrap();
    let out = run(&["run"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("sandbox is not available")
            && stderr.contains("`gaffer-sandbox`")
            && stderr.contains("--unconfined"),
        "{stderr}"
    );
    let out = run(&["run", "--unconfined"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::rename(
        repo.join(".gaffer/gaffer-sandbox"),
        gaffer.with_file_name("gaffer-sandbox"),
    )
    .unwrap();

    // A pinned file with other bytes is refused, naming the plugin, before anything runs.
    let hook = repo.join("plugins/protected_paths.wasm");
    let mut bytes = std::fs::read(&hook).unwrap();
    bytes.extend_from_slice(b"\0");
    std::fs::write(&hook, bytes).unwrap();
    let out = run(&["run"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("plugin `protected_paths`") && stderr.contains("gaffer.toml pins"),
        "{stderr}"
    );
}

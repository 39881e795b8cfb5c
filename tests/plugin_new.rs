//! `gaffer plugin new`: every world in every language scaffolds a project that builds with its
//! own `build.sh` and passes its own `cases.toml` under `gaffer plugin test`; a case made wrong
//! fails the command; a non-empty directory is refused and left as it was.
//!
//! The builds use the tools `scripts/setup.sh` installs into the repository (componentize-py in
//! `.tools/python`, jco in `plugins/js/node_modules`). The Rust builds share
//! `target/scaffolds`, so only the first compiles wit-bindgen.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const WORLDS: [&str; 3] = ["router", "verifier", "hook"];

/// The gaffer binary, caching compiled components in `cache`: a directory of the test's own,
/// since componentize-py and jco builds differ byte for byte from one build to the next, so a
/// cache shared between runs would only grow (by ~37 MB per Python component).
fn gaffer(cache: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gaffer"));
    cmd.env("GAFFER_PLUGIN_CACHE", cache);
    cmd
}

fn text(out: &Output) -> String {
    format!(
        "status: {}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A tool the repository's set-up script installs.
fn installed_tool(relative: &str) -> PathBuf {
    let path = support::workspace_root().join(relative);
    assert!(
        path.exists(),
        "{} is missing: run `bash scripts/setup.sh` first",
        path.display()
    );
    path
}

/// `gaffer plugin new WORLD --lang LANG DIR`, asserting success.
fn scaffold(world: &str, lang: &str, dir: &Path) {
    // `plugin new` compiles nothing: any cache will do.
    let out = gaffer(&support::test_cache_dir())
        .args(["plugin", "new", world, "--lang", lang])
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "plugin new: {}", text(&out));
}

/// Run the project's `build.sh` with the repository's tools, asserting it built `plugin.wasm`.
fn build(dir: &Path) -> PathBuf {
    let started = std::time::Instant::now();
    let out = Command::new(dir.join("build.sh"))
        .current_dir(dir)
        .env(
            "COMPONENTIZE_PY",
            installed_tool(".tools/python/bin/componentize-py"),
        )
        .env("JCO", installed_tool("plugins/js/node_modules/.bin/jco"))
        .env(
            "CARGO_TARGET_DIR",
            support::workspace_root().join("target").join("scaffolds"),
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "build.sh in {}: {}",
        dir.display(),
        text(&out)
    );
    eprintln!("built {} in {:.1?}", dir.display(), started.elapsed());
    let wasm = dir.join("plugin.wasm");
    assert!(
        wasm.is_file(),
        "build.sh wrote no plugin.wasm: {}",
        text(&out)
    );
    wasm
}

fn plugin_test(dir: &Path, cache: &Path) -> Output {
    gaffer(cache)
        .current_dir(dir)
        .args(["plugin", "test", "plugin.wasm", "--cases", "cases.toml"])
        .output()
        .unwrap()
}

/// Scaffold, build, test and check every world in `lang`.
fn every_world_builds_and_passes(lang: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("compile-cache");
    for world in WORLDS {
        // A directory that does not exist yet: `plugin new` creates it.
        let dir = tmp.path().join(format!("my-{world}"));
        scaffold(world, lang, &dir);
        build(&dir);

        let cases = std::fs::read_to_string(dir.join("cases.toml")).unwrap();
        let count = cases.matches("[[case]]").count();
        assert!(count >= 3, "{world}/{lang}: only {count} cases");
        let out = plugin_test(&dir, &cache);
        let report = text(&out);
        assert!(out.status.success(), "{world}/{lang}: {report}");
        assert!(
            report.contains(&format!("{count} of {count} cases passed")),
            "{world}/{lang}: {report}"
        );
        assert!(!report.contains("FAIL"), "{world}/{lang}: {report}");

        let out = gaffer(&cache)
            .current_dir(&dir)
            .args(["plugin", "check", "plugin.wasm"])
            .output()
            .unwrap();
        let report = text(&out);
        assert!(out.status.success(), "{world}/{lang} check: {report}");
        assert!(
            report.contains(&format!("world:     {world}")),
            "{world}/{lang} check: {report}"
        );
        assert!(
            report.contains("accepted:  yes"),
            "{world}/{lang}: {report}"
        );
    }
}

#[test]
fn rust_plugins_build_and_pass_their_cases() {
    every_world_builds_and_passes("rust");
}

#[test]
fn python_plugins_build_and_pass_their_cases() {
    every_world_builds_and_passes("python");
}

#[test]
fn js_plugins_build_and_pass_their_cases() {
    every_world_builds_and_passes("js");
}

#[test]
fn a_case_made_wrong_fails_the_test_command() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("guard");
    scaffold("hook", "js", &dir);
    build(&dir);
    let cases_file = dir.join("cases.toml");
    let cases = std::fs::read_to_string(&cases_file).unwrap();
    let count = cases.matches("[[case]]").count();
    // The first case expects a write to .env to be denied: expect the other decision.
    let right = "name = \"a write to .env is denied\"";
    let at = cases.find(right).expect("the .env case");
    let (before, after) = cases.split_at(at);
    let after = after.replacen("expect = \"deny\"", "expect = \"allow\"", 1);
    std::fs::write(&cases_file, format!("{before}{after}")).unwrap();

    let out = plugin_test(&dir, &tmp.path().join("compile-cache"));
    let report = text(&out);
    assert!(!out.status.success(), "{report}");
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(
        report.contains("FAIL  a write to .env is denied"),
        "{report}"
    );
    assert!(report.contains("expected: allow"), "{report}");
    assert!(
        report.contains(&format!("{} of {count} cases passed", count - 1)),
        "{report}"
    );
}

#[test]
fn a_non_empty_directory_is_refused_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("notes.md"), "mine").unwrap();
    let out = gaffer(&support::test_cache_dir())
        .args(["plugin", "new", "router", "--lang", "rust"])
        .arg(tmp.path())
        .output()
        .unwrap();
    let report = text(&out);
    assert_eq!(out.status.code(), Some(1), "{report}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{} is not empty", tmp.path().display()))
            && stderr.contains("notes.md")
            && stderr.contains("nothing was written"),
        "{report}"
    );
    let entries: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(entries, ["notes.md"]);
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("notes.md")).unwrap(),
        "mine"
    );

    // A file where the directory should be is refused too.
    let file = tmp.path().join("notes.md");
    let out = gaffer(&support::test_cache_dir())
        .args(["plugin", "new", "hook", "--lang", "python"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not a directory"),
        "{}",
        text(&out)
    );
}

//! `gaffer init`: a commented `gaffer.toml` for the project as it is (its branch, its test
//! command), the state directory, and `.gaffer/` ignored in git.

use std::path::Path;

use super::{CONFIG_FILE, Project, ProjectError, STATE_DIR};
use crate::git::Repo;
use crate::plugin::World;
use crate::plugin::reference::{self, ReferenceError, ReferencePlugin};

/// Where `init` writes the reference plugins, relative to the project root.
pub const PLUGINS_DIR: &str = "plugins";

/// What `init` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Initialised {
    pub config: std::path::PathBuf,
    pub target_branch: String,
    /// The detected test command; empty when none was found.
    pub test_command: String,
    /// The reference plugins written beside the configuration (none when this binary carries
    /// none).
    pub plugins: Vec<std::path::PathBuf>,
}

/// Why `init` refused.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("{} exists; pass --force to overwrite it", path.display())]
    ConfigExists { path: std::path::PathBuf },
    #[error(transparent)]
    Project(#[from] ProjectError),
    #[error(transparent)]
    Plugins(#[from] ReferenceError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ProjectError + '_ {
    move |e| ProjectError::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Initialise the project at `root`.
pub fn init(root: &Path, force: bool) -> Result<Initialised, InitError> {
    let project = Project::at(root, Path::new(CONFIG_FILE));
    let config = project.config_path().to_path_buf();
    if !force && config.exists() {
        return Err(InitError::ConfigExists { path: config });
    }
    let test_command = detect_test_command(root);
    let target_branch = Repo::open(root)
        .ok()
        .and_then(|repo| repo.checked_out_branch().ok().flatten())
        .unwrap_or_else(|| "main".to_string());
    let plugins = match reference::write_all(&root.join(PLUGINS_DIR), force) {
        Ok(written) => written.into_iter().map(|(plugin, _)| plugin).collect(),
        // A binary without them still writes a configuration, with the plugins commented out.
        Err(ReferenceError::NotEmbedded) => Vec::new(),
        Err(other) => return Err(other.into()),
    };
    std::fs::write(
        &config,
        config_template(&target_branch, &test_command, &plugins),
    )
    .map_err(io(&config))?;
    project.create_state()?;
    ignore_state_dir(root)?;
    Ok(Initialised {
        config,
        target_branch,
        test_command,
        plugins: plugins
            .iter()
            .map(|p| Path::new(PLUGINS_DIR).join(p.file))
            .collect(),
    })
}

/// Add `/.gaffer/` to the project's `.gitignore` unless it is there.
fn ignore_state_dir(root: &Path) -> Result<(), ProjectError> {
    let ignore = root.join(".gitignore");
    let existing = match std::fs::read_to_string(&ignore) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(io(&ignore)(e)),
    };
    let entry = format!("/{STATE_DIR}/");
    if existing
        .lines()
        .any(|l| l.trim() == entry || l.trim() == STATE_DIR || l.trim() == format!("{STATE_DIR}/"))
    {
        return Ok(());
    }
    let mut text = existing;
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&entry);
    text.push('\n');
    std::fs::write(&ignore, text).map_err(io(&ignore))
}

/// The test command of the common project layouts; empty when none is recognised.
pub fn detect_test_command(root: &Path) -> String {
    let has = |name: &str| root.join(name).is_file();
    let read = |name: &str| std::fs::read_to_string(root.join(name)).unwrap_or_default();
    if has("Cargo.toml") {
        return "cargo test".into();
    }
    if has("go.mod") {
        return "go test ./...".into();
    }
    if has("package.json") && package_json_has_test(&read("package.json")) {
        return "npm test".into();
    }
    if let Some(python) = python_test_command(root) {
        return python;
    }
    if (has("Makefile") || has("makefile") || has("GNUmakefile")) && makefile_has_test(root) {
        return "make test".into();
    }
    String::new()
}

/// A `scripts.test` other than the placeholder `npm init` writes.
fn package_json_has_test(text: &str) -> bool {
    let Ok(json) = serde_json::from_str::<serde_json::Value>(text) else {
        return false;
    };
    json.pointer("/scripts/test")
        .and_then(|t| t.as_str())
        .is_some_and(|t| !t.trim().is_empty() && !t.contains("no test specified"))
}

fn makefile_has_test(root: &Path) -> bool {
    ["GNUmakefile", "makefile", "Makefile"].iter().any(|name| {
        std::fs::read_to_string(root.join(name))
            .unwrap_or_default()
            .lines()
            .any(|l| l.starts_with("test:") || l.starts_with("test ::") || l.starts_with("test::"))
    })
}

/// pytest when the project says so (its configuration, a `conftest.py`, a test importing
/// pytest); else unittest discovery when there are `test_*.py` files; else pytest for a Python
/// package.
fn python_test_command(root: &Path) -> Option<String> {
    let read = |name: &str| std::fs::read_to_string(root.join(name)).unwrap_or_default();
    let tests_dir = root.join("tests").is_dir().then_some("tests");
    let test_files: Vec<std::path::PathBuf> = [Some("."), tests_dir, Some("test")]
        .into_iter()
        .flatten()
        .filter_map(|dir| std::fs::read_dir(root.join(dir)).ok())
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("test_") && n.ends_with(".py"))
        })
        .collect();
    let pytest_configured = read("pyproject.toml").contains("[tool.pytest")
        || read("setup.cfg").contains("[tool:pytest]")
        || read("tox.ini").contains("[pytest]")
        || root.join("pytest.ini").is_file()
        || root.join("conftest.py").is_file()
        || root.join("tests").join("conftest.py").is_file()
        || test_files.iter().any(|f| {
            std::fs::read_to_string(f).is_ok_and(|t| {
                t.lines()
                    .any(|l| l.starts_with("import pytest") || l.starts_with("from pytest"))
            })
        });
    let python_project = root.join("pyproject.toml").is_file() || root.join("setup.py").is_file();
    if pytest_configured {
        Some("python3 -m pytest".into())
    } else if !test_files.is_empty() {
        let dir = test_files
            .iter()
            .filter_map(|f| f.parent())
            .find(|d| *d != root)
            .and_then(|d| d.file_name())
            .and_then(|n| n.to_str());
        Some(match dir {
            Some(dir) => format!("python3 -m unittest discover -s {dir}"),
            None => "python3 -m unittest discover".into(),
        })
    } else if python_project {
        Some("python3 -m pytest".into())
    } else {
        None
    }
}

/// A TOML string literal for `text` (quotes and backslashes escaped by the TOML writer).
fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

/// The `[plugins]` of the configuration `init` writes: the reference router, verifier and
/// `.env` hook, pinned by their SHA-256; commented out when the binary carries no plugins.
fn plugins_section(plugins: &[ReferencePlugin]) -> String {
    let find = |file: &str| plugins.iter().find(|p| p.file == file);
    let (Some(router), Some(verifier), Some(hook)) = (
        find("cost_tier.wasm"),
        find("tests_and_limits.wasm"),
        find("protected_paths.wasm"),
    ) else {
        return r#"# [plugins.router]                  # WebAssembly plugins: see `gaffer plugin check FILE.wasm`
# path = "plugins/cost_tier.wasm"
# fallback_model = "cheap"
"#
        .to_string();
    };
    let path = |p: &ReferencePlugin| toml_string(&format!("{PLUGINS_DIR}/{}", p.file));
    let others: Vec<String> = plugins
        .iter()
        .filter(|p| {
            ![
                "cost_tier.wasm",
                "tests_and_limits.wasm",
                "protected_paths.wasm",
            ]
            .contains(&p.file)
        })
        .map(|p| {
            let world = match p.world {
                World::Router => "a router",
                World::Verifier => "a verifier",
                World::Hook => "a hook",
            };
            format!(
                "#   {PLUGINS_DIR}/{} ({world}, sha256 {})\n",
                p.file,
                p.sha256()
            )
        })
        .collect();
    format!(
        r#"# The reference plugins, written beside this file by `gaffer init`; `sha256` pins each one
# (a file with other bytes is refused). Swap in your own by editing these sections.
[plugins.router]                    # cheapest tier first, one tier up per rejection
path = {router_path}
sha256 = "{router_hash}"
fallback_model = "cheap"            # used when the router faults

[plugins.verifier]                  # tests must pass; size limits; no forbidden markers
path = {verifier_path}
sha256 = "{verifier_hash}"

[[plugins.hooks]]                   # files the agent may not touch
path = {hook_path}
sha256 = "{hook_hash}"
config = {{ globs = [".env", ".env.*", "**/migrations/**", ".git/**"] }}

# Also written:
{others}"#,
        router_path = path(router),
        router_hash = router.sha256(),
        verifier_path = path(verifier),
        verifier_hash = verifier.sha256(),
        hook_path = path(hook),
        hook_hash = hook.sha256(),
        others = others.concat(),
    )
}

/// The commented `gaffer.toml` that `gaffer init` writes.
pub fn config_template(
    target_branch: &str,
    test_command: &str,
    plugins: &[ReferencePlugin],
) -> String {
    // What a build tool needs of the host to work offline in the sandbox: its toolchain and
    // caches (read-only) and the variables that point it there.
    // Toolchains read-only; caches as copy-on-write layers per attempt (readable and writable
    // inside, the writes thrown away with the attempt); the variables that point tools there.
    type Toolchain<'a> = (&'a [&'a str], &'a [&'a str], &'a [(&'a str, &'a str)]);
    let (read_only, caches, env): Toolchain<'_> = match test_command.split_whitespace().next() {
        Some("cargo") => (
            &["~/.rustup"],
            &["~/.cargo"],
            &[("CARGO_HOME", "~/.cargo"), ("RUSTUP_HOME", "~/.rustup")],
        ),
        Some("go") => (
            &[],
            &["~/go", "~/.cache/go-build"],
            &[("GOPATH", "~/go"), ("GOCACHE", "~/.cache/go-build")],
        ),
        Some("npm") => (&[], &["~/.npm"], &[("npm_config_cache", "~/.npm")]),
        Some("pytest" | "python" | "python3" | "uv" | "poetry") => {
            (&[], &["~/.cache/pip"], &[("PIP_CACHE_DIR", "~/.cache/pip")])
        }
        _ => (&[], &[], &[]),
    };
    let array = |items: &[&str]| {
        toml::Value::Array(
            items
                .iter()
                .map(|r| toml::Value::String(r.to_string()))
                .collect(),
        )
        .to_string()
    };
    let read_only = array(read_only);
    let caches_line = format!("caches = {}", array(caches));
    let env = if env.is_empty() {
        "# env = { NAME = \"value\" }".to_string()
    } else {
        let pairs: Vec<String> = env
            .iter()
            .map(|(n, v)| format!("{n} = {}", toml_string(v)))
            .collect();
        format!("env = {{ {} }}", pairs.join(", "))
    };
    let read_only_line = format!("read_only = {read_only}");
    let branch_line = format!("target_branch = {}", toml_string(target_branch));
    let test_line = format!("test_command = {}", toml_string(test_command));
    let pad = |line: &str| " ".repeat(36usize.saturating_sub(line.len()).max(1));
    format!(
        r#"# gaffer.toml: everything a run needs. Money is in dollars here and exact micro-dollars inside.

[project]
{branch_line}{}# approved work is merged here
{test_line}{}# run on every attempt before the verifier
# remote = "origin"                 # several hosts: each merges by a compare-and-swap push here

# [store]                           # several hosts on one backlog and budget (default: .gaffer/)
# url = "postgres://gaffer@db.internal/gaffer"  # no password here: PGPASSWORD or ~/.pgpass

[agent]
max_turns = 40                      # model calls per attempt
max_attempts = 3                    # then the task goes to a person (needs-human)

[sandbox]                           # where the agent's commands and the test command run
network = false                     # true: the host's network
# allow_domains = [".pypi.org", "files.pythonhosted.org"]  # HTTPS through gaffer's proxy only
{read_only_line}{}# host paths commands may read (toolchains); `~/` is home
{caches_line}{}# copy-on-write per attempt: changes inside are thrown away
{env}{}# set inside the sandbox
# memory_mib = 2048                 # per command, all its processes together
# max_processes = 512
# max_file_mib = 1024

[run]
workers = 1

[budget]                            # every level optional; a call that would pass one is refused
per_call = 1.00
per_task = 2.00
per_run = 20.00
per_day = 50.00
per_month = 500.00

[providers.anthropic]
kind = "anthropic"
api_key_env = "ANTHROPIC_API_KEY"   # read from the environment, never written here

# [providers.local]                 # an OpenAI-compatible server (Ollama, llama.cpp, vLLM, LiteLLM)
# kind = "openai-compatible"
# base_url = "http://127.0.0.1:11434/v1"
# watts = 350                       # local models are priced by electricity
# usd_per_kwh = 0.30

[models.cheap]
provider = "anthropic"
id = "claude-haiku-4-5"             # priced from the built-in catalog unless `prices` is given
tier = 1
max_tokens = 8192

[models.strong]
provider = "anthropic"
id = "claude-sonnet-4-5"
tier = 3
max_tokens = 16000

{}"#,
        pad(&branch_line),
        pad(&test_line),
        pad(&read_only_line),
        pad(&caches_line),
        pad(&env),
        plugins_section(plugins),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigFile;

    fn layout(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        dir
    }

    #[test]
    fn the_test_command_of_common_layouts_is_detected() {
        for (files, expected) in [
            (vec![("Cargo.toml", "[package]")], "cargo test"),
            (vec![("go.mod", "module x")], "go test ./..."),
            (
                vec![("package.json", r#"{"scripts":{"test":"vitest run"}}"#)],
                "npm test",
            ),
            (
                vec![(
                    "package.json",
                    r#"{"scripts":{"test":"echo \"Error: no test specified\" && exit 1"}}"#,
                )],
                "",
            ),
            (
                vec![("pyproject.toml", "[tool.pytest.ini_options]\n")],
                "python3 -m pytest",
            ),
            (
                vec![("tests/test_x.py", "import unittest\n")],
                "python3 -m unittest discover -s tests",
            ),
            (
                vec![("tests/test_x.py", "import pytest\n")],
                "python3 -m pytest",
            ),
            (
                vec![("test_x.py", "import unittest\n")],
                "python3 -m unittest discover",
            ),
            (
                vec![("Makefile", "all:\n\ttrue\ntest:\n\t./run\n")],
                "make test",
            ),
            (vec![("Makefile", "all:\n\ttrue\n")], ""),
            (vec![("README.md", "hi")], ""),
        ] {
            let dir = layout(&files);
            assert_eq!(detect_test_command(dir.path()), expected, "{files:?}");
        }
    }

    #[test]
    fn the_template_is_a_valid_configuration_whatever_the_names() {
        for (branch, command) in [
            ("main", "cargo test"),
            ("feature/\"odd\"", r#"python3 -c "print('\\')""#),
            ("main", ""),
        ] {
            for plugins in [vec![], reference::embedded()] {
                let text = config_template(branch, command, &plugins);
                let file = ConfigFile::parse(Path::new("gaffer.toml"), text).unwrap();
                let sections = file.sections();
                assert_eq!(sections.project.target_branch.as_deref(), Some(branch));
                assert_eq!(sections.project.test_command.as_deref(), Some(command));
                assert_eq!(sections.plugins.router.is_some(), !plugins.is_empty());
                let specs =
                    crate::plugin::PluginSpecs::from_config(&sections.plugins, file.dir()).unwrap();
                for spec in specs
                    .router
                    .iter()
                    .chain(&specs.verifier)
                    .chain(&specs.hooks)
                {
                    assert!(spec.sha256.is_some(), "{} is pinned", spec.name);
                }
            }
        }
    }

    #[test]
    fn a_toolchain_is_declared_read_only_never_writable() {
        let text = config_template("main", "cargo test", &[]);
        let file = ConfigFile::parse(Path::new("gaffer.toml"), text.clone()).unwrap();
        let sandbox = &file.sections().sandbox;
        assert_eq!(
            sandbox.read_only.as_deref(),
            Some(&["~/.rustup".to_string()][..])
        );
        assert_eq!(
            sandbox.caches.as_deref(),
            Some(&["~/.cargo".to_string()][..])
        );
        assert_eq!(sandbox.network, Some(false));
        assert!(file.sections().agent.writable.is_none(), "{text}");
        assert!(!text.contains("writable"), "{text}");
    }
}

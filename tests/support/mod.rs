//! Shared helpers of the end-to-end tests: building the WebAssembly guests from source (nothing
//! built is committed), a runtime with a test cache, and a fake model access that logs calls.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};

use gaffer::plugin::types::{Completion, CompletionRequest, HostError, MicroUsd, TokenCounts};
use gaffer::plugin::{
    BoxFuture, MemoryRecorder, ModelAccess, PluginCaller, PluginRuntime, PluginSpec, World,
};

/// Every guest the tests use, by package name.
pub const GUESTS: &[&str] = &[
    "hostile-guest",
    "cost-tier",
    "tests-and-limits",
    "protected-paths",
    "layer-rules",
    "file-size",
    "model-review",
    "cascade",
];

/// Guests built in a cargo invocation of their own (see scripts/build-plugins.sh).
pub const SEPARATE_GUESTS: &[&str] = &["triage"];

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf()
}

/// Where the guests are built (a target dir of their own, so a nested cargo never waits on the
/// lock of the cargo running the tests).
pub fn guest_target_dir() -> PathBuf {
    workspace_root().join("target").join("guests")
}

static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// Build all guests once per test process (a no-op when `scripts/test.sh` built them already)
/// and return the path of `name`'s component (`name` with `-` as `_`).
pub fn guest(name: &str) -> PathBuf {
    let dir = BUILT
        .get_or_init(|| {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
            let mut cmd = Command::new(cargo);
            cmd.current_dir(workspace_root())
                .env("CARGO_TARGET_DIR", guest_target_dir())
                .args([
                    "build",
                    "--quiet",
                    "--target",
                    "wasm32-wasip2",
                    "--profile",
                    "plugin",
                ]);
            for g in GUESTS {
                cmd.args(["-p", g]);
            }
            let out = cmd.output().map_err(|e| format!("cannot run cargo: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "building the guests failed:\n{}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            Ok(guest_target_dir().join("wasm32-wasip2").join("plugin"))
        })
        .as_ref()
        .unwrap_or_else(|e| panic!("{e}"));
    let path = dir.join(format!("{}.wasm", name.replace('-', "_")));
    assert!(path.is_file(), "{} was not built", path.display());
    path
}

/// The compile cache the tests share.
pub fn test_cache_dir() -> PathBuf {
    guest_target_dir().join("compile-cache")
}

/// A runtime with the shipped defaults, the test cache, a run recorder and the given models.
pub fn runtime_with(models: Arc<dyn ModelAccess>) -> (PluginRuntime, Arc<MemoryRecorder>) {
    let recorder = Arc::new(MemoryRecorder::default());
    let runtime = PluginRuntime::builder()
        .cache_dir(Some(test_cache_dir()))
        .models(models)
        .recorder(recorder.clone())
        .build()
        .expect("runtime builds");
    (runtime, recorder)
}

pub fn runtime() -> (PluginRuntime, Arc<MemoryRecorder>) {
    runtime_with(Arc::new(FakeModels::default()))
}

/// One call the fake model access received.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedCall {
    pub plugin: String,
    pub task_id: String,
    pub model: String,
    pub max_tokens: u32,
    pub prompt: String,
}

/// A model access that answers `answer` for every model, except `slow`, which never answers.
/// It logs every call it receives: the tests' expected values come from this log.
#[derive(Debug, Default)]
pub struct FakeModels {
    pub log: Mutex<Vec<LoggedCall>>,
}

impl FakeModels {
    pub fn calls(&self) -> Vec<LoggedCall> {
        self.log.lock().unwrap().clone()
    }
}

impl ModelAccess for FakeModels {
    fn complete<'a>(
        &'a self,
        caller: &'a PluginCaller,
        request: CompletionRequest,
    ) -> BoxFuture<'a, Result<Completion, HostError>> {
        Box::pin(async move {
            self.log.lock().unwrap().push(LoggedCall {
                plugin: caller.plugin.clone(),
                task_id: caller.task_id.clone(),
                model: request.model.clone(),
                max_tokens: request.max_tokens,
                prompt: request
                    .messages
                    .iter()
                    .map(|m| m.content.clone())
                    .collect::<Vec<_>>()
                    .join("\n"),
            });
            if request.model == "slow" {
                std::future::pending::<()>().await;
            }
            Ok(Completion {
                text: "use mid".to_string(),
                model: request.model,
                usage: TokenCounts {
                    input: 12,
                    output: 3,
                    cache_read: 0,
                    cache_write: 0,
                },
                cost: MicroUsd(27),
                stop_reason: "end_turn".to_string(),
            })
        })
    }
}

/// The languages of the reference plugins built by scripts/build-polyglot-plugins.sh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Python,
    Js,
}

static POLYGLOT_BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// Build the Python and JavaScript reference plugins once per test process (a no-op when they
/// are up to date) and return the path of `name`'s component: `cost_tier` in Python is
/// `cost-tier` in JavaScript; pass the Rust package name (`cost-tier`).
pub fn polyglot_guest(lang: Lang, name: &str) -> PathBuf {
    let dir = POLYGLOT_BUILT
        .get_or_init(|| {
            let script = workspace_root().join("scripts/build-polyglot-plugins.sh");
            let out = Command::new("bash")
                .arg(&script)
                .output()
                .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
            if !out.status.success() {
                return Err(format!(
                    "building the Python and JavaScript plugins failed:\n{}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            let dir = guest_target_dir().join("polyglot");
            // Compile each component into the shared cache once, here, rather than in every
            // test that loads it at the same moment (a Python component takes seconds).
            let (runtime, _) = runtime();
            for (path, world) in [
                ("python/cost_tier.wasm", World::Router),
                ("python/protected_paths.wasm", World::Hook),
                ("js/cost-tier.wasm", World::Router),
                ("js/protected-paths.wasm", World::Hook),
            ] {
                runtime
                    .load(PluginSpec::new(world, dir.join(path)))
                    .map_err(|e| format!("{path} does not load: {e}"))?;
            }
            Ok(dir)
        })
        .as_ref()
        .unwrap_or_else(|e| panic!("{e}"));
    let path = match lang {
        Lang::Python => dir
            .join("python")
            .join(format!("{}.wasm", name.replace('-', "_"))),
        Lang::Js => dir.join("js").join(format!("{name}.wasm")),
    };
    assert!(path.is_file(), "{} was not built", path.display());
    path
}

//! Shared helpers of the end-to-end tests: building the WebAssembly guests from source (nothing
//! built is committed), a runtime with a test cache, and a fake model access that logs calls.

#![allow(dead_code)]

pub mod browser;
pub mod ledger_rows;
pub mod postgres;
#[macro_use]
pub mod backends;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};

use gaffer::plugin::types::{Completion, CompletionRequest, HostError, MicroUsd, TokenCounts};
use gaffer::plugin::{
    BoxFuture, MemoryRecorder, ModelAccess, PluginCaller, PluginRuntime, PluginSpec, World,
};

/// The guests built without WASI (`wasm32-unknown-unknown`, linked into components by the
/// toolchain's `wasm-component-ld`), by package name: the reference plugins, as
/// scripts/build-plugins.sh and host/build.rs build them, and an SDK router that panics.
pub const GUESTS_WITHOUT_WASI: &[&str] = &[
    "cost-tier",
    "tests-and-limits",
    "protected-paths",
    "layer-rules",
    "file-size",
    "model-review",
    "cascade",
    "panicking-router",
];

/// The guests built for `wasm32-wasip2`: the hostile ones, which exercise what a plugin with
/// WASI can reach.
pub const GUESTS_WITH_WASI: &[&str] = &["hostile-guest", "hostile-hook"];

/// Guests built in a cargo invocation of their own, without WASI (see scripts/build-plugins.sh).
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

/// The directory of the reference plugins' components (built without WASI).
pub fn reference_plugins_dir() -> PathBuf {
    guest_target_dir()
        .join("wasm32-unknown-unknown")
        .join("plugin")
}

static BUILT: OnceLock<Result<(), String>> = OnceLock::new();

/// Build `packages` for `target` into the guests' target directory.
fn build_guests(target: &str, packages: &[&str]) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root())
        .env("CARGO_TARGET_DIR", guest_target_dir())
        .env(
            "CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER",
            "wasm-component-ld",
        )
        .args([
            "build",
            "--quiet",
            "--target",
            target,
            "--profile",
            "plugin",
        ]);
    for p in packages {
        cmd.args(["-p", p]);
    }
    let out = cmd.output().map_err(|e| format!("cannot run cargo: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "building the guests for {target} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

/// Build all guests once per test process (a no-op when `scripts/test.sh` built them already)
/// and return the path of `name`'s component (`name` with `-` as `_`): a guest without WASI
/// (the reference plugins) from `wasm32-unknown-unknown`, the hostile ones from
/// `wasm32-wasip2`.
pub fn guest(name: &str) -> PathBuf {
    BUILT
        .get_or_init(|| {
            build_guests("wasm32-unknown-unknown", GUESTS_WITHOUT_WASI)?;
            build_guests("wasm32-wasip2", GUESTS_WITH_WASI)
        })
        .as_ref()
        .unwrap_or_else(|e| panic!("{e}"));
    let dir = if GUESTS_WITH_WASI.contains(&name) {
        guest_target_dir().join("wasm32-wasip2").join("plugin")
    } else {
        reference_plugins_dir()
    };
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

/// A `hook` component built here from WebAssembly text: it allows everything, and its core
/// module defines `extra_memories` linear memories of `pages_each` 64 KiB pages besides the
/// one the canonical ABI uses, each filled with ones by `pre-tool` (so that every page is
/// touched and counts in the process's resident memory). One memory of such a plugin stays
/// under any per-memory cap; together they do not. Written to `dir`; its path.
pub fn many_memories_hook(dir: &Path, extra_memories: u32, pages_each: u32) -> PathBuf {
    wat_hook(
        dir,
        &format!("memories_{extra_memories}x{pages_each}.wasm"),
        extra_memories,
        pages_each,
        None,
    )
}

/// A `hook` component built here from WebAssembly text whose `pre-tool` rewrites every call's
/// arguments to `arguments` (a JSON object as text), and whose other exports allow.
pub fn rewriting_hook(dir: &Path, name: &str, arguments: &str) -> PathBuf {
    wat_hook(dir, &format!("{name}.wasm"), 0, 0, Some(arguments))
}

fn wat_hook(
    dir: &Path,
    file: &str,
    extra_memories: u32,
    pages_each: u32,
    rewrite: Option<&str>,
) -> PathBuf {
    let mut memories = String::new();
    let mut fills = String::new();
    for i in 1..=extra_memories {
        memories.push_str(&format!("  (memory $m{i} {pages_each})\n"));
        fills.push_str(&format!(
            "    (memory.fill $m{i} (i32.const 0) (i32.const 1) (i32.const {}))\n",
            u64::from(pages_each) * 65536
        ));
    }
    // `pre-tool` answers from offset 16: `ok(allow)` in zeroed memory, or `ok(rewrite(s))`
    // (result tag 0, decision tag 2 at offset 4, the string's pointer and length at 8 and
    // 12) with the text at offset 256. `on-edit` and `on-diff` answer `ok(allow)` from
    // zeroed memory at offset 64. Arguments are copied in through a bump allocator from
    // offset 1024 up, growing memory 0 as needed.
    let data = match rewrite {
        Some(text) => {
            let mut bytes = vec![0u8, 0, 0, 0, 2, 0, 0, 0];
            bytes.extend_from_slice(&256u32.to_le_bytes());
            bytes.extend_from_slice(&u32::try_from(text.len()).unwrap().to_le_bytes());
            let escape = |b: &[u8]| b.iter().map(|b| format!("\\{b:02x}")).collect::<String>();
            assert!(text.len() < 700, "the rewrite must fit below offset 1024");
            format!(
                "  (data (i32.const 16) \"{}\")\n  (data (i32.const 256) \"{}\")\n",
                escape(&bytes),
                escape(text.as_bytes())
            )
        }
        None => String::new(),
    };
    let wat = format!(
        r#"(module
  (memory (export "memory") 1)
{memories}{data}
  (global $next (mut i32) (i32.const 1024))
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (local $at i32) (local $end i32)
    (local.set $at
      (i32.and
        (i32.add (global.get $next) (i32.sub (local.get 2) (i32.const 1)))
        (i32.sub (i32.const 0) (local.get 2))))
    (local.set $end (i32.add (local.get $at) (local.get 3)))
    (block $fits
      (br_if $fits (i32.le_u (local.get $end) (i32.mul (memory.size) (i32.const 65536))))
      (br_if $fits
        (i32.ne
          (memory.grow
            (i32.add
              (i32.div_u (i32.sub (local.get $end) (i32.mul (memory.size) (i32.const 65536)))
                         (i32.const 65536))
              (i32.const 1)))
          (i32.const -1)))
      unreachable)
    (global.set $next (local.get $end))
    (local.get $at))
  (func (export "pre-tool")
    (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)
{fills}    (i32.const 16))
  (func (export "on-edit") (param i32) (result i32) (i32.const 64))
  (func (export "on-diff")
    (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)
    (i32.const 64))
)"#
    );
    let mut module = wat::parse_str(&wat).expect("the hook's text parses");
    let mut resolve = wit_parser::Resolve::default();
    let (package, _) = resolve
        .push_dir(workspace_root().join("wit/0.1.0"))
        .expect("gaffer's WIT parses");
    let world = resolve
        .select_world(&[package], Some("hook"))
        .expect("the hook world");
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )
    .expect("metadata embeds");
    let component = wit_component::ComponentEncoder::default()
        .validate(true)
        .module(&module)
        .expect("the module is a component's core")
        .encode()
        .expect("the component encodes");
    let path = dir.join(file);
    std::fs::write(&path, component).expect("component written");
    path
}

/// Runs `work` on a current-thread runtime whose blocking pool has one thread, held busy until
/// `work` is done: anything `work` sends to the pool waits behind it. `None` when `work` did not
/// finish within 10 s (it needed the pool); a hang ends there rather than stopping the suite.
pub fn without_the_blocking_pool<T>(work: impl std::future::Future<Output = T>) -> Option<T> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(1)
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let (release, released) = std::sync::mpsc::channel::<()>();
        let (started, has_started) = tokio::sync::oneshot::channel();
        let occupant = tokio::task::spawn_blocking(move || {
            let _ = started.send(());
            let _ = released.recv_timeout(std::time::Duration::from_secs(30));
        });
        has_started.await.expect("the pool's thread started");
        let done = tokio::time::timeout(std::time::Duration::from_secs(10), work).await;
        let _ = release.send(());
        occupant.await.expect("the pool's thread ended");
        done.ok()
    })
}

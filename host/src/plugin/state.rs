//! What a plugin's imports reach: the per-call sandbox state (a WASI context that grants
//! nothing, frozen clocks, the memory limiter) and the host functions — logging, the plugin's
//! config, the metered `complete` (behind [`ModelAccess`]) and read-only access to the task's
//! worktree — in gaffer's own types; each WIT version's bindings call these. Every call is
//! checked against the plugin's grants.

use std::future::Future;
use std::io::Read;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{
    HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView,
};

use super::spec::Grants;
use super::types::{Completion, CompletionRequest, HostError, LogLevel};
use crate::confined::{Access, OpenError, open_regular};
use crate::store::Stage;

/// Who is calling a model through `complete`: the plugin and the task it runs for, so the
/// gateway can charge the task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginCaller {
    pub plugin: String,
    /// The plugin's world: its role in the ledger (router, verifier, hook).
    pub world: super::spec::World,
    pub task_id: String,
    pub attempt: u32,
    /// The stage of the attempt the call is made in.
    pub stage: Stage,
}

/// A boxed future, for the object-safe [`ModelAccess`] trait.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The host side of the metered `complete` import. The model gateway implements it (reserving
/// the worst case against every cap before the request leaves, and charging the calling task);
/// grants are checked before it is reached.
pub trait ModelAccess: Send + Sync + 'static {
    /// Run one model call for `caller`.
    fn complete<'a>(
        &'a self,
        caller: &'a PluginCaller,
        request: CompletionRequest,
    ) -> BoxFuture<'a, Result<Completion, HostError>>;
}

/// The [`ModelAccess`] of a runtime with no gateway: every call is refused, saying why.
#[derive(Debug, Default)]
pub struct NoModels;

impl ModelAccess for NoModels {
    fn complete<'a>(
        &'a self,
        _caller: &'a PluginCaller,
        request: CompletionRequest,
    ) -> BoxFuture<'a, Result<Completion, HostError>> {
        Box::pin(async move {
            Err(HostError::Failed(format!(
                "no model gateway is configured in this runtime (model `{}`)",
                request.model
            )))
        })
    }
}

/// Largest file a plugin may read through `read-file`.
pub const MAX_READ_BYTES: u64 = 4 * 1024 * 1024;
/// Log records one call may write; more are dropped, and the drop is logged once.
pub const MAX_LOG_RECORDS_PER_CALL: u32 = 200;
/// Bytes of one log message kept; the rest is cut, saying how much.
pub const MAX_LOG_MESSAGE_BYTES: usize = 8 * 1024;
/// Fields of one log record kept, and bytes of each key and value.
pub const MAX_LOG_FIELDS: usize = 32;
const MAX_LOG_FIELD_BYTES: usize = 1024;
/// Bytes of a plugin's stderr kept to explain a trap (a Rust panic message lands there).
pub const STDERR_CAPTURE_BYTES: usize = 64 * 1024;

/// The most of each kind of part a component's instance may create: the same bounds the
/// pooling allocator checks when it loads a component, held for the on-demand allocator too
/// (at load, from the component's structure, and again by the limiter at instantiation).
pub const MAX_MEMORIES_PER_COMPONENT: u32 = 4;
/// Tables an instance may create (see [`MAX_MEMORIES_PER_COMPONENT`]).
pub const MAX_TABLES_PER_COMPONENT: u32 = 16;
/// Core instances an instance may create (see [`MAX_MEMORIES_PER_COMPONENT`]).
pub const MAX_CORE_INSTANCES_PER_COMPONENT: u32 = 32;
/// Bytes one table element is counted as against the memory cap (a function reference is a
/// pointer).
const TABLE_ELEMENT_BYTES: u64 = 8;
/// Elements one table may have: generous, bounded (and counted against the memory cap too).
const MAX_TABLE_ELEMENTS: usize = 1_000_000;

/// The memory cap of one instance: every linear memory and every table it creates, together,
/// remembering the growth it refused so that a trap that follows can be reported as a memory
/// limit rather than a bare `unreachable`. It also bounds how many memories, tables and core
/// instances the instance may create.
pub struct MemoryLimiter {
    cap: u64,
    /// The size, all memories and tables together, that a refused growth asked for.
    pub refused: Option<u64>,
    /// Bytes of linear memory and table the instance holds, all together (they never shrink,
    /// so this is also its peak).
    pub in_use: u64,
}

impl MemoryLimiter {
    pub fn new(cap: u64) -> MemoryLimiter {
        MemoryLimiter {
            cap,
            refused: None,
            in_use: 0,
        }
    }

    /// The cap in bytes.
    pub fn cap(&self) -> u64 {
        self.cap
    }

    /// Account a growth of `grown` bytes, or refuse it when the total would pass the cap.
    fn grow(&mut self, grown: u64) -> bool {
        let total = self.in_use.saturating_add(grown);
        if total > self.cap {
            self.refused = Some(total);
            return false;
        }
        self.in_use = total;
        true
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Creating a memory is a growth from 0 to its initial size, so this sums every memory.
        Ok(self.grow((desired as u64).saturating_sub(current as u64)))
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            return Ok(false);
        }
        let grown = (desired as u64).saturating_sub(current as u64);
        Ok(self.grow(grown.saturating_mul(TABLE_ELEMENT_BYTES)))
    }

    fn instances(&self) -> usize {
        MAX_CORE_INSTANCES_PER_COMPONENT as usize
    }

    fn tables(&self) -> usize {
        MAX_TABLES_PER_COMPONENT as usize
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES_PER_COMPONENT as usize
    }
}

/// A wall clock frozen at the Unix epoch and a monotonic clock frozen at zero: plugins get no
/// clock (their decisions must not depend on the time; replay needs that).
struct FrozenClock;

impl HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// The data of one call's `Store`: a WASI context that grants nothing, the limiter, and what
/// the `host` interface needs.
///
/// The WASI context, its resource table and the stderr pipe are built on the call's first use
/// of a WASI import, not with the store: most calls of a Rust plugin touch no WASI function at
/// all (its component imports stdio, environment and exit only for the panic path), and
/// building them was a measurable part of a call (random generators seeded from the thread's
/// generator, a dozen boxes). They are still the call's own: built fresh in this store and
/// dropped with it, never shared between calls.
pub struct PluginState {
    wasi: Option<WasiParts>,
    pub limiter: MemoryLimiter,
    host: HostContext,
}

/// The WASI side of one call's state, built on first use (see [`PluginState`]).
struct WasiParts {
    ctx: WasiCtx,
    table: ResourceTable,
    stderr: MemoryOutputPipe,
}

impl WasiParts {
    /// No preopened directories, no network, no environment, no arguments, no stdin, stdout
    /// discarded, stderr captured (bounded) to explain traps, frozen clocks.
    fn new() -> WasiParts {
        let stderr = MemoryOutputPipe::new(STDERR_CAPTURE_BYTES);
        let ctx = WasiCtxBuilder::new()
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }))
            .wall_clock(FrozenClock)
            .monotonic_clock(FrozenClock)
            .build();
        WasiParts {
            ctx,
            table: ResourceTable::new(),
            stderr,
        }
    }
}

/// What the `host` interface needs for one call.
pub struct HostContext {
    pub caller: PluginCaller,
    pub config_json: Arc<str>,
    pub grants: Grants,
    pub models: Arc<dyn ModelAccess>,
    /// The task's worktree, when files are granted and the caller has one.
    pub worktree: Option<Arc<cap_std::fs::Dir>>,
    logs_written: u32,
    /// The last `error` record the plugin logged (bounded), kept to explain a trap: a plugin
    /// without WASI has no stderr, and the SDK logs its panic message at `error` instead.
    last_error: Option<String>,
}

impl HostContext {
    pub fn new(
        caller: PluginCaller,
        config_json: Arc<str>,
        grants: Grants,
        models: Arc<dyn ModelAccess>,
        worktree: Option<Arc<cap_std::fs::Dir>>,
    ) -> HostContext {
        HostContext {
            caller,
            config_json,
            grants,
            models,
            worktree,
            logs_written: 0,
            last_error: None,
        }
    }
}

impl PluginState {
    /// State for one call: the limiter and the host context; the WASI context (no preopened
    /// directories, no network, no environment, no arguments, no stdin, stdout discarded,
    /// stderr captured, frozen clocks) follows on the call's first WASI import.
    pub fn new(host: HostContext, memory_cap: u64) -> PluginState {
        PluginState {
            wasi: None,
            limiter: MemoryLimiter::new(memory_cap),
            host,
        }
    }

    /// The last record the plugin logged at `error` level in this call, if any.
    pub fn last_error_log(&self) -> Option<&str> {
        self.host.last_error.as_deref()
    }

    /// What the plugin wrote to stderr, lossily decoded (empty when it used no WASI import).
    pub fn stderr_text(&self) -> String {
        match &self.wasi {
            Some(wasi) => String::from_utf8_lossy(&wasi.stderr.contents())
                .trim()
                .to_string(),
            None => String::new(),
        }
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let wasi = self.wasi.get_or_insert_with(WasiParts::new);
        WasiCtxView {
            ctx: &mut wasi.ctx,
            table: &mut wasi.table,
        }
    }
}

/// The host functions, whatever the WIT version that calls them.
impl PluginState {
    /// `log`: into gaffer's log, at most [`MAX_LOG_RECORDS_PER_CALL`] records a call.
    pub fn log(&mut self, level: LogLevel, message: String, fields: Vec<(String, String)>) {
        let host = &mut self.host;
        if level == LogLevel::Error {
            // Kept even past the record limit: a panic's message comes last.
            host.last_error = Some(bounded(&message, MAX_LOG_MESSAGE_BYTES).to_string());
        }
        host.logs_written = host.logs_written.saturating_add(1);
        if host.logs_written > MAX_LOG_RECORDS_PER_CALL {
            if host.logs_written == MAX_LOG_RECORDS_PER_CALL + 1 {
                tracing::warn!(
                    plugin = %host.caller.plugin,
                    task = %host.caller.task_id,
                    "plugin wrote more than {MAX_LOG_RECORDS_PER_CALL} log records in one call; dropping the rest"
                );
            }
            return;
        }
        let message = bounded(&message, MAX_LOG_MESSAGE_BYTES);
        let fields = fields
            .iter()
            .take(MAX_LOG_FIELDS)
            .map(|(k, v)| {
                format!(
                    "{}={}",
                    bounded(k, MAX_LOG_FIELD_BYTES),
                    bounded(v, MAX_LOG_FIELD_BYTES)
                )
            })
            .collect::<Vec<_>>()
            .join(" ");
        let plugin = host.caller.plugin.as_str();
        let task = host.caller.task_id.as_str();
        match level {
            LogLevel::Trace => {
                tracing::trace!(target: "gaffer::plugin_log", plugin, task, fields, "{message}")
            }
            LogLevel::Debug => {
                tracing::debug!(target: "gaffer::plugin_log", plugin, task, fields, "{message}")
            }
            LogLevel::Info => {
                tracing::info!(target: "gaffer::plugin_log", plugin, task, fields, "{message}")
            }
            LogLevel::Warn => {
                tracing::warn!(target: "gaffer::plugin_log", plugin, task, fields, "{message}")
            }
            LogLevel::Error => {
                tracing::error!(target: "gaffer::plugin_log", plugin, task, fields, "{message}")
            }
        }
    }

    /// `config`: the plugin's own configuration as JSON.
    pub fn config(&self) -> String {
        self.host.config_json.to_string()
    }

    /// `complete`: a metered model call, when the model is granted.
    pub async fn complete(&mut self, request: CompletionRequest) -> Result<Completion, HostError> {
        let host = &self.host;
        if !host.grants.complete.iter().any(|m| m == &request.model) {
            let granted = if host.grants.complete.is_empty() {
                "none".to_string()
            } else {
                host.grants.complete.join(", ")
            };
            return Err(HostError::NotGranted(format!(
                "plugin `{}` may not call model `{}` (granted: {granted}); add it to the plugin's `grants.complete` in gaffer.toml",
                host.caller.plugin, request.model
            )));
        }
        host.models.complete(&host.caller, request).await
    }

    /// `read-file`: a file of the task's worktree, when files are granted.
    pub fn read_file(&self, path: &str) -> Result<String, HostError> {
        let dir = self.granted_worktree()?;
        read_confined(&dir, path)
    }

    /// `list-files`: a directory of the task's worktree, when files are granted.
    pub fn list_files(&self, dir: &str) -> Result<Vec<String>, HostError> {
        let root = self.granted_worktree()?;
        list_confined(&root, dir)
    }

    fn granted_worktree(&self) -> Result<Arc<cap_std::fs::Dir>, HostError> {
        let host = &self.host;
        if !host.grants.files {
            return Err(HostError::NotGranted(format!(
                "plugin `{}` may not read files; set `grants.files = true` in its gaffer.toml section",
                host.caller.plugin
            )));
        }
        host.worktree.clone().ok_or_else(|| {
            HostError::NotFound(format!(
                "task `{}` has no worktree at this stage",
                host.caller.task_id
            ))
        })
    }
}

/// `text` cut to at most `max` bytes (at a character boundary), saying how much was cut.
fn bounded(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    std::borrow::Cow::Owned(format!(
        "{}… [{} more bytes cut]",
        &text[..end],
        text.len() - end
    ))
}

fn io_error(path: &str, e: std::io::Error) -> HostError {
    match e.kind() {
        std::io::ErrorKind::NotFound => HostError::NotFound(format!("`{path}` does not exist")),
        std::io::ErrorKind::PermissionDenied => HostError::Failed(format!(
            "`{path}` leads outside the worktree or is not readable"
        )),
        _ => HostError::Failed(format!("`{path}`: {e}")),
    }
}

fn relative(path: &str) -> &Path {
    let trimmed = path.trim_start_matches("./");
    if trimmed.is_empty() {
        Path::new(".")
    } else {
        Path::new(trimmed)
    }
}

/// Read a UTF-8 file inside `root`; `..`, absolute paths and symlinks that lead out are refused
/// by cap-std, anything but a regular file by [`open_regular`] (without blocking).
pub fn read_confined(root: &cap_std::fs::Dir, path: &str) -> Result<String, HostError> {
    let file = open_regular(root, relative(path), Access::Read).map_err(|e| match e {
        OpenError::Io(e) => io_error(path, e),
        refused => HostError::Failed(format!("`{path}` {refused}")),
    })?;
    let len = file.metadata().map_err(|e| io_error(path, e))?.len();
    if len > MAX_READ_BYTES {
        return Err(HostError::Failed(format!(
            "`{path}` is {len} bytes, more than the {MAX_READ_BYTES} a plugin may read"
        )));
    }
    let mut text = String::new();
    file.take(MAX_READ_BYTES)
        .read_to_string(&mut text)
        .map_err(|e| io_error(path, e))?;
    Ok(text)
}

/// List a directory inside `root`, sorted; directories end with `/`.
pub fn list_confined(root: &cap_std::fs::Dir, dir: &str) -> Result<Vec<String>, HostError> {
    let entries = root.read_dir(relative(dir)).map_err(|e| io_error(dir, e))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_error(dir, e))?;
        let mut name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            name.push('/');
        }
        names.push(name);
    }
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worktree() -> (tempfile::TempDir, cap_std::fs::Dir) {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("src")).unwrap();
        std::fs::write(tmp.path().join("src/lib.rs"), "fn main() {}\n").unwrap();
        std::fs::write(tmp.path().join("README.md"), "hi\n").unwrap();
        let dir =
            cap_std::fs::Dir::open_ambient_dir(tmp.path(), cap_std::ambient_authority()).unwrap();
        (tmp, dir)
    }

    #[test]
    fn reads_inside_the_worktree() {
        let (_tmp, dir) = worktree();
        assert_eq!(read_confined(&dir, "src/lib.rs").unwrap(), "fn main() {}\n");
        assert_eq!(read_confined(&dir, "./README.md").unwrap(), "hi\n");
        assert_eq!(list_confined(&dir, "").unwrap(), vec!["README.md", "src/"]);
    }

    #[test]
    fn refuses_paths_that_lead_out() {
        let (tmp, dir) = worktree();
        let outside = tmp.path().parent().unwrap().join("gaffer-outside-secret");
        std::fs::write(&outside, "secret").unwrap();
        std::os::unix::fs::symlink(&outside, tmp.path().join("link")).unwrap();
        for path in [
            "../gaffer-outside-secret",
            "/etc/passwd",
            "link",
            "src/../../x",
        ] {
            let err = read_confined(&dir, path).unwrap_err();
            assert!(
                !matches!(err, HostError::NotGranted(_)),
                "{path}: unexpected {err:?}"
            );
            if let Ok(text) = read_confined(&dir, path) {
                panic!("{path} was readable: {text}");
            }
        }
        let _ = std::fs::remove_file(outside);
    }

    #[test]
    fn missing_file_is_not_found() {
        let (_tmp, dir) = worktree();
        assert!(matches!(
            read_confined(&dir, "nope.txt"),
            Err(HostError::NotFound(_))
        ));
    }
}

//! Native test support: a mock host and builders for diffs (not available on `wasm32`).
//!
//! ```
//! use gaffer_sdk::host::{self, Completion, HostError, LogLevel};
//! use gaffer_sdk::testing::MockHost;
//! use gaffer_sdk::types::TokenUsage;
//!
//! let _guard = MockHost::new()
//!     .config(serde_json::json!({ "max_lines": 10 }))
//!     .file("src/lib.rs", "pub fn f() {}\n")
//!     .completion(|req| {
//!         Ok(Completion {
//!             text: format!("hello from {}", req.model),
//!             model: req.model,
//!             usage: TokenUsage { input: 10, output: 2, cache_read: 0, cache_write: 0 },
//!             cost: 12,
//!             stop_reason: "end_turn".into(),
//!         })
//!     })
//!     .install();
//!
//! assert_eq!(host::config_json(), r#"{"max_lines":10}"#);
//! assert_eq!(host::read_file("src/lib.rs").unwrap(), "pub fn f() {}\n");
//! assert_eq!(host::list_files("").unwrap(), vec!["src/".to_string()]);
//! assert!(matches!(host::read_file("nope"), Err(HostError::NotFound(_))));
//! host::log(LogLevel::Warn, "careful", &[("k", "v")]);
//! assert_eq!(MockHost::logs()[0].message, "careful");
//! ```

use std::cell::RefCell;
use std::collections::BTreeMap;

use crate::host::{Completion, CompletionRequest, HostError, LogLevel};
use crate::types::{Diff, DiffLine, DiffStats, FileDiff, FileStatus, Hunk, LineKind};

type CompletionFn = Box<dyn FnMut(CompletionRequest) -> Result<Completion, HostError>>;

struct MockState {
    config: String,
    files: BTreeMap<String, String>,
    files_granted: bool,
    completion: Option<CompletionFn>,
}

thread_local! {
    static MOCK: RefCell<Option<MockState>> = const { RefCell::new(None) };
    static LOGS: RefCell<Vec<LogRecord>> = const { RefCell::new(Vec::new()) };
    static REQUESTS: RefCell<Vec<CompletionRequest>> = const { RefCell::new(Vec::new()) };
}

const NO_MOCK: &str = "no mock host installed";

/// One log record captured by the [`MockHost`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRecord {
    /// Severity.
    pub level: LogLevel,
    /// The message.
    pub message: String,
    /// Structured fields, in the order given.
    pub fields: Vec<(String, String)>,
}

/// A stand-in for gaffer's host, for native tests of plugin logic.
///
/// Build it, then [`install`](MockHost::install) it for the current thread; the returned
/// [`MockGuard`] uninstalls it when dropped. Each test thread has its own mock, so tests run in
/// parallel safely.
#[must_use = "a MockHost does nothing until `.install()` is called"]
pub struct MockHost {
    state: MockState,
}

impl Default for MockHost {
    fn default() -> Self {
        Self::new()
    }
}

impl MockHost {
    /// A mock with config `{}`, no files (file access granted), and no completion handler.
    pub fn new() -> Self {
        MockHost {
            state: MockState {
                config: "{}".to_string(),
                files: BTreeMap::new(),
                files_granted: true,
                completion: None,
            },
        }
    }

    /// The plugin's config, as a JSON value.
    pub fn config(mut self, config: serde_json::Value) -> Self {
        self.state.config = config.to_string();
        self
    }

    /// The plugin's config, as JSON text (passed to the plugin verbatim, even if malformed).
    pub fn config_json(mut self, json: &str) -> Self {
        self.state.config = json.to_string();
        self
    }

    /// A file of the worktree that `host::read_file` returns and `host::list_files` lists.
    pub fn file(mut self, path: &str, contents: &str) -> Self {
        self.state
            .files
            .insert(normalize(path).to_string(), contents.to_string());
        self
    }

    /// Behave like a host without `grants.files`: file calls return `HostError::NotGranted`.
    pub fn files_not_granted(mut self) -> Self {
        self.state.files_granted = false;
        self
    }

    /// Answer `host::complete` with this function. Without one, `complete` returns
    /// `HostError::NotGranted` (like a host whose `grants.complete` lacks the model).
    pub fn completion<F>(mut self, f: F) -> Self
    where
        F: FnMut(CompletionRequest) -> Result<Completion, HostError> + 'static,
    {
        self.state.completion = Some(Box::new(f));
        self
    }

    /// Install the mock for the current thread, clearing captured logs and requests.
    /// The previous mock (if any) comes back when the guard is dropped.
    pub fn install(self) -> MockGuard {
        LOGS.with(|l| l.borrow_mut().clear());
        REQUESTS.with(|r| r.borrow_mut().clear());
        let previous = MOCK.with(|m| m.borrow_mut().replace(self.state));
        MockGuard { previous }
    }

    /// Log records captured on this thread since the last [`install`](MockHost::install)
    /// (still readable after the guard is dropped).
    pub fn logs() -> Vec<LogRecord> {
        LOGS.with(|l| l.borrow().clone())
    }

    /// Like [`logs`](MockHost::logs), and clears them.
    pub fn take_logs() -> Vec<LogRecord> {
        LOGS.with(|l| std::mem::take(&mut *l.borrow_mut()))
    }

    /// Completion requests made on this thread since the last [`install`](MockHost::install).
    pub fn completion_requests() -> Vec<CompletionRequest> {
        REQUESTS.with(|r| r.borrow().clone())
    }
}

/// Keeps a [`MockHost`] installed; dropping it restores what was installed before.
#[must_use = "the mock is uninstalled as soon as the guard is dropped"]
pub struct MockGuard {
    previous: Option<MockState>,
}

impl MockGuard {
    /// Same as [`MockHost::logs`].
    pub fn logs(&self) -> Vec<LogRecord> {
        MockHost::logs()
    }
}

impl Drop for MockGuard {
    fn drop(&mut self) {
        let previous = self.previous.take();
        MOCK.with(|m| *m.borrow_mut() = previous);
    }
}

fn normalize(path: &str) -> &str {
    crate::paths::strip_leading(path)
}

pub(crate) fn mock_log(level: LogLevel, message: &str, fields: &[(&str, &str)]) {
    let installed = MOCK.with(|m| m.borrow().is_some());
    if !installed {
        return;
    }
    let record = LogRecord {
        level,
        message: message.to_string(),
        fields: fields
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect(),
    };
    LOGS.with(|l| l.borrow_mut().push(record));
}

pub(crate) fn mock_config_json() -> String {
    MOCK.with(|m| match &*m.borrow() {
        Some(state) => state.config.clone(),
        None => "{}".to_string(),
    })
}

pub(crate) fn mock_complete(request: CompletionRequest) -> Result<Completion, HostError> {
    // Take the handler out while it runs, so that it may itself call the host.
    let handler = MOCK.with(|m| match &mut *m.borrow_mut() {
        Some(state) => Ok(state.completion.take()),
        None => Err(HostError::Failed(NO_MOCK.to_string())),
    })?;
    REQUESTS.with(|r| r.borrow_mut().push(request.clone()));
    let Some(mut handler) = handler else {
        return Err(HostError::NotGranted(format!(
            "model `{}` (the MockHost has no completion handler)",
            request.model
        )));
    };
    let result = handler(request);
    MOCK.with(|m| {
        if let Some(state) = &mut *m.borrow_mut()
            && state.completion.is_none()
        {
            state.completion = Some(handler);
        }
    });
    result
}

pub(crate) fn mock_read_file(path: &str) -> Result<String, HostError> {
    MOCK.with(|m| match &*m.borrow() {
        None => Err(HostError::Failed(NO_MOCK.to_string())),
        Some(state) if !state.files_granted => Err(HostError::NotGranted(
            "files (grants.files = false)".to_string(),
        )),
        Some(state) => state
            .files
            .get(normalize(path))
            .cloned()
            .ok_or_else(|| HostError::NotFound(path.to_string())),
    })
}

pub(crate) fn mock_list_files(dir: &str) -> Result<Vec<String>, HostError> {
    MOCK.with(|m| match &*m.borrow() {
        None => Err(HostError::Failed(NO_MOCK.to_string())),
        Some(state) if !state.files_granted => Err(HostError::NotGranted(
            "files (grants.files = false)".to_string(),
        )),
        Some(state) => {
            let dir = normalize(dir).trim_end_matches('/');
            let dir = if dir == "." { "" } else { dir };
            let prefix = if dir.is_empty() {
                String::new()
            } else {
                format!("{dir}/")
            };
            let mut entries: Vec<String> = Vec::new();
            for path in state.files.keys() {
                let Some(rest) = path.strip_prefix(&prefix) else {
                    continue;
                };
                let entry = match rest.find('/') {
                    Some(i) => format!("{}/", &rest[..i]),
                    None => rest.to_string(),
                };
                if entries.last() != Some(&entry) && !entries.contains(&entry) {
                    entries.push(entry);
                }
            }
            if entries.is_empty() && !dir.is_empty() {
                return Err(HostError::NotFound(dir.to_string()));
            }
            entries.sort();
            Ok(entries)
        }
    })
}

/// Build a [`Diff`] from `git diff` (unified) text, for tests.
///
/// Understands `diff --git`, `new file mode`, `deleted file mode`, `rename from`/`rename to`,
/// `Binary files ... differ`, `---`/`+++` headers and `@@ -a,b +c,d @@` hunks. Line numbers
/// follow the WIT contract: new-file numbers for context and added lines, old-file numbers for
/// removed lines. Stats are computed from the parsed lines.
///
/// ```
/// use gaffer_sdk::testing::unified_diff;
/// use gaffer_sdk::types::{FileStatus, LineKind};
///
/// let diff = unified_diff(
///     "diff --git a/src/a.rs b/src/a.rs\n\
///      --- a/src/a.rs\n\
///      +++ b/src/a.rs\n\
///      @@ -1,2 +1,3 @@\n \
///       fn a() {}\n\
///      +// TODO\n \
///       fn b() {}\n",
/// );
/// let file = &diff.files[0];
/// assert_eq!(file.status, FileStatus::Modified);
/// assert_eq!(file.hunks[0].lines[1].kind, LineKind::Added);
/// assert_eq!(file.hunks[0].lines[1].line, 2);
/// assert_eq!(diff.stats.lines_added, 1);
/// ```
pub fn unified_diff(text: &str) -> Diff {
    let mut files: Vec<FileDiff> = Vec::new();
    let mut old_line = 0u32;
    let mut new_line = 0u32;
    for raw in text.lines() {
        if let Some(rest) = raw.strip_prefix("diff --git ") {
            let (a, b) = split_git_paths(rest);
            files.push(FileDiff {
                path: b,
                old_path: Some(a),
                status: FileStatus::Modified,
                binary: false,
                hunks: Vec::new(),
                added: 0,
                removed: 0,
            });
            continue;
        }
        let Some(file) = files.last_mut() else {
            continue;
        };
        if let Some(h) = raw.strip_prefix("@@ ") {
            let (os, ol, ns, nl) = parse_hunk_header(h);
            old_line = os;
            new_line = ns;
            file.hunks.push(Hunk {
                old_start: os,
                old_lines: ol,
                new_start: ns,
                new_lines: nl,
                lines: Vec::new(),
            });
            continue;
        }
        if let Some(hunk) = file.hunks.last_mut() {
            let (kind, body) = match raw.as_bytes().first() {
                Some(b'+') => (LineKind::Added, &raw[1..]),
                Some(b'-') => (LineKind::Removed, &raw[1..]),
                Some(b' ') => (LineKind::Context, &raw[1..]),
                None => (LineKind::Context, ""),
                Some(b'\\') => continue, // "\ No newline at end of file"
                Some(_) => continue,
            };
            let line = match kind {
                LineKind::Removed => {
                    old_line += 1;
                    file.removed += 1;
                    old_line - 1
                }
                LineKind::Added => {
                    new_line += 1;
                    file.added += 1;
                    new_line - 1
                }
                LineKind::Context => {
                    old_line += 1;
                    new_line += 1;
                    new_line - 1
                }
            };
            hunk.lines.push(DiffLine {
                kind,
                line,
                text: body.to_string(),
            });
            continue;
        }
        if raw.starts_with("new file mode") {
            file.status = FileStatus::Added;
            file.old_path = None;
        } else if raw.starts_with("deleted file mode") {
            file.status = FileStatus::Deleted;
            if let Some(old) = file.old_path.take() {
                file.path = old;
            }
        } else if let Some(from) = raw.strip_prefix("rename from ") {
            file.status = FileStatus::Renamed;
            file.old_path = Some(from.to_string());
        } else if let Some(to) = raw.strip_prefix("rename to ") {
            file.status = FileStatus::Renamed;
            file.path = to.to_string();
        } else if raw.starts_with("Binary files ") || raw.starts_with("GIT binary patch") {
            file.binary = true;
        }
    }
    for file in &mut files {
        if file.status != FileStatus::Renamed {
            file.old_path = None;
        }
    }
    diff(files)
}

/// Wrap files into a [`Diff`], computing its stats.
pub fn diff(files: Vec<FileDiff>) -> Diff {
    let stats = DiffStats {
        files_changed: files.len() as u32,
        lines_added: files.iter().map(|f| f.added).sum(),
        lines_removed: files.iter().map(|f| f.removed).sum(),
    };
    Diff { files, stats }
}

/// A new file with these lines (one hunk, numbered from 1).
pub fn added_file(path: &str, lines: &[&str]) -> FileDiff {
    let n = lines.len() as u32;
    FileDiff {
        path: path.to_string(),
        old_path: None,
        status: FileStatus::Added,
        binary: false,
        hunks: vec![Hunk {
            old_start: 0,
            old_lines: 0,
            new_start: 1,
            new_lines: n,
            lines: lines
                .iter()
                .zip(1..)
                .map(|(text, line)| DiffLine {
                    kind: LineKind::Added,
                    line,
                    text: (*text).to_string(),
                })
                .collect(),
        }],
        added: n,
        removed: 0,
    }
}

fn split_git_paths(rest: &str) -> (String, String) {
    // "a/x b/y"; paths with spaces are split at " b/".
    let (a, b) = match rest.find(" b/") {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, rest),
    };
    let strip = |s: &str, p: &str| s.strip_prefix(p).unwrap_or(s).to_string();
    (strip(a, "a/"), strip(b, "b/"))
}

fn parse_hunk_header(h: &str) -> (u32, u32, u32, u32) {
    // "-a,b +c,d @@ ..."
    let mut parts = h.split_whitespace();
    let range = |s: Option<&str>, sign: char| -> (u32, u32) {
        let s = s.and_then(|s| s.strip_prefix(sign)).unwrap_or("0");
        let (start, len) = match s.split_once(',') {
            Some((a, b)) => (a, b),
            None => (s, "1"),
        };
        (start.parse().unwrap_or(0), len.parse().unwrap_or(0))
    };
    let (os, ol) = range(parts.next(), '-');
    let (ns, nl) = range(parts.next(), '+');
    (os, ol, ns, nl)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host;

    #[test]
    fn guard_restores_previous_mock() {
        let _outer = MockHost::new().config_json(r#"{"a":1}"#).install();
        {
            let _inner = MockHost::new().config_json(r#"{"b":2}"#).install();
            assert_eq!(host::config_json(), r#"{"b":2}"#);
        }
        assert_eq!(host::config_json(), r#"{"a":1}"#);
    }

    #[test]
    fn logs_are_captured_with_fields() {
        let guard = MockHost::new().install();
        host::log(LogLevel::Info, "m", &[("k", "v")]);
        host::error("bad");
        let logs = guard.logs();
        assert_eq!(logs.len(), 2);
        assert_eq!(logs[0].fields, vec![("k".to_string(), "v".to_string())]);
        assert_eq!(logs[1].level, LogLevel::Error);
        drop(guard);
        assert_eq!(MockHost::take_logs().len(), 2);
        assert!(MockHost::logs().is_empty());
        host::info("dropped without a mock");
        assert!(MockHost::logs().is_empty());
    }

    #[test]
    fn files_and_listing() {
        let _g = MockHost::new()
            .file("a.txt", "A")
            .file("./src/x/y.rs", "Y")
            .file("src/z.rs", "Z")
            .install();
        assert_eq!(host::read_file("src/x/y.rs").as_deref(), Ok("Y"));
        assert_eq!(host::list_files(".").unwrap(), vec!["a.txt", "src/"]);
        assert_eq!(host::list_files("src/").unwrap(), vec!["x/", "z.rs"]);
        assert_eq!(
            host::list_files("nope"),
            Err(HostError::NotFound("nope".into()))
        );
    }

    #[test]
    fn files_not_granted() {
        let _g = MockHost::new().file("a", "A").files_not_granted().install();
        assert!(matches!(
            host::read_file("a"),
            Err(HostError::NotGranted(_))
        ));
        assert!(matches!(
            host::list_files(""),
            Err(HostError::NotGranted(_))
        ));
    }

    #[test]
    fn completion_handler_and_requests() {
        use crate::host::{Message, Role};
        use crate::types::TokenUsage;
        let req = |model: &str| CompletionRequest {
            model: model.into(),
            messages: vec![Message {
                role: Role::User,
                content: "hi".into(),
            }],
            max_tokens: 10,
        };
        {
            let _g = MockHost::new().install();
            assert!(matches!(
                host::complete(req("m")),
                Err(HostError::NotGranted(_))
            ));
        }
        let _g = MockHost::new()
            .completion(|r| {
                host::info("handler may log");
                if r.model == "deny" {
                    return Err(HostError::BudgetExhausted("task".into()));
                }
                Ok(Completion {
                    text: "ok".into(),
                    model: r.model,
                    usage: TokenUsage {
                        input: 1,
                        output: 1,
                        cache_read: 0,
                        cache_write: 0,
                    },
                    cost: 3,
                    stop_reason: "end_turn".into(),
                })
            })
            .install();
        assert_eq!(host::complete(req("m")).map(|c| c.text), Ok("ok".into()));
        assert_eq!(
            host::complete(req("deny")),
            Err(HostError::BudgetExhausted("task".into()))
        );
        assert_eq!(MockHost::completion_requests().len(), 2);
        assert_eq!(MockHost::logs().len(), 2);
    }

    #[test]
    fn unified_diff_parses_statuses_and_numbers() {
        let d = unified_diff(
            "diff --git a/old.rs b/new.rs\n\
             similarity index 90%\n\
             rename from old.rs\n\
             rename to new.rs\n\
             --- a/old.rs\n\
             +++ b/new.rs\n\
             @@ -10,3 +10,3 @@ fn x()\n \
              a\n\
             -b\n\
             +c\n \
              d\n\
             diff --git a/img.png b/img.png\n\
             new file mode 100644\n\
             Binary files /dev/null and b/img.png differ\n\
             diff --git a/gone.txt b/gone.txt\n\
             deleted file mode 100644\n\
             --- a/gone.txt\n\
             +++ /dev/null\n\
             @@ -1 +0,0 @@\n\
             -bye\n",
        );
        assert_eq!(d.files.len(), 3);
        let r = &d.files[0];
        assert_eq!(r.status, FileStatus::Renamed);
        assert_eq!(r.path, "new.rs");
        assert_eq!(r.old_path.as_deref(), Some("old.rs"));
        let lines: Vec<(LineKind, u32)> =
            r.hunks[0].lines.iter().map(|l| (l.kind, l.line)).collect();
        assert_eq!(
            lines,
            vec![
                (LineKind::Context, 10),
                (LineKind::Removed, 11),
                (LineKind::Added, 11),
                (LineKind::Context, 12)
            ]
        );
        assert!(d.files[1].binary);
        assert_eq!(d.files[1].status, FileStatus::Added);
        assert_eq!(d.files[2].status, FileStatus::Deleted);
        assert_eq!(d.files[2].path, "gone.txt");
        assert_eq!(d.files[2].hunks[0].lines[0].line, 1);
        assert_eq!(d.stats.files_changed, 3);
        assert_eq!(d.stats.lines_added, 1);
        assert_eq!(d.stats.lines_removed, 2);
    }
}

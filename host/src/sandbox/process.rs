//! Commands run for the agent (the `run_command` tool) and for the project's test command.
//!
//! A command runs as `sh -c <command>` in the worktree with a cleared environment (only an
//! allow-list passes through, so provider keys never reach it), stdin closed, stdout and stderr
//! merged into one capped capture, a timeout that kills its whole process group, and — where the
//! kernel has Landlock — writes confined to the worktree, `/tmp` and `/dev`.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use landlock::{
    ABI, AccessFs, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset, RulesetAttr,
    RulesetCreated, RulesetCreatedAttr, RulesetStatus, path_beneath_rules,
};
use tokio::io::AsyncReadExt;
use tokio::process::{Child, ChildStdout};
use tokio::sync::oneshot;

/// The Landlock ABI whose write rights are handled. V5–V8 share one write set (files, dirs,
/// special files, symlinks, `refer`, truncate, device ioctls); V9 adds `ResolveUnix`, which would
/// also forbid connecting to Unix sockets outside the writable directories (a Docker or nscd
/// socket), and that is not a write.
const LANDLOCK_ABI: ABI = ABI::V8;

/// How long output is still drained after the command's process group is gone (a process that
/// left the group may hold the pipe open).
const DRAIN_GRACE: Duration = Duration::from_secs(1);

/// Limits and environment for one command.
#[derive(Debug, Clone)]
pub struct CommandLimits {
    /// Wall-clock limit; on expiry the whole process group is killed.
    pub timeout: Duration,
    /// Bytes kept of stdout and stderr combined: the head and the tail, with a marker
    /// `[… N bytes cut …]` in between.
    pub output_cap: usize,
    /// Names passed through from gaffer's environment; everything else is cleared (never provider
    /// keys).
    pub env_allow: Vec<String>,
    /// Extra variables set explicitly (they win over passed-through ones).
    pub env_set: Vec<(String, String)>,
    /// Confine writes to the worktree, `/tmp` and `/dev` with Landlock where the kernel has it.
    pub confine_writes: bool,
    /// More directories confined commands may write beneath (a build tool's cache such as
    /// `~/.cargo` or `~/.cache`); missing ones are skipped.
    pub writable: Vec<PathBuf>,
}

impl Default for CommandLimits {
    /// 300 s, 64 KiB, `PATH HOME LANG LC_ALL TERM TMPDIR USER`, no extras, confined.
    fn default() -> Self {
        CommandLimits {
            timeout: Duration::from_secs(300),
            output_cap: 64 * 1024,
            env_allow: ["PATH", "HOME", "LANG", "LC_ALL", "TERM", "TMPDIR", "USER"]
                .map(String::from)
                .to_vec(),
            env_set: Vec::new(),
            confine_writes: true,
            writable: Vec::new(),
        }
    }
}

/// How a command's writes were confined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Confinement {
    /// Landlock enforced: writes only to the worktree, `/tmp` and `/dev`.
    Landlock,
    /// Not confined: the kernel lacks Landlock, or confinement was disabled.
    Unconfined,
}

/// What a command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutput {
    /// The exit code; `None` when the command was killed by a signal (a timeout included).
    pub exit_code: Option<i32>,
    /// Whether the timeout expired and the process group was killed.
    pub timed_out: bool,
    /// stdout and stderr as one stream (in write order), lossy UTF-8, capped.
    pub output: String,
    /// Bytes the command wrote in total, before capping.
    pub bytes_total: u64,
    /// Wall time from spawn to the end of output.
    pub duration: Duration,
    /// How the command's writes were confined.
    pub confinement: Confinement,
}

/// A command that could not be started at all (a failing command is a [`CommandOutput`]).
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The shell could not be spawned (the directory is missing, `/bin/sh` is missing, …).
    #[error("cannot run `{command}` in {}: {reason}", dir.display())]
    Spawn {
        /// The command line.
        command: String,
        /// The directory it was to run in.
        dir: PathBuf,
        /// The operating system's explanation.
        reason: String,
    },
}

/// Runs `sh -c <command>` in `dir` (the worktree): stdin null, the environment cleared except the
/// allow-list (+ `env_set`; `HOME` is the worktree unless passed through or set), in its own
/// session and process group so that a timeout kills the whole group (no orphaned grandchildren;
/// anything the command leaves running in its group is killed when it exits, too).
///
/// A missing program is the shell's exit 127, not an error; only a shell that cannot be started
/// at all is a [`CommandError`]. Landlock problems never fail the command: it runs unconfined and
/// says so in [`CommandOutput::confinement`].
pub async fn run_command(
    dir: &Path,
    command: &str,
    limits: &CommandLimits,
) -> Result<CommandOutput, CommandError> {
    let spawn_error = |reason: String| CommandError::Spawn {
        command: command.to_string(),
        dir: dir.to_path_buf(),
        reason,
    };
    if !dir.is_dir() {
        return Err(spawn_error("not a directory".to_string()));
    }
    let env = child_env(dir, limits);

    let mut ruleset = None;
    if limits.confine_writes {
        if landlock_available() {
            match write_ruleset(dir, &env, &limits.writable) {
                Ok(created) => ruleset = Some(created),
                Err(reason) => warn_unconfined(&reason),
            }
        } else {
            warn_unconfined("the kernel does not enforce Landlock");
        }
    }

    let started = Instant::now();
    let (mut child, confinement) = match ruleset {
        Some(created) => match spawn(dir, command, &env, Some(created)) {
            Ok(child) => (child, Confinement::Landlock),
            // restrict_self failing in the child surfaces here; run unconfined rather than fail.
            Err(e) => {
                warn_unconfined(&format!("restricting the command failed ({e})"));
                let child =
                    spawn(dir, command, &env, None).map_err(|e| spawn_error(e.to_string()))?;
                (child, Confinement::Unconfined)
            }
        },
        None => {
            let child = spawn(dir, command, &env, None).map_err(|e| spawn_error(e.to_string()))?;
            (child, Confinement::Unconfined)
        }
    };

    // The child called setsid, so its pid is its process group id.
    let mut group = ProcessGroup(child.id().and_then(|pid| i32::try_from(pid).ok()));
    let (stop_tx, stop_rx) = oneshot::channel();
    let reader = tokio::spawn(read_capped(
        child.stdout.take(),
        Capture::new(limits.output_cap),
        stop_rx,
    ));

    let (status, timed_out) = match tokio::time::timeout(limits.timeout, child.wait()).await {
        Ok(status) => (status.ok(), false),
        Err(_) => {
            group.kill();
            (reap(&mut child).await, true)
        }
    };
    // Whatever the command left running in its group goes too (and releases the output pipe).
    group.kill();
    group.0 = None;

    let mut reader = reader;
    let capture = match tokio::time::timeout(DRAIN_GRACE, &mut reader).await {
        Ok(joined) => joined.ok(),
        Err(_) => {
            let _ = stop_tx.send(());
            reader.await.ok()
        }
    };
    let capture = capture.unwrap_or_else(|| Capture::new(limits.output_cap));
    let bytes_total = capture.total;

    Ok(CommandOutput {
        exit_code: status.and_then(|s| s.code()),
        timed_out,
        output: capture.finish(),
        bytes_total,
        duration: started.elapsed(),
        confinement,
    })
}

/// Whether this kernel enforces Landlock (probed once, then cached).
///
/// The probe restricts a throwaway thread (Landlock confines only the calling thread), so gaffer
/// itself stays unrestricted.
pub fn landlock_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        let probe = std::thread::Builder::new()
            .name("landlock-probe".to_string())
            .spawn(|| {
                Ruleset::default()
                    .set_compatibility(CompatLevel::BestEffort)
                    .handle_access(AccessFs::from_write(LANDLOCK_ABI))
                    .and_then(Ruleset::create)
                    .and_then(RulesetCreated::restrict_self)
                    .map(|status| status.ruleset != RulesetStatus::NotEnforced)
                    .unwrap_or(false)
            });
        match probe {
            Ok(handle) => handle.join().unwrap_or(false),
            Err(_) => false,
        }
    })
}

/// The child's whole environment: the allow-list from ours, then `env_set`, then a `HOME`.
fn child_env(dir: &Path, limits: &CommandLimits) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = Vec::new();
    let mut set = |name: OsString, value: OsString| {
        env.retain(|(n, _)| *n != name);
        env.push((name, value));
    };
    for name in &limits.env_allow {
        if let Some(value) = std::env::var_os(name) {
            set(name.into(), value);
        }
    }
    for (name, value) in &limits.env_set {
        set(name.into(), value.into());
    }
    if !env.iter().any(|(n, _)| n == "HOME") {
        env.push(("HOME".into(), dir.as_os_str().to_os_string()));
    }
    env
}

/// Builds (in the parent: it opens path fds and allocates) a ruleset that leaves reads and
/// execution alone and allows writes only beneath `dir`, `/tmp`, `/dev` and the child's `TMPDIR`.
fn write_ruleset(
    dir: &Path,
    env: &[(OsString, OsString)],
    writable: &[PathBuf],
) -> Result<RulesetCreated, String> {
    let access = AccessFs::from_write(LANDLOCK_ABI);
    let dir_fd = PathFd::new(dir).map_err(|e| format!("cannot open {}: {e}", dir.display()))?;
    let mut others = vec![PathBuf::from("/tmp"), PathBuf::from("/dev")];
    others.extend(writable.iter().cloned());
    if let Some((_, tmpdir)) = env.iter().find(|(n, _)| n == "TMPDIR") {
        others.push(PathBuf::from(tmpdir));
    }
    Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(access)
        .and_then(Ruleset::create)
        .and_then(|created| created.add_rule(PathBeneath::new(dir_fd, access)))
        // Missing directories are skipped.
        .and_then(|created| created.add_rules(path_beneath_rules(&others, access)))
        .map_err(|e| format!("cannot build the Landlock ruleset: {e}"))
}

/// Spawns `sh -c command` in its own session, stderr merged into stdout, optionally restricted.
fn spawn(
    dir: &Path,
    command: &str,
    env: &[(OsString, OsString)],
    ruleset: Option<RulesetCreated>,
) -> io::Result<Child> {
    let mut cmd = tokio::process::Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(command)
        .current_dir(dir)
        .env_clear()
        .envs(env.iter().map(|(n, v)| (n, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let mut ruleset = ruleset;
    // SAFETY: between fork and exec the closure only makes async-signal-safe system calls
    // (setsid, dup2, prctl, landlock_restrict_self, close) and does not allocate: the ruleset was
    // built in the parent and is only moved out of its Option here.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() == -1 {
                return Err(io::Error::last_os_error());
            }
            // std has already redirected stdio: make stderr the same pipe as stdout, so the
            // capture keeps the order in which the command wrote (like `2>&1`).
            if libc::dup2(libc::STDOUT_FILENO, libc::STDERR_FILENO) == -1 {
                return Err(io::Error::last_os_error());
            }
            if let Some(created) = ruleset.take() {
                // Also sets PR_SET_NO_NEW_PRIVS.
                match created.restrict_self() {
                    Ok(status) if status.ruleset != RulesetStatus::NotEnforced => {}
                    // Refuse to run as "confined" when it is not: the parent retries unconfined.
                    Ok(_) => return Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP)),
                    Err(_) => return Err(io::Error::from_raw_os_error(libc::EPERM)),
                }
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// Waits for a child that has been sent SIGKILL.
async fn reap(child: &mut Child) -> Option<std::process::ExitStatus> {
    let _ = child.start_kill();
    child.wait().await.ok()
}

/// A command's process group: killed with SIGKILL when dropped (the `run_command` future being
/// cancelled), or explicitly.
struct ProcessGroup(Option<i32>);

impl ProcessGroup {
    /// SIGKILL to every process in the group. After the leader has been reaped its id stays
    /// reserved as long as a member lives; when none does, the call finds nothing (ESRCH).
    fn kill(&self) {
        if let Some(pgid) = self.0
            && pgid > 0
        {
            // SAFETY: kill(2) with a negative pid signals a process group; no memory involved.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reads the merged output until EOF (or until told to stop), keeping head and tail.
async fn read_capped(
    stdout: Option<ChildStdout>,
    mut capture: Capture,
    mut stop: oneshot::Receiver<()>,
) -> Capture {
    let Some(mut stdout) = stdout else {
        return capture;
    };
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            biased;
            read = stdout.read(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => capture.push(&buf[..n]),
            },
            _ = &mut stop => break,
        }
    }
    capture
}

/// Output kept under a cap: the first half and the last half of the cap.
#[derive(Debug)]
struct Capture {
    head_cap: usize,
    tail_cap: usize,
    head: Vec<u8>,
    /// Holds up to twice `tail_cap` between compactions; only the last `tail_cap` bytes count.
    tail: Vec<u8>,
    total: u64,
}

impl Capture {
    fn new(cap: usize) -> Capture {
        let head_cap = cap / 2;
        Capture {
            head_cap,
            tail_cap: cap - head_cap,
            head: Vec::new(),
            tail: Vec::new(),
            total: 0,
        }
    }

    fn push(&mut self, mut data: &[u8]) {
        self.total += data.len() as u64;
        let room = self.head_cap - self.head.len();
        if room > 0 {
            let take = room.min(data.len());
            self.head.extend_from_slice(&data[..take]);
            data = &data[take..];
        }
        if data.len() >= self.tail_cap {
            self.tail.clear();
            self.tail
                .extend_from_slice(&data[data.len() - self.tail_cap..]);
            return;
        }
        self.tail.extend_from_slice(data);
        if self.tail.len() > 2 * self.tail_cap {
            let excess = self.tail.len() - self.tail_cap;
            self.tail.drain(..excess);
        }
    }

    /// The kept text: everything when it fit, else head, marker, tail (cut on character
    /// boundaries where the text is UTF-8).
    fn finish(self) -> String {
        let tail_start = self.tail.len().saturating_sub(self.tail_cap);
        let tail = &self.tail[tail_start..];
        let kept = (self.head.len() + tail.len()) as u64;
        if kept == self.total {
            let mut all = self.head;
            all.extend_from_slice(tail);
            return String::from_utf8_lossy(&all).into_owned();
        }
        let head = trim_partial_end(&self.head);
        let tail = trim_partial_start(tail);
        let cut = self.total - (head.len() + tail.len()) as u64;
        format!(
            "{}\n[… {cut} bytes cut …]\n{}",
            String::from_utf8_lossy(head),
            String::from_utf8_lossy(tail)
        )
    }
}

/// `bytes` without a UTF-8 sequence cut off at its end.
fn trim_partial_end(bytes: &[u8]) -> &[u8] {
    for back in 1..=bytes.len().min(4) {
        let b = bytes[bytes.len() - back];
        if b & 0xC0 != 0x80 {
            // A lead byte (or ASCII): how long should its sequence be?
            let need = match b {
                0x00..=0x7F => 1,
                0xC0..=0xDF => 2,
                0xE0..=0xEF => 3,
                0xF0..=0xF7 => 4,
                _ => return bytes,
            };
            return if need > back {
                &bytes[..bytes.len() - back]
            } else {
                bytes
            };
        }
    }
    bytes
}

/// `bytes` without continuation bytes of a sequence cut off at its start.
fn trim_partial_start(bytes: &[u8]) -> &[u8] {
    let skip = bytes
        .iter()
        .take(3)
        .take_while(|b| **b & 0xC0 == 0x80)
        .count();
    &bytes[skip..]
}

/// Logs once per process that commands run without write confinement.
fn warn_unconfined(reason: &str) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!("commands run unconfined (no Landlock write confinement): {reason}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> CommandLimits {
        CommandLimits::default()
    }

    /// A scratch directory outside `/tmp` and `$TMPDIR` (which confined commands may write to):
    /// the build's target directory when the checkout is not itself under `/tmp` (CI may clone
    /// there), else `/var/tmp`, else the home directory.
    fn scratch_outside_tmp() -> tempfile::TempDir {
        let writable_anyway: Vec<PathBuf> = ["/tmp".into()]
            .into_iter()
            .chain(std::env::var_os("TMPDIR").map(PathBuf::from))
            .filter_map(|p: PathBuf| p.canonicalize().ok())
            .collect();
        let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
        let candidates = [
            Some(target),
            Some(PathBuf::from("/var/tmp")),
            std::env::var_os("HOME").map(PathBuf::from),
        ];
        for dir in candidates.into_iter().flatten() {
            let Ok(dir) = dir.canonicalize() else {
                continue;
            };
            if writable_anyway.iter().any(|w| dir.starts_with(w)) {
                continue;
            }
            if let Ok(scratch) = tempfile::tempdir_in(&dir) {
                return scratch;
            }
        }
        panic!("no scratch directory outside /tmp and $TMPDIR");
    }

    /// Whether `pid` is gone (or a zombie waiting for its reaper), polling up to two seconds.
    async fn gone(pid: i32) -> bool {
        for _ in 0..40 {
            match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
                Err(_) => return true,
                Ok(stat) => {
                    let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
                    if state.is_some_and(|s| s.starts_with('Z') || s.starts_with('X')) {
                        return true;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    #[test]
    fn defaults() {
        let d = CommandLimits::default();
        assert_eq!(d.timeout, Duration::from_secs(300));
        assert_eq!(d.output_cap, 65536);
        assert_eq!(
            d.env_allow,
            ["PATH", "HOME", "LANG", "LC_ALL", "TERM", "TMPDIR", "USER"]
        );
        assert!(d.env_set.is_empty());
        assert!(d.confine_writes);
        assert_eq!(
            serde_json::to_string(&Confinement::Unconfined).unwrap(),
            "\"unconfined\""
        );
    }

    #[tokio::test]
    async fn exit_code_and_merged_output() {
        let dir = tempfile::tempdir().unwrap();
        let out = run_command(
            dir.path(),
            "echo out; echo err >&2; echo out2; exit 3",
            &limits(),
        )
        .await
        .unwrap();
        assert_eq!(out.exit_code, Some(3));
        assert!(!out.timed_out);
        assert_eq!(out.output, "out\nerr\nout2\n");
        assert_eq!(out.bytes_total, 13);

        let ok = run_command(dir.path(), "pwd", &limits()).await.unwrap();
        assert_eq!(ok.exit_code, Some(0));
        assert_eq!(
            Path::new(ok.output.trim()).canonicalize().unwrap(),
            dir.path().canonicalize().unwrap()
        );
    }

    #[tokio::test]
    async fn missing_program_is_exit_127_and_missing_dir_is_a_spawn_error() {
        let dir = tempfile::tempdir().unwrap();
        let out = run_command(dir.path(), "no-such-command-gaffer-xyz", &limits())
            .await
            .unwrap();
        assert_eq!(out.exit_code, Some(127));
        assert!(out.output.contains("not found"), "{}", out.output);

        let missing = dir.path().join("missing");
        let err = run_command(&missing, "true", &limits()).await.unwrap_err();
        assert!(matches!(err, CommandError::Spawn { .. }));
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let limits = CommandLimits {
            timeout: Duration::from_millis(500),
            ..limits()
        };
        let out = run_command(
            dir.path(),
            "sleep 30 & echo $! > bg.pid; echo started; sleep 30",
            &limits,
        )
        .await
        .unwrap();
        assert!(out.timed_out);
        assert_eq!(out.exit_code, None);
        assert_eq!(out.output, "started\n");
        assert!(out.duration < Duration::from_secs(5), "{:?}", out.duration);
        let pid: i32 = std::fs::read_to_string(dir.path().join("bg.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(gone(pid).await, "grandchild {pid} survived the timeout");
    }

    #[tokio::test]
    async fn leftovers_are_killed_when_the_command_exits() {
        let dir = tempfile::tempdir().unwrap();
        let out = run_command(
            dir.path(),
            "sleep 30 & echo $! > bg.pid; echo done",
            &limits(),
        )
        .await
        .unwrap();
        assert_eq!(out.exit_code, Some(0));
        assert_eq!(out.output, "done\n");
        assert!(out.duration < Duration::from_secs(5), "{:?}", out.duration);
        let pid: i32 = std::fs::read_to_string(dir.path().join("bg.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(gone(pid).await, "background process {pid} survived");
    }

    #[tokio::test]
    async fn output_cap_keeps_head_and_tail() {
        let dir = tempfile::tempdir().unwrap();
        let limits = CommandLimits {
            output_cap: 1000,
            ..limits()
        };
        let out = run_command(
            dir.path(),
            "printf 'HEAD\\n'; yes x | head -n 50000; printf 'TAIL\\n'",
            &limits,
        )
        .await
        .unwrap();
        assert_eq!(out.exit_code, Some(0));
        assert_eq!(out.bytes_total, 5 + 100_000 + 5);
        assert!(out.output.starts_with("HEAD\nx\nx\n"), "{}", out.output);
        assert!(out.output.ends_with("x\nx\nTAIL\n"), "{}", out.output);
        assert!(
            out.output.contains("\n[… 99010 bytes cut …]\n"),
            "{}",
            out.output
        );
        // 1000 bytes kept plus the marker and its two newlines.
        assert_eq!(out.output.len(), 1000 + "\n[… 99010 bytes cut …]\n".len());
    }

    #[test]
    fn capture_cuts_on_character_boundaries() {
        let mut capture = Capture::new(6);
        capture.push("ééééé".as_bytes()); // 10 bytes: head 3, tail 3, each cut mid-character
        let text = capture.finish();
        assert_eq!(text, "é\n[… 6 bytes cut …]\né");
        let mut small = Capture::new(100);
        small.push(b"abc");
        small.push(b"def");
        assert_eq!(small.finish(), "abcdef");
    }

    #[tokio::test]
    async fn environment_is_cleared_except_the_allow_list() {
        // cargo sets these for the test binary; they must not reach the command.
        assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
        let dir = tempfile::tempdir().unwrap();
        let limits = CommandLimits {
            env_allow: vec!["PATH".into()],
            env_set: vec![("GAFFER_TEST_EXTRA".into(), "yes".into())],
            ..limits()
        };
        let out = run_command(dir.path(), "env", &limits).await.unwrap();
        let vars: Vec<&str> = out
            .output
            .lines()
            .filter_map(|l| l.split_once('=').map(|(n, _)| n))
            .collect();
        assert!(
            out.output.contains("GAFFER_TEST_EXTRA=yes\n"),
            "{}",
            out.output
        );
        assert!(!vars.contains(&"CARGO_MANIFEST_DIR"), "{}", out.output);
        assert!(!vars.contains(&"CARGO_PKG_NAME"), "{}", out.output);
        let path = std::env::var("PATH").unwrap();
        assert!(out.output.contains(&format!("PATH={path}\n")));
        // HOME was not allowed: it is the worktree.
        assert!(
            out.output
                .contains(&format!("HOME={}\n", dir.path().display())),
            "{}",
            out.output
        );
        let allowed: [&str; 4] = ["PATH", "HOME", "GAFFER_TEST_EXTRA", "PWD"];
        for name in vars {
            // sh itself may add a few (PWD, SHLVL, OLDPWD, _).
            assert!(
                allowed.contains(&name) || ["SHLVL", "OLDPWD", "_"].contains(&name),
                "unexpected variable {name}"
            );
        }
    }

    #[tokio::test]
    async fn landlock_confines_writes_to_the_worktree() {
        let available = landlock_available();
        println!("landlock_available() = {available}");
        let dir = scratch_outside_tmp();
        let outside = scratch_outside_tmp();
        let target = outside.path().join("f");
        let out = run_command(
            dir.path(),
            &format!(
                "echo inside > inside.txt && echo ok; echo x > '{}'; echo tmp > /dev/null",
                target.display()
            ),
            &limits(),
        )
        .await
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("inside.txt")).unwrap(),
            "inside\n"
        );
        if !available {
            println!("note: Landlock is not available here; confinement not asserted");
            assert_eq!(out.confinement, Confinement::Unconfined);
            return;
        }
        assert_eq!(out.confinement, Confinement::Landlock);
        assert!(!target.exists(), "wrote outside the worktree");
        assert!(out.output.starts_with("ok\n"), "{}", out.output);
        assert_eq!(out.exit_code, Some(0), "{}", out.output); // /dev/null stays writable
        assert!(out.output.contains("ermission denied"), "{}", out.output);

        // A directory named writable (a build tool's cache) is writable, confined.
        let with_cache = CommandLimits {
            writable: vec![outside.path().to_path_buf()],
            ..limits()
        };
        let out = run_command(
            dir.path(),
            &format!("echo cache > '{}'", target.display()),
            &with_cache,
        )
        .await
        .unwrap();
        assert_eq!(out.confinement, Confinement::Landlock);
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "cache\n");
        std::fs::remove_file(&target).unwrap();

        let unconfined = CommandLimits {
            confine_writes: false,
            ..limits()
        };
        let out = run_command(
            dir.path(),
            &format!("echo x > '{}'", target.display()),
            &unconfined,
        )
        .await
        .unwrap();
        assert_eq!(out.confinement, Confinement::Unconfined);
        assert!(target.exists());
    }
}

//! Commands run for the agent (the `run_command` tool) and for the project's test command.
//!
//! A command runs as `sh -c <command>` in the worktree with a cleared environment (only an
//! allow-list passes through, so provider keys never reach it), stdin closed, stdout and stderr
//! merged into one capped capture, and a timeout. Sandboxed (the default) it runs in the jail
//! of [`super::bwrap`] under the init of [`super::init`], in a command group of its own
//! ([`super::cgroup`]): when it ends or times out, every process it started is killed. Only an
//! explicit choice of the user (`gaffer run --unconfined`) runs it outside, in a process group.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::process::{Child, ChildStdout};
use tokio::sync::oneshot;

use super::bwrap::{self, Jail};
use super::cgroup::CommandGroup;
use super::init::{InitArgs, PROXY_PORT};
use super::overlay::{self, Layer};
use super::policy::{Mount, SandboxPolicy};
use super::probe::{SandboxUnavailable, probe};
use super::proxy::NetworkProxy;

/// How long output is still drained after the command's processes are gone (a process that
/// escaped may hold the pipe open; only unconfined commands have such processes).
const DRAIN_GRACE: Duration = Duration::from_secs(1);

/// Limits and environment for one command.
#[derive(Debug, Clone)]
pub struct CommandLimits {
    /// Wall-clock limit; on expiry every process of the command is killed.
    pub timeout: Duration,
    /// Bytes kept of stdout and stderr combined: the head and the tail, with a marker
    /// `[… N bytes cut …]` in between.
    pub output_cap: usize,
    /// Names passed through from gaffer's environment; everything else is cleared (never provider
    /// keys). Sandboxed, `HOME`, `TMPDIR` and `PATH` are the jail's own whatever this says.
    pub env_allow: Vec<String>,
    /// Extra variables set explicitly (they win over passed-through ones).
    pub env_set: Vec<(String, String)>,
    /// The sandbox the command runs in; `None` runs it unconfined (the user's explicit choice).
    pub sandbox: Option<SandboxPolicy>,
    /// The host directory behind the sandbox's `HOME` (`home/`) and `/tmp` (`tmp/`), shared by
    /// the commands of one attempt; `None` gives each command fresh ones.
    pub scratch: Option<PathBuf>,
    /// More host directories of the attempt shown inside (its private git dir).
    pub mounts: Vec<Mount>,
    /// gaffer's metering proxy on a Unix socket, reached inside at `127.0.0.1:3129`
    /// ([`super::init::MODEL_PORT`]) when an external agent runs in the sandbox.
    pub model_socket: Option<PathBuf>,
}

impl Default for CommandLimits {
    /// 300 s, 64 KiB, `PATH HOME LANG LC_ALL TERM TMPDIR USER`, no extras, the default sandbox,
    /// fresh scratch per command.
    fn default() -> Self {
        CommandLimits {
            timeout: Duration::from_secs(300),
            output_cap: 64 * 1024,
            env_allow: ["PATH", "HOME", "LANG", "LC_ALL", "TERM", "TMPDIR", "USER"]
                .map(String::from)
                .to_vec(),
            env_set: Vec::new(),
            sandbox: Some(SandboxPolicy::default()),
            scratch: None,
            mounts: Vec::new(),
            model_socket: None,
        }
    }
}

/// How a command was confined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Confinement {
    /// In the sandbox: namespaces, Landlock, seccomp, a command group.
    Sandboxed,
    /// Not confined: the user ran with `--unconfined`.
    Unconfined,
}

/// What a command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutput {
    /// The exit code; `None` when the command was killed by a signal (a timeout included).
    pub exit_code: Option<i32>,
    /// Whether the timeout expired and the command's processes were killed.
    pub timed_out: bool,
    /// stdout and stderr as one stream (in write order), lossy UTF-8, capped; a sandbox limit
    /// that stopped the command is noted at the end.
    pub output: String,
    /// Bytes the command wrote in total, before capping.
    pub bytes_total: u64,
    /// Wall time from spawn to the end of output.
    pub duration: Duration,
    /// How the command was confined.
    pub confinement: Confinement,
    /// Whether the memory limit killed one of its processes.
    pub out_of_memory: bool,
    /// Whether the process limit refused one of its forks.
    pub process_limit_hit: bool,
}

/// A command that could not be started at all (a failing command is a [`CommandOutput`]).
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The command could not be spawned (the directory is missing, `/bin/sh` is missing, …).
    #[error("cannot run `{command}` in {}: {reason}", dir.display())]
    Spawn {
        /// The command line.
        command: String,
        /// The directory it was to run in.
        dir: PathBuf,
        /// The operating system's explanation.
        reason: String,
    },
    /// A sandbox was asked for and this machine cannot make one.
    #[error("cannot run `{command}`: {unavailable}")]
    SandboxUnavailable {
        command: String,
        unavailable: SandboxUnavailable,
    },
}

/// Runs `sh -c <command>` in `dir` (the worktree, the only place it may write besides its
/// scratch): stdin null, the environment cleared except the allow-list (+ `env_set`), sandboxed
/// unless `limits.sandbox` is `None`. When the command exits or times out, everything it started
/// is killed.
///
/// A missing program is the shell's exit 127, not an error; only a command that cannot be
/// started at all is a [`CommandError`]; a sandbox that cannot be made is one, never a reason
/// to run unconfined.
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
    let started = Instant::now();
    let mut cleanup = Cleanup::default();
    let (mut child, confinement) = match &limits.sandbox {
        None => {
            let env = child_env(limits, &[("HOME".into(), dir.as_os_str().into())]);
            let mut cmd = tokio::process::Command::new("/bin/sh");
            cmd.arg("-c").arg(command).current_dir(dir);
            let child = spawn(cmd, &env, None).map_err(|e| spawn_error(e.to_string()))?;
            (child, Confinement::Unconfined)
        }
        Some(policy) => {
            let tools = probe().map_err(|unavailable| CommandError::SandboxUnavailable {
                command: command.to_string(),
                unavailable,
            })?;
            let (home, tmp) = cleanup
                .scratch(limits.scratch.as_deref())
                .map_err(spawn_error)?;
            let group =
                CommandGroup::create(&tools.cgroups, policy.memory_bytes, policy.max_processes)
                    .map_err(|e| spawn_error(format!("cannot make the command's cgroup: {e}")))?;
            let mut fixed: Vec<(OsString, OsString)> = vec![
                ("PATH".into(), bwrap::inner_path(policy)),
                ("HOME".into(), bwrap::HOME.into()),
                ("TMPDIR".into(), "/tmp".into()),
                ("USER".into(), "agent".into()),
            ];
            if !policy.network && !policy.proxy.allow_domains.is_empty() {
                let socket = home
                    .parent()
                    .unwrap_or(&home)
                    .join(format!("proxy-{}.sock", next_proxy_id()));
                let proxy = NetworkProxy::start(&socket, policy.proxy.clone())
                    .map_err(|e| spawn_error(format!("cannot start the proxy: {e}")))?;
                cleanup.proxy = Some(proxy);
                let url = format!("http://127.0.0.1:{PROXY_PORT}");
                for name in ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"] {
                    fixed.push((name.into(), url.clone().into()));
                }
                fixed.push(("NO_PROXY".into(), "localhost,127.0.0.1".into()));
            }
            let env = child_env(limits, &fixed);
            let layers = Layer::under(home.parent().unwrap_or(&home), &policy.caches)
                .map_err(|e| spawn_error(format!("cannot make the caches' layers: {e}")))?;
            let mut mounts = limits.mounts.clone();
            mounts.extend(layers.iter().map(|layer| Mount {
                path: layer.lower.clone(),
                writable: true,
            }));
            let writable = [dir.to_path_buf()];
            let jail = Jail {
                dir,
                writable: &writable,
                mounts: &mounts,
                home: &home,
                tmp: &tmp,
                policy,
                init: &tools.init,
                proxy_socket: cleanup.proxy.as_ref().map(NetworkProxy::socket),
                model_socket: limits.model_socket.as_deref(),
                env: &env,
            };
            let mut init_writable: Vec<PathBuf> = vec![
                dir.to_path_buf(),
                "/tmp".into(),
                bwrap::HOME.into(),
                "/dev".into(),
            ];
            init_writable.extend(mounts.iter().filter(|m| m.writable).map(|m| m.path.clone()));
            let init = InitArgs {
                writable: init_writable,
                max_file_bytes: Some(policy.max_file_bytes),
                proxy_socket: cleanup
                    .proxy
                    .as_ref()
                    .map(|_| PathBuf::from(bwrap::PROXY_SOCKET)),
                model_socket: limits
                    .model_socket
                    .as_ref()
                    .map(|_| PathBuf::from(bwrap::MODEL_SOCKET)),
                program: "/bin/sh".into(),
                args: vec!["-c".into(), command.into()],
            };
            let mut bwrap_args = bwrap::args(&jail);
            bwrap_args.extend(init.to_args());
            let cmd = if layers.is_empty() {
                let mut cmd = tokio::process::Command::new(&tools.bwrap);
                cmd.args(bwrap_args);
                cmd
            } else {
                // The overlays are mounted first, in namespaces of their own, by gaffer's init.
                let mut cmd = tokio::process::Command::new(&tools.init);
                cmd.args(overlay::args(&layers, &tools.bwrap, bwrap_args));
                cmd
            };
            // bubblewrap sets the environment inside; its own needs none.
            let child =
                spawn(cmd, &[], Some(group.joiner())).map_err(|e| spawn_error(e.to_string()))?;
            cleanup.group = Some(group);
            (child, Confinement::Sandboxed)
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
    // Whatever the command left running goes too (and releases the output pipe).
    group.kill();
    group.0 = None;
    if let Some(cgroup) = &cleanup.group {
        cgroup.kill_all();
    }

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
    let mut output = capture.finish();
    let (mut out_of_memory, mut process_limit_hit) = (false, false);
    if let (Some(cgroup), Some(policy)) = (&cleanup.group, &limits.sandbox) {
        out_of_memory = cgroup.ran_out_of_memory();
        process_limit_hit = cgroup.hit_process_cap();
        if out_of_memory {
            output.push_str(&format!(
                "\n[gaffer: the command used its {} MiB of memory; the kernel killed a process]\n",
                policy.memory_bytes / (1024 * 1024)
            ));
        }
        if process_limit_hit {
            output.push_str(&format!(
                "\n[gaffer: the command reached its limit of {} processes; a fork was refused]\n",
                policy.max_processes
            ));
        }
    }

    Ok(CommandOutput {
        exit_code: status.and_then(|s| s.code()),
        timed_out,
        output,
        bytes_total,
        duration: started.elapsed(),
        confinement,
        out_of_memory,
        process_limit_hit,
    })
}

/// What a sandboxed command leaves to clean up: its command group, its proxy and a fresh
/// scratch (dropped in that order).
#[derive(Default)]
struct Cleanup {
    group: Option<CommandGroup>,
    proxy: Option<NetworkProxy>,
    fresh_scratch: Option<tempfile::TempDir>,
}

/// A number for each proxy socket of this process.
fn next_proxy_id() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

impl Cleanup {
    /// The host directories behind `HOME` and `/tmp`: under the shared scratch, else fresh.
    fn scratch(&mut self, shared: Option<&Path>) -> Result<(PathBuf, PathBuf), String> {
        let root = match shared {
            Some(root) => root.to_path_buf(),
            None => {
                let fresh = tempfile::Builder::new()
                    .prefix("gaffer-scratch-")
                    .tempdir()
                    .map_err(|e| format!("cannot make a scratch directory: {e}"))?;
                let root = fresh.path().to_path_buf();
                self.fresh_scratch = Some(fresh);
                root
            }
        };
        let (home, tmp) = (root.join("home"), root.join("tmp"));
        for dir in [&home, &tmp] {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        Ok((home, tmp))
    }
}

/// The child's whole environment: the allow-list from ours, then `env_set`, then `fixed` (which
/// wins unless `env_set` names the variable; an unconfined command's `HOME` only when none
/// passed through).
fn child_env(limits: &CommandLimits, fixed: &[(OsString, OsString)]) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = Vec::new();
    let mut set = |name: OsString, value: OsString| {
        env.retain(|(n, _)| *n != name);
        env.push((name, value));
    };
    let sandboxed = limits.sandbox.is_some();
    for name in &limits.env_allow {
        if let Some(value) = std::env::var_os(name) {
            set(name.into(), value);
        }
    }
    for (name, value) in fixed {
        let passed = limits.env_allow.iter().any(|n| n.as_str() == name);
        if sandboxed || !passed || std::env::var_os(name).is_none() {
            set(name.clone(), value.clone());
        }
    }
    let policy_env = limits.sandbox.iter().flat_map(|p| p.env.iter());
    for (name, value) in limits.env_set.iter().chain(policy_env) {
        set(name.into(), value.into());
    }
    env
}

/// Spawns `cmd` in its own session, stdin null, stderr merged into stdout, with `env` as its
/// whole environment, first joining the command group when `join` is given.
fn spawn(
    mut cmd: tokio::process::Command,
    env: &[(OsString, OsString)],
    join: Option<super::cgroup::Joiner>,
) -> io::Result<Child> {
    cmd.env_clear()
        .envs(env.iter().map(|(n, v)| (n, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    // SAFETY: between fork and exec the closure only makes async-signal-safe system calls
    // (setsid, dup2, open, write, close) and does not allocate.
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
            if let Some(join) = &join {
                join.join()?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The process mechanics are the same in and out of the sandbox; these tests run
    /// unconfined (the sandbox is tested in `tests/sandbox.rs`, where its init program is built).
    fn limits() -> CommandLimits {
        CommandLimits {
            sandbox: None,
            ..CommandLimits::default()
        }
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
        assert_eq!(d.sandbox, Some(SandboxPolicy::default()));
        assert_eq!(d.scratch, None);
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
}

//! Whether this machine can sandbox commands, found once per process: bubblewrap, gaffer's
//! init program, Landlock, seccomp, a cgroup hierarchy with the memory and pids controllers,
//! and a trial run of all of them together. What is missing is named, so that `gaffer run`
//! can refuse with the reason (or run unconfined when the user said so).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::bwrap::{self, Jail};
use super::cgroup::{CommandGroup, Hierarchy};
use super::init::InitArgs;
use super::policy::SandboxPolicy;

/// The program names looked for.
const BWRAP: &str = "bwrap";
const INIT: &str = "gaffer-sandbox";

/// What the sandbox is made with on this machine.
#[derive(Debug, Clone)]
pub struct SandboxTools {
    /// bubblewrap.
    pub bwrap: PathBuf,
    /// gaffer's init program (`gaffer-sandbox`).
    pub init: PathBuf,
    /// Where command groups are made.
    pub cgroups: Hierarchy,
}

/// The sandbox cannot be made here; each entry names a missing piece and how to get it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the sandbox is not available on this machine: {}", missing.join("; "))]
pub struct SandboxUnavailable {
    pub missing: Vec<String>,
}

/// The first executable `name` in `PATH`.
fn in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The program a variable names, if it is set: checked to be an executable file.
fn from_variable(name: &str) -> Option<Result<PathBuf, String>> {
    let path = PathBuf::from(std::env::var_os(name)?);
    Some(if is_executable(&path) {
        Ok(path)
    } else {
        Err(format!(
            "{name}={} is not an executable file",
            path.display()
        ))
    })
}

/// `$GAFFER_BWRAP`, else `bwrap` in `PATH`.
fn find_bwrap() -> Result<PathBuf, String> {
    if let Some(found) = from_variable("GAFFER_BWRAP") {
        return found;
    }
    in_path(BWRAP).ok_or_else(|| {
        "bubblewrap (`bwrap`) is not installed (Debian and Ubuntu: `apt-get install bubblewrap`)"
            .to_string()
    })
}

/// `$GAFFER_SANDBOX_INIT`, else `gaffer-sandbox` beside the running program (or one directory
/// up, where cargo puts test programs), else in `PATH`.
fn find_init() -> Result<PathBuf, String> {
    if let Some(found) = from_variable("GAFFER_SANDBOX_INIT") {
        return found;
    }
    let beside = std::env::current_exe().ok().and_then(|exe| {
        exe.ancestors()
            .skip(1)
            .take(2)
            .map(|dir| dir.join(INIT))
            .find(|candidate| is_executable(candidate))
    });
    beside.or_else(|| in_path(INIT)).ok_or_else(|| {
        format!(
            "`{INIT}` (installed with gaffer) is neither beside {} nor in PATH",
            std::env::current_exe()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| "gaffer".to_string())
        )
    })
}

/// Probe now (uncached): every missing piece, or the tools.
pub fn probe_uncached() -> Result<SandboxTools, SandboxUnavailable> {
    let mut missing = Vec::new();
    let bwrap = find_bwrap().map_err(|e| missing.push(e)).ok();
    let init = find_init().map_err(|e| missing.push(e)).ok();
    if !super::landlock_available() {
        missing.push("the kernel does not enforce Landlock (Linux 5.13 or later, with `landlock` in the `lsm=` list)".to_string());
    }
    if let Err(e) = super::seccomp::filters() {
        missing.push(e);
    }
    let cgroups = Hierarchy::detect().map_err(|e| missing.push(e)).ok();
    let (Some(bwrap), Some(init), Some(cgroups), true) = (bwrap, init, cgroups, missing.is_empty())
    else {
        return Err(SandboxUnavailable { missing });
    };
    let tools = SandboxTools {
        bwrap,
        init,
        cgroups,
    };
    trial(&tools).map_err(|e| SandboxUnavailable { missing: vec![e] })?;
    Ok(tools)
}

/// The tools, probed once per process.
pub fn probe() -> Result<&'static SandboxTools, SandboxUnavailable> {
    static PROBED: OnceLock<Result<SandboxTools, SandboxUnavailable>> = OnceLock::new();
    PROBED
        .get_or_init(probe_uncached)
        .as_ref()
        .map_err(Clone::clone)
}

/// Run `true` in a complete sandbox: the namespaces (user, PID, network, …), the init's
/// Landlock and seccomp, a command group.
fn trial(tools: &SandboxTools) -> Result<(), String> {
    let scratch = tempfile::Builder::new()
        .prefix("gaffer-sandbox-probe-")
        .tempdir()
        .map_err(|e| format!("cannot make a temporary directory: {e}"))?;
    let (work, home, tmp) = (
        scratch.path().join("work"),
        scratch.path().join("home"),
        scratch.path().join("tmp"),
    );
    for dir in [&work, &home, &tmp] {
        std::fs::create_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let policy = SandboxPolicy::default();
    let group = CommandGroup::create(&tools.cgroups, policy.memory_bytes, policy.max_processes)
        .map_err(|e| format!("cannot make a cgroup for commands: {e}"))?;
    let writable = [work.clone()];
    let env = [("PATH".into(), bwrap::inner_path(&policy))];
    let jail = Jail {
        dir: &work,
        writable: &writable,
        mounts: &[],
        home: &home,
        tmp: &tmp,
        policy: &policy,
        init: &tools.init,
        proxy_socket: None,
        model_socket: None,
        env: &env,
    };
    let init = InitArgs {
        writable: vec![work.clone(), "/tmp".into()],
        max_file_bytes: Some(policy.max_file_bytes),
        proxy_socket: None,
        model_socket: None,
        program: "/bin/sh".into(),
        args: vec!["-c".into(), "touch \"$0/ok\"".into(), work.clone().into()],
    };
    let mut command = std::process::Command::new(&tools.bwrap);
    command
        .args(bwrap::args(&jail))
        .args(init.to_args())
        .stdin(std::process::Stdio::null());
    let joiner = group.joiner();
    // SAFETY: the closure only opens and writes cgroup files (async-signal-safe, no allocation).
    unsafe {
        use std::os::unix::process::CommandExt;
        command.pre_exec(move || joiner.join());
    }
    let output = command
        .output()
        .map_err(|e| format!("cannot run {}: {e}", tools.bwrap.display()))?;
    if !output.status.success() || !work.join("ok").exists() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(format!(
            "a trial command in the sandbox failed ({}): {}",
            output.status,
            stderr.trim()
        ));
    }
    Ok(())
}

/// Whether `gaffer-sandbox overlay` can lay a copy-on-write layer over a directory here
/// (unprivileged overlayfs in a user namespace, Linux 5.11 and later), probed once.
pub fn probe_overlay() -> Result<(), SandboxUnavailable> {
    static PROBED: OnceLock<Result<(), SandboxUnavailable>> = OnceLock::new();
    PROBED
        .get_or_init(|| {
            let tools = probe()?;
            overlay_trial(tools).map_err(|e| SandboxUnavailable {
                missing: vec![format!(
                    "[sandbox] caches needs copy-on-write layers, which failed here: {e}"
                )],
            })
        })
        .clone()
}

/// Write through an overlay and check that the write stayed in the upper layer.
fn overlay_trial(tools: &SandboxTools) -> Result<(), String> {
    let scratch = tempfile::Builder::new()
        .prefix("gaffer-overlay-probe-")
        .tempdir()
        .map_err(|e| format!("cannot make a temporary directory: {e}"))?;
    let lower = scratch.path().join("lower");
    std::fs::create_dir(&lower).map_err(|e| format!("{}: {e}", lower.display()))?;
    let layers = super::overlay::Layer::under(scratch.path(), std::slice::from_ref(&lower))
        .map_err(|e| e.to_string())?;
    let file = lower.join("probe");
    let output = std::process::Command::new(&tools.init)
        .args(super::overlay::args(
            &layers,
            Path::new("/bin/sh"),
            vec![
                "-c".into(),
                "echo written > \"$0\"".into(),
                file.clone().into(),
            ],
        ))
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", tools.init.display()))?;
    let written_above = layers
        .first()
        .is_some_and(|l| l.upper.join("probe").exists());
    if !output.status.success() || file.exists() || !written_above {
        return Err(String::from_utf8_lossy(&output.stderr).trim().to_string());
    }
    Ok(())
}

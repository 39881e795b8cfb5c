//! The namespaces and mount view of a sandboxed command, made by bubblewrap (Debian's
//! `bubblewrap`, the tool Flatpak and Anthropic's sandbox runtime for Claude Code build on): a
//! new user, mount, PID, IPC and UTS namespace (and network, unless allowed), uid 1000 inside,
//! no capabilities, no further user namespaces, and a file system that holds only the system
//! directories (read-only, with what others may not read masked), a private `/proc` and a minimal
//! `/dev`, the attempt's scratch home and temp folder, the read-only paths the project
//! declares, and the worktree. The host's home, gaffer's state, the main repository and every
//! other process are not there.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::policy::{Mount, SandboxPolicy};

/// Where the scratch home is inside.
pub const HOME: &str = "/home/agent";
/// Where gaffer's init program is inside.
pub const INIT: &str = "/run/gaffer/sandbox-init";
/// Where gaffer's proxy socket is inside.
pub const PROXY_SOCKET: &str = "/run/gaffer/proxy.sock";
/// Where gaffer's metering proxy socket (an external agent's model calls) is inside.
pub const MODEL_SOCKET: &str = "/run/gaffer/model.sock";
/// The uid and gid of the command inside (not root).
pub const UID: u32 = 1000;

/// System directories shown read-only (or as the symlinks they are).
const SYSTEM: &[&str] = &[
    "/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
];
/// How deep the search for private entries of `/etc` goes.
const MAX_ETC_DEPTH: usize = 8;

/// The entries of `dir` (recursively, up to `depth` levels, symlinks not followed) that others
/// may not read: the files meant for their owner only (`/etc/shadow`, TLS and SSH keys, database
/// passwords). Inside the sandbox the command's uid maps to gaffer's own, so when gaffer runs as
/// root (CI, containers) it would read what only root may: these are masked. Directories come
/// with `true`.
fn private_entries(dir: &Path, depth: usize, found: &mut Vec<(PathBuf, bool)>) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.file_type().is_symlink() {
            continue;
        }
        let others = meta.permissions().mode() & 0o007;
        if meta.is_dir() {
            if others & 0o5 != 0o5 {
                found.push((path, true));
            } else if depth > 1 {
                private_entries(&path, depth - 1, found);
            }
        } else if others & 0o4 == 0 {
            found.push((path, false));
        }
    }
}

/// The private entries of `/etc`, found once per process.
fn private_etc() -> &'static [(PathBuf, bool)] {
    static FOUND: std::sync::OnceLock<Vec<(PathBuf, bool)>> = std::sync::OnceLock::new();
    FOUND.get_or_init(|| {
        let mut found = Vec::new();
        private_entries(Path::new("/etc"), MAX_ETC_DEPTH, &mut found);
        found.sort();
        found
    })
}

/// Mask the secrets of a declared toolchain or cache: what others may not read at its top
/// level (its tree can be large), and the usual credential files.
fn mask_credentials(args: &mut Vec<OsString>, dir: &Path) {
    let mut private = Vec::new();
    private_entries(dir, 1, &mut private);
    private.extend(
        CREDENTIALS
            .iter()
            .map(|name| (dir.join(name), false))
            .filter(|(file, _)| file.is_file()),
    );
    private.sort();
    private.dedup();
    for (path, is_dir) in &private {
        mask(args, path, *is_dir);
    }
}

/// Mask `path`: an empty file, or an empty directory.
fn mask(args: &mut Vec<OsString>, path: &Path, is_dir: bool) {
    if is_dir {
        push(args, &[&"--tmpfs", &path]);
    } else {
        push(args, &[&"--ro-bind", &"/dev/null", &path]);
    }
}

/// Files that hold credentials when they sit directly in a declared read-only directory (a
/// toolchain's home such as `~/.cargo`): masked, so that declaring the toolchain does not
/// declare its registry tokens.
const CREDENTIALS: &[&str] = &[
    "credentials",
    "credentials.toml",
    ".credentials.json",
    ".netrc",
    ".npmrc",
    ".pypirc",
    ".git-credentials",
    "config.json",
    "auth.json",
    "hosts.yml",
];

/// One command's jail.
#[derive(Debug, Clone)]
pub struct Jail<'a> {
    /// The directory the command starts in (the worktree or inside it).
    pub dir: &'a Path,
    /// Directories shown read-write at their own path (the worktree).
    pub writable: &'a [PathBuf],
    /// More directories of the attempt, shown at their own path.
    pub mounts: &'a [Mount],
    /// The host directories behind the scratch `HOME` and `/tmp`.
    pub home: &'a Path,
    pub tmp: &'a Path,
    pub policy: &'a SandboxPolicy,
    /// gaffer's init program on the host.
    pub init: &'a Path,
    /// gaffer's proxy socket on the host, when commands may go through it.
    pub proxy_socket: Option<&'a Path>,
    /// gaffer's metering proxy socket on the host, when an external agent runs inside.
    pub model_socket: Option<&'a Path>,
    /// The command's environment.
    pub env: &'a [(OsString, OsString)],
}

fn push(args: &mut Vec<OsString>, items: &[&dyn AsRefOs]) {
    for item in items {
        args.push(item.as_os());
    }
}

/// Anything that is an argument.
trait AsRefOs {
    fn as_os(&self) -> OsString;
}

impl AsRefOs for &str {
    fn as_os(&self) -> OsString {
        OsString::from(*self)
    }
}

impl AsRefOs for &Path {
    fn as_os(&self) -> OsString {
        self.as_os_str().to_os_string()
    }
}

impl AsRefOs for PathBuf {
    fn as_os(&self) -> OsString {
        self.as_os_str().to_os_string()
    }
}

impl AsRefOs for String {
    fn as_os(&self) -> OsString {
        OsString::from(self)
    }
}

impl AsRefOs for OsString {
    fn as_os(&self) -> OsString {
        self.clone()
    }
}

/// bubblewrap's arguments up to the program it runs (gaffer's init).
pub fn args(jail: &Jail<'_>) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    let a = &mut args;
    push(
        a,
        &[
            &"--unshare-user",
            &"--unshare-ipc",
            &"--unshare-pid",
            &"--unshare-uts",
            &"--unshare-cgroup-try",
        ],
    );
    if !jail.policy.network {
        push(a, &[&"--unshare-net"]);
    }
    push(
        a,
        &[
            &"--uid",
            &UID.to_string(),
            &"--gid",
            &UID.to_string(),
            &"--hostname",
            &"sandbox",
            &"--disable-userns",
            &"--die-with-parent",
            &"--new-session",
            &"--cap-drop",
            &"ALL",
        ],
    );
    for dir in SYSTEM {
        let path = Path::new(dir);
        match std::fs::read_link(path) {
            Ok(target) => push(a, &[&"--symlink", &target, &path]),
            Err(_) if path.is_dir() => push(a, &[&"--ro-bind", &path, &path]),
            Err(_) => {}
        }
    }
    for (path, is_dir) in private_etc() {
        mask(a, path, *is_dir);
    }
    push(a, &[&"--proc", &"/proc", &"--dev", &"/dev"]);
    push(
        a,
        &[&"--bind", &jail.tmp, &"/tmp", &"--bind", &jail.home, &HOME],
    );
    for dir in &jail.policy.read_only {
        if dir.exists() {
            push(a, &[&"--ro-bind", dir, dir]);
            mask_credentials(a, dir);
        }
    }
    for mount in jail.mounts {
        let kind = if mount.writable {
            "--bind"
        } else {
            "--ro-bind"
        };
        push(a, &[&kind, &mount.path, &mount.path]);
    }
    // The caches are among the mounts (their overlays); their secrets go too.
    for dir in &jail.policy.caches {
        if jail.mounts.iter().any(|m| &m.path == dir) {
            mask_credentials(a, dir);
        }
    }
    for dir in jail.writable {
        push(a, &[&"--bind", dir, dir]);
    }
    if let Some(socket) = jail.proxy_socket {
        push(a, &[&"--bind", &socket, &PROXY_SOCKET]);
    }
    if let Some(socket) = jail.model_socket {
        push(a, &[&"--bind", &socket, &MODEL_SOCKET]);
    }
    push(a, &[&"--ro-bind", &jail.init, &INIT, &"--chdir", &jail.dir]);
    push(a, &[&"--clearenv"]);
    for (name, value) in jail.env {
        push(a, &[&"--setenv", name, value]);
    }
    push(a, &[&"--", &INIT]);
    args
}

/// `PATH` inside: the entries of gaffer's own `PATH` that are visible in the jail (system
/// directories, declared read-only paths and caches), else the usual system ones.
pub fn inner_path(policy: &SandboxPolicy) -> OsString {
    let visible = |dir: &Path| {
        ["/usr", "/bin", "/sbin"].iter().any(|s| dir.starts_with(s))
            || policy
                .read_only
                .iter()
                .chain(&policy.caches)
                .any(|r| dir.starts_with(r))
    };
    let dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).filter(|d| visible(d)).collect())
        .unwrap_or_default();
    if dirs.is_empty() {
        return OsString::from("/usr/local/bin:/usr/bin:/bin");
    }
    std::env::join_paths(dirs).unwrap_or_else(|_| OsString::from("/usr/local/bin:/usr/bin:/bin"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(args: &[OsString]) -> String {
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn entries_others_may_not_read_are_found_without_following_links() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let set = |path: &Path, mode: u32| {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
        };
        std::fs::write(dir.path().join("public"), "x").unwrap();
        std::fs::write(dir.path().join("key"), "x").unwrap();
        set(&dir.path().join("key"), 0o600);
        std::fs::create_dir_all(dir.path().join("open/deeper")).unwrap();
        std::fs::write(dir.path().join("open/deeper/token"), "x").unwrap();
        set(&dir.path().join("open/deeper/token"), 0o640);
        std::fs::create_dir(dir.path().join("closed")).unwrap();
        set(&dir.path().join("closed"), 0o700);
        std::os::unix::fs::symlink("/etc/shadow", dir.path().join("link")).unwrap();
        let mut found = Vec::new();
        private_entries(dir.path(), 8, &mut found);
        found.sort();
        let names: Vec<(String, bool)> = found
            .iter()
            .map(|(p, d)| {
                let rel = p.strip_prefix(dir.path()).unwrap().display().to_string();
                (rel, *d)
            })
            .collect();
        assert_eq!(
            names,
            [
                ("closed".to_string(), true),
                ("key".to_string(), false),
                ("open/deeper/token".to_string(), false),
            ]
        );
        let mut shallow = Vec::new();
        private_entries(dir.path(), 1, &mut shallow);
        assert_eq!(shallow.len(), 2, "{shallow:?}");
    }

    #[test]
    fn the_jail_shows_the_worktree_last_and_no_network_by_default() {
        let policy = SandboxPolicy {
            read_only: vec!["/opt/toolchain".into()],
            ..SandboxPolicy::default()
        };
        let writable = vec![PathBuf::from("/tmp/x/repo/.gaffer/worktrees/T-1-a1")];
        let env = vec![(OsString::from("HOME"), OsString::from(HOME))];
        let jail = Jail {
            dir: &writable[0],
            writable: &writable,
            mounts: &[],
            home: Path::new("/scratch/home"),
            tmp: Path::new("/scratch/tmp"),
            policy: &policy,
            init: Path::new("/usr/local/bin/gaffer-sandbox"),
            proxy_socket: None,
            model_socket: None,
            env: &env,
        };
        let text = joined(&args(&jail));
        assert!(text.contains("--unshare-net"), "{text}");
        assert!(text.contains("--uid 1000 --gid 1000"), "{text}");
        assert!(text.contains("--cap-drop ALL"), "{text}");
        // /tmp is mounted before the worktree, which may lie beneath it.
        let tmp = text.find("--bind /scratch/tmp /tmp").unwrap();
        let worktree = text
            .find(
                "--bind /tmp/x/repo/.gaffer/worktrees/T-1-a1 /tmp/x/repo/.gaffer/worktrees/T-1-a1",
            )
            .unwrap();
        assert!(tmp < worktree, "{text}");
        assert!(
            text.ends_with(&format!("--setenv HOME {HOME} -- {INIT}")),
            "{text}"
        );
        let open = SandboxPolicy {
            network: true,
            ..SandboxPolicy::default()
        };
        let text = joined(&args(&Jail {
            policy: &open,
            ..jail
        }));
        assert!(!text.contains("--unshare-net"), "{text}");
    }
}

//! A control group per command: its processes' memory and number are capped, and when the
//! command ends every process still in it is killed. cgroup v2 where its memory and pids
//! controllers are available to gaffer, else v1's memory and pids hierarchies; where neither
//! is, the sandbox is not available (and `gaffer run` refuses unless told to run unconfined).

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Which cgroup interface the machine gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hierarchy {
    /// The unified hierarchy: the directory under which gaffer makes its groups.
    V2 { parent: PathBuf },
    /// Separate memory and pids hierarchies: the directories under which gaffer makes its
    /// groups in each.
    V1 { memory: PathBuf, pids: PathBuf },
}

/// The mount points of cgroup file systems: (v2 mount, v1 controller mounts by controller).
fn mounts() -> (Option<PathBuf>, Vec<(String, PathBuf)>) {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut v2 = None;
    let mut v1 = Vec::new();
    for line in text.lines() {
        // `ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS`
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let fields: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        let (Some(mount), Some(fstype)) = (fields.get(4), right.first()) else {
            continue;
        };
        match *fstype {
            "cgroup2" => v2 = Some(PathBuf::from(mount)),
            "cgroup" => {
                let opts = right.get(2).copied().unwrap_or("");
                for controller in opts.split(',') {
                    v1.push((controller.to_string(), PathBuf::from(mount)));
                }
            }
            _ => {}
        }
    }
    (v2, v1)
}

/// This process's group in each hierarchy: ("" for v2, or the controller list) → path.
fn own_groups() -> Vec<(String, String)> {
    std::fs::read_to_string("/proc/self/cgroup")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let _id = parts.next()?;
            let controllers = parts.next()?;
            let path = parts.next()?;
            Some((controllers.to_string(), path.to_string()))
        })
        .collect()
}

/// A directory under which a new group can be made (writable), or why not.
fn usable(dir: PathBuf) -> Option<PathBuf> {
    let probe = dir.join(format!("gaffer-probe-{}", process_tag()));
    std::fs::create_dir(&probe).ok()?;
    let _ = std::fs::remove_dir(&probe);
    Some(dir)
}

impl Hierarchy {
    /// Find the hierarchy gaffer can make groups in.
    pub fn detect() -> Result<Hierarchy, String> {
        let (v2, v1) = mounts();
        let own = own_groups();
        if let Some(mount) = v2 {
            let path = own
                .iter()
                .find(|(c, _)| c.is_empty())
                .map(|(_, p)| p.clone())
                .unwrap_or_default();
            let dir = mount.join(path.trim_start_matches('/'));
            let controllers =
                std::fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
            let has = |c: &str| controllers.split_whitespace().any(|x| x == c);
            if has("memory")
                && has("pids")
                && let Some(parent) = usable(dir)
            {
                return Ok(Hierarchy::V2 { parent });
            }
        }
        let v1_dir = |controller: &str| -> Option<PathBuf> {
            let mount = v1.iter().find(|(c, _)| c == controller).map(|(_, m)| m)?;
            let path = own
                .iter()
                .find(|(c, _)| c.split(',').any(|x| x == controller))
                .map(|(_, p)| p.clone())
                .unwrap_or_default();
            usable(mount.join(path.trim_start_matches('/')))
        };
        match (v1_dir("memory"), v1_dir("pids")) {
            (Some(memory), Some(pids)) => Ok(Hierarchy::V1 { memory, pids }),
            _ => Err(
                "no cgroup hierarchy with the memory and pids controllers that gaffer may make \
                 groups in (cgroup v2 with both delegated, or v1 memory and pids)"
                    .to_string(),
            ),
        }
    }
}

/// One command's group(s), removed (after killing what is left in them) when dropped.
#[derive(Debug)]
pub struct CommandGroup {
    dirs: Vec<PathBuf>,
    /// `cgroup.procs` of each group, for the child to put itself into before it execs.
    procs: Vec<CString>,
}

/// Puts the calling process into a command's group(s); owned, so that a child can use it after
/// fork.
#[derive(Debug, Clone)]
pub struct Joiner {
    procs: Vec<CString>,
}

impl Joiner {
    /// Put the calling process into the group(s). Called in the child between fork and exec: it
    /// only makes async-signal-safe system calls (open, write, close) and does not allocate.
    pub fn join(&self) -> std::io::Result<()> {
        for procs in &self.procs {
            // SAFETY: a NUL-terminated path; a one-byte buffer; the fd closed on every path.
            unsafe {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // "0" is the writing process itself, in v1 and v2.
                let written = libc::write(fd, b"0".as_ptr().cast(), 1);
                let error = std::io::Error::last_os_error();
                libc::close(fd);
                if written != 1 {
                    return Err(error);
                }
            }
        }
        Ok(())
    }
}

static GROUPS: AtomicU64 = AtomicU64::new(0);

/// What makes this process's group names its own: its pid and a random nonce. The pid alone
/// repeats across PID namespaces (every containerised gaffer is pid 1) and after a crash left a
/// group behind.
fn process_tag() -> &'static str {
    static TAG: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TAG.get_or_init(|| {
        format!(
            "{}-{}",
            std::process::id(),
            crate::store::owner::random_tag(6)
        )
    })
}

fn write(path: &Path, value: &str) -> Result<(), String> {
    std::fs::write(path, value).map_err(|e| format!("{}: {e}", path.display()))
}

impl CommandGroup {
    /// A new group with the limits.
    pub fn create(
        hierarchy: &Hierarchy,
        memory_bytes: u64,
        max_processes: u64,
    ) -> Result<CommandGroup, String> {
        let name = format!(
            "gaffer-{}-{}",
            process_tag(),
            GROUPS.fetch_add(1, Ordering::Relaxed)
        );
        let make = |parent: &Path| -> Result<PathBuf, String> {
            let dir = parent.join(&name);
            std::fs::create_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            Ok(dir)
        };
        let mut group = CommandGroup {
            dirs: Vec::new(),
            procs: Vec::new(),
        };
        match hierarchy {
            Hierarchy::V2 { parent } => {
                let dir = make(parent)?;
                group.dirs.push(dir.clone());
                write(&dir.join("memory.max"), &memory_bytes.to_string())?;
                // No swap either, where the machine has it: memory is memory.
                let _ = write(&dir.join("memory.swap.max"), "0");
                write(&dir.join("pids.max"), &max_processes.to_string())?;
            }
            Hierarchy::V1 { memory, pids } => {
                let memory_dir = make(memory)?;
                group.dirs.push(memory_dir.clone());
                write(
                    &memory_dir.join("memory.limit_in_bytes"),
                    &memory_bytes.to_string(),
                )?;
                let _ = write(
                    &memory_dir.join("memory.memsw.limit_in_bytes"),
                    &memory_bytes.to_string(),
                );
                let pids_dir = make(pids)?;
                group.dirs.push(pids_dir.clone());
                write(&pids_dir.join("pids.max"), &max_processes.to_string())?;
            }
        }
        for dir in &group.dirs {
            let procs = dir.join("cgroup.procs");
            group.procs.push(
                CString::new(procs.as_os_str().as_encoded_bytes())
                    .map_err(|_| format!("{}: a NUL in the path", procs.display()))?,
            );
        }
        Ok(group)
    }

    /// What a child calls between fork and exec to put itself into the group(s).
    pub fn joiner(&self) -> Joiner {
        Joiner {
            procs: self.procs.clone(),
        }
    }

    /// The processes still in the group.
    fn members(&self) -> Vec<i32> {
        self.dirs
            .iter()
            .flat_map(|dir| {
                std::fs::read_to_string(dir.join("cgroup.procs"))
                    .unwrap_or_default()
                    .lines()
                    .filter_map(|l| l.trim().parse().ok())
                    .collect::<Vec<i32>>()
            })
            .collect()
    }

    /// Kill every process in the group, until none is left (or two seconds have passed).
    pub fn kill_all(&self) {
        for dir in &self.dirs {
            // v2 (5.14 and later) kills the whole group in one write.
            let _ = std::fs::write(dir.join("cgroup.kill"), "1");
        }
        // Killed processes leave the group within microseconds to milliseconds: poll from
        // 100 µs, doubling to 10 ms, for two seconds at most.
        let started = std::time::Instant::now();
        let mut pause = std::time::Duration::from_micros(100);
        while started.elapsed() < std::time::Duration::from_secs(2) {
            let members = self.members();
            if members.is_empty() {
                return;
            }
            for pid in members {
                // SAFETY: kill(2) on a pid read from the group; no memory involved.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(std::time::Duration::from_millis(10));
        }
    }

    /// Whether the memory cap stopped a process of the group (the kernel's OOM killer).
    pub fn ran_out_of_memory(&self) -> bool {
        // `oom_kill N` in v2's memory.events and in v1's memory.oom_control.
        self.dirs.iter().any(|dir| {
            ["memory.events", "memory.oom_control"].iter().any(|file| {
                std::fs::read_to_string(dir.join(file))
                    .unwrap_or_default()
                    .lines()
                    .any(|l| l.starts_with("oom_kill ") && !l.ends_with(" 0"))
            })
        })
    }

    /// Whether the process cap refused a fork.
    pub fn hit_process_cap(&self) -> bool {
        self.dirs.iter().any(|dir| {
            std::fs::read_to_string(dir.join("pids.events"))
                .unwrap_or_default()
                .lines()
                .any(|l| l.starts_with("max ") && !l.ends_with(" 0"))
        })
    }
}

impl Drop for CommandGroup {
    fn drop(&mut self) {
        self.kill_all();
        for dir in &self.dirs {
            if let Err(e) = std::fs::remove_dir(dir) {
                tracing::warn!(group = %dir.display(), error = %e, "cannot remove a command's cgroup");
            }
        }
    }
}

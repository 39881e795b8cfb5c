//! Process identity: the `host:pid` written on every row a process makes and on every lease
//! it holds, and whether such an owner still runs (what crash recovery asks).

use std::path::Path;

/// The inode of the machine's initial PID namespace (`PROC_PID_INIT_INO`, fixed by the kernel).
const INITIAL_PID_NAMESPACE: &str = "pid:[4026531836]";

/// `host:pid` of this process: the owner written on its rows. A process in a PID namespace of
/// its own (a container) is `host~<namespace>:pid`, since pids repeat across namespaces and
/// two such processes on one host would otherwise be one owner.
pub fn this_process_owner() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string());
    let namespace = std::fs::read_link("/proc/self/ns/pid")
        .ok()
        .map(|link| link.to_string_lossy().into_owned())
        .filter(|ns| ns != INITIAL_PID_NAMESPACE)
        .and_then(|ns| {
            ns.strip_prefix("pid:[")
                .and_then(|n| n.strip_suffix(']'))
                .map(str::to_string)
        });
    match namespace {
        Some(ns) => format!("{host}~{ns}:{}", std::process::id()),
        None => format!("{host}:{}", std::process::id()),
    }
}

/// Whether the owner of a row still runs: a process on another host, or in another PID
/// namespace, is assumed alive (only its lease can tell: see [`crate::store::HostRecord`]); on
/// this host and namespace, its pid must exist.
pub fn owner_is_alive(owner: &str) -> bool {
    let this = this_process_owner();
    let (this_host, _) = this.rsplit_once(':').unwrap_or((this.as_str(), ""));
    match owner.rsplit_once(':') {
        Some((host, pid)) if host == this_host => pid
            .parse::<u32>()
            .is_ok_and(|pid| Path::new(&format!("/proc/{pid}")).exists()),
        _ => true,
    }
}

/// `bytes` random bytes as hex, to tell apart what pid and time cannot (runs in containers are
/// all pid 1 and may start in the same second). From `/dev/urandom`; the clock's nanoseconds
/// where it cannot be read (a tag, not a secret).
pub fn random_tag(bytes: usize) -> String {
    let mut tag = vec![0u8; bytes];
    let random = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut tag));
    if random.is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
            .to_le_bytes();
        for (byte, source) in tag.iter_mut().zip(nanos.iter().cycle()) {
            *byte = *source;
        }
    }
    hex::encode(tag)
}

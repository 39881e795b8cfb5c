//! Process identity: the `host:pid` written on every row a process makes and on every lease
//! it holds, and whether such an owner still runs (what crash recovery asks).

use std::path::Path;

/// `host:pid` of this process: the owner written on its rows.
pub fn this_process_owner() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string());
    format!("{host}:{}", std::process::id())
}

/// Whether the owner of a row still runs: a process on another host is assumed alive (only
/// its own host can tell); on this host, its pid must exist.
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

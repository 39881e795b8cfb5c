//! What the sandbox of an agent's commands allows: `[sandbox]` of `gaffer.toml`, resolved.
//! The defaults are the safe ones: no network, nothing of the host but its system directories
//! (read-only), bounded memory, processes and file sizes.

use std::path::PathBuf;

use super::proxy::ProxyPolicy;
use crate::config::Invalid;
use crate::config::schema::SandboxSection;

const MIB: u64 = 1024 * 1024;
/// Memory of all the processes of one command together.
pub const DEFAULT_MEMORY_MIB: u64 = 2048;
/// Processes (and threads) of one command at once: a fork bomb stops here.
pub const DEFAULT_MAX_PROCESSES: u64 = 512;
/// The largest file one command may write.
pub const DEFAULT_MAX_FILE_MIB: u64 = 1024;

/// A host directory shown inside at its own path for the commands of one attempt (its private
/// git dir, read-write; the main repository's objects, read-only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub path: PathBuf,
    pub writable: bool,
}

/// The sandbox every command of an attempt runs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxPolicy {
    /// Whether commands share the host's network (off: their namespace has its own loopback
    /// only, and the proxy below is the one way out).
    pub network: bool,
    /// Where commands may go through gaffer's HTTPS proxy while the network is off (empty: no
    /// proxy).
    pub proxy: ProxyPolicy,
    /// Host directories commands may read (toolchains, caches), mounted read-only at the same
    /// path; `~/` is the home directory of the user running gaffer.
    pub read_only: Vec<PathBuf>,
    /// Host directories shown at their own path as copy-on-write layers: readable as they are,
    /// writable, with the writes kept in the attempt's scratch and thrown away with it.
    pub caches: Vec<PathBuf>,
    /// Variables set inside (after everything else; `~/` at the start of a value is the home
    /// directory of the user running gaffer), such as `CARGO_HOME` for a read-only toolchain.
    pub env: Vec<(String, String)>,
    /// Memory cap of one command's processes together, in bytes.
    pub memory_bytes: u64,
    /// Processes and threads of one command at once.
    pub max_processes: u64,
    /// The largest file a command may write, in bytes.
    pub max_file_bytes: u64,
}

impl Default for SandboxPolicy {
    fn default() -> Self {
        SandboxPolicy {
            network: false,
            proxy: ProxyPolicy::default(),
            read_only: Vec::new(),
            caches: Vec::new(),
            env: Vec::new(),
            memory_bytes: DEFAULT_MEMORY_MIB * MIB,
            max_processes: DEFAULT_MAX_PROCESSES,
            max_file_bytes: DEFAULT_MAX_FILE_MIB * MIB,
        }
    }
}

/// `~/x` as a path under the home directory; other paths as they are.
pub fn expand_home(dir: &str) -> PathBuf {
    match (dir.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(dir),
    }
}

impl SandboxPolicy {
    /// The policy of `[sandbox]`; zero limits are refused, and a read-only path must be absolute
    /// (or under `~/`).
    pub fn from_config(section: &SandboxSection) -> Result<SandboxPolicy, Invalid> {
        let positive = |key: &str, value: Option<u64>, default: u64| -> Result<u64, Invalid> {
            Invalid::at_least(
                format!("sandbox.{key}"),
                value.unwrap_or(default),
                1,
                "a limit of zero would stop every command",
            )
        };
        let absolute = |key: &str, dirs: &Option<Vec<String>>| -> Result<Vec<PathBuf>, Invalid> {
            let mut paths = Vec::new();
            for (i, dir) in dirs.iter().flatten().enumerate() {
                let path = expand_home(dir);
                if !path.is_absolute() {
                    return Err(Invalid::new(
                        format!("sandbox.{key}[{i}]"),
                        format!("`{dir}` is not an absolute path (or one under `~/`)"),
                    ));
                }
                if key == "caches" && path.to_string_lossy().contains([',', ':']) {
                    return Err(Invalid::new(
                        format!("sandbox.{key}[{i}]"),
                        format!("`{dir}`: a cache path may not hold `,` or `:`"),
                    ));
                }
                paths.push(path);
            }
            Ok(paths)
        };
        let read_only = absolute("read_only", &section.read_only)?;
        let caches = absolute("caches", &section.caches)?;
        let env = section
            .env
            .iter()
            .flatten()
            .map(|(name, value)| {
                (
                    name.clone(),
                    expand_home(value).to_string_lossy().into_owned(),
                )
            })
            .collect();
        let network = section.network.unwrap_or(false);
        let allow_domains: Vec<String> = section
            .allow_domains
            .iter()
            .flatten()
            .map(|d| d.trim().to_ascii_lowercase())
            .collect();
        if let Some(i) = allow_domains.iter().position(|d| {
            d.trim_start_matches("*.")
                .trim_start_matches('.')
                .is_empty()
                || d.contains(['/', ':', ' '])
        }) {
            return Err(Invalid::new(
                format!("sandbox.allow_domains[{i}]"),
                format!(
                    "`{}` is not a domain (`pypi.org`, or `.crates.io` for it and its subdomains)",
                    allow_domains[i]
                ),
            ));
        }
        if network && !allow_domains.is_empty() {
            return Err(Invalid::new(
                "sandbox.allow_domains",
                "applies only while `network = false` (with the network on, commands reach \
                 everything); remove one of the two",
            ));
        }
        let mut allow_addresses = Vec::new();
        for (i, range) in section.allow_addresses.iter().flatten().enumerate() {
            let parsed = range
                .parse::<ipnet::IpNet>()
                .or_else(|_| range.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
            match parsed {
                Ok(net) => allow_addresses.push(net),
                Err(_) => {
                    return Err(Invalid::new(
                        format!("sandbox.allow_addresses[{i}]"),
                        format!("`{range}` is not an address or a range (`10.1.0.0/16`)"),
                    ));
                }
            }
        }
        Ok(SandboxPolicy {
            network,
            proxy: ProxyPolicy::https(allow_domains, allow_addresses),
            read_only,
            caches,
            env,
            memory_bytes: positive("memory_mib", section.memory_mib, DEFAULT_MEMORY_MIB)? * MIB,
            max_processes: positive(
                "max_processes",
                section.max_processes,
                DEFAULT_MAX_PROCESSES,
            )?,
            max_file_bytes: positive("max_file_mib", section.max_file_mib, DEFAULT_MAX_FILE_MIB)?
                * MIB,
        })
    }
}

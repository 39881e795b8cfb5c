//! The sandbox's last step, run inside the namespaces bubblewrap made (the `gaffer-sandbox`
//! binary): limits on file size and core dumps, Landlock (writes only beneath the directories it
//! is given), the seccomp filters, then the command itself. A step that fails ends it with exit
//! status 125 and says which: a command never runs less confined than asked.
//!
//! With `--proxy-socket PATH`, a relay listens on `127.0.0.1:3128` inside the sandbox's network
//! namespace and passes each connection to gaffer's proxy on that Unix socket
//! ([`super::proxy`]); with `--model-socket PATH`, another on `127.0.0.1:3129` passes an
//! external agent's model calls to gaffer's metering proxy. They live as long as the sandbox.
//!
//! Usage: `gaffer-sandbox [--write DIR]... [--max-file BYTES] [--proxy-socket PATH]
//! [--model-socket PATH] -- PROGRAM [ARG]...`

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use landlock::{
    ABI, AccessFs, CompatLevel, Compatible, Ruleset, RulesetAttr, RulesetCreatedAttr,
    RulesetStatus, path_beneath_rules,
};

/// The exit status of a sandbox that could not be set up.
pub const SETUP_FAILED: i32 = 125;

/// Where the relay to gaffer's proxy listens inside the sandbox.
pub const PROXY_PORT: u16 = 3128;

/// Where the relay to gaffer's metering proxy (model calls) listens inside the sandbox.
pub const MODEL_PORT: u16 = 3129;

/// The Landlock ABI whose write rights are handled (V5 to V8 share one write set).
const LANDLOCK_ABI: ABI = ABI::V8;

/// What the init was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitArgs {
    pub writable: Vec<PathBuf>,
    pub max_file_bytes: Option<u64>,
    pub proxy_socket: Option<PathBuf>,
    pub model_socket: Option<PathBuf>,
    pub program: OsString,
    pub args: Vec<OsString>,
}

impl InitArgs {
    /// The arguments that ask for this (what the host passes).
    pub fn to_args(&self) -> Vec<OsString> {
        let mut out = Vec::new();
        for dir in &self.writable {
            out.push("--write".into());
            out.push(dir.clone().into_os_string());
        }
        if let Some(bytes) = self.max_file_bytes {
            out.push("--max-file".into());
            out.push(bytes.to_string().into());
        }
        if let Some(socket) = &self.proxy_socket {
            out.push("--proxy-socket".into());
            out.push(socket.clone().into_os_string());
        }
        if let Some(socket) = &self.model_socket {
            out.push("--model-socket".into());
            out.push(socket.clone().into_os_string());
        }
        out.push("--".into());
        out.push(self.program.clone());
        out.extend(self.args.iter().cloned());
        out
    }

    /// Parse the arguments (without the program name).
    pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<InitArgs, String> {
        let mut args = args.into_iter();
        let mut writable = Vec::new();
        let mut max_file_bytes = None;
        let mut proxy_socket = None;
        let mut model_socket = None;
        loop {
            let Some(arg) = args.next() else {
                return Err("no command after `--`".to_string());
            };
            match arg.to_str() {
                Some("--write") => writable.push(PathBuf::from(
                    args.next().ok_or("--write needs a directory")?,
                )),
                Some("--max-file") => {
                    let value = args.next().ok_or("--max-file needs a number")?;
                    max_file_bytes = Some(
                        value
                            .to_str()
                            .and_then(|v| v.parse().ok())
                            .ok_or("--max-file needs a number")?,
                    );
                }
                Some("--proxy-socket") => {
                    proxy_socket = Some(PathBuf::from(
                        args.next().ok_or("--proxy-socket needs a path")?,
                    ))
                }
                Some("--model-socket") => {
                    model_socket = Some(PathBuf::from(
                        args.next().ok_or("--model-socket needs a path")?,
                    ))
                }
                Some("--") => break,
                _ => return Err(format!("unexpected argument {arg:?}")),
            }
        }
        let program = args.next().ok_or("no command after `--`")?;
        Ok(InitArgs {
            writable,
            max_file_bytes,
            proxy_socket,
            model_socket,
            program,
            args: args.collect(),
        })
    }
}

fn set_limit(resource: libc::__rlimit_resource_t, value: u64) -> Result<(), String> {
    let limit = libc::rlimit {
        rlim_cur: value,
        rlim_max: value,
    };
    // SAFETY: setrlimit with a valid pointer to an initialised struct.
    if unsafe { libc::setrlimit(resource, &limit) } == 0 {
        Ok(())
    } else {
        Err(format!("setrlimit: {}", std::io::Error::last_os_error()))
    }
}

/// Confine writes to beneath `writable` (reads and execution are left to the mount view).
fn restrict_writes(writable: &[PathBuf]) -> Result<(), String> {
    let access = AccessFs::from_write(LANDLOCK_ABI);
    let status = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(access)
        .and_then(Ruleset::create)
        .and_then(|created| created.add_rules(path_beneath_rules(writable, access)))
        .and_then(|created| created.restrict_self())
        .map_err(|e| format!("landlock: {e}"))?;
    if status.ruleset == RulesetStatus::NotEnforced {
        return Err("landlock: the kernel does not enforce it".to_string());
    }
    Ok(())
}

/// Whether this kernel enforces Landlock (probed once, then cached).
///
/// The probe restricts a throwaway thread (Landlock confines only the calling thread), so gaffer
/// itself stays unrestricted.
pub fn landlock_available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        std::thread::Builder::new()
            .name("landlock-probe".to_string())
            .spawn(|| restrict_writes(&[]).is_ok())
            .ok()
            .and_then(|probe| probe.join().ok())
            .unwrap_or(false)
    })
}

/// Set everything up and run the command; returns only on failure (the process's exit status).
pub fn run(args: InitArgs) -> i32 {
    let fail = |step: String| {
        eprintln!("gaffer-sandbox: {step}; the command did not run");
        SETUP_FAILED
    };
    if let Err(e) = set_limit(libc::RLIMIT_CORE, 0) {
        return fail(e);
    }
    if let Some(bytes) = args.max_file_bytes
        && let Err(e) = set_limit(libc::RLIMIT_FSIZE, bytes)
    {
        return fail(e);
    }
    if let Err(e) = restrict_writes(&args.writable) {
        return fail(e);
    }
    let filters = match super::seccomp::filters() {
        Ok(filters) => filters,
        Err(e) => return fail(e),
    };
    if let Err(e) = super::seccomp::install(&filters) {
        return fail(e);
    }
    let relays: Vec<(u16, PathBuf)> = [
        (PROXY_PORT, args.proxy_socket.clone()),
        (MODEL_PORT, args.model_socket.clone()),
    ]
    .into_iter()
    .filter_map(|(port, socket)| socket.map(|s| (port, s)))
    .collect();
    if !relays.is_empty()
        && let Err(e) = start_relays(&relays)
    {
        return fail(e);
    }
    let error = std::process::Command::new(&args.program)
        .args(&args.args)
        .exec();
    // exec returns only on failure, like a shell: 127 when the program is not there.
    eprintln!("gaffer-sandbox: cannot run {:?}: {error}", args.program);
    if error.kind() == std::io::ErrorKind::NotFound {
        127
    } else {
        126
    }
}

/// Listen on each `127.0.0.1:<port>` (before the command starts, so its first connection
/// finds the port open), then fork: the child relays each port's connections to its socket
/// until the sandbox ends, the parent goes on to execute the command.
fn start_relays(relays: &[(u16, PathBuf)]) -> Result<(), String> {
    let mut listeners = Vec::new();
    for (port, socket) in relays {
        let listener = std::net::TcpListener::bind(("127.0.0.1", *port))
            .map_err(|e| format!("cannot listen on 127.0.0.1:{port} for a relay: {e}"))?;
        listeners.push((listener, socket.clone()));
    }
    // SAFETY: this process has one thread; the child only uses std's I/O and threads.
    match unsafe { libc::fork() } {
        -1 => Err(format!("fork: {}", std::io::Error::last_os_error())),
        0 => {
            let threads: Vec<_> = listeners
                .into_iter()
                .map(|(listener, socket)| {
                    std::thread::spawn(move || {
                        for client in listener.incoming().flatten() {
                            let socket = socket.clone();
                            std::thread::spawn(move || relay(client, &socket));
                        }
                    })
                })
                .collect();
            for thread in threads {
                let _ = thread.join();
            }
            std::process::exit(0)
        }
        _ => Ok(()),
    }
}

/// Copy one connection both ways between the sandbox's client and gaffer's proxy.
fn relay(client: std::net::TcpStream, socket: &std::path::Path) {
    // Streamed answers come in small writes: pass each on at once.
    let _ = client.set_nodelay(true);
    let Ok(upstream) = std::os::unix::net::UnixStream::connect(socket) else {
        return;
    };
    let (Ok(mut client_in), Ok(mut upstream_out)) = (client.try_clone(), upstream.try_clone())
    else {
        return;
    };
    let forward = std::thread::spawn(move || {
        let _ = std::io::copy(&mut client_in, &mut upstream_out);
        let _ = upstream_out.shutdown(std::net::Shutdown::Write);
    });
    let (mut upstream_in, mut client_out) = (upstream, client);
    let _ = std::io::copy(&mut upstream_in, &mut client_out);
    let _ = client_out.shutdown(std::net::Shutdown::Write);
    let _ = forward.join();
}

/// The `gaffer-sandbox` binary's main: `overlay …` (see [`super::overlay`]), else the init.
pub fn main() -> i32 {
    let mut args = std::env::args_os().skip(1).peekable();
    if args.peek().is_some_and(|a| a == "overlay") {
        return super::overlay::run(args.skip(1));
    }
    match InitArgs::parse(args) {
        Ok(args) => run(args),
        Err(e) => {
            eprintln!(
                "gaffer-sandbox: {e}\nusage: gaffer-sandbox [--write DIR]... [--max-file BYTES] [--proxy-socket PATH] -- PROGRAM [ARG]..."
            );
            SETUP_FAILED
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_round_trip() {
        let args = InitArgs {
            writable: vec!["/w".into(), "/tmp".into()],
            max_file_bytes: Some(1024),
            proxy_socket: Some("/run/gaffer/proxy.sock".into()),
            model_socket: Some("/run/gaffer/model.sock".into()),
            program: "/bin/sh".into(),
            args: vec!["-c".into(), "echo --write".into()],
        };
        assert_eq!(InitArgs::parse(args.to_args()).unwrap(), args);
        assert!(InitArgs::parse(vec!["--write".into()]).is_err());
        assert!(InitArgs::parse(vec!["--".into()]).is_err());
        assert!(InitArgs::parse(vec!["--frob".into()]).is_err());
    }
}

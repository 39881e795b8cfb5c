//! The sandbox's last step, run inside the namespaces bubblewrap made (the `gaffer-sandbox`
//! binary): limits on file size and core dumps, Landlock (writes only beneath the directories it
//! is given), the seccomp filters, then the command itself. A step that fails ends it with exit
//! status 125 and says which: a command never runs less confined than asked.
//!
//! Usage: `gaffer-sandbox [--write DIR]... [--max-file BYTES] -- PROGRAM [ARG]...`

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use landlock::{
    ABI, AccessFs, CompatLevel, Compatible, Ruleset, RulesetAttr, RulesetCreatedAttr,
    RulesetStatus, path_beneath_rules,
};

/// The exit status of a sandbox that could not be set up.
pub const SETUP_FAILED: i32 = 125;

/// The Landlock ABI whose write rights are handled (V5 to V8 share one write set).
const LANDLOCK_ABI: ABI = ABI::V8;

/// What the init was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitArgs {
    pub writable: Vec<PathBuf>,
    pub max_file_bytes: Option<u64>,
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
                Some("--") => break,
                _ => return Err(format!("unexpected argument {arg:?}")),
            }
        }
        let program = args.next().ok_or("no command after `--`")?;
        Ok(InitArgs {
            writable,
            max_file_bytes,
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

/// The `gaffer-sandbox` binary's main.
pub fn main() -> i32 {
    match InitArgs::parse(std::env::args_os().skip(1)) {
        Ok(args) => run(args),
        Err(e) => {
            eprintln!(
                "gaffer-sandbox: {e}\nusage: gaffer-sandbox [--write DIR]... [--max-file BYTES] -- PROGRAM [ARG]..."
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
            program: "/bin/sh".into(),
            args: vec!["-c".into(), "echo --write".into()],
        };
        assert_eq!(InitArgs::parse(args.to_args()).unwrap(), args);
        assert!(InitArgs::parse(vec!["--write".into()]).is_err());
        assert!(InitArgs::parse(vec!["--".into()]).is_err());
        assert!(InitArgs::parse(vec!["--frob".into()]).is_err());
    }
}

//! Per-attempt copy-on-write layers over the caches a project declares (`[sandbox] caches`):
//! inside the sandbox a cache reads as it is on the host and takes writes, which land in the
//! attempt's scratch and go with it, so one attempt cannot poison the next and the host's
//! cache never changes.
//!
//! bubblewrap 0.8 (Debian's) has no overlay option, and a mount made inside its namespaces is
//! refused, so `gaffer-sandbox overlay` runs first: it makes a user and mount namespace of its
//! own (gaffer's uid as root there, nothing else mapped), mounts an overlay at each cache's path
//! (the cache as the lower layer, the scratch as the upper), then executes bubblewrap, which
//! binds the overlaid paths into the sandbox like any other. Files of the cache that gaffer's
//! user does not own cannot be copied up (their owner is not mapped): such a cache stays
//! read-only in practice.
//!
//! Usage: `gaffer-sandbox overlay --layer LOWER:UPPER:WORK... -- BWRAP [ARG]...`

use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use super::init::SETUP_FAILED;

/// One cache and where its writes go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// The cache on the host (and its path inside).
    pub lower: PathBuf,
    /// The attempt's writes.
    pub upper: PathBuf,
    /// overlayfs's work directory (same file system as `upper`).
    pub work: PathBuf,
}

impl Layer {
    /// The layers of `caches` with their writes under `scratch` (made here).
    pub fn under(scratch: &Path, caches: &[PathBuf]) -> std::io::Result<Vec<Layer>> {
        let mut layers = Vec::new();
        for (i, cache) in caches.iter().enumerate().filter(|(_, c)| c.is_dir()) {
            let base = scratch.join("caches").join(i.to_string());
            let (upper, work) = (base.join("upper"), base.join("work"));
            std::fs::create_dir_all(&upper)?;
            std::fs::create_dir_all(&work)?;
            layers.push(Layer {
                lower: cache.clone(),
                upper,
                work,
            });
        }
        Ok(layers)
    }
}

/// The helper's command line: `overlay --layer L:U:W... -- bwrap ARGS...` (after the program).
pub fn args(layers: &[Layer], bwrap: &Path, bwrap_args: Vec<OsString>) -> Vec<OsString> {
    let mut out: Vec<OsString> = vec!["overlay".into()];
    for layer in layers {
        let mut spec = layer.lower.clone().into_os_string();
        for part in [&layer.upper, &layer.work] {
            spec.push(":");
            spec.push(part);
        }
        out.push("--layer".into());
        out.push(spec);
    }
    out.push("--".into());
    out.push(bwrap.as_os_str().to_os_string());
    out.extend(bwrap_args);
    out
}

/// Parse the helper's arguments (after `overlay`).
fn parse(args: impl IntoIterator<Item = OsString>) -> Result<(Vec<Layer>, Vec<OsString>), String> {
    let mut args = args.into_iter();
    let mut layers = Vec::new();
    loop {
        match args.next() {
            Some(arg) if arg == "--layer" => {
                let spec = args.next().ok_or("--layer needs LOWER:UPPER:WORK")?;
                let spec = spec.to_str().ok_or("--layer is not UTF-8")?;
                let parts: Vec<&str> = spec.split(':').collect();
                let [lower, upper, work] = parts[..] else {
                    return Err(format!("--layer {spec}: not LOWER:UPPER:WORK"));
                };
                layers.push(Layer {
                    lower: lower.into(),
                    upper: upper.into(),
                    work: work.into(),
                });
            }
            Some(arg) if arg == "--" => break,
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    let rest: Vec<OsString> = args.collect();
    if rest.is_empty() {
        return Err("no program after `--`".to_string());
    }
    Ok((layers, rest))
}

fn c_path(path: &Path) -> Result<CString, String> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| format!("{}: a NUL", path.display()))
}

fn os_error(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

/// A user and mount namespace of this process's own, with this uid and gid as root in it.
fn own_namespaces() -> Result<(), String> {
    // SAFETY: plain system calls on this process; no memory is shared with them.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    if unsafe { libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS) } != 0 {
        return Err(os_error("unshare(user, mount)"));
    }
    let write =
        |file: &str, text: String| std::fs::write(file, text).map_err(|e| format!("{file}: {e}"));
    write("/proc/self/setgroups", "deny".to_string())?;
    write("/proc/self/uid_map", format!("0 {uid} 1"))?;
    write("/proc/self/gid_map", format!("0 {gid} 1"))?;
    // Nothing mounted here propagates back to the host.
    let root = c_path(Path::new("/"))?;
    // SAFETY: valid NUL-terminated strings; null for the unused arguments.
    if unsafe {
        libc::mount(
            std::ptr::null(),
            root.as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )
    } != 0
    {
        return Err(os_error("making mounts private"));
    }
    Ok(())
}

fn mount_layer(layer: &Layer) -> Result<(), String> {
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        layer.lower.display(),
        layer.upper.display(),
        layer.work.display()
    );
    if [&layer.lower, &layer.upper, &layer.work]
        .iter()
        .any(|p| p.as_os_str().as_bytes().contains(&b','))
    {
        return Err(format!("{options}: a path with a comma"));
    }
    let (source, target, kind) = (
        c_path(Path::new("overlay"))?,
        c_path(&layer.lower)?,
        c_path(Path::new("overlay"))?,
    );
    let data = CString::new(options.clone()).map_err(|_| "a NUL".to_string())?;
    // SAFETY: valid NUL-terminated strings that outlive the call.
    if unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            kind.as_ptr(),
            0,
            data.as_ptr().cast(),
        )
    } != 0
    {
        return Err(os_error(&format!(
            "mounting an overlay on {}",
            layer.lower.display()
        )));
    }
    Ok(())
}

/// `gaffer-sandbox overlay …`: the namespaces, the overlays, then bubblewrap. Returns only on
/// failure (the exit status).
pub fn run(args: impl IntoIterator<Item = OsString>) -> i32 {
    let fail = |step: String| {
        eprintln!("gaffer-sandbox overlay: {step}; the command did not run");
        SETUP_FAILED
    };
    let (layers, program) = match parse(args) {
        Ok(parsed) => parsed,
        Err(e) => return fail(e),
    };
    if let Err(e) = own_namespaces() {
        return fail(e);
    }
    for layer in &layers {
        if let Err(e) = mount_layer(layer) {
            return fail(e);
        }
    }
    let error = std::process::Command::new(&program[0])
        .args(&program[1..])
        .exec();
    fail(format!("cannot run {:?}: {error}", program[0]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_round_trip() {
        let layers = vec![Layer {
            lower: "/home/u/.cargo/registry".into(),
            upper: "/tmp/s/caches/0/upper".into(),
            work: "/tmp/s/caches/0/work".into(),
        }];
        let args = args(
            &layers,
            Path::new("/usr/bin/bwrap"),
            vec!["--die-with-parent".into()],
        );
        assert_eq!(args[0], "overlay");
        let (parsed, program) = parse(args.into_iter().skip(1)).unwrap();
        assert_eq!(parsed, layers);
        assert_eq!(program, ["/usr/bin/bwrap", "--die-with-parent"]);
        assert!(
            parse(vec![
                "--layer".into(),
                "a:b".into(),
                "--".into(),
                "x".into()
            ])
            .is_err()
        );
        assert!(parse(vec!["--".into()]).is_err());
    }
}

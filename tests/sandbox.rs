//! The sandbox of the agent's commands, layer by layer, against `run_command`: who the command
//! runs as, what it sees of the machine, what it may write, whether it reaches the network or
//! the host's sockets, which system calls it may make, and that its limits hold and nothing it
//! starts outlives it. Each protection is checked against a control: the same command
//! unconfined does what the sandbox stops (so a test proves the sandbox, not a typo).
//!
//! These tests fail, never skip, where the machine cannot sandbox: CI must have every layer.

use std::path::{Path, PathBuf};
use std::time::Duration;

use gaffer::sandbox::proxy::ProxyPolicy;
use gaffer::sandbox::{
    CommandLimits, CommandOutput, Confinement, SandboxPolicy, probe, run_command,
};

fn sandboxed() -> CommandLimits {
    CommandLimits {
        timeout: Duration::from_secs(60),
        ..CommandLimits::default()
    }
}

fn unconfined() -> CommandLimits {
    CommandLimits {
        sandbox: None,
        ..sandboxed()
    }
}

fn with_policy(policy: SandboxPolicy) -> CommandLimits {
    CommandLimits {
        sandbox: Some(policy),
        ..sandboxed()
    }
}

async fn run(dir: &Path, command: &str, limits: &CommandLimits) -> CommandOutput {
    let out = run_command(dir, command, limits)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    println!("$ {command}\n{}(exit {:?})", out.output, out.exit_code);
    out
}

/// A directory that is not the worktree, nor under `/tmp` (the jail has its own `/tmp`, so a
/// file under the host's would be hidden for that reason alone): the build's target directory.
fn outside() -> tempfile::TempDir {
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
    tempfile::tempdir_in(target).unwrap()
}

#[test]
fn this_machine_can_sandbox() {
    if let Err(e) = probe() {
        panic!("{e}");
    }
    if let Err(e) = gaffer::sandbox::probe_overlay() {
        panic!("{e}");
    }
}

#[tokio::test]
async fn commands_run_as_an_unprivileged_user_without_capabilities() {
    let work = tempfile::tempdir().unwrap();
    let command = "id -u; grep -E '^(CapEff|CapPrm|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status";
    let out = run(work.path(), command, &sandboxed()).await;
    assert_eq!(out.confinement, Confinement::Sandboxed);
    assert_eq!(out.exit_code, Some(0));
    let lines: Vec<&str> = out.output.lines().collect();
    assert_eq!(lines[0], "1000");
    for field in ["CapEff", "CapPrm", "CapBnd"] {
        let line = lines.iter().find(|l| l.starts_with(field)).unwrap();
        assert!(line.ends_with("0000000000000000"), "{line}");
    }
    assert!(out.output.contains("NoNewPrivs:\t1"), "{}", out.output);
    assert!(out.output.contains("Seccomp:\t2"), "{}", out.output);

    let control = run(work.path(), "id -u", &unconfined()).await;
    assert_eq!(control.confinement, Confinement::Unconfined);
    assert_ne!(control.output.trim(), "1000");
}

#[tokio::test]
async fn no_process_of_the_host_is_visible_and_no_environment_of_gaffer() {
    // cargo gives the test binary these; gaffer's own environment must not be readable.
    let marker = format!(
        "CARGO_PKG_NAME={}",
        std::env::var("CARGO_PKG_NAME").unwrap()
    );
    let work = tempfile::tempdir().unwrap();
    let command = "for p in /proc/[0-9]*; do echo \"pid ${p#/proc/}\"; tr '\\0' '\\n' < $p/environ 2>/dev/null; done; tr '\\0' '\\n' < /proc/$PPID/environ";
    let out = run(work.path(), command, &sandboxed()).await;
    let pids = out.output.lines().filter(|l| l.starts_with("pid ")).count();
    assert!(pids <= 4, "{pids} processes visible:\n{}", out.output);
    assert!(!out.output.contains(&marker), "{}", out.output);
    let own = format!("pid {}\n", std::process::id());
    assert!(!out.output.contains(&own) || pids <= 4);

    let control = run(work.path(), command, &unconfined()).await;
    assert!(
        control.output.contains(&marker),
        "the control saw no parent environment"
    );
}

#[tokio::test]
async fn the_hosts_files_are_not_there_and_writes_stay_in_the_worktree() {
    let work = tempfile::tempdir().unwrap();
    let secret_dir = outside();
    let secret = secret_dir.path().join("secret.txt");
    std::fs::write(&secret, "CANARY-FILE-7f3a\n").unwrap();
    let planted = secret_dir.path().join("planted.txt");
    let home = std::env::var("HOME").unwrap();
    let command = format!(
        "cat '{}'; echo x > '{}'; ls -A '{home}' | head -n 3; echo \"home=$HOME\"; \
         echo w > inside.txt && echo wrote-inside; echo h > \"$HOME/h\" && echo wrote-home; \
         echo t > /tmp/t && echo wrote-tmp; ls -A /root 2>&1 | head -n 3",
        secret.display(),
        planted.display()
    );
    let out = run(work.path(), &command, &sandboxed()).await;
    assert!(!out.output.contains("CANARY-FILE-7f3a"), "{}", out.output);
    assert!(!planted.exists(), "wrote outside the worktree");
    assert!(out.output.contains("home=/home/agent"), "{}", out.output);
    for wrote in ["wrote-inside", "wrote-home", "wrote-tmp"] {
        assert!(out.output.contains(wrote), "{wrote}: {}", out.output);
    }
    assert_eq!(
        std::fs::read_to_string(work.path().join("inside.txt")).unwrap(),
        "w\n"
    );
    // The system directories are there, read-only (no control: it would write to the host's).
    let usr = run(
        work.path(),
        "touch /usr/gaffer-x || echo usr-refused",
        &sandboxed(),
    )
    .await;
    assert!(usr.output.contains("usr-refused"), "{}", usr.output);
    // Not a single device but the harmless ones.
    let devices = run(work.path(), "ls /dev | sort | tr '\\n' ' '", &sandboxed()).await;
    for name in devices.output.split_whitespace() {
        assert!(
            [
                "console", "core", "fd", "full", "mqueue", "null", "ptmx", "pts", "random", "shm",
                "stderr", "stdin", "stdout", "tty", "urandom", "zero"
            ]
            .contains(&name),
            "/dev/{name} is visible: {}",
            devices.output
        );
    }

    let control = run(work.path(), &command, &unconfined()).await;
    assert!(control.output.contains("CANARY-FILE-7f3a"));
    assert!(planted.exists());
}

#[tokio::test]
async fn the_scratch_home_lasts_for_an_attempt_and_no_longer() {
    let work = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let attempt = CommandLimits {
        scratch: Some(scratch.path().to_path_buf()),
        ..sandboxed()
    };
    run(work.path(), "echo kept > ~/note; echo t > /tmp/t", &attempt).await;
    let again = run(work.path(), "cat ~/note /tmp/t", &attempt).await;
    assert_eq!(again.output, "kept\nt\n");
    assert_eq!(
        std::fs::read_to_string(scratch.path().join("home/note")).unwrap(),
        "kept\n"
    );
    // Without a shared scratch every command starts from an empty home.
    run(work.path(), "echo kept > ~/note", &sandboxed()).await;
    let fresh = run(work.path(), "cat ~/note", &sandboxed()).await;
    assert_ne!(fresh.exit_code, Some(0));
}

#[tokio::test]
async fn the_network_is_off_and_the_hosts_sockets_unreachable() {
    let work = tempfile::tempdir().unwrap();
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = tcp.local_addr().unwrap().port();
    let abstract_name = format!("gaffer-sandbox-test-{}", std::process::id());
    let unix = {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(&abstract_name).unwrap();
        std::os::unix::net::UnixListener::bind_addr(&addr).unwrap()
    };
    let script = format!(
        "import socket\n\
         for label, family, addr in [('tcp', socket.AF_INET, ('127.0.0.1', {port})), \
         ('unix', socket.AF_UNIX, '\\0{abstract_name}')]:\n    \
         s = socket.socket(family)\n    s.settimeout(2)\n    \
         try:\n        s.connect(addr); print(label, 'connected')\n    \
         except OSError as e:\n        print(label, 'refused', e)\n\
         print(sorted(n for _, n in socket.if_nameindex()))\n"
    );
    std::fs::write(work.path().join("net.py"), script).unwrap();
    let out = run(work.path(), "python3 net.py", &sandboxed()).await;
    assert_eq!(out.exit_code, Some(0), "{}", out.output);
    assert!(out.output.contains("tcp refused"), "{}", out.output);
    assert!(out.output.contains("unix refused"), "{}", out.output);
    assert!(out.output.contains("['lo']"), "{}", out.output);

    let control = run(work.path(), "python3 net.py", &unconfined()).await;
    assert!(
        control.output.contains("tcp connected"),
        "{}",
        control.output
    );
    assert!(
        control.output.contains("unix connected"),
        "{}",
        control.output
    );
    drop((tcp, unix));

    // The policy's opt-in shares the host's network.
    let open = with_policy(SandboxPolicy {
        network: true,
        ..SandboxPolicy::default()
    });
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = tcp.local_addr().unwrap().port();
    let command = format!(
        "python3 -c \"import socket; socket.create_connection(('127.0.0.1', {port}), 2); print('connected')\""
    );
    let out = run(work.path(), &command, &open).await;
    assert!(out.output.contains("connected"), "{}", out.output);
}

#[tokio::test]
async fn mounts_new_namespaces_and_tracing_are_refused() {
    let work = tempfile::tempdir().unwrap();
    let script = "import ctypes, os\n\
        libc = ctypes.CDLL(None, use_errno=True)\n\
        def show(name, result):\n    print(name, 'ok' if result == 0 else 'refused', os.strerror(ctypes.get_errno()) if result != 0 else '')\n\
        show('unshare-user', libc.unshare(0x10000000))\n\
        show('unshare-mount', libc.unshare(0x00020000))\n\
        show('unshare-net', libc.unshare(0x40000000))\n\
        show('mount', libc.mount(b'none', b'/tmp', b'tmpfs', 0, None))\n\
        show('ptrace', libc.ptrace(16, 1, None, None))\n\
        show('chroot', libc.chroot(b'/tmp'))\n";
    std::fs::write(work.path().join("calls.py"), script).unwrap();
    let out = run(work.path(), "python3 calls.py", &sandboxed()).await;
    assert_eq!(out.exit_code, Some(0), "{}", out.output);
    for call in [
        "unshare-user",
        "unshare-mount",
        "unshare-net",
        "mount",
        "ptrace",
        "chroot",
    ] {
        assert!(
            out.output.contains(&format!("{call} refused")),
            "{call}: {}",
            out.output
        );
    }
    // Still a working system: threads and processes are made as usual.
    let out = run(
        work.path(),
        "python3 -c \"import threading; t = threading.Thread(target=print, args=('thread',)); t.start(); t.join()\"; sh -c 'echo child'",
        &sandboxed(),
    )
    .await;
    assert_eq!(out.output, "thread\nchild\n");
}

#[tokio::test]
async fn nothing_the_command_starts_outlives_it() {
    let work = tempfile::tempdir().unwrap();
    let command = "setsid sh -c 'while :; do echo x >> daemon.log; sleep 0.05; done' >/dev/null 2>&1 & \
                   nohup sh -c 'sleep 2; echo late > late.txt' >/dev/null 2>&1 & \
                   sleep 0.3; echo started";
    let out = run(work.path(), command, &sandboxed()).await;
    assert_eq!(out.output, "started\n");
    let log = work.path().join("daemon.log");
    let size = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    assert!(size > 0, "the daemon never ran");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        std::fs::metadata(&log).unwrap().len(),
        size,
        "the daemon lives on"
    );
    assert!(!work.path().join("late.txt").exists());

    // On timeout, too.
    let short = CommandLimits {
        timeout: Duration::from_millis(500),
        ..sandboxed()
    };
    let out = run(
        work.path(),
        "setsid sh -c 'while :; do echo y >> timeout.log; sleep 0.05; done' & sleep 30",
        &short,
    )
    .await;
    assert!(out.timed_out);
    let log = work.path().join("timeout.log");
    let size = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0), size);
}

#[tokio::test]
async fn a_fork_bomb_is_contained_and_the_next_command_runs() {
    let work = tempfile::tempdir().unwrap();
    let limits = CommandLimits {
        timeout: Duration::from_secs(5),
        ..with_policy(SandboxPolicy {
            max_processes: 64,
            ..SandboxPolicy::default()
        })
    };
    // The command lives on while the bomb grows (its processes spawn and exit at once).
    let out = run(
        work.path(),
        "bomb() { bomb | bomb & }; bomb; sleep 3",
        &limits,
    )
    .await;
    assert!(out.process_limit_hit, "{}", out.output);
    assert!(
        out.output.contains("limit of 64 processes"),
        "{}",
        out.output
    );
    let next = run(work.path(), "echo fine", &sandboxed()).await;
    assert_eq!(next.output, "fine\n");
}

#[tokio::test]
async fn a_2_gib_allocation_is_stopped_by_the_memory_limit() {
    let work = tempfile::tempdir().unwrap();
    let limits = with_policy(SandboxPolicy {
        memory_bytes: 256 * 1024 * 1024,
        ..SandboxPolicy::default()
    });
    let out = run(
        work.path(),
        "python3 -c \"b = b'x' * (2 * 1024 ** 3); print('allocated', len(b))\"",
        &limits,
    )
    .await;
    assert!(!out.output.contains("allocated"), "{}", out.output);
    assert_ne!(out.exit_code, Some(0));
    assert!(out.out_of_memory, "{}", out.output);
    assert!(out.output.contains("256 MiB of memory"), "{}", out.output);
    let next = run(work.path(), "echo fine", &sandboxed()).await;
    assert_eq!(next.output, "fine\n");
}

#[tokio::test]
async fn files_are_capped_in_size() {
    let work = tempfile::tempdir().unwrap();
    let limits = with_policy(SandboxPolicy {
        max_file_bytes: 1024 * 1024,
        ..SandboxPolicy::default()
    });
    let out = run(
        work.path(),
        "head -c 3000000 /dev/zero > big; echo status=$?",
        &limits,
    )
    .await;
    assert!(!out.output.contains("status=0"), "{}", out.output);
    let size = std::fs::metadata(work.path().join("big")).unwrap().len();
    assert!(size <= 1024 * 1024, "{size} bytes written");
}

#[tokio::test]
async fn read_only_paths_are_readable_and_nothing_else_of_the_host() {
    let work = tempfile::tempdir().unwrap();
    let toolchain = outside();
    std::fs::write(toolchain.path().join("tool.txt"), "tool\n").unwrap();
    let policy = SandboxPolicy {
        read_only: vec![toolchain.path().to_path_buf()],
        ..SandboxPolicy::default()
    };
    let file = toolchain.path().join("tool.txt");
    let command = format!(
        "cat '{}'; echo changed > '{}' || echo refused",
        file.display(),
        file.display()
    );
    let out = run(work.path(), &command, &with_policy(policy)).await;
    assert!(out.output.starts_with("tool\n"), "{}", out.output);
    assert!(out.output.contains("refused"), "{}", out.output);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "tool\n");
}

#[tokio::test]
async fn the_init_confines_writes_with_landlock_even_outside_the_namespaces() {
    // The last layer alone: `gaffer-sandbox --write A -- sh -c …` may write in A only, even
    // where the mount view would let it write elsewhere.
    let init = PathBuf::from(env!("CARGO_BIN_EXE_gaffer-sandbox"));
    let allowed = outside();
    let denied = outside();
    let status = std::process::Command::new(&init)
        .arg("--write")
        .arg(allowed.path())
        .args(["--", "/bin/sh", "-c"])
        .arg("echo a > \"$0/a\"; echo b > \"$1/b\"; exit 0")
        .arg(allowed.path())
        .arg(denied.path())
        .status()
        .unwrap();
    assert!(status.success());
    assert!(allowed.path().join("a").exists());
    assert!(!denied.path().join("b").exists());

    // A broken request is a setup failure, and the command does not run.
    let out = std::process::Command::new(&init)
        .args(["--max-file", "lots", "--", "/bin/sh", "-c", "echo ran"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("ran"));
}

#[tokio::test]
async fn allowed_domains_go_through_gaffers_proxy_and_nothing_else_does() {
    // A server on the host's loopback that sends a canary to whoever connects.
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in server.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = std::io::Write::write_all(&mut stream, b"CANARY-THROUGH-PROXY");
        }
    });
    let work = tempfile::tempdir().unwrap();
    let script = format!(
        "import os, socket, sys\n\
         print('proxy', os.environ.get('HTTPS_PROXY'))\n\
         def ask(request):\n    s = socket.create_connection(('127.0.0.1', 3128), 3)\n    s.sendall(request.encode())\n    data = b''\n    s.settimeout(3)\n    try:\n        while len(data) < 4096:\n            chunk = s.recv(4096)\n            if not chunk: break\n            data += chunk\n            if b'CANARY' in data or b'gaffer' in data: break\n    except socket.timeout:\n        pass\n    return data.decode(errors='replace')\n\
         for host in sys.argv[1:]:\n    print(host, '->', ask(f'CONNECT {{host}}:{port} HTTP/1.1\\r\\nHost: {{host}}\\r\\n\\r\\n').replace('\\r\\n', ' | '))\n\
         print('GET ->', ask('GET http://localhost/ HTTP/1.1\\r\\nHost: localhost\\r\\n\\r\\n').splitlines()[0])\n\
         try:\n    socket.create_connection(('127.0.0.1', {port}), 2)\n    print('direct connected')\n\
         except OSError as e:\n    print('direct refused', e)\n"
    );
    std::fs::write(work.path().join("proxy.py"), script).unwrap();
    let through = |addresses: &[&str]| {
        with_policy(SandboxPolicy {
            proxy: ProxyPolicy {
                allow_domains: vec!["localhost".into()],
                allow_addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
                port,
            },
            ..SandboxPolicy::default()
        })
    };
    // The user allowed the host's loopback (as they would an internal mirror's range).
    let out = run(
        work.path(),
        "python3 proxy.py localhost example.org",
        &through(&["127.0.0.1/32"]),
    )
    .await;
    assert_eq!(out.exit_code, Some(0), "{}", out.output);
    assert!(
        out.output.contains("proxy http://127.0.0.1:3128"),
        "{}",
        out.output
    );
    assert!(
        out.output
            .contains("localhost -> HTTP/1.1 200 Connection Established |  | CANARY-THROUGH-PROXY"),
        "{}",
        out.output
    );
    assert!(
        out.output.contains("example.org -> HTTP/1.1 403 Forbidden")
            && out
                .output
                .contains("`example.org` is not in [sandbox] allow_domains"),
        "{}",
        out.output
    );
    assert!(out.output.contains("GET -> HTTP/1.1 405"), "{}", out.output);
    assert!(out.output.contains("direct refused"), "{}", out.output);

    // Without that, an allowed name that resolves to the host itself is refused after DNS.
    let out = run(work.path(), "python3 proxy.py localhost", &through(&[])).await;
    assert!(
        !out.output.contains("CANARY-THROUGH-PROXY"),
        "{}",
        out.output
    );
    assert!(
        out.output
            .contains("resolves to 127.0.0.1, a loopback address")
            || out.output.contains("resolves to ::1, a loopback address"),
        "{}",
        out.output
    );

    // With no domain allowed there is no proxy at all.
    let out = run(work.path(), "python3 proxy.py localhost", &sandboxed()).await;
    assert!(out.output.contains("proxy None"), "{}", out.output);
    assert!(
        !out.output.contains("CANARY-THROUGH-PROXY"),
        "{}",
        out.output
    );
}

#[tokio::test]
async fn files_others_may_not_read_stay_unread_even_when_gaffer_is_root() {
    // Inside, the command's uid maps to gaffer's own: run as root (CI, containers), it would
    // read root's files. Found here with find(1), independently of gaffer's own walk.
    let listing = std::process::Command::new("find")
        .args(["/etc", "-xdev", "-type", "f", "!", "-perm", "-o+r"])
        .output()
        .unwrap();
    let private: Vec<String> = String::from_utf8_lossy(&listing.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert!(
        private.iter().any(|p| p == "/etc/shadow"),
        "no private file in /etc to try: {private:?}"
    );
    let work = tempfile::tempdir().unwrap();
    let command = private
        .iter()
        .map(|p| format!("head -c 64 '{p}' 2>/dev/null | od -An -c | head -n 1"))
        .collect::<Vec<_>>()
        .join("; ");
    let out = run(work.path(), &command, &sandboxed()).await;
    assert!(
        out.output.trim().is_empty(),
        "private files were readable inside: {}",
        out.output
    );
    // The control: unconfined, root reads them.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let control = run(work.path(), &command, &unconfined()).await;
        assert!(!control.output.trim().is_empty());
    }
}

#[tokio::test]
async fn a_cache_is_copy_on_write_for_one_attempt_and_the_host_keeps_its_own() {
    let work = tempfile::tempdir().unwrap();
    let cache = outside();
    std::fs::write(cache.path().join("index"), "base\n").unwrap();
    std::fs::write(
        cache.path().join("credentials.toml"),
        "CANARY-CACHE-TOKEN\n",
    )
    .unwrap();
    let c = cache.path().display().to_string();
    let attempt = |scratch: &Path| CommandLimits {
        scratch: Some(scratch.to_path_buf()),
        ..with_policy(SandboxPolicy {
            caches: vec![cache.path().to_path_buf()],
            ..SandboxPolicy::default()
        })
    };
    let first = tempfile::tempdir().unwrap();
    let out = run(
        work.path(),
        &format!("echo first >> {c}/index && echo fetched > {c}/crate && cat {c}/index"),
        &attempt(first.path()),
    )
    .await;
    assert_eq!(out.output, "base\nfirst\n");
    // The attempt's next command sees its own writes.
    let out = run(
        work.path(),
        &format!("cat {c}/index {c}/crate"),
        &attempt(first.path()),
    )
    .await;
    assert_eq!(out.output, "base\nfirst\nfetched\n");
    // The host's cache is as it was; the next attempt starts from it.
    assert_eq!(
        std::fs::read_to_string(cache.path().join("index")).unwrap(),
        "base\n"
    );
    assert!(!cache.path().join("crate").exists());
    let second = tempfile::tempdir().unwrap();
    let out = run(
        work.path(),
        &format!("cat {c}/index {c}/credentials.toml; ls {c}"),
        &attempt(second.path()),
    )
    .await;
    // Its credentials are masked, as in a read-only toolchain (the mask reads as nothing, or is
    // refused: a device bound in the overlays' namespace may not be opened).
    assert!(out.output.starts_with("base\n"), "{}", out.output);
    assert!(!out.output.contains("CANARY-CACHE-TOKEN"), "{}", out.output);
    assert!(
        out.output.ends_with("credentials.toml\nindex\n"),
        "{}",
        out.output
    );

    // The control: declared read-only, the same write is refused.
    let read_only = with_policy(SandboxPolicy {
        read_only: vec![cache.path().to_path_buf()],
        ..SandboxPolicy::default()
    });
    let out = run(work.path(), &format!("echo x >> {c}/index"), &read_only).await;
    assert_ne!(out.exit_code, Some(0));
    assert!(
        out.output.contains("Read-only file system"),
        "{}",
        out.output
    );
}

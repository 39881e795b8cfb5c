//! What the sandbox adds to one command of the agent: `true` run sandboxed (bubblewrap's
//! namespaces, gaffer's init with Landlock and seccomp, a command group with its limits, a
//! fresh scratch home) against the same `true` run unconfined, in the same run. Both go through
//! `run_command` as shipped: cleared environment, captured output, timeout.

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use gaffer::sandbox::{CommandLimits, Confinement, probe, run_command};

fn commands(c: &mut Criterion) {
    if let Err(e) = probe() {
        panic!("{e}");
    }
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let work = tempfile::tempdir().expect("a temporary directory");
    let scratch = tempfile::tempdir().expect("a temporary directory");
    let sandboxed = CommandLimits::default();
    // An attempt's commands share a scratch home made once.
    let attempt = CommandLimits {
        scratch: Some(scratch.path().to_path_buf()),
        ..CommandLimits::default()
    };
    let unconfined = CommandLimits {
        sandbox: None,
        ..CommandLimits::default()
    };
    let mut group = c.benchmark_group("command");
    group.measurement_time(Duration::from_secs(10));
    for (name, limits, expected) in [
        ("unconfined", &unconfined, Confinement::Unconfined),
        ("sandboxed", &sandboxed, Confinement::Sandboxed),
        (
            "sandboxed, attempt scratch",
            &attempt,
            Confinement::Sandboxed,
        ),
    ] {
        group.bench_function(name, |b| {
            b.to_async(&runtime).iter(|| async {
                let out = run_command(work.path(), "true", limits)
                    .await
                    .expect("the command runs");
                assert_eq!(out.exit_code, Some(0), "{}", out.output);
                assert_eq!(out.confinement, expected);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, commands);
criterion_main!(benches);

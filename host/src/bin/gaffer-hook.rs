//! `gaffer-hook`: `gaffer hook claude-code` as a binary of its own, for Claude Code's
//! `settings.json`. Claude Code starts one process per tool call, so start-up is what a person
//! waits for: this binary links only the bridge and the plugin runtime (no command-line parser,
//! model gateway, SQLite or dashboard), which the kernel maps and relocates faster than the full
//! `gaffer` binary. It behaves exactly as `gaffer hook claude-code`.
//!
//! Usage: `gaffer-hook [claude-code] [--config FILE] [--root DIR]`

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut config: Option<PathBuf> = None;
    let mut root: Option<PathBuf> = None;
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("claude-code") => {}
            Some("--config") => match args.next() {
                Some(path) => config = Some(PathBuf::from(path)),
                None => return usage("--config needs a file"),
            },
            Some("--root") => match args.next() {
                Some(path) => root = Some(PathBuf::from(path)),
                None => return usage("--root needs a directory"),
            },
            Some("-h" | "--help") => {
                println!("usage: gaffer-hook [claude-code] [--config FILE] [--root DIR]");
                return ExitCode::SUCCESS;
            }
            _ => return usage(&format!("unexpected argument {arg:?}")),
        }
    }
    // One thread and the timer only: the bridge's plugin calls need a deadline
    // (`tokio::time::timeout`) but no I/O reactor (plugins' stdio are memory pipes, git runs
    // synchronously), so the epoll instance, its wake-up eventfd and the signal driver's socket
    // pair that `enable_all` sets up are not made in a process that lives for one event.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return usage(&format!("cannot start: {e}")),
    };
    // The bridge answers every failure itself (fail closed). The answer is written and flushed
    // when it returns: the process ends there, without taking the runtime and the engine apart.
    let code = runtime.block_on(gaffer::bridge::claude_code::answer(config, root));
    std::process::exit(i32::from(code))
}

/// A usage error: exit status 2, which Claude Code treats as a blocking error.
fn usage(problem: &str) -> ExitCode {
    eprintln!(
        "gaffer-hook: {problem}\nusage: gaffer-hook [claude-code] [--config FILE] [--root DIR]"
    );
    ExitCode::from(2)
}

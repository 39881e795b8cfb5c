fn main() -> std::process::ExitCode {
    // Output piped into `head` ends quietly, as with other Unix tools, instead of panicking on
    // a closed stdout.
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    match gaffer::cli::main() {
        Ok(code) => code,
        Err(error) => {
            eprintln!("gaffer: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

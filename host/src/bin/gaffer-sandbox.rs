//! `gaffer-sandbox`: the last step of a sandboxed command, run by bubblewrap inside the
//! namespaces it made. It limits file sizes, applies Landlock and seccomp, then executes the
//! command; gaffer's host finds it beside its own binary. See `gaffer::sandbox::init`.
//!
//! Usage: `gaffer-sandbox [--write DIR]... [--max-file BYTES] -- PROGRAM [ARG]...`

fn main() {
    std::process::exit(gaffer::sandbox::init::main());
}

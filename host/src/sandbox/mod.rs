//! Every process the agent starts (its `run_command` tool, the project's test command) runs in
//! a sandbox it cannot leave: its own user, mount, PID, IPC and network namespaces made by
//! bubblewrap ([`bwrap`]), a mount view of the system directories, the worktree and a scratch
//! home only, Landlock and seccomp applied by gaffer's init ([`init`], [`seccomp`]), and a
//! command group with memory and process caps whose every member dies with the command
//! ([`cgroup`]). [`probe`] finds out whether the machine can do all that; [`process`] runs a
//! command in it, or — only when the user asks — unconfined.

mod bwrap;
mod cgroup;
pub mod init;
pub mod overlay;
mod policy;
mod probe;
mod process;
pub mod proxy;
mod seccomp;

pub use init::landlock_available;
pub use policy::{Mount, SandboxPolicy, expand_home};
pub use probe::{SandboxTools, SandboxUnavailable, probe, probe_overlay, probe_uncached};
pub use process::{CommandError, CommandLimits, CommandOutput, Confinement, run_command};

//! Every process the agent starts (its `run_command` tool, the project's test command): a
//! cleared environment, a timeout that kills the whole process group, capped output, and writes
//! confined with Landlock where the kernel has it.

mod process;

pub use process::{
    CommandError, CommandLimits, CommandOutput, Confinement, landlock_available, run_command,
};

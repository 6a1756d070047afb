//! Code verification: candidate Python programs run against tests in a sandboxed child process.

mod sandbox;
mod tasks;

pub use sandbox::{Sandbox, SandboxLimits, SandboxResult, Termination};
pub use tasks::{HumanEvalTask, extract_code_block, humaneval_program, mbpp_program};

//! The distillation pipeline: source → dispatcher → teacher workers → verifier pool → writer,
//! each an actix actor (the verifiers a pool of threads), with credit-based back-pressure so
//! memory stays flat whatever the size of the source. See [`actors`] for the flow and
//! [`run`] for starting and resuming runs.

mod actors;
mod credits;
mod error;
pub mod grade;
pub mod job;
mod metrics;
mod progress;
mod run;
pub mod status;
mod teacher;
pub mod truncation;

pub use actors::{RunEnd, StopReason, StopSignal, WriterError};
pub use error::{PipelineError, RunDirConflict};
pub use progress::Display;
pub use run::{Existing, RunOptions, resume, start, unsafe_changes};
pub use teacher::{MockLaunchError, MockLauncher, RunTeacher, ServedMock};

//! Verifiers for rejection sampling: each check is a pure function from a model output to a
//! [`Verdict`] (pass, or fail with a machine-readable [`Reason`]). The code sandbox is the one
//! check with side effects: it runs a child process.
//!
//! - [`math`]: final-answer extraction and equivalence with a reference answer.
//! - [`code`]: Python candidates run against tests in a resource-limited child process.
//! - [`format`](mod@format), [`language`], [`length`], [`repetition`]: shape of the generation.
//! - [`keep`]: which verified samples of a prompt to keep.

pub mod code;
pub mod format;
pub mod keep;
pub mod language;
pub mod length;
pub mod math;
pub mod repetition;
mod verdict;

pub use keep::KeepPolicy;
pub use language::{LanguagePolicy, Script};
pub use length::LengthLimits;
pub use repetition::RepetitionLimits;
pub use verdict::{Check, LengthUnit, Outcome, Reason, TimeLimit, Verdict};

//! Datasets made from runs, and descriptions of runs and datasets.
//!
//! - [`export`]: a Hugging Face-ready dataset from one run or the shards of one (Parquet or
//!   JSONL, splits, the dataset card, publish-safe provenance, decontamination against the
//!   shipped benchmarks).
//! - [`open_r1`]: open-r1's one-row-per-problem layout.
//! - [`inspect`]: what a run or a dataset holds, its schema and its first rows.
//! - [`conversations`]: the training conversations of runs, exports and files written by
//!   other tools, for `train` and `eval`.
//!
//! Runs are read through `distillery-store`, which owns their files; this crate never writes
//! inside a run directory.

#![forbid(unsafe_code)]

pub mod conversations;
pub mod export;
pub mod inspect;
pub mod open_r1;

//! Record types, Arrow schema, write-ahead log, Parquet shards and the run directory.
//!
//! - [`record`]: the rows a run produces ([`Generation`], [`QuarantineEntry`]).
//! - [`schema`]: their Arrow schema and record-batch conversions.
//! - [`wal`]: the write-ahead log with group commit and torn-tail recovery.
//! - [`shard`]: atomic, durable Parquet files.
//! - [`run_dir`]: the run directory, manifest, shard writer and recovery (its module doc has
//!   the durability argument).
//! - [`read`]: streaming readers over runs, datasets and files: the one way any crate reads
//!   rows back (shards and WAL records not yet cut alike).
//! - [`fsck`]: verify a run without changing it; [`shard_set`]: the shards of a run split
//!   across machines, checked as one.
//!
//! Datasets made from runs (export, the dataset card, inspection) are `distillery-dataset`'s.

pub mod difficulty;
pub mod error;
pub mod fsck;
pub mod logprobs;

pub mod read;
pub mod record;
pub mod run_dir;
pub mod schema;
pub mod shard;
pub mod shard_set;
pub mod wal;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use error::{Result, StoreError};
pub use logprobs::TeacherLogprobs;
pub use read::{GenerationReader, Which, read_generations, read_shards};
pub use record::{
    ChatMessage, CheckResult, FailureEntry, Generation, LengthHandling, Provenance,
    QuarantineEntry, SourceFields, assistant_turn, assistant_turn_as,
};
pub use run_dir::{
    Counts, EndpointConcurrency, Manifest, Recovered, RunDir, RunLock, RunStatus, ShardInfo,
    ShardWriter, TokenTotals, WriterOptions, config_hash, now_ms,
};
pub use schema::{from_record_batch, generation_schema, to_record_batch};
pub use wal::TornTail;

use std::path::PathBuf;

use distillery_spec::Shard;
use distillery_teacher::TeacherError;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Spec(#[from] distillery_spec::SpecError),
    #[error(transparent)]
    Store(#[from] distillery_store::StoreError),
    #[error(transparent)]
    Teacher(#[from] TeacherError),
    #[error("cannot start the mock teacher: {0}")]
    Mock(#[source] crate::teacher::MockLaunchError),
    #[error("cannot serve metrics on {address}: {source}")]
    Metrics {
        address: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    RunExists(RunDirConflict),
    #[error("the definition changed since the run started, in ways that would mix incompatible rows:\n{}\nput the original definition back, start a new run, or pass --force", .changes.join("\n"))]
    UnsafeChange { changes: Vec<String> },
    #[error("the run's data is damaged:\n{}\nrestore the files (the WAL no longer holds their rows), or pass --force to accept the loss and ask the teacher again for prompts left with no rows", .problems.join("\n"))]
    Damaged { problems: Vec<String> },
    #[error("the writer could not finish the run: {0}")]
    Writer(#[source] crate::actors::WriterError),
}

/// Why a run cannot start in the directory it was given.
#[derive(Debug, thiserror::Error)]
pub enum RunDirConflict {
    #[error(
        "{} is a run directory itself; with --shard, --run-dir names the directory that holds the shards' directories ({} and its siblings)",
        dir.display(),
        shard.dir_name()
    )]
    ShardInRunDir { dir: PathBuf, shard: Shard },
    #[error(
        "{} holds the shards of a run split with --shard (`distillery status {}` shows them); run a shard with --shard I/N or choose another --run-dir",
        dir.display(),
        dir.display()
    )]
    HoldsShards { dir: PathBuf },
    #[error(
        "{} holds a run of {}, not {}; choose another --run-dir",
        dir.display(),
        show(*recorded),
        show(*requested)
    )]
    OtherShard {
        dir: PathBuf,
        recorded: Option<Shard>,
        requested: Option<Shard>,
    },
    #[error(
        "{} already holds a run; continue it with `distillery resume {}` (or `run --resume`) or choose another --run-dir",
        dir.display(),
        dir.display()
    )]
    HoldsRun { dir: PathBuf },
}

fn show(shard: Option<Shard>) -> String {
    shard.map_or_else(|| "all prompts".to_owned(), |s| format!("shard {s}"))
}

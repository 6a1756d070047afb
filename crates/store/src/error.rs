//! The store's error type. Every variant names the file it is about and, where it applies, the
//! line (text files) or row (Parquet) so a user can go and look.

use std::path::{Path, PathBuf};

/// Result with [`StoreError`].
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An operating-system I/O failure (disk full, permission, missing file, …).
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A line of a text file the store wrote (WAL, quarantine, manifest) is not what it wrote.
    #[error("{}:{line}: corrupt record: {message}", path.display())]
    Corrupt {
        path: PathBuf,
        line: u64,
        message: String,
    },
    /// A Parquet file could not be read or written.
    #[error("{}: parquet: {source}", path.display())]
    Parquet {
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// A row of a Parquet file does not fit the generation schema.
    #[error("{}row {row}: {message}", file_prefix(path))]
    BadRow {
        path: PathBuf,
        row: u64,
        message: String,
    },
    /// Record batches and the generation schema disagree (no file involved).
    #[error("{0}")]
    Schema(String),
    /// Arrow refused to build an array.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// The prompt source is unusable as a whole (not a JSON array, unreadable Parquet, …).
    #[error("{}: {message}", path.display())]
    Source { path: PathBuf, message: String },
    /// A JSON document the store reads whole (manifest) is invalid.
    #[error("{}: {source}", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// `RunDir::create` on a directory that already holds something.
    #[error("{} already exists and is not empty; choose another run directory or resume it", path.display())]
    RunDirNotEmpty { path: PathBuf },
    /// `RunDir::open` on a directory that is not a run directory.
    #[error("{} is not a run directory ({missing} is missing)", path.display())]
    NotARunDir {
        path: PathBuf,
        missing: &'static str,
    },
    /// Another process holds the run directory's lock.
    #[error("{} is in use by process {holder} (it holds {}); wait for it to end or stop it first", path.display(), lock.display())]
    Locked {
        path: PathBuf,
        lock: PathBuf,
        holder: String,
    },
    /// The file system of the run directory does not do flock(2), so the run cannot be
    /// guarded against a second process.
    #[error("cannot lock {}: {source}: this file system does not support flock, which guards a run against a second process; on NFS mount with locking (NFSv4, or NFSv3 with lockd and rpc.statd, not `nolock`), on Lustre mount with `-o flock`, or put the run directory on a local disk (README: Shared file systems)", lock.display())]
    LockUnsupported {
        lock: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A run that did not finish, given to a command that needs a finished one.
    #[error("{} is {status} ({done} of {total} prompts done{failed}): `distillery resume {}` finishes it, or pass --allow-incomplete to use what it has", path.display(), path.display())]
    Incomplete {
        path: PathBuf,
        status: String,
        done: u64,
        total: String,
        failed: String,
    },
    /// Shard directories that are not one complete run (see `shard_set`).
    #[error("the shards are not one complete run:\n{}", problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Shards {
        problems: Vec<crate::shard_set::ShardProblem>,
    },
    /// Invalid arguments (export options and the like).
    #[error("{0}")]
    Invalid(String),
}

fn file_prefix(path: &Path) -> String {
    if path.as_os_str().is_empty() {
        String::new()
    } else {
        format!("{}: ", path.display())
    }
}

impl StoreError {
    pub fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_owned();
        move |source| StoreError::Io { op, path, source }
    }

    pub fn parquet(path: &Path) -> impl FnOnce(parquet::errors::ParquetError) -> Self {
        let path = path.to_owned();
        move |source| StoreError::Parquet { path, source }
    }

    /// Attaches a file to a schema error raised while decoding one of its batches.
    pub fn in_file(self, path: &Path, first_row: u64) -> Self {
        match self {
            StoreError::BadRow { row, message, .. } => StoreError::BadRow {
                path: path.to_owned(),
                row: first_row + row,
                message,
            },
            StoreError::Schema(message) | StoreError::Invalid(message) => StoreError::BadRow {
                path: path.to_owned(),
                row: first_row,
                message,
            },
            StoreError::Arrow(error) => StoreError::BadRow {
                path: path.to_owned(),
                row: first_row,
                message: error.to_string(),
            },
            other => other,
        }
    }
}

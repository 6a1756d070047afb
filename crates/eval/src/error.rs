//! What can stop an evaluation. Every variant about a file names it, and a bad row names its
//! line (JSONL), element (JSON) or row (Parquet) and the field at fault.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// `--benchmark` is neither a known benchmark nor a path that exists.
    #[error(
        "benchmark file {} does not exist (known benchmarks: gsm8k, math500, humaneval; anything else is read as a JSONL, JSON or Parquet file)",
        path.display()
    )]
    MissingFile { path: PathBuf },
    /// A named benchmark whose file is not where eval looks for it.
    #[error("{message}")]
    NotShipped { message: String },
    #[error(
        "cannot tell the format of {} from its extension; name it .jsonl, .json or .parquet",
        path.display()
    )]
    UnknownFormat { path: PathBuf },
    /// The source could not be opened or read as a whole.
    #[error(transparent)]
    Store(#[from] distillery_store::StoreError),
    /// A row that cannot be evaluated; scoring without it would change the denominator.
    #[error("{at}: {detail} [{reason}]")]
    BadRow {
        /// `file:line` for JSONL, the file for JSON and Parquet (the detail names the row).
        at: String,
        path: PathBuf,
        row: u64,
        reason: String,
        detail: String,
    },
    #[error("{} holds no problems", path.display())]
    Empty { path: PathBuf },
    /// Options that contradict each other or the benchmark.
    #[error("{0}")]
    Config(String),
    /// A teacher failure that every later request would hit too (bad key, unknown model).
    #[error(transparent)]
    Teacher(#[from] distillery_teacher::TeacherError),
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("{}: {message}", path.display())]
    Read { path: PathBuf, message: String },
    /// Grading a problem's answers broke down (a bug, not a wrong answer).
    #[error("scoring problem {id} failed: {message}")]
    Scoring { id: String, message: String },
}

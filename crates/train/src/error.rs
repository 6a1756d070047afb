//! Typed errors. Every variant names the file, row or field it is about.

use std::path::PathBuf;

/// Everything that can go wrong while loading data, training or checkpointing.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}, line {line}: {message}")]
    JsonLine {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("no training conversations found in {paths}")]
    NoData { paths: String },
    /// The training data could not be read.
    #[error(transparent)]
    Data(#[from] distillery_dataset::conversations::DataError),
    #[error("chat template{}: {message}", source_name.as_ref().map(|p| format!(" from {}", p.display())).unwrap_or_default())]
    Template {
        source_name: Option<PathBuf>,
        message: String,
    },
    #[error("{origin}: {message}")]
    Render { origin: String, message: String },
    #[error("{origin}: tokenizer: {message}")]
    Tokenize { origin: String, message: String },
    #[error("{path}: {message}")]
    Json { path: PathBuf, message: String },
    #[error("config field `{field}`: {message}")]
    Config { field: String, message: String },
    #[error("checkpoint {path}: {message}")]
    Checkpoint { path: PathBuf, message: String },
    #[error("optimizer state {path}: {message}")]
    OptimizerState { path: PathBuf, message: String },
    #[error("model: {0}")]
    Model(String),
    #[error("tensor op: {0}")]
    Candle(#[from] candle_core::Error),
}

pub type Result<T, E = TrainError> = std::result::Result<T, E>;

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> TrainError {
    let path = path.into();
    move |source| TrainError::Io { path, source }
}

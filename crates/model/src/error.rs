//! Typed errors for model construction, checkpoint I/O and generation.

use std::path::PathBuf;

/// Everything that can go wrong in `distillery-model`. File-related variants carry the path so
/// a user can tell which file is bad without a backtrace.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: invalid JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{}unsupported architecture {found:?}: expected Qwen2 or Llama", path_prefix(.path))]
    UnsupportedArch {
        path: Option<PathBuf>,
        found: String,
    },
    #[error("{}invalid model config: {message}", path_prefix(.path))]
    InvalidConfig {
        path: Option<PathBuf>,
        message: String,
    },
    #[error("{file}: missing tensor `{name}`")]
    MissingTensor { name: String, file: PathBuf },
    #[error("{file}: tensor `{name}` has shape {found:?}, expected {expected:?}")]
    ShapeMismatch {
        name: String,
        file: PathBuf,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("{path}: bad safetensors file: {message}")]
    Safetensors { path: PathBuf, message: String },
    #[error("{path}: bad GGUF file: {message}")]
    Gguf { path: PathBuf, message: String },
    #[error("{}tokenizer: {message}", path_prefix(.path))]
    Tokenizer {
        path: Option<PathBuf>,
        message: String,
    },
    #[error(
        "{0}: not a checkpoint: expected a directory with config.json and model.safetensors \
         (or model.safetensors.index.json), or a .gguf file"
    )]
    NotACheckpoint(PathBuf),
    #[error("device {device}: {message}")]
    Device { device: String, message: String },
    #[error("invalid input: {0}")]
    InvalidInput(String),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

fn path_prefix(path: &Option<PathBuf>) -> String {
    match path {
        Some(p) => format!("{}: ", p.display()),
        None => String::new(),
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

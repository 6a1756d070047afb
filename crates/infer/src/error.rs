/// What can go wrong building or running an [`Engine`](crate::Engine).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A checkpoint weight is missing, has the wrong shape or cannot be read.
    #[error("weight `{name}`: {message}")]
    Weight { name: String, message: String },
    /// A request the engine cannot run (empty, out-of-vocabulary tokens, past the context).
    #[error("{0}")]
    InvalidInput(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

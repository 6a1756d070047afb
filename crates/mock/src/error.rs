use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Everything that can stop the simulator from starting or serving.
#[derive(Debug, thiserror::Error)]
pub enum MockError {
    #[error("cannot read mock data set {}: {source}", .path.display())]
    ReadDataset { path: PathBuf, source: io::Error },

    /// A row (or the file's JSON) that cannot be used; `line` is 1-based.
    #[error("{}:{line}: {message}", .path.display())]
    BadRow {
        path: PathBuf,
        line: usize,
        message: String,
    },

    #[error("invalid mock settings: {0}")]
    InvalidSettings(String),

    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },

    #[error("mock server stopped: {0}")]
    Serve(String),
}

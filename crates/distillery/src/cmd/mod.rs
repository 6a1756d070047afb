//! One module per subcommand. Each has clap `Args` and a `run` returning the exit code.

pub mod decontaminate;
pub mod eval;
pub mod export;
pub mod init_model;
pub mod inspect;
pub mod mock_teacher;
pub mod run;
pub mod train;
pub mod validate;
pub mod verify;

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Logs go to stderr so that stdout stays clean for machine-readable output; colours only on a
/// terminal (and not under `NO_COLOR`), so that log files and CI output stay plain text.
pub fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .with_target(false)
        .init();
}

/// A multi-threaded tokio runtime for commands that do network I/O.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

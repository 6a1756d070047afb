//! One module per subcommand. Each has clap `Args` and a `run` returning the exit code.

pub(crate) mod decontaminate;
pub(crate) mod eval;
pub(crate) mod export;
pub(crate) mod fsck;
pub(crate) mod init_model;
pub(crate) mod inspect;
pub(crate) mod mock_teacher;
pub(crate) mod run;
pub(crate) mod train;
pub(crate) mod validate;
pub(crate) mod verify;

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Logs go to stderr so that stdout stays clean for machine-readable output; colours only on a
/// terminal (and not under `NO_COLOR`), so that log files and CI output stay plain text.
pub(crate) fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // async-openai logs every fault it hands back (`ERROR failed deserialization of: {…}`
    // with the teacher's text, server errors, rate limits) although the teacher client
    // handles them: retried, counted in the progress line and logged once at debug level.
    // Its own log is shown only when RUST_LOG names it.
    let named = std::env::var("RUST_LOG").is_ok_and(|v| v.contains("async_openai"));
    if !named && let Ok(directive) = "async_openai=off".parse() {
        filter = filter.add_directive(directive);
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .with_target(false)
        .init();
}

/// Writes `text` to stdout. A reader that went away (`distillery status --json | head -1`)
/// is not an error: the output simply ends, as it does for other Unix tools.
pub(crate) fn out(text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// `println!` through [`out`]: ends quietly on a broken pipe instead of panicking.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cmd::out(&format!("{}\n", format_args!($($arg)*)))
    };
}

/// The rows of a JSONL, JSON or Parquet file as JSON values, its format told by its extension.
pub(crate) fn raw_rows(path: &std::path::Path) -> anyhow::Result<distillery_source::RawRows> {
    use anyhow::Context;
    let format = distillery_spec::SourceFormat::from_extension(path).with_context(|| {
        format!(
            "{}: unknown format (expected .jsonl, .json or .parquet)",
            path.display()
        )
    })?;
    Ok(distillery_source::RawRows::open(path, format)?)
}

/// A multi-threaded tokio runtime for commands that do network I/O.
/// `--device` and `--dtype`, for the commands that run a model in this process.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Placement {
    /// cpu, cuda, cuda:N or auto (the first GPU when this binary has CUDA support and one is
    /// present, else the CPU).
    #[arg(long, value_name = "DEVICE", default_value = "cpu")]
    pub device: distillery_model::DeviceSpec,
    /// f32, or bf16 (for training: bf16 weights and activations with f32 master weights and
    /// AdamW state).
    #[arg(long, value_name = "DTYPE", default_value = "f32")]
    pub dtype: distillery_model::Precision,
    /// CPU threads for the model's matrix math and sampling [default: RAYON_NUM_THREADS, else
    /// one per core].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,
}

/// The thread count of candle's element-wise pool (its own, beside rayon's).
const CANDLE_POOL: &str = "CANDLE_NUM_THREADS";

impl Placement {
    /// Applies `--threads`; call before the model runs anything.
    #[allow(unsafe_code)]
    pub(crate) fn apply_threads(&self) {
        // SAFETY (both): no other thread exists yet (this runs before any model or async
        // runtime starts), so nothing reads the environment concurrently.
        if let Some(n) = self.threads {
            // candle and its matmul read rayon's variable when its thread pool starts, which
            // is at the first op.
            unsafe { std::env::set_var("RAYON_NUM_THREADS", n.to_string()) };
        }
        if std::env::var_os(CANDLE_POOL).is_none() {
            // The model's CPU kernels and matmuls run on rayon's threads. candle's own pool
            // for its element-wise ops would add as many threads again, which spin between
            // ops: on two cores it made two-thread training 10% slower (`make bench`).
            unsafe { std::env::set_var(CANDLE_POOL, "1") };
        }
    }
}

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

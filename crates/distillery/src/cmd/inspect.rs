//! `distillery inspect`: describe a run directory or an exported dataset.

use std::path::PathBuf;
use std::process::ExitCode;

use distillery_dataset::inspect::{InspectOptions, inspect};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// A run directory, an exported dataset directory, or a Parquet/JSONL file.
    pub path: PathBuf,
    /// Sample rows to print.
    #[arg(long, default_value_t = 1)]
    pub samples: usize,
    /// Print long texts whole instead of cutting them.
    #[arg(long)]
    pub full: bool,
    /// Bins of the reasoning-token histogram.
    #[arg(long, default_value_t = 10)]
    pub bins: usize,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let options = InspectOptions {
        samples: args.samples,
        full: args.full,
        histogram_bins: args.bins,
        ..InspectOptions::default()
    };
    super::out(&inspect(&args.path, &options)?)?;
    Ok(ExitCode::SUCCESS)
}

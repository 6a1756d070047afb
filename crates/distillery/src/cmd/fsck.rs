//! `distillery fsck`: verify a run directory without changing it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The run directory, e.g. runs/gsm8k-mock.
    pub run_dir: PathBuf,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let report = distillery_store::fsck::fsck(&args.run_dir)
        .with_context(|| format!("cannot check {}", args.run_dir.display()))?;
    let mut text = format!(
        "{}: {} WAL segment(s) with {} record(s), {} shard file(s), {} generation(s)\n",
        args.run_dir.display(),
        report.wal_segments,
        report.wal_records,
        report.shard_files,
        report.generations
    );
    for note in &report.notes {
        text.push_str(&format!("note: {note}\n"));
    }
    for problem in &report.problems {
        text.push_str(&format!("damaged: {problem}\n"));
    }
    text.push_str(if report.is_clean() {
        "ok: every record and shard is as it was written\n"
    } else {
        "the run is damaged (see above); `distillery resume` refuses it until the files are restored\n"
    });
    super::out(&text)?;
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

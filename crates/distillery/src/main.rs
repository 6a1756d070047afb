//! `distillery`: distil a reasoning teacher into verified training data and a trained student.

mod cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "distillery", version, about, long_about = None)]
struct Cli {
    /// More log output (-v: debug, -vv: trace); RUST_LOG overrides it.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a pipeline definition and report every problem with its line, column and field.
    Validate(cmd::validate::Args),
    /// Serve the built-in mock teacher: an OpenAI-compatible simulator of an R1-style model.
    MockTeacher(cmd::mock_teacher::Args),
    /// Run a pipeline definition: ask the teacher, verify, write Parquet shards.
    Run(cmd::run::RunArgs),
    /// Continue an interrupted run where it stopped.
    Resume(cmd::run::ResumeArgs),
    /// Show a run's counts, acceptance by reason, throughput and ETA.
    Status(cmd::run::StatusArgs),
    /// Verify a run directory (WAL checksums, shard checksums and rows) without changing it.
    Fsck(cmd::fsck::Args),
    /// Export runs as a Hugging Face-ready dataset (Parquet or JSONL, with a dataset card).
    Export(cmd::export::Args),
    /// Describe a run or an exported dataset: schema, counts, a sample row, lengths.
    Inspect(cmd::inspect::Args),
    /// Write a tiny random model and tokenizer, for tests and the demo.
    InitModel(cmd::init_model::Args),
    /// Fine-tune a student on a run's accepted traces (SFT, optionally with logit distillation).
    Train(cmd::train::Args),
    /// Measure a model's pass@1 (and pass@k) on a benchmark with the same verifiers.
    Eval(cmd::eval::Args),
    /// Grade answers with the math verifier, or regrade a run or dataset with the current one.
    Verify(cmd::verify::Args),
    /// Remove training problems that overlap benchmarks (8-gram overlap and near duplicates).
    Decontaminate(cmd::decontaminate::Args),
}

fn main() -> ExitCode {
    distillery_model::keep_freed_tensor_memory();
    let cli = Cli::parse();
    cmd::init_logging(cli.verbose);
    let result = match cli.command {
        Command::Validate(args) => cmd::validate::run(args),
        Command::MockTeacher(args) => cmd::mock_teacher::run(args),
        Command::Run(args) => cmd::run::run(args),
        Command::Resume(args) => cmd::run::resume(args),
        Command::Status(args) => cmd::run::status(args),
        Command::Fsck(args) => cmd::fsck::run(args),
        Command::Export(args) => cmd::export::run(args),
        Command::Inspect(args) => cmd::inspect::run(args),
        Command::InitModel(args) => cmd::init_model::run(args),
        Command::Train(args) => cmd::train::run(args),
        Command::Eval(args) => cmd::eval::run(args),
        Command::Verify(args) => cmd::verify::run(args),
        Command::Decontaminate(args) => cmd::decontaminate::run(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

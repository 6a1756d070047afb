//! `distillery export`: runs → a Hugging Face-ready dataset. The logic lives in
//! `distillery_dataset::export`; this is the command line around it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use distillery_dataset::export::{
    Dedup, ExportFormat, ExportOptions, Layout, MixSource, ShardSize, export, parse_splits,
};
use distillery_store::Which;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    Parquet,
    Jsonl,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LayoutArg {
    /// One row per sample, every column of the run's rows.
    Samples,
    /// One row per problem with open-r1's columns (problem, solution, answer, source, uuid,
    /// messages, generations, finish_reasons, correctness_math_verify, correctness_count).
    #[value(name = "open-r1")]
    OpenR1,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum DedupArg {
    /// Drop rows whose `messages` equal an earlier row's.
    Exact,
    /// Keep one row per prompt text.
    Prompt,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  distillery export runs/gsm8k-mock --out datasets/gsm8k-r1
  distillery export runs/a runs/b --out ds --split train=0.98,test=0.02 --seed 1 --max-per-prompt 1
  distillery export runs/math --out ds --mix general.jsonl:0.2   # 80% reasoning, 20% general
  distillery export runs/math --out ds --format jsonl --columns id,messages
  distillery export runs/math --out ds --layout open-r1 --all   # one row per problem")]
pub(crate) struct Args {
    /// Run directories (or exported datasets / Parquet files of generation rows) to merge.
    #[arg(required = true, value_name = "RUN_DIR")]
    pub inputs: Vec<PathBuf>,
    /// Output directory: DIR/data/<split>-NNNNN-of-NNNNN.<ext> and DIR/README.md.
    #[arg(long, short, value_name = "DIR")]
    pub out: PathBuf,
    #[arg(long, value_enum, default_value = "parquet")]
    pub format: Format,
    /// Row layout: a row per sample, or a row per problem as open-r1's datasets have it
    /// (every sample of the problem, accepted and rejected, in `generations`; the problems
    /// with an accepted sample, or every problem with --all).
    #[arg(long, value_enum, default_value = "samples")]
    pub layout: LayoutArg,
    /// Splits and their shares, assigned per prompt so no prompt is in two splits.
    #[arg(long, default_value = "train=1", value_name = "NAME=RATIO,...")]
    pub split: String,
    /// Seed of the split assignment and row order (same seed and inputs: same files).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Export accepted rows only (the default).
    #[arg(long, conflicts_with = "all")]
    pub accepted_only: bool,
    /// Export rejected rows too, with their verdicts and reasons.
    #[arg(long)]
    pub all: bool,
    #[arg(long, value_enum)]
    pub dedup: Option<DedupArg>,
    /// Keep at most K rows per prompt (the lowest sample indices).
    #[arg(long, value_name = "K")]
    pub max_per_prompt: Option<u32>,
    /// Columns to keep, in order (default: all).
    #[arg(long, value_delimiter = ',', value_name = "COL,...")]
    pub columns: Option<Vec<String>>,
    /// Most rows per file (`50000`) or most uncompressed size (`500MB`, the default).
    #[arg(long, value_name = "ROWS|SIZE")]
    pub shard_size: Option<String>,
    /// Mix in general data (JSONL/JSON/Parquet with `messages` or prompt/response fields, or
    /// another run) as RATIO of the final dataset, e.g. `general.jsonl:0.2`. Repeatable.
    #[arg(long, value_name = "PATH:RATIO")]
    pub mix: Vec<String>,
    /// Replace an existing dataset in --out.
    #[arg(long)]
    pub force: bool,
    /// Export runs that did not complete (incomplete, interrupted, failed or still running)
    /// with what they have; without it such a run is refused.
    #[arg(long)]
    pub allow_incomplete: bool,
    /// Remove rows whose problem overlaps these benchmarks (gsm8k, math500, aime24, humaneval,
    /// or FILE.jsonl:FIELD), as `distillery decontaminate` does; the removed rows are listed in
    /// contamination.jsonl and counted in the card.
    #[arg(long, value_delimiter = ',', value_name = "BENCH")]
    pub decontaminate: Vec<String>,
    /// Keep local source paths and endpoint URLs in the rows and the card (by default they are
    /// cut to file names and endpoint kinds, so the dataset can be published as it is).
    #[arg(long)]
    pub keep_provenance: bool,
    /// The dataset's licence for the card (`license:`), e.g. `mit`; by default the source's,
    /// read from a LICENSE file beside it.
    #[arg(long)]
    pub license: Option<String>,
    /// Where the shipped benchmarks are, for --decontaminate.
    #[arg(long, default_value = "datasets")]
    pub datasets_dir: std::path::PathBuf,
}

pub(crate) fn options(args: Args) -> anyhow::Result<ExportOptions> {
    let mut options = ExportOptions::new(args.inputs, args.out);
    options.format = match args.format {
        Format::Parquet => ExportFormat::Parquet,
        Format::Jsonl => ExportFormat::Jsonl,
    };
    options.layout = match args.layout {
        LayoutArg::Samples => Layout::Samples,
        LayoutArg::OpenR1 => Layout::OpenR1,
    };
    options.splits = parse_splits(&args.split)?;
    options.seed = args.seed;
    options.which = if args.all {
        Which::All
    } else {
        Which::Accepted
    };
    options.dedup = args.dedup.map(|d| match d {
        DedupArg::Exact => Dedup::Exact,
        DedupArg::Prompt => Dedup::Prompt,
    });
    options.max_per_prompt = args.max_per_prompt;
    options.columns = args.columns;
    if let Some(size) = &args.shard_size {
        options.shard_size = size.parse::<ShardSize>()?;
    }
    options.mix = args
        .mix
        .iter()
        .map(|m| m.parse::<MixSource>())
        .collect::<Result<_, _>>()?;
    options.force = args.force;
    options.allow_incomplete = args.allow_incomplete;
    options.keep_provenance = args.keep_provenance;
    options.license = args.license;
    if !args.decontaminate.is_empty() {
        let mut items = Vec::new();
        for benchmark in &args.decontaminate {
            items.extend(distillery_decontam::load_benchmark(
                &args.datasets_dir,
                benchmark,
            )?);
        }
        options.decontaminate = Some(std::sync::Arc::new(distillery_decontam::Index::new(
            items,
            distillery_decontam::Options::default(),
        )));
    }
    Ok(options)
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let options = options(args)?;
    let report =
        export(&options).with_context(|| format!("exporting to {}", options.out.display()))?;
    for warning in &report.warnings {
        tracing::warn!("{warning}");
    }
    crate::outln!("exported to {}", report.out.display())?;
    for input in &report.inputs {
        crate::outln!(
            "  from {} ({}): {} generations, {} accepted, {} rejected",
            input.path.display(),
            input.name,
            input.generations,
            input.accepted,
            input.rejected
        )?;
    }
    crate::outln!(
        "  {} rows selected, {} dropped by dedup, {} by max-per-prompt",
        report.rows_selected,
        report.dropped_by_dedup,
        report.dropped_by_max_per_prompt
    )?;
    for (benchmark, n) in &report.dropped_by_contamination {
        crate::outln!("  {n} dropped as contaminated by {benchmark} (see contamination.jsonl)")?;
    }
    for mix in &report.mix {
        crate::outln!(
            "  mixed {} rows of {} (wanted {}, {} usable, {} skipped)",
            mix.used,
            mix.path.display(),
            mix.wanted,
            mix.available,
            mix.skipped
        )?;
    }
    for split in &report.splits {
        crate::outln!(
            "  {}: {} {} in {} file(s)",
            split.name,
            split.rows,
            match options.layout {
                Layout::Samples => "rows",
                Layout::OpenR1 => "problems",
            },
            split.files.len()
        )?;
    }
    crate::outln!("  dataset card: {}", report.card.display())?;
    Ok(ExitCode::SUCCESS)
}

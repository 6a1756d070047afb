//! `distillery decontaminate`: remove training problems that overlap the benchmarks a student
//! will be measured on, listing each with the benchmark item it matched.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use distillery_decontam::{Index, Options, load_benchmark};
use serde_json::{Value, json};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The training problems: a JSONL, JSON or Parquet file.
    pub input: PathBuf,
    /// The field of each row holding the problem text.
    #[arg(long, default_value = "problem")]
    pub field: String,
    /// Benchmarks to protect: gsm8k, math500, aime24, humaneval (shipped in --datasets-dir), or
    /// FILE.jsonl:FIELD.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "gsm8k,math500,aime24,humaneval"
    )]
    pub against: Vec<String>,
    /// Where the shipped benchmarks are.
    #[arg(long, default_value = "datasets")]
    pub datasets_dir: PathBuf,
    /// The clean rows, as JSONL.
    #[arg(long, short)]
    pub out: PathBuf,
    /// The removed rows with what they matched (default: OUT with `.removed.jsonl`).
    #[arg(long)]
    pub removed: Option<PathBuf>,
    /// Words per n-gram.
    #[arg(long, default_value_t = 8)]
    pub ngram: usize,
    /// Share of content words that makes a near duplicate; 0 turns the check off.
    #[arg(long, default_value_t = 0.7)]
    pub near_duplicate: f64,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut items = Vec::new();
    for benchmark in &args.against {
        items.extend(load_benchmark(&args.datasets_dir, benchmark)?);
    }
    if items.is_empty() {
        bail!("no benchmark items to decontaminate against (--against)");
    }
    let index = Index::new(
        items,
        Options {
            ngram: args.ngram,
            near_duplicate: (args.near_duplicate > 0.0).then_some(args.near_duplicate),
        },
    );
    let removed_path = args
        .removed
        .clone()
        .unwrap_or_else(|| args.out.with_extension("removed.jsonl"));
    let create = |path: &PathBuf| -> anyhow::Result<BufWriter<File>> {
        Ok(BufWriter::new(
            File::create(path).with_context(|| format!("create {}", path.display()))?,
        ))
    };
    let (mut clean, mut removed) = (create(&args.out)?, create(&removed_path)?);
    let (mut kept, mut bad) = (0u64, 0u64);
    let mut hits: BTreeMap<String, u64> = BTreeMap::new();
    for item in super::raw_rows(&args.input)? {
        let (row, value) = item?;
        let text = match &value {
            Ok(value) => value.get(&args.field).and_then(Value::as_str),
            Err(_) => None,
        };
        let (Ok(value), Some(text)) = (&value, text) else {
            let why = match &value {
                Err(entry) => format!("{}: {}", entry.reason, entry.detail),
                Ok(_) => format!("no text field `{}`", args.field),
            };
            eprintln!("error: {}:{row}: {why}", args.input.display());
            // Kept with the removed rows, so that nothing is lost.
            writeln!(
                removed,
                "{}",
                json!({ "row": row, "error": why, "data": value.ok() })
            )?;
            bad += 1;
            continue;
        };
        match index.check(text) {
            Some(found) => {
                *hits.entry(found.benchmark.clone()).or_default() += 1;
                writeln!(
                    removed,
                    "{}",
                    json!({ "row": row, "matched": found, "data": value })
                )?;
            }
            None => {
                kept += 1;
                writeln!(clean, "{value}")?;
            }
        }
    }
    clean.flush()?;
    removed.flush()?;
    let removed_total: u64 = hits.values().sum();
    crate::outln!(
        "{}: kept {kept}, removed {removed_total} ({} benchmark items from {})",
        args.input.display(),
        index.len(),
        index
            .benchmarks()
            .iter()
            .map(|(b, n)| format!("{b} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    )?;
    for (benchmark, n) in &hits {
        crate::outln!("  {benchmark:<12} {n:>6} removed")?;
    }
    crate::outln!(
        "clean rows: {}; removed rows: {}",
        args.out.display(),
        removed_path.display()
    )?;
    if bad > 0 {
        eprintln!(
            "{bad} rows could not be read (named above); they are in {} with their error",
            removed_path.display()
        );
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}

//! `distillery verify`: grade answers with the math verifier outside a run, and regrade a run or
//! an exported dataset when the verifier has changed, without asking the teacher again.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use distillery_pipeline::grade::check_result;
use distillery_store::Which;
use distillery_store::record::{Generation, first_failure};
use distillery_store::shard::AtomicParquet;
use distillery_verify::math::{self, Graded, Precision, VerifyConfig};
use serde_json::{Value, json};

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["file", "gold", "regrade"])))]
pub(crate) struct Args {
    /// A JSONL, JSON or Parquet file of rows with a gold answer and a prediction (a whole model
    /// output or a bare answer). One JSON line per row goes to stdout (or --out).
    pub file: Option<PathBuf>,
    /// Grade one pair instead of a file: the gold answer…
    #[arg(long, requires = "prediction", conflicts_with_all = ["file", "regrade"])]
    pub gold: Option<String>,
    /// …and the prediction.
    #[arg(long, requires = "gold")]
    pub prediction: Option<String>,
    /// The field of each row that holds the gold answer.
    #[arg(long, default_value = "gold")]
    pub gold_field: String,
    /// The field of each row that holds the prediction.
    #[arg(long, default_value = "prediction")]
    pub prediction_field: String,
    /// Re-verify every row of a run directory or an exported dataset with the current verifier;
    /// writes the regraded rows and the verdicts that changed to --out.
    #[arg(long, value_name = "RUN_OR_DATASET", conflicts_with = "file")]
    pub regrade: Option<PathBuf>,
    /// Where results go: a file for rows (default stdout), a new directory for --regrade.
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// Math-Verify's `float_rounding`: compare decimals rounded to this many places, instead
    /// of asking a decimal for 4 correctly rounded significant digits.
    #[arg(long, value_name = "PLACES")]
    pub float_rounding: Option<u32>,
    /// Math-Verify's `strict = False`: a tuple may equal a set in any order.
    #[arg(long)]
    pub no_strict: bool,
}

impl Args {
    fn config(&self) -> VerifyConfig {
        VerifyConfig {
            precision: self
                .float_rounding
                .map_or(VerifyConfig::default().precision, Precision::DecimalPlaces),
            strict: !self.no_strict,
            ..VerifyConfig::default()
        }
    }
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = args.config();
    if let Some(run_or_dataset) = &args.regrade {
        let Some(out) = &args.out else {
            bail!("--regrade needs --out DIR: the directory the regraded rows are written to");
        };
        return regrade(run_or_dataset, out, &config);
    }
    let mut out: Box<dyn Write> = match &args.out {
        Some(path) => Box::new(BufWriter::new(
            File::create(path).with_context(|| format!("create {}", path.display()))?,
        )),
        None => Box::new(BufWriter::new(std::io::stdout().lock())),
    };
    if let (Some(gold), Some(prediction)) = (&args.gold, &args.prediction) {
        let graded = math::grade_with(gold, prediction, &config);
        let correct = graded.verdict.is_pass();
        write_line(&mut out, &graded_json(None, None, &graded))?;
        out.flush()?;
        return Ok(if correct {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    let Some(file) = &args.file else {
        bail!("give a FILE, --gold and --prediction, or --regrade");
    };
    verify_file(file, &args, &config, &mut out)
}

/// Grades every row; a row that cannot be graded gets an error line naming its field, and the
/// command exits 2 once every other row is written.
fn verify_file(
    file: &Path,
    args: &Args,
    config: &VerifyConfig,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let mut counts: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut bad_rows = 0u64;
    for item in super::raw_rows(file)? {
        let (row, value) = item?;
        let graded = match value {
            Ok(value) => {
                let text = |field: &str| match value.get(field) {
                    Some(Value::String(s)) => Ok(s.clone()),
                    Some(Value::Number(n)) => Ok(n.to_string()),
                    Some(other) => Err(format!("field `{field}` is {other}, not a string")),
                    None => Err(format!("field `{field}` is missing")),
                };
                let id = value.get("id").cloned();
                text(&args.gold_field)
                    .and_then(|gold| Ok((gold, text(&args.prediction_field)?)))
                    .map(|(gold, prediction)| (id, math::grade_with(&gold, &prediction, config)))
            }
            Err(entry) => Err(format!("{}: {}", entry.reason, entry.detail)),
        };
        match graded {
            Ok((id, graded)) => {
                *counts.entry(graded.verdict.code()).or_default() += 1;
                write_line(out, &graded_json(Some(row), id, &graded))?;
            }
            Err(message) => {
                bad_rows += 1;
                write_line(out, &json!({ "row": row, "error": message }))?;
                eprintln!("error: {}:{row}: {message}", file.display());
            }
        }
    }
    out.flush()?;
    let summary: Vec<String> = counts.iter().map(|(k, v)| format!("{k} {v}")).collect();
    eprintln!(
        "{}: {} rows graded ({}){}",
        file.display(),
        counts.values().sum::<u64>(),
        summary.join(", "),
        if bad_rows > 0 {
            format!(", {bad_rows} rows could not be read")
        } else {
            String::new()
        }
    );
    Ok(if bad_rows > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

fn graded_json(row: Option<u64>, id: Option<Value>, graded: &Graded) -> Value {
    let mut line = json!({
        "correct": graded.verdict.is_pass(),
        "extracted": graded.answer.as_ref().map(|a| a.text.as_str()),
        "rule": graded.answer.as_ref().map(|a| a.rule),
        "reason": graded.verdict.code(),
        "detail": graded.verdict.reason().map(ToString::to_string),
    });
    if let Some(row) = row {
        line["row"] = json!(row);
    }
    if let Some(id) = id {
        line["id"] = id;
    }
    line
}

fn write_line(out: &mut dyn Write, line: &Value) -> anyhow::Result<()> {
    match writeln!(out, "{line}") {
        // `distillery verify … | head` is not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        other => Ok(other?),
    }
}

/// One row whose verdict changed.
struct Change {
    id: String,
    sample_index: u32,
    before: Verdict,
    after: Verdict,
}

#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Verdict {
    accepted: bool,
    reason: String,
    extracted: Option<String>,
}

impl Verdict {
    fn of(row: &Generation) -> Verdict {
        Verdict {
            accepted: row.accepted,
            reason: row
                .reject_reason
                .clone()
                .unwrap_or_else(|| "accepted".into()),
            extracted: row.extracted_answer.clone(),
        }
    }
}

/// Re-verifies the math check of every row of `input` and writes `out/regraded.parquet` (every
/// row, accepted or not, with its new checks) and `out/changes.jsonl` (the rows whose verdict
/// changed), then prints the table of changes. Other checks (format, length, language, code)
/// keep their recorded verdicts: they do not depend on the math verifier.
fn regrade(input: &Path, out: &Path, config: &VerifyConfig) -> anyhow::Result<ExitCode> {
    if out.exists() && out.read_dir().map_or(true, |mut d| d.next().is_some()) {
        bail!("{}: already exists and is not empty", out.display());
    }
    std::fs::create_dir_all(out).with_context(|| format!("create {}", out.display()))?;
    let reader = distillery_store::read_generations(input, Which::All)
        .with_context(|| format!("read {}", input.display()))?;
    let mut parquet = AtomicParquet::create(
        &out.join("regraded.parquet"),
        distillery_store::generation_schema(),
        &[(
            "distillery.regraded_from".into(),
            input.display().to_string(),
        )],
    )?;
    let mut changes: Vec<Change> = Vec::new();
    let (mut rows, mut without_reference) = (0u64, 0u64);
    let mut batch: Vec<Generation> = Vec::with_capacity(1024);
    for row in reader {
        let mut row = row.with_context(|| format!("read {}", input.display()))?;
        rows += 1;
        let before = Verdict::of(&row);
        if !regrade_row(&mut row, config) {
            without_reference += 1;
        }
        let after = Verdict::of(&row);
        if before != after {
            changes.push(Change {
                id: row.id.clone(),
                sample_index: row.sample_index,
                before,
                after,
            });
        }
        batch.push(row);
        if batch.len() == batch.capacity() {
            parquet.write_generations(&batch)?;
            batch.clear();
        }
    }
    parquet.write_generations(&batch)?;
    parquet.finish()?;

    let changes_path = out.join("changes.jsonl");
    let mut changes_file = BufWriter::new(
        File::create(&changes_path)
            .with_context(|| format!("create {}", changes_path.display()))?,
    );
    let mut table: BTreeMap<(String, String), u64> = BTreeMap::new();
    for change in &changes {
        let line = json!({
            "id": change.id,
            "sample_index": change.sample_index,
            "before": { "accepted": change.before.accepted, "reason": change.before.reason, "extracted": change.before.extracted },
            "after": { "accepted": change.after.accepted, "reason": change.after.reason, "extracted": change.after.extracted },
        });
        writeln!(changes_file, "{line}")?;
        *table
            .entry((change.before.reason.clone(), change.after.reason.clone()))
            .or_default() += 1;
    }
    changes_file.flush()?;
    crate::outln!(
        "regraded {rows} rows of {} into {}: {} verdicts changed{}",
        input.display(),
        out.display(),
        changes.len(),
        if without_reference > 0 {
            format!(
                " ({without_reference} rows have no reference answer or math check and keep their verdict)"
            )
        } else {
            String::new()
        }
    )?;
    if !table.is_empty() {
        crate::outln!("{:<28} {:<28} {:>8}", "before", "after", "rows")?;
        for ((before, after), n) in &table {
            crate::outln!("{before:<28} {after:<28} {n:>8}")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Replaces the row's math verdict with the current verifier's. Returns false when the row has
/// no reference answer or was not math-checked.
fn regrade_row(row: &mut Generation, config: &VerifyConfig) -> bool {
    let Some(reference) = row.reference_answer.as_deref() else {
        return false;
    };
    let Some(position) = row.checks.iter().position(|c| c.check == "math") else {
        return false;
    };
    let graded = math::grade_with(reference, &row.content, config);
    row.extracted_answer = graded.answer.as_ref().map(|a| a.text.clone());
    row.checks[position] = check_result(&graded.verdict);
    row.accepted = row.checks.iter().all(|c| c.passed);
    row.reject_reason = (!row.accepted).then(|| first_failure(&row.checks));
    true
}

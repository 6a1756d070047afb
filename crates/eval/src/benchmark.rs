//! Which problems an evaluation asks, and how each is checked.
//!
//! A benchmark is a name (`gsm8k`, `math500`, `aime24`, `humaneval`: files under the datasets directory,
//! with fields and prompt known in advance) or any JSONL, JSON or Parquet file, read through the
//! pipeline's own [`SourceReader`] so that a file a pipeline reads, eval reads the same way.
//! For a file, the fields are guessed from its first row unless given: the problem in
//! `question`, `problem`, `prompt`, `input` or `instruction`, the reference in `answer`,
//! `final_answer` or `solution`, and a row with `test` and `entry_point` is a HumanEval-style
//! code task.

use std::path::{Path, PathBuf};

use distillery_source::{RawRows, SourceReader};
use distillery_spec::{AnswerExtract, Source, SourceFormat, Template};
use distillery_teacher::{Message, Role};
use distillery_verify::code::HumanEvalTask;
use distillery_verify::math;
use serde_json::{Map, Value};

use crate::EvalError;

/// Where MATH-500 is looked for, under the datasets directory.
pub const MATH500_PATH: &str = "math500/test.jsonl";
pub const GSM8K_PATH: &str = "gsm8k/test.jsonl";
pub const HUMANEVAL_PATH: &str = "humaneval/HumanEval.jsonl";
pub const AIME24_PATH: &str = "aime24/test.jsonl";

/// The user turn for a code task: the function to complete, asked for whole in a fenced block
/// (the sandbox runs the last block after the prompt, so a full redefinition works).
pub const CODE_INSTRUCTION: &str = "Complete the following Python function. Reply with the whole \
function, including its signature, in one ```python code block.";

const PROMPT_FIELDS: &[&str] = &["question", "problem", "prompt", "input", "instruction"];
const ANSWER_FIELDS: &[&str] = &["answer", "final_answer", "solution"];
const ID_FIELDS: &[&str] = &["id", "unique_id", "task_id"];

/// What `--benchmark` named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Benchmark {
    Gsm8k,
    Math500,
    Aime24,
    HumanEval,
    File(PathBuf),
}

impl Benchmark {
    /// A known name (any case), else a file path.
    pub fn parse(text: &str) -> Self {
        match text.to_ascii_lowercase().as_str() {
            "gsm8k" => Self::Gsm8k,
            "math500" | "math-500" => Self::Math500,
            "aime24" | "aime2024" | "aime-2024" => Self::Aime24,
            "humaneval" => Self::HumanEval,
            _ => Self::File(PathBuf::from(text)),
        }
    }

    /// The name reports carry: the benchmark's, or the file's stem, after its directory's
    /// name when the stem only names a split (`datasets/arith/test.jsonl` is `arith-test`).
    pub fn name(&self) -> String {
        match self {
            Self::Gsm8k => "gsm8k".into(),
            Self::Math500 => "math500".into(),
            Self::Aime24 => "aime24".into(),
            Self::HumanEval => "humaneval".into(),
            Self::File(path) => {
                let text = |s: &std::ffi::OsStr| s.to_string_lossy().into_owned();
                let Some(stem) = path.file_stem().map(text) else {
                    return path.display().to_string();
                };
                let split = [
                    "test",
                    "train",
                    "validation",
                    "valid",
                    "dev",
                    "eval",
                    "data",
                ];
                match path.parent().and_then(Path::file_name).map(text) {
                    Some(dir) if split.contains(&stem.as_str()) => format!("{dir}-{stem}"),
                    _ => stem,
                }
            }
        }
    }
}

/// Settings the user gave; anything left `None` takes the benchmark's default.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub prompt_field: Option<String>,
    pub answer_field: Option<String>,
    pub answer_extract: Option<AnswerExtract>,
    pub id_field: Option<String>,
    /// A prompt template with `{field}` placeholders (see [`Template`]).
    pub template: Option<String>,
    pub system: Option<String>,
    /// The answer layout the default math prompt asks for (`tagged`: `<answer>` tags, the
    /// pipeline's `[prompt] assistant_format`); `None` is R1's.
    pub assistant_format: Option<distillery_spec::AssistantFormat>,
    /// The first N rows only.
    pub limit: Option<u64>,
}

/// How a benchmark's answers are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskKind {
    /// The final answer is compared with the reference (math equivalence).
    Math,
    /// The code is run against the row's tests (HumanEval layout).
    Code {
        tests_field: String,
        entry_point_field: String,
    },
}

/// A benchmark resolved to a file, its fields and its prompt.
#[derive(Debug, Clone)]
pub struct BenchmarkConfig {
    pub name: String,
    pub source: Source,
    pub template: Template,
    pub system: Option<String>,
    pub task: TaskKind,
}

/// One problem, ready to send and to check.
#[derive(Debug, Clone)]
pub struct Problem {
    pub id: String,
    /// Row number in the source (1-based line for JSONL, 0-based index for JSON and Parquet).
    pub row: u64,
    /// The user turn, template applied.
    pub prompt: String,
    pub system: Option<String>,
    /// The reference answer as the checker reads it (math), if any.
    pub reference: Option<String>,
    pub check: Check,
}

/// What a problem's answers are checked against.
#[derive(Debug, Clone)]
pub enum Check {
    Math(math::Reference),
    Code(HumanEvalTask),
}

impl Problem {
    /// The conversation sent to the model: the optional system prompt, then the user turn.
    pub fn messages(&self) -> Vec<Message> {
        let mut messages = Vec::with_capacity(2);
        if let Some(system) = &self.system {
            messages.push(Message::new(Role::System, system.clone()));
        }
        messages.push(Message::new(Role::User, self.prompt.clone()));
        messages
    }
}

/// The code prompt, reading the function to complete from `field`.
pub fn code_template(field: &str) -> Template {
    Template::parse(&format!("{CODE_INSTRUCTION}\n\n```python\n{{{field}}}```"))
}

struct Defaults {
    path: PathBuf,
    prompt_field: String,
    answer_field: Option<String>,
    answer_extract: AnswerExtract,
    id_field: Option<String>,
    task: TaskKind,
}

impl BenchmarkConfig {
    /// Finds the benchmark's file (named benchmarks under `datasets_dir`) and settles its
    /// fields and prompt, `overrides` first.
    pub fn resolve(
        benchmark: &Benchmark,
        datasets_dir: &Path,
        overrides: &Overrides,
    ) -> Result<Self, EvalError> {
        let defaults = match benchmark {
            Benchmark::Gsm8k => Defaults {
                path: shipped(benchmark, datasets_dir.join(GSM8K_PATH))?,
                prompt_field: "question".into(),
                answer_field: Some("answer".into()),
                answer_extract: AnswerExtract::Gsm8k,
                id_field: None,
                task: TaskKind::Math,
            },
            Benchmark::Math500 => {
                let path = datasets_dir.join(MATH500_PATH);
                if !path.is_file() {
                    return Err(EvalError::NotShipped {
                        message: math500_missing(&path),
                    });
                }
                Defaults {
                    path,
                    prompt_field: "problem".into(),
                    answer_field: Some("answer".into()),
                    answer_extract: AnswerExtract::Verbatim,
                    id_field: Some("unique_id".into()),
                    task: TaskKind::Math,
                }
            }
            Benchmark::Aime24 => Defaults {
                path: shipped(benchmark, datasets_dir.join(AIME24_PATH))?,
                prompt_field: "problem".into(),
                answer_field: Some("answer".into()),
                answer_extract: AnswerExtract::Verbatim,
                id_field: Some("id".into()),
                task: TaskKind::Math,
            },
            Benchmark::HumanEval => Defaults {
                path: shipped(benchmark, datasets_dir.join(HUMANEVAL_PATH))?,
                prompt_field: "prompt".into(),
                answer_field: None,
                answer_extract: AnswerExtract::Verbatim,
                id_field: Some("task_id".into()),
                task: code_task(),
            },
            Benchmark::File(path) => guess_defaults(&existing(path.clone())?, overrides)?,
        };
        let format = SourceFormat::from_extension(&defaults.path).ok_or_else(|| {
            EvalError::UnknownFormat {
                path: defaults.path.clone(),
            }
        })?;
        let prompt_field = overrides
            .prompt_field
            .clone()
            .unwrap_or(defaults.prompt_field);
        let answer_field = overrides.answer_field.clone().or(defaults.answer_field);
        let task = defaults.task;
        if task == TaskKind::Math && answer_field.is_none() {
            return Err(EvalError::Config(format!(
                "{}: a math benchmark needs reference answers; name their field with --answer-field",
                defaults.path.display()
            )));
        }
        // The pipeline's own default prompt for math, so that a student trained on a
        // pipeline's traces is asked exactly what it learnt from.
        let template = match (&overrides.template, &task) {
            (Some(text), _) => Template::parse(text),
            (None, TaskKind::Math) => match overrides.assistant_format.unwrap_or_default() {
                distillery_spec::AssistantFormat::R1 => Template::r1_math(&prompt_field),
                distillery_spec::AssistantFormat::Tagged => Template::r1_tagged(&prompt_field),
            },
            (None, TaskKind::Code { .. }) => code_template(&prompt_field),
        };
        if template.fields().next().is_none() {
            return Err(EvalError::Config(format!(
                "the prompt template {:?} has no `{{field}}` placeholder, so every prompt would be the same",
                template.as_str()
            )));
        }
        Ok(Self {
            name: benchmark.name(),
            source: Source {
                path: defaults.path,
                format,
                id_field: overrides.id_field.clone().or(defaults.id_field),
                prompt_field,
                // Code tasks carry their tests, not an answer to compare with.
                answer_field: match task {
                    TaskKind::Math => answer_field,
                    TaskKind::Code { .. } => None,
                },
                answer_extract: overrides.answer_extract.unwrap_or(defaults.answer_extract),
                metadata: Default::default(),
                limit: overrides.limit,
            },
            template,
            system: overrides.system.clone(),
            task,
        })
    }

    /// Reads every problem (up to the limit). A row that cannot be used is an error naming
    /// the file, the row and the field: skipping it would quietly change what is measured.
    pub fn load(&self) -> Result<Vec<Problem>, EvalError> {
        let source = &self.source;
        let bad = |row: u64, reason: &str, detail: String| EvalError::BadRow {
            at: location(source, row),
            path: source.path.clone(),
            row,
            reason: reason.into(),
            detail,
        };
        let mut problems = Vec::new();
        for item in SourceReader::open(source)? {
            let row = match item? {
                Ok(row) => row,
                Err(entry) => return Err(bad(entry.source_row, &entry.reason, entry.detail)),
            };
            let number = row.row_number;
            // Rendered as the pipeline renders a source row.
            let prompt = row.render(&self.template).map_err(|missing| {
                bad(
                    number,
                    "source.missing_field",
                    format!(
                        "row {number}: the prompt template uses {{{}}}, which this row lacks (or is not text)",
                        missing.field
                    ),
                )
            })?;
            let (check, reference) = match &self.task {
                TaskKind::Math => {
                    let Some(gold) = row.reference_answer.as_deref() else {
                        return Err(bad(
                            number,
                            "source.no_answer",
                            format!("row {number} has no reference answer"),
                        ));
                    };
                    let reference = math::Reference::new(gold);
                    let text = reference.answer().text().to_owned();
                    (Check::Math(reference), Some(text))
                }
                TaskKind::Code {
                    tests_field,
                    entry_point_field,
                } => {
                    let field = |name: &str| {
                        row.field(name).ok_or_else(|| {
                            bad(
                                number,
                                "source.missing_field",
                                format!(
                                    "row {number} has no text field `{name}`, which the code check needs"
                                ),
                            )
                        })
                    };
                    let task = HumanEvalTask {
                        task_id: row.id.clone(),
                        prompt: field(&source.prompt_field)?,
                        canonical_solution: String::new(),
                        test: field(tests_field)?,
                        entry_point: field(entry_point_field)?,
                    };
                    (Check::Code(task), None)
                }
            };
            problems.push(Problem {
                id: row.id,
                row: number,
                prompt,
                system: self.system.clone(),
                reference,
                check,
            });
        }
        if problems.is_empty() {
            return Err(EvalError::Empty {
                path: source.path.clone(),
            });
        }
        Ok(problems)
    }
}

/// `file:line` for JSONL, whose rows are line numbers; the file alone for JSON and Parquet,
/// whose row details name the element or row.
fn location(source: &Source, row: u64) -> String {
    match source.format {
        SourceFormat::Jsonl => format!("{}:{row}", source.path.display()),
        SourceFormat::Json | SourceFormat::Parquet => source.path.display().to_string(),
    }
}

fn code_task() -> TaskKind {
    TaskKind::Code {
        tests_field: "test".into(),
        entry_point_field: "entry_point".into(),
    }
}

fn existing(path: PathBuf) -> Result<PathBuf, EvalError> {
    if path.is_file() {
        Ok(path)
    } else {
        Err(EvalError::MissingFile { path })
    }
}

/// A shipped benchmark's file, or an error saying where it was looked for.
fn shipped(benchmark: &Benchmark, path: PathBuf) -> Result<PathBuf, EvalError> {
    if path.is_file() {
        Ok(path)
    } else {
        Err(EvalError::NotShipped {
            message: format!(
                "the {} benchmark reads {}, which does not exist; run from the Distillery \
                 checkout or point --datasets-dir at its datasets/ directory",
                benchmark.name(),
                path.display()
            ),
        })
    }
}

fn math500_missing(path: &Path) -> String {
    format!(
        "MATH-500 is not shipped with Distillery and {} does not exist. Put its test split there \
         as JSONL, one object per problem with `problem` and `answer` fields (and optionally \
         `unique_id`), e.g. the `test` split of the Hugging Face dataset HuggingFaceH4/MATH-500; \
         or pass any file: --benchmark path/to/math500.jsonl --prompt-field problem --answer-field answer",
        path.display()
    )
}

/// Fields of a benchmark file, guessed from its first row where the user named none.
fn guess_defaults(path: &Path, overrides: &Overrides) -> Result<Defaults, EvalError> {
    let format = SourceFormat::from_extension(path).ok_or_else(|| EvalError::UnknownFormat {
        path: path.to_owned(),
    })?;
    let first = first_row(path, format)?;
    let has = |name: &str| first.as_ref().is_some_and(|row| row.contains_key(name));
    let pick = |candidates: &[&str]| candidates.iter().find(|c| has(c)).map(|c| c.to_string());
    let code = overrides.answer_field.is_none() && has("test") && has("entry_point");
    let prompt_field = match &overrides.prompt_field {
        Some(field) => field.clone(),
        None => pick(if code { &["prompt"] } else { PROMPT_FIELDS }).ok_or_else(|| {
            let fields = first
                .as_ref()
                .map(|row| row.keys().cloned().collect::<Vec<_>>().join(", "))
                .unwrap_or_default();
            EvalError::Config(format!(
                "{}: cannot tell which field holds the problem (its first row has: {fields}); \
                 name it with --prompt-field, and the reference with --answer-field",
                path.display()
            ))
        })?,
    };
    let answer_field = if code {
        None
    } else {
        overrides
            .answer_field
            .clone()
            .or_else(|| pick(ANSWER_FIELDS))
    };
    // A GSM8K-style worked solution: read the answer after `####`, and insist every row has one.
    let answer_extract = match answer_field
        .as_deref()
        .and_then(|f| first.as_ref()?.get(f)?.as_str())
    {
        Some(text) if text.contains("####") => AnswerExtract::Gsm8k,
        _ => AnswerExtract::Verbatim,
    };
    Ok(Defaults {
        path: path.to_owned(),
        prompt_field,
        answer_field,
        answer_extract,
        id_field: pick(ID_FIELDS),
        task: if code { code_task() } else { TaskKind::Math },
    })
}

/// The first row that parses as an object, if any (a broken one is reported later, by row).
fn first_row(path: &Path, format: SourceFormat) -> Result<Option<Map<String, Value>>, EvalError> {
    for item in RawRows::open(path, format)?.take(16) {
        if let (_, Ok(Value::Object(row))) = item? {
            return Ok(Some(row));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    /// The prompt the pipeline sends for a GSM8K-style row under the default template.
    const INSTRUCTION: &str =
        "\nPlease reason step by step, and put your final answer within \\boxed{}.";

    fn datasets() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets")
    }

    fn load(benchmark: &Benchmark, overrides: &Overrides) -> Result<Vec<Problem>, EvalError> {
        BenchmarkConfig::resolve(benchmark, &datasets(), overrides)?.load()
    }

    fn limit(n: u64) -> Overrides {
        Overrides {
            limit: Some(n),
            ..Overrides::default()
        }
    }

    fn file(dir: &Path, name: &str, lines: &[&str]) -> PathBuf {
        let path = dir.join(name);
        let mut out = std::fs::File::create(&path).unwrap();
        for line in lines {
            writeln!(out, "{line}").unwrap();
        }
        path
    }

    #[test]
    fn parses_names_and_paths() {
        assert_eq!(Benchmark::parse("GSM8K"), Benchmark::Gsm8k);
        assert_eq!(Benchmark::parse("math-500"), Benchmark::Math500);
        assert_eq!(Benchmark::parse("humaneval"), Benchmark::HumanEval);
        let file = Benchmark::parse("data/held_out.jsonl");
        assert_eq!(file, Benchmark::File("data/held_out.jsonl".into()));
        assert_eq!(file.name(), "held_out");
        assert_eq!(
            Benchmark::parse("datasets/arith/test.jsonl").name(),
            "arith-test"
        );
        assert_eq!(Benchmark::parse("test.jsonl").name(), "test");
    }

    #[test]
    fn gsm8k_is_asked_as_the_pipeline_asks_it() {
        let problems = load(&Benchmark::Gsm8k, &limit(5)).unwrap();
        assert_eq!(problems.len(), 5);
        let first = &problems[0];
        assert!(
            first
                .prompt
                .starts_with("Janet\u{2019}s ducks lay 16 eggs per day."),
            "{}",
            first.prompt
        );
        assert!(first.prompt.ends_with(INSTRUCTION), "{}", first.prompt);
        assert_eq!(first.reference.as_deref(), Some("18"));
        assert_eq!(first.row, 1);
        assert!(first.system.is_none());
        // A student trained on tagged traces is asked for the tags.
        let tagged = Overrides {
            assistant_format: Some(distillery_spec::AssistantFormat::Tagged),
            ..limit(1)
        };
        let problems = load(&Benchmark::Gsm8k, &tagged).unwrap();
        assert!(
            problems[0]
                .prompt
                .ends_with(distillery_spec::R1_TAGGED_INSTRUCTION),
            "{}",
            problems[0].prompt
        );
        let messages = first.messages();
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].role, Role::User);
        assert_eq!(messages[0].content, first.prompt);

        // Exactly what a pipeline with the default prompt renders for the same row.
        let line = std::fs::read_to_string(datasets().join(GSM8K_PATH)).unwrap();
        let row: Map<String, Value> = serde_json::from_str(line.lines().next().unwrap()).unwrap();
        let pipeline = distillery_spec::Pipeline::parse(
            "name = \"t\"\n[source]\npath = \"x.jsonl\"\nprompt_field = \"question\"\nanswer_field = \"answer\"\n[teacher]\nkind = \"mock\"\n",
            Path::new("t.toml"),
            Path::new("/d"),
        )
        .unwrap();
        let expected = pipeline
            .prompt
            .template
            .render(|f| row.get(f).and_then(Value::as_str))
            .unwrap();
        assert_eq!(first.prompt, expected);
    }

    #[test]
    fn humaneval_is_a_code_benchmark() {
        let problems = load(&Benchmark::HumanEval, &limit(3)).unwrap();
        assert_eq!(problems.len(), 3);
        assert_eq!(problems[0].id, "HumanEval/0");
        assert!(problems[0].prompt.starts_with(CODE_INSTRUCTION));
        assert!(problems[0].prompt.contains("def has_close_elements"));
        assert!(problems[0].reference.is_none());
        let Check::Code(task) = &problems[0].check else {
            panic!("not a code check")
        };
        assert_eq!(task.entry_point, "has_close_elements");
        assert!(task.test.contains("def check"));
        assert!(task.prompt.starts_with("from typing import List"));
    }

    #[test]
    fn math500_absent_says_where_to_put_it() {
        let dir = tempfile::tempdir().unwrap();
        let error =
            BenchmarkConfig::resolve(&Benchmark::Math500, dir.path(), &Overrides::default())
                .unwrap_err();
        let message = error.to_string();
        assert!(matches!(error, EvalError::NotShipped { .. }), "{message}");
        assert!(message.contains("not shipped"), "{message}");
        assert!(message.contains("math500/test.jsonl"), "{message}");
        assert!(message.contains("HuggingFaceH4/MATH-500"), "{message}");
    }

    #[test]
    fn math500_is_read_when_present() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("math500")).unwrap();
        file(
            &dir.path().join("math500"),
            "test.jsonl",
            &[
                r#"{"problem": "What is $\\frac{1}{2}+\\frac{1}{2}$?", "answer": "1", "unique_id": "test/a/1.json"}"#,
            ],
        );
        let config =
            BenchmarkConfig::resolve(&Benchmark::Math500, dir.path(), &Overrides::default())
                .unwrap();
        let problems = config.load().unwrap();
        assert_eq!(problems[0].id, "test/a/1.json");
        assert_eq!(problems[0].reference.as_deref(), Some("1"));
        assert!(problems[0].prompt.ends_with(INSTRUCTION));
    }

    #[test]
    fn a_missing_named_dataset_names_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let error = BenchmarkConfig::resolve(&Benchmark::Gsm8k, dir.path(), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(error.contains("gsm8k/test.jsonl"), "{error}");
        assert!(error.contains("--datasets-dir"), "{error}");
    }

    #[test]
    fn an_unknown_name_that_is_no_file_lists_the_known_ones() {
        let error = load(&Benchmark::parse("gsm9k"), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(error.contains("gsm9k"), "{error}");
        assert!(error.contains("gsm8k, math500, humaneval"), "{error}");
    }

    #[test]
    fn a_gsm8k_style_file_reads_the_answer_after_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let path = file(
            dir.path(),
            "held.jsonl",
            &[
                "{\"question\": \"Rose had 77 balloons and got 15 more. How many?\", \"answer\": \"Add.\\n#### 92\"}",
                "{\"question\": \"What is 3 + 4?\", \"answer\": \"Add.\\n#### 7\"}",
            ],
        );
        let problems = load(&Benchmark::File(path), &Overrides::default()).unwrap();
        let references: Vec<_> = problems.iter().map(|p| p.reference.clone()).collect();
        assert_eq!(references, [Some("92".into()), Some("7".into())]);
        assert_eq!(problems[1].prompt, format!("What is 3 + 4?{INSTRUCTION}"));
        assert_eq!(problems[1].row, 2);
    }

    #[test]
    fn the_arith_hold_out_loads_with_its_answers() {
        let path = datasets().join("arith/test.jsonl");
        if !path.exists() {
            eprintln!("no datasets/arith: skipping");
            return;
        }
        let problems = load(&Benchmark::File(path.clone()), &limit(4)).unwrap();
        assert_eq!(problems.len(), 4);
        let first: Value = serde_json::from_str(
            std::fs::read_to_string(&path)
                .unwrap()
                .lines()
                .next()
                .unwrap(),
        )
        .unwrap();
        let answer = first["answer"].as_str().unwrap();
        let expected = answer.rsplit("####").next().unwrap().trim();
        assert_eq!(problems[0].reference.as_deref(), Some(expected));
    }

    #[test]
    fn fields_and_extraction_can_be_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = file(
            dir.path(),
            "q.jsonl",
            &[r#"{"q": "Compute 6*7.", "sol": "so \\boxed{42}", "key": 9}"#],
        );
        let overrides = Overrides {
            prompt_field: Some("q".into()),
            answer_field: Some("sol".into()),
            answer_extract: Some(AnswerExtract::Boxed),
            id_field: Some("key".into()),
            system: Some("Be brief.".into()),
            ..Overrides::default()
        };
        let problems = load(&Benchmark::File(path.clone()), &overrides).unwrap();
        assert_eq!(problems[0].id, "9");
        assert_eq!(problems[0].reference.as_deref(), Some("42"));
        assert_eq!(problems[0].messages().len(), 2);

        let error = load(&Benchmark::File(path), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(error.contains("--prompt-field"), "{error}");
    }

    #[test]
    fn a_broken_row_is_an_error_naming_file_line_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = file(
            dir.path(),
            "broken.jsonl",
            &[
                "{\"question\": \"1+1?\", \"answer\": \"#### 2\"}",
                "{\"question\": \"2+2?\", \"answer\": \"#### 4\"}",
                "{\"question\": \"3+3?\"}",
            ],
        );
        let error = load(&Benchmark::File(path.clone()), &Overrides::default()).unwrap_err();
        let message = error.to_string();
        assert!(
            message.starts_with(&format!("{}:3: ", path.display())),
            "{message}"
        );
        assert!(message.contains("`answer`"), "{message}");
        assert!(
            matches!(error, EvalError::BadRow { row: 3, .. }),
            "{message}"
        );

        let path = file(
            dir.path(),
            "invalid.jsonl",
            &[
                "{\"question\": \"1+1?\", \"answer\": \"2\"}",
                "{\"question\": ",
            ],
        );
        let message = load(&Benchmark::File(path.clone()), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with(&format!("{}:2: ", path.display())),
            "{message}"
        );
        assert!(message.contains("source.invalid_json"), "{message}");

        // With `####` in the first row, every row must have one.
        let path = file(
            dir.path(),
            "nohash.jsonl",
            &[
                "{\"question\": \"1+1?\", \"answer\": \"#### 2\"}",
                "{\"question\": \"2+2?\", \"answer\": \"4\"}",
            ],
        );
        let message = load(&Benchmark::File(path.clone()), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(message.contains(":2: "), "{message}");
        assert!(message.contains("#### N"), "{message}");
    }

    #[test]
    fn a_template_without_placeholders_or_an_empty_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = file(
            dir.path(),
            "one.jsonl",
            &[r#"{"question": "1+1?", "answer": "2"}"#],
        );
        let overrides = Overrides {
            template: Some("Always the same".into()),
            ..Overrides::default()
        };
        let message = load(&Benchmark::File(path), &overrides)
            .unwrap_err()
            .to_string();
        assert!(message.contains("placeholder"), "{message}");

        let empty = file(dir.path(), "empty.jsonl", &[]);
        let error = load(
            &Benchmark::File(empty),
            &Overrides {
                prompt_field: Some("question".into()),
                answer_field: Some("answer".into()),
                ..Overrides::default()
            },
        )
        .unwrap_err();
        assert!(matches!(error, EvalError::Empty { .. }), "{error}");

        let unknown = file(dir.path(), "data.csv", &["a,b"]);
        let error = load(&Benchmark::File(unknown), &Overrides::default()).unwrap_err();
        assert!(matches!(error, EvalError::UnknownFormat { .. }), "{error}");
    }
}

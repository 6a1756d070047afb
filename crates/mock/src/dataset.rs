//! The data set whose reference solutions the simulator replays, and how a prompt finds its row.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{PoisonError, RwLock};

use serde_json::Value;
use serde_json::value::RawValue;

use distillery_spec::mock::MockTask;

use crate::code::CodeSolution;
use crate::error::MockError;
use crate::trace::Solution;

/// Questions and reference solutions, indexed by question.
#[derive(Debug, Clone, Default)]
pub struct MockDataset {
    rows: Vec<Row>,
    /// Trimmed question → index in `rows`; the first of duplicate questions wins.
    by_question: HashMap<String, usize>,
    templates: LearntTemplates,
}

#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) question: String,
    pub(crate) solution: Solution,
    /// Set for a code problem: the answer is this code, not a worked solution.
    pub(crate) code: Option<CodeSolution>,
}

impl MockDataset {
    /// A data set that knows no question: every prompt gets a made-up answer.
    pub fn empty() -> Self {
        Self::default()
    }

    /// A data set from (question, reference solution) pairs. Blank questions are skipped, since
    /// no prompt could be matched to them.
    pub fn from_rows<Q, A>(rows: impl IntoIterator<Item = (Q, A)>) -> Self
    where
        Q: Into<String>,
        A: AsRef<str>,
    {
        let mut dataset = Self::default();
        for (question, answer) in rows {
            dataset.push(question.into(), answer.as_ref(), MockTask::Math);
        }
        dataset
    }

    /// A data set of code problems from (question, reference solution) pairs: the solution is
    /// a whole program (MBPP's `code`), or the body completing the question (HumanEval's
    /// `canonical_solution` after its `prompt`).
    pub fn from_code_rows<Q, A>(rows: impl IntoIterator<Item = (Q, A)>) -> Self
    where
        Q: Into<String>,
        A: AsRef<str>,
    {
        let mut dataset = Self::default();
        for (question, answer) in rows {
            dataset.push(question.into(), answer.as_ref(), MockTask::Code);
        }
        dataset
    }

    /// Reads a JSON-lines file (one object per line) or a file holding one JSON array of
    /// objects; `question_field` and `answer_field` name the fields used. The answer may be a
    /// string or a number. A row with an `entry_point`, `test` or `test_list` field is a code
    /// problem (HumanEval, MBPP), any other a math one; [`MockDataset::load_as`] says which.
    pub fn load(path: &Path, question_field: &str, answer_field: &str) -> Result<Self, MockError> {
        Self::load_as(path, question_field, answer_field, None)
    }

    /// [`MockDataset::load`] with every row taken as `task` (`None`: told by its fields).
    pub fn load_as(
        path: &Path,
        question_field: &str,
        answer_field: &str,
        task: Option<MockTask>,
    ) -> Result<Self, MockError> {
        let text = std::fs::read_to_string(path).map_err(|source| MockError::ReadDataset {
            path: path.to_owned(),
            source,
        })?;
        Self::parse_as(&text, path, question_field, answer_field, task)
    }

    /// Like [`MockDataset::load`], from text already read; `path` only names it in errors.
    pub fn parse(
        text: &str,
        path: &Path,
        question_field: &str,
        answer_field: &str,
    ) -> Result<Self, MockError> {
        Self::parse_as(text, path, question_field, answer_field, None)
    }

    /// [`MockDataset::parse`] with every row taken as `task` (`None`: told by its fields).
    pub fn parse_as(
        text: &str,
        path: &Path,
        question_field: &str,
        answer_field: &str,
        task: Option<MockTask>,
    ) -> Result<Self, MockError> {
        let fields = Fields {
            path,
            question: question_field,
            answer: answer_field,
            task,
        };
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        if text.trim_start().starts_with('[') {
            fields.parse_array(text)
        } else {
            fields.parse_lines(text)
        }
    }

    /// Number of rows with a usable question.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The questions, in file order.
    pub fn questions(&self) -> impl Iterator<Item = &str> {
        self.rows.iter().map(|row| row.question.as_str())
    }

    /// Rows that are code problems.
    pub fn code_rows(&self) -> usize {
        self.rows.iter().filter(|row| row.code.is_some()).count()
    }

    fn push(&mut self, question: String, answer: &str, task: MockTask) {
        let question = match question.trim() {
            "" => return,
            trimmed if trimmed.len() == question.len() => question,
            trimmed => trimmed.to_owned(),
        };
        let index = self.rows.len();
        self.by_question.entry(question.clone()).or_insert(index);
        let code = (task == MockTask::Code).then(|| CodeSolution::new(&question, answer));
        self.rows.push(Row {
            solution: Solution::from_reference(answer),
            question,
            code,
        });
    }

    /// The row whose question the prompt wraps. Tried in order of cost: the whole prompt, each
    /// paragraph, each line (prompt templates usually put the question on lines of its own),
    /// the templates learnt so far, then any question contained in the prompt, the longest
    /// first so that a short question that happens to occur inside a longer one does not win.
    pub(crate) fn find(&self, prompt: &str) -> Option<&Row> {
        if self.rows.is_empty() {
            return None;
        }
        let lookup = |text: &str| {
            self.by_question
                .get(text.trim())
                .and_then(|&index| self.rows.get(index))
        };
        let prompt = prompt.trim();
        lookup(prompt)
            .or_else(|| prompt.split("\n\n").find_map(lookup))
            .or_else(|| prompt.lines().find_map(lookup))
            .or_else(|| self.templates.find(prompt, lookup))
            .or_else(|| {
                let row = self
                    .rows
                    .iter()
                    .filter(|row| prompt.contains(row.question.as_str()))
                    .max_by_key(|row| row.question.len())?;
                if let Some(start) = prompt.find(row.question.as_str()) {
                    let end = start + row.question.len();
                    self.templates.learn(&prompt[..start], &prompt[end..]);
                }
                Some(row)
            })
    }
}

/// Most templates remembered: a run uses one or two, and each costs a lookup per prompt.
const MAX_LEARNT_TEMPLATES: usize = 8;

/// The text around the question in prompts that needed the scan of every question, so the
/// next prompt built from the same template is found with one hash lookup. Without this, a
/// template that puts the question mid-line costs a scan of the data set per request.
#[derive(Debug, Default)]
struct LearntTemplates(RwLock<Vec<(Box<str>, Box<str>)>>);

impl Clone for LearntTemplates {
    fn clone(&self) -> Self {
        let learnt = self.0.read().unwrap_or_else(PoisonError::into_inner);
        Self(RwLock::new(learnt.clone()))
    }
}

impl LearntTemplates {
    fn find<'a>(&self, prompt: &str, lookup: impl Fn(&str) -> Option<&'a Row>) -> Option<&'a Row> {
        let learnt = self.0.read().unwrap_or_else(PoisonError::into_inner);
        learnt.iter().find_map(|(before, after)| {
            let inner = prompt.strip_prefix(&**before)?.strip_suffix(&**after)?;
            lookup(inner)
        })
    }

    fn learn(&self, before: &str, after: &str) {
        let mut learnt = self.0.write().unwrap_or_else(PoisonError::into_inner);
        let known = learnt.iter().any(|(b, a)| **b == *before && **a == *after);
        if !known && learnt.len() < MAX_LEARNT_TEMPLATES {
            learnt.push((before.into(), after.into()));
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.read().unwrap_or_else(PoisonError::into_inner).len()
    }
}

/// Where the rows come from and which fields they use.
struct Fields<'a> {
    path: &'a Path,
    question: &'a str,
    answer: &'a str,
    task: Option<MockTask>,
}

/// Fields only code problems have (HumanEval's `entry_point` and `test`, MBPP's `test_list`).
const CODE_FIELDS: [&str; 3] = ["entry_point", "test", "test_list"];

impl Fields<'_> {
    fn parse_lines(&self, text: &str) -> Result<MockDataset, MockError> {
        let mut dataset = MockDataset::default();
        for (index, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let line_number = index + 1;
            let value: Value = serde_json::from_str(line)
                .map_err(|error| self.bad_row(line_number, json_problem(&error, true)))?;
            let (question, answer, task) = self
                .row_fields(value)
                .map_err(|message| self.bad_row(line_number, message))?;
            dataset.push(question, &answer, task);
        }
        Ok(dataset)
    }

    fn parse_array(&self, text: &str) -> Result<MockDataset, MockError> {
        // Raw elements borrow from `text`, so each one's position (and line) is known.
        let elements: Vec<&RawValue> = serde_json::from_str(text)
            .map_err(|error| self.bad_row(error.line(), json_problem(&error, false)))?;
        let mut dataset = MockDataset::default();
        for element in elements {
            let line = || line_of(text, element.get());
            let value: Value = serde_json::from_str(element.get())
                .map_err(|error| self.bad_row(line(), json_problem(&error, false)))?;
            let (question, answer, task) = self
                .row_fields(value)
                .map_err(|message| self.bad_row(line(), message))?;
            dataset.push(question, &answer, task);
        }
        Ok(dataset)
    }

    fn row_fields(&self, value: Value) -> Result<(String, String, MockTask), String> {
        let Value::Object(mut row) = value else {
            return Err("expected a JSON object".to_owned());
        };
        let task = self.task.unwrap_or_else(|| {
            if CODE_FIELDS.iter().any(|field| row.contains_key(*field)) {
                MockTask::Code
            } else {
                MockTask::Math
            }
        });
        let question = match row.remove(self.question) {
            Some(Value::String(text)) if !text.trim().is_empty() => text,
            Some(Value::String(_)) => return Err(format!("field `{}` is empty", self.question)),
            Some(_) => return Err(format!("field `{}` is not a string", self.question)),
            None => return Err(format!("missing field `{}`", self.question)),
        };
        let answer = match row.remove(self.answer) {
            Some(Value::String(text)) => text,
            Some(Value::Number(number)) => number.to_string(),
            Some(_) => {
                return Err(format!(
                    "field `{}` is not a string or a number",
                    self.answer
                ));
            }
            None => return Err(format!("missing field `{}`", self.answer)),
        };
        Ok((question, answer, task))
    }

    fn bad_row(&self, line: usize, message: String) -> MockError {
        MockError::BadRow {
            path: PathBuf::from(self.path),
            line,
            message,
        }
    }
}

/// serde_json's message without its "at line 1 column 5" suffix, which would contradict the
/// line number the error reports; the column is kept where it means something.
fn json_problem(error: &serde_json::Error, with_column: bool) -> String {
    let message = error.to_string();
    let message = message
        .rsplit_once(" at line ")
        .map_or(message.as_str(), |(what, _)| what);
    if with_column {
        format!("invalid JSON at column {}: {message}", error.column())
    } else {
        format!("invalid JSON: {message}")
    }
}

/// 1-based line of `part`, a slice borrowed from `text`.
fn line_of(text: &str, part: &str) -> usize {
    let offset = (part.as_ptr() as usize).saturating_sub(text.as_ptr() as usize);
    let before = text.get(..offset).unwrap_or(text);
    before.bytes().filter(|&b| b == b'\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<MockDataset, MockError> {
        MockDataset::parse(text, Path::new("data/set.jsonl"), "question", "answer")
    }

    fn bad_row_line(result: Result<MockDataset, MockError>) -> (usize, String) {
        match result {
            Err(MockError::BadRow {
                path,
                line,
                message,
            }) => {
                assert_eq!(path, Path::new("data/set.jsonl"));
                (line, message)
            }
            other => panic!("expected a bad row, got {other:?}"),
        }
    }

    #[test]
    fn json_lines_are_read_skipping_blank_lines() {
        let dataset = parse(
            "{\"question\": \"What is 2+2?\", \"answer\": \"2+2=<<2+2=4>>4\\n#### 4\"}\n\n\
             {\"question\": \"What is 3*3?\", \"answer\": 9}\n",
        )
        .expect("valid rows");
        assert_eq!(dataset.len(), 2);
        assert_eq!(
            dataset.questions().collect::<Vec<_>>(),
            ["What is 2+2?", "What is 3*3?"]
        );
        let row = dataset.find("What is 2+2?").expect("matched");
        assert_eq!(row.solution.answer, "4");
        assert_eq!(row.solution.steps, ["2+2=4"]);
        assert_eq!(
            dataset
                .find("What is 3*3?")
                .map(|row| row.solution.answer.as_str()),
            Some("9")
        );
    }

    #[test]
    fn a_json_array_is_read_too() {
        let dataset = parse(
            "[\n  {\"question\": \"Q one\", \"answer\": \"#### 1\"},\n  {\"question\": \"Q two\", \"answer\": \"#### 2\"}\n]",
        )
        .expect("valid array");
        assert_eq!(dataset.len(), 2);
        assert_eq!(
            dataset
                .find("Q two")
                .map(|row| row.solution.answer.as_str()),
            Some("2")
        );
    }

    #[test]
    fn bad_json_lines_name_their_line() {
        let (line, message) = bad_row_line(parse(
            "{\"question\": \"a\", \"answer\": \"1\"}\n{\"question\": \"b\", \"answer\": \n",
        ));
        assert_eq!(line, 2);
        assert!(message.starts_with("invalid JSON at column"), "{message}");
        assert!(!message.contains("line 1"), "{message}");

        let (line, message) = bad_row_line(parse(
            "{\"question\": \"a\", \"answer\": \"1\"}\n\n{\"answer\": \"2\"}\n",
        ));
        assert_eq!((line, message.as_str()), (3, "missing field `question`"));

        let (line, message) = bad_row_line(parse("{\"question\": 7, \"answer\": \"1\"}"));
        assert_eq!(
            (line, message.as_str()),
            (1, "field `question` is not a string")
        );

        let (line, message) = bad_row_line(parse("{\"question\": \"q\", \"answer\": [1]}"));
        assert_eq!(
            (line, message.as_str()),
            (1, "field `answer` is not a string or a number")
        );

        let (line, message) = bad_row_line(parse("{\"question\": \"  \", \"answer\": \"1\"}"));
        assert_eq!((line, message.as_str()), (1, "field `question` is empty"));

        let (line, message) = bad_row_line(parse("[1, 2]\n"));
        assert_eq!((line, message.as_str()), (1, "expected a JSON object"));
    }

    #[test]
    fn bad_array_elements_name_their_line() {
        let (line, message) = bad_row_line(parse(
            "[\n  {\"question\": \"a\", \"answer\": \"1\"},\n  {\"question\": \"b\"}\n]",
        ));
        assert_eq!((line, message.as_str()), (3, "missing field `answer`"));

        let (line, message) =
            bad_row_line(parse("[\n  {\"question\": \"a\",\n   \"answer\": }\n]"));
        assert_eq!(line, 3);
        assert!(message.starts_with("invalid JSON: "), "{message}");
    }

    #[test]
    fn the_error_message_names_file_and_line() {
        let error = parse("{}\n").expect_err("a bad row");
        assert_eq!(
            error.to_string(),
            "data/set.jsonl:1: missing field `question`"
        );
    }

    #[test]
    fn an_unreadable_file_is_an_error_not_a_panic() {
        let error = MockDataset::load(Path::new("/nonexistent/mock.jsonl"), "question", "answer")
            .expect_err("missing file");
        assert!(matches!(error, MockError::ReadDataset { .. }), "{error:?}");
        assert!(error.to_string().contains("/nonexistent/mock.jsonl"));
    }

    #[test]
    fn prompts_find_their_question_inside_templates() {
        let dataset = MockDataset::from_rows([
            ("How many eggs?", "#### 3"),
            ("How many eggs are left after breakfast?", "#### 5"),
            ("A two-line\nquestion?", "#### 7"),
        ]);
        let answer = |prompt: &str| dataset.find(prompt).map(|row| row.solution.answer.clone());
        assert_eq!(answer("  How many eggs?\n").as_deref(), Some("3"));
        assert_eq!(
            answer("How many eggs?\nPlease reason step by step, and put your final answer within \\boxed{}.")
                .as_deref(),
            Some("3")
        );
        assert_eq!(
            answer("Solve this.\n\nA two-line\nquestion?\n\nThink hard.").as_deref(),
            Some("7")
        );
        assert_eq!(
            answer("Problem: How many eggs? Answer briefly.").as_deref(),
            Some("3")
        );
        // The longer question wins over the shorter one inside it.
        assert_eq!(
            answer("Problem: How many eggs are left after breakfast? Be brief.").as_deref(),
            Some("5")
        );
        assert_eq!(answer("Something else entirely"), None);
        assert!(MockDataset::empty().find("How many eggs?").is_none());
    }

    #[test]
    fn a_template_found_by_scanning_is_learnt() {
        let dataset = MockDataset::from_rows([("Q one?", "#### 1"), ("Q two?", "#### 2")]);
        let answer = |prompt: &str| dataset.find(prompt).map(|row| row.solution.answer.clone());
        assert_eq!(dataset.templates.len(), 0);
        assert_eq!(answer("Problem: Q one? Be brief.").as_deref(), Some("1"));
        assert_eq!(dataset.templates.len(), 1);
        // The learnt template finds other questions, and is not learnt twice.
        assert_eq!(
            dataset
                .templates
                .find("Problem: Q two? Be brief.", |inner| {
                    dataset
                        .by_question
                        .get(inner)
                        .and_then(|&i| dataset.rows.get(i))
                })
                .map(|row| row.solution.answer.as_str()),
            Some("2")
        );
        assert_eq!(answer("Problem: Q two? Be brief.").as_deref(), Some("2"));
        assert_eq!(dataset.templates.len(), 1);
        // A prompt that only looks like the template still falls through to the scan.
        assert_eq!(
            answer("Problem: see Q one? Be brief.").as_deref(),
            Some("1")
        );
        assert_eq!(answer("Problem: nothing here Be brief."), None);
    }

    #[test]
    fn blank_questions_and_duplicates() {
        let dataset = MockDataset::from_rows([("  ", "#### 1"), ("Q", "#### 2"), ("Q", "#### 3")]);
        assert_eq!(dataset.len(), 2);
        assert_eq!(
            dataset.find("Q").map(|row| row.solution.answer.as_str()),
            Some("2")
        );
    }

    #[test]
    fn real_gsm8k_rows_load_and_match() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/gsm8k/test.jsonl");
        let dataset = MockDataset::load(&path, "question", "answer").expect("GSM8K loads");
        assert!(dataset.len() > 1000, "{} rows", dataset.len());
        let janet = dataset.questions().next().expect("a first row").to_owned();
        assert!(janet.starts_with("Janet"), "{janet}");
        let prompt = format!(
            "{janet}\nPlease reason step by step, and put your final answer within \\boxed{{}}."
        );
        let row = dataset.find(&prompt).expect("the templated prompt matches");
        assert_eq!(row.solution.answer, "18");
        assert!(row.solution.steps.iter().all(|step| !step.contains("<<")));
    }
}

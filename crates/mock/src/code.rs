//! Code answers, as R1-style models write them for code problems: reasoning, then the whole
//! solution in a ```` ```python ```` block, sometimes with a sentence after it. A wrong sample
//! carries one bug of the kind its plan draws ([`Bug`]).
//!
//! The bugs are textual edits of the reference solution chosen so that a test suite notices
//! them: the edit is made on the first line of the function's own body that has a place for
//! it (the least indented such line, which runs whatever the input), a syntax error never
//! parses, and the infinite loop opens the function body. A kind that has no place in a
//! solution (no comparison to turn round, no guard to drop) falls through to the next kind,
//! ending with the syntax error, which always applies. How often a bug still passes the tests
//! is measured, not assumed: see `tests/mock_code.rs`.

use std::fmt;

use crate::hash::fnv1a;
use crate::trace::{MIXED_LANGUAGE_SENTENCE, Sample, SamplePlan};

/// The kinds of bug a wrong code sample carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Bug {
    /// Loops counted from 1 (`range(n)` becomes `range(1, n + 1)`), else a whole-number
    /// constant one more.
    OffByOne,
    /// A comparison turned round or `+`/`-`, `and`/`or` swapped.
    WrongOperator,
    /// A guard (`if …: return …`) left out.
    MissingEdgeCase,
    /// Code that does not parse: a block opener without its colon, or a bracket never closed.
    SyntaxError,
    /// A retry loop whose counter never advances, at the top of the function.
    InfiniteLoop,
}

impl Bug {
    pub const ALL: [Bug; 5] = [
        Bug::OffByOne,
        Bug::WrongOperator,
        Bug::MissingEdgeCase,
        Bug::SyntaxError,
        Bug::InfiniteLoop,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Bug::OffByOne => "off_by_one",
            Bug::WrongOperator => "wrong_operator",
            Bug::MissingEdgeCase => "missing_edge_case",
            Bug::SyntaxError => "syntax_error",
            Bug::InfiniteLoop => "infinite_loop",
        }
    }
}

impl fmt::Display for Bug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A reference solution to a code problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CodeSolution {
    /// What the answer repeats before the body: HumanEval's prompt (imports, signature and
    /// docstring); empty when the reference is a whole program (MBPP).
    head: String,
    /// The code bugs are put in: HumanEval's function body, or MBPP's whole program.
    body: String,
    /// The function the problem asks for, when one is defined.
    function: Option<String>,
}

impl CodeSolution {
    /// `reference` is a whole program (MBPP's `code`), or, when its first line is indented, the
    /// body that completes `question` (HumanEval's `canonical_solution` after its `prompt`).
    pub(crate) fn new(question: &str, reference: &str) -> Self {
        let reference = reference.trim_end_matches([' ', '\t', '\n', '\r']);
        let first = reference.lines().find(|line| !line.trim().is_empty());
        let completes_prompt = first.is_some_and(|line| line.starts_with([' ', '\t']));
        let head = if completes_prompt {
            format!("{}\n", question.trim_end())
        } else {
            String::new()
        };
        let reference = if completes_prompt {
            reference
        } else {
            reference.trim_start_matches(['\n', '\r'])
        };
        let function = if completes_prompt {
            last_def(&head)
        } else {
            first_def(reference)
        };
        Self {
            head,
            body: format!("{reference}\n"),
            function,
        }
    }

    /// The whole solution as the answer shows it.
    pub(crate) fn code(&self) -> String {
        format!("{}{}", self.head, self.body)
    }

    /// A stable key of the reference (FNV-1a of the code bugs are put in), as
    /// [`KNOWN_TO_PASS`] lists it.
    pub(crate) fn key(&self) -> u64 {
        fnv1a(self.body.as_bytes())
    }

    /// The solution with a bug of kind `bug` (or, where it has no place, of the next kind
    /// that has), and the kind put in.
    pub(crate) fn with_bug(&self, bug: Bug, variant: u64) -> (String, Bug) {
        let start = Bug::ALL.iter().position(|&b| b == bug).unwrap_or(0);
        let key = self.key();
        for offset in 0..Bug::ALL.len() {
            let kind = Bug::ALL[(start + offset) % Bug::ALL.len()];
            if KNOWN_TO_PASS.contains(&(key, kind)) {
                continue;
            }
            if let Some(body) = inject(&self.body, kind, !self.head.is_empty(), variant) {
                return (format!("{}{body}", self.head), kind);
            }
        }
        // Unreachable in practice: a syntax error always has a place. Keep the code wrong.
        (format!("{}{}\n)\n", self.head, self.body), Bug::SyntaxError)
    }
}

/// The code a right sample shows for a problem: `reference` as [`MockDataset`] reads it (a whole
/// program, or the body completing `question`).
///
/// [`MockDataset`]: crate::MockDataset
pub fn solution_code(question: &str, reference: &str) -> String {
    CodeSolution::new(question, reference).code()
}

/// The code a wrong sample asking for `bug` shows, and the kind of bug it carries (another when
/// `bug` has no place in this solution). For measuring how often each kind passes the tests.
pub fn code_with_bug(question: &str, reference: &str, bug: Bug) -> (String, Bug) {
    CodeSolution::new(question, reference).with_bug(bug, 0)
}

/// The key [`KNOWN_TO_PASS`] knows a reference solution by.
pub fn reference_key(question: &str, reference: &str) -> u64 {
    CodeSolution::new(question, reference).key()
}

/// (reference key, kind) of the bugs that still pass the shipped benchmark's tests, measured by
/// `crates/mock/tests/bugs.rs` (the ignored test runs every kind on every problem and prints any
/// that passes with its key). A bug listed here has no place in that solution: the next kind is
/// put in, so a wrong sample of HumanEval always fails. The ones listed are equivalent under
/// the tests: a guard the tests never reach (`if k < 2` in a helper only called from 2 up), a
/// constant that only moves a tolerance, a loop whose every step agrees either way.
pub const KNOWN_TO_PASS: &[(u64, Bug)] = &[
    (0x0225f30fad2a6926, Bug::OffByOne),        // HumanEval/116
    (0xa76bf0de596cf56c, Bug::OffByOne),        // HumanEval/127
    (0xae450f007db6c1d6, Bug::OffByOne),        // HumanEval/32
    (0x2004ccf7c7029d33, Bug::OffByOne),        // HumanEval/35
    (0xbc57db2acc95101a, Bug::OffByOne),        // HumanEval/46
    (0xbc57db2acc95101a, Bug::MissingEdgeCase), // HumanEval/46
    (0x4a4bc481991f622d, Bug::OffByOne),        // HumanEval/49
    (0x582fb6fded993146, Bug::OffByOne),        // HumanEval/59
    (0x582fb6fded993146, Bug::MissingEdgeCase), // HumanEval/59
    (0xbdf4b51ac9174e32, Bug::OffByOne),        // HumanEval/68
    (0xa8e9849ecc0df56b, Bug::MissingEdgeCase), // HumanEval/76
    (0x44c07b2d801b4bef, Bug::OffByOne),        // HumanEval/95
    (0xa89cdfb4a91cdbc1, Bug::OffByOne),        // HumanEval/99
];

/// The bug a wrong sample's plan asks for.
pub(crate) fn drawn_bug(variant: u64) -> Bug {
    Bug::ALL[(variant % Bug::ALL.len() as u64) as usize]
}

const APPROACH: [&str; 3] = [
    "Let me think about the approach before writing anything.",
    "Let me start from the examples in the docstring and work out the rule.",
    "Let me restate the task to make sure I have it right.",
];

const EDGE_CASES: &str =
    "I should also handle the edge cases: an empty input, a single element, and the boundaries.";

const TRACE_EXAMPLE: &str =
    "Tracing the first example through the loop by hand gives the expected output.";

const CLOSING: [&str; 3] = [
    "This handles the cases discussed above.",
    "The function runs in a single pass over the input.",
    "Each example from the problem statement gives the expected result with this code.",
];

/// A code sample: reasoning, then the code in a fenced block.
pub(crate) fn build(solution: &CodeSolution, plan: &SamplePlan) -> Sample {
    let (code, bug) = if plan.wrong {
        let (code, bug) = solution.with_bug(drawn_bug(plan.variant), plan.variant >> 8);
        (code, Some(bug))
    } else {
        (solution.code(), None)
    };
    let name = solution.function.as_deref().unwrap_or("the function");
    let mut reasoning = String::with_capacity(512);
    reasoning.push_str(plan.opening());
    reasoning.push_str("\n\n");
    reasoning.push_str(&format!(
        "I need to write `{name}` so that it does what the problem describes.\n"
    ));
    reasoning.push_str(APPROACH[(plan.variant >> 16) as usize % APPROACH.len()]);
    reasoning.push('\n');
    if plan.language_mixed {
        reasoning.push_str(MIXED_LANGUAGE_SENTENCE);
        reasoning.push('\n');
    }
    reasoning.push_str(EDGE_CASES);
    reasoning.push('\n');
    if plan.double_check() {
        reasoning.push_str(TRACE_EXAMPLE);
        reasoning.push('\n');
    }
    reasoning.push_str("I'll write the whole function now.");

    let mut content = format!("Here is the implementation of `{name}`:\n\n```python\n{code}```");
    if plan.prose_after {
        content.push_str("\n\n");
        content.push_str(CLOSING[(plan.variant >> 24) as usize % CLOSING.len()]);
    }
    Sample::from_parts(reasoning, content, plan, bug)
}

fn first_def(code: &str) -> Option<String> {
    code.lines().find_map(def_name)
}

fn last_def(code: &str) -> Option<String> {
    code.lines().filter_map(def_name).next_back()
}

fn def_name(line: &str) -> Option<String> {
    let rest = line.strip_prefix("def ")?;
    let name: String = rest
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty()).then_some(name)
}

/// One line of code, with the facts the edits need.
struct Line<'a> {
    text: &'a str,
    indent: usize,
    /// Not blank, not a comment, not inside a triple-quoted string.
    code: bool,
}

fn lines(body: &str) -> Vec<Line<'_>> {
    let mut in_docstring: Option<&str> = None;
    body.lines()
        .map(|text| {
            let trimmed = text.trim();
            let indent = text.len() - text.trim_start().len();
            let was_inside = in_docstring.is_some();
            for quote in ["\"\"\"", "'''"] {
                let count = trimmed.matches(quote).count();
                match in_docstring {
                    Some(open) if open == quote && count % 2 == 1 => in_docstring = None,
                    None if count % 2 == 1 => in_docstring = Some(quote),
                    _ => {}
                }
            }
            let code = !was_inside
                && !trimmed.is_empty()
                && !trimmed.starts_with('#')
                && !trimmed.starts_with("\"\"\"")
                && !trimmed.starts_with("'''");
            Line { text, indent, code }
        })
        .collect()
}

/// Byte ranges of `line` outside string literals and comments.
fn code_mask(line: &str) -> Vec<bool> {
    let bytes = line.as_bytes();
    let mut mask = vec![true; bytes.len()];
    let mut quote: Option<u8> = None;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(q) => {
                mask[i] = false;
                if b == b'\\' && i + 1 < bytes.len() {
                    mask[i + 1] = false;
                    i += 1;
                } else if b == q {
                    quote = None;
                }
            }
            None if b == b'#' => {
                mask[i..].iter_mut().for_each(|m| *m = false);
                break;
            }
            None if b == b'"' || b == b'\'' => {
                mask[i] = false;
                quote = Some(b);
            }
            None => {}
        }
        i += 1;
    }
    mask
}

/// The code lines of `body` in the order edits try them: least indented first (those run
/// whatever the input), then top to bottom.
fn candidate_order(lines: &[Line<'_>]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..lines.len()).filter(|&i| lines[i].code).collect();
    order.sort_by_key(|&i| (lines[i].indent, i));
    order
}

/// `body` with a bug of kind `bug`, or `None` when the kind has no place in it.
/// `is_function_body` says whether `body` is one function's body (HumanEval) or a program.
fn inject(body: &str, bug: Bug, is_function_body: bool, variant: u64) -> Option<String> {
    let lines = lines(body);
    let edited = match bug {
        Bug::OffByOne => off_by_one(&lines),
        Bug::WrongOperator => wrong_operator(&lines, variant),
        Bug::MissingEdgeCase => missing_edge_case(&lines),
        Bug::SyntaxError => syntax_error(&lines),
        Bug::InfiniteLoop => infinite_loop(&lines, is_function_body),
    }?;
    let mut out = edited.join("\n");
    out.push('\n');
    Some(out)
}

fn owned(lines: &[Line<'_>]) -> Vec<String> {
    lines.iter().map(|line| line.text.to_owned()).collect()
}

fn off_by_one(lines: &[Line<'_>]) -> Option<Vec<String>> {
    let order = candidate_order(lines);
    // Loops counted from 1, as if ranges were 1-based: every `range(a, b)` becomes
    // `range(a + 1, b + 1)` (`range(n)`: `range(1, n + 1)`). Measured on HumanEval, this fails
    // the tests more often than a loop one step short or long at one end (a palindrome check
    // that skips its last comparison still answers right; a slice past the end is only
    // shorter; a loop that starts late fails fewer tests than one shifted whole).
    let mut out = owned(lines);
    let mut shifted = false;
    for &i in &order {
        let text = lines[i].text;
        if text.trim_start().starts_with("def ") {
            continue;
        }
        if let Some(line) = shift_ranges(text) {
            out[i] = line;
            shifted = true;
        }
    }
    if shifted {
        return Some(out);
    }
    // Otherwise an integer constant in an expression, one more than it should be.
    for &i in &order {
        let text = lines[i].text;
        if is_header(text) {
            continue;
        }
        let mask = code_mask(text);
        let bytes = text.as_bytes();
        let mut j = 0;
        while j < bytes.len() {
            // Not inside a name, a float (`1.5`) or a float's exponent (`1e-10`).
            let exponent = j >= 2
                && matches!(bytes[j - 1], b'-' | b'+')
                && matches!(bytes[j - 2], b'e' | b'E')
                && j >= 3
                && bytes[j - 3].is_ascii_digit();
            let starts_number = bytes[j].is_ascii_digit()
                && mask[j]
                && !exponent
                && (j == 0
                    || !(bytes[j - 1].is_ascii_alphanumeric()
                        || bytes[j - 1] == b'_'
                        || bytes[j - 1] == b'.'));
            if starts_number {
                let end = (j..bytes.len())
                    .find(|&k| !bytes[k].is_ascii_digit())
                    .unwrap_or(bytes.len());
                let is_float =
                    end < bytes.len() && (bytes[end] == b'.' || bytes[end].is_ascii_alphabetic());
                if !is_float && let Ok(value) = text[j..end].parse::<u64>() {
                    let mut out = owned(lines);
                    out[i] = format!("{}{}{}", &text[..j], value + 1, &text[end..]);
                    return Some(out);
                }
                j = end;
            } else {
                j += 1;
            }
        }
    }
    // Otherwise a length one short.
    for &i in &order {
        let text = lines[i].text;
        let mask = code_mask(text);
        if let Some(at) = find_code(text, &mask, "len(")
            && (at == 0 || !is_ident_byte(text.as_bytes()[at - 1]))
            && let Some(close) = matching_paren(text, at + "len".len())
        {
            let mut out = owned(lines);
            out[i] = format!("{} - 1{}", &text[..=close], &text[close + 1..]);
            return Some(out);
        }
    }
    None
}

/// Operators and what each becomes: comparisons turned round, arithmetic and logic swapped.
const OPERATORS: [(&str, &str); 10] = [
    ("<=", ">"),
    (">=", "<"),
    ("==", "!="),
    ("!=", "=="),
    ("<", ">="),
    (">", "<="),
    (" and ", " or "),
    (" or ", " and "),
    (" + ", " - "),
    (" - ", " + "),
];

fn wrong_operator(lines: &[Line<'_>], _variant: u64) -> Option<Vec<String>> {
    // A comparison or a logical operator turned round first (a condition that decides what
    // happens), then `+`/`-` swapped.
    wrong_operator_among(lines, &OPERATORS[..8])
        .or_else(|| wrong_operator_among(lines, &OPERATORS[8..]))
}

/// A `def`, `import` or `from` line: a signature or an import, which a bug must not touch.
fn is_header(line: &str) -> bool {
    let trimmed = line.trim_start();
    ["def ", "import ", "from "]
        .iter()
        .any(|keyword| trimmed.starts_with(keyword))
}

fn wrong_operator_among(lines: &[Line<'_>], operators: &[(&str, &str)]) -> Option<Vec<String>> {
    for i in candidate_order(lines) {
        let text = lines[i].text;
        if is_header(text) {
            continue;
        }
        let mask = code_mask(text);
        // The leftmost operator on the line.
        let mut best: Option<(usize, &str, &str)> = None;
        for &(from, to) in operators {
            let mut search = 0;
            while let Some(found) = text[search..].find(from) {
                let at = search + found;
                search = at + from.len();
                if !mask[at..at + from.len()].iter().all(|&m| m) {
                    continue;
                }
                let bytes = text.as_bytes();
                // `<` and `>` alone: not part of `<=`, `>=`, `<<`, `>>`, `->`.
                if from.len() == 1 {
                    let next = bytes.get(at + 1).copied();
                    let prev = at.checked_sub(1).map(|p| bytes[p]);
                    if matches!(next, Some(b'=' | b'<' | b'>'))
                        || matches!(prev, Some(b'<' | b'>' | b'-' | b'='))
                    {
                        continue;
                    }
                }
                // `==` inside `!==`-like runs do not exist in Python; `!=` vs `==` are distinct.
                if best.is_none_or(|(b, _, _)| at < b) {
                    best = Some((at, from, to));
                }
                break;
            }
        }
        if let Some((at, from, to)) = best {
            let mut out = owned(lines);
            out[i] = format!("{}{to}{}", &text[..at], &text[at + from.len()..]);
            return Some(out);
        }
    }
    None
}

fn missing_edge_case(lines: &[Line<'_>]) -> Option<Vec<String>> {
    for i in candidate_order(lines) {
        let line = &lines[i];
        let trimmed = line.text.trim();
        if !trimmed.starts_with("if ") || !trimmed.ends_with(':') {
            // A one-line guard: `if not s: return ''`.
            if trimmed.starts_with("if ")
                && let Some((_, then)) = trimmed.split_once(": ")
                && is_exit(then)
                && !returns_empty(then.trim())
                && !leaves_block_empty(lines, i, i)
            {
                let mut out = owned(lines);
                out.remove(i);
                return Some(out);
            }
            continue;
        }
        // The block: the following lines more indented than the `if`.
        let block: Vec<usize> = (i + 1..lines.len())
            .take_while(|&j| !lines[j].code || lines[j].indent > line.indent)
            .filter(|&j| lines[j].code)
            .collect();
        let followed_by_else = (i + 1 + block.len()..lines.len())
            .find(|&j| lines[j].code)
            .is_some_and(|j| {
                lines[j].indent == line.indent && {
                    let t = lines[j].text.trim_start();
                    t.starts_with("else") || t.starts_with("elif ")
                }
            });
        if block.len() == 1
            && is_exit(lines[block[0]].text.trim())
            && !returns_empty(lines[block[0]].text.trim())
            && !followed_by_else
            && !leaves_block_empty(lines, i, block[0])
        {
            let mut out = owned(lines);
            out.drain(i..=block[0]);
            return Some(out);
        }
    }
    None
}

/// Whether removing `lines[first..=last]` leaves the block they are in without a statement
/// (which would not parse: that is a syntax error, not a missing edge case).
fn leaves_block_empty(lines: &[Line<'_>], first: usize, last: usize) -> bool {
    let indent = lines[first].indent;
    let before = lines[..first].iter().rev().find(|line| line.code);
    let after = lines[last + 1..].iter().find(|line| line.code);
    let opens_block = before.is_none_or(|line| line.text.trim_end().ends_with(':'));
    let has_sibling = after.is_some_and(|line| line.indent == indent)
        || before.is_some_and(|line| line.indent == indent);
    opens_block && !has_sibling
}

/// A guard whose exit gives back an empty or zero value (`return ''`, `return []`, `return 0`)
/// is often one the rest of the function would have agreed with: leaving it out changes
/// nothing. Such guards are not "missing edge cases".
fn returns_empty(statement: &str) -> bool {
    let value = statement.strip_prefix("return").map(str::trim);
    matches!(
        value,
        Some("" | "''" | "\"\"" | "[]" | "()" | "{}" | "0" | "None" | "set()" | "0.0")
    )
}

fn is_exit(statement: &str) -> bool {
    ["return", "continue", "break", "raise"]
        .iter()
        .any(|word| statement == *word || statement.starts_with(&format!("{word} ")))
}

fn syntax_error(lines: &[Line<'_>]) -> Option<Vec<String>> {
    const OPENERS: [&str; 9] = [
        "if ", "for ", "while ", "elif ", "else", "def ", "try", "with ", "except",
    ];
    let order: Vec<usize> = (0..lines.len()).filter(|&i| lines[i].code).collect();
    for &i in &order {
        let text = lines[i].text.trim_end();
        let trimmed = text.trim_start();
        if text.ends_with(':') && OPENERS.iter().any(|o| trimmed.starts_with(o)) {
            let mut out = owned(lines);
            out[i] = text[..text.len() - 1].to_owned();
            return Some(out);
        }
    }
    // No block: a bracket left open.
    for &i in &order {
        let text = lines[i].text;
        let mask = code_mask(text);
        if let Some(at) = text.rfind(')').filter(|&at| mask[at]) {
            let mut out = owned(lines);
            out[i] = format!("{}{}", &text[..at], &text[at + 1..]);
            return Some(out);
        }
    }
    let &first = order.first()?;
    let mut out = owned(lines);
    out[first] = format!("{} +", lines[first].text.trim_end());
    Some(out)
}

fn infinite_loop(lines: &[Line<'_>], is_function_body: bool) -> Option<Vec<String>> {
    // Where the function body starts, and its indentation.
    let (at, indent) = if is_function_body {
        let first = lines.iter().position(|line| line.code)?;
        (first, lines[first].indent)
    } else {
        let def = lines
            .iter()
            .position(|line| line.code && line.text.trim_start().starts_with("def "))?;
        let first = (def + 1..lines.len()).find(|&j| lines[j].code)?;
        // Skip a docstring's lines: insert before the first code line of the body.
        (first, lines[first].indent)
    };
    if indent == 0 && !is_function_body {
        return None;
    }
    let pad = &lines[at].text[..indent];
    let mut out = owned(lines);
    let inserted = [
        format!("{pad}attempts = 0"),
        format!("{pad}while attempts < 3:"),
        format!("{pad}    attempts + 1"),
    ];
    for (k, line) in inserted.into_iter().enumerate() {
        out.insert(at + k, line);
    }
    Some(out)
}

/// `text` with each `range(…)` call shifted one up, or `None` when it has none.
fn shift_ranges(text: &str) -> Option<String> {
    let mask = code_mask(text);
    let mut out = String::with_capacity(text.len() + 16);
    let mut rest_from = 0;
    let mut search = 0;
    let mut changed = false;
    while let Some(found) = text[search..].find("range(") {
        let at = search + found;
        search = at + "range(".len();
        if !mask[at] || (at > 0 && is_ident_byte(text.as_bytes()[at - 1])) || at < rest_from {
            continue;
        }
        let Some(close) = matching_paren(text, at + "range".len()) else {
            continue;
        };
        let base = at + "range(".len();
        let args = &text[base..close];
        let commas = split_top_level(args);
        let (start, stop, tail) = match commas.as_slice() {
            [] => ("0", args.trim(), ""),
            [first] => (args[..*first].trim(), args[first + 1..].trim(), ""),
            [first, second, ..] => (
                args[..*first].trim(),
                args[first + 1..*second].trim(),
                &args[*second..],
            ),
        };
        if stop.is_empty() || start.is_empty() {
            continue;
        }
        let start = if start == "0" {
            "1".to_owned()
        } else {
            format!("{start} + 1")
        };
        out.push_str(&text[rest_from..base]);
        out.push_str(&format!("{start}, {stop} + 1{tail}"));
        rest_from = close;
        search = close;
        changed = true;
    }
    out.push_str(&text[rest_from..]);
    changed.then_some(out)
}

fn find_code(text: &str, mask: &[bool], needle: &str) -> Option<usize> {
    let mut search = 0;
    while let Some(found) = text[search..].find(needle) {
        let at = search + found;
        if mask[at] && (at == 0 || !is_ident_byte(text.as_bytes()[at - 1])) {
            return Some(at);
        }
        search = at + needle.len();
    }
    None
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'.'
}

/// The `)` closing the `(` at `open`.
fn matching_paren(text: &str, open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, b) in text.bytes().enumerate().skip(open) {
        match b {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// Offsets of the top-level commas in `args`.
fn split_top_level(args: &str) -> Vec<usize> {
    let mut depth = 0i32;
    let mut commas = Vec::new();
    for (i, b) in args.bytes().enumerate() {
        match b {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            b',' if depth == 0 => commas.push(i),
            _ => {}
        }
    }
    commas
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROMPT: &str = "from typing import List\n\n\ndef below_zero(operations: List[int]) -> bool:\n    \"\"\" Detect a negative balance.\n    >>> below_zero([1, 2, -4, 5])\n    True\n    \"\"\"\n";
    const BODY: &str = "    balance = 0\n\n    for op in operations:\n        balance += op\n        if balance < 0:\n            return True\n\n    return False\n";

    fn solution() -> CodeSolution {
        CodeSolution::new(PROMPT, BODY)
    }

    #[test]
    fn a_body_completes_the_prompt_and_a_program_stands_alone() {
        let humaneval = solution();
        assert_eq!(humaneval.code(), format!("{PROMPT}{BODY}"));
        assert_eq!(humaneval.function.as_deref(), Some("below_zero"));
        let mbpp = CodeSolution::new(
            "Write a function to add two numbers.",
            "def add(a, b):\r\n  return a + b",
        );
        assert_eq!(mbpp.code(), "def add(a, b):\r\n  return a + b\n");
        assert_eq!(mbpp.function.as_deref(), Some("add"));
    }

    #[test]
    fn every_bug_edits_the_body_as_its_name_says() {
        let s = solution();
        let bugged = |bug| s.with_bug(bug, 0);
        let (code, kind) = bugged(Bug::WrongOperator);
        assert_eq!(kind, Bug::WrongOperator);
        assert!(code.contains("if balance >= 0:"), "{code}");
        let (code, kind) = bugged(Bug::MissingEdgeCase);
        assert_eq!(kind, Bug::MissingEdgeCase);
        assert!(!code.contains("return True"), "{code}");
        let (code, kind) = bugged(Bug::SyntaxError);
        assert_eq!(kind, Bug::SyntaxError);
        assert!(code.contains("    for op in operations\n"), "{code}");
        let (code, kind) = bugged(Bug::InfiniteLoop);
        assert_eq!(kind, Bug::InfiniteLoop);
        assert!(
            code.contains("    \"\"\"\n    attempts = 0\n    while attempts < 3:\n        attempts + 1\n    balance = 0"),
            "{code}"
        );
        let (code, kind) = bugged(Bug::OffByOne);
        assert_eq!(kind, Bug::OffByOne);
        assert!(code.contains("    balance = 1\n"), "{code}");
        // The prompt (head) is never edited.
        for bug in Bug::ALL {
            assert!(bugged(bug).0.starts_with(PROMPT), "{bug}");
        }
    }

    #[test]
    fn range_bounds_are_shortened_and_strings_left_alone() {
        let s = CodeSolution::new(
            "q",
            "def f(n):\n    s = 'a < b'\n    return [i for i in range(n)]\n",
        );
        let (code, _) = s.with_bug(Bug::OffByOne, 0);
        assert!(code.contains("range(1, n + 1)"), "{code}");
        let s = CodeSolution::new(
            "q",
            "def f(a, n):\n    return sum(a[i] for i in range(1, len(a)))\n",
        );
        let (code, _) = s.with_bug(Bug::OffByOne, 0);
        assert!(code.contains("range(1 + 1, len(a) + 1)"), "{code}");
        let (code, _) = CodeSolution::new(
            "q",
            "def f(s):\n    for i in range(len(s) - 1, -1, -1):\n        for j in range(i):\n            pass\n",
        )
        .with_bug(Bug::OffByOne, 0);
        assert!(
            code.contains("range(len(s) - 1 + 1, -1 + 1, -1)") && code.contains("range(1, i + 1)"),
            "{code}"
        );
        // Constants in a float's exponent are left alone.
        let (code, _) = CodeSolution::new("q", "def f(x):\n    return x < 1e-10 or x > 7\n")
            .with_bug(Bug::OffByOne, 0);
        assert!(code.contains("1e-10 or x > 8"), "{code}");
        let (code, _) = CodeSolution::new("q", "def f(s):\n    t = 'x < y'\n    return s < t\n")
            .with_bug(Bug::WrongOperator, 0);
        assert!(
            code.contains("'x < y'") && code.contains("s >= t"),
            "{code}"
        );
    }

    #[test]
    fn a_kind_without_a_place_falls_through_to_one_that_has() {
        let s = CodeSolution::new("q", "def f(s):\n    return s.upper()\n");
        let (code, kind) = s.with_bug(Bug::MissingEdgeCase, 0);
        assert_eq!(kind, Bug::SyntaxError);
        assert!(code.contains("def f(s)\n"), "{code}");
        let (code, kind) =
            CodeSolution::new("q", "    return s.upper()\n").with_bug(Bug::MissingEdgeCase, 0);
        assert_eq!(kind, Bug::SyntaxError);
        assert!(code.contains("return s.upper(\n"), "{code}");
        // An infinite loop opens the first function of a program.
        let (code, kind) = s.with_bug(Bug::InfiniteLoop, 0);
        assert_eq!(kind, Bug::InfiniteLoop);
        assert!(code.starts_with("def f(s):\n    attempts = 0\n"), "{code}");
    }

    #[test]
    fn a_guard_alone_in_its_block_is_not_dropped() {
        // Dropping the inner guard would leave `for` without a body: not a missing edge case.
        let s = CodeSolution::new(
            "q",
            "def f(xs):\n    for x in xs:\n        if x < 0:\n            return True\n    return False\n",
        );
        let (code, kind) = s.with_bug(Bug::MissingEdgeCase, 0);
        assert_eq!(kind, Bug::SyntaxError, "{code}");
        let s = CodeSolution::new(
            "q",
            "def f(xs):\n    if not xs:\n        return -1\n    return xs[0]\n",
        );
        let (code, kind) = s.with_bug(Bug::MissingEdgeCase, 0);
        assert_eq!(kind, Bug::MissingEdgeCase);
        assert_eq!(code, "def f(xs):\n    return xs[0]\n");
        // A guard giving back an empty value is often redundant: not dropped.
        let s = CodeSolution::new(
            "q",
            "def f(s):\n    if not s: return ''\n    return s[::-1]\n",
        );
        assert_eq!(s.with_bug(Bug::MissingEdgeCase, 0).1, Bug::SyntaxError);
    }

    #[test]
    fn a_sample_reasons_then_fences_the_whole_function() {
        let settings = distillery_spec::mock::MockSettings {
            accuracy: 0.5,
            ..Default::default()
        };
        let plans: Vec<SamplePlan> = (0..40)
            .map(|i| SamplePlan::draw(&settings, 7, None, i))
            .collect();
        let samples: Vec<Sample> = plans.iter().map(|plan| build(&solution(), plan)).collect();
        for (plan, sample) in plans.iter().zip(&samples) {
            assert!(
                sample.reasoning.contains("`below_zero`"),
                "{}",
                sample.reasoning
            );
            assert!(!sample.reasoning.contains("```"));
            let (before, code) = sample.content.split_once("```python\n").expect("a fence");
            assert!(before.starts_with("Here is the implementation"));
            let (code, after) = code.split_once("```").expect("a closed fence");
            assert_eq!(after.is_empty(), !plan.prose_after, "{after:?}");
            assert!(
                code.starts_with(PROMPT),
                "the whole function, signature and all"
            );
            assert_eq!(sample.bug.is_some(), plan.wrong);
            assert_eq!(code == solution().code(), !plan.wrong);
        }
        assert!(plans.iter().any(|p| p.prose_after) && plans.iter().any(|p| !p.prose_after));
        assert!(plans.iter().any(|p| p.wrong) && plans.iter().any(|p| !p.wrong));
    }

    #[test]
    fn every_kind_is_drawn() {
        let kinds: std::collections::BTreeSet<Bug> = (0..50).map(drawn_bug).collect();
        assert_eq!(kinds.len(), Bug::ALL.len());
    }
}

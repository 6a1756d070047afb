//! Finding the final answer in a model output, the way a careful grader reads it.
//!
//! Rules come in tiers. An explicit "Final Answer: …" commits the model and wins outright. Next,
//! among `<answer>` tags, `\boxed{}`, `####` and "the answer is", the one written *last* wins:
//! models revise ("My first attempt gave \boxed{51750} … the answer is \boxed{15750}"), and the
//! last committed answer is the one that counts. Bold text, the whole output, the last formula
//! and the last number are fallbacks, in that order.

use distillery_spec::AnswerExtract;
use serde::{Deserialize, Serialize};

use super::lex::{matching_brace, scan_number};
use super::text::{clean_answer, latex_regions, math_envs, rfind_ci, sentence_end, starts_with_ci};

/// Only this much of the end of an output is searched: answers come last, and this bounds the
/// work on pathological inputs.
const MAX_SCAN_BYTES: usize = 64 * 1024;
/// Longest span (after cleaning) treated as a candidate for parsing as a whole.
const MAX_WHOLE_TEXT: usize = 400;
const MAX_FORMULA_TRIES: usize = 32;
/// Most boxes joined into one list answer.
const MAX_BOXES_IN_LIST: usize = 64;

/// The answer text found in an output, and which rule found it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extracted {
    pub text: String,
    pub rule: Rule,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// "Final Answer: The final answer is X. I hope it is correct.", "**Final Answer** \boxed{X}".
    FinalAnswer,
    /// `<answer>X</answer>`.
    AnswerTag,
    /// The last `\boxed{}` / `\fbox{}`, or a run of them joined by "and" / commas.
    Boxed,
    /// `#### X` (GSM8K).
    Hashes,
    /// "the answer is X", "Answer: X".
    AnswerPhrase,
    /// The last bold `**X**` that reads as an answer.
    Bold,
    /// The whole output is the answer ("1 000", "$\frac13$").
    WholeText,
    /// The last formula (`$…$`, `\[…\]`, …) that reads as an answer.
    LastFormula,
    /// The last number in prose.
    LastNumber,
    /// A multiple-choice letter.
    Choice,
}

struct Found {
    start: usize,
    text: String,
    rule: Rule,
}

/// The reference answer in a gold solution's answer field, read as `how` says; `None` when
/// there is none. The same box scanner as [`extract_answer`], with a reference's rules: a gold
/// solution states one final answer, so it is the last closed `\boxed{}` (where a prediction
/// may join a list of boxes or fall back to prose), or the rest of GSM8K's `####` line.
pub fn reference_answer(text: &str, how: AnswerExtract) -> Option<String> {
    let answer = match how {
        AnswerExtract::Verbatim => text.trim().to_owned(),
        AnswerExtract::Gsm8k => {
            let (_, tail) = text.rsplit_once("####")?;
            // The answer is the rest of the line after the marker.
            let line = tail.trim().lines().next().unwrap_or("").trim();
            line.replace(',', "")
                .trim_end_matches('.')
                .trim()
                .to_owned()
        }
        AnswerExtract::Boxed => {
            let last = boxes(text).into_iter().rev().find(|b| b.closed)?;
            text[last.content].trim().to_owned()
        }
    };
    (!answer.is_empty()).then_some(answer)
}

/// The final answer of `output`, or `None` when it commits to nothing.
pub fn extract_answer(output: &str) -> Option<Extracted> {
    // The typographic minus sign, "−3 °C", is a minus sign.
    let with_minus;
    let output = if output.contains('\u{2212}') {
        with_minus = output.replace('\u{2212}', "-");
        &with_minus
    } else {
        output
    };
    let text = answer_region(output);
    let found = final_answer(text)
        .or_else(|| {
            [
                answer_tag(text),
                boxed(text),
                hashes(text),
                answer_phrase(text),
            ]
            .into_iter()
            .flatten()
            .max_by_key(|f| f.start)
        })
        .or_else(|| bold(text))
        .or_else(|| whole_text(text))
        .or_else(|| last_statement_answer(text))?;
    let text = found.text.trim().to_string();
    (!text.is_empty()).then_some(Extracted {
        text,
        rule: found.rule,
    })
}

/// The part of the output that can hold the answer: after the reasoning, before any leaked
/// chat-template turn, and at most the last [`MAX_SCAN_BYTES`].
pub(crate) fn answer_region(output: &str) -> &str {
    let mut text = output;
    // A leaked chat-template token ends the answer: what follows is another turn.
    if let Some(at) = first_template_token(text)
        && !text[..at].trim().is_empty()
    {
        text = &text[..at];
    }
    // What is inside the reasoning is never the answer: a closed `<think>` with nothing after it,
    // or one never closed (the output was cut off while thinking), commits to nothing.
    if let Some(at) = text.rfind("</think>") {
        text = &text[at + "</think>".len()..];
    } else if text.contains("<think>") {
        return "";
    }
    if text.len() > MAX_SCAN_BYTES {
        let mut start = text.len() - MAX_SCAN_BYTES;
        while !text.is_char_boundary(start) {
            start += 1;
        }
        text = &text[start..];
    }
    text
}

/// Where the first chat-template special token starts: `<|im_end|>`, `<|eot_id|>`,
/// `<｜end▁of▁sentence｜>`, `</s>`, `[INST]`, … (after any `<think>` block, whose tags are not
/// template tokens).
fn first_template_token(text: &str) -> Option<usize> {
    let special = |open: &str, close: &str| {
        let mut from = 0;
        while let Some(rel) = text[from..].find(open) {
            let start = from + rel;
            let body = &text[start + open.len()..];
            // Only a short name can sit between the brackets: look no further than that.
            let mut window = body.len().min(40 + close.len());
            while !body.is_char_boundary(window) {
                window -= 1;
            }
            if let Some(end) = body[..window].find(close)
                && end > 0
                && body[..end]
                    .chars()
                    .all(|c| c.is_alphanumeric() || matches!(c, '_' | '▁' | '-'))
            {
                return Some(start);
            }
            from = start + open.len();
        }
        None
    };
    [
        special("<|", "|>"),
        special("<｜", "｜>"),
        text.find("</s>"),
        text.find("[INST]"),
    ]
    .into_iter()
    .flatten()
    .min()
}

// ---------------------------------------------------------------------------------------------
// Tier 1: "final answer".

fn final_answer(text: &str) -> Option<Found> {
    let mut end = text.len();
    while let Some(at) = rfind_ci(text, "final answer", end) {
        end = at;
        let after = text[at + "final answer".len()..].trim_start_matches([' ', '*', '\t']);
        let body = if let Some(rest) = after.strip_prefix(':') {
            rest
        } else if starts_with_ci(after, "is")
            && !after[2..].starts_with(|c: char| c.is_ascii_alphabetic())
        {
            &after[2..]
        } else if after.starts_with(['\n', '$'])
            || after.starts_with("\\[")
            || after.starts_with("\\(")
            || after.starts_with("\\boxed")
        {
            after
        } else {
            continue;
        };
        let body = body.trim_start_matches([' ', '*', '\t', ':']).trim_start();
        let span = &body[..sentence_end(body)];
        if span.trim().is_empty() {
            continue;
        }
        let answer = leading_formulas(strip_quotes(span))
            .or_else(|| resolve_span(span))
            .unwrap_or_else(|| clean_answer(span));
        return Some(Found {
            start: at,
            text: answer,
            rule: Rule::FinalAnswer,
        });
    }
    None
}

fn strip_quotes(s: &str) -> &str {
    let s = s.trim();
    for (open, close) in [("\\\"", "\\\""), ("\"", "\""), ("“", "”")] {
        if let Some(inner) = s.strip_prefix(open).and_then(|r| r.strip_suffix(close)) {
            return inner.trim();
        }
    }
    s
}

/// A span that opens with formulas: the formulas joined by separators, ignoring what follows.
/// "$9999$, \boxed{1}" → "9999"; "$12 $ and $13 $" → "12, 13".
fn leading_formulas(span: &str) -> Option<String> {
    if !(span.starts_with('$') || span.starts_with("\\(") || span.starts_with("\\[")) {
        return None;
    }
    let mut parts = Vec::new();
    let mut pos = 0;
    for env in math_envs(span) {
        let gap = span[pos..env.start].trim();
        let gap = gap.trim_start_matches(',').trim();
        if !(gap.is_empty() || gap == "and" || gap == "or" || gap == ";") {
            break;
        }
        let content = &span[env.content.clone()];
        parts.push(leading_box(content).unwrap_or(content));
        pos = env.end;
    }
    if parts.is_empty() {
        return None;
    }
    Some(
        parts
            .iter()
            .map(|p| clean_answer(p))
            .collect::<Vec<_>>()
            .join(", "),
    )
}

/// Reads a prose span after a cue ("the answer is …") down to something that parses.
fn resolve_span(span: &str) -> Option<String> {
    let span = strip_quotes(span.trim());
    if let Some(content) = leading_box(span) {
        return Some(clean_answer(content));
    }
    let cleaned = clean_answer(span);
    if super::parses(&cleaned) {
        return Some(cleaned);
    }
    // "The volume of $ABCDEFGH$ is 120" → "120".
    if let Some(at) = span.rfind(" is ") {
        let tail = &span[at + 4..];
        if let Some(found) = leading_formulas(tail.trim()) {
            return Some(found);
        }
        let cleaned = clean_answer(tail);
        if super::parses(&cleaned) {
            return Some(cleaned);
        }
    }
    last_formula(span)
        .or_else(|| last_number(span))
        .map(|f| f.text)
}

/// A word answer after a cue ("The answer is north."): at most three words, no digits.
fn short_text_answer(span: &str) -> Option<String> {
    let cleaned = clean_answer(span);
    let words = cleaned.split_whitespace().count();
    let plain = cleaned
        .chars()
        .all(|c| c.is_alphabetic() || c == ' ' || c == '-' || c == '\'');
    (words > 0 && words <= 3 && plain).then_some(cleaned)
}

/// The content of a `\boxed{…}` that opens the span (after `$` or `**`).
fn leading_box(span: &str) -> Option<&str> {
    let trimmed = span
        .trim_start_matches(['$', '*', ' '])
        .trim_start_matches("\\(")
        .trim_start_matches("\\[")
        .trim_start();
    if !(trimmed.starts_with("\\boxed") || trimmed.starts_with("\\fbox")) {
        return None;
    }
    let offset = span.len() - trimmed.len();
    boxes(span)
        .into_iter()
        .find(|b| b.start == offset)
        .map(|b| &span[b.content])
}

// ---------------------------------------------------------------------------------------------
// Tier 2: explicit answer markers; the last one written wins.

fn answer_tag(text: &str) -> Option<Found> {
    let at = text.rfind("<answer>")?;
    let body = &text[at + "<answer>".len()..];
    let body = body.find("</answer>").map_or(body, |end| &body[..end]);
    let answer = resolve_span(body).unwrap_or_else(|| clean_answer(body));
    Some(Found {
        start: at,
        text: answer,
        rule: Rule::AnswerTag,
    })
}

struct BoxSpan {
    start: usize,
    content: std::ops::Range<usize>,
    end: usize,
    /// `\boxed{…}` with its closing brace (not `\boxed 5`, not one cut off).
    closed: bool,
}

/// Every top-level `\boxed{…}` / `\fbox{…}`, brace-matched; an unclosed one runs to the end.
fn boxes(text: &str) -> Vec<BoxSpan> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(rel) = text[at..].find('\\') {
        let start = at + rel;
        let name_len = if text[start + 1..].starts_with("boxed") {
            5
        } else if text[start + 1..].starts_with("fbox") {
            4
        } else {
            at = start + 1;
            continue;
        };
        let mut open = start + 1 + name_len;
        while b.get(open) == Some(&b' ') {
            open += 1;
        }
        let (content, end, closed) = if b.get(open) == Some(&b'{') {
            match matching_brace(b, open) {
                Some(close) => (open + 1..close, close + 1, true),
                None => (open + 1..text.len(), text.len(), false),
            }
        } else {
            // `\boxed 5`: one token.
            let len = text[open..]
                .find(|c: char| c.is_whitespace() || c == '$')
                .unwrap_or(text.len() - open);
            (open..open + len, open + len, false)
        };
        out.push(BoxSpan {
            start,
            content,
            end,
            closed,
        });
        at = end.max(start + 1);
    }
    out
}

fn boxed(text: &str) -> Option<Found> {
    let all = boxes(text);
    let last = all.len().checked_sub(1)?;
    // Walk back over boxes joined only by separators: "\boxed{(1, 2)}, \boxed{(2, 1)}".
    let mut first = last;
    while first > 0
        && last - first + 1 < MAX_BOXES_IN_LIST
        && is_list_gap(&text[all[first - 1].end..all[first].start])
    {
        first -= 1;
    }
    let parts: Vec<String> = all[first..=last]
        .iter()
        .map(|b| clean_answer(&text[b.content.clone()]))
        .collect();
    Some(Found {
        start: all[first].start,
        text: parts.join(", "),
        rule: Rule::Boxed,
    })
}

/// Whether the text between two boxes only separates list items ("and", ",", `\quad`), as
/// opposed to prose between a first attempt and a revision.
fn is_list_gap(gap: &str) -> bool {
    if gap.len() > 80 {
        return false;
    }
    let mut reduced = gap.to_string();
    for noise in [
        "\\text{", "\\mbox{", "\\qquad", "\\quad", "\\(", "\\)", "\\[", "\\]", "\\,", "\\ ", "$",
        "{", "}", "&",
    ] {
        if reduced.contains(noise) {
            reduced = reduced.replace(noise, " ");
        }
    }
    if reduced.contains('\n') || reduced.contains(". ") || reduced.trim_end().ends_with('.') {
        return false;
    }
    let words: Vec<&str> = reduced
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|w| !w.is_empty())
        .collect();
    // A few words of labels or units ("for part (a) and", "papers and"), not a sentence of
    // prose between an attempt and a revision.
    let prose_words = words
        .iter()
        .filter(|w| !matches!(**w, "and" | "or") && w.chars().any(char::is_alphabetic))
        .count();
    let joined = reduced.trim().is_empty()
        || reduced.contains([',', ';'])
        || words.iter().any(|w| matches!(*w, "and" | "or"))
        || words
            .iter()
            .all(|w| w.chars().all(|c| !c.is_alphanumeric()));
    joined && prose_words <= 4
}

fn hashes(text: &str) -> Option<Found> {
    let at = text.rfind("####")?;
    let body = text[at + 4..].trim_start_matches('#');
    let line = body.lines().next().unwrap_or("");
    if line.trim().is_empty() {
        return None;
    }
    let answer = resolve_span(line).unwrap_or_else(|| clean_answer(line));
    Some(Found {
        start: at,
        text: answer,
        rule: Rule::Hashes,
    })
}

/// Cue words that introduce a committed answer, each with what may follow it.
const ANSWER_CUES: &[(&str, &[&str])] = &[
    (
        "answer",
        &[":", "is:", "is", "=", "should be", "would be", "will be"],
    ),
    ("comes to", &[""]),
    ("result is", &[""]),
    ("total is", &[""]),
];

/// The last "the answer is X" (or another cue) whose X reads as an answer.
fn answer_phrase(text: &str) -> Option<Found> {
    ANSWER_CUES
        .iter()
        .filter_map(|(cue, continuations)| last_cued_answer(text, cue, continuations))
        .max_by_key(|found| found.start)
}

fn last_cued_answer(text: &str, cue: &str, continuations: &[&str]) -> Option<Found> {
    let mut end = text.len();
    for _ in 0..MAX_FORMULA_TRIES {
        let at = rfind_ci(text, cue, end)?;
        end = at;
        if text[..at].ends_with(|c: char| c.is_ascii_alphabetic()) {
            continue;
        }
        let after = text[at + cue.len()..].trim_start_matches(['*', ' ']);
        let Some(body) = continuations.iter().find_map(|next| {
            let rest = after.get(next.len()..)?;
            // "answer is" but not "answer isn't"; a cue with no continuation needs no check.
            let whole_word =
                next.is_empty() || !rest.starts_with(|c: char| c.is_ascii_alphabetic());
            (starts_with_ci(after, next) && whole_word).then_some(rest)
        }) else {
            continue;
        };
        let body = body.trim_start_matches(['*', ' ', ':', '\t']);
        let span = &body[..sentence_end(body)];
        if let Some(answer) = resolve_span(span).or_else(|| short_text_answer(span)) {
            return Some(Found {
                start: at,
                text: answer,
                rule: Rule::AnswerPhrase,
            });
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Tiers 3 and 4: weaker evidence.

fn bold(text: &str) -> Option<Found> {
    let marks: Vec<usize> = text.match_indices("**").map(|(i, _)| i).collect();
    let pairs = marks.chunks_exact(2).rev().take(MAX_FORMULA_TRIES);
    for pair in pairs {
        let content = &text[pair[0] + 2..pair[1]];
        if content.len() > 100
            || content.contains('\n')
            || !content.contains(|c: char| c.is_ascii_digit())
        {
            continue;
        }
        let cleaned = clean_answer(content);
        if super::parses(&cleaned) {
            return Some(Found {
                start: pair[0],
                text: cleaned,
                rule: Rule::Bold,
            });
        }
    }
    None
}

fn whole_text(text: &str) -> Option<Found> {
    if text.len() > MAX_WHOLE_TEXT {
        return None;
    }
    let cleaned = clean_answer(text);
    // An output that is one formula is its answer, even one we cannot read as mathematics
    // (it still compares as text).
    let trimmed = text.trim();
    let one_formula = math_envs(trimmed)
        .first()
        .is_some_and(|env| env.start == 0 && env.end == trimmed.len());
    // Prose around a formula ("So $1 \le x \le 5$.") is not a bare answer.
    let prose_and_formula = !one_formula && (cleaned.contains('$') || cleaned.contains("\\("));
    if (super::parses(&cleaned) && !prose_and_formula) || one_formula {
        return Some(Found {
            start: 0,
            text: cleaned,
            rule: Rule::WholeText,
        });
    }
    // Short non-mathematical answers ("12:00", "odd") compare as text.
    let words = cleaned.split_whitespace().count();
    let short = cleaned.len() <= 24 && words <= 2 && !cleaned.contains(['.', '\\', '$']);
    short.then_some(Found {
        start: 0,
        text: cleaned,
        rule: Rule::WholeText,
    })
}

/// The weakest evidence: the last formula or number of the output's last statement that states
/// one, whichever comes later. Closing pleasantries ("I hope it is correct.") and comments with
/// no mathematics ("Double-checking: the arithmetic is consistent.") are passed over, but an
/// output cut off mid-sentence ("… Adding everything up gives") commits to nothing: falling back
/// to the last number it happened to compute would accept a trace with no final answer.
fn last_statement_answer(text: &str) -> Option<Found> {
    let from = last_stating_statement(text)?;
    let tail = &text[from..];
    let formula = last_formula(tail);
    let number = last_number(tail);
    let found = match (formula, number) {
        (Some(f), Some(n)) => Some(if n.start > f.start { n } else { f }),
        (f, n) => f.or(n),
    }?;
    Some(Found {
        start: from + found.start,
        ..found
    })
}

/// Sentences that close an answer without stating anything.
const PLEASANTRIES: &[&str] = &[
    "i hope",
    "hope this",
    "hope it",
    "let me know",
    "feel free",
    "if you have any",
    "please let me know",
    "good luck",
    "thank you",
    "thanks",
    "happy to help",
];

/// Where the last statement holding a number or formula starts. Statements end at a newline,
/// or at `.`, `!`, `?` before whitespace, outside mathematics. `None` when the output stops
/// mid-sentence with nothing stated in that sentence.
fn last_stating_statement(text: &str) -> Option<usize> {
    const MAX_STATEMENTS: usize = 8;
    let envs = math_envs(text);
    let math: Vec<std::ops::Range<usize>> = envs
        .iter()
        .map(|e| e.start..e.end)
        .chain(latex_regions(text))
        .collect();
    let b = text.as_bytes();
    let mut in_math = vec![false; b.len()];
    for range in &math {
        in_math[range.clone()].fill(true);
    }
    let is_break = |i: usize| {
        let boundary = match b[i] {
            b'\n' => true,
            b'.' | b'!' | b'?' => b.get(i + 1).is_some_and(u8::is_ascii_whitespace),
            _ => false,
        };
        boundary && !in_math[i]
    };
    let trimmed = text.trim_end();
    let cut_off = trimmed.ends_with(|c: char| c.is_ascii_alphabetic() || ",;:(=+".contains(c));
    let mut end = trimmed.len();
    for index in 0..MAX_STATEMENTS {
        let body_end = text[..end]
            .trim_end_matches(['.', '!', '?', ' ', '\n'])
            .len();
        let start = (0..body_end)
            .rev()
            .find(|&i| is_break(i))
            .map_or(0, |i| i + 1);
        let statement = &text[start..body_end];
        let lower = statement.trim_start().to_ascii_lowercase();
        let states = statement.contains(|c: char| c.is_ascii_digit())
            || math.iter().any(|r| r.start >= start && r.start < body_end);
        if states && !PLEASANTRIES.iter().any(|p| lower.starts_with(p)) {
            return Some(start);
        }
        if index == 0 && cut_off && !states {
            return None;
        }
        if start == 0 {
            return None;
        }
        end = start;
    }
    Some(0)
}

/// The last formula that reads as an answer, with the formulas listed before it ("$x = 1$ and
/// $x = 2$", "$3$, $5$ or $7$").
fn last_formula(text: &str) -> Option<Found> {
    let envs = math_envs(text);
    let last = envs
        .iter()
        .enumerate()
        .rev()
        .take(MAX_FORMULA_TRIES)
        .find(|(_, env)| super::parses(&clean_answer(&text[env.content.clone()])))?
        .0;
    let mut first = last;
    while first > 0 && last - first < MAX_BOXES_IN_LIST {
        let gap = text[envs[first - 1].end..envs[first].start].trim();
        let gap = gap.trim_start_matches(',').trim();
        let listed = matches!(gap, "" | "and" | "or" | "," | ";");
        if !listed || !super::parses(&clean_answer(&text[envs[first - 1].content.clone()])) {
            break;
        }
        first -= 1;
    }
    let parts: Vec<String> = envs[first..=last]
        .iter()
        .map(|env| clean_answer(&text[env.content.clone()]))
        .collect();
    Some(Found {
        start: envs[first].start,
        text: parts.join(", "),
        rule: Rule::LastFormula,
    })
}

/// The last number in prose: `-3`, `1,000.99`, `4 4/9`, `2/3`, `28%`. Digits glued to letters
/// (`AZYUK2A`, `x2`) and digits inside `\(…\)` / `\[…\]` do not count.
fn last_number(text: &str) -> Option<Found> {
    let b = text.as_bytes();
    // Numbers inside formulas belong to the formulas.
    let excluded: Vec<std::ops::Range<usize>> = latex_regions(text)
        .into_iter()
        .chain(math_envs(text).into_iter().map(|e| e.start..e.end))
        .collect();
    let mut last: Option<std::ops::Range<usize>> = None;
    let mut i = 0;
    while i < b.len() {
        let prev = if i > 0 { b[i - 1] } else { b' ' };
        let starts = b[i].is_ascii_digit()
            || (b[i] == b'.'
                && b.get(i + 1).is_some_and(u8::is_ascii_digit)
                && !prev.is_ascii_digit());
        if !starts {
            i += 1;
            continue;
        }
        let scan = scan_number(b, i, true, true);
        let mut end = scan.end;
        // A decimal comma: "2,74 $", "0,375" (never "1,250", the thousands form, nor "1,2,3").
        if matches!(&scan.tok, super::lex::Tok::Num(n) if !n.contains('.'))
            && b.get(end) == Some(&b',')
        {
            let frac = b[end + 1..]
                .iter()
                .take_while(|c| c.is_ascii_digit())
                .count();
            let int = &text[i..end];
            let list_goes_on = b.get(end + 1 + frac) == Some(&b',')
                && b.get(end + 2 + frac).is_some_and(u8::is_ascii_digit);
            if frac > 0 && (frac != 3 || int == "0") && !list_goes_on && !int.contains([',', ' ']) {
                end += 1 + frac;
            }
        }
        if matches!(scan.tok, super::lex::Tok::Num(_))
            && b.get(end) == Some(&b'/')
            && b.get(end + 1).is_some_and(u8::is_ascii_digit)
        {
            end = scan_number(b, end + 1, false, false).end;
        }
        if b.get(end) == Some(&b'%') {
            end += 1;
        }
        let glued = prev.is_ascii_alphabetic()
            || matches!(prev, b'_' | b'^' | b'\\')
            || (prev >= 0x80 && i > 0 && glued_to_letter(text, i));
        if !glued && !excluded.iter().any(|r| r.contains(&i)) {
            let signed = i >= 1
                && b[i - 1] == b'-'
                && (i < 2 || !(b[i - 2].is_ascii_alphanumeric() || b[i - 2] == b')'));
            last = Some(if signed { i - 1 } else { i }..end);
        }
        i = end.max(i + 1);
    }
    let range = last?;
    Some(Found {
        start: range.start,
        text: text[range].to_string(),
        rule: Rule::LastNumber,
    })
}

fn glued_to_letter(text: &str, i: usize) -> bool {
    text[..i]
        .chars()
        .next_back()
        .is_some_and(char::is_alphabetic)
}

/// A multiple-choice letter: "A", "(C)", `\text{(C)}`, "B." → the upper-case letter.
pub(crate) fn choice_letter(answer: &str) -> Option<char> {
    let cleaned = clean_answer(answer);
    let core: String = cleaned
        .replace("\\textbf", "")
        .replace("\\mathrm", "")
        .replace("\\text", "")
        .chars()
        .filter(|c| !matches!(c, '{' | '}' | '(' | ')' | ' ' | '.' | ':'))
        .collect();
    let mut chars = core.chars();
    match (chars.next(), chars.next()) {
        (Some(c @ 'A'..='J'), None) => Some(c),
        _ => None,
    }
}

/// The option chosen by an output whose gold is a letter. A committed answer names it by its
/// letter ("(B)", "B) 7") or by the option's text when the output lists the options ("(A) 9
/// (B) 14 …" then "#### 14"); a committed answer that is neither (a hedge such as "A or C", a
/// value no option has) chooses nothing, and is graded as it is. Only an output that commits to
/// nothing is searched for a stand-alone letter ("A. Because B is not valid").
pub(crate) fn choice_answer(output: &str, found: Option<Extracted>) -> Option<Extracted> {
    let chosen = |letter: char| Extracted {
        text: letter.to_string(),
        rule: Rule::Choice,
    };
    let Some(found) = found else {
        return first_choice_letter(output).map(chosen);
    };
    if let Some(letter) = choice_letter(&found.text).or_else(|| labelled_choice(&found.text)) {
        return Some(Extracted {
            text: letter.to_string(),
            ..found
        });
    }
    let answer = super::Answer::parse(&found.text);
    let matching: Vec<char> = listed_options(output)
        .into_iter()
        .filter(|(_, text)| super::Answer::parse(text).is_equivalent(&answer))
        .map(|(letter, _)| letter)
        .collect();
    match matching.as_slice() {
        [letter] => Some(chosen(*letter)),
        _ => Some(found),
    }
}

/// "B) 7", "(C) 42", "D. 12": an option given with its letter.
fn labelled_choice(answer: &str) -> Option<char> {
    let s = answer
        .trim()
        .trim_start_matches("\\text{")
        .trim_start_matches('(');
    let mut chars = s.chars();
    let letter = chars.next().filter(|c| ('A'..='J').contains(c))?;
    let rest = chars.as_str();
    let labelled = rest.starts_with(") ") || rest.starts_with(". ") || rest.starts_with("} ");
    // "A) 26, C" and "A) 26 or C" hedge between options.
    let hedged = rest.contains([',', ';']) || rest.contains(" or ");
    (labelled && !hedged).then_some(letter)
}

/// The options an output lists: "(A) 44  (B) 50  (C) 56" or one per line as "A) 44" / "A. 44".
/// The last complete listing (A, B, … in order) wins.
fn listed_options(output: &str) -> Vec<(char, String)> {
    let b = output.as_bytes();
    let mut markers: Vec<(usize, usize, char)> = Vec::new(); // (start, text start, letter)
    for i in 0..b.len().min(MAX_SCAN_BYTES * 4) {
        let c = b[i];
        if !(b'A'..=b'J').contains(&c) {
            continue;
        }
        let before_ok = i == 0 || b[i - 1].is_ascii_whitespace() || b[i - 1] == b'(';
        let paren = i > 0 && b[i - 1] == b'(';
        let after = b.get(i + 1).copied();
        let marker =
            (paren && after == Some(b')')) || (!paren && matches!(after, Some(b')' | b'.')));
        if before_ok && marker && b.get(i + 2).is_some_and(u8::is_ascii_whitespace) {
            markers.push((if paren { i - 1 } else { i }, i + 2, c as char));
        }
    }
    // Runs of consecutive letters starting at A.
    let mut best: Vec<(char, String)> = Vec::new();
    let mut k = 0;
    while k < markers.len() {
        if markers[k].2 != 'A' {
            k += 1;
            continue;
        }
        let mut run = vec![markers[k]];
        let mut j = k + 1;
        while j < markers.len() && markers[j].2 as u8 == run.last().map_or(0, |m| m.2 as u8) + 1 {
            run.push(markers[j]);
            j += 1;
        }
        if run.len() >= 2 {
            best = run
                .iter()
                .enumerate()
                .map(|(n, &(_, from, letter))| {
                    let to = run.get(n + 1).map_or(output.len(), |next| next.0);
                    let text = &output[from..to];
                    // An option's text ends at its line, a sentence or a wide gap.
                    let text = text.lines().next().unwrap_or("");
                    let text = text.split(". ").next().unwrap_or("");
                    let text = text.split("  ").next().unwrap_or("").trim();
                    (
                        letter,
                        text.trim_end_matches([',', ';', '.']).trim().to_string(),
                    )
                })
                .collect();
        }
        k = j;
    }
    best
}

/// The first stand-alone option letter in prose ("A. Because B is not valid" → A).
pub(crate) fn first_choice_letter(output: &str) -> Option<char> {
    let text = answer_region(output);
    let chars: Vec<char> = text.chars().take(MAX_SCAN_BYTES).collect();
    (0..chars.len()).find_map(|i| {
        let c = chars[i];
        let alone = |j: Option<usize>| {
            j.and_then(|j| chars.get(j))
                .is_none_or(|n| !n.is_alphanumeric() && *n != '\'')
        };
        // "I" is a pronoun far more often than option I.
        (('A'..='J').contains(&c) && c != 'I' && alone(i.checked_sub(1)) && alone(Some(i + 1)))
            .then_some(c)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_read_by_their_field_rule() {
        use AnswerExtract::{Boxed, Gsm8k, Verbatim};
        assert_eq!(reference_answer(" 42 ", Verbatim).as_deref(), Some("42"));
        assert_eq!(
            reference_answer("work\n#### 1,000", Gsm8k).as_deref(),
            Some("1000")
        );
        assert_eq!(
            reference_answer("#### 3 #### -7.5", Gsm8k).as_deref(),
            Some("-7.5")
        );
        assert_eq!(reference_answer("no marker", Gsm8k), None);
        // The last box only, where a prediction joins "\boxed{1} and \boxed{2}".
        assert_eq!(
            reference_answer("a \\boxed{1} then \\boxed{\\frac{1}{2}} end", Boxed).as_deref(),
            Some("\\frac{1}{2}")
        );
        assert_eq!(reference_answer("\\boxed{unclosed", Boxed), None);
        assert_eq!(
            reference_answer("\\boxed{2} then \\boxed{unclosed", Boxed).as_deref(),
            Some("2")
        );
        assert_eq!(reference_answer("\\fbox{7}", Boxed).as_deref(), Some("7"));
        assert_eq!(reference_answer("", Verbatim), None);
    }

    fn answer(output: &str) -> (String, Rule) {
        let found = extract_answer(output).unwrap_or_else(|| panic!("no answer in {output:?}"));
        (found.text, found.rule)
    }

    #[test]
    fn final_answer_commits() {
        assert_eq!(
            answer("Final Answer: The final answer is $28 \\%$. I hope it is correct."),
            ("28 \\%".into(), Rule::FinalAnswer)
        );
        assert_eq!(answer("final answer is $9999$, \\boxed{1}").0, "9999");
        assert_eq!(
            answer("Final Answer: The volume of $ABCDEFGH$ is 120. I hope it is correct.").0,
            "120"
        );
        assert_eq!(answer("**Final Answer**\n\\boxed{189}\n").0, "189");
    }

    #[test]
    fn the_last_revision_wins() {
        let out = "My first attempt gave \\boxed{51750}, but I mis-added a step.\nRedoing it, the answer is \\boxed{15750}.";
        assert_eq!(answer(out), ("15750".into(), Rule::Boxed));
        let out =
            "The answer is 14.\nLet me double-check the first step: 28 was an intermediate value.";
        assert_eq!(answer(out), ("14".into(), Rule::AnswerPhrase));
        let out = "<think>\nHmm, is it 76?\n</think>\nThe final answer is $\\boxed{75}$.";
        assert_eq!(answer(out).0, "75");
    }

    #[test]
    fn boxes_joined_by_separators_form_a_list() {
        assert_eq!(
            answer("\\boxed{1} and \\boxed{2} and \\boxed{3}").0,
            "1, 2, 3"
        );
        assert_eq!(answer("\\boxed{1} no no no no no \\boxed{2}").0, "2");
        assert_eq!(answer("\\boxed{W(n) = 1").0, "W(n) = 1");
    }

    #[test]
    fn fallbacks() {
        assert_eq!(
            answer("Putting it all together: **62**."),
            ("62".into(), Rule::Bold)
        );
        assert_eq!(
            answer("#### 0.8\nI hope this helps!"),
            ("0.8".into(), Rule::Hashes)
        );
        assert_eq!(answer("Answer \\[ 9 \\]"), ("9".into(), Rule::LastFormula));
        assert_eq!(
            answer("it's not 10 it's 1,000.99m²"),
            ("1,000.99".into(), Rule::LastNumber)
        );
        assert_eq!(
            answer("the change is 100 - 99 = $1."),
            ("1".into(), Rule::LastNumber)
        );
        assert_eq!(extract_answer("Answer \\( \n 9 \n \\)"), None);
        assert_eq!(
            extract_answer("AZYUK2A").map(|e| e.rule),
            Some(Rule::WholeText)
        );
    }

    #[test]
    fn choices() {
        assert_eq!(choice_letter("\\text{(C)}"), Some('C'));
        assert_eq!(choice_letter("x"), None);
        assert_eq!(first_choice_letter("A. Because B is not valid"), Some('A'));
        assert_eq!(first_choice_letter("Because B is valid"), Some('B'));
    }
}

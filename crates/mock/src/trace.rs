//! R1-style traces rebuilt from reference solutions.
//!
//! Everything here is pure: the same solution and the same [`SamplePlan`] give the same text,
//! which is what lets a retried request get exactly the samples it got the first time.

use std::borrow::Cow;

use distillery_spec::mock::MockSettings;

use crate::code::Bug;
use crate::hash::{Domain, Draws};

/// Inserted into the reasoning of language-mixed samples ("Let's check this calculation again.
/// Let's re-verify step by step."). Two sentences so a script-mixing check has something to
/// find even in a short trace.
pub(crate) const MIXED_LANGUAGE_SENTENCE: &str =
    "让我们再检查一下这个计算。我们一步一步地重新验证。";

const OPENINGS: [&str; 3] = [
    "Okay, let me work through this.",
    "Alright, let me think about this step by step.",
    "Okay, so I need to work this out carefully.",
];

const DOUBLE_CHECK: &str = "Wait, let me double-check that calculation. Yes, it holds.";

/// Used when a reference has no `####` section, so there are no steps to replay.
const GENERIC_STEP: &str = "Let me set up the quantities the problem gives and combine them.";

/// Characters per token in the token estimates (usage, `max_tokens`). Counted in `char`s, not
/// bytes, so a Chinese character is a quarter token like a Latin letter: close enough for a
/// simulator, and independent of any tokenizer.
pub(crate) const CHARS_PER_TOKEN: u64 = 4;

/// Tokens in `text`, estimated as one per [`CHARS_PER_TOKEN`] characters, rounded up.
pub(crate) fn approx_tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(CHARS_PER_TOKEN)
}

/// The final answer of a GSM8K-style reference: the text after the last `####`, or the whole
/// reference when it has none.
pub fn final_answer(reference: &str) -> &str {
    match reference.rfind("####") {
        Some(at) => reference[at + "####".len()..].trim(),
        None => reference.trim(),
    }
}

/// Removes GSM8K calculator annotations: `9 * 2 = $<<9*2=18>>18` becomes `9 * 2 = $18`.
pub fn strip_calculator_annotations(text: &str) -> Cow<'_, str> {
    if !text.contains("<<") {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find("<<") {
        let Some(close) = rest[open + 2..].find(">>") else {
            break;
        };
        out.push_str(&rest[..open]);
        rest = &rest[open + 2 + close + 2..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// A reference solution, split into what the simulator replays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Solution {
    /// Reasoning steps, annotations stripped, one per line of the reference.
    pub(crate) steps: Vec<String>,
    pub(crate) answer: String,
}

impl Solution {
    pub(crate) fn from_reference(reference: &str) -> Self {
        let steps = match reference.rfind("####") {
            Some(at) => reference[..at]
                .lines()
                .map(|line| strip_calculator_annotations(line.trim()).into_owned())
                .filter(|line| !line.is_empty())
                .collect(),
            None => Vec::new(),
        };
        Self {
            steps,
            answer: final_answer(reference).to_owned(),
        }
    }

    /// A stand-in for a prompt the data set does not know: generic steps ending in a number
    /// made up from the prompt's hash, so it is stable across retries.
    pub(crate) fn made_up(seed: u64, prompt_hash: u64) -> Self {
        let answer =
            (10 + Draws::new(Domain::MadeUpAnswer, &[seed, prompt_hash]).below(990)).to_string();
        Self {
            steps: vec![
                "First, I'll pick out the quantities the problem gives.".to_owned(),
                "Then I'll combine them in the order the question asks.".to_owned(),
                format!("Carrying out the arithmetic gives {answer}."),
            ],
            answer,
        }
    }
}

/// Everything random about one sample, drawn up front from (seed, prompt, choice index).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct SamplePlan {
    pub(crate) wrong: bool,
    pub(crate) language_mixed: bool,
    /// Share of the reasoning kept when the sample is cut off.
    pub(crate) truncate_at: Option<f64>,
    opening: usize,
    double_check: bool,
    /// Picks the kind of wrong answer and where the Chinese sentence goes.
    pub(crate) variant: u64,
    /// A code answer goes on after its code block with a sentence.
    pub(crate) prose_after: bool,
}

impl SamplePlan {
    /// The plan of sample `index` for the prompt hashed to `prompt_hash`. A request's own
    /// `seed`, when it sends one, is part of the key, so a client asking for one sample per
    /// request can still get different samples by varying it.
    pub(crate) fn draw(
        settings: &MockSettings,
        prompt_hash: u64,
        request_seed: Option<i64>,
        index: u32,
    ) -> Self {
        // `None` and `Some(0)` must differ, hence the offset.
        let request_seed = request_seed.map_or(0, |seed| (seed as u64).wrapping_add(1));
        let mut draws = Draws::new(
            Domain::Sample,
            &[settings.seed, prompt_hash, request_seed, u64::from(index)],
        );
        // Fixed order: adding a draw at the end keeps the earlier ones stable.
        let wrong = !draws.chance(settings.accuracy);
        let language_mixed = draws.chance(settings.language_mix_rate);
        let truncated = draws.chance(settings.truncation_rate);
        let keep_share = 0.3 + 0.5 * draws.next_f64();
        let opening = draws.below(OPENINGS.len() as u64) as usize;
        let double_check = draws.chance(0.5);
        let variant = draws.next_u64();
        let prose_after = draws.chance(0.5);
        Self {
            wrong,
            language_mixed,
            truncate_at: truncated.then_some(keep_share),
            opening,
            double_check,
            variant,
            prose_after,
        }
    }

    pub(crate) fn opening(&self) -> &'static str {
        OPENINGS[self.opening % OPENINGS.len()]
    }

    pub(crate) fn double_check(&self) -> bool {
        self.double_check
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FinishReason {
    Stop,
    Length,
}

impl FinishReason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Length => "length",
        }
    }
}

/// One completion: what the teacher "thought" and what it answered.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sample {
    pub(crate) reasoning: String,
    pub(crate) content: String,
    pub(crate) finish: FinishReason,
    /// The reasoning was cut before its end, so a `</think>` must not follow it.
    pub(crate) reasoning_cut: bool,
    pub(crate) wrong_answer: bool,
    /// The Chinese sentence is in the (possibly cut) reasoning.
    pub(crate) language_mixed: bool,
    /// The bug a wrong code sample carries.
    pub(crate) bug: Option<Bug>,
    /// What this sample continues: a new answer, or a partial one a request sent to finish.
    pub(crate) continues: Continues,
}

/// The part of an answer a continuation request already holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Continues {
    /// Nothing: a new answer, `<think>` and all.
    #[default]
    Nothing,
    /// Reasoning still open: the sample goes on with more of it, then `</think>` and the answer.
    Reasoning,
    /// The reasoning and part of the answer: the sample is the rest of the answer.
    Answer,
}

impl Sample {
    /// A sample from its text, cut off as `plan` says.
    pub(crate) fn from_parts(
        reasoning: String,
        content: String,
        plan: &SamplePlan,
        bug: Option<Bug>,
    ) -> Self {
        let mut sample = Self {
            reasoning,
            content,
            finish: FinishReason::Stop,
            reasoning_cut: false,
            continues: Continues::Nothing,
            wrong_answer: plan.wrong,
            language_mixed: plan.language_mixed,
            bug,
        };
        if let Some(keep_share) = plan.truncate_at {
            let chars = sample.reasoning.chars().count();
            sample.cut_reasoning((chars as f64 * keep_share) as usize, true);
        }
        sample
    }

    pub(crate) fn build(solution: &Solution, plan: &SamplePlan) -> Self {
        let shown: Cow<'_, str> = if plan.wrong {
            Cow::Owned(wrong_answer(&solution.answer, plan.variant))
        } else {
            Cow::Borrowed(&solution.answer)
        };

        let steps = &solution.steps;
        let mix_at = plan
            .language_mixed
            .then(|| (plan.variant >> 32) as usize % (steps.len() + 1));
        let mut reasoning =
            String::with_capacity(256 + steps.iter().map(|step| step.len() + 1).sum::<usize>());
        reasoning.push_str(OPENINGS[plan.opening % OPENINGS.len()]);
        reasoning.push_str("\n\n");
        if steps.is_empty() {
            reasoning.push_str(GENERIC_STEP);
            reasoning.push('\n');
        }
        for (i, step) in steps.iter().enumerate() {
            if mix_at == Some(i) {
                reasoning.push_str(MIXED_LANGUAGE_SENTENCE);
                reasoning.push('\n');
            }
            let is_last = i + 1 == steps.len();
            // Keep the trace coherent: a wrong sample's last step arrives at its wrong number.
            let changed = (is_last && plan.wrong)
                .then(|| replace_last_number(step, &solution.answer, &shown))
                .flatten();
            reasoning.push_str(changed.as_deref().unwrap_or(step));
            reasoning.push('\n');
        }
        if mix_at == Some(steps.len()) {
            reasoning.push_str(MIXED_LANGUAGE_SENTENCE);
            reasoning.push('\n');
        }
        if plan.double_check {
            reasoning.push_str(DOUBLE_CHECK);
            reasoning.push('\n');
        }
        reasoning.push_str("So the answer is ");
        reasoning.push_str(&shown);
        reasoning.push('.');

        let content = format!(
            "Working through the problem step by step gives {shown}.\n\n**Final Answer**\n\\boxed{{{shown}}}"
        );
        Self::from_parts(reasoning, content, plan, None)
    }

    /// The `tagged` assistant format: the answer inside `<answer>…</answer>`. A sample cut off
    /// before its answer has none to tag.
    pub(crate) fn tag_answer(&mut self) {
        if !self.content.is_empty() {
            self.content = format!("<answer>\n{}\n</answer>", self.content);
        }
    }

    pub(crate) fn reasoning_tokens(&self) -> u64 {
        approx_tokens(&self.reasoning)
    }

    /// Completion tokens: reasoning plus content (`<think>` tags, if any, are not counted).
    pub(crate) fn completion_tokens(&self) -> u64 {
        self.reasoning_tokens() + approx_tokens(&self.content)
    }

    /// Cuts the sample so its completion is at most `max_tokens` (as [`approx_tokens`] counts).
    pub(crate) fn limit_tokens(&mut self, max_tokens: u64) {
        let budget_chars = max_tokens.saturating_mul(CHARS_PER_TOKEN);
        if self.reasoning.chars().count() as u64 > budget_chars {
            self.cut_reasoning(usize::try_from(budget_chars).unwrap_or(usize::MAX), false);
            return;
        }
        let content_budget = max_tokens
            .saturating_sub(self.reasoning_tokens())
            .saturating_mul(CHARS_PER_TOKEN);
        if self.content.chars().count() as u64 > content_budget {
            let at = byte_index_of_char(
                &self.content,
                usize::try_from(content_budget).unwrap_or(usize::MAX),
            );
            self.content.truncate(at);
            self.finish = FinishReason::Length;
        }
    }

    /// What is left of this (whole) sample after `partial`, the assistant message a
    /// continuation request sent: `None` when `partial` is not how this sample begins.
    pub(crate) fn rest_after(&self, partial: &str) -> Option<Self> {
        let partial = partial.trim_start();
        let partial = partial.strip_prefix("<think>").unwrap_or(partial);
        let mut rest = self.clone();
        // Clients trim and join the pieces of an answer their own way: whitespace is not
        // compared.
        match partial.split_once("</think>") {
            None => {
                let left = strip_prefix_loosely(&self.reasoning, partial)?;
                rest.reasoning = left.to_owned();
                rest.continues = Continues::Reasoning;
            }
            Some((reasoning, content)) => {
                if !strip_prefix_loosely(&self.reasoning, reasoning)?
                    .trim()
                    .is_empty()
                {
                    return None;
                }
                let left = strip_prefix_loosely(&self.content, content)?;
                rest.reasoning.clear();
                rest.content = left.to_owned();
                rest.continues = Continues::Answer;
            }
        }
        // The part already written carried the mixed sentence, or it is still to come.
        rest.language_mixed &= rest.reasoning.contains(MIXED_LANGUAGE_SENTENCE);
        Some(rest)
    }

    /// Keeps the first `keep_chars` characters of the reasoning (backing off to a word boundary
    /// when `at_word` is set) and drops the answer.
    fn cut_reasoning(&mut self, keep_chars: usize, at_word: bool) {
        let mut at = byte_index_of_char(&self.reasoning, keep_chars);
        if at_word && let Some(space) = self.reasoning[..at].rfind(char::is_whitespace) {
            at = space;
        }
        self.reasoning.truncate(at);
        self.content.clear();
        self.finish = FinishReason::Length;
        self.reasoning_cut = true;
        self.language_mixed &= self.reasoning.contains(MIXED_LANGUAGE_SENTENCE);
    }
}

/// What follows `prefix` in `text`, whitespace aside: every other character of `prefix`
/// must be the next one of `text`.
fn strip_prefix_loosely<'t>(text: &'t str, prefix: &str) -> Option<&'t str> {
    let mut rest = text.char_indices().peekable();
    for wanted in prefix.chars().filter(|c| !c.is_whitespace()) {
        loop {
            let (_, c) = rest.next()?;
            if c.is_whitespace() {
                continue;
            }
            if c != wanted {
                return None;
            }
            break;
        }
    }
    Some(rest.peek().map_or("", |&(at, _)| &text[at..]))
}

/// Byte offset of the `n`th character, or the length when `text` is shorter.
fn byte_index_of_char(text: &str, n: usize) -> usize {
    text.char_indices().nth(n).map_or(text.len(), |(at, _)| at)
}

/// A plausible wrong answer: the right one off by a small amount, or doubled. Never equal to
/// `answer`; a non-numeric answer gets a made-up number.
pub(crate) fn wrong_answer(answer: &str, variant: u64) -> String {
    let plain: String = answer.chars().filter(|&c| c != ',').collect();
    let delta = 1 + ((variant >> 8) % 5) as i64;
    if let Ok(right) = plain.parse::<i64>() {
        let wrong = match variant % 3 {
            0 if right != 0 => right.checked_mul(2),
            1 => right.checked_sub(delta).filter(|&w| w >= 0 || right < 0),
            _ => None,
        }
        .or_else(|| right.checked_add(delta))
        .unwrap_or(right - delta);
        return wrong.to_string();
    }
    if let Ok(right) = plain.parse::<f64>()
        && right.is_finite()
    {
        let decimals = plain
            .split_once('.')
            .map_or(0, |(_, fraction)| fraction.len());
        let wrong = if variant.is_multiple_of(3) && right != 0.0 {
            right * 2.0
        } else {
            right + delta as f64
        };
        return format!("{wrong:.decimals$}");
    }
    let made_up = 2 + variant % 997;
    match made_up.to_string() {
        same if same == answer.trim() => (made_up + 1).to_string(),
        different => different,
    }
}

/// `line` with its last standalone occurrence of the number `from` (also in its `1,234` form)
/// replaced by `to`; `None` when the number does not occur.
fn replace_last_number(line: &str, from: &str, to: &str) -> Option<String> {
    let grouped = group_thousands(from);
    [Some(from), grouped.as_deref()]
        .into_iter()
        .flatten()
        .filter(|pattern| !pattern.is_empty())
        .find_map(|pattern| {
            line.rmatch_indices(pattern)
                .find(|&(at, found)| is_standalone_number(line, at, at + found.len()))
                .map(|(at, found)| format!("{}{to}{}", &line[..at], &line[at + found.len()..]))
        })
}

/// The number in `line[start..end]` is not part of a longer one (`18` in `180` or `1.18`).
fn is_standalone_number(line: &str, start: usize, end: usize) -> bool {
    let before = line[..start].chars().next_back();
    let mut after = line[end..].chars();
    let continues_before = before.is_some_and(|c| c.is_ascii_digit() || c == '.');
    let continues_after = match after.next() {
        Some(c) if c.is_ascii_digit() => true,
        Some('.' | ',') => after.next().is_some_and(|c| c.is_ascii_digit()),
        _ => false,
    };
    !continues_before && !continues_after
}

/// `70000` → `70,000`; `None` for anything but a plain integer of more than three digits.
fn group_thousands(number: &str) -> Option<String> {
    let digits = number.strip_prefix('-').unwrap_or(number);
    if digits.len() <= 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut out = String::with_capacity(number.len() + digits.len() / 3);
    if number.starts_with('-') {
        out.push('-');
    }
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const JANET: &str = "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\nShe makes 9 * 2 = $<<9*2=18>>18 every day at the farmer’s market.\n#### 18";

    fn plan(wrong: bool, language_mixed: bool, truncate_at: Option<f64>) -> SamplePlan {
        SamplePlan {
            wrong,
            language_mixed,
            truncate_at,
            opening: 0,
            double_check: false,
            variant: 1, // "right - delta" kind of wrong answer, delta 1
            prose_after: false,
        }
    }

    #[test]
    fn final_answer_is_the_text_after_the_last_hashes() {
        assert_eq!(final_answer(JANET), "18");
        assert_eq!(final_answer("steps\n#### 1,000 "), "1,000");
        assert_eq!(final_answer("####7"), "7");
        assert_eq!(final_answer("  \\frac{1}{2}\n"), "\\frac{1}{2}");
    }

    #[test]
    fn calculator_annotations_are_stripped() {
        assert_eq!(
            strip_calculator_annotations("He makes 9 * 2 = $<<9*2=18>>18 a day"),
            "He makes 9 * 2 = $18 a day"
        );
        assert_eq!(
            strip_calculator_annotations("a <<1+1=2>>2 and <<2*3=6>>6"),
            "a 2 and 6"
        );
        assert_eq!(strip_calculator_annotations("x << y"), "x << y");
        assert!(matches!(
            strip_calculator_annotations("plain"),
            Cow::Borrowed("plain")
        ));
    }

    #[test]
    fn solution_keeps_steps_without_annotations() {
        let solution = Solution::from_reference(JANET);
        assert_eq!(
            solution.steps,
            [
                "Janet sells 16 - 3 - 4 = 9 duck eggs a day.",
                "She makes 9 * 2 = $18 every day at the farmer’s market.",
            ]
        );
        assert_eq!(solution.answer, "18");
        let bare = Solution::from_reference("42");
        assert!(bare.steps.is_empty());
        assert_eq!(bare.answer, "42");
    }

    #[test]
    fn a_right_sample_replays_the_steps_and_boxes_the_answer() {
        let sample = Sample::build(&Solution::from_reference(JANET), &plan(false, false, None));
        assert_eq!(
            sample.reasoning,
            "Okay, let me work through this.\n\n\
             Janet sells 16 - 3 - 4 = 9 duck eggs a day.\n\
             She makes 9 * 2 = $18 every day at the farmer’s market.\n\
             So the answer is 18."
        );
        assert!(
            sample.content.ends_with("**Final Answer**\n\\boxed{18}"),
            "{}",
            sample.content
        );
        assert_eq!(sample.finish, FinishReason::Stop);
        assert!(!sample.wrong_answer && !sample.language_mixed && !sample.reasoning_cut);
    }

    #[test]
    fn a_wrong_sample_changes_the_last_step_and_the_box() {
        let sample = Sample::build(&Solution::from_reference(JANET), &plan(true, false, None));
        assert!(
            sample.reasoning.contains("She makes 9 * 2 = $17 every day"),
            "{}",
            sample.reasoning
        );
        assert!(sample.reasoning.ends_with("So the answer is 17."));
        assert!(sample.content.ends_with("\\boxed{17}"));
        assert!(!sample.content.contains("18"));
        assert!(sample.wrong_answer);
    }

    #[test]
    fn a_mixed_sample_carries_the_chinese_sentence() {
        let sample = Sample::build(&Solution::from_reference(JANET), &plan(false, true, None));
        assert!(sample.reasoning.contains(MIXED_LANGUAGE_SENTENCE));
        assert!(sample.language_mixed);
        assert!(sample.content.ends_with("\\boxed{18}"));
    }

    #[test]
    fn a_tagged_sample_wraps_its_answer_and_a_cut_one_has_none() {
        let mut sample = Sample::build(&Solution::from_reference(JANET), &plan(false, false, None));
        let answer = sample.content.clone();
        sample.tag_answer();
        assert_eq!(sample.content, format!("<answer>\n{answer}\n</answer>"));
        let mut cut = Sample::build(
            &Solution::from_reference(JANET),
            &plan(false, false, Some(0.5)),
        );
        cut.tag_answer();
        assert!(cut.content.is_empty());
    }

    #[test]
    fn a_truncated_sample_has_no_answer() {
        let full = Sample::build(&Solution::from_reference(JANET), &plan(false, false, None));
        let cut = Sample::build(
            &Solution::from_reference(JANET),
            &plan(false, false, Some(0.5)),
        );
        assert_eq!(cut.finish, FinishReason::Length);
        assert!(cut.reasoning_cut);
        assert!(cut.content.is_empty());
        assert!(full.reasoning.starts_with(&cut.reasoning));
        assert!(cut.reasoning.len() < full.reasoning.len() * 6 / 10);
        assert!(!cut.reasoning.contains("So the answer is"));
    }

    #[test]
    fn a_continuation_finishes_the_sample_a_partial_answer_began() {
        let solution = Solution::from_reference(JANET);
        let full = Sample::build(&solution, &plan(false, false, None));
        let cut = Sample::build(&solution, &plan(false, false, Some(0.5)));
        // Reasoning cut off: the rest of the reasoning, then the whole answer.
        let rest = full
            .rest_after(&format!("<think>\n{}", cut.reasoning.trim()))
            .expect("the cut sample is how the full one begins");
        assert_eq!(rest.continues, Continues::Reasoning);
        assert_eq!(
            format!("{}{}", cut.reasoning, rest.reasoning),
            full.reasoning
        );
        assert_eq!(rest.content, full.content);
        // Answer cut off: only the rest of the answer.
        let half = &full.content[..full.content.len() / 2];
        let partial = format!("<think>\n{}\n</think>\n\n{half}", full.reasoning);
        let rest = full.rest_after(&partial).unwrap();
        assert_eq!(rest.continues, Continues::Answer);
        assert!(rest.reasoning.is_empty());
        assert_eq!(format!("{half}{}", rest.content), full.content);
        // A client that trimmed a piece and joined with another space is still understood.
        let words: Vec<&str> = full.reasoning.split_whitespace().take(6).collect();
        let rest = full
            .rest_after(&format!("<think>{}", words.join("  ")))
            .unwrap();
        assert!(full.reasoning.ends_with(&rest.reasoning));
        // Another sample's beginning is not this one's.
        assert_eq!(full.rest_after("<think>\nSomething else entirely"), None);
    }

    #[test]
    fn max_tokens_caps_the_completion() {
        let solution = Solution::from_reference(JANET);
        let full = Sample::build(&solution, &plan(false, false, None));
        let total = full.completion_tokens();

        let mut roomy = full.clone();
        roomy.limit_tokens(total);
        assert_eq!(roomy, full, "a completion that fits is left alone");

        let mut in_content = full.clone();
        in_content.limit_tokens(full.reasoning_tokens() + 3);
        assert_eq!(in_content.finish, FinishReason::Length);
        assert_eq!(in_content.reasoning, full.reasoning);
        assert!(!in_content.reasoning_cut);
        assert_eq!(in_content.completion_tokens(), full.reasoning_tokens() + 3);

        let mut in_reasoning = full.clone();
        in_reasoning.limit_tokens(10);
        assert_eq!(in_reasoning.finish, FinishReason::Length);
        assert!(in_reasoning.reasoning_cut);
        assert_eq!(in_reasoning.reasoning.chars().count(), 40);
        assert!(in_reasoning.content.is_empty());
        assert_eq!(in_reasoning.completion_tokens(), 10);
    }

    #[test]
    fn tokens_are_a_quarter_of_the_characters_rounded_up() {
        assert_eq!(approx_tokens(""), 0);
        assert_eq!(approx_tokens("abcd"), 1);
        assert_eq!(approx_tokens("abcde"), 2);
        assert_eq!(approx_tokens("让我们再"), 1);
    }

    #[test]
    fn wrong_answers_are_plausible_and_never_right() {
        for variant in 0..200u64 {
            for right in ["18", "0", "3", "70000", "-4", "1,000", "2.5", "x+1"] {
                let wrong = wrong_answer(right, variant);
                assert_ne!(wrong, right, "variant {variant}");
                if let Ok(value) = right.replace(',', "").parse::<f64>() {
                    let wrong_value: f64 = wrong.parse().expect("numeric answers stay numeric");
                    assert_ne!(wrong_value, value);
                    let doubled = wrong_value == value * 2.0;
                    assert!(
                        doubled || (wrong_value - value).abs() <= 5.0,
                        "{right} → {wrong}"
                    );
                }
            }
        }
        assert_eq!(wrong_answer("18", 0), "36");
        assert_eq!(wrong_answer("18", 1), "17");
        assert_eq!(wrong_answer("2.5", 2), "3.5");
        // A non-negative answer does not turn negative.
        assert!((0..100).all(|v| !wrong_answer("1", v).starts_with('-')));
    }

    #[test]
    fn numbers_are_replaced_only_where_they_stand_alone() {
        assert_eq!(
            replace_last_number("18 plus 180 is 198, so 18", "18", "20").as_deref(),
            Some("18 plus 180 is 198, so 20")
        );
        assert_eq!(
            replace_last_number("a profit of $70,000 in total", "70000", "70001").as_deref(),
            Some("a profit of $70001 in total")
        );
        assert_eq!(replace_last_number("costs 1.18 each", "18", "20"), None);
        assert_eq!(replace_last_number("18.5 apples", "18", "20"), None);
        assert_eq!(
            replace_last_number("that is 18.", "18", "20").as_deref(),
            Some("that is 20.")
        );
    }

    #[test]
    fn plans_are_a_pure_function_of_seed_prompt_and_index() {
        let settings = MockSettings {
            accuracy: 0.5,
            language_mix_rate: 0.5,
            truncation_rate: 0.5,
            ..MockSettings::default()
        };
        let a = SamplePlan::draw(&settings, 11, None, 0);
        assert_eq!(a, SamplePlan::draw(&settings, 11, None, 0));
        let plans: Vec<_> = (0..64)
            .map(|i| SamplePlan::draw(&settings, 11, None, i))
            .collect();
        assert!(plans.iter().any(|p| p.wrong) && plans.iter().any(|p| !p.wrong));
        assert!(plans.iter().any(|p| p.truncate_at.is_some()));
        assert_ne!(a, SamplePlan::draw(&settings, 11, Some(0), 0));
        let reseeded = MockSettings {
            seed: 1,
            ..settings.clone()
        };
        let other: Vec<_> = (0..64)
            .map(|i| SamplePlan::draw(&reseeded, 11, None, i))
            .collect();
        assert_ne!(plans, other);
    }

    #[test]
    fn accuracy_sets_the_share_of_right_samples() {
        let settings = MockSettings {
            accuracy: 0.8,
            ..MockSettings::default()
        };
        let right = (0..5_000)
            .filter(|&prompt| !SamplePlan::draw(&settings, prompt, None, 0).wrong)
            .count();
        assert!(
            (3_800..4_200).contains(&right),
            "{right} of 5000 right at accuracy 0.8"
        );
        let perfect = MockSettings {
            accuracy: 1.0,
            ..MockSettings::default()
        };
        assert!((0..1_000).all(|prompt| !SamplePlan::draw(&perfect, prompt, None, 0).wrong));
    }

    #[test]
    fn made_up_solutions_are_stable_per_prompt() {
        let a = Solution::made_up(0, 123);
        assert_eq!(a, Solution::made_up(0, 123));
        let n: u64 = a.answer.parse().expect("a number");
        assert!((10..1000).contains(&n));
        assert!(a.steps.last().is_some_and(|step| step.contains(&a.answer)));
    }
}

//! The output templates: R1's one non-empty `<think>…</think>` block, then the answer; and the
//! tagged one (R1-Zero, open-r1's GRPO recipes), whose answer is one non-empty
//! `<answer>…</answer>` block.

use crate::{Check, Reason, Verdict};

const OPEN: &str = "<think>";
const CLOSE: &str = "</think>";

/// Checks the reasoning/answer layout of one generation.
///
/// `reasoning` is the separately delivered reasoning (`reasoning_content` from DeepSeek, vLLM or
/// SGLang); when it is `None` or blank the reasoning must be inline in `content` as
/// `<think>…</think>`. R1's chat template pre-fills the opening `<think>`, so content that holds a
/// single `</think>` and no opening tag is read as inline reasoning too.
pub fn check_think(reasoning: Option<&str>, content: &str) -> Verdict {
    match check(reasoning, content) {
        Ok(()) => Verdict::pass(Check::Format),
        Err(reason) => Verdict::fail(Check::Format, reason),
    }
}

/// Checks the tagged layout: the R1 layout of [`check_think`], and an answer that holds exactly
/// one non-empty `<answer>…</answer>` block (text around it is allowed, as a model's closing
/// sentence is).
pub fn check_tagged(reasoning: Option<&str>, content: &str) -> Verdict {
    let checked = check(reasoning, content).and_then(|()| {
        let has_separate = reasoning.is_some_and(|r| !r.trim().is_empty());
        let answer = match content.rfind(CLOSE) {
            Some(close) if !has_separate => &content[close + CLOSE.len()..],
            _ => content,
        };
        require_answer_tag(answer)
    });
    match checked {
        Ok(()) => Verdict::pass(Check::Format),
        Err(reason) => Verdict::fail(Check::Format, reason),
    }
}

const ANSWER_OPEN: &str = "<answer>";
const ANSWER_CLOSE: &str = "</answer>";

fn require_answer_tag(answer: &str) -> Result<(), Reason> {
    let opens = answer.matches(ANSWER_OPEN).count();
    let closes = answer.matches(ANSWER_CLOSE).count();
    match (opens, closes) {
        (0, 0) => Err(Reason::FormatAnswerTagMissing),
        (o, c) if o > 1 || c > 1 => Err(Reason::FormatAnswerTagDoubled { count: o.max(c) }),
        (1, 1) => {
            let open = answer.find(ANSWER_OPEN).unwrap_or(0) + ANSWER_OPEN.len();
            let close = answer.find(ANSWER_CLOSE).unwrap_or(0);
            if close < open {
                Err(Reason::FormatAnswerTagUnclosed)
            } else if answer[open..close].trim().is_empty() {
                Err(Reason::FormatAnswerTagEmpty)
            } else {
                Ok(())
            }
        }
        _ => Err(Reason::FormatAnswerTagUnclosed),
    }
}

fn check(reasoning: Option<&str>, content: &str) -> Result<(), Reason> {
    let opens = content.matches(OPEN).count();
    let closes = content.matches(CLOSE).count();
    if let Some(reasoning) = reasoning.filter(|r| !r.trim().is_empty()) {
        // Reasoning came separately: the content is the answer alone.
        if opens + closes > 0 {
            return Err(Reason::FormatMultipleThink {
                count: 1 + opens.max(closes),
            });
        }
        debug_assert!(!reasoning.trim().is_empty());
        return require_answer(content);
    }
    match (opens, closes) {
        (0, 0) => Err(Reason::FormatMissingThink),
        (o, c) if o > 1 || c > 1 => Err(Reason::FormatMultipleThink { count: o.max(c) }),
        (1, 0) => Err(Reason::FormatUnclosedThink),
        (o, 1) => {
            let close = content.find(CLOSE).unwrap_or(content.len());
            let (before, inner_start) = match content.find(OPEN) {
                Some(open) if o == 1 && open < close => (&content[..open], open + OPEN.len()),
                Some(_) => return Err(Reason::FormatUnclosedThink),
                None => ("", 0),
            };
            if !before.trim().is_empty() {
                return Err(Reason::FormatTextBeforeThink);
            }
            if content[inner_start..close].trim().is_empty() {
                return Err(Reason::FormatEmptyThink);
            }
            require_answer(&content[close + CLOSE.len()..])
        }
        _ => Err(Reason::FormatMissingThink),
    }
}

fn require_answer(answer: &str) -> Result<(), Reason> {
    if answer.trim().is_empty() {
        Err(Reason::FormatMissingAnswer)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(reasoning: Option<&str>, content: &str) -> &'static str {
        check_think(reasoning, content).code()
    }

    #[test]
    fn inline_reasoning() {
        assert_eq!(
            code(None, "<think>\n2+2=4\n</think>\n\nThe answer is 4."),
            "pass"
        );
        assert_eq!(code(None, "2+2=4\n</think>\n\nThe answer is 4."), "pass");
        assert_eq!(code(None, "The answer is 4."), "format.missing_think");
        assert_eq!(code(None, "<think>2+2</think>"), "format.missing_answer");
        assert_eq!(code(None, "<think>  </think> 4"), "format.empty_think");
        assert_eq!(
            code(None, "<think>a</think><think>b</think> 4"),
            "format.multiple_think"
        );
        assert_eq!(code(None, "<think>still thinking"), "format.unclosed_think");
        assert_eq!(
            code(None, "Sure! <think>a</think> 4"),
            "format.text_before_think"
        );
        assert_eq!(code(None, "</think> a <think> 4"), "format.unclosed_think");
    }

    #[test]
    fn tagged_answers() {
        let tagged =
            |reasoning: Option<&str>, content: &str| check_tagged(reasoning, content).code();
        assert_eq!(
            tagged(
                None,
                "<think>\n2+2\n</think>\n<answer>\n\\boxed{4}\n</answer>"
            ),
            "pass"
        );
        assert_eq!(tagged(Some("2+2"), "<answer>4</answer>"), "pass");
        assert_eq!(tagged(Some("2+2"), "So: <answer>4</answer> Done."), "pass");
        assert_eq!(
            tagged(Some("2+2"), "The answer is 4."),
            "format.answer_tag_missing"
        );
        assert_eq!(
            tagged(Some("2+2"), "<answer> \n </answer>"),
            "format.answer_tag_empty"
        );
        assert_eq!(
            tagged(Some("2+2"), "<answer>4</answer><answer>5</answer>"),
            "format.answer_tag_doubled"
        );
        assert_eq!(
            tagged(Some("2+2"), "<answer>4"),
            "format.answer_tag_unclosed"
        );
        assert_eq!(
            tagged(Some("2+2"), "</answer>4<answer>"),
            "format.answer_tag_unclosed"
        );
        // Tags inside the reasoning are not the answer; the think checks come first.
        assert_eq!(
            tagged(None, "<think><answer>4</answer></think> 4"),
            "format.answer_tag_missing"
        );
        assert_eq!(tagged(None, "<answer>4</answer>"), "format.missing_think");
    }

    #[test]
    fn separate_reasoning() {
        assert_eq!(code(Some("2+2=4"), "The answer is 4."), "pass");
        assert_eq!(code(Some("2+2=4"), "  "), "format.missing_answer");
        assert_eq!(
            code(Some("2+2=4"), "<think>again</think> 4"),
            "format.multiple_think"
        );
        assert_eq!(code(Some(""), "<think>x</think> 4"), "pass");
    }
}

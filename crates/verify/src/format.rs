//! The R1 output template: one non-empty `<think>…</think>` block, then the answer.

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

//! Separating a model's reasoning from its answer. Pure functions, so they can be fuzzed.
//!
//! Reasoning arrives three ways: a separate field (`reasoning_content` from DeepSeek and
//! vLLM/SGLang, `reasoning` from newer vLLM), or `<think>…</think>` inside the content when
//! the server runs no reasoning parser. R1-distilled chat templates put `<think>\n` in the
//! prompt, so the content may also hold only the closing tag.

use serde::{Deserialize, Serialize};

/// Where a sample's reasoning came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasoningSource {
    /// A dedicated response field (`reasoning_content` or `reasoning`).
    Field,
    /// `<think>…</think>` tags inside the content.
    ThinkTags,
    /// The response carried no reasoning.
    Absent,
}

/// Reasoning and answer of one sample, as sent by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    pub reasoning: Option<String>,
    pub content: String,
    pub source: ReasoningSource,
}

const OPEN: &str = "<think>";
const CLOSE: &str = "</think>";

/// Splits a sample given its reasoning field (if the server sent one) and its content.
pub fn split(reasoning_field: Option<&str>, content: &str) -> Split {
    if let Some(reasoning) = reasoning_field.filter(|r| !r.trim().is_empty()) {
        return Split {
            reasoning: Some(reasoning.trim().to_owned()),
            content: content.trim().to_owned(),
            source: ReasoningSource::Field,
        };
    }
    let trimmed = content.trim_start();
    if let Some(close) = trimmed.find(CLOSE) {
        let inner = trimmed[..close]
            .strip_prefix(OPEN)
            .unwrap_or(&trimmed[..close]);
        // A stray `<think>` further in (an unclosed one before the close) is not reasoning
        // structure we understand; keep the text as it is rather than guess.
        if !inner.contains(OPEN) {
            return Split {
                reasoning: Some(inner.trim().to_owned()),
                content: trimmed[close + CLOSE.len()..].trim().to_owned(),
                source: ReasoningSource::ThinkTags,
            };
        }
    }
    if let Some(unclosed) = trimmed
        .strip_prefix(OPEN)
        .filter(|rest| !rest.contains(CLOSE))
    {
        // Cut off mid-thought (finish_reason = length): all of it is reasoning.
        return Split {
            reasoning: Some(unclosed.trim().to_owned()),
            content: String::new(),
            source: ReasoningSource::ThinkTags,
        };
    }
    Split {
        reasoning: None,
        content: content.trim().to_owned(),
        source: ReasoningSource::Absent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasoning_field_wins() {
        let s = split(Some("  think hard "), " \\boxed{4} ");
        assert_eq!(s.reasoning.as_deref(), Some("think hard"));
        assert_eq!(s.content, "\\boxed{4}");
        assert_eq!(s.source, ReasoningSource::Field);
    }

    #[test]
    fn empty_reasoning_field_falls_back_to_tags() {
        let s = split(Some(""), "<think>\nstep\n</think>\n\nanswer");
        assert_eq!(s.reasoning.as_deref(), Some("step"));
        assert_eq!(s.content, "answer");
        assert_eq!(s.source, ReasoningSource::ThinkTags);
    }

    #[test]
    fn closing_tag_only_as_from_distilled_templates() {
        let s = split(None, "step one\nstep two\n</think>\n\nThe answer is 3.");
        assert_eq!(s.reasoning.as_deref(), Some("step one\nstep two"));
        assert_eq!(s.content, "The answer is 3.");
    }

    #[test]
    fn unclosed_think_is_all_reasoning() {
        let s = split(None, "<think>\nI was cut off");
        assert_eq!(s.reasoning.as_deref(), Some("I was cut off"));
        assert_eq!(s.content, "");
    }

    #[test]
    fn no_reasoning_at_all() {
        let s = split(None, "Just 42.");
        assert_eq!(s.reasoning, None);
        assert_eq!(s.content, "Just 42.");
        assert_eq!(s.source, ReasoningSource::Absent);
    }

    #[test]
    fn nested_open_tag_is_left_alone() {
        let s = split(None, "<think>a <think> b</think> c");
        assert_eq!(s.source, ReasoningSource::Absent);
        assert_eq!(s.content, "<think>a <think> b</think> c");
    }

    #[test]
    fn multibyte_text_does_not_panic() {
        let s = split(None, "<think>让我们想一想</think>答案是 4");
        assert_eq!(s.reasoning.as_deref(), Some("让我们想一想"));
        assert_eq!(s.content, "答案是 4");
    }
}

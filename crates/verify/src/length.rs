//! Length limits, in characters of text and optionally in tokens reported by the teacher.

use serde::{Deserialize, Serialize};

use crate::verdict::LengthUnit;
use crate::{Check, Reason, Verdict};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LengthLimits {
    pub min_chars: u64,
    pub max_chars: Option<u64>,
    /// Applies when the caller knows the token count (usage from the API).
    pub max_tokens: Option<u64>,
}

impl Default for LengthLimits {
    fn default() -> Self {
        LengthLimits {
            min_chars: 1,
            max_chars: Some(200_000),
            max_tokens: None,
        }
    }
}

/// Checks `text` (characters, not bytes) and, when given, its token count.
pub fn check(text: &str, tokens: Option<u64>, limits: &LengthLimits) -> Verdict {
    let chars = text.chars().count() as u64;
    let reason = if chars < limits.min_chars {
        Some(Reason::LengthTooShort {
            unit: LengthUnit::Chars,
            actual: chars,
            limit: limits.min_chars,
        })
    } else if let Some(max) = limits.max_chars.filter(|max| chars > *max) {
        Some(Reason::LengthTooLong {
            unit: LengthUnit::Chars,
            actual: chars,
            limit: max,
        })
    } else {
        match (tokens, limits.max_tokens) {
            (Some(actual), Some(max)) if actual > max => Some(Reason::LengthTooLong {
                unit: LengthUnit::Tokens,
                actual,
                limit: max,
            }),
            _ => None,
        }
    };
    match reason {
        Some(reason) => Verdict::fail(Check::Length, reason),
        None => Verdict::pass(Check::Length),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        let limits = LengthLimits {
            min_chars: 2,
            max_chars: Some(5),
            max_tokens: Some(3),
        };
        assert!(
            check("héllo", None, &limits).is_pass(),
            "counts characters, not bytes"
        );
        assert_eq!(check("x", None, &limits).code(), "length.too_short");
        assert_eq!(check("toolong", None, &limits).code(), "length.too_long");
        assert_eq!(check("abc", Some(4), &limits).code(), "length.too_long");
        assert!(check("abc", Some(3), &limits).is_pass());
        let parsed: LengthLimits =
            serde_json::from_str(r#"{"max_chars": 10}"#).expect("partial config");
        assert_eq!(parsed.min_chars, 1);
    }
}

//! Language mixing: the share of letters written in a script other than the text's main one.
//!
//! Reasoning models drift into another language mid-answer (Chinese inside English is the classic
//! R1 failure). Greek is not counted: in math text it is notation, not language.

use serde::{Deserialize, Serialize};

use crate::{Check, Reason, Verdict};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Script {
    Latin,
    /// Han ideographs, kana and hangul together: CJK text mixes them freely.
    Cjk,
    Cyrillic,
    Arabic,
    Hebrew,
    Devanagari,
    Thai,
    Other,
}

/// Which scripts are expected and how much of anything else is tolerated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LanguagePolicy {
    /// Scripts that never count as foreign. Empty: the dominant script of the text is expected.
    pub allowed: Vec<Script>,
    /// Largest tolerated share of foreign letters, in [0, 1].
    pub max_foreign_share: f64,
    /// Texts with fewer letters than this are not judged.
    pub min_letters: usize,
}

impl Default for LanguagePolicy {
    fn default() -> Self {
        LanguagePolicy {
            allowed: Vec::new(),
            max_foreign_share: 0.01,
            min_letters: 20,
        }
    }
}

/// Letter counts per script.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScriptCounts {
    counts: [usize; 8],
}

impl ScriptCounts {
    pub fn of(text: &str) -> Self {
        let mut counts = ScriptCounts::default();
        for c in text.chars() {
            if let Some(script) = script_of(c) {
                counts.counts[script as usize] += 1;
            }
        }
        counts
    }

    pub fn get(&self, script: Script) -> usize {
        self.counts[script as usize]
    }

    pub fn total(&self) -> usize {
        self.counts.iter().sum()
    }

    fn iter(&self) -> impl Iterator<Item = (Script, usize)> + '_ {
        ALL.iter().map(|s| (*s, self.get(*s)))
    }

    pub fn dominant(&self) -> Option<Script> {
        self.iter()
            .filter(|(_, n)| *n > 0)
            .max_by_key(|(_, n)| *n)
            .map(|(s, _)| s)
    }
}

const ALL: [Script; 8] = [
    Script::Latin,
    Script::Cjk,
    Script::Cyrillic,
    Script::Arabic,
    Script::Hebrew,
    Script::Devanagari,
    Script::Thai,
    Script::Other,
];

/// The script of a letter; `None` for digits, punctuation, symbols and Greek.
fn script_of(c: char) -> Option<Script> {
    if c.is_ascii() {
        return c.is_ascii_alphabetic().then_some(Script::Latin);
    }
    if !c.is_alphabetic() {
        return None;
    }
    let script = match c as u32 {
        0x00C0..=0x024F | 0x1E00..=0x1EFF => Script::Latin,
        0x0370..=0x03FF | 0x1F00..=0x1FFF => return None,
        0x0400..=0x052F => Script::Cyrillic,
        0x0590..=0x05FF => Script::Hebrew,
        0x0600..=0x06FF | 0x0750..=0x077F => Script::Arabic,
        0x0900..=0x097F => Script::Devanagari,
        0x0E00..=0x0E7F => Script::Thai,
        0x1100..=0x11FF
        | 0x3040..=0x30FF
        | 0x3130..=0x318F
        | 0x3400..=0x4DBF
        | 0x4E00..=0x9FFF
        | 0xAC00..=0xD7AF
        | 0xF900..=0xFAFF
        | 0x20000..=0x2FA1F => Script::Cjk,
        // Mathematical alphanumerics (𝑥, ℝ) are notation.
        0x1D400..=0x1D7FF | 0x2100..=0x214F => return None,
        _ => Script::Other,
    };
    Some(script)
}

/// Fails when letters outside the expected script(s) exceed the policy's share.
pub fn check_mixing(text: &str, policy: &LanguagePolicy) -> Verdict {
    let counts = ScriptCounts::of(text);
    let total = counts.total();
    let Some(dominant) = counts.dominant() else {
        return Verdict::pass(Check::Language);
    };
    if total < policy.min_letters {
        return Verdict::pass(Check::Language);
    }
    let expected = |s: Script| {
        if policy.allowed.is_empty() {
            s == dominant
        } else {
            policy.allowed.contains(&s)
        }
    };
    let foreign: Vec<(Script, usize)> = counts.iter().filter(|(s, _)| !expected(*s)).collect();
    let foreign_total: usize = foreign.iter().map(|(_, n)| n).sum();
    let share = foreign_total as f64 / total as f64;
    if share <= policy.max_foreign_share {
        return Verdict::pass(Check::Language);
    }
    let worst = foreign
        .iter()
        .max_by_key(|(_, n)| *n)
        .map_or(Script::Other, |(s, _)| *s);
    Verdict::fail(
        Check::Language,
        Reason::LanguageMixed {
            dominant: if policy.allowed.is_empty() {
                dominant
            } else {
                policy.allowed[0]
            },
            foreign: worst,
            share,
            threshold: policy.max_foreign_share,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENGLISH: &str =
        "First we compute the area of the triangle, which is one half base times height.";

    #[test]
    fn pure_text_passes() {
        assert!(check_mixing(ENGLISH, &LanguagePolicy::default()).is_pass());
        assert!(
            check_mixing(
                "首先我们计算三角形的面积，面积等于底乘以高除以二，所以答案是十二。",
                &LanguagePolicy::default()
            )
            .is_pass()
        );
        // Greek letters and math symbols are notation.
        assert!(
            check_mixing(
                &format!("{ENGLISH} Let θ = π/4 and α ≥ 0."),
                &LanguagePolicy::default()
            )
            .is_pass()
        );
    }

    #[test]
    fn cjk_inside_english_is_rejected() {
        let mixed = format!("{ENGLISH} 所以答案是十二 and we are done.");
        let verdict = check_mixing(&mixed, &LanguagePolicy::default());
        assert_eq!(verdict.code(), "language.mixed");
        match verdict.reason() {
            Some(Reason::LanguageMixed {
                dominant,
                foreign,
                share,
                ..
            }) => {
                assert_eq!((*dominant, *foreign), (Script::Latin, Script::Cjk));
                assert!(*share > 0.05 && *share < 0.2, "{share}");
            }
            other => panic!("unexpected {other:?}"),
        }
        // A generous threshold lets it through.
        let lenient = LanguagePolicy {
            max_foreign_share: 0.5,
            ..LanguagePolicy::default()
        };
        assert!(check_mixing(&mixed, &lenient).is_pass());
    }

    #[test]
    fn explicit_allowed_scripts() {
        let policy = LanguagePolicy {
            allowed: vec![Script::Latin],
            ..LanguagePolicy::default()
        };
        let verdict = check_mixing(
            "这是一个很长的中文句子，用来测试语言检查是否正确工作的情况。",
            &policy,
        );
        assert_eq!(verdict.code(), "language.mixed");
    }
}

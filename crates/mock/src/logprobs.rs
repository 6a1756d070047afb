//! Token log-probabilities consistent with the text the simulator sends, for `logprobs: true,
//! top_logprobs: k`.
//!
//! The text is split into tokens (by a real `tokenizer.json` when the settings name one, else
//! into words, digits and single characters), so the tokens' bytes spell exactly the text of
//! the response. Each token is the most likely at its position: a seeded probability between
//! 0.55 and 0.95, then `k − 1` other tokens whose probabilities halve one after the other, the
//! rest of the mass left to tokens not listed (as a real model's top-k leaves it).

use std::path::Path;

use distillery_model::TokenBytes;
use serde::Serialize;
use tokenizers::Tokenizer;

use crate::error::MockError;
use crate::hash::{Domain, Draws, fnv1a};

/// Alternatives used when no tokenizer is given: common pieces of English and arithmetic.
const FALLBACK_PIECES: [&str; 24] = [
    " the", " a", " is", " of", " to", " and", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9",
    ".", ",", "\n", " =", " +", " so", " we", " I",
];

/// How the simulator splits its text into tokens.
#[derive(Debug)]
pub(crate) enum Splitter {
    /// Words (with their leading space), single digits and single other characters.
    Words,
    Tokenizer {
        tokenizer: Box<Tokenizer>,
        table: TokenBytes,
    },
}

impl Splitter {
    pub(crate) fn load(path: Option<&Path>) -> Result<Self, MockError> {
        let Some(path) = path else {
            return Ok(Self::Words);
        };
        let tokenizer = Tokenizer::from_file(path).map_err(|e| {
            MockError::InvalidSettings(format!("tokenizer: cannot load {}: {e}", path.display()))
        })?;
        let table = TokenBytes::new(&tokenizer);
        Ok(Self::Tokenizer {
            tokenizer: Box::new(tokenizer),
            table,
        })
    }

    /// The tokens of `text`, as bytes that concatenate to `text`.
    fn split(&self, text: &str) -> Vec<Vec<u8>> {
        match self {
            Self::Words => split_words(text),
            Self::Tokenizer { tokenizer, table } => {
                let spelled = tokenizer.encode(text, false).ok().and_then(|enc| {
                    enc.get_ids()
                        .iter()
                        .map(|&id| table.bytes(id).map(<[u8]>::to_vec))
                        .collect::<Option<Vec<_>>>()
                });
                match spelled {
                    Some(tokens) if tokens.concat() == text.as_bytes() => tokens,
                    // A tokenizer that normalises the text cannot spell it back: fall back to
                    // bytes that do, rather than send tokens inconsistent with the text.
                    _ => split_words(text),
                }
            }
        }
    }

    /// An alternative at a position: never the chosen token nor one already `used`.
    fn alternative(&self, draws: &mut Draws, used: &[Vec<u8>]) -> Vec<u8> {
        loop {
            let draw = draws.next_u64();
            let candidate: Option<Vec<u8>> = match self {
                Self::Words => {
                    Some(FALLBACK_PIECES[(draw % FALLBACK_PIECES.len() as u64) as usize].into())
                }
                Self::Tokenizer { table, .. } if !table.is_empty() => table
                    .bytes((draw % table.len() as u64) as u32)
                    .map(<[u8]>::to_vec),
                Self::Tokenizer { .. } => Some(format!("<alt{draw}>").into_bytes()),
            };
            if let Some(c) = candidate.filter(|c| !c.is_empty() && !used.contains(c)) {
                return c;
            }
        }
    }

    /// Entries for every token of `text`, keyed so the same text and seed give the same
    /// numbers. `k` alternatives each (the chosen token first), none when `k` is 0.
    pub(crate) fn entries(&self, text: &str, k: u8, seed: u64) -> Vec<TokenEntry> {
        let tokens = self.split(text);
        let mut out = Vec::with_capacity(tokens.len());
        for (position, token) in tokens.into_iter().enumerate() {
            let mut draws = Draws::new(Domain::Logprobs, &[seed, position as u64, fnv1a(&token)]);
            let chosen = 0.55 + 0.4 * draws.next_f64();
            let mut top = Vec::with_capacity(usize::from(k));
            if k > 0 {
                top.push(TopEntry::new(token.clone(), chosen.ln()));
            }
            let mut used = vec![token.clone()];
            for i in 1..u64::from(k) {
                let alt = self.alternative(&mut draws, &used);
                used.push(alt.clone());
                let p = (1.0 - chosen) * 0.5f64.powi(i as i32);
                top.push(TopEntry::new(alt, p.ln()));
            }
            out.push(TokenEntry {
                entry: TopEntry::new(token, chosen.ln()),
                top_logprobs: top,
            });
        }
        out
    }
}

/// Words with their leading space, single digits, and single other characters.
fn split_words(text: &str) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut current = String::new();
    let flush = |current: &mut String, out: &mut Vec<Vec<u8>>| {
        if !current.is_empty() {
            out.push(std::mem::take(current).into_bytes());
        }
    };
    for c in text.chars() {
        let extends = c.is_alphabetic()
            && current
                .chars()
                .last()
                .is_some_and(|last| last.is_alphabetic() || (last == ' ' && current.len() == 1));
        if !extends {
            flush(&mut current, &mut out);
        }
        current.push(c);
        if !(c.is_alphabetic() || c == ' ') {
            flush(&mut current, &mut out);
        }
    }
    flush(&mut current, &mut out);
    out
}

/// One token as OpenAI's `logprobs.content[]` writes it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct TokenEntry {
    #[serde(flatten)]
    pub(crate) entry: TopEntry,
    pub(crate) top_logprobs: Vec<TopEntry>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct TopEntry {
    /// The token as text (lossy for a token that is part of a character; `bytes` is exact).
    pub(crate) token: String,
    pub(crate) logprob: f64,
    pub(crate) bytes: Vec<u8>,
}

impl TopEntry {
    fn new(bytes: Vec<u8>, logprob: f64) -> Self {
        Self {
            token: String::from_utf8_lossy(&bytes).into_owned(),
            logprob,
            bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_spells_the_text_and_isolates_digits() {
        let text = "Janet sells 16 eggs.\n\nThe answer is \\boxed{18}. 让我";
        let tokens = split_words(text);
        assert_eq!(tokens.concat(), text.as_bytes());
        let strings: Vec<String> = tokens
            .iter()
            .map(|t| String::from_utf8(t.clone()).unwrap())
            .collect();
        assert_eq!(&strings[..6], ["Janet", " sells", " ", "1", "6", " eggs"]);
    }

    #[test]
    fn entries_are_consistent_and_most_likely_first() {
        let splitter = Splitter::Words;
        let text = "We add 3 and 4 to get 7.";
        let entries = splitter.entries(text, 8, 42);
        let spelled: Vec<u8> = entries.iter().flat_map(|e| e.entry.bytes.clone()).collect();
        assert_eq!(spelled, text.as_bytes());
        for e in &entries {
            assert_eq!(e.top_logprobs.len(), 8);
            assert_eq!(e.top_logprobs[0].bytes, e.entry.bytes);
            let mass: f64 = e.top_logprobs.iter().map(|t| t.logprob.exp()).sum();
            assert!(mass < 1.0, "{mass}");
            for pair in e.top_logprobs.windows(2) {
                assert!(pair[0].logprob > pair[1].logprob);
                assert_ne!(pair[0].bytes, pair[1].bytes);
            }
        }
        // Seeded: the same text gives the same numbers.
        let again = splitter.entries(text, 8, 42);
        assert_eq!(
            serde_json::to_string(&entries).unwrap(),
            serde_json::to_string(&again).unwrap()
        );
    }
}

//! The bytes each token of a tokenizer stands for: what lets a teacher's token strings (from an
//! OpenAI-compatible server's `logprobs`) be found in a student's vocabulary, and what a
//! simulator sends as a token's `bytes`.

use std::collections::HashMap;

use tokenizers::Tokenizer;

use crate::tiny::byte_chars;

/// How a tokenizer writes bytes in its vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spelling {
    /// GPT-2's byte-level alphabet (Qwen, Llama 3, SmolLM2): one printable char per byte.
    ByteLevel,
    /// SentencePiece: `▁` for a space and `<0xNN>` for a byte without a piece of its own.
    Metaspace,
    /// The token strings are the text.
    Plain,
}

fn spelling(tokenizer: &Tokenizer) -> Spelling {
    let decoder = tokenizer
        .get_decoder()
        .and_then(|d| serde_json::to_string(d).ok())
        .unwrap_or_default();
    if decoder.contains("\"ByteLevel\"") {
        Spelling::ByteLevel
    } else if decoder.contains("\"Metaspace\"") || decoder.contains("\"ByteFallback\"") {
        Spelling::Metaspace
    } else {
        Spelling::Plain
    }
}

/// A tokenizer's vocabulary by bytes, both ways.
#[derive(Debug, Clone)]
pub struct TokenBytes {
    /// Indexed by id; `None` for ids the vocabulary skips.
    by_id: Vec<Option<Vec<u8>>>,
    by_bytes: HashMap<Vec<u8>, u32>,
}

impl TokenBytes {
    /// The bytes of every token of `tokenizer`. Added (special) tokens stand for their text.
    /// When two ids spell the same bytes, the lower id wins the reverse lookup (a special
    /// token's twin in the base vocabulary is the one a plain text encodes to).
    pub fn new(tokenizer: &Tokenizer) -> Self {
        let spelling = spelling(tokenizer);
        let inverse: HashMap<char, u8> = byte_chars()
            .into_iter()
            .enumerate()
            .map(|(b, c)| (c, b as u8))
            .collect();
        let added = tokenizer.get_added_tokens_decoder();
        let vocab = tokenizer.get_vocab(true);
        let size = vocab.values().map(|&id| id as usize + 1).max().unwrap_or(0);
        let mut by_id = vec![None; size];
        for (token, id) in vocab {
            let bytes = if added.contains_key(&id) {
                Some(token.into_bytes())
            } else {
                match spelling {
                    Spelling::ByteLevel => token
                        .chars()
                        .map(|c| inverse.get(&c).copied())
                        .collect::<Option<Vec<u8>>>(),
                    Spelling::Metaspace => Some(metaspace_bytes(&token)),
                    Spelling::Plain => Some(token.into_bytes()),
                }
            };
            by_id[id as usize] = bytes;
        }
        let mut by_bytes = HashMap::with_capacity(by_id.len());
        for (id, bytes) in by_id.iter().enumerate().rev() {
            if let Some(bytes) = bytes {
                by_bytes.insert(bytes.clone(), id as u32);
            }
        }
        Self { by_id, by_bytes }
    }

    /// The bytes token `id` stands for.
    pub fn bytes(&self, id: u32) -> Option<&[u8]> {
        self.by_id.get(id as usize)?.as_deref()
    }

    /// The id of the token spelling exactly `bytes`.
    pub fn id(&self, bytes: &[u8]) -> Option<u32> {
        self.by_bytes.get(bytes).copied()
    }

    /// Ids (0..len) the table covers.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

fn metaspace_bytes(token: &str) -> Vec<u8> {
    if let Some(hex) = token
        .strip_prefix("<0x")
        .and_then(|rest| rest.strip_suffix('>'))
        && let Ok(byte) = u8::from_str_radix(hex, 16)
    {
        return vec![byte];
    }
    token.replace('\u{2581}', " ").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tiny_tokenizer;

    #[test]
    fn byte_level_tokens_spell_the_text_they_encode() {
        let tokenizer = tiny_tokenizer().unwrap();
        let table = TokenBytes::new(&tokenizer);
        let text = "<think>\nJanet's ducks lay 16 eggs, 让我 €3.\n</think>\n\nThe answer is 18.";
        let ids = tokenizer.encode(text, false).unwrap().get_ids().to_vec();
        let spelled: Vec<u8> = ids
            .iter()
            .flat_map(|&id| table.bytes(id).unwrap().to_vec())
            .collect();
        assert_eq!(spelled, text.as_bytes());
        for &id in &ids {
            assert_eq!(table.id(table.bytes(id).unwrap()), Some(id));
        }
        assert_eq!(table.id(b"<think>"), Some(crate::TINY_IM_END_ID + 1));
        assert_eq!(table.id(b"no such token in a tiny vocabulary"), None);
    }

    #[test]
    fn sentencepiece_pieces_become_bytes() {
        assert_eq!(metaspace_bytes("\u{2581}the"), b" the");
        assert_eq!(metaspace_bytes("<0xE4>"), vec![0xe4]);
    }
}

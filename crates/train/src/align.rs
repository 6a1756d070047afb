//! Lining up the teacher's stored top-k log-probabilities with the student's tokens.
//!
//! The teacher's tokens are strings of bytes; they spell the text it generated (its reasoning
//! and answer, with or without `<think>` tags). The student's training target is the rendered
//! assistant turn, `<think>\n{reasoning}\n</think>\n\n{content}`, tokenised by the student.
//! A student position takes the teacher's distribution when
//!
//! 1. its token covers exactly the bytes of one teacher token, at the same place in the
//!    generated text (so both predicted it from the same text before it), and
//! 2. every token the teacher listed there (top-k and the chosen one) is a token of the
//!    student's vocabulary, matched by bytes.
//!
//! A student sharing the teacher's tokenizer meets (1) almost everywhere; the tokens the row
//! adds around the teacher's text (the `<think>` wrapper when the server sent the reasoning in
//! a field) have no teacher distribution and are trained on cross-entropy alone. Failing (2)
//! means the student's tokenizer does not cover the teacher's: an error before training, or,
//! when asked, those positions are trained on cross-entropy alone too.

use distillery_model::TokenBytes;
use distillery_store::TeacherLogprobs;
use serde::{Deserialize, Serialize};

use crate::loss::SparseTarget;

/// How many teacher tokens that do not map are named in the error.
const NAMED: usize = 5;

/// Counts over the data, for the error, the log and `summary.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogprobStats {
    /// Conversations that carry the teacher's log-probabilities.
    pub rows: usize,
    /// Conversations without them (trained on cross-entropy alone).
    pub rows_without: usize,
    /// The teacher's generated positions over all rows.
    pub teacher_positions: usize,
    /// Teacher positions with a token (chosen or listed) the student's vocabulary lacks.
    pub unmapped_positions: usize,
    /// The first such tokens, as text (lossy for partial characters), distinct.
    pub first_unmapped: Vec<String>,
    /// Student positions that took a teacher distribution.
    pub aligned_positions: usize,
}

impl LogprobStats {
    pub fn add(&mut self, other: &LogprobStats) {
        self.rows += other.rows;
        self.rows_without += other.rows_without;
        self.teacher_positions += other.teacher_positions;
        self.unmapped_positions += other.unmapped_positions;
        self.aligned_positions += other.aligned_positions;
        for t in &other.first_unmapped {
            if self.first_unmapped.len() < NAMED && !self.first_unmapped.contains(t) {
                self.first_unmapped.push(t.clone());
            }
        }
    }

    /// Share of the teacher's positions whose tokens the student's vocabulary lacks.
    pub fn unmapped_share(&self) -> f64 {
        self.unmapped_positions as f64 / self.teacher_positions.max(1) as f64
    }
}

/// A stretch of the assistant text that is also a stretch of the teacher's text.
#[derive(Debug, Clone, Copy)]
struct Piece {
    /// Start in the assistant text.
    a: usize,
    /// Start in the teacher's text.
    g: usize,
    len: usize,
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || from > haystack.len() {
        return None;
    }
    match (std::str::from_utf8(haystack), std::str::from_utf8(needle)) {
        (Ok(h), Ok(n)) if h.is_char_boundary(from) => h[from..].find(n).map(|i| i + from),
        _ => haystack[from..]
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|i| i + from),
    }
}

/// Where the parts of the assistant text (reasoning, answer) sit in the teacher's text, each
/// grown while both texts agree (so `<think>` tags the teacher wrote line up too).
fn pieces(assistant: &[u8], generated: &[u8]) -> Vec<Piece> {
    const OPEN: &[u8] = b"<think>\n";
    const CLOSE: &[u8] = b"\n</think>\n\n";
    let mut parts: Vec<(usize, usize)> = Vec::new();
    match assistant
        .strip_prefix(OPEN)
        .and_then(|rest| find(rest, CLOSE, 0))
    {
        Some(close) => {
            let close = close + OPEN.len();
            parts.push((OPEN.len(), close));
            parts.push((close + CLOSE.len(), assistant.len()));
        }
        None => parts.push((0, assistant.len())),
    }
    let mut out: Vec<Piece> = Vec::new();
    let mut from = 0;
    for (start, end) in parts {
        if start >= end {
            continue;
        }
        if let Some(g) = find(generated, &assistant[start..end], from) {
            out.push(Piece {
                a: start,
                g,
                len: end - start,
            });
            from = g + (end - start);
        }
    }
    // Grow each piece outwards over bytes both texts share, without crossing its neighbours.
    for i in 0..out.len() {
        let (a_floor, g_floor) = if i == 0 {
            (0, 0)
        } else {
            (out[i - 1].a + out[i - 1].len, out[i - 1].g + out[i - 1].len)
        };
        while out[i].a > a_floor
            && out[i].g > g_floor
            && assistant[out[i].a - 1] == generated[out[i].g - 1]
        {
            out[i].a -= 1;
            out[i].g -= 1;
            out[i].len += 1;
        }
        let (a_ceil, g_ceil) = match out.get(i + 1) {
            Some(next) => (next.a, next.g),
            None => (assistant.len(), generated.len()),
        };
        while out[i].a + out[i].len < a_ceil
            && out[i].g + out[i].len < g_ceil
            && assistant[out[i].a + out[i].len] == generated[out[i].g + out[i].len]
        {
            out[i].len += 1;
        }
    }
    out
}

/// Maps the stored log-probabilities of rows onto a student's tokens.
pub struct Aligner {
    table: TokenBytes,
}

impl Aligner {
    pub fn new(table: TokenBytes) -> Self {
        Self { table }
    }

    /// The teacher's distribution at position `j`, on student ids; `Err` with the first
    /// token the student lacks.
    fn target(&self, logprobs: &TeacherLogprobs, j: usize) -> Result<SparseTarget, Vec<u8>> {
        let position = logprobs.position(j);
        let mut target = SparseTarget {
            ids: Vec::with_capacity(position.top.len() + 1),
            logprobs: Vec::with_capacity(position.top.len() + 1),
        };
        let listed = position
            .top
            .iter()
            .copied()
            .chain(std::iter::once((position.token, position.logprob)));
        for (token, lp) in listed {
            let id = self.table.id(token).ok_or_else(|| token.to_vec())?;
            // The chosen token is usually listed already; a server may list a token twice.
            if !target.ids.contains(&id) {
                target.ids.push(id);
                target.logprobs.push(lp);
            }
        }
        Ok(target)
    }

    /// The teacher distribution predicting each of `tokens` (the student's tokenisation of
    /// `full`, the rendered conversation), for a row whose assistant turn (`assistant`) starts
    /// at byte `assistant_at` of `full`. Tokens outside the turn, or not lined up with a
    /// teacher token, get `None`.
    pub fn align(
        &self,
        full: &str,
        tokens: &[u32],
        offsets: &[(usize, usize)],
        assistant_at: usize,
        assistant: &str,
        logprobs: &TeacherLogprobs,
    ) -> (Vec<Option<SparseTarget>>, LogprobStats) {
        let mut stats = LogprobStats {
            rows: 1,
            teacher_positions: logprobs.len(),
            ..LogprobStats::default()
        };
        // Which teacher positions map into the student's vocabulary.
        let mut targets: Vec<Option<SparseTarget>> = Vec::with_capacity(logprobs.len());
        for j in 0..logprobs.len() {
            match self.target(logprobs, j) {
                Ok(t) => targets.push(Some(t)),
                Err(token) => {
                    stats.unmapped_positions += 1;
                    let text = String::from_utf8_lossy(&token).into_owned();
                    if stats.first_unmapped.len() < NAMED && !stats.first_unmapped.contains(&text) {
                        stats.first_unmapped.push(text);
                    }
                    targets.push(None);
                }
            }
        }
        let mut out = vec![None; tokens.len()];
        let generated = logprobs.text_bytes();
        let pieces = pieces(assistant.as_bytes(), &generated);
        // Teacher token starts in the generated text.
        let mut starts = Vec::with_capacity(logprobs.len());
        let mut at = 0;
        for t in &logprobs.tokens {
            starts.push(at);
            at += t.len();
        }
        let spans = student_spans(&self.table, full, tokens, offsets);
        for (i, &(s, e)) in spans.iter().enumerate() {
            if s < assistant_at || e > assistant_at + assistant.len() || s >= e {
                continue;
            }
            let (s, e) = (s - assistant_at, e - assistant_at);
            let Some(piece) = pieces.iter().find(|p| s >= p.a && e <= p.a + p.len) else {
                continue;
            };
            let g = s - piece.a + piece.g;
            let Ok(j) = starts.binary_search(&g) else {
                continue;
            };
            if logprobs.tokens[j].len() != e - s {
                continue;
            }
            if let Some(target) = &targets[j] {
                out[i] = Some(target.clone());
                stats.aligned_positions += 1;
            }
        }
        (out, stats)
    }
}

/// Byte spans of the student's tokens in `full`: by the bytes each token spells when they
/// spell `full` exactly (byte-level BPE), else the tokenizer's offsets (which may trim spaces).
fn student_spans(
    table: &TokenBytes,
    full: &str,
    tokens: &[u32],
    offsets: &[(usize, usize)],
) -> Vec<(usize, usize)> {
    let mut spans = Vec::with_capacity(tokens.len());
    let mut at = 0;
    let full = full.as_bytes();
    for &id in tokens {
        match table.bytes(id) {
            Some(b) if full.get(at..at + b.len()) == Some(b) => {
                spans.push((at, at + b.len()));
                at += b.len();
            }
            _ => return offsets.to_vec(),
        }
    }
    if at == full.len() {
        spans
    } else {
        offsets.to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use distillery_model::tiny_tokenizer;

    fn logprobs_of(tokens: &[&[u8]]) -> TeacherLogprobs {
        let mut r = TeacherLogprobs::new(2);
        for t in tokens {
            r.push(t, -0.1, [(*t, -0.1), (&b"a"[..], -3.0)]);
        }
        r
    }

    #[test]
    fn pieces_line_up_reasoning_and_answer_with_or_without_tags() {
        let assistant = b"<think>\nstep one\n</think>\n\nThe answer is 4.";
        // Reasoning in a field: the generated text is the two parts back to back.
        let p = pieces(assistant, b"step one\nThe answer is 4.");
        assert_eq!(p.len(), 2);
        // The reasoning grows by the "\n" after it, which both texts have.
        assert_eq!((p[0].a, p[0].g, p[0].len), (8, 0, 9));
        assert_eq!((p[1].a, p[1].g), (27, 9));
        // Raw tags in the content: one stretch covers everything.
        let p = pieces(assistant, assistant);
        assert_eq!(p.iter().map(|p| p.len).sum::<usize>(), assistant.len());
        assert_eq!(p[0].a, 0);
    }

    /// The same tokenizer on both sides: every token of the teacher's text lines up, and
    /// only the wrapper the row adds is left without a distribution.
    #[test]
    fn a_shared_tokenizer_aligns_every_generated_token() {
        let tokenizer = tiny_tokenizer().unwrap();
        let table = TokenBytes::new(&tokenizer);
        let reasoning = "Janet has 16 eggs and eats 3.";
        let content = "So 16 - 3 = 13.";
        let assistant = format!("<think>\n{reasoning}\n</think>\n\n{content}");
        let full = format!(
            "<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n{assistant}<|im_end|>\n"
        );
        let at = full.find(&assistant).unwrap();
        let teacher_tokens: Vec<Vec<u8>> = [reasoning, content]
            .iter()
            .flat_map(|text| {
                let enc = tokenizer.encode(*text, false).unwrap();
                enc.get_ids()
                    .iter()
                    .map(|&id| table.bytes(id).unwrap().to_vec())
                    .collect::<Vec<_>>()
            })
            .collect();
        let refs: Vec<&[u8]> = teacher_tokens.iter().map(Vec::as_slice).collect();
        let logprobs = logprobs_of(&refs);
        let enc = tokenizer.encode(full.as_str(), false).unwrap();
        let aligner = Aligner::new(table.clone());
        let (out, stats) = aligner.align(
            &full,
            enc.get_ids(),
            enc.get_offsets(),
            at,
            &assistant,
            &logprobs,
        );
        assert_eq!(stats.unmapped_positions, 0);
        assert_eq!(stats.aligned_positions, logprobs.len(), "{stats:?}");
        // An aligned position's first listed token is the student's own token there.
        for (i, target) in out.iter().enumerate() {
            if let Some(t) = target {
                assert_eq!(t.ids[0], enc.get_ids()[i]);
                assert_eq!(t.ids.len(), 2);
            }
        }
    }

    #[test]
    fn tokens_the_student_lacks_are_counted_and_named() {
        let table = TokenBytes::new(&tiny_tokenizer().unwrap());
        let logprobs = logprobs_of(&[b"Hello", b" zzyzzyx", b"!"]);
        let (_, stats) =
            Aligner::new(table).align("Hello zzyzzyx!", &[], &[], 0, "Hello zzyzzyx!", &logprobs);
        assert_eq!(stats.teacher_positions, 3);
        assert!(stats.unmapped_positions >= 1);
        assert!(
            stats.first_unmapped.contains(&" zzyzzyx".to_string()),
            "{stats:?}"
        );
    }
}

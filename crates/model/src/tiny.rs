//! The tiny random model and its per-digit byte-level BPE tokenizer.
//!
//! The tokenizer is byte-level BPE whose merges were learned from the GSM8K test set text
//! ([`learn_merges`], stored in `assets/tiny_merges.txt` so building it needs no data and is
//! deterministic). A `Digits` pre-tokenizer isolates every digit, so no merge contains one and
//! every digit is its own token: the demo teaches a tiny student arithmetic, digit by digit.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{DType, Device};
use serde_json::{Value, json};
use tokenizers::Tokenizer;

use crate::checkpoint::save_checkpoint;
use crate::config::{Arch, Config};
use crate::error::{Error, Result};
use crate::gguf::build_bpe_tokenizer;
use crate::model::random_varmap;

/// Special tokens of the tiny tokenizer, in id order after the bytes and merges.
pub const TINY_SPECIAL_TOKENS: [&str; 5] = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<think>",
    "</think>",
];
/// Vocabulary size of [`tiny_tokenizer`]: 256 bytes + merges + 5 special tokens.
pub const TINY_VOCAB_SIZE: usize = 768;
const TINY_MERGES: usize = TINY_VOCAB_SIZE - 256 - TINY_SPECIAL_TOKENS.len();
const FIRST_SPECIAL: u32 = (256 + TINY_MERGES) as u32;
/// Id of `<|endoftext|>` in the tiny tokenizer.
pub const TINY_EOT_ID: u32 = FIRST_SPECIAL;
/// Id of `<|im_start|>` in the tiny tokenizer.
pub const TINY_IM_START_ID: u32 = FIRST_SPECIAL + 1;
/// Id of `<|im_end|>` in the tiny tokenizer.
pub const TINY_IM_END_ID: u32 = FIRST_SPECIAL + 2;

/// The committed merges (one `a b` per line, byte-level alphabet).
const MERGES_ASSET: &str = include_str!("../assets/tiny_merges.txt");

/// Qwen2-style ChatML template (HF Jinja), the one ChatML of the project: its assistant turns
/// carry `{% generation %}` markers, so transformers and TRL find the assistant tokens the way
/// the trainer does. No default system prompt: the tiny model has a short context and nothing
/// to gain from one.
pub const CHATML_TEMPLATE: &str = crate::chat_template::CHATML_FALLBACK_TEMPLATE;

/// GPT-2's byte → printable char map (the ByteLevel alphabet), indexed by byte.
pub(crate) fn byte_chars() -> Vec<char> {
    let mut printable: Vec<u32> = ('!' as u32..='~' as u32)
        .chain('¡' as u32..='¬' as u32)
        .chain('®' as u32..='ÿ' as u32)
        .collect();
    let mut map = vec!['\0'; 256];
    for &b in &printable {
        map[b as usize] = char::from_u32(b).expect("latin-1 char");
    }
    let mut n = 0;
    for b in 0..256u32 {
        if !printable.contains(&b) {
            map[b as usize] = char::from_u32(256 + n).expect("valid char");
            n += 1;
            printable.push(b);
        }
    }
    map
}

fn tiny_pre_tokenizer() -> Value {
    json!({"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": true},
        {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}
    ]})
}

fn tokenizer_err(message: impl ToString) -> Error {
    Error::Tokenizer {
        path: None,
        message: message.to_string(),
    }
}

fn build(merges: &[String]) -> Result<Tokenizer> {
    let mut tokens: Vec<String> = byte_chars().iter().map(char::to_string).collect();
    for m in merges {
        let (a, b) = m
            .split_once(' ')
            .ok_or_else(|| tokenizer_err(format!("bad merge {m:?}")))?;
        tokens.push(format!("{a}{b}"));
    }
    let added: Vec<(u32, String, bool)> = TINY_SPECIAL_TOKENS
        .iter()
        .enumerate()
        .map(|(i, s)| (tokens.len() as u32 + i as u32, s.to_string(), true))
        .collect();
    tokens.extend(TINY_SPECIAL_TOKENS.iter().map(|s| s.to_string()));
    build_bpe_tokenizer(&tokens, merges, &added, tiny_pre_tokenizer()).map_err(tokenizer_err)
}

/// The committed merges, in order.
pub(crate) fn tiny_merges() -> Vec<String> {
    MERGES_ASSET
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// The tiny byte-level BPE tokenizer: every digit is its own token; special tokens
/// `<|endoftext|>`, `<|im_start|>`, `<|im_end|>`, `<think>`, `</think>`. Deterministic.
pub fn tiny_tokenizer() -> Result<Tokenizer> {
    let merges = tiny_merges();
    if merges.len() != TINY_MERGES {
        return Err(tokenizer_err(format!(
            "assets/tiny_merges.txt has {} merges, expected {TINY_MERGES}",
            merges.len()
        )));
    }
    build(&merges)
}

/// Learn `n` BPE merges from `text` with the tiny tokenizer's pre-tokenizer (so merges never
/// contain a digit). Ties break on the pair's text, so the result does not depend on hashing.
pub fn learn_merges(text: &str, n: usize) -> Result<Vec<String>> {
    let base = build(&[])?;
    let pre = base
        .get_pre_tokenizer()
        .ok_or_else(|| tokenizer_err("no pre-tokenizer"))?;
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for line in text.lines() {
        let mut pretok = tokenizers::PreTokenizedString::from(line);
        tokenizers::PreTokenizer::pre_tokenize(pre, &mut pretok).map_err(tokenizer_err)?;
        for (piece, _, _) in pretok.get_splits(
            tokenizers::OffsetReferential::Original,
            tokenizers::OffsetType::Char,
        ) {
            *counts.entry(piece.to_string()).or_default() += 1;
        }
    }
    let mut words: Vec<(Vec<String>, u64)> = counts
        .into_iter()
        .map(|(w, c)| (w.chars().map(|ch| ch.to_string()).collect(), c))
        .collect();
    let mut merges = Vec::with_capacity(n);
    while merges.len() < n {
        let mut pairs: HashMap<(&str, &str), u64> = HashMap::new();
        for (syms, c) in &words {
            for w in syms.windows(2) {
                *pairs.entry((&w[0], &w[1])).or_default() += c;
            }
        }
        let Some(((a, b), _)) = pairs
            .into_iter()
            .filter(|((a, b), _)| !a.chars().chain(b.chars()).any(|c| c.is_ascii_digit()))
            .max_by(|(p1, c1), (p2, c2)| c1.cmp(c2).then(p2.cmp(p1)))
        else {
            break;
        };
        let (a, b) = (a.to_string(), b.to_string());
        let joined = format!("{a}{b}");
        for (syms, _) in words.iter_mut() {
            let mut i = 0;
            while i + 1 < syms.len() {
                if syms[i] == a && syms[i + 1] == b {
                    syms[i] = joined.clone();
                    syms.remove(i + 1);
                }
                i += 1;
            }
        }
        merges.push(format!("{a} {b}"));
    }
    Ok(merges)
}

/// A `tokenizer_config.json` value with the ChatML template and `<|im_end|>` as EOS.
pub fn chatml_tokenizer_config() -> Value {
    json!({
        "add_bos_token": false,
        "bos_token": null,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": null,
        "model_max_length": 2048,
        "chat_template": CHATML_TEMPLATE,
        "tokenizer_class": "PreTrainedTokenizerFast",
    })
}

/// Standard deviation of the normal draws of [`init_tiny`] (norm weights are ones, biases zeros).
pub const TINY_INIT_STD: f64 = 0.02;

/// Write a tiny random model (config, weights drawn from `seed`, tokenizer files) to
/// `out_dir` as an HF checkpoint directory. Returns its config.
pub fn init_tiny(arch: Arch, out_dir: &Path, seed: u64) -> Result<Config> {
    let cfg = Config::tiny(arch);
    init_tiny_with(&cfg, out_dir, seed, TINY_INIT_STD)?;
    Ok(cfg)
}

/// Like [`init_tiny`] with another shape (`cfg`, whose `vocab_size` must be
/// [`TINY_VOCAB_SIZE`]) and another standard deviation of the random weights.
pub fn init_tiny_with(cfg: &Config, out_dir: &Path, seed: u64, std: f64) -> Result<()> {
    cfg.validate().map_err(Error::InvalidInput)?;
    if cfg.vocab_size != TINY_VOCAB_SIZE {
        return Err(Error::InvalidInput(format!(
            "the tiny tokenizer has {TINY_VOCAB_SIZE} tokens, the config {}",
            cfg.vocab_size
        )));
    }
    if !(std.is_finite() && std > 0.0) {
        return Err(Error::InvalidInput(format!(
            "the init standard deviation must be positive, got {std}"
        )));
    }
    let tokenizer = tiny_tokenizer()?;
    let varmap = random_varmap(cfg, seed, std, &Device::Cpu, DType::F32)?;
    save_checkpoint(
        out_dir,
        cfg,
        &varmap,
        &tokenizer,
        &chatml_tokenizer_config(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Checkpoint;

    const GSM8K: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../datasets/gsm8k/test.jsonl"
    );

    /// Question and answer text of every GSM8K test row (the merges' training text).
    fn gsm8k_text() -> Option<String> {
        let raw = std::fs::read_to_string(GSM8K).ok()?;
        let mut text = String::new();
        for line in raw.lines() {
            let v: Value = serde_json::from_str(line).ok()?;
            for k in ["question", "answer"] {
                text.push_str(v[k].as_str().unwrap_or(""));
                text.push('\n');
            }
        }
        Some(text)
    }

    /// The committed merges are what the learner produces from GSM8K. Set
    /// DISTILLERY_REGEN_MERGES=1 to rewrite the asset instead.
    #[test]
    fn merges_asset_is_learned_from_gsm8k() {
        // GSM8K ships in datasets/: a missing file is a failure, not a skip.
        let text = gsm8k_text().unwrap_or_else(|| panic!("{GSM8K} not readable"));
        let merges = learn_merges(&text, TINY_MERGES).unwrap();
        assert_eq!(merges.len(), TINY_MERGES);
        if std::env::var_os("DISTILLERY_REGEN_MERGES").is_some() {
            let path = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/tiny_merges.txt");
            std::fs::write(path, merges.join("\n") + "\n").unwrap();
            return;
        }
        assert_eq!(merges, tiny_merges());
    }

    #[test]
    fn tiny_tokenizer_isolates_digits_and_keeps_specials() {
        let tok = tiny_tokenizer().unwrap();
        assert_eq!(tok.get_vocab_size(true), TINY_VOCAB_SIZE);
        for (i, s) in TINY_SPECIAL_TOKENS.iter().enumerate() {
            assert_eq!(tok.token_to_id(s), Some(FIRST_SPECIAL + i as u32), "{s}");
        }
        assert_eq!(tok.token_to_id("<|im_end|>"), Some(TINY_IM_END_ID));
        let text = "<|im_start|>user\nJanet sells 16 - 3 - 4 = 9 eggs for $2,450.75 each.<|im_end|>\n<think>\n9 * 2 = 18\n</think>";
        let enc = tok.encode(text, false).unwrap();
        let digit_ids: Vec<u32> = (0..10)
            .map(|d| tok.token_to_id(&d.to_string()).unwrap())
            .collect();
        for (token, id) in enc.get_tokens().iter().zip(enc.get_ids()) {
            if token.chars().any(|c| c.is_ascii_digit()) {
                assert!(
                    digit_ids.contains(id),
                    "token {token:?} mixes a digit with other text"
                );
            }
        }
        let digits_in_text = text.chars().filter(char::is_ascii_digit).count();
        let digit_tokens = enc
            .get_ids()
            .iter()
            .filter(|id| digit_ids.contains(id))
            .count();
        assert_eq!(digit_tokens, digits_in_text);
        assert_eq!(enc.get_ids()[0], TINY_IM_START_ID);
        assert!(
            enc.get_ids().contains(&(FIRST_SPECIAL + 3)),
            "<think> is one token"
        );
        // Merges make ordinary words shorter than their bytes.
        assert!(
            enc.len() < text.len() * 2 / 3,
            "{} tokens for {} bytes",
            enc.len(),
            text.len()
        );
        assert_eq!(tok.decode(enc.get_ids(), false).unwrap(), text);
    }

    #[test]
    fn init_tiny_with_writes_the_shape_and_scale_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = Config::tiny(Arch::Qwen2);
        cfg.num_hidden_layers = 2;
        cfg.num_attention_heads = 8;
        cfg.num_key_value_heads = 4;
        cfg.intermediate_size = 512;
        let (narrow, wide) = (dir.path().join("narrow"), dir.path().join("wide"));
        init_tiny_with(&cfg, &narrow, 5, 0.02).unwrap();
        init_tiny_with(&cfg, &wide, 5, 0.06).unwrap();
        let std_of = |path: &Path| {
            let ck = Checkpoint::load(path, &Device::Cpu, DType::F32).unwrap();
            assert_eq!(ck.config, cfg);
            let w = ck.varmap.data().lock().unwrap()["model.layers.0.mlp.up_proj.weight"]
                .as_tensor()
                .flatten_all()
                .unwrap();
            w.sqr()
                .unwrap()
                .mean_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
                .sqrt()
        };
        let (a, b) = (std_of(&narrow), std_of(&wide));
        assert!(
            (a - 0.02).abs() < 0.002 && (b - 0.06).abs() < 0.006,
            "{a} {b}"
        );

        let mut bad = cfg.clone();
        bad.num_attention_heads = 3;
        assert!(init_tiny_with(&bad, &dir.path().join("bad"), 0, 0.02).is_err());
        bad = cfg.clone();
        bad.vocab_size = 100;
        assert!(init_tiny_with(&bad, &dir.path().join("bad"), 0, 0.02).is_err());
        assert!(init_tiny_with(&cfg, &dir.path().join("bad"), 0, 0.0).is_err());
    }

    #[test]
    fn init_tiny_writes_a_loadable_deterministic_model() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (
            dir.path().join("a"),
            dir.path().join("b"),
            dir.path().join("c"),
        );
        let cfg = init_tiny(Arch::Qwen2, &a, 3).unwrap();
        init_tiny(Arch::Qwen2, &b, 3).unwrap();
        init_tiny(Arch::Qwen2, &c, 4).unwrap();
        let bytes = |d: &Path| std::fs::read(d.join("model.safetensors")).unwrap();
        assert!(bytes(&a) == bytes(&b), "same seed, different weights");
        assert!(bytes(&a) != bytes(&c), "different seeds, same weights");
        let ck = Checkpoint::load(&a, &Device::Cpu, DType::F32).unwrap();
        assert_eq!(ck.config, cfg);
        assert_eq!(ck.tokenizer.get_vocab_size(true), cfg.vocab_size);
        assert_eq!(ck.eos_token_ids(), vec![TINY_IM_END_ID, TINY_EOT_ID]);
        let ids = ck
            .tokenizer
            .encode("<|im_start|>user\n2+3<|im_end|>\n", false)
            .unwrap();
        let out = ck
            .model()
            .unwrap()
            .generate(
                &[ids.get_ids().to_vec()],
                &crate::GenerateOptions::greedy(4),
            )
            .unwrap();
        assert_eq!(out[0].tokens.len(), 4);
        let llama = init_tiny(Arch::Llama, &dir.path().join("l"), 3).unwrap();
        assert!(!llama.tie_word_embeddings && cfg.tie_word_embeddings);
    }
}

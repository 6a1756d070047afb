//! The model configuration, read from (and written as) a Hugging Face `config.json`.

use std::path::Path;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{Error, Result};

/// The two decoder families we support. They share one implementation; Qwen2 differs by biases
/// on q/k/v and its `config.json` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arch {
    Qwen2,
    Llama,
}

impl Arch {
    /// The `model_type` field of `config.json`.
    pub fn model_type(self) -> &'static str {
        match self {
            Arch::Qwen2 => "qwen2",
            Arch::Llama => "llama",
        }
    }

    /// The `architectures[0]` field of `config.json`.
    pub fn hf_architecture(self) -> &'static str {
        match self {
            Arch::Qwen2 => "Qwen2ForCausalLM",
            Arch::Llama => "LlamaForCausalLM",
        }
    }

    /// Parse `qwen2`, `llama`, `Qwen2ForCausalLM`, `LlamaForCausalLM` (case-insensitive).
    pub fn parse(s: &str) -> Option<Arch> {
        match s.to_ascii_lowercase().as_str() {
            "qwen2" | "qwen2forcausallm" => Some(Arch::Qwen2),
            "llama" | "llamaforcausallm" => Some(Arch::Llama),
            _ => None,
        }
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.model_type())
    }
}

impl std::str::FromStr for Arch {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        Arch::parse(s)
            .ok_or_else(|| format!("unknown architecture {s:?} (expected qwen2 or llama)"))
    }
}

/// Rope frequency scaling (`rope_scaling` in `config.json`).
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    /// Llama 3.x: low frequencies divided by `factor`, high ones kept, smooth in between.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: usize,
    },
    /// Position interpolation: every frequency divided by `factor`.
    Linear { factor: f64 },
}

/// A decoder-only transformer configuration (the subset of HF `config.json` we use).
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub arch: Arch,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    /// Fewer than `num_attention_heads` means grouped-query attention.
    pub num_key_value_heads: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub rope_scaling: Option<RopeScaling>,
    pub max_position_embeddings: usize,
    /// When true there is no `lm_head.weight`: the output projection is the embedding matrix.
    pub tie_word_embeddings: bool,
    /// Biases on q/k/v projections (always true for Qwen2, `attention_bias` for Llama).
    pub attention_bias: bool,
    pub bos_token_id: Option<u32>,
    /// `eos_token_id` may be a single id or a list in `config.json`; always a list here.
    pub eos_token_ids: Vec<u32>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(u32),
    Many(Vec<u32>),
}

#[derive(Deserialize)]
struct RawConfig {
    architectures: Option<Vec<String>>,
    model_type: Option<String>,
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    #[serde(default = "default_eps")]
    rms_norm_eps: f64,
    #[serde(default = "default_theta")]
    rope_theta: f64,
    rope_scaling: Option<Value>,
    #[serde(default = "default_max_pos")]
    max_position_embeddings: usize,
    tie_word_embeddings: Option<bool>,
    attention_bias: Option<bool>,
    bos_token_id: Option<OneOrMany>,
    eos_token_id: Option<OneOrMany>,
    hidden_act: Option<String>,
    mlp_bias: Option<bool>,
}

fn default_eps() -> f64 {
    1e-6
}
fn default_theta() -> f64 {
    10_000.0
}
fn default_max_pos() -> usize {
    4096
}

impl Config {
    /// Parse a Hugging Face `config.json` text. `path` only labels errors.
    pub fn from_hf_json(text: &str, path: Option<&Path>) -> Result<Config> {
        let raw: RawConfig = serde_json::from_str(text).map_err(|source| Error::Json {
            path: path
                .map(Path::to_path_buf)
                .unwrap_or_else(|| "config.json".into()),
            source,
        })?;
        let invalid = |message: String| Error::InvalidConfig {
            path: path.map(Path::to_path_buf),
            message,
        };
        let names: Vec<String> = raw
            .architectures
            .iter()
            .flatten()
            .cloned()
            .chain(raw.model_type.clone())
            .collect();
        let arch =
            names
                .iter()
                .find_map(|n| Arch::parse(n))
                .ok_or_else(|| Error::UnsupportedArch {
                    path: path.map(Path::to_path_buf),
                    found: if names.is_empty() {
                        "<no architectures or model_type>".to_string()
                    } else {
                        names.join(", ")
                    },
                })?;
        if let Some(act) = &raw.hidden_act
            && act != "silu"
        {
            return Err(invalid(format!(
                "hidden_act {act:?} is not supported (only silu)"
            )));
        }
        if raw.mlp_bias == Some(true) {
            return Err(invalid("mlp_bias = true is not supported".into()));
        }
        let rope_scaling = match raw.rope_scaling {
            None | Some(Value::Null) => None,
            Some(v) => parse_rope_scaling(&v).map_err(invalid)?,
        };
        let first = |v: Option<OneOrMany>| -> Vec<u32> {
            match v {
                None => vec![],
                Some(OneOrMany::One(x)) => vec![x],
                Some(OneOrMany::Many(xs)) => xs,
            }
        };
        let cfg = Config {
            arch,
            vocab_size: raw.vocab_size,
            hidden_size: raw.hidden_size,
            intermediate_size: raw.intermediate_size,
            num_hidden_layers: raw.num_hidden_layers,
            num_attention_heads: raw.num_attention_heads,
            num_key_value_heads: raw.num_key_value_heads.unwrap_or(raw.num_attention_heads),
            rms_norm_eps: raw.rms_norm_eps,
            rope_theta: raw.rope_theta,
            rope_scaling,
            max_position_embeddings: raw.max_position_embeddings,
            // LlamaConfig and Qwen2Config both default to untied when the field is absent.
            tie_word_embeddings: raw.tie_word_embeddings.unwrap_or(false),
            attention_bias: match arch {
                Arch::Qwen2 => true,
                Arch::Llama => raw.attention_bias.unwrap_or(false),
            },
            bos_token_id: first(raw.bos_token_id).first().copied(),
            eos_token_ids: first(raw.eos_token_id),
        };
        cfg.validate().map_err(invalid)?;
        if let Some(hd) = raw.head_dim
            && hd != cfg.head_dim()
        {
            return Err(invalid(format!(
                "head_dim {hd} != hidden_size / num_attention_heads = {}",
                cfg.head_dim()
            )));
        }
        Ok(cfg)
    }

    /// Read and parse a `config.json` file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Config> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Config::from_hf_json(&text, Some(path))
    }

    /// The `config.json` this config is saved as (readable by `transformers` too).
    pub fn to_hf_json(&self) -> Value {
        let mut v = json!({
            "architectures": [self.arch.hf_architecture()],
            "model_type": self.arch.model_type(),
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim(),
            "hidden_act": "silu",
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "torch_dtype": "float32",
        });
        let obj = v.as_object_mut().expect("json! object");
        if self.arch == Arch::Llama {
            obj.insert("attention_bias".into(), json!(self.attention_bias));
            obj.insert("mlp_bias".into(), json!(false));
        } else {
            obj.insert("use_sliding_window".into(), json!(false));
        }
        obj.insert(
            "rope_scaling".into(),
            match &self.rope_scaling {
                None => Value::Null,
                Some(RopeScaling::Llama3 {
                    factor,
                    low_freq_factor,
                    high_freq_factor,
                    original_max_position_embeddings,
                }) => json!({
                    "rope_type": "llama3",
                    "factor": factor,
                    "low_freq_factor": low_freq_factor,
                    "high_freq_factor": high_freq_factor,
                    "original_max_position_embeddings": original_max_position_embeddings,
                }),
                Some(RopeScaling::Linear { factor }) => {
                    json!({"rope_type": "linear", "type": "linear", "factor": factor})
                }
            },
        );
        if let Some(b) = self.bos_token_id {
            obj.insert("bos_token_id".into(), json!(b));
        }
        match self.eos_token_ids.as_slice() {
            [] => {}
            [one] => {
                obj.insert("eos_token_id".into(), json!(one));
            }
            many => {
                obj.insert("eos_token_id".into(), json!(many));
            }
        }
        v
    }

    /// A tiny configuration for tests and the CPU demo (about 0.9M parameters). Its vocabulary
    /// matches [`crate::tiny_tokenizer`]. Qwen2 ties its embeddings, Llama does not, so tests
    /// cover both head layouts.
    pub fn tiny(arch: Arch) -> Config {
        Config {
            arch,
            vocab_size: crate::tiny::TINY_VOCAB_SIZE,
            hidden_size: 128,
            intermediate_size: 384,
            num_hidden_layers: 4,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            rms_norm_eps: 1e-6,
            rope_theta: 10_000.0,
            rope_scaling: None,
            max_position_embeddings: 2048,
            tie_word_embeddings: arch == Arch::Qwen2,
            attention_bias: arch == Arch::Qwen2,
            bos_token_id: None,
            eos_token_ids: vec![crate::tiny::TINY_IM_END_ID, crate::tiny::TINY_EOT_ID],
        }
    }

    /// Size of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// Check the shape constraints the implementation relies on.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let nonzero = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.num_key_value_heads),
        ];
        if let Some((name, _)) = nonzero.iter().find(|(_, v)| *v == 0) {
            return Err(format!("{name} must be > 0"));
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if !self.head_dim().is_multiple_of(2) {
            return Err(format!(
                "head_dim {} must be even for rope",
                self.head_dim()
            ));
        }
        if !self
            .num_attention_heads
            .is_multiple_of(self.num_key_value_heads)
        {
            return Err(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                self.num_attention_heads, self.num_key_value_heads
            ));
        }
        if !(self.rms_norm_eps > 0.0 && self.rope_theta > 0.0) {
            return Err("rms_norm_eps and rope_theta must be > 0".into());
        }
        Ok(())
    }

    /// Rope inverse frequencies (length `head_dim / 2`), scaling applied.
    pub fn rope_inv_freq(&self) -> Vec<f64> {
        let dim = self.head_dim();
        let base: Vec<f64> = (0..dim)
            .step_by(2)
            .map(|i| 1.0 / self.rope_theta.powf(i as f64 / dim as f64))
            .collect();
        match &self.rope_scaling {
            None => base,
            Some(RopeScaling::Linear { factor }) => base.into_iter().map(|f| f / factor).collect(),
            Some(RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            }) => {
                let orig = *original_max_position_embeddings as f64;
                let low_wavelen = orig / low_freq_factor;
                let high_wavelen = orig / high_freq_factor;
                base.into_iter()
                    .map(|freq| {
                        let wavelen = 2.0 * std::f64::consts::PI / freq;
                        if wavelen < high_wavelen {
                            freq
                        } else if wavelen > low_wavelen {
                            freq / factor
                        } else {
                            let smooth = (orig / wavelen - low_freq_factor)
                                / (high_freq_factor - low_freq_factor);
                            (1.0 - smooth) * freq / factor + smooth * freq
                        }
                    })
                    .collect()
            }
        }
    }
}

fn parse_rope_scaling(v: &Value) -> std::result::Result<Option<RopeScaling>, String> {
    let kind = v
        .get("rope_type")
        .or_else(|| v.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("default");
    let num = |k: &str| -> std::result::Result<f64, String> {
        v.get(k)
            .and_then(Value::as_f64)
            .ok_or_else(|| format!("rope_scaling.{k} is missing or not a number"))
    };
    match kind {
        "default" => Ok(None),
        "linear" => Ok(Some(RopeScaling::Linear {
            factor: num("factor")?,
        })),
        "llama3" => Ok(Some(RopeScaling::Llama3 {
            factor: num("factor")?,
            low_freq_factor: num("low_freq_factor")?,
            high_freq_factor: num("high_freq_factor")?,
            original_max_position_embeddings: num("original_max_position_embeddings")? as usize,
        })),
        other => Err(format!(
            "rope_scaling type {other:?} is not supported (default, linear, llama3)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_llama3_config_with_eos_list_and_scaling() {
        let text = r#"{
            "architectures": ["LlamaForCausalLM"], "model_type": "llama",
            "vocab_size": 128256, "hidden_size": 2048, "intermediate_size": 8192,
            "num_hidden_layers": 16, "num_attention_heads": 32, "num_key_value_heads": 8,
            "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "max_position_embeddings": 131072,
            "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                             "original_max_position_embeddings": 8192, "rope_type": "llama3"},
            "tie_word_embeddings": true, "bos_token_id": 128000,
            "eos_token_id": [128001, 128008, 128009], "hidden_act": "silu"
        }"#;
        let c = Config::from_hf_json(text, None).unwrap();
        assert_eq!(c.arch, Arch::Llama);
        assert_eq!(c.num_key_value_heads, 8);
        assert_eq!(c.head_dim(), 64);
        assert_eq!(c.eos_token_ids, vec![128001, 128008, 128009]);
        assert!(!c.attention_bias);
        assert!(
            matches!(c.rope_scaling, Some(RopeScaling::Llama3 { factor, .. }) if factor == 32.0)
        );
        // Round trip through our own writer.
        let again = Config::from_hf_json(&c.to_hf_json().to_string(), None).unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn parses_qwen2_from_model_type_only() {
        let text = r#"{"model_type": "qwen2", "vocab_size": 10, "hidden_size": 8,
            "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
            "num_key_value_heads": 1, "eos_token_id": 3}"#;
        let c = Config::from_hf_json(text, None).unwrap();
        assert_eq!(c.arch, Arch::Qwen2);
        assert!(c.attention_bias);
        assert_eq!(c.eos_token_ids, vec![3]);
        let tiny = Config::tiny(Arch::Qwen2);
        assert_eq!(
            Config::from_hf_json(&tiny.to_hf_json().to_string(), None).unwrap(),
            tiny
        );
    }

    #[test]
    fn rejects_unknown_arch_and_bad_shapes() {
        let err = Config::from_hf_json(
            r#"{"architectures": ["GPT2LMHeadModel"], "vocab_size": 1, "hidden_size": 8,
                "intermediate_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2}"#,
            Some(Path::new("x/config.json")),
        )
        .unwrap_err();
        assert!(err.to_string().contains("GPT2LMHeadModel"), "{err}");
        assert!(err.to_string().starts_with("x/config.json"), "{err}");
        let err = Config::from_hf_json(
            r#"{"model_type": "llama", "vocab_size": 1, "hidden_size": 8,
                "intermediate_size": 8, "num_hidden_layers": 1, "num_attention_heads": 3}"#,
            None,
        )
        .unwrap_err();
        assert!(err.to_string().contains("not a multiple"), "{err}");
    }
}

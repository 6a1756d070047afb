//! GGUF (llama.cpp) files: dequantised weights under HF names, tokenizer from metadata.

use std::collections::HashMap;
use std::io::{BufReader, Read, Seek};
use std::path::Path;

use candle_core::quantized::gguf_file::{Content, Value as GValue};
use candle_core::{DType, Device};
use serde_json::{Value, json};
use tokenizers::Tokenizer;

use std::sync::Arc;

use candle_core::quantized::{QStorage, QTensor};
use candle_nn::VarMap;

use crate::checkpoint::{Checkpoint, QuantizedWeights, varmap_from};
use crate::config::{Arch, Config};
use crate::error::{Error, Result};
use crate::model::{Model, Param, TensorSpec};

/// llama.cpp's name for an HF tensor name (`None` for names it has no equivalent of).
fn gguf_name(hf: &str) -> Option<String> {
    let fixed = match hf {
        "model.embed_tokens.weight" => Some("token_embd.weight"),
        "model.norm.weight" => Some("output_norm.weight"),
        "lm_head.weight" => Some("output.weight"),
        _ => None,
    };
    if let Some(f) = fixed {
        return Some(f.to_string());
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    let (module, suffix) = rest.rsplit_once('.')?;
    let short = match module {
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" => "attn_output",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" => "ffn_up",
        "mlp.down_proj" => "ffn_down",
        "input_layernorm" => "attn_norm",
        "post_attention_layernorm" => "ffn_norm",
        _ => return None,
    };
    Some(format!("blk.{layer}.{short}.{suffix}"))
}

/// A GGUF file's header, read and checked: its tensors are read on demand.
struct Gguf {
    content: Content,
    reader: BufReader<std::fs::File>,
    config: Config,
}

impl Gguf {
    fn bad(path: &Path) -> impl Fn(String) -> Error + '_ {
        |message| Error::Gguf {
            path: path.to_path_buf(),
            message,
        }
    }

    /// The tensor for the HF weight `spec`, with its shape checked and Llama's q/k rows put
    /// back in HF's layout (llama.cpp permutes them; see [`unpermute_rows`]).
    fn tensor(&mut self, path: &Path, spec: &TensorSpec) -> Result<QTensor> {
        let bad = Self::bad(path);
        let gname = gguf_name(&spec.name).expect("every spec name has a GGUF name");
        if !self.content.tensor_infos.contains_key(&gname) {
            return Err(Error::MissingTensor {
                name: gname,
                file: path.to_path_buf(),
            });
        }
        let q = self
            .content
            .tensor(&mut self.reader, &gname, &Device::Cpu)
            .map_err(|e| bad(format!("tensor `{gname}`: {e}")))?;
        if q.shape().dims() != spec.shape.as_slice() {
            return Err(Error::ShapeMismatch {
                name: gname,
                file: path.to_path_buf(),
                expected: spec.shape.clone(),
                found: q.shape().dims().to_vec(),
            });
        }
        let heads = if self.config.arch != Arch::Llama {
            None
        } else if spec.name.contains("self_attn.q_proj") {
            Some(self.config.num_attention_heads)
        } else if spec.name.contains("self_attn.k_proj") {
            Some(self.config.num_key_value_heads)
        } else {
            None
        };
        match heads {
            Some(heads) => {
                unpermute_rows(&q, heads).map_err(|e| bad(format!("tensor `{gname}`: {e}")))
            }
            None => Ok(q),
        }
    }
}

/// llama.cpp's converter permutes Llama q/k rows from HF's rotate-half layout to interleaved
/// pairs (`reshape(heads, 2, hd/2, ..).swapaxes(1, 2)`); this is the inverse, on the rows of a
/// tensor of any GGUF type: rows are quantized independently (blocks run along a row), so
/// moving whole rows of bytes is exact.
fn unpermute_rows(q: &QTensor, heads: usize) -> candle_core::Result<QTensor> {
    let rows = q.shape().dims()[0];
    let data = q.data()?;
    let row_bytes = data.len() / rows;
    let hd = rows / heads;
    let mut out = Vec::with_capacity(data.len());
    // HF row (h, j, k), j < 2, k < hd/2, is llama.cpp row (h, k, j).
    for h in 0..heads {
        for j in 0..2 {
            for k in 0..hd / 2 {
                let from = (h * hd + k * 2 + j) * row_bytes;
                out.extend_from_slice(&data[from..from + row_bytes]);
            }
        }
    }
    let storage = QStorage::from_data(std::borrow::Cow::Owned(out), &Device::Cpu, q.dtype())?;
    QTensor::new(storage, q.shape().clone())
}

/// Load a GGUF checkpoint (dequantised to f32, then converted to `dtype`).
pub(crate) fn load(path: &Path, device: &Device, dtype: DType) -> Result<Checkpoint> {
    let mut gguf = open(path)?;
    let mut tensors = Vec::new();
    for spec in Model::tensor_specs(&gguf.config) {
        let t = gguf.tensor(path, &spec)?.dequantize(&Device::Cpu)?;
        tensors.push((spec.name, t.to_dtype(dtype)?.to_device(device)?));
    }
    let varmap = varmap_from(tensors)?;
    finish(path, gguf, varmap, None, device, dtype)
}

/// Load a GGUF checkpoint for inference with its quantized blocks kept: projections and the
/// output head multiply in them (candle's quantized matmul), embeddings and norms are
/// dequantized to f32. The checkpoint's `VarMap` is empty and its model is in `quantized`.
/// The blocks stay in host memory, so `device` is the CPU.
pub(crate) fn load_quantized(path: &Path, device: &Device) -> Result<Checkpoint> {
    let mut gguf = open(path)?;
    let config = gguf.config.clone();
    let mut params = HashMap::new();
    let model = Model::from_params(&config, device, DType::F32, |spec| {
        let param = Param::Quantized(Arc::new(gguf.tensor(path, spec)?));
        params.insert(spec.name.clone(), param.clone());
        Ok(param)
    })?;
    let quantized = QuantizedWeights {
        model,
        params: Arc::new(params),
    };
    finish(
        path,
        gguf,
        VarMap::new(),
        Some(quantized),
        device,
        DType::F32,
    )
}

/// Reads and checks the header of the GGUF file at `path`.
fn open(path: &Path) -> Result<Gguf> {
    let bad = |message: String| Error::Gguf {
        path: path.to_path_buf(),
        message,
    };
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut reader = BufReader::new(file);
    let mut magic = [0u8; 4];
    reader
        .read_exact(&mut magic)
        .map_err(|_| Error::NotACheckpoint(path.to_path_buf()))?;
    if &magic != b"GGUF" {
        return Err(Error::NotACheckpoint(path.to_path_buf()));
    }
    reader.rewind().map_err(|e| Error::io(path, e))?;
    let content = Content::read(&mut reader).map_err(|e| bad(e.to_string()))?;
    let md = &content.metadata;
    let arch_name = get_str(md, "general.architecture").map_err(&bad)?;
    let arch = Arch::parse(&arch_name).ok_or_else(|| Error::UnsupportedArch {
        path: Some(path.to_path_buf()),
        found: arch_name.clone(),
    })?;
    let key = |k: &str| format!("{arch_name}.{k}");
    let embd = content
        .tensor_infos
        .get("token_embd.weight")
        .ok_or_else(|| Error::MissingTensor {
            name: "token_embd.weight".into(),
            file: path.to_path_buf(),
        })?;
    if content.tensor_infos.contains_key("rope_freqs.weight") {
        return Err(bad(
            "per-dimension rope_freqs (Llama 3.1 scaling) is not supported".into(),
        ));
    }
    let heads = get_usize(md, &key("attention.head_count")).map_err(&bad)?;
    let eos = get_usize(md, "tokenizer.ggml.eos_token_id").ok();
    let config = Config {
        arch,
        vocab_size: embd.shape.dims()[0],
        hidden_size: get_usize(md, &key("embedding_length")).map_err(&bad)?,
        intermediate_size: get_usize(md, &key("feed_forward_length")).map_err(&bad)?,
        num_hidden_layers: get_usize(md, &key("block_count")).map_err(&bad)?,
        num_attention_heads: heads,
        num_key_value_heads: get_usize(md, &key("attention.head_count_kv")).unwrap_or(heads),
        rms_norm_eps: get_f64(md, &key("attention.layer_norm_rms_epsilon")).unwrap_or(1e-6),
        rope_theta: get_f64(md, &key("rope.freq_base")).unwrap_or(10_000.0),
        rope_scaling: None,
        max_position_embeddings: get_usize(md, &key("context_length")).unwrap_or(4096),
        tie_word_embeddings: !content.tensor_infos.contains_key("output.weight"),
        attention_bias: content.tensor_infos.contains_key("blk.0.attn_q.bias"),
        bos_token_id: get_usize(md, "tokenizer.ggml.bos_token_id")
            .ok()
            .map(|v| v as u32),
        eos_token_ids: eos.map(|v| vec![v as u32]).unwrap_or_default(),
    };
    config.validate().map_err(|message| Error::InvalidConfig {
        path: Some(path.to_path_buf()),
        message,
    })?;
    Ok(Gguf {
        content,
        reader,
        config,
    })
}

/// The checkpoint around weights read from `gguf`: tokenizer, template and special tokens
/// from its metadata.
fn finish(
    path: &Path,
    gguf: Gguf,
    varmap: VarMap,
    quantized: Option<QuantizedWeights>,
    device: &Device,
    dtype: DType,
) -> Result<Checkpoint> {
    let Gguf {
        content, config, ..
    } = gguf;
    let md = &content.metadata;
    let eos = get_usize(md, "tokenizer.ggml.eos_token_id").ok();
    let (tokenizer, tokens) = tokenizer_from_metadata(md).map_err(|message| Error::Tokenizer {
        path: Some(path.to_path_buf()),
        message,
    })?;
    let chat_template = get_str(md, "tokenizer.chat_template").ok();
    let token_at = |id: Option<usize>| id.and_then(|i| tokens.get(i)).cloned();
    let mut tokenizer_config = json!({
        "add_bos_token": get_bool(md, "tokenizer.ggml.add_bos_token").unwrap_or(false),
        "bos_token": token_at(get_usize(md, "tokenizer.ggml.bos_token_id").ok()),
        "eos_token": token_at(eos),
        "model_max_length": config.max_position_embeddings,
    });
    if let Some(t) = &chat_template {
        tokenizer_config["chat_template"] = Value::from(t.clone());
    }
    Ok(Checkpoint {
        config,
        varmap,
        tokenizer,
        tokenizer_config,
        chat_template,
        source: path.to_path_buf(),
        device: device.clone(),
        dtype,
        quantized,
    })
}

/// Build a byte-level BPE `Tokenizer` from `tokenizer.ggml.*` (llama.cpp's "gpt2" model).
/// Returns the tokenizer and its token strings (by id).
fn tokenizer_from_metadata(
    md: &HashMap<String, GValue>,
) -> std::result::Result<(Tokenizer, Vec<String>), String> {
    let model = get_str(md, "tokenizer.ggml.model")?;
    if model != "gpt2" {
        return Err(format!(
            "tokenizer model {model:?} is not supported (only gpt2 byte-level BPE)"
        ));
    }
    let tokens = get_str_array(md, "tokenizer.ggml.tokens")?;
    let merges = get_str_array(md, "tokenizer.ggml.merges")?;
    let types: Vec<i64> = match md.get("tokenizer.ggml.token_type") {
        Some(GValue::Array(a)) => a.iter().map(|v| value_i64(v).unwrap_or(1)).collect(),
        _ => vec![],
    };
    let pre = get_str(md, "tokenizer.ggml.pre").unwrap_or_else(|_| "default".into());
    // llama.cpp token types: 3 = control (special), 4 = user defined (added, not special).
    let added: Vec<(u32, String, bool)> = tokens
        .iter()
        .enumerate()
        .filter_map(|(i, t)| match types.get(i) {
            Some(3) => Some((i as u32, t.clone(), true)),
            Some(4) => Some((i as u32, t.clone(), false)),
            None if t.starts_with("<|") && t.ends_with("|>") => Some((i as u32, t.clone(), true)),
            _ => None,
        })
        .collect();
    let tok = build_bpe_tokenizer(&tokens, &merges, &added, pre_tokenizer_for(&pre))?;
    Ok((tok, tokens))
}

/// The HF `pre_tokenizer` JSON for a llama.cpp `tokenizer.ggml.pre` name.
fn pre_tokenizer_for(pre: &str) -> Value {
    let byte_level = |use_regex: bool| {
        json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true,
               "use_regex": use_regex})
    };
    let split = |regex: &str| {
        json!({"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated",
             "invert": false},
            byte_level(false)]})
    };
    match pre {
        // SmolLM/StarCoder: every digit alone, then GPT-2 splitting.
        "smollm" | "starcoder" | "refact" => json!({"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true}, byte_level(true)]}),
        "qwen2" => split(
            r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
        ),
        "llama-bpe" | "llama3" => split(
            r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
        ),
        _ => byte_level(true),
    }
}

/// A byte-level BPE tokenizer from its parts, via the `tokenizer.json` format (so it saves
/// and reloads exactly). `added` is (id, content, special).
pub(crate) fn build_bpe_tokenizer(
    tokens: &[String],
    merges: &[String],
    added: &[(u32, String, bool)],
    pre_tokenizer: Value,
) -> std::result::Result<Tokenizer, String> {
    let vocab: serde_json::Map<String, Value> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), Value::from(i)))
        .collect();
    let added: Vec<Value> = added
        .iter()
        .map(|(id, content, special)| {
            json!({"id": id, "content": content, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": special})
        })
        .collect();
    let spec = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": {"type": "ByteLevel", "add_prefix_space": false,
                           "trim_offsets": false, "use_regex": false},
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true,
                    "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null,
                  "continuing_subword_prefix": null, "end_of_word_suffix": null,
                  "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": vocab, "merges": merges},
    });
    spec.to_string()
        .parse::<Tokenizer>()
        .map_err(|e| e.to_string())
}

fn value_i64(v: &GValue) -> Option<i64> {
    Some(match v {
        GValue::U8(x) => *x as i64,
        GValue::I8(x) => *x as i64,
        GValue::U16(x) => *x as i64,
        GValue::I16(x) => *x as i64,
        GValue::U32(x) => *x as i64,
        GValue::I32(x) => *x as i64,
        GValue::U64(x) => *x as i64,
        GValue::I64(x) => *x,
        _ => return None,
    })
}

fn get_usize(md: &HashMap<String, GValue>, k: &str) -> std::result::Result<usize, String> {
    let v = md
        .get(k)
        .ok_or_else(|| format!("metadata `{k}` is missing"))?;
    value_i64(v)
        .and_then(|x| usize::try_from(x).ok())
        .ok_or_else(|| format!("metadata `{k}` is not a non-negative integer"))
}

fn get_f64(md: &HashMap<String, GValue>, k: &str) -> std::result::Result<f64, String> {
    match md.get(k) {
        // Shortest decimal form, so an f32 1e-6 reads back as 1e-6 and not 9.99e-7.
        Some(GValue::F32(x)) => Ok(x.to_string().parse().unwrap_or(*x as f64)),
        Some(GValue::F64(x)) => Ok(*x),
        Some(v) => value_i64(v)
            .map(|x| x as f64)
            .ok_or_else(|| format!("metadata `{k}` is not a number")),
        None => Err(format!("metadata `{k}` is missing")),
    }
}

fn get_bool(md: &HashMap<String, GValue>, k: &str) -> Option<bool> {
    match md.get(k) {
        Some(GValue::Bool(b)) => Some(*b),
        _ => None,
    }
}

fn get_str(md: &HashMap<String, GValue>, k: &str) -> std::result::Result<String, String> {
    match md.get(k) {
        Some(GValue::String(s)) => Ok(s.clone()),
        Some(_) => Err(format!("metadata `{k}` is not a string")),
        None => Err(format!("metadata `{k}` is missing")),
    }
}

fn get_str_array(
    md: &HashMap<String, GValue>,
    k: &str,
) -> std::result::Result<Vec<String>, String> {
    match md.get(k) {
        Some(GValue::Array(a)) => a
            .iter()
            .map(|v| match v {
                GValue::String(s) => Ok(s.clone()),
                _ => Err(format!("metadata `{k}` holds a non-string")),
            })
            .collect(),
        Some(_) => Err(format!("metadata `{k}` is not an array")),
        None => Err(format!("metadata `{k}` is missing")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::GenerateOptions;
    use crate::generate::argmax;
    use crate::model::tests::{max_abs_diff, test_config, test_model};
    use crate::tiny::{TINY_SPECIAL_TOKENS, TINY_VOCAB_SIZE, tiny_merges, tiny_tokenizer};
    use candle_core::Tensor;
    use candle_core::quantized::{GgmlDType, QTensor, gguf_file};

    /// llama.cpp's HF → GGUF q/k permutation (the one `unpermute` undoes).
    fn permute(t: &Tensor, heads: usize) -> Tensor {
        let (out, inp) = t.dims2().unwrap();
        t.reshape((heads, 2, out / heads / 2, inp))
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .contiguous()
            .unwrap()
            .reshape((out, inp))
            .unwrap()
    }

    /// Write `vm` as a GGUF file the way llama.cpp's converter does (q/k permuted for Llama,
    /// llama.cpp tensor names, the tiny tokenizer in `tokenizer.ggml.*`).
    fn write_gguf(cfg: &Config, vm: &candle_nn::VarMap, path: &Path) {
        write_gguf_as(cfg, vm, path, GgmlDType::F32);
    }

    /// [`write_gguf`] with matrices in `matrices` (norms and biases stay f32, as llama.cpp
    /// keeps them).
    fn write_gguf_as(cfg: &Config, vm: &candle_nn::VarMap, path: &Path, matrices: GgmlDType) {
        let tok = tiny_tokenizer().unwrap();
        let mut vocab: Vec<(String, u32)> = tok.get_vocab(true).into_iter().collect();
        vocab.sort_by_key(|(_, id)| *id);
        let s = |x: &str| GValue::String(x.to_string());
        let u = |x: usize| GValue::U32(x as u32);
        let a = cfg.arch.model_type();
        let meta: Vec<(String, GValue)> = vec![
            ("general.architecture".into(), s(a)),
            (format!("{a}.embedding_length"), u(cfg.hidden_size)),
            (format!("{a}.feed_forward_length"), u(cfg.intermediate_size)),
            (format!("{a}.block_count"), u(cfg.num_hidden_layers)),
            (
                format!("{a}.attention.head_count"),
                u(cfg.num_attention_heads),
            ),
            (
                format!("{a}.attention.head_count_kv"),
                u(cfg.num_key_value_heads),
            ),
            (
                format!("{a}.attention.layer_norm_rms_epsilon"),
                GValue::F32(cfg.rms_norm_eps as f32),
            ),
            (
                format!("{a}.rope.freq_base"),
                GValue::F32(cfg.rope_theta as f32),
            ),
            (
                format!("{a}.context_length"),
                u(cfg.max_position_embeddings),
            ),
            ("tokenizer.ggml.model".into(), s("gpt2")),
            ("tokenizer.ggml.pre".into(), s("smollm")),
            (
                "tokenizer.ggml.tokens".into(),
                GValue::Array(vocab.iter().map(|(t, _)| s(t)).collect()),
            ),
            (
                "tokenizer.ggml.merges".into(),
                GValue::Array(tiny_merges().iter().map(|m| s(m)).collect()),
            ),
            (
                "tokenizer.ggml.token_type".into(),
                GValue::Array(
                    vocab
                        .iter()
                        .map(|(t, _)| {
                            GValue::I32(if TINY_SPECIAL_TOKENS.contains(&t.as_str()) {
                                3
                            } else {
                                1
                            })
                        })
                        .collect(),
                ),
            ),
            (
                "tokenizer.ggml.eos_token_id".into(),
                u(crate::TINY_IM_END_ID as usize),
            ),
            ("tokenizer.chat_template".into(), s(crate::CHATML_TEMPLATE)),
        ];
        let mut qtensors = Vec::new();
        for (name, var) in vm.data().lock().unwrap().iter() {
            let mut t = var.as_tensor().clone();
            if cfg.arch == Arch::Llama && name.contains("q_proj") {
                t = permute(&t, cfg.num_attention_heads);
            } else if cfg.arch == Arch::Llama && name.contains("k_proj") {
                t = permute(&t, cfg.num_key_value_heads);
            }
            let dtype = if t.rank() == 2 {
                matrices
            } else {
                GgmlDType::F32
            };
            let q = QTensor::quantize(&t, dtype).unwrap();
            qtensors.push((gguf_name(name).unwrap(), q));
        }
        let mut f = std::fs::File::create(path).unwrap();
        let meta_refs: Vec<(&str, &GValue)> = meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let qrefs: Vec<(&str, &QTensor)> = qtensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
        gguf_file::write(&mut f, &meta_refs, &qrefs).unwrap();
    }

    #[test]
    fn gguf_loads_with_unpermuted_qk_and_its_tokenizer() {
        for arch in [Arch::Llama, Arch::Qwen2] {
            let mut cfg = test_config(arch);
            cfg.vocab_size = TINY_VOCAB_SIZE;
            let (model, vm) = test_model(&cfg, 8);
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("tiny.gguf");
            write_gguf(&cfg, &vm, &path);

            let ck = Checkpoint::load(&path, &Device::Cpu, DType::F32).unwrap();
            let expected_cfg = Config {
                bos_token_id: None,
                eos_token_ids: vec![crate::TINY_IM_END_ID],
                ..cfg.clone()
            };
            assert_eq!(ck.config, expected_cfg);
            let input = Tensor::new(&[[3u32, 17, 42, 5, 96, 0, 33]], &Device::Cpu).unwrap();
            let a = ck.model().unwrap().forward(&input, None).unwrap();
            let b = model.forward(&input, None).unwrap();
            let diff = max_abs_diff(&a, &b);
            assert!(diff < 1e-5, "{arch}: GGUF logits differ by {diff}");
            let tok = tiny_tokenizer().unwrap();
            let text = "<|im_start|>user\nWhat is 12+7?<|im_end|>\n";
            assert_eq!(
                ck.tokenizer.encode(text, false).unwrap().get_ids(),
                tok.encode(text, false).unwrap().get_ids()
            );
            assert_eq!(ck.chat_template.as_deref(), Some(crate::CHATML_TEMPLATE));
            assert_eq!(ck.tokenizer_config["eos_token"], "<|im_end|>");
        }
    }

    /// Kept in Q8_0 blocks, the model gives the logits of its dequantized self up to the
    /// rounding of the activations the quantized matmul does, greedy decoding included.
    #[test]
    fn quantized_gguf_runs_in_its_blocks_with_the_dequantized_logits() {
        for arch in [Arch::Llama, Arch::Qwen2] {
            let mut cfg = test_config(arch);
            cfg.vocab_size = TINY_VOCAB_SIZE;
            let (_, vm) = test_model(&cfg, 8);
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("tiny-q8.gguf");
            write_gguf_as(&cfg, &vm, &path, GgmlDType::Q8_0);
            let dense = Checkpoint::load(&path, &Device::Cpu, DType::F32).unwrap();
            let quantized = Checkpoint::load_quantized(&path, &Device::Cpu, DType::F32).unwrap();
            assert!(quantized.varmap.all_vars().is_empty());
            assert_eq!(quantized.config, dense.config);
            let input = Tensor::new(&[[3u32, 17, 42, 5, 96, 0, 33]], &Device::Cpu).unwrap();
            let a = dense.model().unwrap().forward(&input, None).unwrap();
            let b = quantized.model().unwrap().forward(&input, None).unwrap();
            // Quantizing the activations to 8 bits in each matmul costs about 1% of a logit's
            // size per layer (the test weights are random per process: HashMap order).
            let (a, b) = (
                a.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                b.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            );
            let rms = |v: &mut dyn Iterator<Item = f32>| {
                let (sum, n) = v.fold((0f64, 0usize), |(s, n), x| {
                    (s + f64::from(x).powi(2), n + 1)
                });
                (sum / n as f64).sqrt()
            };
            let error = rms(&mut a.iter().zip(&b).map(|(x, y)| x - y));
            let size = rms(&mut a.iter().copied());
            assert!(
                error < 0.03 * size,
                "{arch}: quantized logits off by {error} (rms {size})"
            );
            // Wherever the dense model's choice is clear of the rounding, both choose the same.
            let worst = a
                .iter()
                .zip(&b)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max);
            let vocab = cfg.vocab_size;
            let mut clear = 0;
            for (position, (row_a, row_b)) in a.chunks(vocab).zip(b.chunks(vocab)).enumerate() {
                let mut sorted = row_a.to_vec();
                sorted.sort_by(|x, y| y.total_cmp(x));
                if sorted[0] - sorted[1] > 2.0 * worst {
                    clear += 1;
                    assert_eq!(argmax(row_a), argmax(row_b), "{arch}: position {position}");
                }
            }
            assert!(clear > 0, "{arch}: no position was clear of the rounding");
            eprintln!("{arch}: rms error {error:.4} of {size:.4}; {clear}/7 clear choices agree");
            let err = quantized
                .save(dir.path().join("out"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("inference only"), "{err}");
        }
    }

    #[test]
    fn gguf_missing_tensor_names_it_and_the_file() {
        let mut cfg = test_config(Arch::Llama);
        cfg.vocab_size = TINY_VOCAB_SIZE;
        cfg.num_hidden_layers = 3;
        let (_, vm) = test_model(&cfg, 8);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("short.gguf");
        // Metadata says 4 layers, the file holds 3.
        cfg.num_hidden_layers = 4;
        write_gguf(&cfg, &vm, &path);
        let err = Checkpoint::load(&path, &Device::Cpu, DType::F32).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("blk.3.") && msg.contains("short.gguf"),
            "{msg}"
        );
    }

    /// SmolLM2-135M-Instruct from `make model`; fails when it is absent.
    #[test]
    #[ignore = "needs SmolLM2-135M-Instruct from `make model`; run by `make test-real`"]
    fn smollm2_answers_a_sum_greedily() {
        let path = crate::smollm2_gguf();
        let ck = Checkpoint::load(&path, &Device::Cpu, DType::F32).unwrap();
        assert_eq!(ck.config.arch, Arch::Llama);
        let template = ck
            .chat_template
            .clone()
            .expect("SmolLM2 has a chat template");
        let mut env = minijinja::Environment::new();
        env.add_template("chat", &template).unwrap();
        let prompt = env
            .get_template("chat")
            .unwrap()
            .render(minijinja::context! {
                messages => vec![minijinja::context! { role => "user", content => "What is 2+3?" }],
                add_generation_prompt => true,
            })
            .unwrap();
        let ids = ck
            .tokenizer
            .encode(prompt.as_str(), false)
            .unwrap()
            .get_ids()
            .to_vec();
        let model = ck.model().unwrap();
        let opts = GenerateOptions {
            stop_token_ids: ck.eos_token_ids(),
            ..GenerateOptions::greedy(24)
        };
        let out = model.generate(&[ids], &opts).unwrap();
        let answer = ck.tokenizer.decode(&out[0].tokens, true).unwrap();
        eprintln!("SmolLM2: {prompt:?} -> {answer:?} ({:?})", out[0].finish);
        assert!(answer.contains('5'), "unexpected answer {answer:?}");
    }
}

//! Hugging Face checkpoint directories and GGUF files in, Hugging Face directories out.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::safetensors::SliceSafetensors;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use serde_json::Value;
use tokenizers::Tokenizer;

use crate::chat_template::{ChatTemplate, TemplateError};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::model::{Model, Param};

/// A loaded model: config, trainable weights, tokenizer and chat template. Cloning is cheap
/// and shares the weights (the `VarMap` is reference-counted).
#[derive(Clone)]
pub struct Checkpoint {
    pub config: Config,
    /// Every weight under its Hugging Face name, as trainable `Var`s in the requested dtype.
    pub varmap: VarMap,
    pub tokenizer: Tokenizer,
    /// `tokenizer_config.json` (synthesised from metadata for GGUF: `chat_template`,
    /// `bos_token`, `eos_token`); an empty object when the directory has none.
    pub tokenizer_config: Value,
    /// The Jinja chat template, if the checkpoint has one.
    pub chat_template: Option<String>,
    /// Where it was loaded from.
    pub source: PathBuf,
    pub device: Device,
    pub dtype: DType,
    /// A checkpoint loaded with its quantized blocks ([`Checkpoint::load_quantized`]), for
    /// inference only; its `varmap` is then empty.
    pub quantized: Option<QuantizedWeights>,
}

/// The weights of a GGUF checkpoint kept in their quantized blocks: the candle model over
/// them, and each block tensor under its Hugging Face name (for engines that multiply in the
/// blocks themselves). Cloning shares the blocks.
#[derive(Debug, Clone)]
pub struct QuantizedWeights {
    pub model: Model,
    pub params: Arc<HashMap<String, Param>>,
}

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint")
            .field("config", &self.config)
            .field("source", &self.source)
            .field("dtype", &self.dtype)
            .field("vocab", &self.tokenizer.get_vocab_size(true))
            .finish_non_exhaustive()
    }
}

impl Checkpoint {
    /// Load an HF directory (`config.json`, `model.safetensors` or a sharded
    /// `model.safetensors.index.json`, `tokenizer.json`, `tokenizer_config.json`) or a `.gguf`
    /// file (dequantised). Weights are converted to `dtype` on `device`.
    pub fn load(path: impl AsRef<Path>, device: &Device, dtype: DType) -> Result<Checkpoint> {
        let path = path.as_ref();
        if path.is_file() {
            return crate::gguf::load(path, device, dtype);
        }
        if !path.join("config.json").is_file() {
            return Err(Error::NotACheckpoint(path.to_path_buf()));
        }
        let config = Config::from_file(path.join("config.json"))?;
        let varmap = load_safetensors_dir(path, &config, device, dtype)?;
        let tok_path = path.join("tokenizer.json");
        let tokenizer = Tokenizer::from_file(&tok_path).map_err(|e| Error::Tokenizer {
            path: Some(tok_path.clone()),
            message: e.to_string(),
        })?;
        let tc_path = path.join("tokenizer_config.json");
        let tokenizer_config = if tc_path.is_file() {
            let text = std::fs::read_to_string(&tc_path).map_err(|e| Error::io(&tc_path, e))?;
            serde_json::from_str(&text).map_err(|source| Error::Json {
                path: tc_path.clone(),
                source,
            })?
        } else {
            Value::Object(Default::default())
        };
        // Newer transformers write the template to its own file.
        let jinja = path.join("chat_template.jinja");
        let chat_template = match template_from_config(&tokenizer_config) {
            Some(t) => Some(t),
            None if jinja.is_file() => {
                Some(std::fs::read_to_string(&jinja).map_err(|e| Error::io(&jinja, e))?)
            }
            None => None,
        };
        Ok(Checkpoint {
            config,
            varmap,
            tokenizer,
            tokenizer_config,
            chat_template,
            source: path.to_path_buf(),
            device: device.clone(),
            dtype,
            quantized: None,
        })
    }

    /// Load for inference: a `.gguf` file keeps its quantized blocks and multiplies in them
    /// (about a quarter of the memory of f32 at 4 bits, and faster on the CPU, where
    /// generation is bound by reading the weights); anything else is [`Checkpoint::load`] in
    /// `dtype`.
    pub fn load_quantized(
        path: impl AsRef<Path>,
        device: &Device,
        dtype: DType,
    ) -> Result<Checkpoint> {
        let path = path.as_ref();
        if path.is_file() {
            crate::gguf::load_quantized(path, device)
        } else {
            Self::load(path, device, dtype)
        }
    }

    /// Build the model over this checkpoint's `VarMap` (shares the weights: training the
    /// `VarMap` changes the model).
    pub fn model(&self) -> Result<Model> {
        if let Some(quantized) = &self.quantized {
            return Ok(quantized.model.clone());
        }
        Model::new(
            &self.config,
            VarBuilder::from_varmap(&self.varmap, self.dtype, &self.device),
        )
    }

    /// The weight named `name` (a Hugging Face name, see [`Model::tensor_specs`]): its
    /// quantized blocks when loaded with them, else the tensor in the checkpoint's dtype.
    pub fn param(&self, name: &str) -> Result<Param> {
        let found = match &self.quantized {
            Some(quantized) => quantized.params.get(name).cloned(),
            None => self
                .varmap
                .data()
                .lock()
                .map_err(|_| Error::InvalidInput("the weights' lock is poisoned".into()))?
                .get(name)
                .map(|var| Param::Dense(var.as_tensor().clone())),
        };
        found.ok_or_else(|| Error::MissingTensor {
            name: name.to_string(),
            file: self.source.clone(),
        })
    }

    /// Write this checkpoint as an HF directory (see [`save_checkpoint`]).
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<()> {
        if self.quantized.is_some() {
            return Err(Error::InvalidInput(format!(
                "{}: loaded with its quantized blocks, for inference only; load it with \
                 Checkpoint::load to save it",
                self.source.display()
            )));
        }
        save_checkpoint(
            dir.as_ref(),
            &self.config,
            &self.varmap,
            &self.tokenizer,
            &self.tokenizer_config,
        )
    }

    /// The checkpoint's chat template compiled with its special tokens, as transformers would
    /// render it; ChatML (with `is_fallback` set) when the checkpoint has none. Errors name the
    /// file the template came from.
    pub fn compile_chat_template(&self) -> std::result::Result<ChatTemplate, TemplateError> {
        let origin = if self.source.is_file() {
            self.source.clone()
        } else {
            self.source.join("tokenizer_config.json")
        };
        ChatTemplate::from_config_value(
            &self.tokenizer_config,
            self.chat_template.as_deref(),
            Some(origin),
        )
    }

    /// The ids generation should stop at: `config.eos_token_ids` plus the tokenizer config's
    /// `eos_token`, deduplicated.
    pub fn eos_token_ids(&self) -> Vec<u32> {
        let mut ids = self.config.eos_token_ids.clone();
        let eos = self.tokenizer_config.get("eos_token");
        let text = eos
            .and_then(Value::as_str)
            .or_else(|| eos.and_then(|v| v.get("content")).and_then(Value::as_str));
        if let Some(id) = text.and_then(|t| self.tokenizer.token_to_id(t)) {
            ids.push(id);
        }
        let mut seen = std::collections::HashSet::new();
        ids.retain(|id| seen.insert(*id));
        ids
    }
}

/// `chat_template` is a string, or a list of `{name, template}` (pick "default").
fn template_from_config(tc: &Value) -> Option<String> {
    match tc.get("chat_template")? {
        Value::String(s) => Some(s.clone()),
        Value::Array(list) => list
            .iter()
            .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
            .or_else(|| list.first())
            .and_then(|t| t.get("template"))
            .and_then(Value::as_str)
            .map(str::to_string),
        _ => None,
    }
}

/// Read every expected weight from `model.safetensors` or the shards an index names, check its
/// shape, convert it to `dtype` and wrap it in a `Var`.
fn load_safetensors_dir(
    dir: &Path,
    config: &Config,
    device: &Device,
    dtype: DType,
) -> Result<VarMap> {
    let single = dir.join("model.safetensors");
    let index = dir.join("model.safetensors.index.json");
    // name -> file, and the file to blame when a name is missing.
    let (files, weight_map, blame): (Vec<PathBuf>, HashMap<String, usize>, PathBuf) =
        if single.is_file() {
            (vec![single.clone()], HashMap::new(), single)
        } else if index.is_file() {
            let text = std::fs::read_to_string(&index).map_err(|e| Error::io(&index, e))?;
            let v: Value = serde_json::from_str(&text).map_err(|source| Error::Json {
                path: index.clone(),
                source,
            })?;
            let map = v
                .get("weight_map")
                .and_then(Value::as_object)
                .ok_or_else(|| Error::Safetensors {
                    path: index.clone(),
                    message: "no `weight_map` object".into(),
                })?;
            let mut files: Vec<PathBuf> = Vec::new();
            let mut weight_map = HashMap::new();
            for (name, file) in map {
                let file = file.as_str().ok_or_else(|| Error::Safetensors {
                    path: index.clone(),
                    message: format!("weight_map[{name:?}] is not a file name"),
                })?;
                let file = dir.join(file);
                let i = match files.iter().position(|f| f == &file) {
                    Some(i) => i,
                    None => {
                        files.push(file);
                        files.len() - 1
                    }
                };
                weight_map.insert(name.clone(), i);
            }
            (files, weight_map, index)
        } else {
            return Err(Error::NotACheckpoint(dir.to_path_buf()));
        };
    let buffers: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(f).map_err(|e| Error::io(f, e)))
        .collect::<Result<_>>()?;
    let views: Vec<SliceSafetensors> = buffers
        .iter()
        .zip(&files)
        .map(|(b, f)| {
            SliceSafetensors::new(b).map_err(|e| Error::Safetensors {
                path: f.clone(),
                message: e.to_string(),
            })
        })
        .collect::<Result<_>>()?;
    let mut tensors = Vec::new();
    for spec in Model::tensor_specs(config) {
        let i = if weight_map.is_empty() {
            0
        } else {
            *weight_map
                .get(&spec.name)
                .ok_or_else(|| Error::MissingTensor {
                    name: spec.name.clone(),
                    file: blame.clone(),
                })?
        };
        if views[i].get(&spec.name).is_err() {
            return Err(Error::MissingTensor {
                name: spec.name,
                file: files[i].clone(),
            });
        }
        let t = views[i]
            .load(&spec.name, device)
            .map_err(|e| Error::Safetensors {
                path: files[i].clone(),
                message: format!("tensor `{}`: {e}", spec.name),
            })?;
        if t.dims() != spec.shape.as_slice() {
            return Err(Error::ShapeMismatch {
                name: spec.name,
                file: files[i].clone(),
                expected: spec.shape,
                found: t.dims().to_vec(),
            });
        }
        tensors.push((spec.name, t.to_dtype(dtype)?));
    }
    varmap_from(tensors)
}

/// Wrap named tensors as trainable `Var`s.
pub(crate) fn varmap_from(tensors: Vec<(String, Tensor)>) -> Result<VarMap> {
    let varmap = VarMap::new();
    {
        let mut data = varmap.data().lock().expect("VarMap lock poisoned");
        for (name, t) in tensors {
            data.insert(name, Var::from_tensor(&t)?);
        }
    }
    Ok(varmap)
}

/// Write `config.json`, `model.safetensors` (every `VarMap` entry), `tokenizer.json` and
/// `tokenizer_config.json` into `dir` (created if needed). Files are written under a temporary
/// name and renamed, so a crash never leaves a half-written file under the final name.
pub fn save_checkpoint(
    dir: &Path,
    config: &Config,
    varmap: &VarMap,
    tokenizer: &Tokenizer,
    tokenizer_config: &Value,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    // safetensors orders tensors itself, so identical weights give identical bytes.
    let tensors: HashMap<String, Tensor> = {
        let data = varmap.data().lock().expect("VarMap lock poisoned");
        data.iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().detach()))
            .collect()
    };
    let dtype = tensors.values().next().map_or(DType::F32, Tensor::dtype);
    let mut cfg_json = config.to_hf_json();
    cfg_json["torch_dtype"] = Value::from(match dtype {
        DType::BF16 => "bfloat16",
        DType::F16 => "float16",
        _ => "float32",
    });
    write_atomic(dir, "config.json", |p| {
        std::fs::write(p, pretty(&cfg_json)).map_err(|e| Error::io(p, e))
    })?;
    write_atomic(dir, "model.safetensors", |p| {
        candle_core::safetensors::save(&tensors, p).map_err(|e| Error::Safetensors {
            path: p.to_path_buf(),
            message: e.to_string(),
        })
    })?;
    write_atomic(dir, "tokenizer.json", |p| {
        tokenizer.save(p, false).map_err(|e| Error::Tokenizer {
            path: Some(p.to_path_buf()),
            message: e.to_string(),
        })
    })?;
    write_atomic(dir, "tokenizer_config.json", |p| {
        std::fs::write(p, pretty(tokenizer_config)).map_err(|e| Error::io(p, e))
    })?;
    Ok(())
}

fn pretty(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).expect("JSON values always serialise");
    s.push('\n');
    s
}

fn write_atomic(dir: &Path, name: &str, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let dst = dir.join(name);
    write(&tmp)?;
    // Some writers create 0600 files; a checkpoint should be readable like any other file.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let perms = std::fs::Permissions::from_mode(0o644);
        std::fs::set_permissions(&tmp, perms).map_err(|e| Error::io(&tmp, e))?;
    }
    std::fs::rename(&tmp, &dst).map_err(|e| Error::io(&dst, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Arch;
    use crate::model::tests::{max_abs_diff, test_config, test_model};
    use crate::tiny::{TINY_IM_END_ID, chatml_tokenizer_config, tiny_tokenizer};

    fn logits(model: &Model) -> Tensor {
        let input = Tensor::new(&[[3u32, 17, 42, 5, 96, 0, 33]], &Device::Cpu).unwrap();
        model.forward(&input, None).unwrap()
    }

    #[test]
    fn save_then_load_gives_identical_logits() {
        for arch in [Arch::Qwen2, Arch::Llama] {
            let cfg = test_config(arch);
            let (model, vm) = test_model(&cfg, 17);
            let dir = tempfile::tempdir().unwrap();
            let tok = tiny_tokenizer().unwrap();
            save_checkpoint(dir.path(), &cfg, &vm, &tok, &chatml_tokenizer_config()).unwrap();
            let ck = Checkpoint::load(dir.path(), &Device::Cpu, DType::F32).unwrap();
            assert_eq!(ck.config, cfg);
            assert_eq!(
                max_abs_diff(&logits(&ck.model().unwrap()), &logits(&model)),
                0.0
            );
            assert!(
                ck.chat_template
                    .as_deref()
                    .unwrap()
                    .contains("<|im_start|>")
            );
            assert!(ck.eos_token_ids().contains(&TINY_IM_END_ID));
            let template = ck.compile_chat_template().unwrap();
            assert!(!template.is_fallback);
            assert_eq!(
                template.render(&[("user", "hi")], true, "t").unwrap(),
                "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
            );
            assert_eq!(
                ck.tokenizer.encode("12 eggs", false).unwrap().get_ids(),
                tok.encode("12 eggs", false).unwrap().get_ids()
            );
            // Saving the loaded checkpoint again is byte-identical.
            let again = tempfile::tempdir().unwrap();
            ck.save(again.path()).unwrap();
            let bytes = |d: &Path| std::fs::read(d.join("model.safetensors")).unwrap();
            assert!(
                bytes(dir.path()) == bytes(again.path()),
                "{arch}: re-save differs"
            );
        }
    }

    #[test]
    fn loads_sharded_half_precision_checkpoints_into_f32() {
        let cfg = test_config(Arch::Llama);
        let (_, vm) = test_model(&cfg, 4);
        let dir = tempfile::tempdir().unwrap();
        let tok = tiny_tokenizer().unwrap();
        save_checkpoint(dir.path(), &cfg, &vm, &tok, &serde_json::json!({})).unwrap();
        std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
        // Two shards: layer weights in bf16, everything else in f16, plus the index.
        let all: Vec<(String, Tensor)> = vm
            .data()
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
            .collect();
        let mut shards: [HashMap<String, Tensor>; 2] = Default::default();
        let mut weight_map = serde_json::Map::new();
        for (name, t) in &all {
            let (i, dt) = if name.contains("layers") {
                (0, DType::BF16)
            } else {
                (1, DType::F16)
            };
            shards[i].insert(name.clone(), t.to_dtype(dt).unwrap());
            weight_map.insert(
                name.clone(),
                format!("model-0000{}-of-00002.safetensors", i + 1).into(),
            );
        }
        for (i, s) in shards.iter().enumerate() {
            let p = dir
                .path()
                .join(format!("model-0000{}-of-00002.safetensors", i + 1));
            candle_core::safetensors::save(s, p).unwrap();
        }
        let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
        std::fs::write(
            dir.path().join("model.safetensors.index.json"),
            index.to_string(),
        )
        .unwrap();
        let ck = Checkpoint::load(dir.path(), &Device::Cpu, DType::F32).unwrap();
        // Expected: the original weights rounded through the same half types.
        let rounded = VarMap::new();
        for (name, t) in &all {
            let dt = if name.contains("layers") {
                DType::BF16
            } else {
                DType::F16
            };
            let r = t.to_dtype(dt).unwrap().to_dtype(DType::F32).unwrap();
            rounded
                .data()
                .lock()
                .unwrap()
                .insert(name.clone(), Var::from_tensor(&r).unwrap());
        }
        let expected = Model::new(
            &cfg,
            VarBuilder::from_varmap(&rounded, DType::F32, &Device::Cpu),
        )
        .unwrap();
        let m = ck.model().unwrap();
        assert_eq!(ck.varmap.all_vars()[0].dtype(), DType::F32);
        assert_eq!(max_abs_diff(&logits(&m), &logits(&expected)), 0.0);
        assert!(ck.chat_template.is_none());
    }

    #[test]
    fn bad_checkpoints_name_the_problem() {
        let cfg = test_config(Arch::Qwen2);
        let (_, vm) = test_model(&cfg, 2);
        let dir = tempfile::tempdir().unwrap();
        let tok = tiny_tokenizer().unwrap();
        save_checkpoint(dir.path(), &cfg, &vm, &tok, &serde_json::json!({})).unwrap();
        // Drop one tensor from the weights file.
        let file = dir.path().join("model.safetensors");
        let mut tensors = candle_core::safetensors::load(&file, &Device::Cpu).unwrap();
        tensors.remove("model.layers.1.mlp.up_proj.weight");
        candle_core::safetensors::save(&tensors, &file).unwrap();
        let err = Checkpoint::load(dir.path(), &Device::Cpu, DType::F32).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::MissingTensor { .. }), "{msg}");
        assert!(
            msg.contains("model.layers.1.mlp.up_proj.weight") && msg.contains("model.safetensors"),
            "{msg}"
        );
        // Truncated weights file.
        std::fs::write(&file, b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":").unwrap();
        let err = Checkpoint::load(dir.path(), &Device::Cpu, DType::F32).unwrap_err();
        assert!(matches!(err, Error::Safetensors { .. }), "{err}");
        // Not a checkpoint at all.
        let empty = tempfile::tempdir().unwrap();
        let err = Checkpoint::load(empty.path(), &Device::Cpu, DType::F32).unwrap_err();
        assert!(matches!(err, Error::NotACheckpoint(_)), "{err}");
        let junk = empty.path().join("junk.bin");
        std::fs::write(&junk, b"hello world").unwrap();
        let err = Checkpoint::load(&junk, &Device::Cpu, DType::F32).unwrap_err();
        assert!(matches!(err, Error::NotACheckpoint(_)), "{err}");
    }
}

//! Where a model runs and in which precision: `--device cpu|cuda[:N]|auto` and
//! `--dtype f32|bf16`, parsed once here for `train`, `eval` and the local teacher.

use std::fmt;
use std::str::FromStr;

use candle_core::{DType, Device};

use crate::error::{Error, Result};

/// A device as a user names it. `Auto` is the first CUDA GPU when this build has CUDA support
/// and one is present, else the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceSpec {
    #[default]
    Cpu,
    Cuda(usize),
    Auto,
}

impl FromStr for DeviceSpec {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cpu" => Ok(DeviceSpec::Cpu),
            "auto" => Ok(DeviceSpec::Auto),
            "cuda" | "gpu" => Ok(DeviceSpec::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DeviceSpec::Cuda)
                .ok_or_else(|| format!("unknown device `{s}`: expected cpu, cuda, cuda:N or auto")),
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
            DeviceSpec::Auto => f.write_str("auto"),
        }
    }
}

/// Whether this binary was built with candle's CUDA backend (`--features cuda`).
pub const CUDA_BUILD: bool = cfg!(feature = "cuda");

impl DeviceSpec {
    /// Opens the device. A CUDA device in a CPU-only build, or one the driver cannot open, is
    /// an error that says which and what to do, never a silent fall-back to the CPU.
    pub fn open(self) -> Result<Device> {
        match self {
            DeviceSpec::Cpu => Ok(Device::Cpu),
            DeviceSpec::Auto if CUDA_BUILD && candle_core::utils::cuda_is_available() => {
                DeviceSpec::Cuda(0).open()
            }
            DeviceSpec::Auto => Ok(Device::Cpu),
            DeviceSpec::Cuda(_) if !CUDA_BUILD => Err(Error::Device {
                device: self.to_string(),
                message: "this binary was built without CUDA support; build one with \
                          scripts/build-cuda.sh (cargo build --release -p distillery --features cuda)"
                    .into(),
            }),
            DeviceSpec::Cuda(n) => Device::new_cuda(n).map_err(|e| Error::Device {
                device: self.to_string(),
                message: e.to_string(),
            }),
        }
    }
}

/// The precision of weights and activations. `Bf16` trains with f32 master weights and f32
/// AdamW state (mixed precision), and saves checkpoints with `torch_dtype: bfloat16`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    F32,
    Bf16,
}

impl Precision {
    pub fn dtype(self) -> DType {
        match self {
            Precision::F32 => DType::F32,
            Precision::Bf16 => DType::BF16,
        }
    }
}

impl FromStr for Precision {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" | "float32" => Ok(Precision::F32),
            "bf16" | "bfloat16" => Ok(Precision::Bf16),
            _ => Err(format!("unknown dtype `{s}`: expected f32 or bf16")),
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse_and_print_back() {
        for (text, spec) in [
            ("cpu", DeviceSpec::Cpu),
            ("CUDA", DeviceSpec::Cuda(0)),
            ("cuda:3", DeviceSpec::Cuda(3)),
            ("auto", DeviceSpec::Auto),
        ] {
            assert_eq!(text.parse::<DeviceSpec>().unwrap(), spec);
        }
        assert_eq!(
            DeviceSpec::Cuda(2)
                .to_string()
                .parse::<DeviceSpec>()
                .unwrap(),
            DeviceSpec::Cuda(2)
        );
        for bad in ["tpu", "cuda:", "cuda:x", "cuda:-1", ""] {
            let err = bad.parse::<DeviceSpec>().unwrap_err();
            assert!(
                err.contains("expected cpu, cuda, cuda:N or auto"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn cpu_and_auto_open_without_a_gpu_and_cuda_says_how_to_get_one() {
        assert!(DeviceSpec::Cpu.open().unwrap().is_cpu());
        if !CUDA_BUILD {
            assert!(DeviceSpec::Auto.open().unwrap().is_cpu());
            let err = DeviceSpec::Cuda(0).open().unwrap_err().to_string();
            assert!(
                err.contains("cuda:0") && err.contains("scripts/build-cuda.sh"),
                "{err}"
            );
        }
    }

    #[test]
    fn precisions_parse() {
        assert_eq!("bf16".parse::<Precision>().unwrap().dtype(), DType::BF16);
        assert_eq!("F32".parse::<Precision>().unwrap(), Precision::F32);
        assert!(
            "fp8"
                .parse::<Precision>()
                .unwrap_err()
                .contains("f32 or bf16")
        );
    }
}

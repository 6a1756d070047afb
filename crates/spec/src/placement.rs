//! Where a local model runs and in which precision, as a user names them
//! (`--device cpu|cuda[:N]|auto`, `--dtype f32|bf16`, `[teacher.local] device` and `dtype`).
//! `distillery-model` opens them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A device as a user names it. `Auto` is the first CUDA GPU when the binary has CUDA support
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

    fn from_str(s: &str) -> Result<Self, String> {
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

/// The precision of weights and activations. `Bf16` trains with f32 master weights and f32
/// AdamW state (mixed precision), and saves checkpoints with `torch_dtype: bfloat16`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    #[default]
    F32,
    Bf16,
}

impl FromStr for Precision {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
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

/// Both serialise as the names a user writes.
macro_rules! serde_as_text {
    ($($ty:ty),*) => {$(
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
            }
        }
    )*};
}
serde_as_text!(DeviceSpec, Precision);

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
            assert_eq!(spec.to_string().parse::<DeviceSpec>().unwrap(), spec);
        }
        for bad in ["tpu", "cuda:", "cuda:x", "cuda:-1", ""] {
            let err = bad.parse::<DeviceSpec>().unwrap_err();
            assert!(
                err.contains("expected cpu, cuda, cuda:N or auto"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn precisions_parse_and_round_trip_through_serde() {
        assert_eq!("BF16".parse::<Precision>().unwrap(), Precision::Bf16);
        assert!(
            "fp8"
                .parse::<Precision>()
                .unwrap_err()
                .contains("f32 or bf16")
        );
        let json = serde_json::to_string(&Precision::Bf16).unwrap();
        assert_eq!(json, "\"bf16\"");
        assert_eq!(
            serde_json::from_str::<Precision>(&json).unwrap(),
            Precision::Bf16
        );
        assert!(serde_json::from_str::<DeviceSpec>("\"tpu\"").is_err());
    }
}

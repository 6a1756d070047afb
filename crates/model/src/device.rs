//! Opening the devices and precisions a user names (`distillery_spec::{DeviceSpec,
//! Precision}`) as candle devices and dtypes.

use candle_core::{DType, Device};
use distillery_spec::{DeviceSpec, Precision};

use crate::error::{Error, Result};

/// Whether this binary was built with candle's CUDA backend (`--features cuda`).
pub const CUDA_BUILD: bool = cfg!(feature = "cuda");

/// Opens a [`DeviceSpec`] as a candle device.
pub trait OpenDevice {
    /// A CUDA device in a CPU-only build, or one the driver cannot open, is an error that says
    /// which and what to do, never a silent fall-back to the CPU.
    fn open(self) -> Result<Device>;
}

impl OpenDevice for DeviceSpec {
    fn open(self) -> Result<Device> {
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

/// The candle dtype of a [`Precision`].
pub trait PrecisionDType {
    fn dtype(self) -> DType;
}

impl PrecisionDType for Precision {
    fn dtype(self) -> DType {
        match self {
            Precision::F32 => DType::F32,
            Precision::Bf16 => DType::BF16,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_and_auto_open_without_a_gpu_and_cuda_says_how_to_get_one() {
        assert!(DeviceSpec::Cpu.open().unwrap().is_cpu());
        assert_eq!(Precision::Bf16.dtype(), DType::BF16);
        if !CUDA_BUILD {
            assert!(DeviceSpec::Auto.open().unwrap().is_cpu());
            let err = DeviceSpec::Cuda(0).open().unwrap_err().to_string();
            assert!(
                err.contains("cuda:0") && err.contains("scripts/build-cuda.sh"),
                "{err}"
            );
        }
    }
}

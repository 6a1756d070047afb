#!/usr/bin/env bash
# Build `distillery` with candle's CUDA backend on a machine with no GPU and no system CUDA.
#
# nvcc, the CUDA headers and the libraries to link against come from NVIDIA's PyPI wheels,
# pinned to CUDA 13.0: PTX from a newer nvcc may not load on a 13.0 driver. The driver library
# (libcuda.so) is not on PyPI, so the script compiles a link-time stub of the symbols cudarc
# names; at run time the real driver's libcuda.so.1 is used.
#
# Usage: scripts/build-cuda.sh [OUT]   (default: target/cuda/distillery, plus OUT.zst)
# Environment: CUDA_COMPUTE_CAP (default 90: Hopper, H100/H200), CUDA_TOOLKIT (default
# target/cuda-toolkit, where the wheels are installed), CARGO_TARGET_DIR (default target/cuda-build).
#
# To run the binary elsewhere, the dynamic loader must find libcublas.so.13, libcublasLt.so.13,
# libcurand.so.10, libnvrtc.so.13 and libcudart.so.13: PyTorch's NVIDIA packages hold them
# (scripts/gpu-distill.sh sets LD_LIBRARY_PATH from them).
set -euo pipefail
cd "$(dirname "$0")/.."

out="${1:-target/cuda/distillery}"
toolkit="${CUDA_TOOLKIT:-$PWD/target/cuda-toolkit}"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target/cuda-build}"

wheels=(
  nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-cuda-cccl==13.0.85
  nvidia-cuda-runtime==13.0.96 nvidia-cublas==13.0.2.14 nvidia-curand==10.4.0.35
  nvidia-cuda-nvrtc==13.0.88 nvidia-nvvm==13.0.88
)
cuda_home="$toolkit/nvidia/cu13"
if [[ ! -x "$cuda_home/bin/nvcc" ]]; then
  echo "installing the CUDA 13.0 toolchain from PyPI into $toolkit"
  python3 -m pip install --quiet --disable-pip-version-check --target "$toolkit" "${wheels[@]}"
fi

# The wheels lay the toolkit out flat (include/, lib/); nvcc's profile and cudarc's build
# script look for targets/x86_64-linux/include and lib64, and the linker for unversioned names.
mkdir -p "$cuda_home/targets/x86_64-linux" "$cuda_home/lib64/stubs"
ln -sfn ../../include "$cuda_home/targets/x86_64-linux/include"
ln -sfn ../../lib "$cuda_home/targets/x86_64-linux/lib"
for lib in cublas cublasLt cudart nvrtc curand; do
  versioned="$(cd "$cuda_home/lib" && ls "lib$lib.so."* | grep -v alt | head -n 1)"
  ln -sfn "../lib/$versioned" "$cuda_home/lib64/lib$lib.so"
done
stub="$cuda_home/lib64/stubs/libcuda.so"
if [[ ! -f "$stub" ]]; then
  registry_cudarc="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.* 2>/dev/null | tail -n 1)"
  if [[ -z "$registry_cudarc" ]]; then
    cargo fetch --quiet
    registry_cudarc="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.* | tail -n 1)"
  fi
  # Every driver entry point cudarc declares, as an empty function: enough for the linker,
  # which records only libcuda.so.1 as needed.
  grep -ohE '\bfn cu[A-Za-z0-9_]+\(' "$registry_cudarc/src/driver/sys/mod.rs" \
    | sed -E 's/fn (cu[A-Za-z0-9_]+)\(/void \1(void) {}/' | sort -u > "$stub.c"
  gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$stub" "$stub.c"
fi

export CUDA_HOME="$cuda_home" PATH="$cuda_home/bin:$PATH"
export LIBRARY_PATH="$cuda_home/lib64:$cuda_home/lib64/stubs${LIBRARY_PATH:+:$LIBRARY_PATH}"
nvcc --version | tail -n 2
cargo build --release --locked -p distillery --features cuda

mkdir -p "$(dirname "$out")"
cp "$CARGO_TARGET_DIR/release/distillery" "$out"
strip "$out"
zstd -q -f -19 -T0 "$out" -o "$out.zst"
echo "built $out ($(du -h "$out" | cut -f1); $(du -h "$out.zst" | cut -f1) compressed)"
echo "it needs: $(readelf -d "$out" | grep -oP 'NEEDED.*\[\K[^]]+' | tr '\n' ' ')"

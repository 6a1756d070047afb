#!/usr/bin/env bash
# Stage the GPU recipe for a lent GPU machine that has no Rust toolchain, no network and takes at
# most 64 MiB per call (the `device` tool of our development workplace). The CUDA binary (xz,
# ~10 MB) and the 94 MB SmolLM2 GGUF do not fit in one call, so they go in two:
#
#   scripts/device/stage.sh                      # here: build-cuda output + model -> .gpu/
#   call 1: carry .gpu/distillery.xz .gpu/model.a .gpu/smoke.sh;  run: bash .gpu/smoke.sh
#   call 2: carry .gpu/model.b .gpu/recipe.sh;                    run: bash .gpu/recipe.sh
#
# Call 1 stages its files in /tmp/stash and smoke-tests CUDA training and generation on a tiny
# model; call 2 (within the machine's warm window) reassembles the model and runs
# scripts/gpu-distill.sh, putting summary.json and logs.tgz in $OUT.
set -euo pipefail
cd "$(dirname "$0")/../.."
model=models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
[[ -x target/cuda/distillery ]] || scripts/build-cuda.sh
[[ -f $model ]] || make model
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
mkdir -p .gpu
xz -9 -T0 -c target/cuda/distillery > .gpu/distillery.xz
head -c 46000000 "$model" > .gpu/model.a
tail -c +46000001 "$model" > .gpu/model.b
sed "s/^SHA=.*/SHA=$(sha256sum "$model" | cut -d' ' -f1)/" scripts/device/recipe.sh > .gpu/recipe.sh
cp scripts/device/smoke.sh .gpu/
ls -l .gpu

#!/usr/bin/env bash
# Device call 2 (see stage.sh): reassemble the model and run scripts/gpu-distill.sh.
set -u
S=/tmp/stash
[[ -f $S/model.a && -x $S/distillery ]] || { echo "stash missing: this is a fresh machine"; exit 3; }
[[ -f $S/smoke-ok ]] || { echo "the smoke test of call 1 failed: not running the recipe"; exit 3; }
mkdir -p models/smollm2
cat $S/model.a .gpu/model.b > models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
echo "$SHA  models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" | sha256sum -c || exit 4
DISTILLERY=$S/distillery WORK=$S/gd EPOCHS=${EPOCHS:-1} SAMPLED_LIMIT=${SAMPLED_LIMIT:-400} MAX_TOKENS=${MAX_TOKENS:-384} TORCH_STEPS=60 timeout 530 scripts/gpu-distill.sh; rc=$?
cp $S/gd/summary.json $OUT/ 2>/dev/null
tar czf $OUT/logs.tgz -C $S/gd --exclude='*.safetensors' --exclude=run --exclude='*.parquet' . 2>/dev/null
exit $rc

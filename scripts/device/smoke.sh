#!/usr/bin/env bash
# Device call 1 (see stage.sh): stage the binary and the first part of the model in /tmp/stash,
# smoke-test CUDA training (bf16 and f32) and generation on a tiny model.
set -u
S=/tmp/stash; mkdir -p $S
cp .gpu/distillery.xz .gpu/model.a $S/
python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' $S/distillery.xz $S/distillery
chmod +x $S/distillery
nvidia-smi -L
export LD_LIBRARY_PATH="$(python3 -c 'import glob, os, nvidia; print(":".join(sorted({os.path.dirname(p) for d in nvidia.__path__ for p in glob.glob(d + "/**/lib*.so*", recursive=True)})))')"
ldd $S/distillery | grep -E "cuda|cublas|curand|not found"
B=$S/distillery
python3 -c "import torch, transformers, pyarrow; print('torch', torch.__version__, 'transformers', transformers.__version__)"
$B init-model --tiny $S/tiny --layers 2 --hidden 256 --heads 4 | tail -1
$B run pipelines/gsm8k-train-mock.toml --run-dir $S/run --plain | tail -2
set -o pipefail
time $B train --model $S/tiny --data $S/run --out $S/tstu --device cuda --dtype bf16 --steps 20 --batch-size 16 --max-len 512 --log-every 5 --checkpoint-every 10 --eval-fraction 0.01 2>&1 | tail -6 && touch $S/train-ok
time $B train --model $S/tiny --data $S/run --out $S/tstu32 --device cuda --dtype f32 --steps 6 --batch-size 16 --max-len 512 --log-every 3 --eval-fraction 0 2>&1 | tail -3
time $B eval $S/tstu --benchmark gsm8k --limit 128 --device cuda --dtype bf16 --max-tokens 128 --samples 2 --batch-size 256 --out $S/tev --plain 2>&1 | tail -12 && [[ -f $S/train-ok ]] && touch $S/smoke-ok
time $B eval $S/tstu --benchmark gsm8k --limit 128 --device cuda --dtype bf16 --max-tokens 128 --batch-size 256 --out $S/tev0 --plain 2>&1 | head -2
ls -la $S

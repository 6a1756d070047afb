#!/usr/bin/env bash
# The distillation loop on one CUDA GPU, end to end, with its figures:
#   1. GSM8K train's 7,473 problems through the mock teacher, which replays their reference
#      solutions as R1-style traces (pipelines/gsm8k-train-mock.toml; a real teacher's run
#      directory can be given with DATA=...);
#   2. GSM8K test pass@1 of the student before training: greedy, and the mean over 4 samples
#      at temperature 0.6 / top-p 0.95;
#   3. `distillery train --device cuda --dtype bf16` on the accepted traces;
#   4. the same evaluation after training;
#   5. the PyTorch reference loop (scripts/torch_train_ref.py) on the same student, data, row
#      length and batch, on the same GPU, for tokens/s side by side;
#   6. a table of it all (also in $WORK/summary.json).
#
# It runs from what is built elsewhere: a CUDA build of distillery (scripts/build-cuda.sh) and
# the SmolLM2-135M-Instruct GGUF (make model). The CUDA libraries are taken from PyTorch's
# NVIDIA packages when python3 has them. Needs python3 with torch, transformers and pyarrow
# for step 5 only (skipped, and said so, without them).
#
# Environment (defaults in brackets): DISTILLERY [target/cuda/distillery, or its .xz beside
# it], MODEL [models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf], WORK [target/gpu-distill],
# DATA [a fresh mock run], EPOCHS [2], BATCH [16], MAX_LEN [512], LR [1e-4],
# EVAL_BATCH [512], MAX_TOKENS [400], GREEDY_LIMIT [all 1,319], SAMPLED_LIMIT [500], DEVICE
# [cuda; cpu runs the same steps without a GPU, to try the recipe on a tiny model].
set -euo pipefail
cd "$(dirname "$0")/.."

bin="${DISTILLERY:-target/cuda/distillery}"
model="${MODEL:-models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf}"
work="${WORK:-target/gpu-distill}"
epochs="${EPOCHS:-2}" batch="${BATCH:-16}" max_len="${MAX_LEN:-512}" lr="${LR:-1e-4}"
eval_batch="${EVAL_BATCH:-512}" max_tokens="${MAX_TOKENS:-400}"
greedy_limit="${GREEDY_LIMIT:-}" sampled_limit="${SAMPLED_LIMIT:-500}" device="${DEVICE:-cuda}"
gpu() { [[ "$device" != cpu ]]; }

if [[ ! -x "$bin" && -f "$bin.xz" ]]; then
  python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
    "$bin.xz" "$bin"
  chmod +x "$bin"
fi
[[ -x "$bin" ]] || { echo "error: no distillery binary at $bin (build one with scripts/build-cuda.sh)" >&2; exit 2; }
[[ -e "$model" ]] || { echo "error: no student model at $model (make model)" >&2; exit 2; }
gpu && ! command -v nvidia-smi >/dev/null && { echo "error: nvidia-smi not found: this recipe needs an NVIDIA GPU" >&2; exit 2; }

# cuBLAS, cuRAND, NVRTC and the runtime from PyTorch's NVIDIA wheels, if present.
nvidia_libs="$(python3 - 2>/dev/null <<'PY' || true
import glob, os
try:
    import nvidia
except ImportError:
    raise SystemExit
dirs = {os.path.dirname(p) for d in nvidia.__path__ for p in glob.glob(d + "/**/lib*.so*", recursive=True)}
print(":".join(sorted(dirs)))
PY
)"
export LD_LIBRARY_PATH="${nvidia_libs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if ldd "$bin" | grep -q "not found"; then
  echo "error: $bin cannot find these libraries:" >&2
  ldd "$bin" | grep "not found" >&2
  exit 2
fi

mkdir -p "$work"
if gpu; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$work/gpu.txt"
else
  echo cpu > "$work/gpu.txt"
fi

# Runs a step while sampling the GPU's memory in use every 200 ms; its peak (MiB) goes to
# $work/<name>.peak_mib. nvidia-smi sees what every process holds, so steps run one at a time.
step() {
  local name="$1"
  shift
  echo "== $name: $*"
  : > "$work/$name.mem"
  if gpu; then
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 > "$work/$name.mem" &
  else
    sleep infinity &
  fi
  local sampler=$!
  local started=$SECONDS
  "$@" > "$work/$name.log" 2>&1 || { kill "$sampler"; tail -n 30 "$work/$name.log" >&2; echo "error: $name failed (log: $work/$name.log)" >&2; exit 1; }
  kill "$sampler"
  sort -n "$work/$name.mem" | tail -n 1 > "$work/$name.peak_mib"
  echo "   $(( SECONDS - started )) s, peak GPU memory $(cat "$work/$name.peak_mib") MiB; $(grep -m 1 '^pass@1' "$work/$name.log" || tail -n 1 "$work/$name.log")"
}

data="${DATA:-$work/run}"
if [[ -z "${DATA:-}" ]]; then
  step data "$bin" run pipelines/gsm8k-train-mock.toml --run-dir "$data" --plain
fi

evaluate() {
  local when="$1" student="$2"
  step "eval-$when-greedy" "$bin" eval "$student" --benchmark gsm8k --device "$device" --dtype bf16 \
    --batch-size "$eval_batch" --max-tokens "$max_tokens" --temperature 0 \
    ${greedy_limit:+--limit "$greedy_limit"} --out "$work/eval-$when-greedy" --plain
  step "eval-$when-sampled" "$bin" eval "$student" --benchmark gsm8k --device "$device" --dtype bf16 \
    --batch-size "$eval_batch" --max-tokens "$max_tokens" --samples 4 --temperature 0.6 \
    --top-p 0.95 ${sampled_limit:+--limit "$sampled_limit"} --out "$work/eval-$when-sampled" --plain
}

evaluate before "$model"
step train "$bin" train --model "$model" --data "$data" --out "$work/student" --device "$device" \
  --dtype bf16 --epochs "$epochs" --batch-size "$batch" --max-len "$max_len" --lr "$lr" \
  --warmup 20 --checkpoint-every 0 --eval-fraction 0.02 --log-every 25
evaluate after "$work/student"

if python3 -c 'import torch, transformers, pyarrow' 2>/dev/null; then
  step torch python3 scripts/torch_train_ref.py --model "$work/student" --data "$data" \
    --max-len "$max_len" --batch-size "$batch" --steps "${TORCH_STEPS:-100}" --lr "$lr" --dtype bf16 \
    --device "${device%%:*}"
else
  echo "== torch: skipped (python3 has no PyTorch, transformers or pyarrow)"
fi

python3 - "$work" <<'PY'
import json, os, sys
work = sys.argv[1]
def load(path):
    try:
        with open(os.path.join(work, path)) as f:
            return json.load(f)
    except FileNotFoundError:
        return None
def peak(name):
    try:
        return int(open(os.path.join(work, name + ".peak_mib")).read().strip())
    except (FileNotFoundError, ValueError):
        return None
out = {"gpu": open(os.path.join(work, "gpu.txt")).read().strip()}
for when in ("before", "after"):
    for kind in ("greedy", "sampled"):
        r = load(f"eval-{when}-{kind}/report.json")
        if r:
            out[f"{when}_{kind}"] = {k: r.get(k) for k in ("pass_at_1", "pass_at_1_stderr", "correct_samples", "total_samples", "problems", "elapsed_secs")}
train = load("student/summary.json")
if train:
    out["train"] = {k: train.get(k) for k in ("steps", "tokens", "seconds", "tokens_per_s", "first_loss", "last_loss", "eval_loss")}
    out["train"]["peak_gpu_mib"] = peak("train")
torch_log = os.path.join(work, "torch.log")
if os.path.exists(torch_log):
    lines = [l for l in open(torch_log) if l.startswith("{")]
    if lines:
        out["torch"] = json.loads(lines[-1])
        out["torch"]["peak_gpu_mib_nvidia_smi"] = peak("torch")
if "train" in out and "torch" in out:
    out["tokens_per_s_vs_pytorch"] = out["train"]["tokens_per_s"] / out["torch"]["tokens_per_s"]
json.dump(out, open(os.path.join(work, "summary.json"), "w"), indent=2)
print(json.dumps(out, indent=2))
PY

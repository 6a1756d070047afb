#!/usr/bin/env bash
# The offline demo behind `make demo`: the whole loop, on two CPU cores, in minutes.
#
#   1. GSM8K against the built-in mock teacher with faults on: run, Ctrl-C, status, resume,
#      export, inspect.
#   2. Synthetic two-digit additions (datasets/arith) against the mock teacher: run, export.
#   3. A few dozen code problems (datasets/pycode, MBPP layout) against the mock teacher writing
#      Python with injected bugs, checked in the sandbox (needs python3, as the sandbox does).
#   4. A tiny random student: pass@1 on the 200 held-out additions, SFT on the accepted traces,
#      pass@1 again.
#   5. A summary: rows accepted and rejected by reason, teacher tokens/s, the loss curve,
#      pass@1 before and after.
#
# Usage: scripts/demo.sh PATH/TO/distillery
#   DEMO_DIR=DIR  where everything goes (default: target/demo; cleared first)
#   DEMO_REAL=1   the same loop with SmolLM2-135M-Instruct from `make model` as the local
#                 teacher and as the student, on a few problems
# Needs bash, sed and awk, and python3 for the code sandbox; no network.
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 PATH/TO/distillery" >&2
  exit 2
fi
if [[ ! -x "$1" || -d "$1" ]]; then
  echo "demo: $1 is not an executable (build it first: make build)" >&2
  exit 2
fi
bin="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

real="${DEMO_REAL:-0}"
smollm2="models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
if [[ "$real" == 1 && ! -f "$smollm2" ]]; then
  echo "demo: DEMO_REAL=1 needs $smollm2; run \`make model\` first (downloads 100 MB)" >&2
  exit 1
fi

demo="${DEMO_DIR:-target/demo}"
case "$demo" in
  "" | / | . | .. | "$HOME" | "$root") echo "demo: refusing DEMO_DIR=$demo" >&2; exit 2 ;;
esac
rm -rf "$demo"
mkdir -p "$demo"
demo="$(cd "$demo" && pwd)"

# async-openai logs each malformed stream chunk at ERROR; the mock injects those on purpose and
# the pipeline retries them (counted as `retries`), so they would only clutter the output.
export RUST_LOG="${RUST_LOG:-info,async_openai=off}"

if [[ -t 1 ]]; then
  bold=$'\033[1m' red=$'\033[31m' off=$'\033[0m'
else
  bold="" red="" off=""
fi

current=""
step_start=$SECONDS
declare -a timing_names=() timing_secs=()
step() {
  if [[ -n "$current" ]]; then
    timing_names+=("$current")
    timing_secs+=($((SECONDS - step_start)))
  fi
  current="$1"
  step_start=$SECONDS
  printf '\n%s==> %s%s\n' "$bold" "$1" "$off"
}
trap 'rc=$?; printf "\n%sdemo FAILED (exit %s) in step: %s (scripts/demo.sh line %s); files so far in %s%s\n" \
  "$red" "$rc" "$current" "$LINENO" "$demo" "$off" >&2' ERR
run() {
  printf '%s$ distillery %s%s\n' "$bold" "$*" "$off"
  "$bin" "$@"
}
mmss() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

# The first `"KEY": NUMBER` in FILE: pretty-printed JSON (manifest.json, report.json,
# summary.json) and one-object lines alike.
json_num() {
  sed -n "s/.*\"$2\": *\(-\{0,1\}[0-9][0-9.eE+-]*\).*/\1/p" "$1" | head -n 1
}
# `reason count` per line, from a manifest's rejected_by_reason object.
reasons() {
  awk '/"rejected_by_reason": *\{/ { on = 1; next }
       on && /\}/ { exit }
       on { gsub(/[",:]/, " "); print $1, $2 }' "$1"
}

# A short code run: the first $2 problems of pipelines/pycode-mock.toml (datasets/pycode,
# generated, so the benchmark, HumanEval, stays unseen) into run directory $1.
code_run() {
  local run_dir="$1" limit="$2" def="$demo/pycode-mock.toml"
  sed -e "s|^path = \"../datasets/pycode/train.jsonl\".*|path = \"$root/datasets/pycode/train.jsonl\"\nlimit = $limit|" \
    pipelines/pycode-mock.toml >"$def"
  grep -q "^limit = $limit" "$def" || { echo "demo: cannot set the limit in $def" >&2; return 1; }
  run run "$def" --run-dir "$run_dir"
}

# Interrupt `distillery run` with Ctrl-C (SIGINT) after $1 seconds; 130 is its exit status for
# an interrupted run.
run_interrupted() {
  local after="$1"
  shift
  printf '%s$ distillery %s   # Ctrl-C after %s s%s\n' "$bold" "$*" "$after" "$off"
  "$bin" "$@" &
  local pid=$! rc=0
  sleep "$after"
  kill -INT "$pid" 2>/dev/null || true
  wait "$pid" || rc=$?
  case "$rc" in
    130) echo "(interrupted: exit status 130; every finished generation is in the WAL)" ;;
    0) echo "(it finished before the interrupt; resume will find nothing left to do)" ;;
    *) echo "demo: distillery run exited with status $rc" >&2; return "$rc" ;;
  esac
}

if [[ "$real" != 1 ]]; then
  # The student and its training: 2 layers, 0.59M parameters, larger initial weights than the
  # default (copying digits out of the question is learned much sooner), 4 rows per step.
  # How these were chosen: datasets/arith/SOURCE.md.
  student_args=(--layers 2 --hidden 128 --intermediate 512 --heads 8 --kv-heads 4
    --init-std 0.06 --seed 0)
  sft_steps=1500
  train_args=(--batch-size 4 --lr 3e-3 --warmup 30 --max-len 288
    --eval-fraction 0.02 --checkpoint-every 0 --log-every 50)
  eval_args=(--benchmark datasets/arith/test.jsonl --max-tokens 256 --batch-size 50 --plain)
  # A model this small gains nothing from a second thread (measured: same speed on an idle
  # 2-core machine, half the speed when the other core is busy).
  export RAYON_NUM_THREADS="${RAYON_NUM_THREADS:-1}"

  step "1/7 GSM8K against the mock teacher, faults on (429, 500, resets, stalls, bad JSON)"
  gsm="$demo/runs/gsm8k-mock"
  run_interrupted 10 run pipelines/gsm8k-mock.toml --run-dir "$gsm" --grace-secs 5
  run status "$gsm"

  step "2/7 Resume: only the prompts that were not done are asked again"
  run resume "$gsm"

  step "3/7 Export the accepted GSM8K traces as a Hugging Face dataset, and inspect it"
  run export "$gsm" --out "$demo/datasets/gsm8k-r1" --split train=0.95,test=0.05
  run inspect "$demo/datasets/gsm8k-r1"

  step "4/7 Two-digit additions against the mock teacher, its top-8 log-probabilities captured, exported"
  # The student's tokenizer (every `init-model --tiny` has the same one) is the mock's, so the
  # captured log-probabilities are over the student's vocabulary: `[teacher] top_logprobs = 8`.
  run init-model --tiny "$demo/models/student-init" "${student_args[@]}" | tee "$demo/init-model.txt"
  arith="$demo/runs/arith-mock"
  arith_def="$demo/arith-mock.toml"
  sed -e "s|^path = \"../datasets/arith/train.jsonl\"|path = \"$root/datasets/arith/train.jsonl\"|" \
    -e "s|^retries = 8|retries = 8\ntop_logprobs = 8|" \
    -e "s|^seed = 11|seed = 11\ntokenizer = \"$demo/models/student-init/tokenizer.json\"|" \
    pipelines/arith-mock.toml >"$arith_def"
  run run "$arith_def" --run-dir "$arith"
  run inspect "$arith"
  run export "$arith" --out "$demo/datasets/arith-r1"

  step "5/7 40 code problems against the mock teacher writing Python with bugs, run in the sandbox"
  code="$demo/runs/pycode-mock"
  code_run "$code" 40

  step "6/7 The tiny random student, evaluated on the 200 held-out additions"
  student="$demo/models/student"
  run eval "$demo/models/student-init" "${eval_args[@]}" --out "$demo/evals/before"

  step "7/7 Train the student on the accepted traces (SFT, then KD from the captured log-probabilities), evaluate both"
  run train --model "$demo/models/student-init" --data "$demo/datasets/arith-r1" \
    --out "$student" --steps "$sft_steps" "${train_args[@]}"
  run eval "$student" "${eval_args[@]}" --out "$demo/evals/after"
  # The same traces and settings with the teacher's top-8 distribution at every position:
  # alpha·T²·KL + (1 − alpha)·CE, no second teacher pass. Half the SFT run's steps by default
  # (each KD step costs about 8% more than an SFT step), to keep the demo's extra time to about
  # 3½ minutes on 2 cores; DEMO_KD_STEPS=1500 compares them step for step.
  kd_student="$demo/models/student-kd"
  kd_steps="${DEMO_KD_STEPS:-750}"
  run train --model "$demo/models/student-init" --data "$demo/datasets/arith-r1" \
    --out "$kd_student" --steps "$kd_steps" "${train_args[@]}" \
    --kd-from-logprobs --kd-alpha 0.5 --kd-temperature 2:1
  run eval "$kd_student" "${eval_args[@]}" --out "$demo/evals/after-kd"

  runs=("$gsm" "$arith" "$code")
  run_titles=("GSM8K" "additions" "code")
  bench="200 held-out additions"
else
  # SmolLM2-135M-Instruct (Llama, 4-bit GGUF): teacher on a few problems, then student.
  student_args=()
  train_args=(--steps 20 --batch-size 2 --lr 2e-5 --warmup 2 --max-len 320 --eval-fraction 0
    --checkpoint-every 0 --log-every 2)
  eval_args=(--benchmark datasets/arith/test.jsonl --limit 10 --max-tokens 192 --batch-size 10
    --plain)
  local_def="$demo/arith-local.toml"
  cat >"$local_def" <<EOF
# Written by scripts/demo.sh (DEMO_REAL=1): SmolLM2 as the local teacher on a few additions.
name = "arith-local"

[source]
path = "$root/datasets/arith/train.jsonl"
prompt_field = "question"
answer_field = "answer"
answer_extract = "gsm8k"
limit = 8

[teacher]
kind = "local"
max_tokens = 256
temperature = 0.6
top_p = 0.95
n = 2

[teacher.local]
checkpoint = "$root/$smollm2"
batch_size = 8
seed = 0

[verify]
math = true
format = false              # SmolLM2 is no reasoning model: it writes no <think> block
keep = "all_correct"
EOF

  step "1/5 SmolLM2 as the local teacher on 8 additions (2 samples each)"
  teach="$demo/runs/arith-local"
  run run "$local_def" --run-dir "$teach"
  # SmolLM2 is no reasoning model and gets few of these right: export every row, rejected ones
  # too, with their verdicts, to see what it wrote.
  run export "$teach" --all --out "$demo/datasets/arith-local"
  run inspect "$demo/datasets/arith-local"

  step "2/5 The additions against the mock teacher: the traces SmolLM2 is fine-tuned on"
  arith="$demo/runs/arith-mock"
  run run pipelines/arith-mock.toml --run-dir "$arith"
  run export "$arith" --out "$demo/datasets/arith-r1"

  step "3/5 SmolLM2 as the student, evaluated on 10 held-out additions"
  student="$demo/models/smollm2-arith"
  run eval "$smollm2" "${eval_args[@]}" --out "$demo/evals/before"

  step "4/5 Fine-tune SmolLM2 on the accepted traces for a few steps"
  run train --model "$smollm2" --data "$demo/datasets/arith-r1" --out "$student" \
    "${train_args[@]}"

  step "5/5 Evaluate the fine-tuned SmolLM2 again"
  run eval "$student" "${eval_args[@]}" --out "$demo/evals/after"

  runs=("$teach" "$arith")
  run_titles=("local teacher" "additions")
  bench="10 held-out additions"
fi
step "summary"
trap - ERR

# ---------------------------------------------------------------------------------------------
# The summary, from the files the commands wrote.
printf '\n%s' "$bold"
printf '==================================== Distillery demo summary ====================================\n'
printf '%s' "$off"

printf '\n%sPipelines (the mock teacher replays reference solutions with injected errors and faults)%s\n' "$bold" "$off"
all_reasons="$(for r in "${runs[@]}"; do reasons "$r/manifest.json"; done | awk '{print $1}' | sort -u)"
printf '  %-28s' ""
for t in "${run_titles[@]}"; do printf '%16s' "$t"; done
printf '\n'
row() { # label, then one value per run
  printf '  %-28s' "$1"
  shift
  for v in "$@"; do printf '%16s' "$v"; done
  printf '\n'
}
vals=()
for r in "${runs[@]}"; do vals+=("$(json_num "$r/manifest.json" prompts_total)"); done
row "prompts" "${vals[@]}"
vals=()
for r in "${runs[@]}"; do vals+=("$(json_num "$r/manifest.json" generations)"); done
row "generations" "${vals[@]}"
vals=()
for r in "${runs[@]}"; do
  a="$(json_num "$r/manifest.json" accepted)"
  g="$(json_num "$r/manifest.json" generations)"
  vals+=("$(awk -v a="$a" -v g="$g" 'BEGIN { printf "%d (%.1f%%)", a, (g > 0 ? 100 * a / g : 0) }')")
done
row "accepted" "${vals[@]}"
vals=()
for r in "${runs[@]}"; do vals+=("$(json_num "$r/manifest.json" rejected)"); done
row "rejected" "${vals[@]}"
for reason in $all_reasons; do
  vals=()
  for r in "${runs[@]}"; do
    n="$(reasons "$r/manifest.json" | awk -v k="$reason" '$1 == k { print $2 }')"
    vals+=("${n:-0}")
  done
  row "  $reason" "${vals[@]}"
done
vals=()
for r in "${runs[@]}"; do
  c="$(json_num "$r/manifest.json" completion)"
  s="$(json_num "$r/manifest.json" elapsed_secs)"
  vals+=("$(awk -v c="$c" -v s="$s" 'BEGIN { printf "%.0f", (s > 0 ? c / s : 0) }')")
done
row "teacher tokens/s" "${vals[@]}"
vals=()
for r in "${runs[@]}"; do
  vals+=("$(awk -v s="$(json_num "$r/manifest.json" elapsed_secs)" 'BEGIN { printf "%.1f s", s }')")
done
row "run time (all attempts)" "${vals[@]}"

# One training run's section: $1 its directory, $2 its title.
training_section() {
local dir="$1" title="$2"
local summary="$dir/summary.json" metrics="$dir/metrics.jsonl"
local steps
steps="$(json_num "$summary" steps)"
printf '\n%s%s%s' "$bold" "$title" "$off"
if [[ -s "$demo/init-model.txt" ]]; then
  printf ' (%s)' "$(sed -n 's/^wrote [^(]*(\(.*\))$/\1/p' "$demo/init-model.txt" | sed 's/, seed [0-9]*//')"
fi
printf '\n'
awk -v s="$(json_num "$summary" seconds)" -v r="$(json_num "$summary" tokens_per_s)" -v n="$steps" \
  'BEGIN { printf "  %d steps, %.0f tokens in %.0f s (%.0f tokens/s)\n", n, r * s, s, r }'
echo "  loss (training batches; the bar is logarithmic; with KD, the KL term beside it):"
sed -n 's/.*"step":\([0-9]*\),.*"loss":\([0-9.eE+-]*\).*/\1 \2/p' "$metrics" |
  while read -r st lo; do
    # An SFT run logs no KL: no match is not an error.
    kl="$(grep "\"step\":$st," "$metrics" | grep -o '"kl":[0-9.eE+-]*' | head -n 1 | cut -d: -f2 || true)"
    echo "$st $lo ${kl:--}"
  done |
  awk -v n="$steps" '
    { step[NR] = $1; loss[NR] = $2; kl[NR] = $3; if (NR == 1 || $2 > hi) hi = $2; if (NR == 1 || $2 < lo) lo = $2 }
    END {
      every = n >= 8 ? int(n / 8) : 1
      for (i = 1; i <= NR; i++) {
        if (step[i] != 1 && step[i] % every != 0 && i != NR) continue
        w = hi > lo ? int(1 + 40 * (log(loss[i]) - log(lo)) / (log(hi) - log(lo))) : 1
        bar = ""; for (j = 0; j < w; j++) bar = bar "#"
        k = kl[i] == "-" ? "" : sprintf("  KL %.4f", kl[i])
        printf "    step %5d  %8.4f  %-41s%s\n", step[i], loss[i], bar, k
      }
    }'
local eval_loss
eval_loss="$(json_num "$summary" eval_loss)"
if [[ -n "$eval_loss" ]]; then
  printf '  loss on held-out traces at the end: %.4f\n' "$eval_loss"
fi
}
training_section "$student" "Student training (SFT)"
if [[ -n "${kd_student:-}" ]]; then
  training_section "$kd_student" "Student training (KD from the captured top-8 log-probabilities, alpha 0.5, T 2 to 1)"
fi

printf '\n%spass@1 on %s (greedy, the prompt the pipeline sends)%s\n' "$bold" "$bench" "$off"
for which in before after after-kd; do
  rep="$demo/evals/$which/report.json"
  [[ -f "$rep" ]] || continue
  case "$which" in
    before) label="before training" ;;
    after) label="after SFT" ;;
    after-kd) label="after KD" ;;
  esac
  awk -v p="$(json_num "$rep" pass_at_1)" -v c="$(json_num "$rep" correct_samples)" \
    -v n="$(json_num "$rep" total_samples)" -v w="$label" \
    'BEGIN { printf "  %-16s %6.1f%%  (%d/%d)\n", w, 100 * p, c, n }'
done

printf '\n%sTime per step%s\n' "$bold" "$off"
for i in "${!timing_names[@]}"; do
  printf '  %-90s %s\n' "${timing_names[$i]}" "$(mmss "${timing_secs[$i]}")"
done
printf '  %-90s %s\n' "total" "$(mmss "$SECONDS")"
printf '\nEverything is in %s\n' "$demo"

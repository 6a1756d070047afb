#!/usr/bin/env bash
# Prints the benchmark summary (one JSON object per line) as a readable table.
set -euo pipefail
summary="${1:?usage: bench-table.sh SUMMARY.jsonl}"
[ -s "$summary" ] || { echo "no benchmark figures in $summary" >&2; exit 1; }
echo
echo "Benchmark summary ($summary), measured on: $(nproc) cores, $(uname -m), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
if command -v python3 >/dev/null 2>&1; then
    python3 - "$summary" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
for row in rows:
    name = row.pop("bench", "?")
    ratio = row.pop("ratio", None)
    baseline = row.pop("baseline", None)
    figures = ", ".join(
        f"{k}={v:,.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()
    )
    tail = f"  [x{ratio:.2f} of baseline {baseline:,}]" if ratio is not None else ""
    print(f"{name:<28} {figures}{tail}")
PY
else
    cat "$summary"
fi

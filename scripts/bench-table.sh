#!/usr/bin/env bash
# Merges the benchmark figures (one JSON object per line, the convention of benches/report.rs:
# bench, figure, value, unit, baseline, ratio, better, note) into one JSON summary and prints
# them as a readable table.
#
#   scripts/bench-table.sh target/bench/summary.jsonl [target/bench/summary.json]
set -euo pipefail
lines="${1:?usage: bench-table.sh SUMMARY.jsonl [SUMMARY.json]}"
summary="${2:-${lines%.jsonl}.json}"
[ -s "$lines" ] || { echo "no benchmark figures in $lines" >&2; exit 1; }

cores="$(nproc)"
arch="$(uname -m)"
cpu="$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2 | sed 's/^ //' || true)"
[ -n "$cpu" ] || cpu="unknown"
when="$(date -u +%Y-%m-%dT%H:%M:%SZ)"

if command -v python3 >/dev/null 2>&1; then
    python3 - "$lines" "$summary" "$cores" "$arch" "$cpu" "$when" <<'PY'
import json, sys

lines, summary, cores, arch, cpu, when = sys.argv[1:]
rows = [json.loads(line) for line in open(lines) if line.strip()]
with open(summary, "w") as out:
    json.dump(
        {
            "measured_at": when,
            "machine": {"cores": int(cores), "arch": arch, "cpu": cpu},
            "figures": rows,
        },
        out,
        indent=2,
    )
    out.write("\n")


def number(v):
    if not isinstance(v, (int, float)):
        return "-" if v is None else str(v)
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 1:
        return f"{v:,.2f}"
    return f"{v:.3f}"


def ratio(row):
    r = row.get("ratio")
    if not isinstance(r, (int, float)):
        return "-"
    # A mark when the figure moved the wrong way by more than 10%.
    worse = r < 0.9 if row.get("better", "higher") == "higher" else r > 1.1
    return f"{r:.2f}" + (" !" if worse else "")


table = [("bench", "figure", "value", "unit", "baseline", "ratio", "better", "note")]
for row in rows:
    table.append(
        (
            str(row.get("bench", "?")),
            str(row.get("figure", "?")),
            number(row.get("value")),
            str(row.get("unit", "")),
            number(row.get("baseline")),
            ratio(row),
            str(row.get("better", "")),
            str(row.get("note", "")),
        )
    )
widths = [max(len(r[i]) for r in table) for i in range(7)]
right = {2, 4, 5}
print()
print(f"Benchmark summary ({summary}), measured on: {cores} cores, {arch}, {cpu}")
print("ratio = value / baseline; '!' marks a figure more than 10% worse than its baseline")
print()
for i, r in enumerate(table):
    cells = [c.rjust(widths[k]) if k in right else c.ljust(widths[k]) for k, c in enumerate(r[:7])]
    print("  ".join(cells) + "  " + r[7])
    if i == 0:
        print("  ".join("-" * w for w in widths) + "  " + "-" * 4)
PY
else
    # No Python: the same summary by text, and the raw figures as the table.
    esc() { printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g'; }
    {
        printf '{\n  "measured_at": "%s",\n' "$when"
        printf '  "machine": {"cores": %s, "arch": "%s", "cpu": "%s"},\n' \
            "$cores" "$(esc "$arch")" "$(esc "$cpu")"
        printf '  "figures": [\n'
        grep -v '^[[:space:]]*$' "$lines" | sed 's/^/    /; $!s/$/,/'
        printf '  ]\n}\n'
    } >"$summary"
    echo
    echo "Benchmark summary ($summary), measured on: $cores cores, $arch, $cpu"
    cat "$lines"
fi
echo
echo "JSON summary: $summary"

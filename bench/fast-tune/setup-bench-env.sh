#!/usr/bin/env bash
# Creates .venv-bench/ (PyTorch + PEFT for the CPU peer in the fast-tune benchmark).
# Separate from the bridge's venv on purpose: torch from PyPI brings multi-GB CUDA wheels.
# Usage: bench/fast-tune/setup-bench-env.sh [PYTHON]   (idempotent; re-run after a failure)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="$root/.venv-bench"
python="${1:-python3}"
stamp="$venv/.requirements-bench.txt"
if [[ -f "$stamp" ]] && cmp -s "$stamp" "$here/requirements-bench.txt"; then
  echo "bench venv up to date: $venv"
  exit 0
fi
[[ -x "$venv/bin/python" ]] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade "pip>=24"
"$venv/bin/python" -m pip install --progress-bar off -r "$here/requirements-bench.txt"
"$venv/bin/python" -c "import torch, peft; print('torch', torch.__version__, 'peft', peft.__version__)"
cp "$here/requirements-bench.txt" "$stamp.tmp" && mv "$stamp.tmp" "$stamp"
echo "bench venv ready: $venv"

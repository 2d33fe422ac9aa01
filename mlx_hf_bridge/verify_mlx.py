"""The MLX side of ``mlx-hf-bridge verify``: the bridge's outputs under the torch side's keys
(``verify_torch.torch_side``)."""

from __future__ import annotations

import numpy as np

from .verify_torch import COLBERT, HF, MULTI_VECTOR, SENTENCE_TRANSFORMERS


def mlx_side(kind: str, folder, queries: list[str], documents: list[str], torch_arrays: dict) -> dict[str, np.ndarray]:
    """The bridge's outputs, under the same keys as ``torch_side``."""
    import mlx_hf_bridge  # noqa: F401  (BLAS preload before mlx.core)

    texts = queries + documents
    out: dict[str, np.ndarray] = {}
    if kind == COLBERT:
        from mlx_hf_bridge.pylate.models import ColBERT

        model = ColBERT(str(folder))
        for flag, tag in ((True, "q"), (False, "d")):
            for i, emb in enumerate(model.encode(texts, is_query=flag, convert_to_numpy=True)):
                out[f"{tag}{i}"] = np.asarray(emb, dtype=np.float32)
    elif kind == SENTENCE_TRANSFORMERS:
        model_cls = bridge_sentence_transformer()
        if model_cls is None:
            raise NotImplementedError("sentence-transformers folders are not supported by the bridge yet")
        model = model_cls(str(folder))
        out["sentence_embedding"] = np.asarray(model.encode(texts, convert_to_numpy=True), dtype=np.float32)
    elif kind == MULTI_VECTOR:
        from mlx_hf_bridge.multi_vector import MultiVectorEncoder

        model = MultiVectorEncoder(str(folder))
        q = model.encode_query(texts, convert_to_numpy=True)
        d = model.encode_document(texts, convert_to_numpy=True)
        out |= {f"q{i}": np.asarray(e, dtype=np.float32) for i, e in enumerate(q)}
        out |= {f"d{i}": np.asarray(e, dtype=np.float32) for i, e in enumerate(d)}
        out["scores"] = np.array(model.similarity(q, d), dtype=np.float32)
    elif kind == HF:
        import mlx.core as mx

        from mlx_hf_bridge.transformers import AutoModel

        model = AutoModel.from_pretrained(str(folder))
        if torch_arrays is None:  # before the torch side: the same tokenizer call as torch_side's
            limits = [512, getattr(model.tokenizer, "model_max_length", None), model.args.max_position_embeddings]
            torch_arrays = dict(model.tokenizer(texts, padding=True, truncation=True,
                                                max_length=min(int(x) for x in limits if x), return_tensors="np"))
        args = [mx.array(torch_arrays["input_ids"]), mx.array(torch_arrays["attention_mask"])]
        if "token_type_ids" in torch_arrays:
            args.append(mx.array(torch_arrays["token_type_ids"]))
        hidden = model(*args)
        out["last_hidden_state"] = np.array(hidden.astype(mx.float32))
    return out


def bridge_sentence_transformer():
    try:
        import importlib

        module = importlib.import_module("mlx_hf_bridge.sentence_transformers")
    except ImportError:
        return None
    return getattr(module, "SentenceTransformer", None)

"""The dense sentence-transformers losses on MLX, one file per loss (ST 6's layout), each with the
input-column table in its docstring. Names resolve lazily, so a façade import costs only the loss used.
"""

from __future__ import annotations

import importlib

# public name -> module (in this package) that defines it
_WHERE = {
    # in-batch negatives family
    "MultipleNegativesRankingLoss": "multiple_negatives_ranking",
    "MultipleNegativesSymmetricRankingLoss": "multiple_negatives_symmetric_ranking",
    "CachedMultipleNegativesRankingLoss": "cached_multiple_negatives_ranking",
    "CachedMultipleNegativesSymmetricRankingLoss": "cached_multiple_negatives_symmetric_ranking",
    "GISTEmbedLoss": "gist_embed",
    "CachedGISTEmbedLoss": "cached_gist_embed",
    "MatryoshkaLoss": "matryoshka",
    "Matryoshka2dLoss": "matryoshka_2d",
    "AdaptiveLayerLoss": "adaptive_layer",
    # pairwise / regression / distillation / triplet family
    "CoSENTLoss": "cosent",
    "AnglELoss": "angle",
    "CosineSimilarityLoss": "cosine_similarity",
    "MSELoss": "mse",
    "MarginMSELoss": "margin_mse",
    "DistillKLDivLoss": "distill_kl_div",
    "TripletLoss": "triplet",
    "TripletDistanceMetric": "triplet",
    "ContrastiveLoss": "contrastive",
    "SiameseDistanceMetric": "contrastive",
    "OnlineContrastiveLoss": "online_contrastive",
    "SoftmaxLoss": "softmax",
    "BatchAllTripletLoss": "batch_all_triplet",
    "BatchHardTripletLoss": "batch_hard_triplet",
    "BatchHardTripletLossDistanceFunction": "batch_hard_triplet",
    "BatchSemiHardTripletLoss": "batch_semi_hard_triplet",
    "BatchHardSoftMarginTripletLoss": "batch_hard_soft_margin_triplet",
}


def _available() -> list[str]:
    return [name for name, mod in _WHERE.items() if importlib.util.find_spec(f"{__name__}.{mod}") is not None]


__all__ = _available()


def __getattr__(name: str):
    module = _WHERE.get(name)
    if module is None or importlib.util.find_spec(f"{__name__}.{module}") is None:
        if name.startswith("__"):
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        raise AttributeError(
            f"mlx_hf_bridge does not provide the loss {name!r} (nothing falls back to torch); "
            f"the dense losses it provides: {', '.join(__all__) or 'none yet'}.",
            name=name,
        )
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

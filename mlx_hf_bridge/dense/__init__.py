"""The dense (single-vector) sentence-transformers family on MLX: ``SentenceTransformer`` (``dense.model``),
its encode loop (``dense.encode``), ``quantize_embeddings`` (``dense.quantization``) and the similarity
functions (``dense.similarity``).

``SentenceTransformer`` is imported on first use: ``dense.similarity`` is imported by the losses and the
``util`` façade, which must not pull in the model (and the backbones) with it."""

__all__ = ["SentenceTransformer", "quantize_embeddings"]


def __getattr__(name):
    if name == "SentenceTransformer":
        from .model import SentenceTransformer

        return SentenceTransformer
    if name == "quantize_embeddings":
        from .quantization import quantize_embeddings

        return quantize_embeddings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""``sentence_transformers.quantization`` (ST 5.3's module path): ``quantize_embeddings`` as ST 5.3 computes
it (its int8 casts and binary packing differ from ST 6.2's: ``dense.quantization``)."""

from ..dense.quantization import quantize_embeddings_st5 as quantize_embeddings

__all__ = ["quantize_embeddings"]

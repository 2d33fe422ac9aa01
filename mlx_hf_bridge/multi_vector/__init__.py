"""The multi-vector (late-interaction) family in sentence-transformers 6's spelling.

``MultiVectorEncoder`` is imported on first use: ``colbert.model`` imports ``multi_vector.base``, and
the encoder imports the ST 6 modules, which build on ``colbert.modules``."""

__all__ = ["MultiVectorEncoder"]


def __getattr__(name):
    if name == "MultiVectorEncoder":
        from .encoder import MultiVectorEncoder

        return MultiVectorEncoder
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

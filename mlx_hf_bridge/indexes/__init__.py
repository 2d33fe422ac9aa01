"""Multi-vector indexes on MLX + numpy: the math behind ``mlx_hf_bridge.pylate.indexes``."""

from .plaid import IndexCorruptedError, PlaidIndex, as_token_matrices

__all__ = ["PlaidIndex", "IndexCorruptedError", "as_token_matrices"]

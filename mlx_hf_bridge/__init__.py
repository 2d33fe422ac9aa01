"""Train and run PyLate / sentence-transformers retrieval models on Apple's MLX.

Importing this package prepares MLX first (optimized BLAS on Linux, default device); see
:mod:`mlx_hf_bridge.backend`.
"""

from . import backend as _backend

_backend.prepare()

__version__ = "0.1.0"

"""The loss façades' shared helpers live in ``mlx_hf_bridge.losses._common`` (kept importable here)."""

from ....losses._common import check_scale, check_teacher_scores, similarity_fct_name

__all__ = ["check_scale", "check_teacher_scores", "similarity_fct_name"]

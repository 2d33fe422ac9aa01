"""The dense similarity functions against the installed sentence-transformers' ``util`` (ST 5.3 in
.venv, ST 6.2 in .venv-st6), on the same inputs."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
st_util = pytest.importorskip("sentence_transformers.util")

from mlx_hf_bridge.sentence_transformers import util  # noqa: E402

MATRIX = ["cos_sim", "dot_score", "manhattan_sim", "euclidean_sim"]
PAIRWISE = ["pairwise_cos_sim", "pairwise_dot_score", "pairwise_manhattan_sim", "pairwise_euclidean_sim",
            "pairwise_angle_sim"]


@pytest.mark.parametrize("dim", [8, 7])  # odd: AnglE pads one 0
@pytest.mark.parametrize("name", MATRIX + PAIRWISE)
def test_similarity_matches_sentence_transformers(name, dim):
    rng = np.random.default_rng(dim)
    a = rng.normal(size=(5, dim)).astype(np.float32)
    b = rng.normal(size=(5 if name.startswith("pairwise") else 4, dim)).astype(np.float32)
    expected = getattr(st_util, name)(torch.tensor(a), torch.tensor(b)).numpy()
    got = np.array(getattr(util, name)(a, b))
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=2e-6)


def test_inputs_as_lists_1d_and_half_floats():
    a, b = [1.0, 0.0], [[1.0, 1.0], [0.0, 2.0]]
    expected = st_util.cos_sim(torch.tensor(a), torch.tensor(b)).numpy()
    np.testing.assert_allclose(np.array(util.cos_sim(a, b)), expected, atol=1e-7)
    import mlx.core as mx

    half = util.dot_score(mx.array(b, dtype=mx.bfloat16), mx.array(b, dtype=mx.bfloat16))
    assert half.dtype == mx.float32  # computed in float32, as ST 6


def test_similarity_function_enum():
    from mlx_hf_bridge.dense.similarity import SimilarityFunction

    assert SimilarityFunction.to_similarity_fn("cosine") is util.cos_sim
    assert SimilarityFunction.to_similarity_pairwise_fn("dot") is util.pairwise_dot_score
    assert SimilarityFunction.DOT is SimilarityFunction.DOT_PRODUCT
    ref = getattr(st_util, "SimilarityFunction", None)
    if ref is None:
        from sentence_transformers import SimilarityFunction as ref
    # ST 6.2 added maxsim / meanmaxsim after ST 5.3's four: the bridge has ST 6.2's list
    assert SimilarityFunction.possible_values()[: len(ref.possible_values())] == ref.possible_values()
    assert SimilarityFunction.possible_values() == ["cosine", "dot", "euclidean", "manhattan", "maxsim", "meanmaxsim"]
    with pytest.raises(ValueError, match="cosinus"):
        SimilarityFunction.to_similarity_fn("cosinus")

"""``util.semantic_search`` and the small ST names (``InputExample``, ``LoggingHandler``) against the
installed sentence-transformers on the same inputs."""

from __future__ import annotations

import logging

import numpy as np
import pytest

torch = pytest.importorskip("torch")
st_util = pytest.importorskip("sentence_transformers.util")

from mlx_hf_bridge.sentence_transformers import util as mlx_util  # noqa: E402


@pytest.mark.parametrize("score", ["cos_sim", "dot_score"])
@pytest.mark.parametrize("chunks", [(100, 500000), (3, 7), (1, 1)])
@pytest.mark.parametrize("top_k", [1, 5, 40])
def test_semantic_search_equals_st(score, chunks, top_k):
    rng = np.random.default_rng(0)
    queries, corpus = rng.standard_normal((9, 16)).astype(np.float32), rng.standard_normal((30, 16)).astype(np.float32)
    query_chunk, corpus_chunk = chunks
    theirs = st_util.semantic_search(torch.from_numpy(queries), torch.from_numpy(corpus), query_chunk_size=query_chunk,
                                     corpus_chunk_size=corpus_chunk, top_k=top_k, score_function=getattr(st_util, score))
    ours = mlx_util.semantic_search(queries, corpus, query_chunk_size=query_chunk, corpus_chunk_size=corpus_chunk,
                                    top_k=top_k, score_function=getattr(mlx_util, score))
    assert len(ours) == len(theirs)
    for mine, ref in zip(ours, theirs):
        assert [r["corpus_id"] for r in mine] == [r["corpus_id"] for r in ref]  # random scores: no ties
        np.testing.assert_allclose([r["score"] for r in mine], [r["score"] for r in ref], atol=1e-6)


def test_semantic_search_ties_and_errors():
    corpus = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]], dtype=np.float32)
    hits = mlx_util.semantic_search(np.array([1.0, 0.0], dtype=np.float32), corpus, corpus_chunk_size=2, top_k=3)
    assert [h["corpus_id"] for h in hits[0]] == [0, 1, 3]  # equal scores: ascending corpus id
    with pytest.raises(ValueError, match="top_k must be a positive"):
        mlx_util.semantic_search(corpus, corpus, top_k=0)


def test_input_example_and_logging_handler_as_st(capsys):
    import sentence_transformers

    from mlx_hf_bridge import sentence_transformers as mlx_st

    for cls in (sentence_transformers.InputExample, mlx_st.InputExample):
        example = cls(guid="g", texts=["a", "b"], label=0.5)
        assert (example.guid, example.texts, example.label, str(example)) == (
            "g", ["a", "b"], 0.5, "<InputExample> label: 0.5, texts: a; b")
    logger = logging.getLogger("test_logging_handler")
    logger.addHandler(mlx_st.LoggingHandler())
    logger.warning("through tqdm")
    assert "through tqdm" in capsys.readouterr().out  # tqdm.write, as ST's handler

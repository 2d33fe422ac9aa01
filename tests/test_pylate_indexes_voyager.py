"""indexes.Voyager + retrieve.ColBERT against real PyLate 1.6's Voyager on torch (same voyager package)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("voyager")
from mlx_hf_bridge.pylate import indexes, retrieve  # noqa: E402

DIM = 16


@pytest.fixture(scope="module")
def corpus():
    rng = np.random.default_rng(0)
    docs = [rng.standard_normal((int(rng.integers(5, 20)), DIM)).astype(np.float32) for _ in range(60)]
    queries = [rng.standard_normal((8, DIM)).astype(np.float32) for _ in range(5)]
    return [f"doc{i}" for i in range(60)], docs, queries


def _pylate():
    pytest.importorskip("torch")
    pylate_indexes = pytest.importorskip("pylate.indexes")
    from importlib.metadata import version

    if tuple(int(p) for p in version("voyager").split(".")[:2]) >= (2, 2):
        pytest.skip("PyLate 1.6's Voyager breaks on voyager >= 2.2 (add_items given a list); install voyager<2.2")
    from pylate import retrieve as pylate_retrieve

    return pylate_indexes, pylate_retrieve


def test_voyager_retrieve_matches_pylate(tmp_path, corpus):
    pylate_indexes, pylate_retrieve = _pylate()
    ids, docs, queries = corpus
    ours = indexes.Voyager(index_folder=str(tmp_path), index_name="ours", override=True, embedding_size=DIM)
    ours.add_documents(ids, docs)
    theirs = pylate_indexes.Voyager(index_folder=str(tmp_path), index_name="theirs", override=True, embedding_size=DIM)
    theirs.add_documents(ids, docs)
    hits_ours, hits_theirs = ours(queries, k=10), theirs(queries, k=10)
    assert hits_ours["documents_ids"] == hits_theirs["documents_ids"]
    assert max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
               for a, b in zip(hits_ours["distances"], hits_theirs["distances"])) == 0.0
    got = retrieve.ColBERT(index=ours).retrieve(queries, k=5)
    want = pylate_retrieve.ColBERT(index=theirs).retrieve(queries, k=5)
    assert [[r["id"] for r in q] for q in got] == [[r["id"] for r in q] for q in want]
    assert max(abs(a["score"] - b["score"]) for q, p in zip(got, want) for a, b in zip(q, p)) < 1e-5
    # the folder layout is PyLate's: an index real PyLate wrote opens here and answers the same
    reopened = indexes.Voyager(index_folder=str(tmp_path), index_name="theirs", embedding_size=DIM)
    assert retrieve.ColBERT(index=reopened).retrieve(queries, k=5) == got


def test_voyager_remove_reload_and_bad_input(tmp_path, corpus):
    ids, docs, queries = corpus
    index = indexes.Voyager(index_folder=str(tmp_path), index_name="v", override=True, embedding_size=DIM)
    with pytest.raises(ValueError, match="Index is empty"):
        index(queries, k=3)
    index.add_documents(ids, docs)
    with pytest.raises(ValueError, match="8-dimensional tokens; the index holds 16"):
        index([np.zeros((3, 8), np.float32)], k=3)
    top = retrieve.ColBERT(index=index).retrieve(queries, k=3)
    gone = {q[0]["id"] for q in top}
    index.remove_documents(sorted(gone))
    reloaded = indexes.Voyager(index_folder=str(tmp_path), index_name="v", embedding_size=DIM)
    after = retrieve.ColBERT(index=reloaded).retrieve(queries, k=3)
    assert not gone & {r["id"] for q in after for r in q}
    with pytest.raises(ValueError, match="holds 16-dimensional"):
        indexes.Voyager(index_folder=str(tmp_path), index_name="v", embedding_size=32)
    (tmp_path / "v" / "index.voyager").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="damaged.*override=True"):
        indexes.Voyager(index_folder=str(tmp_path), index_name="v", embedding_size=DIM)
    assert all(not p.name.startswith(".") for p in (tmp_path / "v").iterdir())  # no temp left behind


def test_unavailable_indexes_say_why():
    with pytest.raises(NotImplementedError, match="ScaNN is not available.*PLAID"):
        indexes.ScaNN()
    with pytest.raises(NotImplementedError, match="WARP"):
        indexes.WARP(index_folder="x")


def test_xtr_retriever(tmp_path, corpus):
    ids, docs, queries = corpus
    index = indexes.Voyager(index_folder=str(tmp_path), index_name="x", override=True, embedding_size=DIM)
    index.add_documents(ids, docs)
    from mlx_hf_bridge.pylate import rank

    if not hasattr(rank, "score_xtr"):
        with pytest.raises(NotImplementedError, match="score_xtr"):
            retrieve.XTR(index=index).retrieve(queries, k=3, k_token=20)
        return
    pylate_indexes, pylate_retrieve = _pylate()
    theirs = pylate_indexes.Voyager(index_folder=str(tmp_path), index_name="x", embedding_size=DIM)
    got = retrieve.XTR(index=index).retrieve(queries, k=3, k_token=20)
    want = pylate_retrieve.XTR(index=theirs).retrieve(queries, k=3, k_token=20)
    assert [[r["id"] for r in q] for q in got] == [[r["id"] for r in q] for q in want]
    assert max(abs(a["score"] - b["score"]) for q, p in zip(got, want) for a, b in zip(q, p)) < 1e-5
    with pytest.raises(NotImplementedError, match="Subset"):
        retrieve.XTR(index=index).retrieve(queries, k=3, subset=["doc1"])

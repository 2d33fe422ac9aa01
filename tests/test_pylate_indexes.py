"""indexes.PLAID on MLX: recall against real PyLate's exhaustive MaxSim, reload, add/remove, bad input."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from mlx_hf_bridge.pylate import indexes, retrieve

DIM = 32


def _corpus(n_docs, seed=0, n_words=400):
    """Unit-norm tokens drawn Zipf-like from a fixed vocabulary plus noise: clustered like real ColBERT tokens."""
    rng = np.random.default_rng(seed)
    vocab = rng.standard_normal((n_words, DIM)).astype(np.float32)

    def text(n):
        t = vocab[rng.zipf(1.3, n) % n_words] + 0.3 * rng.standard_normal((n, DIM))
        return (t / np.linalg.norm(t, axis=1, keepdims=True)).astype(np.float32)

    return [text(int(rng.integers(6, 30))) for _ in range(n_docs)], [text(12) for _ in range(20)]


@pytest.fixture(scope="module")
def corpus():
    return _corpus(500)


def _exhaustive_top(queries, docs, ids, k):
    """Real PyLate's rank.rerank over every document (torch): the ground truth."""
    torch = pytest.importorskip("torch")
    rank = pytest.importorskip("pylate.rank")
    reranked = rank.rerank(documents_ids=[ids] * len(queries), queries_embeddings=[torch.from_numpy(q) for q in queries],
                           documents_embeddings=[[torch.from_numpy(d) for d in docs]] * len(queries), device="cpu")
    return [r[:k] for r in reranked]


def _plaid(tmp_path, name="idx", **kw):
    return indexes.PLAID(index_folder=str(tmp_path), index_name=name, override=kw.pop("override", True),
                         show_progress=False, **kw)


def test_recall_at_10_and_exact_scores_against_pylate(tmp_path, corpus):
    docs, queries = corpus
    ids = [f"d{i}" for i in range(len(docs))]
    index = _plaid(tmp_path).add_documents(ids, docs)
    found = index(queries, k=10)
    ranking = _exhaustive_top(queries, docs, ids, len(docs))
    recall = np.mean([len({r["id"] for r in f} & {r["id"] for r in t[:10]}) / 10 for f, t in zip(found, ranking)])
    assert recall >= 0.99, recall
    exact = {(qi, r["id"]): r["score"] for qi, t in enumerate(ranking) for r in t}
    worst = max(abs(r["score"] - exact[(qi, r["id"])]) for qi, f in enumerate(found) for r in f)
    assert worst < 1e-4, worst  # stored float32 tokens: the returned scores are MaxSim scores
    assert all(list(r) == ["id", "score"] and isinstance(r["score"], float) for f in found for r in f)
    # the retriever goes through the same end-to-end path
    assert retrieve.ColBERT(index=index).retrieve(queries, k=10) == found


def test_compressed_only_index_is_smaller_and_still_ranks(tmp_path, corpus):
    docs, queries = corpus
    ids = list(range(len(docs)))
    full = _plaid(tmp_path, "full").add_documents(ids, docs)
    small = _plaid(tmp_path, "small", store_embeddings=False).add_documents(ids, docs)
    size = lambda i: sum(f.stat().st_size for f in (tmp_path / i).rglob("*") if f.is_file())  # noqa: E731
    assert size("small") * 3 < size("full")
    truth = _exhaustive_top(queries, docs, ids, 10)
    found = small(queries, k=10)
    recall = np.mean([len({r["id"] for r in f} & {r["id"] for r in t}) / 10 for f, t in zip(found, truth)])
    assert recall >= 0.8, recall  # 4-bit residual scores (fast-plaid's): approximate by design
    with pytest.raises(NotImplementedError, match="store_embeddings=True"):
        small.get_documents_embeddings([[0]])
    assert np.array_equal(full.get_documents_embeddings([[3, 1]])[0][1], docs[1])


def test_reload_gives_identical_results_and_input_types(tmp_path, corpus):
    torch = pytest.importorskip("torch")
    import mlx.core as mx

    docs, queries = corpus
    index = _plaid(tmp_path).add_documents(list(range(len(docs))), docs)
    before = index(queries, k=7)
    again = _plaid(tmp_path, override=False)
    assert again.is_indexed and again(queries, k=7) == before
    assert again([mx.array(q) for q in queries], k=7) == before
    assert again([torch.from_numpy(q) for q in queries], k=7) == before
    assert again(np.stack(queries), k=7) == before
    assert again(queries[0], k=7) == before[:1]  # a 2-D input is one query


def test_add_and_remove_documents(tmp_path, corpus):
    docs, queries = corpus
    ids = [f"d{i}" for i in range(len(docs))]
    index = _plaid(tmp_path).add_documents(ids[:300], docs[:300]).add_documents(ids[300:], docs[300:])
    truth = _exhaustive_top(queries, docs, ids, 10)
    found = index(queries, k=10)
    assert np.mean([len({r["id"] for r in f} & {r["id"] for r in t}) / 10 for f, t in zip(found, truth)]) >= 0.95
    removed = {r["id"] for f in found for r in f[:3]}
    index.remove_documents(sorted(removed))
    kept = [i for i in ids if i not in removed]
    after = _plaid(tmp_path, override=False)(queries, k=10)  # from disk
    assert not removed & {r["id"] for f in after for r in f}
    truth = _exhaustive_top(queries, [docs[ids.index(i)] for i in kept], kept, 10)
    assert np.mean([len({r["id"] for r in f} & {r["id"] for r in t}) / 10 for f, t in zip(after, truth)]) >= 0.95
    # re-adding an id replaces it: it is never returned twice
    index.add_documents(["d0"], [docs[0]]).add_documents(["d0"], [docs[0]])
    top = index([docs[0]], k=len(kept) + 1)[0]
    assert [r["id"] for r in top].count("d0") == 1 and top[0]["id"] == "d0"


def test_subset_restricts_results(tmp_path, corpus):
    docs, queries = corpus
    index = _plaid(tmp_path).add_documents(list(range(len(docs))), docs)
    out = index(queries[:2], k=5, subset=[1, 2, 3])
    assert all({r["id"] for r in q} <= {1, 2, 3} and len(q) == 3 for q in out)
    out = index(queries[:2], k=5, subset=[[4], [5, 6]])
    assert [{r["id"] for r in q} for q in out] == [{4}, {5, 6}]


def test_bad_input_gives_clear_errors(tmp_path, corpus):
    docs, queries = corpus
    empty = _plaid(tmp_path, "empty")
    with pytest.raises(ValueError, match="The index is empty"):
        empty(queries, k=3)
    index = _plaid(tmp_path).add_documents(list(range(20)), docs[:20])
    with pytest.raises(ValueError, match="16-dimensional token embeddings; the index holds 32"):
        index([np.zeros((4, 16), np.float32)], k=3)
    with pytest.raises(ValueError, match="32\\]-dimensional"):
        index.add_documents([99], [np.ones((3, 8), np.float32)])
    with pytest.raises(ValueError, match="no token embeddings"):
        index.add_documents([99], [np.zeros((0, DIM), np.float32)])
    with pytest.raises(ValueError, match="k must be a positive integer"):
        index(queries, k=0)
    assert [len(r) for r in index(queries[:2], k=50)] == [20, 20]  # k > corpus: every document, as fast-plaid
    with pytest.raises(ValueError, match="nbits=3 is not supported"):
        _plaid(tmp_path, "x", nbits=3)


def test_corrupted_folder_is_named(tmp_path, corpus):
    docs, _ = corpus
    _plaid(tmp_path).add_documents(list(range(30)), docs[:30])
    folder = tmp_path / "idx" / "plaid_mlx"
    codes = folder / "codes.npy"
    codes.write_bytes(codes.read_bytes()[:-40])
    with pytest.raises(indexes.IndexCorruptedError, match="codes.npy|damaged"):
        _plaid(tmp_path, override=False)
    meta = json.loads((folder / "metadata.json").read_text())
    (folder / "metadata.json").write_text(json.dumps({**meta, "n_documents": 29}))
    with pytest.raises(indexes.IndexCorruptedError, match="override=True"):
        _plaid(tmp_path, override=False)
    (folder / "metadata.json").write_text("{not json")
    with pytest.raises(indexes.IndexCorruptedError, match="damaged or incomplete"):
        _plaid(tmp_path, override=False)
    assert _plaid(tmp_path).add_documents([0], docs[:1]).is_indexed  # override rebuilds


def test_failed_write_leaves_previous_index_intact(tmp_path, corpus, monkeypatch):
    docs, queries = corpus
    index = _plaid(tmp_path).add_documents(list(range(40)), docs[:40])
    before = index(queries, k=5)
    calls = []

    def failing_save(path, array):
        calls.append(path)
        if len(calls) == 4:
            raise OSError(28, "No space left on device")
        return real_save(path, array)

    real_save = np.save
    monkeypatch.setattr(np, "save", failing_save)
    with pytest.raises(Exception, match="[Ss]pace"):
        index.add_documents(list(range(40, 80)), docs[40:80])
    monkeypatch.undo()
    leftovers = [p for p in os.listdir(tmp_path / "idx") if p != "plaid_mlx"]
    assert leftovers == []
    assert _plaid(tmp_path, override=False)(queries, k=5) == before


def test_index_left_aside_by_a_killed_swap_is_put_back(tmp_path, corpus):
    import subprocess

    from mlx_hf_bridge import io_utils

    docs, queries = corpus
    before = _plaid(tmp_path).add_documents(list(range(30)), docs[:30])(queries, k=5)
    dead = subprocess.Popen(["true"])
    dead.wait()
    folder = tmp_path / "idx" / "plaid_mlx"
    os.replace(folder, folder.parent / f".plaid_mlx.old-{io_utils._host()}-{dead.pid}-0badcafe")  # killed mid-swap
    assert _plaid(tmp_path, override=False)(queries, k=5) == before


def test_pylate_test_plaid_flow(tmp_path):
    """The steps of PyLate 1.6's tests/test_plaid.py: 2 documents, k=30, reload, remove, re-add one 2-D matrix."""
    rng = np.random.default_rng(1)
    unit = lambda x: (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)  # noqa: E731
    docs = [unit(rng.standard_normal((90, 128))), unit(rng.standard_normal((70, 128)))]
    queries = unit(rng.standard_normal((2, 32, 128)))
    index = _plaid(tmp_path).add_documents(documents_ids=["1", "2"], documents_embeddings=docs)
    matches = index(queries, k=30)
    assert len(matches) == 2 and len(matches[0]) == 2 and matches[0][0].keys() == {"id", "score"}
    assert [len(m) for m in index(queries[0], k=30)] == [2]
    index = _plaid(tmp_path, override=False).remove_documents(documents_ids=["1"])
    assert [[r["id"] for r in m] for m in index(queries[0], k=30)] == [["2"]]
    index.add_documents(documents_ids=["1"], documents_embeddings=docs[0])
    assert sorted(r["id"] for r in index(queries[0], k=30)[0]) == ["1", "2"]
    index.remove_documents(["1", "2"])
    with pytest.raises(ValueError, match="The index is empty"):
        index(queries, k=3)


def test_k_at_least_corpus_returns_every_document_even_when_probing_misses(tmp_path):
    """PyLate's test_fast_plaid.py expects all 5 documents for k=10, whatever the centroids probed."""
    rng = np.random.default_rng(3)
    unit = lambda x: (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)  # noqa: E731
    docs = [unit(rng.standard_normal((40, 64))) for _ in range(5)]
    index = _plaid(tmp_path, nbits=2, kmeans_niters=1, n_ivf_probe=1).add_documents([str(i) for i in range(5)], docs)
    query = unit(rng.standard_normal((1, 32)).repeat(64 // 32, axis=1))
    assert {r["id"] for r in index([query], k=10)[0]} == {"0", "1", "2", "3", "4"}
    index.remove_documents(["1", "3"])
    assert {r["id"] for r in index([query], k=10)[0]} == {"0", "2", "4"}

"""PyLate 1.6 gaps behind its own test suite (scripts/pylate_suite.py), each against real PyLate on torch:
XTR scores (values, masks, KD slicing, gradients), ``rank.score_xtr``, the score functions' type rule,
and the harness's Hub-cache stand-in layout."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

from mlx_hf_bridge.pylate import rank as bridge_rank
from mlx_hf_bridge.pylate import scores as bridge_scores

torch = pytest.importorskip("torch")
pylate_scores = pytest.importorskip("pylate.scores")
pylate_rank = pytest.importorskip("pylate.rank")


def _inputs(seed, Q=3, N=2, Lq=5, Ld=6, H=8, scale=1.0, masks=True):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(Q, Lq, H, generator=g) * scale
    d = torch.randn(Q, N, Ld, H, generator=g) * scale
    qm = dm = None
    if masks:
        qm = (torch.rand(Q, Lq, generator=g) > 0.3).float()
        qm[:, 0] = 1
        dm = (torch.rand(Q, N, Ld, generator=g) > 0.3).float()
        dm[..., 0] = 1
    return q, d, qm, dm


@pytest.mark.parametrize("seed,k,scale,masks", [(0, 4, 1.0, True), (1, 13, 1.0, False), (2, 1, 3.0, True),
                                                 (3, 20, 0.2, True), (4, 36, 1.0, True)])
@pytest.mark.parametrize("kind", ["XTRScores", "XTRKDScores"])
def test_xtr_scores_match_pylate(seed, k, scale, masks, kind):
    q, d, qm, dm = _inputs(seed, scale=scale, masks=masks)
    ref = getattr(pylate_scores, kind)(k=k)(q, d, queries_mask=qm, documents_mask=dm)
    got = getattr(bridge_scores, kind)(k=k)(q, d, queries_mask=qm, documents_mask=dm)
    assert isinstance(got, torch.Tensor) and got.dtype == ref.dtype and got.shape == ref.shape
    assert float((got - ref).abs().max()) <= 1e-5 * max(1.0, float(ref.abs().max()))


def test_xtr_gradients_match_pylate():
    q, d, qm, dm = _inputs(7)
    grads = []
    for module in (pylate_scores, bridge_scores):
        qq, dd = q.clone().requires_grad_(True), d.clone().requires_grad_(True)
        (module.XTRScores(k=9)(qq, dd, queries_mask=qm, documents_mask=dm) * torch.arange(6.0)).sum().backward()
        grads.append((qq.grad, dd.grad))
    for ref, got in zip(grads[0], grads[1]):
        assert float(ref.abs().max()) > 0
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)


def test_xtr_k_beyond_pool_refused_like_pylate():
    q, d, _, _ = _inputs(0, masks=False)
    with pytest.raises(RuntimeError):
        pylate_scores.XTRScores(k=100)(q, d)
    with pytest.raises(ValueError, match="lower k"):
        bridge_scores.XTRScores(k=100)(q, d)


def test_score_xtr_matches_pylate():
    rng = np.random.default_rng(0)
    ids = [[f"d{j}" for j in rng.integers(0, 12, size=rng.integers(0, 9))] for _ in range(6)]
    values = [list(map(float, rng.normal(size=len(row)).round(3))) for row in ids]
    for k in (1, 5, 50):
        ref = pylate_rank.score_xtr(ids, values, k=k)
        got = bridge_rank.score_xtr(ids, values, k=k)
        assert [r["id"] for r in got] == [r["id"] for r in ref]
        np.testing.assert_allclose([r["score"] for r in got], [r["score"] for r in ref], rtol=1e-6, atol=1e-6)
    assert bridge_rank.score_xtr([], [], k=3) == pylate_rank.score_xtr([], [], k=3) == []
    for bad in (([["a"]], []), ([["a", "b"]], [[1.0]])):
        with pytest.raises(ValueError):
            pylate_rank.score_xtr(*bad, k=1)
        with pytest.raises(ValueError):
            bridge_rank.score_xtr(*bad, k=1)


@pytest.mark.parametrize("name", ["colbert_scores", "colbert_kd_scores", "colbert_scores_pairwise", "ColBERTScores"])
def test_type_rule_torch_numpy_mx(name):
    g = torch.Generator().manual_seed(3)
    q = torch.randn(2, 4, 8, generator=g)
    d = torch.randn(2, 3, 5, 8, generator=g) if name in ("colbert_kd_scores", "ColBERTScores") else (
        torch.randn(2, 5, 8, generator=g))
    ref_fn = getattr(pylate_scores, name)
    fn = getattr(bridge_scores, name)
    if name == "ColBERTScores":
        ref_fn, fn = ref_fn(), fn()
    ref = ref_fn(q, d)
    got = fn(q, d)
    assert isinstance(got, torch.Tensor) and got.dtype == ref.dtype
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    torch.cat([got, ref])  # what a user script does with PyLate's scores
    as_numpy = fn(q.numpy(), d.numpy())
    assert isinstance(as_numpy, np.ndarray)
    np.testing.assert_allclose(as_numpy, ref.numpy(), rtol=1e-5, atol=1e-5)
    as_mx = fn(mx.array(q.numpy()), mx.array(d.numpy()))
    assert isinstance(as_mx, mx.array)
    np.testing.assert_allclose(np.array(as_mx), ref.numpy(), rtol=1e-5, atol=1e-5)


def test_scores_module_exports_pylate_names():
    assert set(pylate_scores.__all__) <= set(dir(bridge_scores))
    assert set(pylate_rank.__all__) <= set(dir(bridge_rank))


def test_standin_hub_layout_resolves_revision_offline(tmp_path, monkeypatch):
    """The harness's cache layout (snapshots/<commit>/ without refs) is one huggingface_hub resolves."""
    from huggingface_hub import hf_hub_download

    store = tmp_path / "store"
    (store / "files").mkdir(parents=True)
    (store / "files" / "config.json").write_text("{}")
    commit = "c1e84128e85ef755c096a95bdb06b47793b13acf"
    (store / "hub.json").write_text(json.dumps(
        {"org/model": {"commit": commit, "files": {"config.json": str(store / "files" / "config.json")}, "refs": False}}))
    (store / "datasets.json").write_text("{}")
    monkeypatch.setenv("PYLATE_SUITE_STORE", str(store))
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "scripts"))
    sys.modules.pop("pylate_suite_plugin", None)
    import pylate_suite_plugin

    cache = tmp_path / "hub"
    pylate_suite_plugin.layout_hub_cache(cache)
    assert not (cache / "models--org--model" / "refs").exists()
    path = hf_hub_download("org/model", "config.json", revision=commit, cache_dir=str(cache))
    assert os.path.samefile(path, store / "files" / "config.json")


def test_backend_argument_like_pylate():
    q, d = torch.zeros(1, 1, 8), torch.zeros(1, 1, 8)
    for module in (pylate_scores, bridge_scores):
        with pytest.raises(ValueError):
            module.colbert_scores(q, d, backend="nope")
        with pytest.raises(RuntimeError, match="CUDA or MPS"):
            module.colbert_scores(q, d, backend="lik")
        with pytest.raises(RuntimeError, match="requires CUDA"):
            module.colbert_scores(q, d, backend="flash")
        assert module.colbert_scores(torch.ones(1, 2, 1), torch.ones(2, 1, 1), backend="auto").shape == (1, 2)


@pytest.mark.parametrize("backend", ["_lik_backend", "_flash_backend"])
def test_kernel_backend_modules_gate_like_pylate_without_an_accelerator(backend):
    """PyLate's kernel-dispatch modules on a machine without their accelerator: both libraries report
    the kernels unavailable, reject the same inputs with the fall-back sentinel, and convert masks alike."""
    ref, got = (getattr(module, backend) for module in (pylate_scores, bridge_scores))
    assert got.is_available() is False and ref.is_available() is False
    if backend == "_flash_backend":
        assert [got._next_pow2(n) for n in (0, 1, 5, 32, 33)] == [ref._next_pow2(n) for n in (0, 1, 5, 32, 33)]
        with pytest.raises(got.FlashUnsupported):
            got.colbert_scores_flash(torch.zeros(1, 4, 8), torch.zeros(2, 5, 8))
        return
    cases = [(torch.randn(2, 4, h), torch.randn(3, 5, h)) for h in (4, 100, 264, 128)]
    cases += [(torch.randn(2, 4, 128, dtype=torch.float64), torch.randn(3, 5, 128, dtype=torch.float64)),
              (torch.randn(0, 4, 128), torch.randn(3, 5, 128))]
    for q, d in cases:
        with pytest.raises(ref.LIKUnsupported):
            ref._lik_device(q, d)
        with pytest.raises(got.LIKUnsupported):
            got._lik_device(q, d)
    for mask in (None, torch.tensor([[1.0, 0.0, 1.0]]), torch.tensor([[True, False]])):
        want, have = ref._mask_as_bool(mask), got._mask_as_bool(mask)
        assert (want is None and have is None) or (have.dtype == want.dtype and torch.equal(have, want))
    with pytest.raises(got.LIKUnsupported):
        got.colbert_scores_lik(torch.zeros(1, 4, 8), torch.zeros(2, 5, 8))


def _hub_cache_with(tmp_path, folder, repo_id, commit):
    """huggingface_hub's cache layout as a per-file download at ``revision=<commit>`` leaves it: no refs."""
    import shutil

    snapshot = tmp_path / "hub" / ("models--" + repo_id.replace("/", "--")) / "snapshots" / commit
    shutil.copytree(folder, snapshot)
    return tmp_path / "hub"


@pytest.mark.parametrize("layout", ["plain", "stanford"])
def test_metadata_and_offline_revision_like_pylate(tmp_path, tiny_bert_dir, layout):
    from pylate import models as pylate_models

    from mlx_hf_bridge.pylate import models as bridge_models
    from st6_reference import stanford_folder

    folder = tiny_bert_dir if layout == "plain" else stanford_folder(tmp_path / "stanford", tiny_bert_dir)
    commit = "c1e84128e85ef755c096a95bdb06b47793b13acf"
    cache = _hub_cache_with(tmp_path, folder, "org/colbert", commit)
    loaded = {}
    for name, module in (("pylate", pylate_models), ("bridge", bridge_models)):
        for how, kwargs in (("hub", dict(model_name_or_path="org/colbert", revision=commit, cache_folder=str(cache))),
                            ("local", dict(model_name_or_path=str(folder)))):
            loaded[name, how] = module.ColBERT(device="cpu", **kwargs)
    for how in ("hub", "local"):
        ref, got = loaded["pylate", how], loaded["bridge", how]
        assert type(got.model_card_data).__name__ == type(ref.model_card_data).__name__ == "PylateModelCardData"
        for key in ("library_name", "base_model", "base_model_revision", "pipeline_tag", "tags"):
            assert getattr(got.model_card_data, key) == getattr(ref.model_card_data, key), key
        for key in ("max_seq_length", "query_prefix", "document_prefix", "query_length", "document_length",
                    "similarity_fn_name"):
            assert getattr(got, key) == getattr(ref, key), (how, key)
        assert got.max_seq_length == 512


def _nano_folder(folder, split, seed):
    from datasets import Dataset

    rng = np.random.default_rng(seed)
    words = "apple river stone cloud music paper light green table window ocean train".split()
    docs = [" ".join(rng.choice(words, size=6)) for _ in range(20)]
    docs[3] = ""  # empty texts are dropped, as PyLate does
    queries = [" ".join(rng.choice(words, size=3)) for _ in range(6)]
    pairs = [(f"q{i}", f"d{int(rng.integers(20))}") for i in range(6) for _ in range(int(rng.integers(1, 3)))]
    yaml = ["---", "configs:"]
    for subset, data in (("corpus", {"_id": [f"d{i}" for i in range(20)], "text": docs}),
                         ("queries", {"_id": [f"q{i}" for i in range(6)], "text": queries}),
                         ("qrels", {"query-id": [q for q, _ in pairs], "corpus-id": [d for _, d in pairs]})):
        (folder / subset).mkdir(parents=True, exist_ok=True)
        Dataset.from_dict(data).to_parquet(str(folder / subset / "train.parquet"))
        yaml += [f"- config_name: {subset}", "  data_files:", "  - split: train", f"    path: {subset}/train.parquet"]
    (folder / "README.md").write_text("\n".join([*yaml, "---", ""]))
    return str(folder)


def test_nanobeir_evaluator_matches_pylate(tmp_path, tiny_bert_dir, monkeypatch):
    import datasets
    from pylate import evaluation as pylate_evaluation
    from pylate import models as pylate_models

    from mlx_hf_bridge.pylate import evaluation as bridge_evaluation
    from mlx_hf_bridge.pylate import models as bridge_models

    folders = {f"zeta-alpha-ai/Nano{name}": _nano_folder(tmp_path / name, name, seed)
               for seed, name in enumerate(("SciFact", "NFCorpus"))}
    original = datasets.load_dataset
    monkeypatch.setattr(datasets, "load_dataset", lambda path, *a, **kw: original(folders.get(path, path), *a, **kw))
    saved = tmp_path / "colbert"
    pylate_models.ColBERT(str(tiny_bert_dir), device="cpu").save_pretrained(str(saved))
    results = {}
    for name, models, evaluation in (("pylate", pylate_models, pylate_evaluation),
                                     ("bridge", bridge_models, bridge_evaluation)):
        evaluator = evaluation.NanoBEIREvaluator(dataset_names=["scifact", "nfcorpus"], write_csv=False)
        results[name] = (evaluator(models.ColBERT(str(saved), device="cpu")), evaluator.primary_metric)
    (ref, ref_primary), (got, got_primary) = results["pylate"], results["bridge"]
    assert got_primary == ref_primary and sorted(got) == sorted(ref)
    assert "NanoBEIR_mean_MaxSim_ndcg@10" in got and "NanoSciFact_MaxSim_ndcg@10" in got
    for key in ref:
        assert abs(got[key] - ref[key]) <= 1e-5, key


def test_beir_helpers_match_pylate():
    import random

    from pylate.evaluation import beir as pylate_beir

    from mlx_hf_bridge.pylate.evaluation import beir as bridge_beir

    documents = [{"id": f"d{i}", "text": f"text {i}"} for i in range(7)]
    queries = ["q a", "q b", "q c"]
    qrels = {"1": {"d1": 1, "d4": 1}, "2": {"d0": 1}, "3": {"d6": 1, "d2": 1, "d3": 1}}
    random.seed(5)
    ref = pylate_beir.get_beir_triples(documents, queries, qrels)
    random.seed(5)
    assert bridge_beir.get_beir_triples(documents, queries, qrels) == ref and len(ref) == 6
    scores = [[{"id": "d1", "score": 2.0}], [{"id": "d0", "score": 1.0}]]
    dup = ["q a", "q b", "q a"]
    assert bridge_beir.add_duplicates(dup, scores) == pylate_beir.add_duplicates(dup, scores)


def test_load_beir_reads_beir_layout(tmp_path, monkeypatch):
    """BEIR's GenericDataLoader layout (not compared: PyLate needs the ``beir`` package, absent here)."""
    from mlx_hf_bridge.pylate.evaluation import load_beir

    folder = tmp_path / "evaluation_datasets" / "tiny"
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text('{"_id": "d1", "title": "T", "text": "body "}\n{"_id": "d2", "text": " x "}\n')
    (folder / "queries.jsonl").write_text('{"_id": "q1", "text": "a?"}\n{"_id": "q2", "text": "b?"}\n')
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td2\t1\n")
    monkeypatch.chdir(tmp_path)
    documents, queries, qrels = load_beir("tiny", split="test")
    assert documents == [{"id": "d1", "text": "T body"}, {"id": "d2", "text": "x"}]
    assert queries == {"q1": "a?"} and qrels == {"q1": {"d2": 1}}
    with pytest.raises(ValueError, match="no split 'dev'"):
        load_beir("tiny", split="dev")

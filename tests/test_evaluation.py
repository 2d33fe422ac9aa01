"""Evaluators against real PyLate 1.6 on the same folder and data: metrics (1e-5), keys, CSV files."""

from __future__ import annotations

import csv
import random

import numpy as np
import pytest

from mlx_hf_bridge.pylate import evaluation as mlx_evaluation
from mlx_hf_bridge.pylate import models as mlx_models

TOL = 1e-5
WORDS = "apple river stone cloud music paper light green blue fast slow house tree ocean city train".split()


def text(rng, n_min, n_max):
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(n_min, n_max)))


@pytest.fixture(scope="module", params=["bert", "modernbert-noqe"])
def pair(request, tmp_path_factory, tiny_bert_dir, tiny_modernbert_dir):
    import torch
    from pylate import models

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("eval-colbert")
    if request.param == "bert":
        models.ColBERT(str(tiny_bert_dir), device="cpu", query_length=12, document_length=24).save(str(folder))
    else:
        models.ColBERT(
            str(tiny_modernbert_dir), device="cpu", query_length=12, document_length=24, do_query_expansion=False
        ).save(str(folder))
    return models.ColBERT(str(folder), device="cpu"), mlx_models.ColBERT(str(folder))


@pytest.fixture(scope="module")
def ir_data():
    rng = random.Random(3)
    corpus = {f"doc{i}": text(rng, 2, 25) + ("." if i % 3 == 0 else "") for i in range(23)}
    queries = {f"q{i}": text(rng, 1, 6) for i in range(9)}
    relevant = {f"q{i}": set(rng.sample(sorted(corpus), rng.randint(1, 3))) for i in range(8)}  # q8: no qrels
    relevant["q7"] = set()
    return queries, corpus, relevant


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def assert_csv_close(ours, theirs):
    assert len(ours) == len(theirs)
    assert ours[0] == theirs[0]  # header
    for row_ours, row_theirs in zip(ours[1:], theirs[1:]):
        assert row_ours[:2] == row_theirs[:2]
        np.testing.assert_allclose([float(v) for v in row_ours[2:]], [float(v) for v in row_theirs[2:]], atol=TOL)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"name": "tiny", "corpus_chunk_size": 5},
        {"corpus_chunk_size": 50000, "accuracy_at_k": [1, 2], "precision_recall_at_k": [3], "mrr_at_k": [5, 10],
         "ndcg_at_k": [3, 10], "map_at_k": [4, 100], "batch_size": 4},
    ],
    ids=["named-chunked", "unnamed-custom-k"],
)
def test_information_retrieval_matches_pylate(pair, ir_data, tmp_path, kwargs):
    from pylate import evaluation

    torch_model, mlx_model = pair
    queries, corpus, relevant = ir_data
    theirs = evaluation.PyLateInformationRetrievalEvaluator(queries, corpus, relevant, **kwargs)
    ours = mlx_evaluation.PyLateInformationRetrievalEvaluator(queries, corpus, relevant, **kwargs)
    assert ours.queries_ids == theirs.queries_ids and ours.csv_file == theirs.csv_file

    expected = theirs(torch_model, output_path=str(tmp_path / "torch"), epoch=1, steps=7)
    got = ours(mlx_model, output_path=str(tmp_path / "mlx"), epoch=1, steps=7)
    print({k: round(v, 4) for k, v in got.items()}, ours.primary_metric)
    assert list(got) == list(expected)
    assert len({round(v, 6) for v in expected.values()}) > 4  # not a degenerate all-0 / all-1 ranking
    for key in expected:
        assert isinstance(got[key], float)
        assert got[key] == pytest.approx(expected[key], abs=TOL), key
    assert ours.primary_metric == theirs.primary_metric
    assert ours.primary_metric in got
    # a second call appends a row, as ST does
    theirs(torch_model, output_path=str(tmp_path / "torch"))
    ours(mlx_model, output_path=str(tmp_path / "mlx"))
    assert_csv_close(read_csv(tmp_path / "mlx" / ours.csv_file), read_csv(tmp_path / "torch" / theirs.csv_file))
    if kwargs.get("name"):
        assert "tiny_MaxSim_ndcg@10" in got and ours.primary_metric == "tiny_MaxSim_ndcg@10"
        assert ours.csv_file == "Information-Retrieval_evaluation_tiny_results.csv"


def test_information_retrieval_predictions_match(pair, ir_data, tmp_path):
    import json

    from pylate import evaluation

    torch_model, mlx_model = pair
    queries, corpus, relevant = ir_data
    kwargs = {"name": "p", "write_predictions": True, "corpus_chunk_size": 7, "write_csv": False}
    (tmp_path / "t").mkdir()  # PyLate does not create the folder for predictions
    evaluation.PyLateInformationRetrievalEvaluator(queries, corpus, relevant, **kwargs)(torch_model, str(tmp_path / "t"))
    mlx_evaluation.PyLateInformationRetrievalEvaluator(queries, corpus, relevant, **kwargs)(mlx_model, str(tmp_path / "m"))
    name = "Information-Retrieval_evaluation_p_predictions_MaxSim.jsonl"
    theirs = [json.loads(line) for line in (tmp_path / "t" / name).read_text().splitlines()]
    ours = [json.loads(line) for line in (tmp_path / "m" / name).read_text().splitlines()]
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert (a["query_id"], a["query"]) == (b["query_id"], b["query"])
        assert [r["corpus_id"] for r in a["results"]] == [r["corpus_id"] for r in b["results"]]
        np.testing.assert_allclose([r["score"] for r in a["results"]], [r["score"] for r in b["results"]], atol=1e-4)


@pytest.mark.parametrize("name", ["", "dev"])
def test_triplet_matches_pylate(pair, tmp_path, name):
    from pylate import evaluation

    torch_model, mlx_model = pair
    rng = random.Random(5)
    anchors = [text(rng, 1, 6) for _ in range(11)]
    positives = [text(rng, 2, 20) + "," for _ in range(11)]
    negatives = [text(rng, 2, 20) for _ in range(11)]
    theirs = evaluation.ColBERTTripletEvaluator(anchors, positives, negatives, name=name, batch_size=4)
    ours = mlx_evaluation.ColBERTTripletEvaluator(anchors, positives, negatives, name=name, batch_size=4)
    (tmp_path / "t").mkdir()  # PyLate's csv_writer does not create the folder (ours does)
    expected = theirs(torch_model, output_path=str(tmp_path / "t"), epoch=2, steps=3)
    got = ours(mlx_model, output_path=str(tmp_path / "m"), epoch=2, steps=3)
    assert list(got) == ["accuracy"] and 0.0 < expected["accuracy"] < 1.0
    assert got["accuracy"] == pytest.approx(expected["accuracy"], abs=TOL)
    assert ours.csv_file == theirs.csv_file == f"triplet_evaluation{'_' + name if name else ''}_results.csv"
    assert ours.csv_headers == theirs.csv_headers == ["epoch", "steps", "accuracy"]
    assert ours.primary_metric == theirs.primary_metric == "accuracy"
    assert_csv_close(read_csv(tmp_path / "m" / ours.csv_file), read_csv(tmp_path / "t" / theirs.csv_file))


def test_distillation_evaluator_matches_pylate(pair, tmp_path):
    from pylate import evaluation

    torch_model, mlx_model = pair
    rng = random.Random(9)
    queries = [text(rng, 1, 6) for _ in range(5)]
    documents = [[text(rng, 2, 20) for _ in range(3)] for _ in range(5)]
    scores = [[rng.uniform(0, 10) for _ in range(3)] for _ in range(5)]
    for normalize in (True, False):
        theirs = evaluation.ColBERTDistillationEvaluator(queries, documents, scores, normalize_scores=normalize)
        ours = mlx_evaluation.ColBERTDistillationEvaluator(queries, documents, scores, normalize_scores=normalize)
        (tmp_path / f"t{normalize}").mkdir()
        expected = theirs(torch_model, output_path=str(tmp_path / f"t{normalize}"))
        got = ours(mlx_model, output_path=str(tmp_path / f"m{normalize}"))
        assert list(got) == list(expected) == ["kl_divergence"]
        assert got["kl_divergence"] == pytest.approx(expected["kl_divergence"], rel=1e-4, abs=TOL)
        assert_csv_close(read_csv(tmp_path / f"m{normalize}" / ours.csv_file),
                         read_csv(tmp_path / f"t{normalize}" / theirs.csv_file))


def test_ir_metric_math_matches_sentence_transformers():
    """The numpy metric math on hand-made rankings (ties, fewer hits than k, several relevant)."""
    from sentence_transformers.evaluation import InformationRetrievalEvaluator

    from mlx_hf_bridge.colbert import ir_metrics

    rng = random.Random(0)
    corpus = {f"d{i}": "x" for i in range(30)}
    queries = {f"q{i}": "y" for i in range(12)}
    relevant = {q: set(rng.sample(sorted(corpus), rng.randint(1, 6))) for q in queries}
    evaluator = InformationRetrievalEvaluator(queries, corpus, relevant, accuracy_at_k=[1, 3, 5, 10],
                                              precision_recall_at_k=[1, 3, 5, 10], map_at_k=[5, 100], ndcg_at_k=[3, 10])
    results = [
        [{"corpus_id": cid, "score": float(rng.choice([0.1, 0.2, rng.random()]))} for cid in rng.sample(sorted(corpus), 15)]
        for _ in evaluator.queries_ids
    ]
    expected = evaluator.compute_metrics(results)
    got = ir_metrics.compute_metrics(results, evaluator.queries_ids, relevant, accuracy_at_k=[1, 3, 5, 10],
                                     precision_recall_at_k=[1, 3, 5, 10], mrr_at_k=[10], ndcg_at_k=[3, 10],
                                     map_at_k=[5, 100])
    assert list(got) == list(expected)
    for metric in expected:
        assert list(got[metric]) == list(expected[metric])
        for k in expected[metric]:
            assert got[metric][k] == pytest.approx(expected[metric][k], abs=1e-12)

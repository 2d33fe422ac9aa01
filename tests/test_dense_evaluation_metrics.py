"""The evaluators' numpy statistics against the libraries ST calls (scipy, scikit-learn) and ST's own
threshold searches and IR tie order, on random, tied and edge-case inputs."""

from __future__ import annotations

import random

import numpy as np
import pytest

from conftest import ST_MAJOR
from mlx_hf_bridge.colbert import ir_metrics
from mlx_hf_bridge.evaluation import metrics
from test_dense_evaluation_helpers import st_evaluation


def cases():
    rng = np.random.default_rng(0)
    out = []
    for n in (2, 5, 17, 60):
        labels = rng.integers(0, 2, n)
        labels[0], labels[-1] = 0, 1  # both classes
        out.append((labels, rng.standard_normal(n).astype(np.float32)))
        out.append((labels, rng.integers(0, 4, n).astype(np.float32)))  # many ties
    return out


@pytest.mark.parametrize("labels,scores", cases())
def test_statistics_equal_scipy_and_sklearn(labels, scores):
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import average_precision_score, matthews_corrcoef, ndcg_score

    gold = (labels * 2.5 + np.arange(len(labels)) % 3).tolist()  # python floats, as ST's gold scores
    # the correlations follow scipy's operations: equal to the last bit
    for ours, theirs in ((metrics.pearson(gold, scores), pearsonr(gold, scores)[0]),
                         (metrics.spearman(gold, scores), spearmanr(gold, scores)[0])):
        assert ours == theirs or (np.isnan(ours) and np.isnan(theirs)), (ours, theirs)
    assert metrics.average_precision(labels, scores) == average_precision_score(labels, scores)  # to the last bit
    predicted = scores >= np.median(scores)
    assert metrics.matthews_corrcoef(labels, predicted) == pytest.approx(matthews_corrcoef(labels, predicted), abs=1e-12, nan_ok=True)
    for k in (1, 3, 10, None):
        expected = ndcg_score([labels.tolist()], [scores.tolist()], k=k)
        ours = metrics.ndcg_score(labels.tolist(), scores.tolist(), k=k)
        assert ours == expected or (np.isnan(ours) and np.isnan(expected)), (k, ours, expected)  # to the last bit


def test_degenerate_inputs_match():
    from sklearn.metrics import matthews_corrcoef

    labels = np.array([0, 1, 1, 0])
    assert metrics.matthews_corrcoef(labels, np.ones(4, bool)) == matthews_corrcoef(labels, np.ones(4, bool)) == 0.0
    with pytest.warns(Warning):
        assert np.isnan(metrics.pearson([1.0, 1.0, 1.0], [0.1, 0.2, 0.3]))


@pytest.mark.parametrize("labels,scores", cases())
@pytest.mark.parametrize("high_is_similar", [True, False])
def test_threshold_searches_equal_st(labels, scores, high_is_similar):
    theirs = st_evaluation().BinaryClassificationEvaluator
    st6 = ST_MAJOR >= 6
    ours_acc = metrics.find_best_acc_and_threshold(scores, labels, high_is_similar, st6)
    ours_f1 = metrics.find_best_f1_and_threshold(scores, labels, high_is_similar, st6)
    assert ours_acc == theirs.find_best_acc_and_threshold(scores, labels, high_is_similar)
    assert ours_f1 == theirs.find_best_f1_and_threshold(scores, labels, high_is_similar)
    # and the other release's rules are what the ST-independent functions give for the other flag
    assert metrics.find_best_acc_and_threshold(scores, labels, high_is_similar, not st6) is not None


@pytest.mark.st6
def test_ir_top_k_by_id_is_the_total_order_whatever_the_chunking():
    rng = random.Random(0)
    corpus_ids = [f"c{rng.randrange(10**6):06d}" for _ in range(57)]
    scores = np.array([[rng.choice([0.1, 0.5, 0.5, 0.9]) for _ in corpus_ids] for _ in range(4)], dtype=np.float32)
    ranks = ir_metrics.corpus_id_ranks(corpus_ids)
    expected = [sorted(zip(row.tolist(), corpus_ids), key=lambda x: (-x[0], x[1]))[:12] for row in scores]
    for chunk in (57, 10, 3, 1):
        hits = [[] for _ in range(4)]
        for start in range(0, 57, chunk):
            ir_metrics.push_top_k_by_id(hits, scores[:, start : start + chunk], corpus_ids, ranks, start, 12)
        assert hits == expected

"""The statistics sentence-transformers' evaluators take from scipy and scikit-learn, in numpy.

``pearson`` / ``spearman`` are ``scipy.stats.pearsonr`` / ``spearmanr`` statistics (float64, NaN for a
constant input), ``average_precision`` is ``sklearn.metrics.average_precision_score`` (one step per
distinct score), ``matthews_corrcoef`` and ``ndcg_score`` (tied scores share their averaged gain) are
sklearn's; the threshold searches are ST's ``find_best_acc_and_threshold`` /
``find_best_f1_and_threshold`` in both releases (``st6=False``: ST 5.3, ``True``: ST 6.2, which
skips inside tied scores and starts from "all dissimilar"). Tests compare each with the library.
"""

from __future__ import annotations

import warnings

import numpy as np


def pearson(x, y) -> float:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    xm, ym = x - x.mean(), y - y.mean()
    with np.errstate(invalid="ignore", divide="ignore"):
        xmax, ymax = np.abs(xm).max(), np.abs(ym).max()
        normxm = xmax * np.linalg.norm(xm / xmax)
        normym = ymax * np.linalg.norm(ym / ymax)
        r = np.dot(xm / normxm, ym / normym)
    if np.all(x == x[0]) or np.all(y == y[0]):
        warnings.warn("An input array is constant; the correlation coefficient is not defined.", stacklevel=2)
        return float("nan")
    return float(np.clip(r, -1.0, 1.0))


def rankdata(a) -> np.ndarray:
    """``scipy.stats.rankdata(a, method="average")``: 1-based ranks, ties get their mean rank."""
    a = np.asarray(a)
    order = np.argsort(a, kind="mergesort")
    sorted_a = a[order]
    starts = np.concatenate([[True], sorted_a[1:] != sorted_a[:-1]])
    group = np.cumsum(starts) - 1
    bounds = np.concatenate([np.flatnonzero(starts), [len(a)]])
    mean_rank = (bounds[:-1] + bounds[1:] + 1) / 2.0  # mean of the 1-based ranks start+1 .. end
    ranks = np.empty(len(a), dtype=np.float64)
    ranks[order] = mean_rank[group]
    return ranks


def spearman(x, y) -> float:
    return pearson(rankdata(np.asarray(x, dtype=np.float64)), rankdata(np.asarray(y, dtype=np.float64)))


def average_precision(labels, scores) -> float:
    """sklearn's AP: sum over distinct score thresholds (descending) of Δrecall · precision."""
    labels, scores = np.asarray(labels), np.asarray(scores)
    order = np.argsort(scores, kind="mergesort")[::-1]
    scores, labels = scores[order], (labels[order] == 1).astype(np.float64)
    last_of_group = np.flatnonzero(np.diff(scores)).tolist() + [len(scores) - 1]
    tps = np.cumsum(labels)[last_of_group]
    fps = np.asarray(last_of_group) + 1 - tps
    if tps[-1] == 0:
        warnings.warn("No positive class found in y_true, recall is set to one for all thresholds", stacklevel=2)
        return 0.0
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.concatenate([[0.0], recall])) * precision))


def matthews_corrcoef(labels, predicted) -> float:
    labels, predicted = np.asarray(labels).astype(np.int64), np.asarray(predicted).astype(np.int64)
    classes = np.union1d(labels, predicted)
    t_sum = np.array([(labels == c).sum() for c in classes], dtype=np.float64)
    p_sum = np.array([(predicted == c).sum() for c in classes], dtype=np.float64)
    n_correct, n = float((labels == predicted).sum()), float(len(labels))
    cov_ytyp = n_correct * n - np.dot(t_sum, p_sum)
    cov_ypyp = n**2 - np.dot(p_sum, p_sum)
    cov_ytyt = n**2 - np.dot(t_sum, t_sum)
    if cov_ypyp * cov_ytyt == 0:
        return 0.0
    return float(cov_ytyp / np.sqrt(cov_ytyt * cov_ypyp))


def ndcg_score(relevance, scores, k: int | None = None) -> float:
    """sklearn's ``ndcg_score([relevance], [scores], k=k)`` for one query (ties averaged)."""
    relevance, scores = np.asarray(relevance, dtype=np.float64), np.asarray(scores, dtype=np.float64)
    discount = 1 / np.log2(np.arange(len(relevance)) + 2)
    if k is not None:
        discount[k:] = 0
    discount_cumsum = np.cumsum(discount)
    _, inverse, counts = np.unique(-scores, return_inverse=True, return_counts=True)
    ranked = np.zeros(len(counts))
    np.add.at(ranked, inverse, relevance)
    ranked /= counts
    groups = np.cumsum(counts) - 1
    discount_sums = np.empty(len(counts))
    discount_sums[0] = discount_cumsum[groups[0]]
    discount_sums[1:] = np.diff(discount_cumsum[groups])
    gain = float((ranked * discount_sums).sum())
    ideal = float((np.sort(relevance)[::-1] * discount).sum())
    return 0.0 if ideal == 0 else gain / ideal


def _sorted_rows(scores, labels, high_score_more_similar: bool):
    return sorted(zip(scores, labels), key=lambda x: x[0], reverse=high_score_more_similar)


def find_best_acc_and_threshold(scores, labels, high_score_more_similar: bool, st6: bool):
    assert len(scores) == len(labels)
    labels = np.asarray(labels)
    rows = _sorted_rows(scores, labels, high_score_more_similar)
    max_acc, best_threshold = 0, -1
    positive_so_far, remaining_negatives = 0, sum(labels == 0)
    if not st6:
        for i in range(len(rows) - 1):
            if rows[i][1] == 1:
                positive_so_far += 1
            else:
                remaining_negatives -= 1
            acc = (positive_so_far + remaining_negatives) / len(labels)
            if acc > max_acc:
                max_acc, best_threshold = acc, (rows[i][0] + rows[i + 1][0]) / 2
        return max_acc, best_threshold

    score_dtype = np.result_type(np.asarray(scores).dtype, np.float16)
    if rows:  # start from the threshold that predicts every pair as dissimilar
        max_acc = remaining_negatives / len(labels)
        best_threshold = np.nextafter(rows[0][0], np.inf if high_score_more_similar else -np.inf, dtype=score_dtype)
    for i, (score, label) in enumerate(rows):
        if label == 1:
            positive_so_far += 1
        else:
            remaining_negatives -= 1
        is_last = i == len(rows) - 1
        if not is_last and score == rows[i + 1][0]:
            continue  # a threshold cannot split tied scores
        acc = (positive_so_far + remaining_negatives) / len(labels)
        if acc > max_acc:
            max_acc = acc
            best_threshold = score if is_last else (score + rows[i + 1][0]) / 2
            if not is_last and best_threshold == rows[i + 1][0]:  # a rounded midpoint joins the next group
                best_threshold = score
    return max_acc, best_threshold


def find_best_f1_and_threshold(scores, labels, high_score_more_similar: bool, st6: bool):
    assert len(scores) == len(labels)
    scores, labels = np.asarray(scores), np.asarray(labels)
    rows = _sorted_rows(scores, labels, high_score_more_similar)
    best_f1 = best_precision = best_recall = 0
    threshold = 0
    nextract = ncorrect = 0
    total_num_duplicates = sum(labels)
    last = len(rows) if st6 else len(rows) - 1
    for i in range(last):
        score, label = rows[i]
        nextract += 1
        if label == 1:
            ncorrect += 1
        is_last = i == len(rows) - 1
        if st6 and not is_last and score == rows[i + 1][0]:
            continue
        if ncorrect > 0:
            precision = ncorrect / nextract
            recall = ncorrect / total_num_duplicates
            f1 = 2 * precision * recall / (precision + recall)
            if f1 > best_f1:
                best_f1, best_precision, best_recall = f1, precision, recall
                threshold = score if is_last else (score + rows[i + 1][0]) / 2
                if st6 and not is_last and threshold == rows[i + 1][0]:
                    threshold = score
    return best_f1, best_precision, best_recall, threshold

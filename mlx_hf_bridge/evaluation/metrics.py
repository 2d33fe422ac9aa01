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
    # scipy's own sequence of operations (float64, keepdims, scaled norms, vecdot), so equal inputs
    # give scipy's value to the last bit
    x, y = np.asarray(x, dtype=np.float64)[None], np.asarray(y, dtype=np.float64)[None]
    if np.all(x == x[0, 0]) or np.all(y == y[0, 0]):
        warnings.warn("An input array is constant; the correlation coefficient is not defined.", stacklevel=2)
        return float("nan")
    xm, ym = x - x.mean(axis=-1, keepdims=True), y - y.mean(axis=-1, keepdims=True)
    xmax, ymax = np.abs(xm).max(axis=-1, keepdims=True), np.abs(ym).max(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        normxm = xmax * np.linalg.norm(xm / xmax, axis=-1, keepdims=True)
        normym = ymax * np.linalg.norm(ym / ymax, axis=-1, keepdims=True)
        r = _vecdot(xm / normxm, ym / normym)
    return float(np.clip(r, -1.0, 1.0)[0])


def _vecdot(a, b):
    return np.vecdot(a, b, axis=-1) if hasattr(np, "vecdot") else (a * b).sum(axis=-1)


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
    # scipy: both columns ranked, then np.corrcoef
    both = np.column_stack((np.asarray(x), np.asarray(y)))
    if np.all(both[:, 0] == both[0, 0]) or np.all(both[:, 1] == both[0, 1]):
        warnings.warn("An input array is constant; the correlation coefficient is not defined.", stacklevel=2)
        return float("nan")
    ranked = np.column_stack([rankdata(both[:, 0]), rankdata(both[:, 1])])
    return float(np.corrcoef(ranked, rowvar=False)[1, 0])


def average_precision(labels, scores) -> float:
    """sklearn's AP: sum over distinct score thresholds (descending) of Δrecall · precision, in
    sklearn's order of operations (``precision_recall_curve`` reversed, then ``-sum(diff(r) * p)``)."""
    labels, scores = np.asarray(labels), np.asarray(scores)
    order = np.argsort(scores, kind="mergesort")[::-1]
    scores, hits = scores[order], (labels[order] == 1) * 1.0
    threshold_idxs = np.r_[np.where(np.diff(scores))[0], hits.size - 1]
    tps = np.cumsum(hits, dtype=np.float64)[threshold_idxs]
    fps = 1 + threshold_idxs - tps
    if tps[-1] == 0:
        warnings.warn("No positive class found in y_true, recall is set to one for all thresholds", stacklevel=2)
        return 0.0
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    precision, recall = np.hstack((precision[::-1], 1)), np.hstack((recall[::-1], 0))
    return float(-np.sum(np.diff(recall) * precision[:-1]))


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
    # sklearn's own roundings: the discount as log(x) / log(2), the ideal DCG as a dot product
    discount = 1 / (np.log(np.arange(len(relevance)) + 2) / np.log(2))
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
    ideal = float(discount.dot(relevance[np.argsort(relevance)[::-1]]))
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

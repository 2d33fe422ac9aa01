"""Shared pieces of the dense evaluator tests (no tests here): a deterministic stand-in model (text -> fixed vector)
with a torch face for real sentence-transformers and an MLX face for the bridge, sample data, and
comparisons of metrics dicts and CSV files."""

from __future__ import annotations

import csv
import json
import os
import random
import zlib

import numpy as np

from conftest import random_sentence

PUNCT = ".,!?"


def sentences(seed: int, n: int, n_min: int = 2, n_max: int = 12) -> list[str]:
    rng = random.Random(seed)
    out, seen = [], set()
    while len(out) < n:  # distinct texts: equal vectors would tie, which torch.topk orders arbitrarily
        s = random_sentence(rng, n_min, n_max, PUNCT)
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


class CardData:
    def __init__(self):
        self.calls = []

    def set_evaluation_metrics(self, evaluator, metrics, epoch, step):
        self.calls.append((type(evaluator).__name__, dict(metrics), epoch, step))


class StandIn:
    """``encode`` / ``encode_query`` / ``encode_document`` / ``similarity`` of a SentenceTransformer whose
    embedding of a text is a crc32-seeded normal vector of ``prompt + text`` (``coarse``: one of 3
    one-hot vectors, so many scores tie exactly). ``backend`` "torch" returns torch tensors (for real
    ST), "mlx" mx arrays (for the bridge); the numbers are the same."""

    def __init__(self, backend: str, dim: int = 16, similarity_fn_name: str = "cosine", prompts=None,
                 coarse: bool = False, scale: float = 1.0):
        self.backend, self.dim, self.similarity_fn_name = backend, dim, similarity_fn_name
        self.prompts = prompts or {}
        self.coarse, self.scale = coarse, scale
        self.model_card_data = CardData()
        self.calls = []

    def vector(self, text: str) -> np.ndarray:
        seed = zlib.crc32(text.encode("utf-8"))
        if self.coarse:
            v = np.zeros(self.dim, dtype=np.float32)
            v[seed % 3] = 1.0
            return v
        return (np.random.default_rng(seed).standard_normal(self.dim) * self.scale).astype(np.float32)

    def encode(self, sentences, prompt_name=None, prompt=None, batch_size=32, show_progress_bar=None,
               output_value="sentence_embedding", precision="float32", convert_to_numpy=True,
               convert_to_tensor=False, device=None, normalize_embeddings=False, truncate_dim=None, **kwargs):
        self.calls.append(("encode", len(sentences), prompt_name, prompt, truncate_dim))
        if prompt is None and prompt_name is not None:
            prompt = self.prompts[prompt_name]
        emb = np.stack([self.vector((prompt or "") + s) for s in sentences])
        if truncate_dim is not None:
            emb = emb[:, :truncate_dim]
        if normalize_embeddings:
            emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
        if precision and precision != "float32":  # each side's own quantize_embeddings, as its encode
            if self.backend == "torch":
                from sentence_transformers import quantize_embeddings
            else:
                from mlx_hf_bridge.sentence_transformers import quantize_embeddings
            return np.asarray(quantize_embeddings(emb, precision=precision))
        if convert_to_tensor or not convert_to_numpy:
            if self.backend == "torch":
                import torch

                emb = torch.from_numpy(emb)
            else:
                import mlx.core as mx

                emb = mx.array(emb)
            return emb if convert_to_tensor else list(emb)  # convert_to_numpy=False: a list of vectors
        return emb

    def _encode_role(self, role, sentences, prompt_name=None, prompt=None, **kwargs):
        if prompt is None and prompt_name is None and role in self.prompts:
            prompt_name = role
        self.calls.append((role,))
        return self.encode(sentences, prompt_name=prompt_name, prompt=prompt, **kwargs)

    def encode_query(self, sentences, **kwargs):
        return self._encode_role("query", sentences, **kwargs)

    def encode_document(self, sentences, **kwargs):
        return self._encode_role("document", sentences, **kwargs)

    @property
    def similarity(self):
        if self.backend == "torch":
            from sentence_transformers import util
        else:
            from mlx_hf_bridge.sentence_transformers import util
        return {"cosine": util.cos_sim, "dot": util.dot_score, "euclidean": util.euclidean_sim,
                "manhattan": util.manhattan_sim}[self.similarity_fn_name]


def st_evaluation():
    """Real ST's evaluation module (ST 6.2's path where installed, else ST 5.3's)."""
    try:
        from sentence_transformers.sentence_transformer import evaluation
    except ImportError:
        from sentence_transformers import evaluation
    return evaluation


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def assert_metrics_match(ours: dict, theirs: dict, tol: float = 1e-6, exact: bool = False):
    assert list(ours) == list(theirs)  # same keys, same order
    for key in theirs:
        if exact:
            assert ours[key] == theirs[key], (key, ours[key], theirs[key])
        else:
            # 1e-6 of max(1, |value|): a distance threshold near 25 is 2 float32 ulps from 1e-6 absolute
            assert abs(ours[key] - theirs[key]) <= tol * max(1.0, abs(theirs[key])), (key, ours[key], theirs[key])


def assert_csv_dirs_match(ours_dir, theirs_dir, tol: float = 1e-6, exact: bool = False):
    """Same file names; headers equal; rows byte-equal (``exact``) or equal to ``tol``."""
    names = sorted(os.listdir(theirs_dir))
    assert sorted(os.listdir(ours_dir)) == names
    for name in names:
        ours_path, theirs_path = os.path.join(ours_dir, name), os.path.join(theirs_dir, name)
        if name.endswith(".jsonl"):  # predictions: same queries and ranked ids, scores to tol
            assert_predictions_match(ours_path, theirs_path, tol)
            continue
        if exact:
            with open(ours_path, "rb") as a, open(theirs_path, "rb") as b:
                assert a.read() == b.read(), name
            continue
        ours, theirs = read_csv(ours_path), read_csv(theirs_path)
        assert len(ours) == len(theirs) and ours[0] == theirs[0], name
        for row_ours, row_theirs in zip(ours[1:], theirs[1:]):
            assert len(row_ours) == len(row_theirs) and row_ours[:2] == row_theirs[:2], name
            np.testing.assert_allclose([float(v) for v in row_ours[2:]], [float(v) for v in row_theirs[2:]],
                                       atol=tol, rtol=tol, err_msg=name)


def assert_predictions_match(ours_path, theirs_path, tol):
    with open(ours_path, encoding="utf-8") as a, open(theirs_path, encoding="utf-8") as b:
        ours, theirs = [json.loads(line) for line in a], [json.loads(line) for line in b]
    assert len(ours) == len(theirs)
    for o, t in zip(ours, theirs):
        assert (o["query_id"], o["query"]) == (t["query_id"], t["query"])
        assert [r["corpus_id"] for r in o["results"]] == [r["corpus_id"] for r in t["results"]]
        np.testing.assert_allclose([r["score"] for r in o["results"]], [r["score"] for r in t["results"]], atol=tol)


def run_pair(make, tmp_path, model_kwargs=None, calls=((0, 5), (1, -1)), **kwargs):
    """Builds the evaluator with ST's and with ours (``make(module, **kwargs)``), runs each on its stand-in
    for every (epoch, steps) in ``calls`` (CSV rows appended), returns both results lists, both
    evaluators and both output folders."""
    from mlx_hf_bridge.sentence_transformers import evaluation as ours_module

    model_kwargs = model_kwargs or {}
    results = {}
    for side, module, backend in (("theirs", st_evaluation(), "torch"), ("ours", ours_module, "mlx")):
        evaluator = make(module, **kwargs)
        model = StandIn(backend, **model_kwargs)
        out = tmp_path / side
        runs = [evaluator(model, output_path=str(out), epoch=e, steps=s) for e, s in calls]
        results[side] = (runs, evaluator, out, model)
    return results["ours"], results["theirs"]

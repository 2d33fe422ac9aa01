"""Bad input to the pairwise / regression / distillation / triplet losses: clear errors (the problem and
the fix) before any forward pass; the losses' ``get_config_dict`` against the installed ST's; the loss
layers' save / load; the trainer with a loss that owns parameters."""

from __future__ import annotations

import logging

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sentence_transformers")

import mlx.core as mx  # noqa: E402
import mlx.nn as nn  # noqa: E402

from conftest import ST_MAJOR  # noqa: E402
from mlx_hf_bridge import losses  # noqa: E402
from mlx_hf_bridge.dense import similarity  # noqa: E402

if ST_MAJOR >= 6:
    from sentence_transformers.sentence_transformer import losses as st_losses
else:
    from sentence_transformers import losses as st_losses
from sentence_transformers import util as st_util  # noqa: E402

B, D = 4, 6


class CountingTable(nn.Module):
    """Embedding-table stand-in that counts forward passes (errors must come before any)."""

    def __init__(self, dim=D):
        super().__init__()
        self.weight = mx.random.normal((20, dim), key=mx.random.key(0))
        self.calls = 0

    def __call__(self, features):
        self.calls += 1
        return {"sentence_embedding": self.weight[features["input_ids"][:, 0]]}

    def get_embedding_dimension(self):
        return self.weight.shape[1]


class TorchTable(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(20, D))
        self.device = torch.device("cpu")

    def get_embedding_dimension(self):
        return D

    get_sentence_embedding_dimension = get_embedding_dimension


def cols(n, rows=B):
    return [{"input_ids": mx.arange(i, i + rows)[:, None]} for i in range(n)]


def no_forward(model, fn, exc, match):
    with pytest.raises(exc, match=match):
        fn()
    assert model.calls == 0


# --- columns ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,n,labels", [
    ("CoSENTLoss", 3, [0.1] * B), ("CoSENTLoss", 1, [0.1] * B), ("CosineSimilarityLoss", 3, [0.1] * B),
    ("TripletLoss", 2, None), ("TripletLoss", 4, None), ("ContrastiveLoss", 3, [1] * B),
    ("OnlineContrastiveLoss", 1, [1] * B), ("MarginMSELoss", 2, [0.1] * B), ("AnglELoss", 1, None),
])
def test_wrong_number_of_columns(name, n, labels):
    model = CountingTable()
    loss = getattr(losses, name)(model)
    no_forward(model, lambda: loss(cols(n), None if labels is None else mx.array(labels)), ValueError,
               "text columns .* got %d. Columns are used by position" % n)


def test_distill_needs_two_candidates_and_matching_scores():
    model = CountingTable()
    loss = losses.DistillKLDivLoss(model)
    no_forward(model, lambda: loss(cols(2), mx.zeros((B, 1))), ValueError, "at least 3")
    no_forward(model, lambda: loss(cols(3), mx.zeros((B, 3))), ValueError, r"\(batch_size, N\) = \(4, 2\)")
    labels = np.zeros((B, 2), np.float32)
    labels[1, 0] = np.nan
    no_forward(model, lambda: loss(cols(3), mx.array(labels)), ValueError, "teacher scores contain NaN")
    for bad in (0.0, float("inf"), -1.0):
        with pytest.raises(ValueError, match="positive finite"):
            losses.DistillKLDivLoss(model, teacher_temperature=bad)
    with pytest.raises(ValueError, match=r"shape \(batch_size, N\)"):
        loss.check_labels(mx.zeros((B,)), "train dataset")


def test_distill_warns_when_the_teacher_softmax_underflows(caplog):
    loss = losses.DistillKLDivLoss(CountingTable())
    labels = mx.array([[0.0, 500.0]] * B)
    with caplog.at_level(logging.WARNING):
        loss(cols(3), labels)
        loss(cols(3), labels)  # once per loss, as ST 6.2
    assert sum("Raise teacher_temperature above 5" in r.message for r in caplog.records) == 1


# --- labels -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["CoSENTLoss", "CosineSimilarityLoss", "ContrastiveLoss", "OnlineContrastiveLoss"])
def test_text_labels_are_refused_by_name(name):
    model = CountingTable()
    loss = getattr(losses, name)(model)
    with pytest.raises(ValueError, match=r"needs numeric labels .* got text values .*'high'.*Map them to numbers"):
        loss.check_labels(["high", "low", "high", "low"], "train dataset")
    no_forward(model, lambda: loss(cols(2), ["high", "low", "high", "low"]) if name == "CoSENTLoss" else
               loss.check_labels(np.array(["a", "b"]), "train dataset"), ValueError, "numeric labels")
    no_forward(model, lambda: loss(cols(2), None) if name == "CoSENTLoss" else loss.check_labels(None, "x"),
               ValueError, "needs labels")


@pytest.mark.parametrize("name", ["CoSENTLoss", "CosineSimilarityLoss", "ContrastiveLoss", "OnlineContrastiveLoss"])
def test_label_count_mismatch_is_st6s_error(name):
    loss = getattr(losses, name)(CountingTable())
    with pytest.raises(ValueError, match=r"expects 4 labels \(one per example\), but got 3 labels with shape \(3,\)"):
        loss(cols(2), mx.array([1.0, 0.0, 1.0]))


def test_mse_label_shapes():
    model = CountingTable()
    loss = losses.MSELoss(model)
    with pytest.raises(ValueError, match=r"teacher embeddings as labels.*\(4,\)"):
        loss.check_labels(mx.zeros((B,)), "train dataset")
    with pytest.raises(ValueError, match=r"have 8 dimensions, the student's embeddings 6.*projection_dim=8"):
        loss.check_labels(mx.zeros((B, D + 2)), "train dataset")  # the trainer's pre-flight
    with pytest.raises(ValueError, match=r"have 8 dimensions, the student's embeddings 6.*projection_dim=8"):
        loss(cols(1), mx.zeros((B, D + 2)))  # found on the embeddings (MatryoshkaLoss cuts both sides)
    model.calls = 0
    no_forward(model, lambda: loss(cols(2), mx.zeros((B, 3, D))), ValueError, r"label columns \(3\) does not match")
    no_forward(model, lambda: loss(cols(1), None), ValueError, "pre-computed teacher embeddings")


def test_margin_mse_label_shapes():
    model = CountingTable()
    loss = losses.MarginMSELoss(model)
    no_forward(model, lambda: loss(cols(4), mx.zeros((B, 5))), ValueError, r"expected \(4, 2\) for 2 negative")
    with pytest.raises(ValueError, match=r"shape \(4, 2, 1\)"):
        loss.check_labels(mx.zeros((B, 2, 1)), "train dataset")


def test_softmax_labels_and_options():
    model = CountingTable()
    loss = losses.SoftmaxLoss(model, D, 3)
    with pytest.raises(ValueError, match=r"integer class labels \(0 .. 2\).*float labels.*CoSENTLoss"):
        loss.check_labels(mx.array([0.5, 1.2, 2.0, 1.0]), "train dataset")
    with pytest.raises(ValueError, match=r"labels from 0 to 3; class indices must lie in 0 .. 2"):
        loss.check_labels(mx.array([0, 3, 1, 1]), "train dataset")
    loss.check_labels(mx.array([0, 2, 1, 1]), "train dataset")
    loss.check_labels(mx.array([0.0, 2.0, 1.0, 1.0]), "train dataset")  # whole floats: torch takes them too
    loss.check_labels(mx.ones((B, 3)) / 3, "train dataset")  # class probabilities (ST 6.2)
    with pytest.raises(ValueError, match="At least one of concatenation_sent_rep"):
        losses.SoftmaxLoss(model, D, 3, concatenation_sent_rep=False, concatenation_sent_difference=False)
    old = losses.SoftmaxLoss(model, sentence_embedding_dimension=D, num_labels=3)  # ST 5.3's keyword
    assert old.classifier.weight.shape == (3, 3 * D)
    reps, logits = loss(cols(2), None)  # ST: no labels -> (embeddings, logits)
    assert logits.shape == (B, 3) and len(reps) == 2


def test_torch_loss_modules():
    model = CountingTable()
    with pytest.raises(ValueError, match=r"HuberLoss.*is a torch module.*MLX callable"):
        losses.CosineSimilarityLoss(model, loss_fct=torch.nn.HuberLoss())
    with pytest.raises(ValueError, match="default settings"):
        losses.CosineSimilarityLoss(model, loss_fct=torch.nn.MSELoss(reduction="sum"))
    custom = losses.CosineSimilarityLoss(model, loss_fct=lambda a, b: mx.abs(a - b).sum())  # MLX callables pass
    assert custom(cols(2), mx.zeros((B,))).item() > 0


def test_non_binary_labels_warn_once_as_st6():
    for name in ("ContrastiveLoss", "OnlineContrastiveLoss"):
        loss = getattr(losses, name)(CountingTable())
        with pytest.warns(UserWarning, match="expects binary labels"):
            loss(cols(2), mx.array([0.5, 1.0, 0.0, 1.0]))
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("error")
            loss(cols(2), mx.array([0.5, 1.0, 0.0, 1.0]))


# --- config dicts, as the model card reads them -------------------------------------------------
def _configs():
    cos = (st_util.pairwise_cos_sim, similarity.pairwise_cos_sim)
    metric = lambda enum, m: (getattr(getattr(st_losses, enum), m), getattr(getattr(losses, enum), m))  # noqa: E731
    return [
        ("CoSENTLoss", {}), ("CoSENTLoss", {"scale": 5.0, "similarity_fct": cos}), ("AnglELoss", {}),
        ("CosineSimilarityLoss", {}), ("MarginMSELoss", {}), ("MarginMSELoss", {"similarity_fct": cos}),
        ("DistillKLDivLoss", {"temperature": 2.0}), ("TripletLoss", {}),
        ("TripletLoss", {"distance_metric": metric("TripletDistanceMetric", "COSINE"), "triplet_margin": 0.5}),
        ("ContrastiveLoss", {}), ("ContrastiveLoss", {"distance_metric": metric("SiameseDistanceMetric", "EUCLIDEAN"),
                                                      "margin": 2.0, "size_average": False}),
        ("OnlineContrastiveLoss", {"distance_metric": metric("SiameseDistanceMetric", "MANHATTAN")}),
        ("MSELoss", {}), ("SoftmaxLoss", {"num_labels": 3, "concatenation_sent_multiplication": True}),
    ]


@pytest.mark.parametrize("name,kwargs", _configs())
def test_config_dict_matches_st(name, kwargs):
    t_kwargs = {k: v[0] if isinstance(v, tuple) else v for k, v in kwargs.items()}
    m_kwargs = {k: v[1] if isinstance(v, tuple) else v for k, v in kwargs.items()}
    if name == "SoftmaxLoss":
        t_kwargs["embedding_dimension" if ST_MAJOR >= 6 else "sentence_embedding_dimension"] = D
        m_kwargs["embedding_dimension"] = D
    reference = getattr(st_losses, name)(TorchTable(), **t_kwargs)
    ours = getattr(losses, name)(CountingTable(), **m_kwargs).get_config_dict()
    if not hasattr(reference, "get_config_dict"):  # ST 5.3 has none for this loss; the bridge has ST 6.2's
        assert ST_MAJOR < 6 and ours
        return
    expected = reference.get_config_dict()
    if ST_MAJOR < 6 and name == "CosineSimilarityLoss":  # ST 6.2 added cos_score_transformation
        assert ours == {**expected, "cos_score_transformation": "torch.nn.modules.linear.Identity"}
        return
    assert ours == expected
    assert isinstance(getattr(losses, name)(CountingTable(), **m_kwargs).citation if hasattr(
        reference, "citation") else "", str)


# --- the loss layers ----------------------------------------------------------------------------
def test_mse_projection_save_and_load(tmp_path):
    model = CountingTable()
    loss = losses.MSELoss(model, projection_dim=4)
    path = tmp_path / "projection.safetensors"
    loss.save_projection(path)
    fresh = losses.MSELoss(model)
    fresh.load_projection(path)
    assert fresh.projection_dim == 4
    np.testing.assert_array_equal(np.array(fresh.projection.weight), np.array(loss.projection.weight))
    if ST_MAJOR >= 6:  # ST 6.2 reads the same file
        reference = st_losses.MSELoss(TorchTable(), projection_dim=4)
        reference.load_projection(str(path))
        np.testing.assert_array_equal(reference.projection.bias.detach().numpy(), np.array(loss.projection.bias))
    with pytest.raises(ValueError, match="No projection layer to save"):
        losses.MSELoss(model).save_projection(tmp_path / "none.safetensors")
    with pytest.raises(ValueError, match=r"Saved projection shape \(6 -> 4\) does not match .* \(6 -> 5\)"):
        losses.MSELoss(model, projection_dim=5).load_projection(path)


def test_softmax_classifier_is_the_losss_own_parameters():
    model = CountingTable()
    loss = losses.SoftmaxLoss(model, D, 3)
    params = loss.trainable_parameters()
    assert set(params) == {"model", "classifier"} and set(params["classifier"]) == {"weight", "bias"}
    _, grads = nn.value_and_grad(loss, lambda f, y: loss(f, y))(cols(2), mx.array([0, 1, 2, 1]))
    assert float(mx.abs(grads["classifier"]["weight"]).max()) > 0


@pytest.mark.parametrize("name", ["BatchHardTripletLoss", "BatchAllTripletLoss", "BatchSemiHardTripletLoss",
                                  "BatchHardSoftMarginTripletLoss"])
def test_batch_triplet_losses_take_one_labelled_column(name):
    model = CountingTable()
    loss = getattr(losses, name)(model)
    no_forward(model, lambda: loss(cols(2), mx.array([0, 1, 0, 1])), ValueError, "expects 1 text columns")
    no_forward(model, lambda: loss(cols(1), mx.array([0, 1, 0])), ValueError, r"expects 4 labels \(one per example\)")
    no_forward(model, lambda: loss(cols(1), ["a", "b", "a", "b"]), ValueError, "numeric labels")
    with pytest.raises(ValueError, match=r"one class label per text.*\(4, 2\)"):
        loss.check_labels(mx.zeros((B, 2)), "train dataset")
    assert loss.sentence_embedder is model  # ST's attribute name
    reference = getattr(st_losses, name)(TorchTable())
    if hasattr(reference, "get_config_dict"):  # ST 6.2's (ST 5.3 has none for these)
        assert loss.get_config_dict() == reference.get_config_dict()
    else:
        assert loss.get_config_dict()["distance_metric"] == "euclidean_distance"


def test_distill_pre_flight_reads_the_teacher_scores():
    loss = losses.DistillKLDivLoss(CountingTable())
    with pytest.raises(ValueError, match="teacher scores contain NaN"):
        loss.check_labels(mx.array([[0.0, float("nan")]]), "train dataset")
    loss.check_labels(mx.array([[0.0, 1.0]]), "train dataset")
    assert not loss._checked_teacher_scale  # the first batch is still looked at, as in ST

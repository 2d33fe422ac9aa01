"""The pairwise / regression / distillation / triplet losses against the installed
sentence-transformers (ST 5.3 in .venv, ST 6.2 in .venv-st6) with an embedding-table stand-in for the
model on both sides (features ``{"input_ids": (B, 1)}`` -> ``W[ids]``): loss values and dL/dW (and the
loss's own parameters: SoftmaxLoss's classifier, MSELoss's projection) on the same inputs."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
st = pytest.importorskip("sentence_transformers")

import mlx.core as mx  # noqa: E402
import mlx.nn as nn  # noqa: E402
from mlx.utils import tree_flatten  # noqa: E402

from conftest import ST_MAJOR  # noqa: E402
from mlx_hf_bridge import losses as mlx_losses  # noqa: E402
from mlx_hf_bridge.dense import similarity as mlx_sim  # noqa: E402

if ST_MAJOR >= 6:
    from sentence_transformers.sentence_transformer import losses as st_losses
else:
    from sentence_transformers import losses as st_losses
from sentence_transformers import util as st_util  # noqa: E402

ST = "6.2" if ST_MAJOR >= 6 else "5.3"
VOCAB, DIM, BATCH = 40, 8, 8
TOL = 1e-5


class TorchTable(torch.nn.Module):
    def __init__(self, weight):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.tensor(weight))
        self.device = torch.device("cpu")

    def forward(self, features):
        return {"sentence_embedding": self.weight[features["input_ids"][:, 0]]}

    def get_embedding_dimension(self):
        return self.weight.shape[1]

    get_sentence_embedding_dimension = get_embedding_dimension


class MlxTable(nn.Module):
    def __init__(self, weight):
        super().__init__()
        self.weight = mx.array(weight)

    def __call__(self, features):
        return {"sentence_embedding": self.weight[features["input_ids"][:, 0]]}

    def get_embedding_dimension(self):
        return self.weight.shape[1]


def table(seed=0, scale=1.0):
    return (np.random.default_rng(seed).normal(size=(VOCAB, DIM)) * scale).astype(np.float32)


def batch(n_columns, seed=0, batch_size=BATCH):
    ids = np.random.default_rng(100 + seed).choice(VOCAB, size=(n_columns, batch_size), replace=False)
    return ids


def run_both(name, n_columns, labels, t_kwargs=None, m_kwargs=None, seed=0, scale=1.0, own_params=()):
    """(torch loss, torch grads, mlx loss, mlx grads) of one call on the same W, ids, labels."""
    weight, ids = table(seed, scale), batch(n_columns, seed)
    t_model, m_model = TorchTable(weight), MlxTable(weight)
    t_loss = getattr(st_losses, name)(t_model, **(t_kwargs or {}))
    m_loss = getattr(mlx_losses, name)(m_model, **(m_kwargs if m_kwargs is not None else t_kwargs or {}))
    for attr in own_params:  # the loss's own torch-initialised layer, copied to the MLX side
        layer = getattr(t_loss, attr)
        getattr(m_loss, attr).update({"weight": mx.array(layer.weight.detach().numpy()),
                                      "bias": mx.array(layer.bias.detach().numpy())})
    t_features = [{"input_ids": torch.tensor(column[:, None])} for column in ids]
    m_features = [{"input_ids": mx.array(column[:, None])} for column in ids]
    t_labels = None if labels is None else torch.tensor(labels)
    t_value = t_loss(t_features, t_labels)
    t_value.backward()
    t_grads = {n.replace("sentence_embedder.", "model."): p.grad.numpy()  # ST's name in the batch triplet losses
               for n, p in t_loss.named_parameters() if p.grad is not None}
    if isinstance(m_loss, nn.Module):
        m_value, m_grads = nn.value_and_grad(m_loss, lambda f, y: m_loss(f, y))(m_features, _mx(labels))
    else:
        m_value, m_grads = nn.value_and_grad(m_model, lambda f, y: m_loss(f, y))(m_features, _mx(labels))
        m_grads = {"model": m_grads}
    m_grads = {n: np.array(g) for n, g in tree_flatten(m_grads)}
    t_grads.setdefault("model.weight", np.zeros_like(weight))
    return t_value.item(), t_grads, m_value.item(), m_grads


def _mx(labels):
    return None if labels is None else mx.array(labels)


def assert_close(name, result):
    t_value, t_grads, m_value, m_grads = result
    assert set(m_grads) == set(t_grads), (sorted(m_grads), sorted(t_grads))
    d_value = abs(t_value - m_value)
    d_grad = max(float(np.abs(m_grads[n] - g).max()) for n, g in t_grads.items())
    scale = max(float(np.abs(g).max()) for g in t_grads.values())
    print(f"{name}: loss {t_value:.6g}, |Δloss| {d_value:.1e}, max|Δgrad| {d_grad:.1e} (grad max {scale:.2g})")
    assert np.isfinite(m_value)
    assert d_value <= TOL * max(1.0, abs(t_value)), (t_value, m_value)
    assert d_grad <= TOL * max(1.0, scale), d_grad
    return t_value, scale


def scores(seed=0, n=BATCH, ties=True):
    rng = np.random.default_rng(seed)
    values = rng.uniform(0, 1, size=n).astype(np.float32)
    if ties:
        values[1] = values[0]
        values[3] = values[2] = 0.5
    return values


def binary(seed=0, n=BATCH, positives=None):
    rng = np.random.default_rng(seed)
    values = (rng.uniform(size=n) < 0.5).astype(np.int64)
    if positives is not None:
        values[:] = 0
        values[:positives] = 1
    return values


SIMS = {"cos": ("pairwise_cos_sim",), "dot": ("pairwise_dot_score",), "angle": ("pairwise_angle_sim",)}


def sim(which):
    return getattr(st_util, which), getattr(mlx_sim, which)


# --- CoSENT / AnglE / CosineSimilarity --------------------------------------------------------
@pytest.mark.parametrize("similarity", [None, "pairwise_dot_score", "pairwise_angle_sim"])
@pytest.mark.parametrize("scale", [20.0, 5.0])
def test_cosent(similarity, scale):
    t_kwargs, m_kwargs = {"scale": scale}, {"scale": scale}
    if similarity:
        t_kwargs["similarity_fct"], m_kwargs["similarity_fct"] = sim(similarity)
    value, grad = assert_close("CoSENT", run_both("CoSENTLoss", 2, scores(), t_kwargs, m_kwargs, scale=0.3))
    assert value > 0 and grad > 0


def test_cosent_integer_and_tied_labels():
    labels = np.array([1, 0, 1, 1, 0, 0, 1, 0])
    assert_close("CoSENT int", run_both("CoSENTLoss", 2, labels))


@pytest.mark.parametrize("n_columns,labels", [(2, "scores"), (3, None), (4, None), (4, "scores")])
def test_angle(n_columns, labels):
    labels = scores(1) if labels else None
    assert_close(f"AnglE {n_columns}", run_both("AnglELoss", n_columns, labels))


@pytest.mark.parametrize("variant", ["default", "l1", "transform"])
def test_cosine_similarity(variant):
    t_kwargs = m_kwargs = {}
    if variant == "l1":  # a torch loss module as a script passes it: the bridge translates it
        t_kwargs = m_kwargs = {"loss_fct": torch.nn.L1Loss()}
    elif variant == "transform":
        t_kwargs = {"cos_score_transformation": torch.nn.Identity(), "loss_fct": torch.nn.MSELoss()}
        m_kwargs = {"cos_score_transformation": torch.nn.Identity(), "loss_fct": torch.nn.MSELoss()}
    assert_close(f"CosineSimilarity {variant}", run_both("CosineSimilarityLoss", 2, scores(2), t_kwargs, m_kwargs))


# --- MSE / MarginMSE / DistillKLDiv -----------------------------------------------------------
def teacher(shape, seed=3):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


@pytest.mark.parametrize("n_columns", [1, 2, 3])
def test_mse(n_columns):
    assert_close(f"MSE {n_columns}", run_both("MSELoss", n_columns, teacher((BATCH, DIM))))


@pytest.mark.skipif(ST_MAJOR < 6, reason="3-D labels and projection_dim are ST 6.2's")
@pytest.mark.parametrize("case", ["3d", "projection"])
def test_mse_st6(case):
    if case == "3d":
        assert_close("MSE 3-D", run_both("MSELoss", 2, teacher((BATCH, 2, DIM))))
    else:
        result = run_both("MSELoss", 2, teacher((BATCH, 5)), {"projection_dim": 5}, own_params=("projection",))
        assert {"projection.weight", "projection.bias"} <= set(result[3])
        assert_close("MSE projection", result)


@pytest.mark.parametrize("n_columns,shape", [(3, (BATCH,)), (3, (BATCH, 1)), (3, (BATCH, 2)), (4, (BATCH, 2)),
                                             (4, (BATCH, 3))])
@pytest.mark.parametrize("similarity", [None, "pairwise_cos_sim"])
def test_margin_mse(n_columns, shape, similarity):
    kwargs = {}
    if similarity:
        kwargs = {"similarity_fct": sim(similarity)[0]}
        m_kwargs = {"similarity_fct": sim(similarity)[1]}
    else:
        m_kwargs = {}
    assert_close("MarginMSE", run_both("MarginMSELoss", n_columns, teacher(shape), kwargs, m_kwargs))


@pytest.mark.parametrize("n_columns", [3, 5])
@pytest.mark.parametrize("temperature", [1.0, 2.0, 0.5])
def test_distill_kl_div(n_columns, temperature):
    labels = teacher((BATCH, n_columns - 1)) * 3
    assert_close("DistillKLDiv", run_both("DistillKLDivLoss", n_columns, labels, {"temperature": temperature}))


@pytest.mark.skipif(ST_MAJOR < 6, reason="student / teacher temperatures are ST 6.2's")
def test_distill_kl_div_split_temperatures_and_excluded_candidates():
    kwargs = {"student_temperature": 0.7, "teacher_temperature": 3.0}
    assert_close("DistillKLDiv T_s/T_t", run_both("DistillKLDivLoss", 4, teacher((BATCH, 3)) * 5, kwargs))
    labels = teacher((BATCH, 3))
    labels[0, 2] = labels[3, 1] = -np.inf  # ST 6: an excluded candidate (probability 0)
    assert_close("DistillKLDiv -inf", run_both("DistillKLDivLoss", 4, labels))


# --- Triplet / Contrastive / OnlineContrastive ------------------------------------------------
@pytest.mark.parametrize("metric,margin", [("EUCLIDEAN", 5), ("MANHATTAN", 5), ("COSINE", 0.5), ("EUCLIDEAN", 1.0)])
def test_triplet(metric, margin):
    t_kwargs = {"distance_metric": getattr(st_losses.TripletDistanceMetric, metric), "triplet_margin": margin}
    m_kwargs = {"distance_metric": getattr(mlx_losses.TripletDistanceMetric, metric), "triplet_margin": margin,
                "st_version": ST}  # ST 5.3's EUCLIDEAN / MANHATTAN are negative distances
    value, _ = assert_close(f"Triplet {metric}", run_both("TripletLoss", 3, None, t_kwargs, m_kwargs, scale=0.4))
    assert value > 0


def test_triplet_versions_differ_where_st_changed():
    weight, ids = table(), batch(3)
    features = [{"input_ids": mx.array(column[:, None])} for column in ids]
    model = MlxTable(weight)
    metric = mlx_losses.TripletDistanceMetric.EUCLIDEAN
    new = mlx_losses.TripletLoss(model, metric, 1.0, st_version="6.2")(features).item()
    old = mlx_losses.TripletLoss(model, metric, 1.0, st_version="5.3")(features).item()
    assert new != old
    # the default follows the installed sentence-transformers (as the dense model's semantics do)
    assert mlx_losses.TripletLoss(model, metric, 1.0)(features).item() == (new if ST == "6.2" else old)
    with pytest.raises(ValueError, match="st_version"):
        mlx_losses.TripletLoss(model, st_version="6")


@pytest.mark.parametrize("metric", ["COSINE_DISTANCE", "EUCLIDEAN", "MANHATTAN"])
@pytest.mark.parametrize("size_average", [True, False])
def test_contrastive(metric, size_average):
    margin = 0.5 if metric == "COSINE_DISTANCE" else 3.0
    kwargs = {"distance_metric": getattr(st_losses.SiameseDistanceMetric, metric), "margin": margin,
              "size_average": size_average}
    m_kwargs = {**kwargs, "distance_metric": getattr(mlx_losses.SiameseDistanceMetric, metric)}
    assert_close(f"Contrastive {metric}", run_both("ContrastiveLoss", 2, binary(4), kwargs, m_kwargs, scale=0.5))


@pytest.mark.parametrize("metric", ["COSINE_DISTANCE", "EUCLIDEAN"])
@pytest.mark.parametrize("positives", [None, 1, 0, BATCH - 1, BATCH])
def test_online_contrastive(metric, positives):
    margin = 0.5 if metric == "COSINE_DISTANCE" else 3.0
    kwargs = {"distance_metric": getattr(st_losses.SiameseDistanceMetric, metric), "margin": margin}
    m_kwargs = {**kwargs, "distance_metric": getattr(mlx_losses.SiameseDistanceMetric, metric), "st_version": ST}
    labels = binary(5, positives=positives)
    assert_close(f"OnlineContrastive {metric} {positives}",
                 run_both("OnlineContrastiveLoss", 2, labels, kwargs, m_kwargs, scale=0.5))


# --- Softmax ----------------------------------------------------------------------------------
@pytest.mark.parametrize("flags", [(True, True, False), (True, True, True), (False, True, True), (True, False, False)])
def test_softmax(flags):
    rep, diff, mult = flags
    kwargs = {"num_labels": 3, "concatenation_sent_rep": rep, "concatenation_sent_difference": diff,
              "concatenation_sent_multiplication": mult}
    kwargs["embedding_dimension" if ST_MAJOR >= 6 else "sentence_embedding_dimension"] = DIM
    labels = np.random.default_rng(6).integers(0, 3, size=BATCH)
    result = run_both("SoftmaxLoss", 2, labels, kwargs, own_params=("classifier",))
    assert {"classifier.weight", "classifier.bias", "model.weight"} == set(result[3])
    assert_close(f"Softmax {flags}", result)


@pytest.mark.skipif(ST_MAJOR < 6, reason="class-probability labels are ST 6.2's")
def test_softmax_probability_labels():
    probs = np.random.default_rng(7).dirichlet(np.ones(3), size=BATCH).astype(np.float32)
    kwargs = {"embedding_dimension": DIM, "num_labels": 3}
    assert_close("Softmax probs", run_both("SoftmaxLoss", 2, probs, kwargs, own_params=("classifier",)))


# --- the batch triplet losses (one column, class labels) --------------------------------------
BATCH_TRIPLET = ["BatchHardTripletLoss", "BatchAllTripletLoss", "BatchSemiHardTripletLoss",
                 "BatchHardSoftMarginTripletLoss"]
EUCLIDEAN = "euclidean_distance" if ST_MAJOR >= 6 else "eucledian_distance"


def distance(name, squared=False):
    if ST_MAJOR >= 6:
        reference = st_losses.BatchHardTripletLossDistanceFunction
    else:
        from sentence_transformers.losses.BatchHardTripletLoss import BatchHardTripletLossDistanceFunction as reference
    pair = getattr(reference, name), getattr(mlx_losses.BatchHardTripletLossDistanceFunction, name)
    if squared:
        return tuple(lambda e, f=f: f(e, squared=True) for f in pair)
    return pair


@pytest.mark.parametrize("name", BATCH_TRIPLET)
@pytest.mark.parametrize("metric", [EUCLIDEAN, "cosine_distance", "squared"])
@pytest.mark.parametrize("labels", ["groups", "singletons", "one-class"])
def test_batch_triplet(name, metric, labels):
    t_metric, m_metric = distance(EUCLIDEAN, squared=True) if metric == "squared" else distance(metric)
    margin = {} if name == "BatchHardSoftMarginTripletLoss" else {"margin": 0.5 if metric == "cosine_distance" else 2.0}
    values = {"groups": np.array([0, 1, 2, 0, 1, 2, 0, 1]), "singletons": np.array([0, 1, 2, 3, 4, 5, 6, 0]),
              "one-class": np.zeros(BATCH, np.int64)}[labels]
    if name == "BatchSemiHardTripletLoss" and labels == "one-class" and ST_MAJOR < 6:
        pytest.skip("ST 5.3 divides by 0 positives (NaN) only here; the bridge follows ST 6.2's 0")
    result = run_both(name, 1, values, {"distance_metric": t_metric, **margin}, {"distance_metric": m_metric, **margin},
                      scale=0.5)
    assert_close(f"{name} {metric} {labels}", result)


# --- compiled steps (torch_compile=True compiles the step) -------------------------------------
COMPILED = [("CoSENTLoss", 2, "scores", {}), ("AnglELoss", 3, None, {}), ("CosineSimilarityLoss", 2, "scores", {}),
            ("MSELoss", 2, "teacher", {}), ("MarginMSELoss", 3, "margin", {}), ("DistillKLDivLoss", 3, "kd", {}),
            ("TripletLoss", 3, None, {}), ("ContrastiveLoss", 2, "binary", {}), ("OnlineContrastiveLoss", 2, "binary", {}),
            ("SoftmaxLoss", 2, "class", {"embedding_dimension": DIM, "num_labels": 3}),
            ("BatchAllTripletLoss", 1, "class", {}), ("BatchSemiHardTripletLoss", 1, "class", {})]


@pytest.mark.parametrize("name,n_columns,kind,kwargs", COMPILED)
def test_compiled_steps_equal_eager_steps(name, n_columns, kind, kwargs):
    from mlx_hf_bridge.engine.optim import AdamW
    from mlx_hf_bridge.engine.step import StepRunner

    labels = {"scores": scores(), "teacher": teacher((BATCH, DIM)), "margin": teacher((BATCH,)),
              "kd": teacher((BATCH, 2)), "binary": binary(), "class": np.array([0, 1, 2, 0, 1, 2, 0, 1]), None: None}[kind]
    runs = []
    for compile in (False, True):
        mx.random.seed(0)  # SoftmaxLoss's classifier init
        model = MlxTable(table())
        loss = getattr(mlx_losses, name)(model, **kwargs)
        trained = loss if isinstance(loss, nn.Module) else model
        runner = StepRunner(trained, AdamW.for_model(trained, 1e-2), 1.0, compile=compile)
        features = [{"input_ids": mx.array(column[:, None])} for column in batch(n_columns)]
        runs.append([runner.step([(loss, features, _mx(labels))], 1.0)[0] for _ in range(3)])
    np.testing.assert_allclose(runs[1], runs[0], rtol=1e-6)
    assert runs[0][0] != runs[0][-1]


@pytest.mark.parametrize("name,n_columns,kind", [("MSELoss", 2, "teacher"), ("CoSENTLoss", 2, "scores"),
                                                 ("MarginMSELoss", 3, "margin"), ("BatchAllTripletLoss", 1, "class")])
def test_inside_matryoshka(name, n_columns, kind):
    """Wrapped by MatryoshkaLoss (helper B's), as ST's: the teacher embeddings are cut with the student's."""
    if not hasattr(mlx_losses, "MatryoshkaLoss"):
        pytest.skip("MatryoshkaLoss not in this checkout yet")
    labels = {"teacher": teacher((BATCH, DIM)), "scores": scores(), "margin": teacher((BATCH,)),
              "class": np.array([0, 1, 2, 0, 1, 2, 0, 1])}[kind]
    weight, ids = table(), batch(n_columns)
    t_model, m_model = TorchTable(weight), MlxTable(weight)
    t_loss = st_losses.MatryoshkaLoss(t_model, getattr(st_losses, name)(t_model), [DIM, 4, 2])
    m_loss = mlx_losses.MatryoshkaLoss(m_model, getattr(mlx_losses, name)(m_model), [DIM, 4, 2])
    t_value = t_loss([{"input_ids": torch.tensor(c[:, None])} for c in ids], torch.tensor(labels))
    t_value.backward()
    m_value, m_grads = nn.value_and_grad(m_model, lambda f, y: m_loss(f, y))(
        [{"input_ids": mx.array(c[:, None])} for c in ids], mx.array(labels))
    assert abs(t_value.item() - m_value.item()) <= TOL * max(1.0, abs(t_value.item()))
    reference = t_model.weight.grad.numpy()
    assert float(np.abs(np.array(m_grads["weight"]) - reference).max()) <= TOL * max(1.0, float(np.abs(reference).max()))

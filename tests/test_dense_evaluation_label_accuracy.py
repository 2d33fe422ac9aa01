"""LabelAccuracyEvaluator against the installed sentence-transformers (5.3 in .venv, 6.2 in .venv-st6):
the same tiny BERT folder and the same SoftmaxLoss classifier weights on both sides, ST's
``InputExample`` rows in a torch ``DataLoader``: metric keys and values equal, CSV files byte-equal
(a new file, then an appended row), the same ``primary_metric``; bad input refused at construction."""

from __future__ import annotations

import random

import mlx.core as mx
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import ST_MAJOR, _save_tiny, random_sentence, tiny_bert_config  # noqa: E402
from mlx_hf_bridge import losses as mlx_losses  # noqa: E402
from mlx_hf_bridge.sentence_transformers.evaluation import LabelAccuracyEvaluator  # noqa: E402

if ST_MAJOR >= 6:
    from sentence_transformers.sentence_transformer import losses as st_losses
    from sentence_transformers.sentence_transformer.evaluation import LabelAccuracyEvaluator as STLabelAccuracy
else:
    from sentence_transformers import losses as st_losses
    from sentence_transformers.evaluation import LabelAccuracyEvaluator as STLabelAccuracy


@pytest.fixture(scope="module")
def pair(tmp_path_factory, minilm_dir):
    from sentence_transformers import SentenceTransformer as TorchST

    from mlx_hf_bridge.dense import SentenceTransformer

    folder = _save_tiny(tmp_path_factory.mktemp("label-acc"), tiny_bert_config(num_hidden_layers=2), minilm_dir, 5, 0.2)
    torch_model, mlx_model = TorchST(str(folder), device="cpu"), SentenceTransformer(str(folder))
    torch.manual_seed(0)
    kwargs = {"num_labels": 3, "concatenation_sent_multiplication": True}
    torch_loss = st_losses.SoftmaxLoss(torch_model, 32, **kwargs)
    mlx_loss = mlx_losses.SoftmaxLoss(mlx_model, 32, **kwargs)
    with torch.no_grad():  # a larger classifier: predictions far from ties
        torch_loss.classifier.weight.mul_(20.0)
    mlx_loss.classifier.weight = mx.array(torch_loss.classifier.weight.detach().numpy())
    mlx_loss.classifier.bias = mx.array(torch_loss.classifier.bias.detach().numpy())
    return torch_model, torch_loss, mlx_model, mlx_loss


def examples(n=29, seed=0):
    from sentence_transformers import InputExample

    rng = random.Random(seed)
    return [InputExample(texts=[random_sentence(rng, 2, 12, [","]), random_sentence(rng, 2, 12, ["."])],
                         label=rng.randrange(3)) for _ in range(n)]


@pytest.mark.parametrize("name,batch_size", [("", 8), ("dev", 5)])
def test_metrics_and_csv_equal_sentence_transformers(pair, tmp_path, name, batch_size):
    from torch.utils.data import DataLoader

    torch_model, torch_loss, mlx_model, mlx_loss = pair
    rows = examples()
    theirs = STLabelAccuracy(DataLoader(rows, batch_size=batch_size), name=name, softmax_model=torch_loss)
    ours = LabelAccuracyEvaluator(DataLoader(rows, batch_size=batch_size), name=name, softmax_model=mlx_loss)
    for epoch, steps in ((-1, -1), (1, 7)):
        want = theirs(torch_model, output_path=str(tmp_path / "st"), epoch=epoch, steps=steps)
        got = ours(mlx_model, output_path=str(tmp_path / "mlx"), epoch=epoch, steps=steps)
        assert got == want, (got, want)
    key = f"{name}_accuracy" if name else "accuracy"
    print("accuracy", got)
    assert list(got) == [key] and 0 < got[key] < 1, got  # some right, some wrong
    assert ours.primary_metric == theirs.primary_metric == key
    assert ours.csv_file == theirs.csv_file
    assert (tmp_path / "mlx" / ours.csv_file).read_bytes() == (tmp_path / "st" / theirs.csv_file).read_bytes()
    # a plain list of examples is accepted too
    assert LabelAccuracyEvaluator(rows, name=name, softmax_model=mlx_loss)(mlx_model) == got
    assert ours.description == theirs.description


def test_bad_input_is_refused_before_encoding(pair):
    from sentence_transformers import InputExample

    _, _, _, mlx_loss = pair
    with pytest.raises(ValueError, match="needs softmax_model="):
        LabelAccuracyEvaluator(examples(3))
    with pytest.raises(ValueError, match="no examples"):
        LabelAccuracyEvaluator([], softmax_model=mlx_loss)
    with pytest.raises(ValueError, match="example 1 has label='yes'"):
        LabelAccuracyEvaluator([examples(1)[0], InputExample(texts=["a", "b"], label="yes")], softmax_model=mlx_loss)
    with pytest.raises(ValueError, match="example 0 has texts=\\['a'\\]; each needs two texts"):
        LabelAccuracyEvaluator([InputExample(texts=["a"], label=1)], softmax_model=mlx_loss)
    with pytest.raises(ValueError, match="needs a DataLoader"):
        LabelAccuracyEvaluator(iter(examples(2)), softmax_model=mlx_loss)
    assert np.isfinite(LabelAccuracyEvaluator(examples(2), softmax_model=mlx_loss)(pair[2])["accuracy"])

"""XLM-RoBERTa as a dense SentenceTransformer (multilingual-e5 style: mean pooling + Normalize;
bge-m3 style: CLS pooling + Normalize), folders saved by the installed ST (5.3 in .venv, 6.2 in
.venv-st6): ``encode`` = ST's (packed and padded), the bridge's save loads in ST with the same
embeddings and bit-identical weights, and (cached) MNRL per-step losses over 10 full-batch AdamW steps
equal ST's. The backbone's own parity is in test_dense_xlm_roberta.py."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sentence_transformers")

from test_dense_losses_pairwise_training import (  # noqa: E402,F401  (one_torch_thread: autouse fixture)
    assert_parity,
    features,
    one_torch_thread,
    run_mlx,
    run_torch,
    texts as text_columns,
)
from test_dense_model_helpers import ST6, max_diff, reference, texts, write_st_folder  # noqa: E402
from xlm_roberta_helpers import save_tiny, write_xlmr_tokenizer  # noqa: E402

from conftest import ST_MAJOR  # noqa: E402
from mlx_hf_bridge import kernels  # noqa: E402
from mlx_hf_bridge import losses as mlx_losses  # noqa: E402
from mlx_hf_bridge.dense import SentenceTransformer  # noqa: E402
from mlx_hf_bridge.models import packing  # noqa: E402

if ST_MAJOR >= 6:
    from sentence_transformers.sentence_transformer import losses as st_losses
else:
    from sentence_transformers import losses as st_losses

TOL = 1e-5
STYLES = {"e5-mean": "mean", "bge-m3-cls": "cls"}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    tokenizer = write_xlmr_tokenizer(tmp_path_factory.mktemp("xlmr-tokenizer"))[0]
    backbones = {
        "default-init": save_tiny(tmp_path_factory.mktemp("xlmr"), tokenizer, seed=0),
        "init-0.2": save_tiny(tmp_path_factory.mktemp("xlmr-big"), tokenizer, seed=1, init_scale=0.2),
    }
    return {(style, init): write_st_folder(tmp_path_factory.mktemp(f"st-{style}-{init}"), backbone, modes=mode,
                                           normalize=True)
            for style, mode in STYLES.items() for init, backbone in backbones.items()}


@pytest.mark.parametrize("style", list(STYLES))
@pytest.mark.parametrize("init", ["default-init", "init-0.2"])
def test_encode_and_save_match_sentence_transformers(folders, tmp_path, monkeypatch, style, init):
    folder = folders[(style, init)]
    sentences = texts(13, seed=2, n_max=40)
    ref = reference(folder).encode(sentences, batch_size=13)
    model = SentenceTransformer(str(folder))
    assert type(model.transformer.auto_model).__module__.endswith("xlm_roberta")
    plans, plan = [], packing.SequencePacking.plan
    monkeypatch.setattr(packing.SequencePacking, "plan", lambda mask: plans.append(plan(mask)) or plans[-1])
    packed = model.encode(sentences, batch_size=13)  # padding-free: rows packed end to end where the kernel runs
    model.padding_free = False
    padded = model.encode(sentences, batch_size=13)
    # one batch, packed where the fused kernel runs; padding_free=False never plans a packing
    assert [p is not None for p in plans] == ([True] if kernels.available() else [])
    print(f"ST {ST_MAJOR} {style} {init}: packed {max_diff(packed, ref):.1e}, padded {max_diff(padded, ref):.1e}")
    assert max_diff(packed, ref) <= TOL and max_diff(padded, ref) <= TOL
    model.save_pretrained(str(tmp_path / "saved"))
    reloaded = reference(tmp_path / "saved")
    assert max_diff(packed, reloaded.encode(sentences, batch_size=13)) <= TOL
    original = reference(folder)
    backbone = (lambda m: m[0].model) if ST6 else (lambda m: m[0].auto_model)
    assert type(backbone(reloaded)).__name__ == "XLMRobertaModel"
    saved_state, original_state = backbone(reloaded).state_dict(), backbone(original).state_dict()
    assert set(saved_state) == set(original_state)
    for name, tensor in original_state.items():
        assert torch.equal(tensor, saved_state[name]), name


@pytest.mark.parametrize("name, kwargs", [
    ("MultipleNegativesRankingLoss", {}),
    ("CachedMultipleNegativesRankingLoss", {"mini_batch_size": 3}),
])
def test_mnrl_training_matches_sentence_transformers(folders, name, kwargs):
    folder = folders[("e5-mean", "init-0.2")]
    torch_model = reference(folder)
    torch_model.train()
    mlx_model = SentenceTransformer(str(folder))
    mlx_model.train()
    t_feats, m_feats = features(torch_model, mlx_model, text_columns(3, seed=4))
    assert_parity(f"xlm-r {name} (ST {ST_MAJOR})",
                  run_torch(getattr(st_losses, name)(torch_model, **kwargs), (t_feats, None)),
                  run_mlx(getattr(mlx_losses, name)(mlx_model, **kwargs), (m_feats, None)))

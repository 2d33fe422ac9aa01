"""LFM2 (``mlx_hf_bridge/models/lfm2.py``) against transformers' ``Lfm2Model`` on torch (5.3 in .venv, 5.24
in .venv-st6): every layer, padded (right / left) and packed, gradients, saves, refusals. As a
sentence-transformers / PyLate backbone: ``tests/test_dense_lfm2_st.py``.

Tiny random configs (4 layers: conv, attention, conv, attention; hidden 64, 4 query heads over 2 key /
value heads) at transformers' init and at a larger one (std 0.2, so the layers dominate); causal and
bidirectional attention (``config.is_causal = False``), conv biases and a longer kernel, and the
feed-forward width rules (``block_auto_adjust_ff_dim`` / ``block_ffn_dim_multiplier`` / ``block_multiple_of``).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import mlx.core as mx  # noqa: E402
import mlx.nn as nn  # noqa: E402
from mlx.utils import tree_flatten  # noqa: E402

from mlx_hf_bridge.loading import build_model, load_config, load_weights, save_encoder  # noqa: E402
from test_dense_qwen3 import VOCAB, batch  # noqa: E402

LAYERS = ["conv", "full_attention", "conv", "full_attention"]
MODES = {  # name: config overrides
    "causal": {},
    "bidirectional": {"is_causal": False},
    "conv-bias-kernel4": {"conv_bias": True, "conv_L_cache": 4},
    "ff-multiplier": {"block_ffn_dim_multiplier": 1.5, "block_multiple_of": 48},  # int(1.5 * 64) = 96 -> 96
    "ff-no-multiplier": {"block_ffn_dim_multiplier": None, "intermediate_size": 100},  # int(200 / 3) = 66, no rounding
    "ff-no-adjust": {"block_auto_adjust_ff_dim": False, "full_attn_idxs": [1]},  # layer_types from full_attn_idxs
}


def lfm2_config(**overrides):
    from transformers import Lfm2Config

    is_causal = overrides.pop("is_causal", True)
    kw = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=4, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=512, layer_types=LAYERS, block_multiple_of=32,
              rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
              pad_token_id=VOCAB - 1, eos_token_id=VOCAB - 1, bos_token_id=VOCAB - 1)
    if "full_attn_idxs" in overrides:
        kw.pop("layer_types")
    kw.update(overrides)
    if kw.get("block_ffn_dim_multiplier", 1.0) is None:
        from packaging.version import Version
        from transformers import __version__

        if Version(__version__) >= Version("5.5"):
            pytest.skip(f"transformers {__version__}'s Lfm2Config refuses block_ffn_dim_multiplier: null (5.3 reads it)")
    config = Lfm2Config(**kw)
    if not is_causal:
        config.is_causal = False  # saved in config.json; transformers' mask builders read it
    return config


def torch_lfm2(config, seed=0, init_scale=None, lm=False):
    from transformers import Lfm2ForCausalLM, Lfm2Model

    torch.manual_seed(seed)
    model = (Lfm2ForCausalLM if lm else Lfm2Model)(config).eval()
    if init_scale is not None:
        with torch.no_grad():
            for name, p in model.named_parameters():
                if (p.dim() > 1 and "embed_tokens" not in name) or name.endswith(".bias"):
                    p.normal_(0.0, init_scale)  # conv kernels and biases too
                elif "norm" in name:
                    p.uniform_(0.5, 1.5)  # RMSNorm weights other than 1 (q / k norms included)
    return model


def last_and_layers_diff(last, hidden, ref):
    rel = [float(np.abs(np.array(got) - want.numpy()).max()) / max(1.0, float(np.abs(want.numpy()).max()))
           for got, want in zip(hidden, ref.hidden_states)]
    return float(np.abs(np.array(last) - ref.last_hidden_state.numpy()).max()), max(rel)


# --- the encoder --------------------------------------------------------------------------------
@pytest.mark.parametrize("init_scale", [None, 0.2])
@pytest.mark.parametrize("mode", list(MODES))
def test_hidden_states_match_transformers(tmp_path, mode, init_scale):
    """Every layer's output at every position (padded ones too: PyLate scores its non-attended query
    expansion pads), right- and left-padded and without a mask, within 1e-5; the bridge's distance to a
    float64 run of the same torch model is of the size of torch float32's own."""
    config = lfm2_config(**MODES[mode])
    torch_model = torch_lfm2(config, init_scale=init_scale)
    torch_model.save_pretrained(str(tmp_path))
    model = build_model(load_config(tmp_path), load_weights(tmp_path))
    assert model.args.feed_forward_size == torch_model.layers[0].feed_forward.w1.out_features
    assert model.args.layer_types == config.layer_types
    reference64 = copy.deepcopy(torch_model).double()
    rng = np.random.default_rng(1)
    for side in ("right", "left", "no mask"):
        ids, mask = batch("right" if side == "no mask" else side, rng)
        t_mask, m_mask = (None, None) if side == "no mask" else (torch.tensor(mask), mx.array(mask))
        with torch.no_grad():
            ref = torch_model(torch.tensor(ids), attention_mask=t_mask, output_hidden_states=True)
            ref64 = reference64(torch.tensor(ids), attention_mask=t_mask).last_hidden_state.numpy()
        last, hidden = model(mx.array(ids), m_mask, output_hidden_states=True)
        assert len(hidden) == len(ref.hidden_states) == config.num_hidden_layers + 1
        assert torch_model.config._attn_implementation == "sdpa"  # what ST / PyLate load
        diff, rel = last_and_layers_diff(last, hidden, ref)
        scale = float(np.abs(ref64).max())
        # of the output's scale, as the layers: float32 rounding grows with it (at init 0.2 the scale is ~4 and
        # on an Intel host left padding gave 1.1e-5 absolute at scale 5.0: the bridge 5.4e-6 from float64, torch 1.0e-5)
        assert diff <= 1e-5 * max(1.0, scale) and rel <= 1e-5, (side, diff, rel)
        ours64, theirs64 = (float(np.abs(np.array(x) - ref64).max()) for x in (last, ref.last_hidden_state.numpy()))
        print(f"{mode} init={init_scale} {side}: last max|d| {diff:.1e} (scale {scale:.2f}), layers rel {rel:.1e}; "
              f"to float64: bridge {ours64:.1e}, torch {theirs64:.1e}")
        assert ours64 <= 3 * theirs64 + 1e-6 * scale


@pytest.mark.parametrize("mode", ["causal", "conv-bias-kernel4"])
def test_a_single_padded_row_as_the_installed_transformers_and_the_fix_as_an_option(tmp_path, mode):
    """transformers 5.3 does not zero the pads before the convolution for a batch of one row (5.24 does):
    a left-padded row's pads then reach its first real tokens. By default the bridge does what the
    installed transformers does; ``mask_single_row_padding=True`` gives what that row gets in a batch of
    two (the zeroing applied), in either venv."""
    import transformers

    torch_model = torch_lfm2(lfm2_config(**MODES[mode]), init_scale=0.2)
    torch_model.save_pretrained(str(tmp_path))
    model = build_model(load_config(tmp_path), load_weights(tmp_path))
    ids = np.random.default_rng(6).integers(0, VOCAB, size=(1, 9))
    mask = np.array([[0] * 4 + [1] * 5])  # 4 pads, then 5 real tokens
    with torch.no_grad():
        alone = torch_model(torch.tensor(ids), attention_mask=torch.tensor(mask)).last_hidden_state.numpy()
        pair = torch_model(torch.tensor(np.repeat(ids, 2, 0)), attention_mask=torch.tensor(np.repeat(mask, 2, 0)))
        in_batch = pair.last_hidden_state.numpy()[:1]
    quirk = transformers.__version__.startswith("5.3.")
    assert model.args.mask_single_row_padding is (not quirk)
    real = mask.astype(bool)
    gap = float(np.abs(alone[real] - in_batch[real]).max())
    assert (gap > 1e-3) if quirk else (gap <= 1e-5), gap  # 5.24: the same up to float32 (batch shapes)
    default = np.array(model(mx.array(ids), mx.array(mask)))
    model.args.mask_single_row_padding = True
    fixed = np.array(model(mx.array(ids), mx.array(mask)))
    print(f"transformers {transformers.__version__} single left-padded row: batch-of-one vs in-batch gap {gap:.1e}; "
          f"bridge default {np.abs(default - alone).max():.1e}, fix {np.abs(fixed - in_batch).max():.1e}")
    assert float(np.abs(default - alone).max()) <= 1e-5
    assert float(np.abs(fixed - in_batch).max()) <= 1e-5


@pytest.mark.parametrize("mode", ["causal", "conv-bias-kernel4"])
def test_packed_batch_equals_padded_and_gradients_match_torch(tmp_path, mode):
    """The padding-free packed row gives the padded batch's outputs at real tokens and 0 at padding (each
    convolution reads only its own sequence); the gradient of a masked weighted sum of the last hidden
    state = torch's (both layouts)."""
    config = lfm2_config(**MODES[mode])
    torch_model = torch_lfm2(config, init_scale=0.2)
    torch_model.save_pretrained(str(tmp_path))
    model = build_model(load_config(tmp_path), load_weights(tmp_path))
    ids, mask = batch("right", np.random.default_rng(2), B=6, L=24)
    ids[0, 3] = VOCAB - 1  # the pad token as a real token: torch's padding_idx row gets no gradient
    weights = np.random.default_rng(3).normal(size=(*ids.shape, 64)).astype(np.float32) * mask[..., None]
    torch_model.zero_grad()
    (torch_model(torch.tensor(ids), attention_mask=torch.tensor(mask)).last_hidden_state * torch.tensor(weights)).sum().backward()
    ref = {n: p.grad.numpy() for n, p in torch_model.named_parameters()}
    scale = max(float(np.abs(g).max()) for g in ref.values())
    padded = np.array(model(mx.array(ids), mx.array(mask)))
    model.pack_sequences = True
    assert model._packing(mx.array(mask)) is not None  # this batch packs (it saves operations)
    packed = np.array(model(mx.array(ids), mx.array(mask)))
    real = mask.astype(bool)
    assert float(np.abs(packed[real] - padded[real]).max()) <= 1e-5 * max(1.0, float(np.abs(padded).max()))
    assert not packed[~real].any()
    for pack in (False, True):
        model.pack_sequences = pack
        loss = lambda m: (m(mx.array(ids), mx.array(mask)) * mx.array(weights)).sum()  # noqa: E731
        grads = dict(tree_flatten(nn.value_and_grad(model, loss)(model)[1]))
        assert set(grads) == set(ref)
        assert not ref["embed_tokens.weight"][VOCAB - 1].any() and not np.array(grads["embed_tokens.weight"])[VOCAB - 1].any()
        worst = max(float(np.abs(np.array(grads[n]) - ref[n]).max()) for n in ref)
        print(f"{mode} packed={pack}: gradients max|d| {worst:.1e} of the largest entry {scale:.2f}")
        assert worst <= 1e-5 * scale, (pack, worst, scale)


def test_packed_convolutions_do_not_cross_sequences():
    """Packing without the per-sequence kernel mask would differ: the next sequence's first tokens would
    read the previous one's last (so the packed = padded check above covers the boundary)."""
    from mlx_hf_bridge.models import lfm2

    args = lfm2.ModelArgs.from_dict({**lfm2_config().to_dict(), "conv_L_cache": 3})
    model = lfm2.Model(args)
    mx.eval(model.parameters())
    ids, mask = batch("right", np.random.default_rng(7), B=6, L=24)
    padded = np.array(model(mx.array(ids), mx.array(mask)))
    model.pack_sequences = True
    original = lfm2.Model._same_segment
    try:
        lfm2.Model._same_segment = lambda self, segments, dtype: None
        leaky = np.array(model(mx.array(ids), mx.array(mask)))
    finally:
        lfm2.Model._same_segment = original
    real = mask.astype(bool)
    assert float(np.abs(leaky[real] - padded[real]).max()) > 1e-3


def test_gradient_checkpointing_recomputes_the_same_gradients(tmp_path):
    from mlx_hf_bridge.engine.remat import gradient_checkpointing

    torch_lfm2(lfm2_config(), init_scale=0.2).save_pretrained(str(tmp_path))
    model = build_model(load_config(tmp_path), load_weights(tmp_path))
    ids, mask = batch("left", np.random.default_rng(4))
    loss = lambda m: (m(mx.array(ids), mx.array(mask)) ** 2).sum()  # noqa: E731
    plain = dict(tree_flatten(nn.value_and_grad(model, loss)(model)[1]))
    with gradient_checkpointing(model) as layer_class:
        assert layer_class.__name__ == "Lfm2DecoderLayer"
        checkpointed = dict(tree_flatten(nn.value_and_grad(model, loss)(model)[1]))
    worst = max(float(np.abs(np.array(checkpointed[n]) - np.array(g)).max()) for n, g in plain.items())
    assert worst <= 1e-6 * max(float(np.abs(np.array(g)).max()) for g in plain.values())


def test_save_reloads_in_transformers_and_causal_lm_checkpoints_load(tmp_path):
    from transformers import Lfm2Model

    lm = torch_lfm2(lfm2_config(**MODES["conv-bias-kernel4"], is_causal=False), init_scale=0.2, lm=True)
    lm.save_pretrained(str(tmp_path / "lm"))  # model.* keys (+ the tied lm_head)
    model = build_model(load_config(tmp_path / "lm"), load_weights(tmp_path / "lm"))
    save_encoder(model, tmp_path / "out")
    again = Lfm2Model.from_pretrained(str(tmp_path / "out")).eval()
    assert again.config.is_causal is False and again.config.layer_types == LAYERS and again.config.conv_L_cache == 4
    saved = again.state_dict()
    assert set(saved) == set(lm.model.state_dict())
    for name, value in lm.model.state_dict().items():
        assert torch.equal(saved[name], value), name
    ids = torch.tensor([[5, 17, 300, 9, 44, 2, 8]])
    with torch.no_grad():
        want = lm.model(ids).last_hidden_state.numpy()
    assert float(np.abs(np.array(model(mx.array(ids.numpy()))) - want).max()) < 1e-5


def test_a_config_json_in_liquid_ais_spelling_builds_what_transformers_builds():
    """LiquidAI's config.json keys (``block_ff_dim``, ``full_attn_idxs``, a flat ``rope_theta``, no
    ``layer_types``) give transformers' layer pattern, feed-forward width and RoPE base."""
    from transformers import Lfm2Config

    from mlx_hf_bridge.models.lfm2 import ModelArgs

    raw = {"model_type": "lfm2", "hidden_size": 64, "num_hidden_layers": 6, "num_attention_heads": 4,
           "num_key_value_heads": 2, "block_ff_dim": 200, "block_multiple_of": 32, "block_ffn_dim_multiplier": 1.0,
           "full_attn_idxs": [2, 5], "rope_theta": 1e6, "conv_L_cache": 3}
    args, config = ModelArgs.from_dict(raw), Lfm2Config(**{k: v for k, v in raw.items() if k != "model_type"})
    assert args.layer_types == config.layer_types == ["conv", "conv", "full_attention"] * 2
    from transformers.models.lfm2 import modeling_lfm2

    assert args.feed_forward_size == modeling_lfm2.Lfm2MLP(config).w1.out_features == 160
    assert args.theta == config.rope_parameters["rope_theta"] == 1e6


@pytest.mark.parametrize("overrides,message", [
    ({"rope_parameters": {"rope_type": "yarn", "rope_theta": 1e6, "factor": 4.0, "original_max_position_embeddings": 64}},
     "rope_type='yarn' is not supported"),
    ({"layer_types": ["conv", "sliding_attention", "conv", "full_attention"]}, r"unknown layer type\(s\) \['sliding_attention'\]"),
    ({"layer_types": ["conv", "full_attention"]}, "2 entries for num_hidden_layers=4"),
    ({"num_key_value_heads": 3}, "not a multiple of num_key_value_heads=3"),
])
def test_configs_it_cannot_build_are_refused(overrides, message):
    from mlx_hf_bridge.models.lfm2 import ModelArgs

    config = lfm2_config().to_dict()
    config.update(overrides)
    with pytest.raises(ValueError, match=message):
        ModelArgs.from_dict(config)


def test_missing_tensor_is_named(tmp_path):
    torch_lfm2(lfm2_config()).save_pretrained(str(tmp_path))
    weights = load_weights(tmp_path)
    del weights["layers.2.conv.conv.weight"]
    with pytest.raises(ValueError, match=r"missing: layers\.2\.conv\.conv\.weight"):
        build_model(load_config(tmp_path), weights)


def test_a_folder_whose_layer_types_cannot_be_built_is_refused_before_its_weights(tmp_path):
    import json

    torch_lfm2(lfm2_config()).save_pretrained(str(tmp_path))
    config = json.loads((tmp_path / "config.json").read_text())
    config["layer_types"][1] = "linear_attention"
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "model.safetensors").write_bytes(b"not read")
    with pytest.raises(ValueError, match=r"unknown layer type\(s\) \['linear_attention'\]"):
        load_config(tmp_path)

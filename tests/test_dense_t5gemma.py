"""The T5Gemma encoder (``mlx_hf_bridge/models/t5gemma.py``) against transformers' ``T5GemmaEncoderModel``
on torch (5.3 in .venv, 5.24 in .venv-st6), as sentence-transformers loads it (``config.is_encoder_decoder
= False``, decoder weights ignored). As a dense / multi-vector backbone: ``tests/test_dense_t5gemma_st.py``.

Tiny random configs (4 layers: local, global, local, global, transformers' default pattern; hidden 64,
4 query heads over 2 key/value heads, head_dim 16, ``query_pre_attn_scalar`` 24, a sliding window of 3,
shorter than the inputs) at transformers' init and at a larger one (std 0.2, norm offsets in
[-0.5, 0.5], so the layers dominate). The reference is the torch model read back from the saved
folder with the installed transformers' default attention: SDPA in 5.3 (which drops
``attn_logit_softcapping``), eager in 5.24 (which applies it). Token ids are those of the Gemma-style
tokenizer of ``tests/test_dense_gemma3.py``.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import mlx.core as mx  # noqa: E402
import mlx.nn as nn  # noqa: E402
from mlx.utils import tree_flatten  # noqa: E402

from mlx_hf_bridge.loading import build_model, load_config, load_weights, save_encoder  # noqa: E402
from test_dense_gemma3 import BOS_ID, EOS_ID, PAD_ID, VOCAB, batch  # noqa: E402

MODES = {  # name: encoder sub-config overrides
    "default": {},
    "softcap-5": {"attn_logit_softcapping": 5.0},
    "linear-rope-biases-window-5": {"rope_parameters": {"rope_type": "linear", "factor": 2.0, "rope_theta": 1e5},
                                    "attention_bias": True, "sliding_window": 5, "attn_logit_softcapping": None},
}


def t5gemma_config(encoder_decoder=False, **overrides):
    from transformers import T5GemmaConfig

    encoder = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=4, num_attention_heads=4,
                   num_key_value_heads=2, head_dim=16, query_pre_attn_scalar=24, max_position_embeddings=512,
                   sliding_window=3, pad_token_id=PAD_ID, eos_token_id=EOS_ID, bos_token_id=BOS_ID)
    encoder.update(overrides)
    return T5GemmaConfig(encoder=encoder, decoder=dict(encoder), is_encoder_decoder=encoder_decoder, vocab_size=VOCAB,
                         pad_token_id=PAD_ID, eos_token_id=EOS_ID, bos_token_id=BOS_ID)


def init_larger(model, init_scale):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if (p.dim() > 1 and "embed_tokens" not in name) or name.endswith(".bias"):
                p.normal_(0.0, init_scale)
            elif "norm" in name:
                p.uniform_(-0.5, 0.5)  # Gemma norms scale by 1 + w (initialised w = 0)
    return model


def torch_t5gemma(config, seed=0, init_scale=None):
    from transformers import T5GemmaEncoderModel

    torch.manual_seed(seed)
    model = T5GemmaEncoderModel(config).eval()
    return init_larger(model, init_scale) if init_scale is not None else model


def saved_and_reloaded(torch_model, folder, **kwargs):
    """Save, and the torch encoder transformers reads back (ST's ``T5GemmaEncoderModel.from_pretrained``)."""
    from transformers import T5GemmaEncoderModel

    torch_model.save_pretrained(str(folder))
    return T5GemmaEncoderModel.from_pretrained(str(folder), **kwargs).eval()


def installed_default_attention():
    import transformers

    return "sdpa" if transformers.__version__.startswith("5.3.") else "eager"


def assert_hidden_states_match(model, torch_model, label, rng):
    reference64 = copy.deepcopy(torch_model).double()
    for side in ("right", "left", "no mask"):
        ids, mask = batch(side, rng)
        if side == "no mask":
            ids[1, 5:] = PAD_ID  # transformers' default mask: input_ids != pad_token_id
        t_mask, m_mask = (None, None) if side == "no mask" else (torch.tensor(mask), mx.array(mask))
        with torch.no_grad():
            ref = torch_model(torch.tensor(ids), attention_mask=t_mask, output_hidden_states=True)
            ref64 = reference64(torch.tensor(ids), attention_mask=t_mask).last_hidden_state.numpy()
        last, hidden = model(mx.array(ids), m_mask, output_hidden_states=True)
        assert len(hidden) == len(ref.hidden_states) == model.args.num_hidden_layers + 1
        # the residual stream between layers is not normalised: its error against its own scale
        rel = [float(np.abs(np.array(got) - want.numpy()).max()) / max(1.0, float(np.abs(want.numpy()).max()))
               for got, want in zip(hidden, ref.hidden_states)]
        diff = float(np.abs(np.array(last) - ref.last_hidden_state.numpy()).max())
        scale = float(np.abs(ref.last_hidden_state.numpy()).max())
        # at real tokens: transformers' eager float64 run gives NaN where a padded query sees no key
        real = (ids != PAD_ID) if side == "no mask" else mask.astype(bool)
        ours64, theirs64 = (float(np.abs(np.array(x)[real] - ref64[real]).max()) for x in (last, ref.last_hidden_state.numpy()))
        print(f"{label} {side}: last max|d| {diff:.1e} (scale {scale:.2f}), layers rel {max(rel):.1e}; "
              f"to float64: bridge {ours64:.1e}, torch {theirs64:.1e}")
        # fp32 error grows with the magnitude (Gemma norms scale by 1 + w): relative to the output's scale,
        # and the float64 check below shows the bridge as close to the exact values as torch itself
        assert diff <= 1e-5 * max(1.0, scale) and max(rel) <= 1e-5, (side, diff, rel)
        if np.isfinite(theirs64):  # transformers' eager float64 run can be NaN (not understood yet: see the report)
            assert ours64 <= 3 * theirs64 + 1e-6 * scale


# --- the encoder --------------------------------------------------------------------------------
@pytest.mark.parametrize("init_scale", [None, 0.2])
@pytest.mark.parametrize("mode", list(MODES))
def test_hidden_states_match_transformers(tmp_path, mode, init_scale):
    """Every layer's output at every position (padded ones too; PyLate scores non-attended expansion
    pads), right- and left-padded and without a mask, within 1e-5; the bridge's distance to a float64
    run of the same torch model is of the size of torch float32's own."""
    torch_model = saved_and_reloaded(torch_t5gemma(t5gemma_config(**MODES[mode]), init_scale=init_scale), tmp_path)
    assert torch_model.config._attn_implementation == installed_default_attention()
    model = build_model(load_config(tmp_path), load_weights(tmp_path))
    assert model.args.eager == (installed_default_attention() == "eager")
    assert_hidden_states_match(model, torch_model, f"{mode} init={init_scale}", np.random.default_rng(1))


def test_eager_attention_option_matches_transformers_eager(tmp_path):
    """``attn_implementation="eager"`` (transformers' spelling) applies the soft cap on either
    transformers, as its eager attention does; in 5.3 that differs from the default (SDPA) run."""
    from mlx_hf_bridge.models import t5gemma

    torch_model = saved_and_reloaded(torch_t5gemma(t5gemma_config(attn_logit_softcapping=2.0), init_scale=0.2),
                                     tmp_path, attn_implementation="eager")
    config = load_config(tmp_path)
    model = t5gemma.Model(t5gemma.ModelArgs.from_dict({**config.to_dict(), "attn_implementation": "eager"}))
    model.load_weights(list(load_weights(tmp_path).items()), strict=True)
    model.eval()
    assert model.args.softcap == 2.0
    assert_hidden_states_match(model, torch_model, "eager softcap=2", np.random.default_rng(7))
    default = build_model(config, load_weights(tmp_path))
    ids, mask = batch("right", np.random.default_rng(8))
    gap = float(np.abs(np.array(default(mx.array(ids), mx.array(mask))) - np.array(model(mx.array(ids), mx.array(mask)))).max())
    assert (gap > 1e-2) == (installed_default_attention() == "sdpa"), gap


def test_the_window_and_the_softcap_change_the_outputs(tmp_path):
    """At these lengths the local window changes the outputs (so the parity above covers it), and the
    soft cap does exactly where the installed transformers applies it (5.24's eager; not 5.3's SDPA)."""
    ids, mask = batch("right", np.random.default_rng(5))

    def last(name, **overrides):
        torch_t5gemma(t5gemma_config(**overrides), init_scale=0.2).save_pretrained(str(tmp_path / name))
        return np.array(build_model(load_config(tmp_path / name), load_weights(tmp_path / name))(mx.array(ids), mx.array(mask)))

    base = last("base", attn_logit_softcapping=None)
    assert float(np.abs(base - last("w512", attn_logit_softcapping=None, sliding_window=512)).max()) > 1e-2
    capped = float(np.abs(base - last("cap", attn_logit_softcapping=1.0)).max())
    assert (capped > 1e-2) == (installed_default_attention() == "eager"), capped


@pytest.mark.parametrize("dropout_rate", [0.0, 0.1])
def test_packed_batch_equals_padded_and_gradients_match_torch(tmp_path, dropout_rate):
    """The packed row gives the padded batch's outputs at real tokens and 0 at padding; the gradient of
    a masked weighted sum of the last hidden state = torch's (both layouts; eval, so dropout is off);
    with ``dropout_rate`` set, training mode drops (the same modules as transformers)."""
    config = t5gemma_config()
    config.dropout_rate = config.encoder.dropout_rate = dropout_rate
    torch_model = saved_and_reloaded(torch_t5gemma(config, init_scale=0.2), tmp_path)
    model = build_model(load_config(tmp_path), load_weights(tmp_path))
    assert model.args.dropout_rate == dropout_rate
    ids, mask = batch("right", np.random.default_rng(2), B=6, L=24)
    ids[0, 3] = PAD_ID  # the pad token as a real token: torch's padding_idx row gets no gradient
    weights = np.random.default_rng(3).normal(size=(*ids.shape, 64)).astype(np.float32) * mask[..., None]
    torch_model.zero_grad()
    (torch_model(torch.tensor(ids), attention_mask=torch.tensor(mask)).last_hidden_state * torch.tensor(weights)).sum().backward()
    ref = {n: p.grad.numpy() for n, p in torch_model.named_parameters()}
    scale = max(float(np.abs(g).max()) for g in ref.values())
    padded = np.array(model(mx.array(ids), mx.array(mask)))
    model.pack_sequences = True
    assert model._packing(mx.array(mask)) is not None
    packed = np.array(model(mx.array(ids), mx.array(mask)))
    real = mask.astype(bool)
    assert float(np.abs(packed[real] - padded[real]).max()) <= 1e-5 * max(1.0, float(np.abs(padded).max()))
    assert not packed[~real].any()
    for pack in (False, True):
        model.pack_sequences = pack
        loss = lambda m: (m(mx.array(ids), mx.array(mask)) * mx.array(weights)).sum()  # noqa: E731
        grads = dict(tree_flatten(nn.value_and_grad(model, loss)(model)[1]))
        assert set(grads) == set(ref)
        assert not np.array(grads["encoder.embed_tokens.weight"])[PAD_ID].any()
        worst = max(float(np.abs(np.array(grads[n]) - ref[n]).max()) for n in ref)
        print(f"dropout={dropout_rate} packed={pack}: gradients max|d| {worst:.1e} of the largest entry {scale:.2f}")
        assert worst <= 1e-5 * scale, (pack, worst, scale)
    model.pack_sequences = False
    model.train()
    trained = np.array(model(mx.array(ids), mx.array(mask)))
    assert (float(np.abs(trained - padded).max()) > 1e-3) == (dropout_rate > 0)


def test_gradient_checkpointing_recomputes_the_same_gradients(tmp_path):
    from mlx_hf_bridge.engine.remat import gradient_checkpointing

    torch_t5gemma(t5gemma_config(), init_scale=0.2).save_pretrained(str(tmp_path))
    model = build_model(load_config(tmp_path), load_weights(tmp_path))
    ids, mask = batch("left", np.random.default_rng(4))
    loss = lambda m: (m(mx.array(ids), mx.array(mask)) ** 2).sum()  # noqa: E731
    plain = dict(tree_flatten(nn.value_and_grad(model, loss)(model)[1]))
    with gradient_checkpointing(model) as layer_class:
        assert layer_class.__name__ == "T5GemmaEncoderLayer"
        checkpointed = dict(tree_flatten(nn.value_and_grad(model, loss)(model)[1]))
    worst = max(float(np.abs(np.array(checkpointed[n]) - np.array(g)).max()) for n, g in plain.items())
    assert worst <= 1e-6 * max(float(np.abs(np.array(g)).max()) for g in plain.values())


def test_a_full_checkpoint_keeps_the_encoder_and_saves_what_transformers_reloads(tmp_path):
    """A ``T5GemmaForConditionalGeneration`` folder (``model.encoder.*``, ``model.decoder.*``, the tied
    head): the bridge keeps the encoder, as ST's ``T5GemmaEncoderModel`` load does (same outputs);
    its save is an encoder-only folder (``encoder.*``, ``is_encoder_decoder: false``, as ST saves)
    that ``T5GemmaEncoderModel`` reloads bit-identically."""
    from transformers import T5GemmaEncoderModel, T5GemmaForConditionalGeneration

    torch.manual_seed(0)
    full = init_larger(T5GemmaForConditionalGeneration(t5gemma_config(encoder_decoder=True)).eval(), 0.2)
    full.save_pretrained(str(tmp_path / "full"))
    config = load_config(tmp_path / "full")
    model = build_model(config, load_weights(tmp_path / "full"))
    st_config = load_config(tmp_path / "full")
    st_config.is_encoder_decoder = False  # what ST's Transformer does before loading
    torch_encoder = T5GemmaEncoderModel.from_pretrained(str(tmp_path / "full"), config=st_config).eval()
    ids = torch.tensor([[BOS_ID, 17, 300, 9, 12, 40, 7, 8, EOS_ID]])
    with torch.no_grad():
        want = torch_encoder(ids).last_hidden_state.numpy()
    assert float(np.abs(np.array(model(mx.array(ids.numpy()))) - want).max()) <= 1e-5
    assert model.config.is_encoder_decoder is False  # set as ST's Transformer sets it
    save_encoder(model, tmp_path / "out")
    saved_config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert saved_config["model_type"] == "t5gemma" and saved_config["is_encoder_decoder"] is False
    again = T5GemmaEncoderModel.from_pretrained(str(tmp_path / "out")).eval()
    reloaded = again.state_dict()
    assert set(reloaded) == {k[len("model."):] for k in full.state_dict() if k.startswith("model.encoder.")}
    for name, value in full.model.encoder.state_dict().items():
        assert torch.equal(reloaded[f"encoder.{name}"], value), name
    with torch.no_grad():
        assert np.array_equal(again(ids).last_hidden_state.numpy(), want)


@pytest.mark.parametrize("overrides,message", [
    ({"rope_parameters": {"rope_type": "yarn", "rope_theta": 1e4, "factor": 4.0}}, "rope_type='yarn' is not supported"),
    ({"layer_types": ["full_attention", "chunked_attention", "full_attention", "full_attention"]}, "chunked_attention"),
    ({"layer_types": ["full_attention"] * 3}, "3 entries for num_hidden_layers=4"),
    ({"sliding_window": None}, "sliding_window: null"),
    ({"attn_implementation": "flash_attention_2"}, "attn_implementation='flash_attention_2'"),
])
def test_configs_it_cannot_build_are_refused(overrides, message):
    from mlx_hf_bridge.models.t5gemma import ModelArgs

    config = t5gemma_config().to_dict()
    config["encoder"].update(overrides)
    with pytest.raises(ValueError, match=message):
        ModelArgs.from_dict(config)


def test_a_config_without_an_encoder_is_refused():
    from mlx_hf_bridge.models.t5gemma import ModelArgs

    with pytest.raises(ValueError, match="no 'encoder' sub-config"):
        ModelArgs.from_dict({"model_type": "t5gemma", "hidden_size": 64})


def test_missing_tensor_is_named(tmp_path):
    torch_t5gemma(t5gemma_config()).save_pretrained(str(tmp_path))
    weights = load_weights(tmp_path)
    del weights["encoder.layers.1.post_self_attn_layernorm.weight"]
    with pytest.raises(ValueError, match=r"missing: encoder\.layers\.1\.post_self_attn_layernorm\.weight"):
        build_model(load_config(tmp_path), weights)


def test_a_folder_whose_layer_types_cannot_be_built_is_refused_before_its_weights(tmp_path):
    torch_t5gemma(t5gemma_config()).save_pretrained(str(tmp_path))
    config = json.loads((tmp_path / "config.json").read_text())
    config["encoder"]["layer_types"][1] = "chunked_attention"
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "model.safetensors").write_bytes(b"not read")
    with pytest.raises(ValueError, match=r"unknown layer type\(s\) \['chunked_attention'\]"):
        load_config(tmp_path)

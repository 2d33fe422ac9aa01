"""LoRA adapters (``mlx_hf_bridge/adapters/``) against real peft on the torch model, through the ST spelling
``model.add_adapter(LoraConfig(...))`` on the dense SentenceTransformer (ST 5.3 in .venv, 6.2 in .venv-st6).

The torch reference is peft's own in-place injection (``peft.inject_adapter_in_model``, what transformers'
``add_adapter`` calls; transformers 5.24's ``add_adapter`` asks for peft >= 0.22, which pip does not serve
here) on the ST model's transformers backbone, and ``PeftModel`` for saved folders. Tiny BERT (std-0.2 init)
and tiny Qwen3 (Qwen3-Embedding layout: left padding, last-token pooling), A and B set to the same random
values on both sides so the adapter's math is visible (PEFT's B starts at 0).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
peft = pytest.importorskip("peft")

import mlx.core as mx  # noqa: E402
from mlx.utils import tree_flatten  # noqa: E402

from conftest import ST_MAJOR, _save_tiny, tiny_bert_config  # noqa: E402
from test_dense_model_helpers import max_diff, texts, write_st_folder  # noqa: E402
from test_dense_qwen3 import qwen3_config, qwen_tokenizer_dir, write_backbone  # noqa: E402,F401

from mlx_hf_bridge.adapters import LoraConfig as BridgeLoraConfig  # noqa: E402
from mlx_hf_bridge.adapters.lora import PEFT_PREFIX, LoraLinear, base_state  # noqa: E402
from mlx_hf_bridge.dense import SentenceTransformer  # noqa: E402

CASES = {  # name: (backbone, LoraConfig kwargs)
    "bert-list": ("bert", dict(r=4, lora_alpha=8, target_modules=["query", "value"])),
    "bert-regex-rslora": ("bert", dict(r=4, lora_alpha=16, use_rslora=True, target_modules=r".*attention\.self\.(query|key)")),
    "bert-dense-exclude": ("bert", dict(r=2, lora_alpha=4, target_modules=["dense"], exclude_modules=["pooler.dense"])),
    "qwen3-all-linear": ("qwen3", dict(r=8, lora_alpha=16, target_modules="all-linear")),
    "qwen3-default": ("qwen3", dict(r=4, lora_alpha=32)),
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory, minilm_dir, qwen_tokenizer_dir):  # noqa: F811
    bert = _save_tiny(tmp_path_factory.mktemp("lora-bert"), tiny_bert_config(), minilm_dir, seed=3, init_scale=0.2)
    qwen = write_backbone(tmp_path_factory.mktemp("lora-qwen3"), qwen_tokenizer_dir, qwen3_config(), init_scale=0.2)
    return {"bert": write_st_folder(tmp_path_factory.mktemp("lora-bert-st"), bert, modes="mean"),
            "qwen3": write_st_folder(tmp_path_factory.mktemp("lora-qwen3-st"), qwen, modes="lasttoken", normalize=True)}


def torch_st(folder):
    from sentence_transformers import SentenceTransformer as TorchST

    return TorchST(str(folder), device="cpu")


def torch_with_adapter(folder, kwargs):
    """ST on torch with peft's LoRA injected into its backbone, PEFT's freezing (only lora_ trains)."""
    model = torch_st(folder)
    backbone = model[0].auto_model
    peft.inject_adapter_in_model(peft.LoraConfig(**kwargs), backbone)
    for name, p in backbone.named_parameters():
        p.requires_grad = "lora_" in name
    return model


def torch_lora_tensors(model) -> dict:
    """The torch model's adapter tensors under PEFT's saved names."""
    return {PEFT_PREFIX + n.replace(".default.", "."): p for n, p in model[0].auto_model.named_parameters() if "lora_" in n}


def randomize_both(torch_model, model, seed=0, std=0.3):
    """The same random A and B on both sides (B != 0 so the adapter changes the output)."""
    rng = np.random.default_rng(seed)
    ours = model.get_adapter_state_dict()
    theirs = torch_lora_tensors(torch_model)
    assert sorted(ours) == sorted(theirs)
    values = {k: rng.normal(0.0, std, tuple(v.shape)).astype(np.float32) for k, v in theirs.items()}
    with torch.no_grad():
        for k, p in theirs.items():
            p.copy_(torch.from_numpy(values[k]))
    from mlx_hf_bridge.adapters.lora import load_adapter_state

    load_adapter_state(model.transformer.auto_model, {k: mx.array(v) for k, v in values.items()}, "test")
    return values


def bridge_with_adapter(folder, kwargs, as_peft=True):
    model = SentenceTransformer(str(folder))
    model.add_adapter(peft.LoraConfig(**kwargs) if as_peft else dict(kwargs))
    return model


def encodings(model, seed=0):
    return model.encode(texts(9, seed=seed), batch_size=4)


@pytest.mark.parametrize("case", list(CASES))
def test_adapter_outputs_match_peft(case, folders):
    arch, kwargs = CASES[case]
    torch_model, model = torch_with_adapter(folders[arch], kwargs), bridge_with_adapter(folders[arch], kwargs, as_peft=case != "bert-list")
    wrapped = sorted(p for p, m in model.transformer.auto_model.named_modules() if isinstance(m, LoraLinear))
    assert wrapped == sorted({n.split(".lora_A")[0] for n, _ in torch_model[0].auto_model.named_parameters() if ".lora_A." in n})
    trainable = {k for k, _ in tree_flatten(model.trainable_parameters())}
    assert trainable and all(".lora_A." in k or ".lora_B." in k for k in trainable)  # PEFT's freezing
    assert max_diff(encodings(model), encodings(torch_model)) <= 1e-5  # B = 0: a no-op, as PEFT's init
    randomize_both(torch_model, model)
    adapted, want = encodings(model), encodings(torch_model)
    diff = max_diff(adapted, want)
    print(f"{case} (ST {ST_MAJOR}): {len(wrapped)} LoRA layers, encode max|d| {diff:.1e}, adapter moves it "
          f"{max_diff(adapted, encodings(torch_st(folders[arch]))):.2f}")
    assert diff <= 1e-5
    model.disable_adapters()
    assert model.active_adapters() == []
    assert max_diff(encodings(model), encodings(torch_st(folders[arch]))) <= 1e-5
    model.enable_adapters()
    assert model.active_adapters() == ["default"] and max_diff(encodings(model), want) <= 1e-5

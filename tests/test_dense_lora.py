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

from slow_cases import split  # noqa: E402

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
    "bert-all-linear-dropout": ("bert", dict(r=4, lora_alpha=8, lora_dropout=0.1, target_modules="all-linear")),  # eval: no dropout
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


@pytest.mark.parametrize("case", split(list(CASES), fast=[c for c in CASES if c != "qwen3-all-linear"]))
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


# --- training: only the adapter trains ------------------------------------------------------------
STEPS, WD, MAX_GRAD_NORM = 10, 0.01, 1.0
# all-linear r=8 learns the 8 pairs of the tiny Qwen3 fast: at 5e-3 the loss sinks to ~1e-3 where float32's
# resolution of the logits alone is ~1e-4 of it, so that case trains at 5e-4
LR = {"bert-list": 5e-3, "qwen3-all-linear": 5e-4}


def common(name: str) -> str:
    for prefix in ("0.auto_model.", "0.model.", "transformer.auto_model."):
        name = name[len(prefix):] if name.startswith(prefix) else name
    return name.replace(".default.", ".")


def train_torch(model, loss, feats, lr):
    """What ST's trainer does: AdamW over the parameters that require grad (HF's decay rule), clipping."""
    from transformers import Trainer

    decay = set(Trainer.get_decay_parameter_names(None, model))
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    opt = torch.optim.AdamW([{"params": [p for n, p in named if n in decay], "weight_decay": WD},
                             {"params": [p for n, p in named if n not in decay], "weight_decay": 0.0}], lr=lr)
    values, grads = [], None
    for step in range(STEPS):
        opt.zero_grad(set_to_none=True)
        value = loss([dict(f) for f in feats], None)
        value.backward()
        if step == 0:
            grads = {common(n): p.grad.numpy().copy() for n, p in named}
        torch.nn.utils.clip_grad_norm_([p for _, p in named], MAX_GRAD_NORM)
        opt.step()
        values.append(value.item())
    return values, grads


def train_mlx(model, loss, feats, lr):
    from mlx_hf_bridge.engine.optim import AdamW
    from mlx_hf_bridge.engine.step import StepRunner

    optimizer = AdamW.for_model(model, lr, WD, (0.9, 0.999), 1e-8)
    runner = StepRunner(model, optimizer, MAX_GRAD_NORM)
    values, grads = [], None
    for step in range(STEPS):
        if step == 0:
            _, first = runner.micro_grads(loss, feats, None)
            grads = {common(n): np.array(g) for n, g in first.items()}
        value, _ = runner.step([(loss, feats, None)], 1.0)
        values.append(value)
    return values, grads, optimizer


@pytest.mark.parametrize("case", list(LR))
def test_training_moves_only_the_adapter_as_peft(case, folders):
    from test_dense_losses_pairwise_training import features
    from test_dense_losses_pairwise_training import texts as pair_texts

    from mlx_hf_bridge import losses as mlx_losses

    if ST_MAJOR >= 6:
        from sentence_transformers.sentence_transformer import losses as st_losses
    else:
        from sentence_transformers import losses as st_losses
    arch, kwargs = CASES[case]
    torch.set_num_threads(1)
    torch_model, model = torch_with_adapter(folders[arch], kwargs), bridge_with_adapter(folders[arch], kwargs)
    randomize_both(torch_model, model, seed=1, std=0.05)
    base_before = {k: np.array(v) for k, v in base_state(model.transformer.auto_model).items()}
    torch_model.train()
    model.train()
    t_feats, m_feats = features(torch_model, model, pair_texts(2, 7))
    t_losses, t_grads = train_torch(torch_model, st_losses.MultipleNegativesRankingLoss(torch_model), t_feats, LR[case])
    m_losses, m_grads, optimizer = train_mlx(model, mlx_losses.MultipleNegativesRankingLoss(model), m_feats, LR[case])
    assert sorted(m_grads) == sorted(t_grads) and all(".lora_" in k for k in m_grads)  # no gradient for the base
    loss_rel = max(abs(a - b) / abs(a) for a, b in zip(t_losses, m_losses))
    scale = max(float(np.abs(g).max()) for g in t_grads.values())
    grad_rel = max(float(np.abs(m_grads[k] - g).max()) / scale for k, g in t_grads.items())
    print(f"{case} (ST {ST_MAJOR}): MNRL {t_losses[0]:.4f} -> {t_losses[-1]:.4f}, max loss rel {loss_rel:.1e}, "
          f"first-step grads max|d| / scale {grad_rel:.1e}")
    assert loss_rel <= 1e-4 and grad_rel <= 1e-4
    assert t_losses[0] - t_losses[-1] > 1e-2 * t_losses[0]  # training moved
    # the base is bit-identical, the optimizer holds moments for the adapter only
    after = base_state(model.transformer.auto_model)
    assert after.keys() == base_before.keys()
    assert all(np.array_equal(np.array(after[k]), v) for k, v in base_before.items())
    state = optimizer.state_tensors()
    assert state and all(".lora_A." in k or ".lora_B." in k for k in state)
    n_adapter = len(model.get_adapter_state_dict())
    assert len(state) == 2 * n_adapter


# --- saving and loading -----------------------------------------------------------------------
def torch_st_with_peft_folder(base_folder, adapter_folder):
    """ST on torch whose backbone is peft's ``PeftModel.from_pretrained`` of the adapter folder."""
    model = torch_st(base_folder)
    model[0].auto_model = peft.PeftModel.from_pretrained(model[0].auto_model, str(adapter_folder)).eval()
    return model


def files_of(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize("case", ["bert-list", "qwen3-all-linear"])
def test_saved_adapter_loads_in_peft_and_peft_saves_load_here(case, folders, tmp_path):
    from safetensors.numpy import load_file

    arch, kwargs = CASES[case]
    torch_model, model = torch_with_adapter(folders[arch], kwargs), bridge_with_adapter(folders[arch], kwargs)
    randomize_both(torch_model, model, seed=2)
    want = encodings(torch_model)
    model.save_pretrained(str(tmp_path / "ours"))
    saved = tmp_path / "ours"
    # ST's layout for a PEFT model: the adapter in the Transformer module's folder, no base weights / config.json
    assert (saved / "adapter_config.json").is_file() and (saved / "adapter_model.safetensors").is_file()
    assert not (saved / "model.safetensors").exists() and not (saved / "config.json").exists()
    config = json.loads((saved / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(folders[arch]) and config["peft_type"] == "LORA"
    tensors = load_file(str(saved / "adapter_model.safetensors"))
    assert sorted(tensors) == sorted(torch_lora_tensors(torch_model))  # peft's key names
    if ST_MAJOR < 6:  # ST 5.3's own add_adapter + save (transformers 5.3 accepts this peft) writes the same files
        reference = torch_st(folders[arch])
        reference.add_adapter(peft.LoraConfig(**kwargs))
        reference.save_pretrained(str(tmp_path / "st"))
        assert files_of(tmp_path / "st") == files_of(saved)
        assert sorted(load_file(str(tmp_path / "st" / "adapter_model.safetensors"))) == sorted(tensors)
    loaded = torch_st_with_peft_folder(folders[arch], saved)  # peft reads the bridge's folder
    diff_peft = max_diff(encodings(loaded), want)
    reloaded = SentenceTransformer(str(saved))  # and the bridge: base from base_model_name_or_path
    assert reloaded.active_adapters() == ["default"]
    diff_reload = max_diff(encodings(reloaded), want)
    # a folder peft wrote (PeftModel.save_pretrained) loads in the bridge with load_adapter
    from transformers import AutoModel

    peft_model = peft.get_peft_model(AutoModel.from_pretrained(str(folders[arch])), peft.LoraConfig(**kwargs))
    rng = np.random.default_rng(5)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.from_numpy(rng.normal(0, 0.3, tuple(p.shape)).astype(np.float32)))
    peft_model.save_pretrained(str(tmp_path / "peft"))
    fresh = SentenceTransformer(str(folders[arch]))
    fresh.load_adapter(str(tmp_path / "peft"))
    diff_load = max_diff(encodings(fresh), encodings(torch_st_with_peft_folder(folders[arch], tmp_path / "peft")))
    print(f"{case} (ST {ST_MAJOR}): bridge save in peft max|d| {diff_peft:.1e}, reloaded {diff_reload:.1e}, "
          f"peft save in the bridge {diff_load:.1e}")
    assert diff_peft <= 1e-5 and diff_reload <= 1e-5 and diff_load <= 1e-5


# --- merging ----------------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["bert-dense-exclude", "qwen3-all-linear"])
def test_merge_gives_the_same_outputs_and_a_plain_folder(case, folders, tmp_path):
    from transformers import AutoModel

    arch, kwargs = CASES[case]
    torch_model, model = torch_with_adapter(folders[arch], kwargs), bridge_with_adapter(folders[arch], kwargs)
    randomize_both(torch_model, model, seed=3)
    want = encodings(torch_model)
    model.merge_and_unload()
    assert not any(isinstance(m, LoraLinear) for _, m in model.transformer.auto_model.named_modules())
    diff_merged = max_diff(encodings(model), want)
    model.save_pretrained(str(tmp_path / "merged"))
    assert (tmp_path / "merged" / "model.safetensors").is_file() and not (tmp_path / "merged" / "adapter_config.json").exists()
    # the weights = peft's merge_and_unload of the same adapter, and transformers / ST load the folder
    peft_merged = peft.PeftModel(torch_st(folders[arch])[0].auto_model, peft.LoraConfig(**kwargs))
    with torch.no_grad():
        theirs = dict(torch_model[0].auto_model.named_parameters())
        for name, p in peft_merged.base_model.model.named_parameters():
            if "lora_" in name:
                p.copy_(theirs[name])
    peft_merged = peft_merged.merge_and_unload()
    loaded = AutoModel.from_pretrained(str(tmp_path / "merged"))
    reference = dict(peft_merged.state_dict())
    weight_diff = max(float((p - reference[n]).abs().max()) for n, p in loaded.state_dict().items())
    diff_st = max_diff(encodings(torch_st(tmp_path / "merged")), want)
    print(f"{case} (ST {ST_MAJOR}): merged encode max|d| {diff_merged:.1e}, weights vs peft's merge {weight_diff:.1e}, "
          f"real ST on the merged folder {diff_st:.1e}")
    assert sorted(loaded.state_dict()) == sorted(reference)
    assert weight_diff <= 1e-6 and diff_merged <= 1e-5 and diff_st <= 1e-5


def test_verify_refuses_an_unmerged_adapter_and_passes_the_merged_folder(folders, tmp_path):
    from mlx_hf_bridge.verify import verify_folder

    model = bridge_with_adapter(folders["bert"], CASES["bert-dense-exclude"][1])
    model.save_pretrained(str(tmp_path / "adapter"))
    report = verify_folder(tmp_path / "adapter")
    assert report["status"] == "unsupported" and "merge_and_unload" in report["message"], report
    model.merge_and_unload()
    model.save_pretrained(str(tmp_path / "merged"))
    report = verify_folder(tmp_path / "merged")
    assert report["passed"], report


# --- bad configs ------------------------------------------------------------------------------
BAD = {  # name: (LoraConfig kwargs, words the error must contain)
    "unknown-target": (dict(target_modules=["qkv"]), ["Target modules ['qkv'] not found", "query"]),
    "r-zero": (dict(r=0, target_modules=["query"]), ["r=0", "positive int"]),
    "r-negative": (dict(r=-2, target_modules=["query"]), ["r=-2", "positive int"]),
    "not-linear": (dict(target_modules=["LayerNorm"]), ["LayerNorm", "Linear layers only"]),
    "dora": (dict(use_dora=True, target_modules=["query"]), ["use_dora=True", "not supported"]),
    "bias": (dict(bias="all", target_modules=["query"]), ["bias='all'", "bias='none'"]),
    "modules-to-save": (dict(modules_to_save=["pooler"], target_modules=["query"]), ["modules_to_save", "remove it"]),
    "gaussian-init": (dict(init_lora_weights="gaussian", target_modules=["query"]), ["init_lora_weights='gaussian'"]),
    "fan-in-fan-out": (dict(fan_in_fan_out=True, target_modules=["query"]), ["fan_in_fan_out=True"]),
    "rank-pattern": (dict(rank_pattern={"query": 2}, target_modules=["query"]), ["rank_pattern"]),
    "dropout": (dict(lora_dropout=1.0, target_modules=["query"]), ["lora_dropout=1.0", "[0, 1)"]),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_configs_are_refused_before_the_model_changes(name, folders):
    kwargs, words = BAD[name]
    model = SentenceTransformer(str(folders["bert"]))
    before = sorted(k for k, _ in tree_flatten(model.trainable_parameters()))
    config = dict(kwargs) if name in ("dropout", "r-negative") else None
    if config is None:
        try:
            config = peft.LoraConfig(**kwargs)
        except ValueError:  # peft refuses some itself; the bridge must refuse the same dict
            config = dict(kwargs)
    with pytest.raises(ValueError) as info:
        model.add_adapter(config)
    for word in words:
        assert word in str(info.value), (word, str(info.value))
    assert sorted(k for k, _ in tree_flatten(model.trainable_parameters())) == before  # nothing frozen, nothing wrapped
    assert not any(isinstance(m, LoraLinear) for _, m in model.transformer.auto_model.named_modules())


def test_adapter_api_misuse_is_refused(folders, tmp_path):
    model = SentenceTransformer(str(folders["bert"]))
    with pytest.raises(ValueError, match="No adapter loaded"):
        model.active_adapters()
    with pytest.raises(ValueError, match="one adapter, named 'default'"):
        model.add_adapter(BridgeLoraConfig(target_modules=["query"]), adapter_name="other")
    base = encodings(model)
    model.add_adapter(BridgeLoraConfig(target_modules=["query"]))
    with pytest.raises(ValueError, match="already exists"):
        model.add_adapter(BridgeLoraConfig(target_modules=["value"]))
    model.unload()  # drops the adapter, base weights untouched
    assert not any(isinstance(m, LoraLinear) for _, m in model.transformer.auto_model.named_modules())
    assert np.array_equal(encodings(model), base)
    with pytest.raises(TypeError, match="LoraConfig"):
        SentenceTransformer(str(folders["bert"])).add_adapter("query")
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        SentenceTransformer(str(folders["bert"])).load_adapter(str(tmp_path))
    (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "IA3", "target_modules": ["query"]}))
    with pytest.raises(ValueError, match="LoRA only"):
        SentenceTransformer(str(folders["bert"])).load_adapter(str(tmp_path))


# --- checkpoints ------------------------------------------------------------------------------
def _lora_trainer(folder, output_dir, steps):
    from datasets import Dataset

    from mlx_hf_bridge.sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments, losses

    mx.random.seed(0)  # A's kaiming init: the same in every run compared
    model = SentenceTransformer(str(folder))
    model.add_adapter(BridgeLoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"]))
    rows = {"anchor": texts(16, seed=1), "positive": texts(16, seed=2)}
    args = SentenceTransformerTrainingArguments(
        output_dir=str(output_dir), per_device_train_batch_size=8, max_steps=steps, learning_rate=5e-3,
        save_strategy="steps", save_steps=2, logging_steps=1, seed=0, disable_tqdm=True, report_to="none")
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=Dataset.from_dict(rows),
                                         loss=losses.MultipleNegativesRankingLoss(model))
    return trainer, model


def test_checkpoints_hold_the_adapter_and_resume_exactly(folders, tmp_path):
    full, model = _lora_trainer(folders["bert"], tmp_path / "full", 4)
    base_before = {k: np.array(v) for k, v in base_state(model.transformer.auto_model).items()}
    full.train()
    checkpoint = tmp_path / "full" / "checkpoint-2"
    assert (checkpoint / "adapter_model.safetensors").is_file() and not (checkpoint / "model.safetensors").exists()
    from safetensors.numpy import load_file

    moments = load_file(str(checkpoint / "optimizer.safetensors"))
    assert moments and all(".lora_A." in k or ".lora_B." in k for k in moments)  # AdamW state: the adapter only
    after = base_state(model.transformer.auto_model)
    assert all(np.array_equal(np.array(after[k]), v) for k, v in base_before.items())
    resumed, again = _lora_trainer(folders["bert"], tmp_path / "resumed", 4)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    losses = [h["loss"] for h in full.state.log_history if "loss" in h]
    resumed_losses = [h["loss"] for h in resumed.state.log_history if "loss" in h]
    assert len(losses) == 4 and resumed_losses == losses  # steps 1-2 restored from the checkpoint's history, 3-4 rerun
    for key, value in model.get_adapter_state_dict().items():
        assert np.array_equal(np.array(again.get_adapter_state_dict()[key]), np.array(value)), key  # bit-identical


def test_gradient_checkpointing_gives_the_same_adapter_gradients(folders):
    from test_dense_losses_pairwise_training import texts as pair_texts

    from mlx_hf_bridge import losses as mlx_losses
    from mlx_hf_bridge.engine.optim import AdamW
    from mlx_hf_bridge.engine.remat import gradient_checkpointing
    from mlx_hf_bridge.engine.step import StepRunner

    model = bridge_with_adapter(folders["qwen3"], CASES["qwen3-all-linear"][1])
    randomize_both(torch_with_adapter(folders["qwen3"], CASES["qwen3-all-linear"][1]), model, seed=4, std=0.05)
    model.train()
    feats = [model.tokenize(column) for column in pair_texts(2, 9)]
    loss = mlx_losses.MultipleNegativesRankingLoss(model)
    runner = StepRunner(model, AdamW.for_model(model, 1e-3), 1.0)
    _, plain = runner.micro_grads(loss, feats, None)
    with gradient_checkpointing(model.transformer.auto_model) as layer_class:
        assert layer_class is not None
        _, checkpointed = runner.micro_grads(loss, feats, None)
    assert plain.keys() == checkpointed.keys() and all(".lora_" in k for k in plain)
    assert max(float(mx.abs(plain[k] - checkpointed[k]).max()) for k in plain) <= 1e-6


def test_lora_dropout_acts_in_training_only(folders):
    model = bridge_with_adapter(folders["bert"], CASES["bert-all-linear-dropout"][1])
    randomize_both(torch_with_adapter(folders["bert"], CASES["bert-all-linear-dropout"][1]), model, seed=9)
    features = model.tokenize(texts(4, seed=3))
    eval_out = np.array(model(features)["sentence_embedding"])
    model.train()
    mx.random.seed(1)
    first = np.array(model(features)["sentence_embedding"])
    mx.random.seed(2)
    second = np.array(model(features)["sentence_embedding"])
    model.eval()
    assert np.abs(first - second).max() > 1e-3 and np.abs(first - eval_out).max() > 1e-3  # dropout on A's input
    assert np.array_equal(np.array(model(features)["sentence_embedding"]), eval_out)

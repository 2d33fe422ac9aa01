"""LoRA adapters on the multi-vector models: PyLate ``ColBERT`` (.venv, PyLate 1.6 on ST 5.3) and ST 6's
``MultiVectorEncoder`` (.venv-st6), against peft injected into the torch model's backbone with the same A / B.

PyLate adds ``[Q]`` / ``[D]`` to the vocabulary, so its adapter save also carries the resized embedding table
(PEFT's ``save_embedding_layers="auto"`` rule); both libraries start from one folder the bridge saved.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
peft = pytest.importorskip("peft")

from conftest import _save_tiny, tiny_bert_config  # noqa: E402
from test_dense_lora import randomize_both, torch_lora_tensors  # noqa: E402
from test_dense_qwen3 import ragged_max_diff  # noqa: E402

from mlx_hf_bridge.adapters.lora import PEFT_PREFIX  # noqa: E402

QUERIES = ["what is lora?", "how do adapters train", "x"]
DOCUMENTS = ["LoRA adds a low-rank update to frozen weights.", "Only the adapter trains, the base stays.", "short"]
KWARGS = dict(r=4, lora_alpha=8, target_modules=["query", "key", "value"])


def inject_torch(model, kwargs=KWARGS):
    backbone = model[0].auto_model
    peft.inject_adapter_in_model(peft.LoraConfig(**kwargs), backbone)
    return model


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory, minilm_dir):
    return _save_tiny(tmp_path_factory.mktemp("lora-mv-bert"), tiny_bert_config(), minilm_dir, seed=4, init_scale=0.2)


@pytest.mark.st5
def test_pylate_colbert_adapter_matches_peft_and_saves_for_pylate(bert_dir, tmp_path):
    from pylate import models

    from mlx_hf_bridge.pylate import models as mlx_models

    mlx_models.ColBERT(str(bert_dir), document_length=24).save_pretrained(str(tmp_path / "colbert"))
    torch_model = inject_torch(models.ColBERT(str(tmp_path / "colbert"), device="cpu"))
    model = mlx_models.ColBERT(str(tmp_path / "colbert"))
    model.add_adapter(peft.LoraConfig(**KWARGS))
    randomize_both(torch_model, model, seed=6)

    def outputs(m):
        return (m.encode(QUERIES, is_query=True), m.encode(DOCUMENTS, is_query=False))

    want = outputs(torch_model)
    diffs = [ragged_max_diff(g, w) for g, w in zip(outputs(model), want)]
    model.save_pretrained(str(tmp_path / "adapted"))
    # PyLate on torch with peft's PeftModel over the bridge's adapter folder (embedding table included)
    from safetensors.numpy import load_file

    saved = load_file(str(tmp_path / "adapted" / "adapter_model.safetensors"))
    extra = sorted(set(saved) - set(torch_lora_tensors(torch_model)))
    assert extra == []  # the base folder already has [Q] / [D]: nothing but the adapter, as PEFT saves
    reloaded = models.ColBERT(str(tmp_path / "colbert"), device="cpu")
    reloaded[0].auto_model = peft.PeftModel.from_pretrained(reloaded[0].auto_model, str(tmp_path / "adapted")).eval()
    diffs_peft = [ragged_max_diff(g, w) for g, w in zip(outputs(reloaded), want)]
    again = mlx_models.ColBERT(str(tmp_path / "adapted"))
    diffs_reload = [ragged_max_diff(g, w) for g, w in zip(outputs(again), want)]
    print(f"PyLate ColBERT + LoRA: queries / documents max|d| {diffs[0]:.1e} / {diffs[1]:.1e}; bridge save in "
          f"PyLate+peft {max(diffs_peft):.1e}; bridge reload {max(diffs_reload):.1e}")
    assert max(diffs + diffs_peft + diffs_reload) <= 1e-5


@pytest.mark.st6
def test_st6_multi_vector_encoder_adapter_matches_peft(bert_dir, tmp_path):
    pytest.importorskip("sentence_transformers", minversion="6")
    from sentence_transformers import MultiVectorEncoder as TorchEncoder
    from sentence_transformers.base.modules import Dense, Normalize, Transformer

    from mlx_hf_bridge.sentence_transformers import MultiVectorEncoder

    torch.manual_seed(0)
    modules = [Transformer(str(bert_dir), query_expansion={"strategy": "min", "attend": True, "length": 8},
                           document_length=16),
               Dense(32, 16, bias=False, activation_function=None, module_input_name="token_embeddings"),
               Normalize(module_input_name="token_embeddings")]
    TorchEncoder(modules=modules, device="cpu").save_pretrained(str(tmp_path / "mv"))
    torch_model = inject_torch(TorchEncoder(str(tmp_path / "mv"), device="cpu"))
    model = MultiVectorEncoder(str(tmp_path / "mv"))
    model.add_adapter(peft.LoraConfig(**KWARGS))
    randomize_both(torch_model, model, seed=7)

    def outputs(m):
        return (m.encode_query(QUERIES, convert_to_numpy=True), m.encode_document(DOCUMENTS, convert_to_numpy=True))

    want = outputs(torch_model)
    diffs = [ragged_max_diff(g, w) for g, w in zip(outputs(model), want)]
    model.save_pretrained(str(tmp_path / "adapted"))
    assert (tmp_path / "adapted" / "adapter_config.json").is_file()
    assert not (tmp_path / "adapted" / "model.safetensors").exists()
    reloaded = TorchEncoder(str(tmp_path / "mv"), device="cpu")
    reloaded[0].auto_model = peft.PeftModel.from_pretrained(reloaded[0].auto_model, str(tmp_path / "adapted")).eval()
    diffs_peft = [ragged_max_diff(g, w) for g, w in zip(outputs(reloaded), want)]
    again = MultiVectorEncoder(str(tmp_path / "adapted"))
    diffs_reload = [ragged_max_diff(g, w) for g, w in zip(outputs(again), want)]
    print(f"ST 6 MultiVectorEncoder + LoRA: queries / documents max|d| {diffs[0]:.1e} / {diffs[1]:.1e}; bridge save "
          f"in ST 6+peft {max(diffs_peft):.1e}; bridge reload {max(diffs_reload):.1e}")
    assert max(diffs + diffs_peft + diffs_reload) <= 1e-5
    assert np.isfinite(diffs).all()


@pytest.mark.st5
def test_pylate_colbert_on_a_plain_base_saves_the_resized_embeddings(bert_dir, tmp_path):
    """From a plain HF folder PyLate adds [Q] / [D] (the vocabulary grows): the adapter file then carries the
    embedding table (PEFT's "auto" rule), and PyLate + peft on torch reproduce the bridge's outputs from it."""
    from pylate import models
    from safetensors.numpy import load_file

    from mlx_hf_bridge.pylate import models as mlx_models

    model = mlx_models.ColBERT(str(bert_dir))
    model.add_adapter(peft.LoraConfig(**KWARGS))
    rng = np.random.default_rng(8)
    import mlx.core as mx

    from mlx_hf_bridge.adapters.lora import load_adapter_state

    state = model.get_adapter_state_dict()
    table = model.transformer.auto_model.get_input_embeddings()  # distinct [Q] / [D] rows: a lost table would show
    table.weight = mx.concatenate([table.weight[:-2], mx.array(rng.normal(0, 1, (2, table.weight.shape[1])).astype(np.float32))])
    load_adapter_state(model.transformer.auto_model,
                       {k: mx.array(rng.normal(0, 0.3, tuple(v.shape)).astype(np.float32)) for k, v in state.items()}, "test")
    want = (model.encode(QUERIES, is_query=True), model.encode(DOCUMENTS, is_query=False))
    model.save_pretrained(str(tmp_path / "adapted"))
    saved = load_file(str(tmp_path / "adapted" / "adapter_model.safetensors"))
    key = PEFT_PREFIX + "embeddings.word_embeddings.weight"
    assert sorted(set(saved) - set(state)) == [key] and saved[key].shape[0] == 30522 + 2
    torch_model = models.ColBERT(str(bert_dir), device="cpu")
    torch_model[0].auto_model = peft.PeftModel.from_pretrained(torch_model[0].auto_model, str(tmp_path / "adapted")).eval()
    dense = load_file(str(tmp_path / "adapted" / "1_Dense" / "model.safetensors"))  # PyLate's fresh Dense is random
    torch_model[1].load_state_dict({k: torch.from_numpy(v) for k, v in dense.items()})
    got = (torch_model.encode(QUERIES, is_query=True), torch_model.encode(DOCUMENTS, is_query=False))
    again = mlx_models.ColBERT(str(tmp_path / "adapted"))
    reload = (again.encode(QUERIES, is_query=True), again.encode(DOCUMENTS, is_query=False))
    diffs = [ragged_max_diff(g, w) for g, w in zip(got, want)] + [ragged_max_diff(g, w) for g, w in zip(reload, want)]
    print(f"PyLate ColBERT (plain base) + LoRA: bridge save in PyLate+peft {max(diffs[:2]):.1e}, reload {max(diffs[2:]):.1e}")
    assert max(diffs) <= 1e-5

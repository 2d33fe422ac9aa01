"""Training arguments: same fields, defaults and validation as the installed sentence-transformers.

Runs in both reference venvs: ST 5.3 on transformers 5.3 (.venv) and ST 6.2 on transformers 5.24
(.venv-st6); every comparison is against the real class installed there.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings

import mlx_hf_bridge  # noqa: F401
import pytest

from mlx_hf_bridge.sentence_transformers import SentenceTransformerTrainingArguments as Args
from mlx_hf_bridge.sentence_transformers import hf_fields
from mlx_hf_bridge.sentence_transformers.training_args import (
    BatchSamplers,
    MultiDatasetBatchSamplers,
    MultiVectorEncoderTrainingArguments,
)

# Post-init objects of torch/accelerate with no MLX meaning; compared only for being "unset".
NOT_COMPARED = {"accelerator_config", "fsdp_config"}
POST_INIT_FIELDS = ("warmup_steps", "warmup_ratio", "eval_steps", "save_steps", "logging_steps", "metric_for_best_model",
                    "greater_is_better", "report_to", "lr_scheduler_type", "batch_sampler", "multi_dataset_batch_sampler",
                    "learning_rate_mapping", "router_mapping", "prompts", "eval_strategy", "save_strategy", "do_eval",
                    "gradient_checkpointing", "activation_checkpointing", "include_num_input_tokens_seen",
                    "torch_compile", "dataloader_pin_memory", "output_dir")


def _real_cls():
    from sentence_transformers import SentenceTransformerTrainingArguments as Real

    return Real


def _real(**kw):
    return _real_cls()(output_dir="unused", **kw)


def _norm(v):
    return getattr(v, "value", v)


def _has_field(name):
    return any(s.name == name for s in hf_fields.installed_fields())


def test_fields_read_from_source_equal_the_real_transformers_dataclass():
    from transformers import TrainingArguments

    real = dataclasses.fields(TrainingArguments)
    ours = hf_fields.installed_fields()
    assert [f.name for f in real] == [s.name for s in ours]
    for f, s in zip(real, ours):
        assert s.init == f.init, f.name
        if f.default_factory is not dataclasses.MISSING:
            assert s.default_factory is not hf_fields.MISSING and s.default_factory() == f.default_factory(), f.name
        else:
            assert s.default_factory is hf_fields.MISSING and _norm(s.default) == _norm(f.default), f.name


def test_reading_the_fields_imports_neither_torch_nor_transformers():
    import subprocess
    import sys

    code = ("import sys; from mlx_hf_bridge.sentence_transformers import training_args as t; "
            "t.SentenceTransformerTrainingArguments(output_dir='x'); "
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, sorted(sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_an_unreadable_source_names_the_field_and_the_tested_range(tmp_path):
    src = tmp_path / "training_args.py"
    src.write_text("class TrainingArguments:\n    output_dir: str = None\n    seed: int = compute_seed()\n")
    with pytest.raises(hf_fields.UnreadableTrainingArguments, match="seed = compute_seed"):
        hf_fields.read_fields(src)


def test_same_field_names_as_sentence_transformers():
    real = {f.name for f in dataclasses.fields(_real_cls()) if f.init}
    ours = {f.name for f in dataclasses.fields(Args)}
    assert real == ours


def test_defaults_equal_sentence_transformers():
    real, ours = _real(), Args(output_dir="unused")
    for f in dataclasses.fields(Args):
        if f.name in NOT_COMPARED:
            continue
        assert _norm(getattr(ours, f.name)) == _norm(getattr(real, f.name)), f.name
    assert ours.get_warmup_steps(95) == real.get_warmup_steps(95)


@pytest.mark.parametrize(
    "kw",
    [
        dict(warmup_ratio=0.1),
        dict(warmup_steps=0.05),
        dict(warmup_steps=7),
        dict(eval_strategy="steps", logging_steps=3),
        dict(eval_strategy="steps", eval_steps=4, save_steps=4, load_best_model_at_end=True),
        dict(eval_strategy="steps", eval_steps=4.0, save_steps=8.0, logging_steps=2.0, load_best_model_at_end=True),
        dict(eval_strategy="steps", eval_steps=0.1, save_steps=0.2, load_best_model_at_end=True),
        dict(load_best_model_at_end=True, eval_strategy="epoch", save_strategy="epoch", metric_for_best_model="ndcg"),
        dict(load_best_model_at_end=True, eval_strategy="steps", eval_steps=3, save_strategy="best"),
        dict(report_to="none", lr_scheduler_type="cosine", batch_sampler="no_duplicates"),
        dict(lr_scheduler_type="reduce_lr_on_plateau", eval_strategy="epoch"),
        dict(multi_dataset_batch_sampler="round_robin", learning_rate_mapping='{"dense": 1e-3}'),
        dict(router_mapping='{"query": "query"}', prompts="query: "),
        dict(include_num_input_tokens_seen=True),
        dict(gradient_checkpointing=True),
        dict(use_cpu=True),
        dict(torch_compile_mode="default"),
    ],
)
def test_post_init_matches_sentence_transformers(kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        real, ours = _real(**kw), Args(output_dir="unused", **kw)
    for name in POST_INIT_FIELDS:
        if hasattr(real, name) or hasattr(ours, name):
            assert _norm(getattr(ours, name)) == _norm(getattr(real, name)), name
    for n in (10, 95):
        assert ours.get_warmup_steps(n) == real.get_warmup_steps(n)


# (kwargs, whether transformers/ST reject them); each row is checked against the real class too.
VALIDATION = [
    (dict(load_best_model_at_end=True, eval_strategy="steps", eval_steps=3, save_steps=5), True),
    (dict(load_best_model_at_end=True, eval_strategy="steps", eval_steps=3, save_steps=6), False),
    (dict(load_best_model_at_end=True, eval_strategy="steps", eval_steps=0.1, save_steps=5), True),
    (dict(load_best_model_at_end=True, eval_strategy="steps", eval_steps=0.1, save_steps=0.25), True),
    (dict(load_best_model_at_end=True, eval_strategy="steps", eval_steps=0.1, save_steps=0.3), False),  # 0.3 % 0.1 != 0 in floats
    (dict(load_best_model_at_end=True, eval_strategy="steps", eval_steps=0.1, save_steps=0.4), False),
    (dict(load_best_model_at_end=True, eval_strategy="steps", save_strategy="epoch"), True),
    (dict(load_best_model_at_end=True, eval_strategy="no"), True),
    (dict(load_best_model_at_end=True, eval_strategy="epoch", save_strategy="best"), False),
    (dict(fp16=True, bf16=True), True),
    (dict(lr_scheduler_type="reduce_lr_on_plateau"), True),
    (dict(warmup_steps=-1), True),
    (dict(dataloader_prefetch_factor=2), True),
    (dict(logging_steps=0), True),
    (dict(logging_steps=2.5), True),
    (dict(eval_strategy="steps", eval_steps=2.5), True),
    (dict(save_steps=7.5), True),
    (dict(torch_empty_cache_steps=0), True),
    (dict(eval_strategy="sometimes"), True),
    (dict(learning_rate_mapping="not json"), True),
]


@pytest.mark.parametrize("kw,rejected", VALIDATION, ids=[str(i) for i in range(len(VALIDATION))])
def test_validation_matches_the_real_class(kw, rejected):
    def raises(cls):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cls(output_dir="unused", **kw)
        except ValueError as exc:
            return str(exc)
        return None

    assert (raises(_real_cls()) is not None) == rejected, "the table's expectation disagrees with the real class"
    message = raises(Args)
    assert (message is not None) == rejected, message
    if message and "load_best_model_at_end" in str(kw):
        assert "load_best_model_at_end" in message


def test_logging_dir_follows_the_installed_transformers():
    if _has_field("logging_dir"):  # transformers 5.3: deprecated but accepted
        assert _real(logging_dir="logs").logging_dir == Args(output_dir="x", logging_dir="logs").logging_dir == "logs"
        return
    with pytest.raises(TypeError, match="logging_dir"):
        _real(logging_dir="logs")
    with pytest.raises(TypeError, match="unexpected keyword argument 'logging_dir'.*TENSORBOARD_LOGGING_DIR"):
        Args(output_dir="x", logging_dir="logs")


def test_activation_checkpointing_is_the_engines_gradient_checkpointing(tmp_path):
    if not _has_field("activation_checkpointing"):
        with pytest.raises(TypeError):
            _real(activation_checkpointing=True)
        with pytest.raises(TypeError, match="activation_checkpointing"):
            Args(output_dir="x", activation_checkpointing=True)
        return
    from test_engine_standin import Block, TinyContrastive, TinyEncoder, pairs

    from mlx_hf_bridge.sentence_transformers import SentenceTransformerTrainer

    real, ours = _real(activation_checkpointing=True), Args(output_dir="x", activation_checkpointing=True)
    assert ours.gradient_checkpointing is real.gradient_checkpointing is True
    with pytest.warns(FutureWarning, match="activation_checkpointing"):
        _real(gradient_checkpointing=True)
    with pytest.warns(FutureWarning, match="activation_checkpointing"):
        assert Args(output_dir="x", gradient_checkpointing=True).activation_checkpointing is True
    model = TinyEncoder(dropout=0.0)
    args = Args(output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=1, save_strategy="no",
                disable_tqdm=True, activation_checkpointing=True)
    Block.calls = 0
    SentenceTransformerTrainer(model=model, args=args, train_dataset=pairs(4), loss=TinyContrastive(model)).train()
    assert Block.calls == 8  # 2 layers x (query + positive), each run again in the backward pass


def test_enums_have_sentence_transformers_values():
    try:  # ST 6's home of the enums (its old path still works, with a DeprecationWarning)
        from sentence_transformers.base.sampler import BatchSamplers as RealBS
        from sentence_transformers.base.sampler import MultiDatasetBatchSamplers as RealMDS
    except ImportError:
        from sentence_transformers.training_args import BatchSamplers as RealBS
        from sentence_transformers.training_args import MultiDatasetBatchSamplers as RealMDS

    assert {e.name: e.value for e in BatchSamplers} == {e.name: e.value for e in RealBS}
    assert {e.name: e.value for e in MultiDatasetBatchSamplers} == {e.name: e.value for e in RealMDS}
    assert BatchSamplers.NO_DUPLICATES == "no_duplicates" == RealBS.NO_DUPLICATES
    assert Args(output_dir="x", batch_sampler=RealBS.NO_DUPLICATES).batch_sampler is BatchSamplers.NO_DUPLICATES


@pytest.mark.st6
def test_base_sampler_spelling_matches_sentence_transformers_6():
    from sentence_transformers.base import sampler as real

    from mlx_hf_bridge.sentence_transformers.base import sampler

    assert sampler.BatchSamplers is BatchSamplers and sampler.MultiDatasetBatchSamplers is MultiDatasetBatchSamplers
    assert {e.name: e.value for e in sampler.BatchSamplers} == {e.name: e.value for e in real.BatchSamplers}
    assert {e.name: e.value for e in sampler.MultiDatasetBatchSamplers} == {
        e.name: e.value for e in real.MultiDatasetBatchSamplers}


@pytest.mark.st6
def test_multi_vector_encoder_arguments_equal_sentence_transformers_6():
    from sentence_transformers import MultiVectorEncoderTrainingArguments as Real

    from mlx_hf_bridge.sentence_transformers.base.training_args import BaseTrainingArguments

    Ours = MultiVectorEncoderTrainingArguments
    assert {f.name for f in dataclasses.fields(Real) if f.init} == {f.name for f in dataclasses.fields(Ours)}
    real, ours = Real(output_dir="unused"), Ours(output_dir="unused")
    for f in dataclasses.fields(Ours):
        if f.name not in NOT_COMPARED:
            assert _norm(getattr(ours, f.name)) == _norm(getattr(real, f.name)), f.name
    for value in (64, '{"query": 8, "document": 32}', {"query": 8}):
        assert Ours(output_dir="x", max_length=value).max_length == Real(output_dir="unused", max_length=value).max_length
    assert isinstance(ours, BaseTrainingArguments)
    assert "max_length" in ours.to_dict() and "max_length" not in Args(output_dir="x").to_dict()


def test_multi_vector_encoder_max_length_must_be_an_int_or_a_dict():
    with pytest.raises(ValueError, match="max_length must be an int or a dict"):
        MultiVectorEncoderTrainingArguments(output_dir="x", max_length=[8, 32])


@pytest.mark.parametrize("name,value", [("no_cuda", True), ("use_mps_device", True), ("overwrite_output_dir", True)])
def test_removed_arguments_warn_once(name, value, caplog):
    with caplog.at_level(logging.WARNING):
        args = Args(output_dir="x", **{name: value})
    lines = [r.getMessage() for r in caplog.records if name in r.getMessage()]
    assert len(lines) == 1 and "\n" not in lines[0]
    assert not hasattr(args, name)


def test_evaluation_strategy_maps_to_eval_strategy(caplog):
    with caplog.at_level(logging.WARNING):
        args = Args(output_dir="x", evaluation_strategy="steps", eval_steps=5)
    assert args.eval_strategy == "steps" and args.eval_steps == 5
    assert any("eval_strategy" in r.getMessage() for r in caplog.records)


def test_unknown_argument_is_a_type_error_naming_it():
    with pytest.raises(TypeError, match="unexpected keyword argument 'learnig_rate'.*learning_rate"):
        Args(output_dir="x", learnig_rate=1e-4)


def test_copies_keep_every_field_and_warn_about_nothing(caplog):
    import copy
    import pickle

    for args in (Args(output_dir="x", learning_rate=1e-4), MultiVectorEncoderTrainingArguments(output_dir="y", max_length=16)):
        with caplog.at_level(logging.WARNING):
            copies = [pickle.loads(pickle.dumps(args)), copy.deepcopy(args), dataclasses.replace(args)]
        assert all(type(c) is type(args) and c.to_dict() == args.to_dict() for c in copies)
        assert not caplog.records, [r.getMessage() for r in caplog.records]


def test_to_dict_is_json_and_masks_tokens():
    import json

    d = Args(output_dir="x", hub_token="secret", batch_sampler=BatchSamplers.NO_DUPLICATES).to_dict()
    assert json.loads(json.dumps(d))["batch_sampler"] == "no_duplicates"
    assert d["hub_token"] == "<HUB_TOKEN>"
    assert dataclasses.replace(Args(output_dir="x"), seed=1).seed == 1


def test_use_cpu_selects_cpu():
    import mlx.core as mx

    before = mx.default_device()
    try:
        Args(output_dir="x", use_cpu=True)
        assert mx.default_device() == mx.cpu
    finally:
        mx.set_default_device(before)


def test_invalid_strategy_is_clear():
    with pytest.raises(ValueError, match="eval_strategy='sometimes'.*one of"):
        Args(output_dir="x", eval_strategy="sometimes")

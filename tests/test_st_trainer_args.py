"""SentenceTransformerTrainingArguments: same fields and defaults as sentence-transformers 5.3."""

from __future__ import annotations

import dataclasses
import logging

import mlx_hf_bridge  # noqa: F401
import pytest

from mlx_hf_bridge.sentence_transformers import SentenceTransformerTrainingArguments as Args
from mlx_hf_bridge.sentence_transformers.training_args import BatchSamplers, MultiDatasetBatchSamplers


# Post-init objects of torch/accelerate with no MLX meaning; compared only for being "unset".
NOT_COMPARED = {"accelerator_config", "fsdp_config"}


def _real(**kw):
    from sentence_transformers import SentenceTransformerTrainingArguments as Real

    return Real(output_dir="unused", **kw)


def _norm(v):
    return getattr(v, "value", v)


def test_same_field_names_as_sentence_transformers():
    from sentence_transformers import SentenceTransformerTrainingArguments as Real

    real = {f.name for f in dataclasses.fields(Real) if f.init}
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
        dict(load_best_model_at_end=True, eval_strategy="epoch", save_strategy="epoch", metric_for_best_model="ndcg"),
        dict(report_to="none", lr_scheduler_type="cosine", batch_sampler="no_duplicates"),
        dict(multi_dataset_batch_sampler="round_robin", learning_rate_mapping='{"dense": 1e-3}'),
    ],
)
def test_post_init_matches_sentence_transformers(kw):
    real, ours = _real(**kw), Args(output_dir="unused", **kw)
    for name in ("warmup_steps", "warmup_ratio", "eval_steps", "metric_for_best_model", "greater_is_better",
                 "report_to", "lr_scheduler_type", "batch_sampler", "multi_dataset_batch_sampler",
                 "learning_rate_mapping", "eval_strategy", "save_strategy"):
        assert _norm(getattr(ours, name)) == _norm(getattr(real, name)), name
    for n in (10, 95):
        assert ours.get_warmup_steps(n) == real.get_warmup_steps(n)


def test_enums_have_sentence_transformers_values():
    from sentence_transformers.training_args import BatchSamplers as RealBS
    from sentence_transformers.training_args import MultiDatasetBatchSamplers as RealMDS

    assert {e.name: e.value for e in BatchSamplers} == {e.name: e.value for e in RealBS}
    assert {e.name: e.value for e in MultiDatasetBatchSamplers} == {e.name: e.value for e in RealMDS}
    assert BatchSamplers.NO_DUPLICATES == "no_duplicates" == RealBS.NO_DUPLICATES
    assert Args(output_dir="x", batch_sampler=RealBS.NO_DUPLICATES).batch_sampler is BatchSamplers.NO_DUPLICATES


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

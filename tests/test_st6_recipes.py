"""ST 6.2's multi-vector training surface beyond the loss values: the trainer's defaults and
refusals, input errors, signatures equal to ST 6.2's, the msmarco recipes with swapped imports, and
gather_across_devices. Runs in the ST 6 reference venv (``.venv-st6``)."""

from __future__ import annotations

import pytest

from slow_cases import split  # noqa: E402

pytest.importorskip("sentence_transformers", minversion="6")

from st6_training_helpers import *  # noqa: E402,F401,F403  (data, variants, step loops, assertions)

pytestmark = pytest.mark.st6


def test_trainer_defaults_and_refusals(st6_folders, tmp_path):
    from datasets import Dataset

    from mlx_hf_bridge.sentence_transformers import SentenceTransformerTrainingArguments
    from mlx_hf_bridge.sentence_transformers.multi_vector_encoder import (
        MultiVectorEncoderTrainer, MultiVectorEncoderTrainingArguments,
    )

    model = MultiVectorEncoder(str(st6_folders["bert-fixed"]))
    train = Dataset.from_list(contrastive_rows(4, 0))
    args = MultiVectorEncoderTrainingArguments(output_dir=str(tmp_path), max_length={"document": 12}, report_to="none")
    trainer = MultiVectorEncoderTrainer(model=model, args=args, train_dataset=train)
    assert type(trainer.loss).__name__ == "MultiVectorMultipleNegativesRankingLoss"  # ST 6's default loss
    assert trainer.processing_class is model.tokenizer
    batch = trainer.data_collator(list(train)[:2])  # max_length reaches the collator, per task
    assert batch["positive_input_ids"].shape[1] <= 12 and batch["query_task"] == "query"
    with pytest.raises(ValueError, match="MultiVectorEncoderTrainingArguments"):
        MultiVectorEncoderTrainer(model=model, args=SentenceTransformerTrainingArguments(output_dir=str(tmp_path)),
                                  train_dataset=train)
    with pytest.raises(ValueError, match="AdamW only"):
        MultiVectorEncoderTrainer(model=model, args=args, train_dataset=train,
                                  optimizer_cls_and_kwargs=(type("SGD", (), {}), {"lr": 0.1}))
    with pytest.raises(ValueError, match="amsgrad"):
        MultiVectorEncoderTrainer(model=model, args=args, train_dataset=train,
                                  optimizer_cls_and_kwargs=(type("AdamW", (), {}), {"amsgrad": True}))


def test_loss_input_errors(st6_folders, caplog):
    model = MultiVectorEncoder(str(st6_folders["bert-fixed"]))
    collate = MultiVectorEncoderDataCollator(preprocess_fn=model.preprocess)
    features, labels = collect_features(collate(scored_rows(3, 1)))
    with pytest.raises(ValueError, match="at least 3 sentence features"):
        mlx_losses.MultiVectorDistillKLDivLoss(model)(features, labels)
    features, labels = collect_features(collate(scored_rows(3, 3)))
    with pytest.raises(ValueError, match=r"\(3, 3\)"):
        mlx_losses.MultiVectorDistillKLDivLoss(model)(features, labels[:, :2])
    with pytest.raises(ValueError, match="expected"):
        mlx_losses.MultiVectorMarginMSELoss(model)(features, labels[:, :1])
    with pytest.raises(ValueError, match="NaN"):  # ST 6's teacher check, before any forward pass
        mlx_losses.MultiVectorDistillKLDivLoss(model)(features, mx.where(mx.arange(3) == 1, mx.nan, labels))
    with caplog.at_level("WARNING"):  # a spread of 1000 at temperature 1 underflows the softmax
        mlx_losses.MultiVectorDistillKLDivLoss(model)(features, labels * 0 + mx.array([0.0, 1000.0, 500.0]))
    assert "underflows 6 of 9 teacher scores" in caplog.text
    for bad in ({"scale": 0.0}, {"mini_batch_num_tokens": 0}):
        with pytest.raises(ValueError):
            mlx_losses.CachedMultiVectorMultipleNegativesRankingLoss(model, **bad)
    with pytest.raises(ValueError, match="temperature"):
        mlx_losses.MultiVectorDistillKLDivLoss(model, student_temperature=float("inf"))


def test_signatures_match_st6():
    import inspect

    from sentence_transformers import MultiVectorEncoderTrainer as TorchTrainer
    from sentence_transformers.multi_vector_encoder import losses

    from mlx_hf_bridge.sentence_transformers.multi_vector_encoder import MultiVectorEncoderTrainer

    def params(fn, drop=()):
        return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values() if p.name not in drop]

    for name in losses.__all__:
        assert params(getattr(losses, name).__init__) == params(getattr(mlx_losses, name).__init__), name
    # the bridge also keeps ST 6's deprecated ``tokenizer=`` alias as a keyword
    assert params(TorchTrainer.__init__) == params(MultiVectorEncoderTrainer.__init__, drop=("tokenizer",))


# --- ST 6's examples/multi_vector_encoder/training/msmarco/*.py, in our words, on tiny local data --
# The recipe below makes the calls those scripts make (module stack, loss, arguments, trainer,
# save) against a namespace: real ST 6.2 on torch, or the bridge with swapped imports (same step
# count and checkpoints; the bridge's save loads in ST 6.2). The whole scripts (model card data,
# the NanoBEIR evaluator, which needs the Hub, util.resolve_ids, XTRScores, push_to_hub) run in
# tests/test_st6_mv_examples.py on examples/st6_mv_scripts/; here the KD rows carry their texts.
def st6_namespace(kind):
    import importlib
    import types

    if kind == "torch":
        st = importlib.import_module("sentence_transformers")
        base_modules = importlib.import_module("sentence_transformers.base.modules")
        sampler = importlib.import_module("sentence_transformers.base.sampler")
        mv_modules = importlib.import_module("sentence_transformers.multi_vector_encoder.modules")
        losses = importlib.import_module("sentence_transformers.multi_vector_encoder.losses")
    else:
        st = importlib.import_module("mlx_hf_bridge.sentence_transformers")
        base_modules = importlib.import_module("mlx_hf_bridge.sentence_transformers.base.modules")
        sampler = importlib.import_module("mlx_hf_bridge.sentence_transformers.base.sampler")
        mv_modules = importlib.import_module("mlx_hf_bridge.sentence_transformers.multi_vector_encoder.modules")
        losses = importlib.import_module("mlx_hf_bridge.sentence_transformers.multi_vector_encoder.losses")
    return types.SimpleNamespace(
        # the top-level names an ST 6 script imports (``from sentence_transformers import ...``)
        MultiVectorEncoder=st.MultiVectorEncoder, MultiVectorEncoderTrainer=st.MultiVectorEncoderTrainer,
        MultiVectorEncoderTrainingArguments=st.MultiVectorEncoderTrainingArguments,
        Transformer=base_modules.Transformer, Dense=base_modules.Dense, Normalize=base_modules.Normalize,
        MultiVectorMask=mv_modules.MultiVectorMask, BatchSamplers=sampler.BatchSamplers, losses=losses)


def msmarco_recipe(ns, recipe, model_dir, out):
    from datasets import Dataset

    transformer = ns.Transformer(str(model_dir), model_kwargs={"torch_dtype": "float32"},
                                 query_expansion={"strategy": "min", "length": 8})
    linear = ns.Dense(transformer.get_embedding_dimension(), 16, bias=False, activation_function=None,
                      module_input_name="token_embeddings")
    mask = ns.MultiVectorMask(skiplist_words=list(string.punctuation)) if recipe == "kd" else ns.MultiVectorMask()
    model = ns.MultiVectorEncoder(modules=[transformer, linear, mask, ns.Normalize(module_input_name="token_embeddings")])
    if recipe == "kd":
        rows = [{"query": r["query"], **{f"document_{j}": r[f"doc{j}"] for j in range(1, 5)}, "scores": r["label"]}
                for r in scored_rows(16, 4)]
        train_dataset, eval_dataset = Dataset.from_list(rows), None
        loss = ns.losses.MultiVectorDistillKLDivLoss(model=model, temperature=0.25)
        batch, extra = 4, {"max_length": 20}
    else:
        rows = [{"query": r["query"], "positive": r["positive"], "negative": r["neg1"]} for r in contrastive_rows(40, 1)]
        split = Dataset.from_list(rows).train_test_split(test_size=8, seed=12)
        train_dataset, eval_dataset = split["train"], split["test"]
        cached = recipe == "cached"
        loss = (ns.losses.CachedMultiVectorMultipleNegativesRankingLoss(model=model, mini_batch_size=4) if cached
                else ns.losses.MultiVectorMultipleNegativesRankingLoss(model=model))
        batch = 16 if cached else 8
        extra = {"batch_sampler": ns.BatchSamplers.NO_DUPLICATES, "load_best_model_at_end": True,
                 "metric_for_best_model": "eval_loss", "greater_is_better": False}
    args = ns.MultiVectorEncoderTrainingArguments(
        output_dir=str(out), num_train_epochs=2, per_device_train_batch_size=batch, per_device_eval_batch_size=batch,
        learning_rate=3e-4, warmup_steps=0.05, fp16=False, bf16=False, eval_strategy="steps" if eval_dataset else "no",
        eval_steps=0.5, save_strategy="steps", save_steps=0.5, save_total_limit=2, logging_steps=0.25,
        run_name=f"tiny-{recipe}", seed=42, report_to="none", **extra)
    trainer = ns.MultiVectorEncoderTrainer(model=model, args=args, train_dataset=train_dataset,
                                           eval_dataset=eval_dataset, loss=loss)
    trainer.train()
    model.save_pretrained(str(out / "final"))
    return model, [e["loss"] for e in trainer.state.log_history if "loss" in e]


@pytest.mark.parametrize("recipe", split(["contrastive", "cached", "kd"], fast=["contrastive"]))  # ~12 s each
def test_msmarco_recipes_run_with_swapped_imports(st6_folders, tiny_modernbert_dir, tmp_path, recipe):
    """The same recipe code trains on real ST 6.2 and on the bridge; the bridge's final save loads in ST 6.2
    with identical outputs (the Dense projections start from each library's own random init, so the
    two runs are not compared step by step; test_trainer_parity does that)."""
    from sentence_transformers import MultiVectorEncoder as TorchEncoder

    _, torch_losses = msmarco_recipe(st6_namespace("torch"), recipe, tiny_modernbert_dir, tmp_path / "torch")
    model, losses = msmarco_recipe(st6_namespace("mlx"), recipe, tiny_modernbert_dir, tmp_path / "mlx")
    assert len(losses) == len(torch_losses) >= 2 and np.isfinite(losses).all()
    checkpoints = sorted(p.name for p in (tmp_path / "mlx").glob("checkpoint-*"))
    assert checkpoints == sorted(p.name for p in (tmp_path / "torch").glob("checkpoint-*"))
    saved = TorchEncoder(str(tmp_path / "mlx" / "final"), device="cpu")
    assert saved[0].query_expansion == {"strategy": "min", "attend": False, "token": None, "length": 8}
    assert_saved_model_loads_in_st6(model, tmp_path / "mlx" / "final-again")


def test_gather_across_devices(st6_folders):
    """One process: gather is the identity, the loss equals ST 6.2's (which gathers nothing either).
    Several processes: tests/test_st6_distributed_mv.py (2 ring ranks = 1 process = ST 6.2)."""
    torch_model, mlx_model = load_pair(st6_folders["bert-fixed"])
    t_features, _, m_features, _ = collate_both(torch_model, mlx_model, contrastive_rows(6, 1))
    for name in ("MultiVectorMultipleNegativesRankingLoss", "CachedMultiVectorMultipleNegativesRankingLoss"):
        kwargs = {"gather_across_devices": True, **({"mini_batch_size": 2} if "Cached" in name else {})}
        expected = torch_loss(name, torch_model, kwargs)([dict(f) for f in t_features]).item()
        loss = getattr(mlx_losses, name)(mlx_model, **kwargs)
        assert abs(loss(m_features).item() - expected) <= LOSS_RTOL * abs(expected)

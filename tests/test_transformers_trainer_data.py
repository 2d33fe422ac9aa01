"""The transformers Trainer façade's data side and arguments against transformers on torch: sampling
orders (random / sequential / group_by_length over epochs), torch.randperm, remove_unused_columns,
label_names, the default collator, TrainingArguments' fields, refusals and bad-label errors before
training, EarlyStoppingCallback, and the gradient-accumulation option."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from mlx.utils import tree_flatten

from test_transformers_trainer import common, losses_of, make_rows, models, run_pair

torch = pytest.importorskip("torch")
T = pytest.importorskip("transformers")
datasets = pytest.importorskip("datasets")
from mlx_hf_bridge import transformers as B  # noqa: E402
from mlx_hf_bridge.transformers import trainer_data as TD  # noqa: E402


@pytest.fixture(scope="module")
def tokenizer(minilm_dir):
    return T.AutoTokenizer.from_pretrained(str(minilm_dir))


def test_torch_randperm_reproduced():
    for n in (1, 2, 3, 17, 100, 1000, 5000):
        for seed in (0, 7, 42, 2**32 + 5):
            expected = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
            np.testing.assert_array_equal(TD.torch_randperm(n, seed), expected)


def _recording(collate, seen):
    def run(rows):
        seen.extend(r.pop("idx") for r in rows)
        for r in rows:
            r.pop("text", None)
        return collate(rows)
    return run


@pytest.mark.parametrize("strategy", ["random", "sequential", "group_by_length"])
def test_row_order_matches_transformers_over_epochs(strategy, tokenizer, tmp_path):
    """2 epochs, batch 2 x accumulation 2 (group_by_length groups by 4, megabatches of 5 x 4): the rows
    reach the collator in transformers' order (dropout 0: nothing else draws from torch's generator)."""
    hf, ours = models("bert", "single", tmp_path)
    train = make_rows("single", tokenizer, 40, seed=1).add_column("idx", list(range(40)))
    kw = dict(train_sampling_strategy=strategy, num_train_epochs=2, max_steps=-1, remove_unused_columns=False,
              gradient_accumulation_steps=2, per_device_train_batch_size=2)
    hf_seen, our_seen = [], []
    T.Trainer(model=hf, args=T.TrainingArguments(**common(tmp_path, "hf", use_cpu=True, **kw)), train_dataset=train,
              data_collator=_recording(T.DataCollatorWithPadding(tokenizer), hf_seen)).train()
    B.Trainer(model=ours, args=B.TrainingArguments(**common(tmp_path, "ours", **kw)), train_dataset=train,
              data_collator=_recording(B.DataCollatorWithPadding(tokenizer), our_seen)).train()
    assert len(hf_seen) == 80
    assert our_seen[2:] == hf_seen  # the bridge's first two rows are its collator dry run (validate_train_setup)


def test_remove_unused_columns_and_default_collator(tokenizer, tmp_path):
    """ModernBERT's forward has no token_type_ids: the tokenizer's column is dropped with 'text', 'label' is
    renamed 'labels' by the default DataCollatorWithPadding(processing_class); remove_unused_columns=False
    hands the model everything (ModernBERT's **kwargs takes token_type_ids, as in transformers)."""
    _, ours = models("modernbert", "single", tmp_path)
    train = make_rows("single", tokenizer, 8, seed=1)
    assert {"token_type_ids", "text", "label"} <= set(train.column_names)
    trainer = B.Trainer(model=ours, args=B.TrainingArguments(**common(tmp_path, "o")), train_dataset=train,
                        processing_class=tokenizer)
    assert isinstance(trainer.data_collator, B.DataCollatorWithPadding)
    batch = trainer.collate_rows(train, [0, 1, 2])
    assert sorted(batch) == ["attention_mask", "input_ids", "labels"]
    assert trainer.label_names == ["labels"]
    no_tok = B.Trainer(model=ours, args=B.TrainingArguments(**common(tmp_path, "o")), train_dataset=train)
    assert no_tok.data_collator is B.default_data_collator
    keep = B.Trainer(model=ours, args=B.TrainingArguments(**common(tmp_path, "o", remove_unused_columns=False)),
                     train_dataset=train.remove_columns(["text"]), processing_class=tokenizer)
    assert "token_type_ids" in keep.collate_rows(keep.train_dataset, [0, 1])
    no_match = datasets.Dataset.from_dict({"text": ["a", "b"], "other": [1, 2]})
    with pytest.raises(ValueError, match="No columns in the dataset match"):
        B.Trainer(model=ours, args=B.TrainingArguments(**common(tmp_path, "o")), train_dataset=no_match).train()


def test_forward_argument_table_is_transformers_signatures():
    import inspect

    for name, args in TD.FORWARD_ARGUMENTS.items():
        assert list(inspect.signature(getattr(T, name).forward).parameters)[1:] == args, name


def test_training_arguments_fields_and_defaults_match_installed(tmp_path):
    ours = B.TrainingArguments(output_dir=str(tmp_path))
    ref = T.TrainingArguments(output_dir=str(tmp_path))
    names = {f.name for f in dataclasses.fields(ref) if f.init}
    assert {f.name for f in dataclasses.fields(ours)} == names
    differ = []
    for name in sorted(names):
        a, b = getattr(ours, name), getattr(ref, name)
        b = getattr(b, "value", b)
        if name in ("accelerator_config", "dataloader_pin_memory", "fsdp_config"):
            continue  # torch-side objects transformers fills in (AcceleratorConfig, FSDP options, pinning)
        if a != b and not (a in ([], None) and b in ([], None)):
            differ.append((name, a, b))
    assert not differ
    with pytest.raises(TypeError, match="unexpected keyword argument 'learnin_rate'; did you mean 'learning_rate'"):
        B.TrainingArguments(output_dir=str(tmp_path), learnin_rate=1e-3)
    with pytest.raises(TypeError, match="train_sampling_strategy='group_by_length'"):
        B.TrainingArguments(output_dir=str(tmp_path), group_by_length=True)


@pytest.mark.parametrize("field,value,message", [
    ("optim", "adafactor", "not available on MLX"),
    ("neftune_noise_alpha", 5.0, "NEFTune"),
    ("batch_eval_metrics", True, "batch_eval_metrics"),
])
def test_training_arguments_refuse_what_mlx_does_not_reproduce(field, value, message, tmp_path):
    T.TrainingArguments(output_dir=str(tmp_path), **{field: value})  # transformers accepts it
    with pytest.raises(ValueError, match=message):
        B.TrainingArguments(output_dir=str(tmp_path), **{field: value})


def _trainer(tmp_path, model, rows, **kw):
    return B.Trainer(model=model, args=B.TrainingArguments(**common(tmp_path, "o", **kw)),
                     train_dataset=datasets.Dataset.from_list(rows))


def _rows(labels, lengths=None):
    lengths = lengths or [5] * len(labels)
    return [{"input_ids": [101] + [7] * (n - 2) + [102], "attention_mask": [1] * n, "label": lab}
            for lab, n in zip(labels, lengths)]


@pytest.mark.parametrize("labels,problem,message", [
    ([0, 1, 5, 2], None, r"labels \[5\] outside 0..2"),
    (["pos", "neg", "pos", "neg"], None, "holds strings"),
    ([[1.0, 0.0, 1.0]] * 4, "single_label_classification", "needs one integer class id per row"),
    ([0, 1, 2, 1], "multi_label_classification", "multi-hot list of 3 floats"),
    ([[1, 0, 1]] * 4, "multi_label_classification", "float multi-hot"),
])
def test_bad_sequence_labels_fail_before_training(labels, problem, message, tmp_path):
    _, model = models("bert", "single", tmp_path)
    model.config.problem_type = problem
    trainer = _trainer(tmp_path, model, _rows(labels))
    calls = []
    model_call = type(model).__call__
    type(model).__call__ = lambda self, *a, **k: calls.append(1) or model_call(self, *a, **k)
    try:
        with pytest.raises(ValueError, match=message):
            trainer.train()
    finally:
        type(model).__call__ = model_call
    assert not calls  # refused before any forward pass


def test_string_labels_name_the_models_label2id(tmp_path):
    _, model = models("bert", "single", tmp_path)
    model.config.label2id = {"neg": 0, "neu": 1, "pos": 2}
    with pytest.raises(ValueError, match=r"label2id is \{'neg': 0"):
        _trainer(tmp_path, model, _rows(["pos", "neg"])).train()


def test_token_labels_not_aligned_fail_before_training(tokenizer, tmp_path):
    _, model = models("bert", "tok", tmp_path)
    rows = [{"input_ids": [101, 7, 8, 102], "attention_mask": [1] * 4, "labels": [-100, 1, 2, -100]},
            {"input_ids": [101, 7, 8, 9, 102], "attention_mask": [1] * 5, "labels": [1, 2, 3]}]  # word labels
    trainer = B.Trainer(model=model, args=B.TrainingArguments(**common(tmp_path, "o")),
                        train_dataset=datasets.Dataset.from_list(rows),
                        data_collator=B.DataCollatorForTokenClassification(tokenizer))
    with pytest.raises(ValueError, match="row 1 has 3 labels for 5 input_ids.*word_ids"):
        trainer.train()
    rows[1]["labels"] = [-100, 1, 9, 2, -100]
    trainer.train_dataset = datasets.Dataset.from_list(rows)
    with pytest.raises(ValueError, match=r"labels \[9\] outside 0..3"):
        trainer.train()


def test_early_stopping_matches_transformers(tokenizer, tmp_path):
    """Evaluate every step, patience 2 with a threshold that no step clears: both stop at the same step,
    keep the same best checkpoint and reload it (load_best_model_at_end)."""
    kw = dict(eval_strategy="steps", eval_steps=1, save_strategy="steps", save_steps=1, load_best_model_at_end=True,
              metric_for_best_model="loss", max_steps=10, learning_rate=1e-3)
    hf, ours = models("bert", "single", tmp_path)
    train, evalset = make_rows("single", tokenizer, 16, seed=1), make_rows("single", tokenizer, 6, seed=2)
    stops = []
    for side, lib, model in (("hf", T, hf), ("ours", B, ours)):
        extra = {"use_cpu": True} if side == "hf" else {}
        trainer = lib.Trainer(model=model, args=lib.TrainingArguments(**common(tmp_path, side, **kw, **extra)),
                              train_dataset=train, eval_dataset=evalset, processing_class=tokenizer,
                              callbacks=[lib.EarlyStoppingCallback(early_stopping_patience=2,
                                                                   early_stopping_threshold=0.05)])
        trainer.train()
        evals = [h for h in trainer.state.log_history if "eval_loss" in h]
        stops.append((trainer.state.global_step, trainer.state.best_global_step, sorted(evals[0]),
                      np.array([h["eval_loss"] for h in evals])))
    assert stops[0][:3] == stops[1][:3]
    assert np.abs(stops[0][3] - stops[1][3]).max() <= 1e-4 * np.abs(stops[0][3]).max()
    assert stops[0][0] < 10
    with pytest.raises(AssertionError, match="metric_for_best_model"):
        B.EarlyStoppingCallback().on_train_begin(B.TrainingArguments(output_dir=str(tmp_path)), None, None)


def test_accumulation_quirk_option_gives_window_means(tokenizer, tmp_path):
    """reproduce_ga_loss_scaling=False: BERT's logged loss is the mean over the window, not the sum
    transformers logs (with gradient_accumulation_steps=2, half of it at the first step)."""
    class Fixed(B.Trainer):
        reproduce_ga_loss_scaling = False

    hf_tr, quirk = run_pair("bert", "single", tokenizer, tmp_path, max_steps=1, gradient_accumulation_steps=2)
    _, ours = models("bert", "single", tmp_path)
    fixed = Fixed(model=ours, args=B.TrainingArguments(**common(tmp_path, "f", max_steps=1,
                                                                  gradient_accumulation_steps=2)),
                  train_dataset=make_rows("single", tokenizer, 24, seed=1), processing_class=tokenizer)
    fixed.train()
    summed = losses_of(hf_tr.state.log_history)[0]
    assert abs(losses_of(quirk.state.log_history)[0] - summed) <= 1e-4 * summed
    assert abs(losses_of(fixed.state.log_history)[0] - summed / 2) <= 1e-4 * summed


def test_checkpoint_resume_continues_bit_identically(tokenizer, tmp_path):
    """Checkpoints of a task model (transformers' folder layout) resume to the same losses and weights."""
    train = make_rows("single", tokenizer, 24, seed=1)
    kw = dict(max_steps=6, save_strategy="steps", save_steps=3, gradient_accumulation_steps=2)

    def run(name, resume=None):
        _, ours = models("bert", "single", tmp_path)
        trainer = B.Trainer(model=ours, args=B.TrainingArguments(**common(tmp_path, name, **kw)),
                            train_dataset=train, processing_class=tokenizer)
        trainer.train(resume_from_checkpoint=resume)
        return losses_of(trainer.state.log_history), {k: np.array(v) for k, v in tree_flatten(ours.parameters())}

    full_losses, full_weights = run("full")
    resumed_losses, resumed_weights = run("full", resume=str(tmp_path / "full" / "checkpoint-3"))
    np.testing.assert_array_equal(full_losses[3:], resumed_losses[-3:])
    for k, v in full_weights.items():
        np.testing.assert_array_equal(v, resumed_weights[k])
    back = T.AutoModelForSequenceClassification.from_pretrained(tmp_path / "full" / "checkpoint-6")
    assert back.config.architectures == ["BertForSequenceClassification"]


@pytest.mark.parametrize("kw", [
    dict(load_best_model_at_end=True, eval_strategy="steps", save_strategy="epoch"),
    dict(load_best_model_at_end=True, eval_strategy="steps", eval_steps=3, save_strategy="steps", save_steps=4),
    dict(fp16=True, bf16=True),
])
def test_best_model_arguments_validated_as_transformers(kw, tmp_path):
    with pytest.raises(ValueError):
        T.TrainingArguments(output_dir=str(tmp_path), use_cpu=True, **kw)
    with pytest.raises(ValueError):
        B.TrainingArguments(output_dir=str(tmp_path), **kw)


def test_best_metric_defaults_as_transformers(tmp_path):
    for kw in (dict(load_best_model_at_end=True, eval_strategy="epoch", save_strategy="epoch"),
               dict(metric_for_best_model="accuracy"), dict(metric_for_best_model="eval_loss")):
        ours = B.TrainingArguments(output_dir=str(tmp_path), **kw)
        ref = T.TrainingArguments(output_dir=str(tmp_path), use_cpu=True, **kw)
        assert ours.metric_for_best_model == ref.metric_for_best_model
        assert ours.greater_is_better == ref.greater_is_better


def test_model_init_is_called_again_by_train(tokenizer, tmp_path):
    """As transformers: model_init builds the model at construction and again (after seeding) in train()."""
    models("bert", "single", tmp_path)  # writes the initial folder
    calls = []

    def model_init():
        calls.append(1)
        return B.AutoModelForSequenceClassification.from_pretrained(tmp_path / "init")

    trainer = B.Trainer(model_init=model_init, args=B.TrainingArguments(**common(tmp_path, "o", max_steps=2)),
                        train_dataset=make_rows("single", tokenizer, 8, seed=1), processing_class=tokenizer)
    first = trainer.model
    trainer.train()
    assert len(calls) == 2 and trainer.model is not first
    trained, untouched = dict(tree_flatten(trainer.model.parameters())), dict(tree_flatten(first.parameters()))
    assert any(np.abs(np.array(v) - np.array(untouched[k])).max() > 0 for k, v in trained.items())

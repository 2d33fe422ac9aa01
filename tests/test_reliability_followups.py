"""Where the save, guard and input checks meet: rotation never drops the last good checkpoint, a
checkpoint swap a kill interrupted is put back before resume picks one, a load finishes a killed save,
and the transformers façade refuses custom code like the other loaders."""

from __future__ import annotations

import re

import json
import os
import subprocess
import sys

import mlx_hf_bridge  # noqa: F401
import pytest
from test_engine_standin import TinyContrastive, TinyEncoder, pairs

from mlx_hf_bridge import io_utils
from mlx_hf_bridge.engine import NonFiniteLossError, health
from mlx_hf_bridge.errors import InvalidFileError
from mlx_hf_bridge.sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
from mlx_hf_bridge.transformers import AutoModel

from mlx_hf_bridge.models import SUPPORTED_MODEL_TYPES  # noqa: E402

SUPPORTED = ", ".join(SUPPORTED_MODEL_TYPES)  # the error lists every built-in type


class RecordStart:
    def on_train_begin(self, args, state, control, **kwargs):
        self.step = state.global_step


class LrSpike:
    """Multiplies the learning rate by 1e30 from ``step`` on (a run that explodes mid-way)."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, optimizer=None, **kwargs):
        if state.global_step == self.step:
            for group in optimizer.groups:
                group["lr"] *= 1e30


def make(out, callbacks=None, **kw):
    model = TinyEncoder(dropout=0.0)
    base = dict(output_dir=str(out), per_device_train_batch_size=2, num_train_epochs=1, learning_rate=1e-2,
                logging_steps=1, save_strategy="steps", save_steps=1, disable_tqdm=True)
    args = SentenceTransformerTrainingArguments(**{**base, **kw})
    return SentenceTransformerTrainer(model=model, args=args, train_dataset=pairs(10), loss=TinyContrastive(model),
                                      callbacks=callbacks)


def checkpoints(out):
    return sorted((p.name for p in out.iterdir() if p.name.startswith("checkpoint-")), key=lambda n: int(n[11:]))


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_save_total_limit_1_keeps_the_last_checkpoint_a_step_trained_from(tmp_path):
    """With limit 1 the only checkpoint would be the one just saved, not yet trained from; when the
    next step explodes, resume needs the one before it, so rotation keeps that one too."""
    out = tmp_path / "out"
    trainer = make(out, save_total_limit=1, callbacks=[LrSpike(3)])
    with pytest.raises(NonFiniteLossError) as info:
        trainer.train()
    # step 4 ran at lr*1e30 (finite, exploded weights saved as checkpoint-4), step 5 gave NaN
    assert checkpoints(out) == ["checkpoint-3", "checkpoint-4"]
    assert health.read_record(out / "checkpoint-4")["verified"] == "failed"
    assert health.read_record(out / "checkpoint-3")["verified"] == "ok"
    assert f"Last good checkpoint: {out / 'checkpoint-3'}" in str(info.value)
    resumed = make(out, save_total_limit=1, callbacks=[start := RecordStart()])
    resumed.train(resume_from_checkpoint=True)
    assert start.step == 3


def test_save_total_limit_1_without_a_fault_keeps_latest_and_its_verified_predecessor(tmp_path):
    out = tmp_path / "out"
    make(out, save_total_limit=1).train()
    assert checkpoints(out) == ["checkpoint-4", "checkpoint-5"]  # 5 just saved (pending), 4 trained from


def test_a_checkpoint_swap_interrupted_by_a_kill_is_restored_before_resume_picks_one(tmp_path):
    out = tmp_path / "out"
    make(out, max_steps=4, save_steps=2).train()
    assert checkpoints(out) == ["checkpoint-2", "checkpoint-4"]
    # what a kill between the two renames of a checkpoint-4 replacement leaves
    aside = out / f".checkpoint-4.old-{io_utils._host()}-{dead_pid()}-abcd1234"
    os.replace(out / "checkpoint-4", aside)
    start = RecordStart()
    make(out, max_steps=5, save_steps=2, callbacks=[start]).train(resume_from_checkpoint=True)
    assert start.step == 4  # not checkpoint-2, the newest one left in place
    assert not aside.exists() and (out / "checkpoint-4").is_dir()


def test_loading_a_folder_finishes_a_save_that_a_kill_interrupted(tmp_path, tiny_bert_dir):
    """A staging folder marked complete (every file written) whose moves a kill cut short is rolled
    forward by the next load, so the loader never reads the mixed state."""
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(tiny_bert_dir, folder)
    staging = folder / f"{io_utils.STAGING_PREFIX}tmp-{io_utils._host()}-{dead_pid()}-abcd1234"
    staging.mkdir()
    config = json.loads((folder / "config.json").read_text())
    config["layer_norm_eps"] = 1e-7  # the "new" save differs from the folder in one value
    (staging / "config.json").write_text(json.dumps(config))
    (staging / io_utils.COMPLETE).write_text("")
    model = AutoModel.from_pretrained(str(folder))
    assert model.config.layer_norm_eps == 1e-7
    assert not staging.exists()


def test_transformers_facade_refuses_custom_code_with_trust_remote_code(copy_dir, tiny_bert_dir):
    folder = copy_dir(tiny_bert_dir)
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_custom.CustomModel"}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"modeling_custom\.CustomModel.*" + re.escape(SUPPORTED)):
        AutoModel.from_pretrained(str(folder), trust_remote_code=True)
    assert AutoModel.from_pretrained(str(folder)).config.model_type == "bert"  # transformers: built-in class


def test_damaged_training_args_of_the_resume_checkpoint_are_named(tmp_path):
    out = tmp_path / "out"
    make(out, max_steps=2, save_steps=2).train()
    (out / "checkpoint-2" / "training_args.json").write_text("{not json")
    counter = RecordStart()
    with pytest.raises(InvalidFileError, match=r"checkpoint-2/training_args\.json.*not valid JSON.*Delete that file"):
        make(out, max_steps=4, save_steps=2, callbacks=[counter]).train(resume_from_checkpoint=True)
    assert not hasattr(counter, "step")  # before training began


def test_a_model_a_step_made_non_finite_is_not_saved(tmp_path, tiny_bert_dir):
    import mlx.core as mx

    from mlx_hf_bridge.engine.step import mark_damaged
    from mlx_hf_bridge.pylate import models

    model = models.ColBERT(str(tiny_bert_dir))
    good = model.dense[0].linear.weight
    model.dense[0].linear.weight = mx.full(good.shape, float("nan"))
    mark_damaged(model, "step 3 made 1 array non-finite")
    with pytest.raises(ValueError, match=r"Not saving to .*weights are not finite \(step 3.*resume_from_checkpoint=True"):
        model.save(str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()
    model.dense[0].linear.weight = good  # finite weights back: the mark clears itself
    model.save(str(tmp_path / "out"))
    assert (tmp_path / "out" / "model.safetensors").is_file()


def test_trainer_save_model_refuses_weights_an_update_made_non_finite(tmp_path):
    from mlx_hf_bridge.engine.step import NonFiniteWeightsError

    trainer = make(tmp_path / "out", learning_rate=1e39, save_strategy="no")  # inf in float32
    with pytest.raises(NonFiniteWeightsError):
        trainer.train()
    with pytest.raises(ValueError, match="Not saving to"):
        trainer.save_model(str(tmp_path / "final"))
    assert not (tmp_path / "final").exists()


def test_dense_weights_of_the_wrong_shape_name_the_folder_and_both_shapes(tmp_path, tiny_bert_dir):
    import mlx.core as mx

    from mlx_hf_bridge.pylate import models

    folder = tmp_path / "colbert"
    models.ColBERT(str(tiny_bert_dir)).save(str(folder))
    mx.save_safetensors(str(folder / "1_Dense" / "model.safetensors"), {"linear.weight": mx.zeros((64, 32))},
                        metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"Dense config\.json and the weights in .*1_Dense disagree.*"
                                         r"linear\.weight: \(64, 32\) in the file, \(128, 32\)"):
        models.ColBERT(str(folder))


@pytest.mark.parametrize("collator_kind", ["pylate", "st6"])
def test_ragged_label_rows_are_named_by_both_collators(collator_kind):
    """One shared collator prelude (engine.data.start_batch): ragged scores name the column and lengths."""
    from mlx_hf_bridge.pylate.utils import ColBERTCollator
    from mlx_hf_bridge.sentence_transformers.multi_vector_encoder import MultiVectorEncoderDataCollator

    def tokenize(texts, **kwargs):
        raise AssertionError("labels are checked before any text is tokenized")

    collator = ColBERTCollator(tokenize) if collator_kind == "pylate" else MultiVectorEncoderDataCollator(tokenize)
    rows = [{"query": "q", "document": "d", "scores": [0.1, 0.2]}, {"query": "q", "document": "d", "scores": [0.3]}]
    with pytest.raises(ValueError, match=r"label column 'scores' cannot form one array .*row lengths \[1, 2\]"):
        collator(rows)

"""transformers scripts under ``mlx-hf-bridge run``: the docs-style classification example runs unmodified,
its saved folder loads in real transformers (torch) with the bridge's logits, and the script's names resolve
as runner_transformers documents (bridge models / Trainer / collators; real tokenizers; torch-only names refused).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from example_modules import load_script_module
from test_runner import _env, ok, run_script, write  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "transformers_scripts"
write_local_data = load_script_module(EXAMPLES / "make_local_data.py", "transformers_make_local_data").write


def test_docs_style_classification_script_runs_unmodified_and_loads_in_transformers(tmp_path, tiny_bert_dir):
    torch = pytest.importorskip("torch")
    from transformers import AutoModelForSequenceClassification as TorchAuto
    from transformers import AutoTokenizer

    from mlx_hf_bridge.transformers import AutoModelForSequenceClassification

    data = write_local_data(tmp_path / "imdb-local", train_rows=16, test_rows=8)
    out = tmp_path / "my_awesome_model"
    result = ok(run_script(EXAMPLES / "text_classification.py", "--model", tiny_bert_dir, "--dataset", data,
                           "--output_dir", out, "--epochs", 1, "--batch_size", 8))
    assert "'eval_accuracy'" in result.stdout and "SAVED" in result.stdout, result.stdout[-2000:]
    final = out / "final"
    config = json.loads((final / "config.json").read_text())
    assert config["id2label"] == {"0": "NEGATIVE", "1": "POSITIVE"}
    assert config["architectures"] == ["BertForSequenceClassification"]

    texts = [json.loads(line)["text"] for line in (data / "test.jsonl").read_text().splitlines()][:4]
    batch = AutoTokenizer.from_pretrained(str(final))(texts, padding=True, truncation=True, return_tensors="np")
    reference = TorchAuto.from_pretrained(str(final)).eval()
    with torch.no_grad():
        theirs = reference(**{k: torch.from_numpy(v) for k, v in batch.items()}).logits.numpy()
    ours = np.array(AutoModelForSequenceClassification.from_pretrained(str(final))(**batch).logits)
    diff = float(np.abs(ours - theirs).max())
    print(f"saved folder: transformers vs bridge logits max|d| {diff:.2e}")
    assert diff <= 1e-4, diff
    assert np.abs(theirs).max() > 1e-3  # a real head: not all-zero logits


def test_names_resolve_to_the_bridge_tokenizers_stay_real_torch_names_are_refused(tmp_path):
    script = write(tmp_path, """
        import json
        import transformers
        from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding,
                                  EarlyStoppingCallback, Trainer, TrainingArguments, set_seed)
        from transformers.trainer_utils import EvalPrediction
        from transformers import pipeline
        from transformers.pipelines import TokenClassificationPipeline, pipeline as pipeline_from_submodule
        got = {name: obj.__module__ for name, obj in [
            ("pipeline", pipeline), ("pipelines.pipeline", pipeline_from_submodule),
            ("TokenClassificationPipeline", TokenClassificationPipeline),
            ("AutoModelForSequenceClassification", AutoModelForSequenceClassification), ("Trainer", Trainer),
            ("TrainingArguments", TrainingArguments), ("DataCollatorWithPadding", DataCollatorWithPadding),
            ("EarlyStoppingCallback", EarlyStoppingCallback), ("EvalPrediction", EvalPrediction),
            ("AutoTokenizer", AutoTokenizer), ("set_seed", set_seed)]}
        errors = {}
        for name in ["BertForSequenceClassification", "get_linear_schedule_with_warmup", "ZeroShotClassificationPipeline"]:
            try:
                getattr(transformers, name)
            except ImportError as e:
                errors[name] = [type(e).__name__, str(e)]
        try:
            from transformers.models.bert import modeling_bert  # noqa: F401
        except ImportError as e:
            errors["modeling_bert"] = [type(e).__name__, str(e)]
        print("RESULT " + json.dumps({"modules": got, "errors": errors}))
    """)
    result = ok(run_script(script, env=_env()))
    line = next(x for x in result.stdout.splitlines() if x.startswith("RESULT "))
    got = json.loads(line[len("RESULT "):])
    for name in ["AutoModelForSequenceClassification", "Trainer", "TrainingArguments", "DataCollatorWithPadding",
                 "EarlyStoppingCallback", "EvalPrediction", "pipeline", "pipelines.pipeline", "TokenClassificationPipeline"]:
        assert got["modules"][name].startswith("mlx_hf_bridge."), (name, got["modules"][name])
    for name in ["AutoTokenizer", "set_seed"]:
        assert got["modules"][name].startswith("transformers."), (name, got["modules"][name])
    assert set(got["errors"]) == {"BertForSequenceClassification", "get_linear_schedule_with_warmup", "modeling_bert",
                                  "ZeroShotClassificationPipeline"}
    for name, (kind, message) in got["errors"].items():
        assert kind == "TorchNameError", (name, kind, message)
    assert "BertForSequenceClassification" in got["errors"]["BertForSequenceClassification"][1]
    assert "get_linear_schedule_with_warmup" in got["errors"]["get_linear_schedule_with_warmup"][1]

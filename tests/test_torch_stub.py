"""The stub ``torch`` of ``mlx-hf-bridge run`` when torch is not installed: what ``datasets`` and
ST-style scripts touch works (``torch.Generator`` / ``torch.Tensor`` / ``torch.nn.Module`` type checks in
datasets' hashing, ``get_worker_info`` when iterating, seeds, device probes, ``no_grad``), and anything
that would compute fails naming the attribute and that it needs real torch.

torch is hidden from a subprocess by a wrapper around the path finder (``HIDE_TORCH``): ``import torch``,
``importlib.util.find_spec("torch")`` and ``importlib.metadata.version("torch")`` then behave as if torch
were not installed, before the runner installs its stub. (A ``python -S`` view of site-packages without torch, as tests/test_runner.py uses,
breaks datasets' own fingerprinting with pyarrow 26 — ``MonthDayNano`` not picklable — torch or not.)
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import mlx_hf_bridge

ROOT = Path(__file__).resolve().parent.parent

HIDE_TORCH = """
import importlib.machinery, importlib.metadata, sys
HIDDEN = ("torch", "functorch", "torchgen", "torchvision")
class _HideTorch(importlib.machinery.PathFinder):
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name.split(".")[0] in HIDDEN:
            return None
        return importlib.machinery.PathFinder.find_spec(name, path, target)

    @classmethod
    def find_distributions(cls, context=importlib.metadata.DistributionFinder.Context()):
        found = importlib.machinery.PathFinder.find_distributions(context)
        return (d for d in found if (d.metadata["Name"] or "").lower() not in HIDDEN)
sys.meta_path[:] = [_HideTorch if f is importlib.machinery.PathFinder else f for f in sys.meta_path]
from mlx_hf_bridge import runner
sys.exit(runner.main(sys.argv[1:]))
"""


def run_without_torch(tmp_path, body: str, *args, timeout=300):
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(body))
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               HF_DATASETS_CACHE=str(tmp_path / "hf-cache"),
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    result = subprocess.run([sys.executable, "-c", HIDE_TORCH, str(script), *map(str, args)], capture_output=True,
                            text=True, cwd=tmp_path, env=env, timeout=timeout)
    assert result.returncode == 0, f"--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-6000:]}"
    return result.stdout


def test_the_wrapper_hides_torch(tmp_path):
    out = run_without_torch(tmp_path, """
        import importlib.metadata, sys
        import datasets
        from transformers.utils import is_torch_available
        assert not is_torch_available() and datasets.config.TORCH_AVAILABLE is False
        assert "torch" not in sys.modules
        try:
            importlib.metadata.version("torch")
        except importlib.metadata.PackageNotFoundError:
            print("NO METADATA")
        print("HIDDEN")
    """)
    assert "HIDDEN" in out and "NO METADATA" in out


def test_datasets_work_after_the_script_imports_the_stub(tmp_path):
    out = run_without_torch(tmp_path, """
        import torch  # first, as ST / PyLate scripts do
        import datasets
        from datasets import Dataset

        assert torch.__version__ == "mlx_hf_bridge-stub"
        assert datasets.config.TORCH_AVAILABLE is False  # what datasets says without torch
        ds = Dataset.from_dict({"query": ["a", "b", "c"], "positive": ["d", "e", "f"]})
        ds = ds.map(lambda row: {"query": row["query"] + "?"})          # hashes the function (torch types)
        ds = ds.filter(lambda row: row["positive"] != "f").shuffle(seed=0)
        rows = list(ds.to_iterable_dataset())                            # get_worker_info
        assert sorted(r["query"] for r in rows) == ["a?", "b?"], rows
        split = ds.train_test_split(test_size=0.5, seed=1)
        assert len(split["train"]) == len(split["test"]) == 1
        print("DATASETS OK")
    """)
    assert "DATASETS OK" in out


def test_what_scripts_touch_works_and_computing_fails_loudly(tmp_path):
    out = run_without_torch(tmp_path, """
        import torch
        import torch.nn, torch.utils.data, torch.backends.mps
        import mlx.core as mx

        torch.manual_seed(3); a = mx.random.normal((2,))
        torch.random.manual_seed(3); b = mx.random.normal((2,))
        assert mx.array_equal(a, b)
        torch.cuda.manual_seed_all(3); torch.cuda.empty_cache()
        assert torch.cuda.is_available() is False and torch.cuda.device_count() == 0
        assert isinstance(torch.backends.mps.is_available(), bool)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        for value in (object(), 1.0, mx.array([1.0]), [1]):
            assert not isinstance(value, (torch.Tensor, torch.Generator, torch.nn.Module))
        assert torch.utils.data.get_worker_info() is None
        with torch.no_grad():
            pass

        @torch.inference_mode()
        def f(x):
            return x + 1

        assert f(1) == 2

        class Model(torch.nn.Module):
            pass

        for label, make in [("GEN", lambda: torch.Generator().manual_seed(0)), ("TENSOR", lambda: torch.Tensor([1])),
                            ("MODULE", Model), ("TENSORFN", lambda: torch.tensor([1.0])),
                            ("LINEAR", lambda: torch.nn.Linear(2, 2)), ("LOADER", lambda: torch.utils.data.DataLoader([]))]:
            try:
                make()
            except (RuntimeError, AttributeError) as exc:
                print(label, type(exc).__name__, exc)
        try:
            import torch.nn.functional
        except ImportError as exc:
            print("FUNCTIONAL", exc)
    """)
    version = mlx_hf_bridge.__version__
    for label, what in [("GEN", "torch.Generator(...)"), ("TENSOR", "torch.Tensor(...)"), ("MODULE", "torch.nn.Module(...)"),
                        ("TENSORFN", "torch.tensor"), ("LINEAR", "torch.nn.Linear"),
                        ("LOADER", "torch.utils.data.DataLoader"), ("FUNCTIONAL", "torch.nn.functional")]:
        line = next((ln for ln in out.splitlines() if ln.startswith(label + " ")), None)
        assert line is not None, (label, out)
        assert f"`{what}` is not available: torch is not installed" in line and f"mlx_hf_bridge {version}" in line, line


def test_an_st_style_training_script_runs_without_torch(tmp_path, tiny_bert_dir):
    out = run_without_torch(tmp_path, """
        import sys
        import torch
        from datasets import Dataset
        from pylate import losses, models, utils
        from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

        torch.manual_seed(0)
        model = models.ColBERT(sys.argv[1], device="cuda" if torch.cuda.is_available() else "cpu")
        train = Dataset.from_dict({"query": ["what is mlx", "who trains models"] * 2,
                                   "positive": ["mlx is an array framework", "engineers train models"] * 2,
                                   "negative": ["bananas are yellow", "the sky is blue"] * 2})
        args = SentenceTransformerTrainingArguments(output_dir="out", per_device_train_batch_size=2, max_steps=2,
                                                    save_strategy="no", logging_steps=1, disable_tqdm=True)
        trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=train,
                                             loss=losses.Contrastive(model),
                                             data_collator=utils.ColBERTCollator(model.tokenize))
        trainer.train()
        losses_seen = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        assert len(losses_seen) == 2, trainer.state.log_history
        assert type(sys.modules["torch"]).__name__ == "_StubModule"
        print("TRAINED", losses_seen)
    """, tiny_bert_dir)
    assert "TRAINED" in out


def test_dtypes_devices_and_autocast_that_st_scripts_use(tmp_path):
    # ST 6.2's msmarco examples: model_kwargs={"torch_dtype": torch.float32},
    # `with torch.autocast(device_type=model.device.type, dtype=torch.bfloat16): evaluator(model)`
    out = run_without_torch(tmp_path, """
        import logging
        import torch

        logging.basicConfig(level=logging.INFO)
        assert str(torch.float32) == "torch.float32" and repr(torch.bfloat16) == "torch.bfloat16"
        assert torch.float32 == torch.float32 and torch.float32 != torch.float16
        assert {torch.float32: 1}[torch.float32] == 1
        device = torch.device("cpu")
        assert device.type == "cpu" and device.index is None and str(device) == "cpu"
        assert torch.device("mps:0").index == 0 and torch.device(torch.device("mps", 1)).type == "mps"
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            x = 1
        with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
            pass
        print("STUB OK", x)
    """)
    assert "STUB OK 1" in out

"""``mlx-hf-bridge run``: import aliasing, clear errors for what the bridge lacks, torch.compile pass-through,
the torch stub, and PyLate's own training scripts run unchanged on tiny local models and data.

Scripts run in a subprocess through ``runner.main`` (or ``python -m mlx_hf_bridge run``), as users run them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from example_modules import load_script_module

import mlx_hf_bridge
from mlx_hf_bridge import runner

ROOT = Path(__file__).resolve().parent.parent
PYLATE_SCRIPTS = ROOT / "examples" / "pylate_scripts"
VERSION = mlx_hf_bridge.__version__


def _env(**extra):
    env = dict(os.environ)
    env.update({"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))})
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_script(script: Path, *args, cwd=None, env=None, python=(sys.executable,), timeout=300):
    """``runner.main([script, *args])`` in a fresh interpreter; returns the CompletedProcess."""
    code = "import sys; from mlx_hf_bridge import runner; sys.exit(runner.main(sys.argv[1:]))"
    return subprocess.run([*python, "-c", code, str(script), *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env or _env(), timeout=timeout)


def write(tmp_path, body: str, name="script.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def ok(result):
    assert result.returncode == 0, f"rc={result.returncode}\n--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-6000:]}"
    return result


# --- aliasing --------------------------------------------------------------------------------------
def test_every_import_form_resolves_to_the_bridge_modules(tmp_path):
    script = write(tmp_path, """
        import sys
        import pylate
        import pylate.scores
        from pylate import evaluation, losses, models, utils
        from pylate.losses import CachedContrastive
        from pylate.models import ColBERT as C
        from pylate.utils import ColBERTCollator
        import sentence_transformers
        import sentence_transformers.evaluation
        import sentence_transformers.training_args as targs
        from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
        from sentence_transformers.training_args import BatchSamplers

        import mlx_hf_bridge.pylate as bp
        import mlx_hf_bridge.sentence_transformers as bst

        assert pylate is bp and sys.modules["pylate"] is bp
        assert models is bp.models is sys.modules["pylate.models"] is pylate.models
        assert losses is bp.losses and utils is bp.utils and evaluation is bp.evaluation
        assert pylate.scores is bp.scores is sys.modules["pylate.scores"]
        assert CachedContrastive is bp.losses.CachedContrastive and C is bp.models.ColBERT
        assert ColBERTCollator is bp.utils.ColBERTCollator
        assert sentence_transformers is bst and sentence_transformers.evaluation is bst.evaluation
        assert targs is bst.training_args is sys.modules["sentence_transformers.training_args"]
        assert SentenceTransformerTrainer is bst.SentenceTransformerTrainer
        assert SentenceTransformerTrainingArguments is bst.SentenceTransformerTrainingArguments
        assert BatchSamplers is bst.training_args.BatchSamplers
        assert pylate.__version__ == __import__("mlx_hf_bridge").__version__
        # the bridge modules keep their own identity
        assert models.__name__ == "mlx_hf_bridge.pylate.models" and models.__spec__.name == models.__name__
        # nothing real was imported behind our back
        for name, module in sys.modules.items():
            if name.split(".")[0] in ("pylate", "sentence_transformers"):
                assert module.__name__.startswith("mlx_hf_bridge."), (name, module)
        print("ARGV", sys.argv, __name__)
        sys.exit(3)
    """)
    result = run_script(script, "a", "--flag", "x y")
    assert result.returncode == 3, result.stderr[-4000:]
    assert f"ARGV {[str(script), 'a', '--flag', 'x y']} __main__" in result.stdout



def test_st6_multi_vector_import_forms_resolve_to_the_bridge(tmp_path):
    """The names an ST 6 multi-vector training script imports, as it writes them."""
    script = write(tmp_path, """
        import sys
        from sentence_transformers import (MultiVectorEncoder, MultiVectorEncoderTrainer,
                                           MultiVectorEncoderTrainingArguments)
        from sentence_transformers.base.modules import Dense, Normalize, Transformer
        from sentence_transformers.base.sampler import BatchSamplers
        from sentence_transformers.multi_vector_encoder import MultiVectorEncoderDataCollator
        from sentence_transformers.multi_vector_encoder.losses import (
            CachedMultiVectorMultipleNegativesRankingLoss, MultiVectorDistillKLDivLoss)
        from sentence_transformers.multi_vector_encoder.modules import MultiVectorMask
        import mlx_hf_bridge.modules as bm
        import mlx_hf_bridge.sentence_transformers.multi_vector_encoder as bmv

        assert MultiVectorEncoderTrainer is bmv.MultiVectorEncoderTrainer
        assert MultiVectorEncoderTrainingArguments is bmv.MultiVectorEncoderTrainingArguments
        assert (Transformer, Dense, Normalize, MultiVectorMask) == (bm.Transformer, bm.Dense, bm.Normalize,
                                                                    bm.MultiVectorMask)
        assert CachedMultiVectorMultipleNegativesRankingLoss is bmv.losses.CachedMultiVectorMultipleNegativesRankingLoss
        assert MultiVectorEncoder.__module__.startswith("mlx_hf_bridge.")
        assert BatchSamplers.NO_DUPLICATES.value == "no_duplicates"
        for name, module in sys.modules.items():
            if name.split(".")[0] == "sentence_transformers":
                assert module.__name__.startswith("mlx_hf_bridge."), (name, module)
        print("RESOLVED")
    """)
    assert "RESOLVED" in ok(run_script(script)).stdout

def test_python_dash_m_cli_runs_a_script_with_the_redirection(tmp_path):
    (tmp_path / "helper_mod.py").write_text("VALUE = 7\n")  # the script's folder is importable
    script = write(tmp_path, """
        import sys
        import helper_mod
        from pylate import models
        print("OK", models.__name__, helper_mod.VALUE, sys.argv[1:])
    """)
    result = ok(subprocess.run([sys.executable, "-m", "mlx_hf_bridge", "run", str(script), "--x", "1"],
                               capture_output=True, text=True, env=_env(), timeout=120))
    assert "OK mlx_hf_bridge.pylate.models 7 ['--x', '1']" in result.stdout


def test_usage_and_missing_script():
    assert runner.main([]) == 2
    assert runner.main(["--help"]) == 0
    assert runner.main(["/definitely/not/here.py"]) == 2


# --- clear failures, never a silent fallback to torch ----------------------------------------------
@pytest.mark.parametrize(
    "code, what",
    [
        ("from pylate import hf_hub", "pylate.hf_hub"),
        ("import pylate.hf_hub", "pylate.hf_hub"),
        ("from pylate.models import NotAThing", "pylate.models.NotAThing"),
        ("from pylate.losses import NotALoss", "pylate.losses.NotALoss"),
        ("import pylate.models\npylate.models.NotAThing", "pylate.models.NotAThing"),
        ("from sentence_transformers import CrossEncoder", "sentence_transformers.CrossEncoder"),
        ("import sentence_transformers.sparse_encoder", "sentence_transformers.sparse_encoder"),
        ("from sentence_transformers.losses import NotALoss", "sentence_transformers.losses.NotALoss"),
        ("from sentence_transformers.training_args import NotAnEnum", "sentence_transformers.training_args.NotAnEnum"),
        ("import sentence_transformers as st\nst.NotAThing", "sentence_transformers.NotAThing"),
    ],
)
def test_missing_names_fail_naming_the_name_the_module_and_the_bridge_version(tmp_path, code, what):
    script = write(tmp_path, code + "\n")
    result = run_script(script, timeout=120)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert f"`{what}`" in last and f"mlx_hf_bridge {VERSION}" in last, result.stderr[-3000:]
    assert ("ImportError" in last or "AttributeError" in last or "ModuleNotFoundError" in last), last
    # the error never came from the real libraries
    assert "site-packages/pylate" not in result.stderr and "site-packages/sentence_transformers" not in result.stderr


def test_a_script_can_still_catch_a_missing_name(tmp_path):
    script = write(tmp_path, """
        try:
            from pylate import hf_hub
        except ImportError as exc:
            print("CAUGHT", type(exc).__name__)
        try:
            import pylate.models
            pylate.models.NotAThing
        except AttributeError:
            print("CAUGHT AttributeError")
        import pylate.models
        assert getattr(pylate.models, "NotAThing", None) is None and not hasattr(pylate.models, "Nope")
    """)
    result = ok(run_script(script, timeout=120))
    assert "CAUGHT" in result.stdout and "CAUGHT AttributeError" in result.stdout


# --- torch -----------------------------------------------------------------------------------------
def test_torch_compile_returns_mlx_modules_unchanged(tmp_path):
    script = write(tmp_path, """
        import sys
        assert "torch" not in sys.modules or hasattr(sys.modules["torch"].compile, "_mlx_hf_bridge_passthrough")
        import torch
        import mlx.nn as nn
        from pylate import models
        layer = nn.Linear(3, 2)
        assert torch.compile(layer) is layer
        assert torch.compile(model=layer) is layer
        # anything that is not an MLX module still goes to the real torch.compile
        assert torch.compile._mlx_hf_bridge_original.__module__.startswith("torch")
        wrapped = torch.compile(torch.nn.Linear(3, 2))
        assert type(wrapped).__name__ == "OptimizedModule", type(wrapped)
        print("OK")
    """)
    assert "OK" in ok(run_script(script, timeout=180)).stdout


def test_redirect_imports_context_restores_the_process(monkeypatch):
    import types

    sentinel = types.ModuleType("pylate")
    monkeypatch.setitem(sys.modules, "pylate", sentinel)
    import mlx_hf_bridge.pylate.models as bridge_models

    with runner.redirect_imports():
        import pylate

        assert pylate is mlx_hf_bridge.pylate
        assert "__getattr__" in vars(bridge_models)
        with pytest.raises(AttributeError, match=rf"mlx_hf_bridge {VERSION} does not provide `pylate.models.Nope`"):
            bridge_models.Nope  # noqa: B018
    assert sys.modules["pylate"] is sentinel
    assert "__getattr__" not in vars(bridge_models)
    assert not any(isinstance(f, runner.BridgeFinder) for f in sys.meta_path)


def _site_packages() -> Path | None:
    for entry in sys.path:
        path = Path(entry)
        if path.name == "site-packages" and (path / "mlx").exists():
            return path
    return None


@pytest.fixture(scope="module")
def no_torch_site(tmp_path_factory):
    """A copy of site-packages (symlinks) without torch, for ``python -S`` (no .pth files)."""
    site = _site_packages()
    if site is None:
        pytest.skip("cannot locate site-packages to build a torch-free view")
    view = tmp_path_factory.mktemp("no-torch-site")
    hidden = ("torch", "functorch", "torchgen", "__pycache__")
    for entry in site.iterdir():
        name = entry.name
        if name in hidden or name.startswith("torch-") or name.endswith(".pth"):
            continue
        (view / name).symlink_to(entry)
    return view


def test_torch_stub_when_torch_is_not_installed(tmp_path, no_torch_site):
    script = write(tmp_path, """
        import sys
        import datasets
        import torch
        from transformers.utils import is_torch_available
        from pylate import models
        import mlx.nn as nn

        assert torch.__version__ == "mlx_hf_bridge-stub"
        layer = nn.Linear(2, 2)
        assert torch.compile(layer) is layer
        torch.manual_seed(0)
        assert torch.cuda.is_available() is False and torch.cuda.device_count() == 0
        assert isinstance(torch.backends.mps.is_available(), bool)
        assert not isinstance(object(), torch.Tensor)
        assert is_torch_available() is False and datasets.config.TORCH_AVAILABLE is False
        try:
            torch.nn.Linear
        except AttributeError as exc:
            print("ATTR", exc)
        try:
            import torch.distributed
        except ImportError as exc:
            print("MOD", exc)
    """)
    env = _env(PYTHONPATH=os.pathsep.join([str(no_torch_site), str(ROOT)]))
    result = ok(run_script(script, env=env, python=(sys.executable, "-S"), timeout=180))
    assert "ATTR `torch.nn.Linear` is not available: torch is not installed" in result.stdout
    assert f"mlx_hf_bridge {VERSION}" in result.stdout
    assert "MOD `torch.distributed` is not available" in result.stdout


def test_libraries_do_not_see_the_stub_unless_the_script_imports_torch(tmp_path, no_torch_site):
    script = write(tmp_path, """
        import sys
        import datasets
        from transformers.utils import is_torch_available
        # libraries probe with importlib.util.find_spec("torch"): they must still see "not installed"
        assert is_torch_available() is False and datasets.config.TORCH_AVAILABLE is False
        assert "torch" not in sys.modules
        print("OK")
    """)
    env = _env(PYTHONPATH=os.pathsep.join([str(no_torch_site), str(ROOT)]))
    assert "OK" in ok(run_script(script, env=env, python=(sys.executable, "-S"), timeout=180)).stdout


# --- PyLate's own training scripts, unchanged, on tiny local models and data --------------------------
@pytest.fixture(scope="module")
def local_data(tmp_path_factory):
    make_local_data = load_script_module(PYLATE_SCRIPTS / "make_local_data.py", "pylate_make_local_data")
    out = tmp_path_factory.mktemp("pylate-local")
    return {
        "msmarco": make_local_data.msmarco_bm25(out),
        "kd": make_local_data.ms_marco_en_bge(out),
        **make_local_data.reasonir(out, queries=2),
    }


@pytest.fixture(scope="module")
def tiny_moderncolbert_base(tmp_path_factory):
    """A tiny ModernBERT (1 head, so the recipe's 8192-token documents stay cheap on a CPU)."""
    import torch
    from transformers import AutoModel, AutoTokenizer, ModernBertConfig

    from mlx_hf_bridge import assets

    torch.manual_seed(0)
    config = ModernBertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=1, intermediate_size=48, vocab_size=50368,
        max_position_embeddings=8192, local_attention=16, global_attn_every_n_layers=3, pad_token_id=50283,
        cls_token_id=50281, sep_token_id=50282, bos_token_id=50281, eos_token_id=50282,
    )
    path = tmp_path_factory.mktemp("tiny-gte-moderncolbert")
    AutoModel.from_config(config).save_pretrained(path)
    AutoTokenizer.from_pretrained(str(assets.modernbert_tokenizer_dir())).save_pretrained(path)
    return path


def _checkpoints(folder: Path):
    return sorted(p.name for p in folder.glob("checkpoint-*"))


def test_pylate_contrastive_example_runs_unchanged(tmp_path, tiny_bert_dir, local_data):
    env = _env(PYLATE_EXAMPLE_MODEL=tiny_bert_dir, PYLATE_EXAMPLE_DATA=local_data["msmarco"],
               HF_DATASETS_CACHE=tmp_path / "hf-cache")
    result = ok(run_script(PYLATE_SCRIPTS / "contrastive.py", cwd=tmp_path, env=env))
    out = tmp_path / "output" / "contrastive-bert-base-uncased"
    assert _checkpoints(out), list(out.glob("*"))
    assert (out / _checkpoints(out)[-1] / "modules.json").exists()
    assert "train_loss" in result.stdout + result.stderr


def test_pylate_knowledge_distillation_example_runs_unchanged(tmp_path, tiny_bert_dir, local_data):
    env = _env(PYLATE_EXAMPLE_MODEL=tiny_bert_dir, PYLATE_EXAMPLE_DATA=local_data["kd"],
               HF_DATASETS_CACHE=tmp_path / "hf-cache")
    result = ok(run_script(PYLATE_SCRIPTS / "knowledge_distillation.py", cwd=tmp_path, env=env))
    out = tmp_path / "output" / "knowledge-distillation-bert-base"
    assert _checkpoints(out), list(out.glob("*"))
    assert "train_loss" in result.stdout + result.stderr


def test_pylate_reason_moderncolbert_example_runs_unchanged(tmp_path, tiny_moderncolbert_base, local_data):
    env = _env(PYLATE_EXAMPLE_MODEL=tiny_moderncolbert_base, PYLATE_EXAMPLE_DATA=local_data["reasonir"],
               PYLATE_EXAMPLE_DOCUMENTS=local_data["bright"], HF_DATASETS_CACHE=tmp_path / "hf-cache")
    ok(run_script(PYLATE_SCRIPTS / "reason_moderncolbert.py", cwd=tmp_path, env=env))
    short = Path(tiny_moderncolbert_base).name
    out = tmp_path / "output" / short / f"{short}-ReasonIR"
    final = out / "final"
    assert (final / "modules.json").exists() and (final / "1_Dense").is_dir()
    config = json.loads((final / "config_sentence_transformers.json").read_text())
    assert config["document_length"] == 8192 and config["query_length"] == 128 and config["skiplist_words"] == []
    assert _checkpoints(out) == ["checkpoint-3"]  # 2 rows, batch 256, 3 epochs: one step per epoch

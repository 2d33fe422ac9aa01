"""report_to: TensorBoard / MLflow / W&B (offline) / Trackio from a tiny ST training run, read back from
local stores and compared with what transformers' own callback writes for the same args, state and logs."""

from __future__ import annotations

import copy
import glob
import json
import math
import struct
import subprocess
import sys

import mlx_hf_bridge  # noqa: F401
import pytest
from test_engine_standin import TinyContrastive, TinyEncoder, pairs

from mlx_hf_bridge.engine import integrations
from mlx_hf_bridge.sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

TRAIN_ONLY = ("train_runtime", "train_samples_per_second", "train_steps_per_second", "train_loss", "total_flos")


class TinyConfig:
    """What the callbacks read of a transformers config (importing transformers pulls in torch: slow)."""

    def __init__(self, **values):
        self.values = values

    def to_dict(self):
        return dict(self.values)

    def to_json_string(self):
        return json.dumps(self.values, indent=2, sort_keys=True) + "\n"


def _run(tmp_path, report_to, **kw):
    """4 steps, a log every step, an evaluation at steps 2 and 4, then the final train metrics."""
    model = TinyEncoder()
    model.config = TinyConfig(hidden_size=16, num_hidden_layers=2, model_type="bert")
    extra = {"trackio_space_id": None} if report_to == "trackio" else {}
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=2, max_steps=4, logging_steps=1,
        eval_strategy="steps", eval_steps=2, save_strategy="no", disable_tqdm=True, report_to=report_to,
        run_name="mlx-run", seed=0, **extra, **kw)
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=pairs(8),
                                         eval_dataset=pairs(4, seed=3), loss=TinyContrastive(model))
    trainer.train()
    return trainer


def _replay(hf_callback, trainer, args=None):
    """What transformers.Trainer calls on its callback for the same run: train begin, each log, train end."""
    from transformers import TrainerControl, TrainerState

    args = args or trainer.args
    state, control = TrainerState(max_steps=trainer.state.max_steps), TrainerControl()
    hf_callback.on_train_begin(args, state, control, model=trainer.model)
    for entry in trainer.state.log_history:
        state.global_step = entry["step"]
        hf_callback.on_log(args, state, control, logs={k: v for k, v in entry.items() if k != "step"},
                           model=trainer.model)
    hf_callback.on_train_end(args, state, control, model=trainer.model)


def _expected(trainer, rewrite=True, skip=()):
    """{(name, step): value} from log_history, with HF's name rewriting."""
    out = {}
    for entry in trainer.state.log_history:
        logs = {k: v for k, v in entry.items() if k not in ("step", *skip)}
        for k, v in (integrations.rewrite_logs(logs) if rewrite else logs).items():
            out[(k, entry["step"])] = v
    return out


# --- names, "all", errors ----------------------------------------------------------------------------
def test_report_to_names_follow_transformers(monkeypatch):
    pytest.importorskip("torch")
    from transformers.integrations.integration_utils import get_available_reporting_integrations

    assert integrations.available_integrations() == get_available_reporting_integrations()
    args = SentenceTransformerTrainingArguments(output_dir="x", report_to="all")
    assert args.report_to == get_available_reporting_integrations()
    for value, want in (("none", []), (None, []), (["none"], []), ("wandb", ["wandb"]), (["mlflow"], ["mlflow"])):
        assert integrations.normalise_report_to(value) == want
    with pytest.raises(ValueError, match="foo is not supported, only mlflow, tensorboard, wandb, trackio"):
        integrations.reporting_callbacks("foo")
    with pytest.raises(ValueError, match="'comet_ml' is a transformers integration the MLX bridge does not"):
        integrations.reporting_callbacks(["comet_ml"])
    monkeypatch.setattr(integrations, "_has", lambda module: False)
    for name in integrations.SUPPORTED:
        with pytest.raises(RuntimeError, match=rf"requires the {name} package: run `pip install {name}`"):
            integrations.reporting_callbacks([name])
    assert integrations.available_integrations() == []


def test_torch_only_options_are_refused_before_training(monkeypatch):
    pytest.importorskip("wandb")
    pytest.importorskip("mlflow")
    for value in ("end", "checkpoint"):
        monkeypatch.setenv("WANDB_LOG_MODEL", value)
        with pytest.raises(ValueError, match="WANDB_LOG_MODEL"):
            integrations.reporting_callbacks("wandb")
    monkeypatch.setenv("WANDB_LOG_MODEL", "false")
    monkeypatch.setenv("WANDB_WATCH", "gradients")
    with pytest.raises(ValueError, match="WANDB_WATCH"):
        integrations.reporting_callbacks("wandb")
    monkeypatch.setenv("HF_MLFLOW_LOG_ARTIFACTS", "1")
    with pytest.raises(ValueError, match="HF_MLFLOW_LOG_ARTIFACTS"):
        integrations.reporting_callbacks("mlflow")


# --- TensorBoard -------------------------------------------------------------------------------------
def _read_events(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    scalars = {(tag, e.step): e.value for tag in acc.Tags()["scalars"] for e in acc.Scalars(tag)}
    texts = {(tag, e.step): e.tensor_proto.string_val[0].decode() for tag in acc.Tags()["tensors"]
             for e in acc.Tensors(tag)}
    return scalars, texts


def test_tensorboard_events_equal_log_history_and_transformers(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    monkeypatch.setenv("TENSORBOARD_LOGGING_DIR", str(tmp_path / "tb"))
    trainer = _run(tmp_path, "tensorboard")
    scalars, texts = _read_events(tmp_path / "tb")
    expected = _expected(trainer)
    assert len(expected) >= 4 * 3 + 2 * 3 + 5 and set(scalars) == set(expected)
    for key, value in expected.items():  # float32 in the event file
        assert scalars[key] == pytest.approx(value, rel=1e-6, abs=1e-30), key
    assert texts[("args/text_summary", 0)] == trainer.args.to_json_string()
    assert json.loads(texts[("model_config/text_summary", 0)])["hidden_size"] == 16

    pytest.importorskip("torch")
    from transformers.integrations.integration_utils import TensorBoardCallback

    monkeypatch.setenv("TENSORBOARD_LOGGING_DIR", str(tmp_path / "tb-hf"))
    _replay(TensorBoardCallback(), trainer)
    hf_scalars, hf_texts = _read_events(tmp_path / "tb-hf")
    assert hf_scalars == scalars and hf_texts == texts  # same tags, steps, float32 values and texts


def test_tensorboard_writer_needs_no_torch(tmp_path):
    pytest.importorskip("tensorboard")
    code = ("import sys; from mlx_hf_bridge.engine import integrations as i; w = i._summary_writer_class()(sys.argv[1]); "
            "w.add_scalar('train/loss', 0.5, 1); w.add_text('args', '{}'); w.close(); "
            "assert not [m for m in sys.modules if m.split('.')[0] == 'torch'], 'torch imported'")
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, timeout=120)
    scalars, texts = _read_events(tmp_path)
    assert scalars == {("train/loss", 1): 0.5} and texts == {("args/text_summary", 0): "{}"}


def test_tensorboard_default_dir_is_output_dir_runs(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    monkeypatch.delenv("TENSORBOARD_LOGGING_DIR", raising=False)
    _run(tmp_path, ["tensorboard"])
    assert len(glob.glob(str(tmp_path / "out" / "runs" / "*" / "events.out.tfevents.*"))) == 1


# --- MLflow (file store) -----------------------------------------------------------------------------
def _mlflow_run(client, experiment):
    exp = client.get_experiment_by_name(experiment)
    (run,) = client.search_runs([exp.experiment_id])
    metrics = {(k, m.step): m.value for k in run.data.metrics for m in client.get_metric_history(run.info.run_id, k)}
    return run, metrics


def test_mlflow_file_store_params_and_metrics_per_step(tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    uri = (tmp_path / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # mlflow 3: the file store is opt-in
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "ours")
    monkeypatch.setenv("MLFLOW_TAGS", json.dumps({"release": "rc1"}))
    trainer = _run(tmp_path, "mlflow")
    assert mlflow.active_run() is None  # ended at train end
    client = mlflow.MlflowClient(uri)
    run, metrics = _mlflow_run(client, "ours")
    assert run.info.run_name == "mlx-run" and run.data.tags["release"] == "rc1"
    expected = _expected(trainer, rewrite=False)
    assert set(metrics) == set(expected)
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value, rel=1e-12), key
    assert run.data.params["learning_rate"] == str(trainer.args.learning_rate)
    assert run.data.params["hidden_size"] == "16"  # model config logged under the args

    pytest.importorskip("torch")
    from transformers.integrations.integration_utils import MLflowCallback

    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "hf")
    _replay(MLflowCallback(), trainer)
    hf_run, hf_metrics = _mlflow_run(client, "hf")
    assert hf_metrics == metrics and hf_run.data.params == run.data.params
    assert hf_run.data.tags["release"] == "rc1"


# --- W&B offline --------------------------------------------------------------------------------------
def _wandb_records(run_dir):
    """History rows, config and summary from an offline run's .wandb file: LevelDB-style log records of
    ``wandb_internal_pb2.Record`` (wandb ships no offline reader; ``wandb.Api`` needs the server)."""
    from wandb.proto import wandb_internal_pb2 as pb

    def name(item):
        return item.key or "/".join(item.nested_key)

    (path,) = glob.glob(str(run_dir / "run-*.wandb"))
    data, pos, chunk = open(path, "rb").read(), 7, b""  # 7-byte header: ":W&B", magic, version
    history, config, summary = [], {}, {}
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # block tail padding
            pos += 32768 - pos % 32768
            continue
        _crc, n, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk, pos = chunk + data[pos + 7:pos + 7 + n], pos + 7 + n
        if kind not in (1, 4):  # only FULL / LAST end a record
            continue
        record = pb.Record()
        record.ParseFromString(chunk)
        chunk = b""
        which = record.WhichOneof("record_type")
        if which == "history":
            history.append({name(i): json.loads(i.value_json) for i in record.history.item
                            if not name(i).startswith("_")})
        elif which == "config":
            config.update({name(i): json.loads(i.value_json) for i in record.config.update})
        elif which == "summary":
            summary.update({name(i): json.loads(i.value_json) for i in record.summary.update})
    return history, config, summary


def _wandb_run(tmp_path, callback_run):
    import wandb

    before = set(glob.glob(str(tmp_path / "wandb" / "offline-run-*")))
    result = callback_run()
    wandb.finish()  # transformers leaves the run open (finished at exit); close it to read it back
    wandb.teardown()  # finish() may return before wandb-core has written the records out
    (run_dir,) = set(glob.glob(str(tmp_path / "wandb" / "offline-run-*"))) - before
    return result, _wandb_records(__import__("pathlib").Path(run_dir))


def test_wandb_offline_history_config_summary(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    for key, value in {"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path), "WANDB_SILENT": "true",
                       "WANDB_PROJECT": "bridge"}.items():
        monkeypatch.setenv(key, value)
    trainer, (history, config, summary) = _wandb_run(tmp_path, lambda: _run(tmp_path, "wandb"))
    expected = _expected(trainer, skip=TRAIN_ONLY)  # the train_* totals go to the summary only
    got = {(k, row["train/global_step"]): v for row in history for k, v in row.items() if k != "train/global_step"}
    assert got == pytest.approx(expected, rel=1e-12)
    final = trainer.state.log_history[-1]
    assert {k: summary[k] for k in TRAIN_ONLY if k in final} == {k: final[k] for k in TRAIN_ONLY if k in final}
    assert config["learning_rate"] == trainer.args.learning_rate and config["hidden_size"] == 16
    assert config["run_name"] == "mlx-run"

    pytest.importorskip("torch")
    from transformers.integrations.integration_utils import WandbCallback

    _, (hf_history, hf_config, hf_summary) = _wandb_run(tmp_path, lambda: _replay(WandbCallback(), trainer))
    assert hf_history == history and hf_config == config
    assert {k: hf_summary.get(k) for k in TRAIN_ONLY} == {k: summary.get(k) for k in TRAIN_ONLY}


# --- Trackio (local SQLite store) ---------------------------------------------------------------------
def test_trackio_local_store(tmp_path, monkeypatch):
    if "trackio" in sys.modules:  # TRACKIO_DIR is read when trackio is imported
        pytest.skip("trackio was imported before TRACKIO_DIR could point at tmp_path")
    monkeypatch.setenv("TRACKIO_DIR", str(tmp_path / "trackio"))
    pytest.importorskip("trackio")
    from trackio.sqlite_storage import SQLiteStorage

    trainer = _run(tmp_path, "trackio", project="bridge-test")
    logs = SQLiteStorage.get_logs("bridge-test", "mlx-run")
    got = {(k, row["train/global_step"]): v for row in logs for k, v in row.items()
           if "/" in k and k != "train/global_step"}
    assert got == pytest.approx(_expected(trainer, skip=TRAIN_ONLY), rel=1e-12)

    pytest.importorskip("torch")
    from transformers.integrations.integration_utils import TrackioCallback

    hf_args = copy.copy(trainer.args)
    hf_args.run_name = "hf-run"
    _replay(TrackioCallback(), trainer, args=hf_args)
    hf_logs = SQLiteStorage.get_logs("bridge-test", "hf-run")
    assert [{k: v for k, v in r.items() if "/" in k} for r in hf_logs] == \
        [{k: v for k, v in r.items() if "/" in k} for r in logs]


# --- transformers.Trainer façade vs the real transformers.Trainer, same weights and data ----------------
TIMING = ("train_runtime", "train_samples_per_second", "train_steps_per_second", "eval_runtime",
          "eval_samples_per_second", "eval_steps_per_second")


def test_transformers_trainer_writes_what_transformers_writes(tmp_path, monkeypatch, minilm_dir):
    """The bridge's transformers.Trainer and transformers.Trainer (torch), report_to tensorboard + mlflow:
    the same TensorBoard tags and steps, the same MLflow params and metric names per step; values equal
    up to the training parity of test_transformers_trainer (losses, grad norms <= 1e-4 rel)."""
    pytest.importorskip("tensorboard")
    pytest.importorskip("mlflow")
    torch = pytest.importorskip("torch")
    T = pytest.importorskip("transformers")
    from conftest import tiny_bert_config

    from mlx_hf_bridge import transformers as B

    tok = T.AutoTokenizer.from_pretrained(str(minilm_dir))
    rows = [{**tok(f"the {w} sat on the mat {i}"), "label": i % 3} for i, w in enumerate("cat dog hat tree red blue "
                                                                                        "big small".split())]
    data = __import__("datasets").Dataset.from_list(rows)
    torch.manual_seed(0)
    T.AutoModelForSequenceClassification.from_config(tiny_bert_config(num_labels=3)).save_pretrained(tmp_path / "init")
    uri = (tmp_path / "mlruns").as_uri()
    for key, value in {"MLFLOW_ALLOW_FILE_STORE": "true", "MLFLOW_TRACKING_URI": uri}.items():
        monkeypatch.setenv(key, value)
    common = dict(per_device_train_batch_size=4, per_device_eval_batch_size=4, logging_steps=1, max_steps=4,
                  eval_strategy="steps", eval_steps=2, save_strategy="no", disable_tqdm=True, seed=7,
                  learning_rate=1e-3, report_to=["tensorboard", "mlflow"], run_name="parity")
    side = {}
    for name, lib, extra in (("hf", T, {"use_cpu": True}), ("ours", B, {})):
        monkeypatch.setenv("TENSORBOARD_LOGGING_DIR", str(tmp_path / f"tb-{name}"))
        monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", name)
        model = lib.AutoModelForSequenceClassification.from_pretrained(tmp_path / "init")
        trainer = lib.Trainer(model=model, args=lib.TrainingArguments(output_dir=str(tmp_path / name), **common,
                                                                      **extra),
                              train_dataset=data, eval_dataset=data, processing_class=tok)
        trainer.train()
        run, metrics = _mlflow_run(__import__("mlflow").MlflowClient(uri), name)
        side[name] = (_read_events(tmp_path / f"tb-{name}"), run, metrics, trainer)
    (hf_scalars, hf_texts), hf_run, hf_metrics, _ = side["hf"]
    (scalars, texts), run, metrics, ours = side["ours"]
    # the engine's final log has no total_flos yet (transformers logs 6 * tokens * non-embedding params)
    flos = {(name, ours.state.global_step) for name in ("train/total_flos", "total_flos")}
    assert set(scalars) <= set(hf_scalars) and set(hf_scalars) - set(scalars) <= flos
    assert set(texts) == set(hf_texts)
    assert set(metrics) <= set(hf_metrics) and set(hf_metrics) - set(metrics) <= flos
    for key, value in hf_scalars.items():
        if key in scalars and key[0] not in integrations.rewrite_logs(dict.fromkeys(TIMING)):
            assert scalars[key] == pytest.approx(value, rel=1e-4, abs=1e-7), key
    for key, value in hf_metrics.items():  # float64 in MLflow
        if key in metrics and key[0] not in TIMING:
            assert metrics[key] == pytest.approx(value, rel=1e-4, abs=1e-7), key
    # transformers.Trainer.__init__ sets model.config.use_cache = args.use_cache (False); the bridge's
    # Trainer does not yet, so that one config value differs
    ours_config, hf_config = (json.loads(t[("model_config/text_summary", 0)]) for t in (texts, hf_texts))
    assert {k for k in hf_config if ours_config.get(k) != hf_config[k]} <= {"use_cache"}
    assert set(ours_config) == set(hf_config)
    assert texts[("args/text_summary", 0)] == ours.args.to_json_string()
    assert set(run.data.params) == set(hf_run.data.params)  # args fields + model config, as transformers
    same = set(ours.model.config.to_dict()) - {"use_cache"}
    assert {k: run.data.params[k] for k in same} == {k: hf_run.data.params[k] for k in same}


def test_only_rank_zero_writes(tmp_path, monkeypatch):
    """Under mlx.launch every rank runs the callbacks; as in transformers only world rank 0 writes."""
    pytest.importorskip("tensorboard")
    mlflow = pytest.importorskip("mlflow")
    from mlx_hf_bridge.engine.state import TrainerControl, TrainerState

    monkeypatch.setenv("TENSORBOARD_LOGGING_DIR", str(tmp_path / "tb"))
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    args = SentenceTransformerTrainingArguments(output_dir=str(tmp_path / "out"))
    state, control = TrainerState(global_step=1, is_world_process_zero=False), TrainerControl()
    for callback in integrations.reporting_callbacks(["tensorboard", "mlflow"]):
        callback.on_train_begin(args, state, control, model=None)
        callback.on_log(args, state, control, logs={"loss": 0.5}, model=None)
        callback.on_train_end(args, state, control, model=None)
    assert mlflow.active_run() is None
    assert not (tmp_path / "tb").exists() and not (tmp_path / "mlruns").exists()

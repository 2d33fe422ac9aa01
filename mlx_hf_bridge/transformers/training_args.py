"""``transformers.TrainingArguments`` for the MLX engine.

The fields are exactly those of the *installed* transformers (read from its source by
``sentence_transformers.hf_fields``, without importing torch), with its defaults: a 5.3 script and a
5.24 script each get the arguments their version has (5.24's ``activation_checkpointing``, 5.3's
``warmup_ratio``; a field the installed version lacks raises TypeError as the real class does).
``__post_init__`` is the normalisation and validation shared with the sentence-transformers façade
(strategies, ``load_best_model_at_end`` rules, fp16 + bf16, ...), applied to transformers' fields only.

Fields that would change results and that the MLX trainer does not reproduce are refused here, with
the fix, before any model or data work (``REFUSED``); torch/accelerate/hub knobs are accepted.

Under ``mlx.launch``: ``world_size`` / ``process_index`` / ``local_process_index`` / ``parallel_mode`` /
``should_log`` / ``should_save`` / ``main_process_first`` as transformers defines them under torch DDP
(checked against it in tests/test_distributed_transformers.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import json
import logging
import os
from enum import Enum

from ..engine import distributed
from ..sentence_transformers import training_args as _st
from ..sentence_transformers.hf_fields import installed_fields, transformers_version

logger = logging.getLogger(__name__)

SAMPLING_STRATEGIES = ("random", "sequential", "group_by_length")
# field -> (the value that changes nothing, why it is refused and what to do instead)
REFUSED = {
    "neftune_noise_alpha": (None, "NEFTune embedding noise is not implemented on MLX; leave neftune_noise_alpha unset"),
    "past_index": (-1, "past_index (models returning mems, e.g. XLNet) is not supported; leave it at -1"),
    "batch_eval_metrics": (False, "batch_eval_metrics is not implemented on MLX; compute_metrics receives the "
                                  "whole evaluation set (set batch_eval_metrics=False)"),
    "eval_do_concat_batches": (True, "eval_do_concat_batches=False (lists of per-batch arrays) is not implemented; "
                                     "leave it True"),
    "auto_find_batch_size": (False, "auto_find_batch_size retries on CUDA out-of-memory errors only; set "
                                    "per_device_train_batch_size yourself"),
    "use_liger_kernel": (False, "Liger kernels are CUDA/Triton only; leave use_liger_kernel=False"),
}
# fields the sentence-transformers façade ignores (and warns about) that this Trainer honours
HONOURED = {"label_smoothing_factor": 0.0, "average_tokens_across_devices": True}
OPTIMIZERS = ("adamw_torch", "adamw_torch_fused", "adamw_hf", "adamw", "sgd")


def _fields_class() -> type:
    specs = [s for s in installed_fields() if s.init]
    cls = dataclasses.make_dataclass("_TransformersFields", [(s.name, s.annotation, s.as_field()) for s in specs])
    cls.__module__ = __name__
    return cls


_ST = _st.SentenceTransformerTrainingArguments


class TrainingArguments(_fields_class()):
    """Drop-in for ``transformers.TrainingArguments`` (the installed version's fields and defaults)."""

    def __init__(self, *args, **kwargs):
        names = {f.name for f in dataclasses.fields(self)}
        legacy = {k: kwargs.pop(k) for k in list(kwargs) if k in _st.REMOVED and k not in names}
        unknown = [k for k in kwargs if k not in names]
        if unknown:
            prefix = f"{type(self).__name__}.__init__() got an unexpected keyword argument {unknown[0]!r}"
            if unknown[0] in _st.GONE:
                raise TypeError(f"{prefix}: {_st.GONE[unknown[0]]} (installed: transformers {transformers_version()}).")
            if unknown[0] == "group_by_length" and "train_sampling_strategy" in names:
                raise TypeError(f"{prefix}: transformers {transformers_version()} spells it "
                                "train_sampling_strategy='group_by_length'.")
            hint = difflib.get_close_matches(unknown[0], sorted(names), n=1)
            raise TypeError(prefix + (f"; did you mean {hint[0]!r}?" if hint else ""))
        for name in legacy:
            logger.warning(_st.REMOVED[name])
        if "evaluation_strategy" in legacy and "eval_strategy" not in kwargs:
            kwargs["eval_strategy"] = legacy["evaluation_strategy"]
        super().__init__(*args, **kwargs)
        self.__post_init__()

    def __post_init__(self):
        self._refuse_unsupported()
        if getattr(self, "warmup_ratio", None) is not None:  # transformers 5.3: folded into warmup_steps
            logger.warning("warmup_ratio is deprecated; use warmup_steps (a float < 1 is a ratio) instead.")
            self.warmup_steps = self.warmup_ratio
        honoured = {name: getattr(self, name) for name in HONOURED}
        for name, neutral in HONOURED.items():  # the shared normalisation warns that these do nothing
            setattr(self, name, neutral)
        _ST.__post_init__(self)
        for name, value in honoured.items():
            setattr(self, name, value)

    def _refuse_unsupported(self):
        for name, (neutral, why) in REFUSED.items():
            value = getattr(self, name, neutral)
            if value != neutral and value not in ([], ""):
                raise ValueError(f"{name}={value!r}: {why}.")
        optim = str(getattr(self.optim, "value", self.optim))
        if optim not in OPTIMIZERS:
            raise ValueError(f"optim={optim!r} is not available on MLX; use one of {list(OPTIMIZERS)} "
                             "('adamw_torch', the default, or 'sgd').")
        strategy = getattr(self, "train_sampling_strategy", "random")
        if strategy not in SAMPLING_STRATEGIES:
            raise ValueError(f"train_sampling_strategy={strategy!r} is not available on MLX; use one of "
                             f"{list(SAMPLING_STRATEGIES)}.")

    # the sentence-transformers façade's normalisation hook: here, nothing beyond transformers' own
    def _sentence_transformers_post_init(self):
        if self.label_names is not None and not isinstance(self.label_names, list):
            self.label_names = list(self.label_names)

    # shared with the sentence-transformers façade (same transformers rules, same fields)
    _resolve_checkpointing_alias = _ST._resolve_checkpointing_alias
    _normalise_report_to = _ST._normalise_report_to
    _validate = _ST._validate
    train_batch_size = _ST.train_batch_size
    eval_batch_size = _ST.eval_batch_size
    get_warmup_steps = _ST.get_warmup_steps
    to_dict = _ST.to_dict
    to_json_string = _ST.to_json_string
    __repr__ = __str__ = _ST.__repr__

    # --- data parallel under mlx.launch, as transformers defines these under torch DDP ------------------
    @property
    def world_size(self) -> int:
        return _world()[1]

    @property
    def process_index(self) -> int:
        return _world()[0]

    @property
    def local_process_index(self) -> int:
        rank, size = _world()
        return local_rank(rank) if size > 1 else 0

    @property
    def n_gpu(self) -> int:
        return 1 if _on_gpu() else 0  # transformers: 1 per process under DDP / on one device, 0 on CPU

    @property
    def parallel_mode(self) -> "ParallelMode":
        return ParallelMode.DISTRIBUTED if self.world_size > 1 else ParallelMode.NOT_PARALLEL

    @property
    def should_log(self) -> bool:
        return (self.local_process_index if self.log_on_each_node else self.process_index) == 0

    @property
    def should_save(self) -> bool:
        return (self.local_process_index if self.save_on_each_node else self.process_index) == 0

    @contextlib.contextmanager
    def main_process_first(self, local=True, desc="work"):
        """transformers' context: the main (local) process runs the block first, the others after it."""
        world = distributed.group() if self.world_size > 1 else None
        main = (self.local_process_index if local else self.process_index) == 0
        if world is not None and not main:
            distributed.barrier(world, f"waiting for the main process to finish {desc}", self._timeout())
        try:
            yield
        finally:
            if world is not None and main:
                distributed.barrier(world, f"the main process finishing {desc}", self._timeout())

    def _timeout(self) -> float:
        return float(self.ddp_timeout or distributed.DEFAULT_TIMEOUT)


class ParallelMode(Enum):
    """transformers' ParallelMode (values as transformers spells them)."""

    NOT_PARALLEL = "not_parallel"
    NOT_DISTRIBUTED = "not_distributed"
    DISTRIBUTED = "distributed"
    SAGEMAKER_MODEL_PARALLEL = "sagemaker_model_parallel"
    SAGEMAKER_DATA_PARALLEL = "sagemaker_data_parallel"
    TPU = "tpu"


def _world() -> tuple[int, int]:
    """(rank, size) of the mlx.launch group, ignoring local_only blocks (arguments describe the launch)."""
    import mlx.core as mx

    if not mx.distributed.is_available():
        return 0, 1
    world = mx.distributed.init()
    return (world.rank(), world.size()) if world.size() > 1 else (0, 1)


def _on_gpu() -> bool:
    import mlx.core as mx

    return mx.default_device() == mx.gpu


def local_rank(rank: int) -> int:
    """This process's index among the ranks on its host: MPI's local rank, or for the ring backend the
    earlier ranks of the hostfile with the same IP (``mlx.launch`` gives no per-host rank); JACCL runs
    one rank per Mac (0); otherwise the world rank (one host)."""
    for name in ("OMPI_COMM_WORLD_LOCAL_RANK", "MV2_COMM_WORLD_LOCAL_RANK", "LOCAL_RANK"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    if os.environ.get("MLX_IBV_DEVICES") or os.environ.get("MLX_JACCL_COORDINATOR"):
        return 0
    hostfile = os.environ.get("MLX_HOSTFILE")
    if hostfile and os.path.isfile(hostfile):
        try:
            hosts = json.loads(open(hostfile, encoding="utf-8").read() or "[]")
            ips = [str(h[0] if isinstance(h, list) else h).rsplit(":", 1)[0] for h in hosts]
        except (ValueError, TypeError, IndexError):
            ips = []
        if len(ips) > rank:
            return sum(ip == ips[rank] for ip in ips[:rank])
    return rank


# transformers 5.24 dropped warmup_ratio; the shared normalisation reads it (None: nothing to fold)
if not hasattr(TrainingArguments, "warmup_ratio"):
    TrainingArguments.warmup_ratio = None


__all__ = ["ParallelMode", "TrainingArguments"]

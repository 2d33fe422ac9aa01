"""``transformers`` under ``mlx-hf-bridge run``: the script's model / trainer / collator names are the bridge's.

``transformers`` stays the real module for everyone (the bridge's ST / PyLate façades and ``datasets``
use its tokenizers and configs). Only attribute access *from the script* (its ``__main__`` code, or a
module in its folder) is redirected, name by name:

- the names :mod:`mlx_hf_bridge.transformers` provides (``Trainer``, ``TrainingArguments``,
  ``AutoModelForSequenceClassification`` ..., ``DataCollatorWithPadding`` ..., ``EarlyStoppingCallback``,
  ``EvalPrediction``, ``TrainerCallback`` / ``TrainerState`` / ``TrainerControl``, ``pipeline`` and its
  text-classification / fill-mask / token-classification classes) resolve to the bridge's, on
  ``transformers`` and on the submodules that define them (``transformers.trainer_utils``,
  ``transformers.trainer_callback``, ``transformers.data.data_collator``, ``transformers.pipelines``, ...);
- a name that needs torch and that the bridge does not provide (a torch model class such as
  ``BertForSequenceClassification``, ``PreTrainedModel``, the other collators, ``get_linear_schedule_with_warmup``,
  the other pipelines ...) raises :class:`TorchNameError` naming it and what to use instead; so does the script's
  import of a ``transformers...modeling_*`` module. Nothing falls back to torch;
- everything else (``AutoTokenizer``, ``AutoConfig``, tokenizer and config classes, ``set_seed``,
  ``IntervalStrategy``, ``get_last_checkpoint``, ``HfArgumentParser`` ...) is the real transformers object.

It works by a ``__getattribute__`` that checks the name (a set lookup) and, for the names above only,
who is asking: set on transformers' ``_LazyModule`` class (``transformers``, ``transformers.models.*``), and
on a subclass given to each plain submodule listed in ``WRAPPED_SUBMODULES``; both are undone afterwards.
"""

from __future__ import annotations

import importlib
import importlib.abc
import os
import sys

from .torch_stub import bridge_version, script_is_caller

# the submodules whose names a script imports directly (``from transformers.trainer_utils import EvalPrediction``)
WRAPPED_SUBMODULES = ("transformers.trainer", "transformers.training_args", "transformers.trainer_utils",
                      "transformers.trainer_callback", "transformers.data", "transformers.data.data_collator",
                      "transformers.models.auto", "transformers.models.auto.modeling_auto", "transformers.pipelines")
IMPORT_UTILS = "transformers.utils.import_utils"  # defines _LazyModule
# transformers' modules (paths under the package) whose exports compute with torch: the bridge's name or an error
TORCH_MODULES = ("trainer", "trainer_seq2seq", "trainer_pt_utils", "trainer_callback", "training_args_seq2seq",
                 "optimization", "pytorch_utils", "cache_utils", "masking_utils", "integrations",
                 "data.data_collator", "data.datasets", "pipelines", "core_model_loading")
_FROM_TRANSFORMERS = ("AutoConfig", "AutoTokenizer")  # in the bridge's __all__, but transformers' own objects


class TorchNameError(ImportError):
    """A ``transformers`` name a script asked for that needs torch and that the bridge does not provide."""


def bridge_names() -> frozenset:
    from . import transformers as bridge

    return frozenset(n for n in bridge.__all__ if n not in _FROM_TRANSFORMERS)


_HERE = os.path.abspath(__file__)


def _script_is_asking() -> bool:
    """True when the attribute access / import comes from the script or a module in its folder."""
    return script_is_caller(_HERE, 2)


def _defining_module(module, name: str) -> str | None:
    """Where transformers defines ``name`` (``models.bert.modeling_bert``), relative to the package."""
    table = getattr(module, "_class_to_module", None)  # transformers' lazy modules know without importing
    prefix = module.__name__[len("transformers"):].lstrip(".")
    if isinstance(table, dict) and name in table:
        return f"{prefix}.{table[name]}" if prefix else table[name]
    if name in (getattr(module, "_modules", None) or ()):  # a submodule: ``from transformers.models.bert import modeling_bert``
        return f"{prefix}.{name}" if prefix else name
    try:
        value = object.__getattribute__(module, name)
    except AttributeError:
        return None
    origin = getattr(value, "__module__", None) or ""
    return origin[len("transformers."):] if origin.startswith("transformers.") else None


def needs_torch(where: str | None) -> bool:
    if not where:
        return False
    if where.rsplit(".", 1)[-1].startswith("modeling_"):
        return True
    return any(where == m or where.startswith(m + ".") for m in TORCH_MODULES)


def torch_name_message(qualified: str, where: str) -> str:
    provided = ", ".join(sorted(bridge_names()))
    return (
        f"`{qualified}` needs torch (transformers defines it in `transformers.{where}`), and mlx_hf_bridge "
        f"{bridge_version()} does not provide it: under `mlx-hf-bridge run` the script's transformers models, "
        f"trainer and collators are the bridge's, and nothing falls back to torch. The bridge provides: "
        f"{provided}. Use one of those (e.g. AutoModelForSequenceClassification.from_pretrained(...) for "
        "a *ForSequenceClassification class), or run the script with plain `python` and torch."
    )


class _Redirector:
    """The ``__getattribute__`` the wrapped transformers modules get while ``run`` is active."""

    def __init__(self):
        self.names = bridge_names()
        self.wrapped: dict = {}  # module -> its original class
        self.lazy_class = None  # transformers' _LazyModule, while it carries the hook

    def lookup(self, module, name):
        """The bridge's object for ``name`` when the script asks for it, else ``None`` (real lookup)."""
        if name.startswith("_"):
            return None
        if name in self.names:
            if not _script_is_asking():
                return None
            return getattr(importlib.import_module("mlx_hf_bridge.transformers"), name)
        where = _defining_module(module, name)
        if needs_torch(where) and _script_is_asking():
            raise TorchNameError(torch_name_message(f"{module.__name__}.{name}", where), name=name)
        return None

    def _getattribute(self, fallback):
        redirector = self

        def __getattribute__(module, name):
            # cheap exits first: this runs for every attribute access on the module
            if name.startswith("_") or (name not in redirector.names and not _may_need_torch(module, name)):
                return fallback(module, name)
            found = redirector.lookup(module, name)
            return fallback(module, name) if found is None else found

        __getattribute__._mlx_hf_bridge_hook = True
        return __getattribute__

    def wrap(self, module) -> None:
        """Give one (non-lazy) transformers module the redirecting ``__getattribute__``."""
        if module is None or module in self.wrapped or getattr(type(module).__getattribute__, "_mlx_hf_bridge_hook", False):
            return
        original = type(module)
        subclass = type(original.__name__, (original,), {"__getattribute__": self._getattribute(original.__getattribute__),
                                                         "__module__": original.__module__})
        module.__class__ = subclass
        self.wrapped[module] = original

    def patch_lazy_class(self, import_utils) -> None:
        """transformers' ``_LazyModule`` (``transformers`` itself and ``transformers.models.*``) gets the hook on
        the class: transformers re-executes its ``__init__`` (``direct_transformers_import``, from
        ``processing_utils``), which puts a *new* lazy module in ``sys.modules["transformers"]``."""
        cls = getattr(import_utils, "_LazyModule", None)
        if cls is None or self.lazy_class is not None or "__getattribute__" in vars(cls):
            return
        cls.__getattribute__ = self._getattribute(cls.__getattribute__)
        self.lazy_class = cls

    def unwrap_all(self) -> None:
        for module, original in self.wrapped.items():
            if type(module) is not original:
                module.__class__ = original
        self.wrapped.clear()
        if self.lazy_class is not None:
            del self.lazy_class.__getattribute__
            self.lazy_class = None


def _may_need_torch(module, name) -> bool:
    """A cheap pre-check before the frame walk: is ``name`` a torch export of ``module``?"""
    return needs_torch(_defining_module(module, name))


class TransformersFinder(importlib.abc.MetaPathFinder):
    """Wraps ``transformers`` and ``WRAPPED_SUBMODULES`` once they load; refuses a script's import of a
    ``transformers...modeling_*`` module (torch model code)."""

    def __init__(self, redirector: _Redirector, find_with_others, after_exec):
        self.redirector, self.find_with_others, self.after_exec = redirector, find_with_others, after_exec

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "transformers" and not fullname.startswith("transformers."):
            return None
        last = fullname.rsplit(".", 1)[-1]
        if last.startswith("modeling_") and fullname not in WRAPPED_SUBMODULES and _script_is_asking():
            where = fullname[len("transformers."):]
            raise TorchNameError(torch_name_message(fullname, where), name=fullname)
        if fullname == IMPORT_UTILS:
            return self.after_exec(self.find_with_others(self, fullname, path, target), self.redirector.patch_lazy_class)
        if fullname not in WRAPPED_SUBMODULES:
            return None
        spec = self.find_with_others(self, fullname, path, target)
        # a package's __init__ may replace its sys.modules entry: wrap what is there after
        return self.after_exec(spec, lambda module: self.redirector.wrap(sys.modules.get(fullname, module)))


def install(find_with_others, after_exec) -> tuple:
    """Wrap the transformers modules already imported and return ``(finder, redirector)``."""
    redirector = _Redirector()
    if IMPORT_UTILS in sys.modules:
        redirector.patch_lazy_class(sys.modules[IMPORT_UTILS])
    for name in WRAPPED_SUBMODULES:
        if name in sys.modules:
            redirector.wrap(sys.modules[name])
    return TransformersFinder(redirector, find_with_others, after_exec), redirector

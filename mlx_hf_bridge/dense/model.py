"""sentence-transformers' dense ``SentenceTransformer`` on MLX (ST 5.3 and ST 6.2 spellings).

A sequential pipeline ``Transformer -> Pooling -> [Dense ...] -> [Normalize]`` of the bridge's ST
module kinds (``mlx_hf_bridge.modules``) -- or a ``StaticEmbedding`` or a ``Router`` (asymmetric
query / document routes) as the input module, then the same heads --, loaded from ST 5.3, ST 6.2
and plain HF folders (``dense.loading``). It shares the machinery of the other families: the backbones, Dense and
Normalize (``modules``), the length-ordered encode loop and packed rows (``colbert.encode`` /
``colbert.padding``, in ``dense.encode``), the similarity functions (``dense.similarity``).
"""

from __future__ import annotations

import logging

import mlx.core as mx
import mlx.nn as nn

from ..adapters import AdapterMixin
from ..errors import check_texts
from ..loading import check_layout_json, check_remote_code, resolve_path
from ..modules import Dense, Normalize, Transformer
from ..model_card.card_data import SentenceTransformerModelCardData
from ..modules.pooling import Pooling, installed_generation
from ..modules.router import Router, call_module
from ..modules.static_embedding import StaticEmbedding
from . import loading
from .encode import DenseEncodeMixin
from .similarity import SimilarityFunction

# how ST's card names each similarity function
SIMILARITY_LABELS = {"cosine": "Cosine Similarity", "dot": "Dot Product", "euclidean": "Euclidean Distance",
                     "manhattan": "Manhattan Distance"}

logger = logging.getLogger(__name__)

MODULE_KINDS = (Pooling, Dense, Normalize)
INPUT_KINDS = (Transformer, StaticEmbedding, Router)  # the first module: it tokenizes


def _is_head(module) -> bool:
    """A module after the input one: Pooling / Dense / Normalize, or a Router of such routes."""
    return isinstance(module, MODULE_KINDS) or (isinstance(module, Router) and not module.is_input)


class SentenceTransformer(AdapterMixin, DenseEncodeMixin, nn.Module):
    """``SentenceTransformer(model_name_or_path=None, modules=None, device=None, prompts=None,
    default_prompt_name=None, similarity_fn_name=None, cache_folder=None, trust_remote_code=False,
    revision=None, local_files_only=False, token=None, use_auth_token=None, truncate_dim=None,
    model_kwargs=None, tokenizer_kwargs=None, config_kwargs=None, model_card_data=None, backend="torch",
    processor_kwargs=None)``: ST 5.3's positional order, ST 6.2's keyword names accepted too.

    Saved settings fill only what the caller left unset (prompts key by key, default_prompt_name,
    similarity_fn_name, truncate_dim), as both versions resolve them.
    """

    model_type = "SentenceTransformer"
    SUPPORTED_SIMILARITY_FN_NAMES = ("cosine", "dot", "euclidean", "manhattan")

    def __init__(
        self,
        model_name_or_path: str | None = None,
        modules=None,
        device=None,
        prompts=None,
        default_prompt_name=None,
        similarity_fn_name=None,
        cache_folder=None,
        trust_remote_code: bool = False,
        revision=None,
        local_files_only: bool = False,
        token=None,
        use_auth_token=None,
        truncate_dim: int | None = None,
        model_kwargs=None,
        tokenizer_kwargs=None,
        config_kwargs=None,
        model_card_data=None,
        backend: str = "torch",
        processor_kwargs=None,
    ):
        super().__init__()
        if backend != "torch":
            raise ValueError(f"backend={backend!r}: the bridge runs on MLX; leave backend at its default ('torch').")
        if use_auth_token is not None:
            if token is not None:
                raise ValueError("`token` and `use_auth_token` are both specified. Please set only the argument `token`.")
            token = use_auth_token
        if tokenizer_kwargs and processor_kwargs:
            raise ValueError("Pass tokenizer_kwargs (ST 5) or processor_kwargs (ST 6), not both.")
        processor_kwargs = processor_kwargs or tokenizer_kwargs
        if device is not None and str(device).startswith("cpu"):
            from .. import backend as mlx_backend

            mlx_backend.use_cpu()
        self._similarity_fn_name = None
        self.similarity_fn_name = similarity_fn_name
        self.truncate_dim = truncate_dim
        self.prompts = {"query": None, "document": None, **(prompts or {})}
        self.default_prompt_name = default_prompt_name
        # as ST: a default card data, so evaluators can store their metrics for the card
        self.model_card_data = model_card_data if model_card_data is not None else SentenceTransformerModelCardData()
        self.model_name_or_path = str(model_name_or_path) if model_name_or_path else None
        self.generation = installed_generation()  # whose semantics / layout: the installed ST's
        if model_name_or_path:
            if modules is not None:
                logger.warning("Both `model_name_or_path` and `modules` were provided; the modules are loaded from the path.")
            folder = resolve_path(model_name_or_path, revision, token, cache_folder, local_files_only)
            check_layout_json(folder)  # a damaged JSON file is named before anything is read
            check_remote_code(folder, trust_remote_code)  # custom modeling code cannot run on MLX
            loaded = loading.load_folder(folder, processor_kwargs, config_kwargs, model_kwargs)
            modules, self.generation = loaded.modules, loaded.generation
            self._merge_saved(loaded.config)
        elif any((model_kwargs, processor_kwargs, config_kwargs)):
            raise ValueError("model_kwargs / processor_kwargs / config_kwargs need model_name_or_path; pass them to Transformer(...).")
        if not modules:
            raise ValueError(
                "SentenceTransformer needs model_name_or_path (a sentence-transformers or plain HF folder, or a hub "
                "id) or modules=[Transformer(...), Pooling(...), ...]."
            )
        modules = list(modules.values()) if isinstance(modules, dict) else list(modules)
        self._check_modules(modules)
        if isinstance(modules[1] if len(modules) > 1 else None, Pooling) and model_name_or_path is None:
            self.generation = modules[1].flavour
        elif isinstance(modules[0], Router) and model_name_or_path is None:
            self.generation = modules[0].flavour  # its routing rules are one generation's
        # the input module keeps the attribute name ``transformer`` (what the backbone helpers look up)
        self.transformer, self.heads = modules[0], modules[1:]
        self._validate_prompts()
        self.eval()

    def __setattr__(self, key, value):
        # settings, not children: nn.Module would file a dict under its parameter tree
        if key in ("prompts", "model_card_data"):
            object.__setattr__(self, key, value)
        else:
            super().__setattr__(key, value)

    @staticmethod
    def _check_modules(modules):
        if not isinstance(modules[0], INPUT_KINDS) or getattr(modules[0], "is_input", True) is False:
            raise TypeError(
                f"The first module must be mlx_hf_bridge's Transformer, StaticEmbedding or Router (sentence-transformers' "
                f"names on MLX), got {type(modules[0]).__module__}.{type(modules[0]).__name__}"
                + (" whose routes start with no Transformer / StaticEmbedding (nothing would tokenize)."
                   if isinstance(modules[0], Router) else ".")
            )
        for module in modules[1:]:
            if not _is_head(module):
                raise TypeError(
                    f"modules: {type(module).__module__}.{type(module).__name__} is not a module kind the MLX "
                    "SentenceTransformer runs; use the bridge's Transformer / StaticEmbedding / Router (first), then "
                    "Pooling, Dense, Normalize or a Router of those (sentence-transformers' names and arguments)."
                )

    def _merge_saved(self, config: dict):
        """Saved settings under the caller's: a prompt fills only a key not given (or None)."""
        for name, text in (config.get("prompts") or {}).items():
            if self.prompts.get(name) is None:
                self.prompts[name] = text
        if self.default_prompt_name is None:
            self.default_prompt_name = config.get("default_prompt_name")
        saved = config.get("similarity_fn_name")
        if self._similarity_fn_name is None and saved in self.SUPPORTED_SIMILARITY_FN_NAMES:
            self.similarity_fn_name = saved
        if self.truncate_dim is None:
            self.truncate_dim = config.get("truncate_dim")

    def _validate_prompts(self):
        for key, value in self.prompts.items():
            if value is None:
                self.prompts[key] = ""
        if self.default_prompt_name is not None and self.default_prompt_name not in self.prompts:
            raise ValueError(
                f"Default prompt name '{self.default_prompt_name}' not found in the configured prompts "
                f"dictionary with keys {list(self.prompts.keys())!r}."
            )
        if self.default_prompt_name:
            logger.warning(
                f"Default prompt name is set to '{self.default_prompt_name}'. This prompt will be applied to all "
                "`encode()` calls, except if `encode()` is called with `prompt` or `prompt_name` parameters."
            )

    # --- the sequential model ----------------------------------------------------------------------
    def _module_list(self) -> list:
        return [self.transformer, *self.heads]

    def __iter__(self):
        return iter(self._module_list())

    def __len__(self) -> int:
        return len(self._module_list())

    def __getitem__(self, idx):
        if isinstance(idx, str):  # nn.Module is a dict: keep key access working
            return super().__getitem__(idx)
        return self._module_list()[idx]

    def _first_module(self):
        return self.transformer

    def add_module(self, name: str, module) -> None:
        """torch's ``nn.Sequential.add_module`` as ST scripts use it (``model.add_module("normalize",
        Normalize())``): append a Pooling / Dense / Normalize after the current modules."""
        if not _is_head(module):
            raise TypeError(
                f"add_module({name!r}, {type(module).__module__}.{type(module).__name__}): the MLX SentenceTransformer "
                "takes the bridge's Pooling, Dense and Normalize (sentence_transformers' names) after its Transformer."
            )
        self.heads = [*self.heads, module]

    def _last_module(self):
        return self._module_list()[-1]

    @property
    def tokenizer(self):
        return self.transformer.tokenizer

    @tokenizer.setter
    def tokenizer(self, value):
        self.transformer.tokenizer = value

    @property
    def max_seq_length(self):
        return self.transformer.max_seq_length

    @max_seq_length.setter
    def max_seq_length(self, value):
        self.transformer.max_seq_length = value

    def get_max_seq_length(self):
        return self.transformer.max_seq_length

    @property
    def device(self) -> str:
        from ..backend import device_name

        return device_name()  # "cpu" / "gpu", with torch.device's .type for autocast

    def to(self, *args, **kwargs):
        return self  # MLX arrays live in unified memory; there is nothing to move

    def state_dict(self) -> dict:
        from mlx.utils import tree_flatten

        return dict(tree_flatten(self.parameters()))

    def get_embedding_dimension(self) -> int | None:
        """The width ``encode`` returns: the last module that knows it, capped by ``truncate_dim``."""
        dim = None
        for module in reversed(self._module_list()):
            for name in ("get_embedding_dimension", "get_sentence_embedding_dimension", "get_word_embedding_dimension"):
                method = getattr(module, name, None)
                if callable(method):
                    dim = method()
                    break
            if dim is not None:
                break
        if self.truncate_dim is not None:
            return self.truncate_dim if dim is None else min(dim, self.truncate_dim)
        return dim

    get_sentence_embedding_dimension = get_embedding_dimension

    def set_pooling_include_prompt(self, include_prompt: bool) -> None:
        for module in self.heads:
            if isinstance(module, Pooling):
                module.include_prompt = include_prompt
                break

    # --- tokenization and forward ------------------------------------------------------------------
    def tokenize(self, texts, prompt=None, task=None, **kwargs) -> dict:
        """ST's ``tokenize``: ``input_ids`` / ``attention_mask`` (/ ``token_type_ids``) as ``mx.array``.
        ST 5 folders strip each text first (ST 5.3's Transformer does; ST 6.2 does not)."""
        if isinstance(self.transformer, Router):  # the route's input module tokenizes (dict rows name the task)
            return self.transformer.preprocess(texts, prompt=prompt, task=task, strip=self.generation == "st5", **kwargs)
        texts = check_texts(texts)
        if prompt:
            texts = [prompt + t for t in texts]
        if self.generation == "st5" and isinstance(self.transformer, Transformer):
            texts = [t.strip() for t in texts]
        return self.transformer.preprocess(texts, task=task, **kwargs)

    def input_module(self, task=None):
        """What tokenizes ``task``'s texts: the Transformer / StaticEmbedding, or the Router's route's."""
        return self.transformer.input_module(task) if isinstance(self.transformer, Router) else self.transformer

    preprocess = tokenize

    def __call__(self, features: dict, task=None, **kwargs) -> dict:
        out = call_module(self.transformer, features, task)
        for module in self.heads:
            out = module(out, task=task)
        return out

    forward = __call__

    # --- similarity ----------------------------------------------------------------------------------
    @property
    def similarity_fn_name(self) -> str:
        if self._similarity_fn_name is None:
            self.similarity_fn_name = SimilarityFunction.COSINE
        return self._similarity_fn_name

    @similarity_fn_name.setter
    def similarity_fn_name(self, value):
        if isinstance(value, SimilarityFunction):
            value = value.value
        if value is not None and value not in self.SUPPORTED_SIMILARITY_FN_NAMES:
            raise ValueError(
                f"similarity_fn_name={value!r} is not a dense similarity; use one of {self.SUPPORTED_SIMILARITY_FN_NAMES} "
                "(SimilarityFunction.COSINE, DOT_PRODUCT, EUCLIDEAN, MANHATTAN)."
            )
        object.__setattr__(self, "_similarity_fn_name", value)

    @property
    def similarity(self):
        """``model.similarity(a, b)``: all pairs with the model's similarity function (an ``mx.array``)."""
        return SimilarityFunction.to_similarity_fn(self.similarity_fn_name)

    @property
    def similarity_pairwise(self):
        return SimilarityFunction.to_similarity_pairwise_fn(self.similarity_fn_name)

    # --- persistence ---------------------------------------------------------------------------------
    def save(self, path, model_name=None, create_model_card: bool = True, train_datasets=None,
             safe_serialization: bool = True):
        """Write the folder in the layout of the generation the model reproduces (``dense.save``: ST 5.3's
        for ST 5 models, readable by ST 5.3 and 6.2; ST 6.2's otherwise); other files in ``path`` stay.
        With ``create_model_card`` a sentence-transformers-style README (``model_card.dense``)."""
        if path is None:
            return
        from ..engine.step import refuse_if_damaged
        from ..io_utils import save_folder
        from .save import write_folder

        refuse_if_damaged(self, path)

        def write(tmp):
            write_folder(self, tmp)
            if create_model_card:
                self._write_model_card(tmp, model_name, train_datasets)

        save_folder(path, write)

    def _card_info(self, model_name=None, train_datasets=None, model_id=None) -> dict:
        """What the README says: the model card data, the trainer's facts (``card_info``), the model."""
        from ..model_card.card_data import card_info

        return card_info(self, "sentence-transformers", model_name, train_datasets, model_id,
                         max_seq_length=self.max_seq_length,
                         dense_similarity=SIMILARITY_LABELS.get(self.similarity_fn_name, self.similarity_fn_name))

    def _write_model_card(self, folder, model_name=None, train_datasets=None):
        from ..model_card import write_model_card

        write_model_card(folder, self._card_info(model_name, train_datasets))

    def save_pretrained(self, path, model_name=None, create_model_card: bool = True, train_datasets=None,
                        safe_serialization: bool = True):
        self.save(path, model_name, create_model_card, train_datasets, safe_serialization)

    def push_to_hub(self, repo_id: str, token=None, private=None, safe_serialization: bool = True, commit_message=None,
                    local_model_path=None, exist_ok: bool = False, replace_model_card: bool = False,
                    train_datasets=None, revision=None, create_pr: bool = False) -> str:
        """Save the layout, then upload it (``hub.push_to_hub``: the save is kept if the upload fails)."""
        from .. import hub

        return hub.push_model(
            self, repo_id, "SentenceTransformer", train_datasets=train_datasets, token=token, private=private,
            commit_message=commit_message, local_model_path=local_model_path, exist_ok=exist_ok,
            replace_model_card=replace_model_card, revision=revision, create_pr=create_pr,
        )

"""sentence-transformers' ``Router`` on MLX (ST 5.3 ``models.Router``, ST 6.2 ``base.modules.Router``;
``Asym`` is its old name): asymmetric models whose texts take a route by task ("query" / "document"
or custom), each route a module stack of its own. As the first module every route starts with an
input module (Transformer or StaticEmbedding) that tokenizes, then Pooling / Dense / Normalize; later
in the model (ST's "middle" Router: asymmetric heads on one backbone) its routes hold heads only and
take the task given to the forward, else ``features["task"]`` (ST 6.2's collator stamps it).

Each generation resolves routes its own way, reproduced by ``flavour``:
- "st5": the task, else ``features["task"]``, else ``default_route``; no ``route_mappings``.
- "st6": ``route_mappings`` over (task, modality) first -- exact, (task, None), (None, modality),
  (None, None) --, then the task, then the modality ("text") as a route name, then ``default_route``.
A module used by several routes is one object (ST 6.2 saves it once), held here once: ``routed``
maps each unique module's key to it and ``structure`` lists each route's keys, so a shared module's
parameters appear once in the tree (and train as one). Folders are read by ``dense.loading`` and
written by ``dense.save`` (they know every module kind's files).
"""

from __future__ import annotations

import logging

import mlx.nn as nn

from ..errors import check_texts
from .pooling import installed_generation

logger = logging.getLogger(__name__)

TEXT = "text"
TRAINING_ROUTE_ERROR = ("You must provide a `router_mapping` argument on the training arguments, "
                        "or set a default route in the `Router` module.")


class Router(nn.Module):
    """``Router(sub_modules, default_route=None, allow_empty_key=True, route_mappings=None)``: ST's arguments
    (``route_mappings`` is ST 6's)."""

    def __init__(self, sub_modules: dict, default_route: str | None = None, allow_empty_key: bool = True,
                 route_mappings: dict | None = None, *, flavour: str | None = None):
        super().__init__()
        flavour = flavour or installed_generation()
        if not sub_modules:
            raise ValueError("The sub_modules dictionary cannot be empty." if flavour == "st6"
                             else "The routes dictionary cannot be empty.")
        if default_route is not None and default_route not in sub_modules:
            raise ValueError(f"Default route '{default_route}' not found in route keys: {list(sub_modules.keys())}")
        if route_mappings and flavour == "st5":
            raise TypeError("route_mappings is a sentence-transformers 6 Router argument; sentence-transformers 5.3's "
                            "Router routes by task name only (install sentence-transformers 6 for route_mappings).")
        for (_task, _modality), target in (route_mappings or {}).items():
            if target not in sub_modules:
                raise ValueError(f"route_mappings contains mapping to '{target}' which is not in sub_modules. "
                                 f"Available routes: {list(sub_modules.keys())}")
        routed, structure, ids, kinds = {}, {}, {}, set()
        for route, modules in sub_modules.items():
            # torch's ModuleDict refuses these route names in ST (a dot would also split the MLX tree paths)
            if not isinstance(route, str):
                raise TypeError(f"module name should be a string. Got {type(route).__name__}")
            if "." in route:
                raise KeyError(f'module name can\'t contain ".", got: {route}')
            modules = list(modules.values()) if isinstance(modules, dict) else list(modules)
            _check_route(route, modules)
            kinds.add(_is_input(modules[0]))
            structure[route] = []
            for index, module in enumerate(modules):
                if id(module) not in ids:  # ST 6.2's save-time id of a module's first use
                    ids[id(module)] = f"{route}_{index}_{type(module).__name__}"
                    routed[ids[id(module)]] = module
                structure[route].append(ids[id(module)])
        if len(kinds) > 1:
            raise TypeError("Router: some routes start with an input module (Transformer / StaticEmbedding) and some "
                            "do not; as the first module every route tokenizes, later in a model none does. Split it.")
        self.routed = routed
        if allow_empty_key and default_route is None:
            default_route = next(iter(sub_modules))
        settings = {
            "structure": structure,
            "default_route": default_route,
            "allow_empty_key": allow_empty_key,
            # ST 6.2 sorts a tuple modality, as its modality inference returns them
            "route_mappings": {(task, tuple(sorted(m)) if isinstance(m, tuple) else m): route
                               for (task, m), route in (route_mappings or {}).items()},
            "flavour": flavour,
            "is_input": kinds == {True},  # its routes tokenize: the model's first module
        }
        for key, value in settings.items():  # settings, not children of the parameter tree
            object.__setattr__(self, key, value)

    @classmethod
    def for_query_document(cls, query_modules: list, document_modules: list, default_route: str | None = "document",
                           allow_empty_key: bool = True, *, flavour: str | None = None) -> "Router":
        # ST 5.3's default is None, then `or "document"`; ST 6.2's is "document": the same route either way
        # except an explicit None, which ST 5.3 still turns into "document"
        if (flavour or installed_generation()) == "st5":
            default_route = default_route or "document"
        return cls({"query": query_modules, "document": document_modules}, default_route=default_route,
                   allow_empty_key=allow_empty_key, flavour=flavour)

    @classmethod
    def load(cls, input_path, generation: str | None = None) -> "Router":
        from ..dense.loading import load_router

        return load_router(input_path, generation or installed_generation())

    # --- the routes ------------------------------------------------------------------------------
    @property
    def sub_modules(self) -> dict:
        return {route: [self.routed[i] for i in ids] for route, ids in self.structure.items()}

    def _routes_string(self) -> str:
        routes = [f"task={name!r}" for name in self.structure]
        for task, modality in self.route_mappings:
            if modality is None:
                routes.append(f"task={task!r}")
            elif task is None:
                routes.append(f"modality={_format(modality)!r}")
            else:
                routes.append(f"(task={task!r}, modality={_format(modality)!r})")
        return routes[0] if len(routes) == 1 else ", ".join(routes[:-1]) + " and " + routes[-1]

    def resolve_route(self, task=None, modality=None) -> str:
        """The route a (task, modality) takes, or ST's error for the generation."""
        if self.flavour == "st5":
            route = task if task is not None else self.default_route
            if route is None:
                raise ValueError(TRAINING_ROUTE_ERROR if self.training else
                                 "You must provide a `task` argument when calling this method, "
                                 "or set a default route in the `Router` module.")
            if route not in self.structure:
                raise ValueError(f"No route found for task type '{route}'. Available routes: {list(self.structure)}")
            return route
        if isinstance(modality, tuple):
            modality = tuple(sorted(modality))
        mappings = self.route_mappings
        for key in ((task, modality), (task, None), (None, modality), (None, None)):
            if key in mappings:
                return mappings[key]
        if task and task in self.structure:
            return task
        if modality and modality in self.structure:
            return modality
        if task is not None:
            raise ValueError(f"No route found for task type '{task}'. Available routes: {self._routes_string()}")
        if self.default_route is None:
            if self.training:
                raise ValueError(TRAINING_ROUTE_ERROR)
            shown = _format(modality) if modality is not None else None
            raise ValueError(
                f"Could not determine route for task={task!r}, modality={shown!r}. Available routes: "
                f"{self._routes_string()}. Consider specifying the `task` parameter in `model.encode`, or setting a "
                "default route in the `Router`."
            )
        return self.default_route

    def input_module(self, task=None):
        """The first module of the route ``task`` takes (what tokenizes its texts)."""
        self._check_input()
        return self.routed[self.structure[self.resolve_route(task, TEXT)][0]]

    def _check_input(self):
        if not self.is_input:
            raise TypeError("This Router's routes hold Pooling / Dense / Normalize only: it routes features after "
                            "the model's input module and tokenizes nothing.")

    # --- tokenization and forward ------------------------------------------------------------------
    def preprocess(self, texts, prompt=None, task=None, strip: bool = False, **kwargs) -> dict:
        """Texts through the route's input module; ``task`` (and ST 6's ``modality``) ride in the features.
        A list of ``{task: text}`` dicts names the task, as in both versions. ``strip``: ST 5.3's
        Transformer strips texts (the caller says whether the model reproduces ST 5.3)."""
        from .transformer import Transformer

        self._check_input()
        texts, task = task_rows(texts, task)
        texts = check_texts(texts)
        modality = TEXT if self.flavour == "st6" else None
        route = self.resolve_route(task, modality)
        module = self.routed[self.structure[route][0]]
        if prompt:
            texts = [prompt + t for t in texts]
        if strip and isinstance(module, Transformer):
            texts = [t.strip() for t in texts]
        features = dict(module.preprocess(texts, task=task, **kwargs))
        features["task"] = task if self.flavour == "st6" else route
        if modality is not None:
            features["modality"] = modality
        return features

    tokenize = preprocess

    def __call__(self, features: dict, task=None, **_) -> dict:
        if task is None:
            task = features.get("task")
        route = self.resolve_route(task, features.get("modality") if self.flavour == "st6" else None)
        for module_id in self.structure[route]:
            features = call_module(self.routed[module_id], features, task)
        return features

    # --- what the model asks of its first module -------------------------------------------------
    @property
    def tokenizer(self):
        for ids in self.structure.values():
            tokenizer = getattr(self.routed[ids[0]], "tokenizer", None)
            if tokenizer is not None:
                return tokenizer
        return None

    @property
    def max_seq_length(self):
        lengths = {getattr(self.routed[ids[0]], "max_seq_length", None) for ids in self.structure.values()}
        lengths = {n for n in lengths if (n if self.flavour == "st6" else n is not None)}  # ST 6.2 drops falsy
        if not lengths:
            return None
        if len(lengths) > 1:
            logger.warning(f"Different max_seq_lengths detected: {lengths}. Using the maximum value.")
        return max(lengths)

    @max_seq_length.setter
    def max_seq_length(self, value):
        inputs = [self.routed[ids[0]] for ids in self.structure.values() if hasattr(self.routed[ids[0]], "max_seq_length")]
        if not inputs:
            logger.warning("No modules have a max_seq_length attribute to set.")
        for module in inputs:
            module.max_seq_length = value

    def get_embedding_dimension(self) -> int | None:
        dims = []
        for route in self.sub_modules.values():
            for module in reversed(route):
                method = getattr(module, "get_embedding_dimension", None) or getattr(module, "get_word_embedding_dimension", None)
                if method is not None:
                    dims.append(method())
                    break
            if dims and self.flavour == "st5":  # ST 5.3 returns the first route's
                break
        if not dims:
            return None
        if len(set(dims)) > 1:
            logger.warning(f"Different embedding dimensions detected across routes: {set(dims)}. Using the first value.")
        return dims[0]

    get_sentence_embedding_dimension = get_embedding_dimension

    def get_config_dict(self) -> dict:
        config = {"default_route": self.default_route, "allow_empty_key": self.allow_empty_key}
        if self.flavour == "st6":
            config["route_mappings"] = {str(key): value for key, value in self.route_mappings.items()}
        return config

    def __repr__(self) -> str:
        routes = ", ".join(f"{route}: [{', '.join(type(self.routed[i]).__name__ for i in ids)}]"
                           for route, ids in self.structure.items())
        return f"Router({routes}; default_route={self.default_route!r})"


def task_rows(texts, task=None):
    """``[{"query": text}, ...]`` names the task (both versions): the texts and that task."""
    texts = list(texts)
    if texts and isinstance(texts[0], dict) and task is None:
        keys = {key for text in texts for key in text}
        if len(keys) > 1:
            raise ValueError(
                "You cannot pass a list of dictionaries with different task types. Please ensure all dictionaries "
                "have the same task type key, or pass non-dictionary inputs while providing the `task` argument."
            )
        task = keys.pop()
        texts = [text[task] for text in texts]
    return texts, task


def call_module(module, features: dict, task=None) -> dict:
    """One module's forward with the task where it takes one (the Transformer does not)."""
    from .transformer import Transformer

    return module(features) if isinstance(module, Transformer) else module(features, task=task)


def _is_input(module) -> bool:
    from .static_embedding import StaticEmbedding
    from .transformer import Transformer

    return isinstance(module, (Transformer, StaticEmbedding))


def _check_route(route, modules) -> None:
    """An input module then heads, or heads only (a Router after the model's input module)."""
    from .dense import Dense
    from .normalize import Normalize
    from .pooling import Pooling

    if not modules:
        raise ValueError(f"Router route {route!r} has no modules; give each route its modules (an input module "
                         "Transformer / StaticEmbedding and its heads, or heads only for a Router later in a model).")
    for module in modules[1:] if _is_input(modules[0]) else modules:
        if not isinstance(module, (Pooling, Dense, Normalize)):
            raise TypeError(f"Router route {route!r}: a {type(module).__module__}.{type(module).__name__}; on MLX a route "
                            "is the bridge's Transformer or StaticEmbedding first (or neither), then Pooling, Dense and "
                            "Normalize.")


def _format(modality) -> str:
    return "+".join(modality) if isinstance(modality, tuple) else modality

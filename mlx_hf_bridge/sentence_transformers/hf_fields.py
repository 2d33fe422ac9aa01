"""The installed transformers' ``TrainingArguments`` fields, read from its source with ``ast``.

Why not import it: ``transformers.training_args`` imports torch and accelerate whenever they are
installed, and the MLX path must not. Why not a frozen table: transformers adds and removes fields
in minor releases (5.24 added ``activation_checkpointing``, removed ``logging_dir``), and a copy of
one version's fields rejects the next version's scripts. The dataclass body is plain enough to
read exactly: every field is ``name: annotation = literal`` or ``field(default=..., default_factory=...)``;
the one computed default (``optim``, from ``default_optim`` set in ``if is_torch_available():``
blocks) is resolved to the value the class has with torch >= 2.8 installed, which is the reference
the bridge mirrors. Anything else raises, naming the field, rather than guessing.
tests/test_st_trainer_args.py compares the result with the real dataclass in both test venvs.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import importlib.metadata
import importlib.util
from pathlib import Path
from typing import Any

MISSING = dataclasses.MISSING  # what the specs use for "no default" (never a dataclass default itself)
TESTED_RANGE = "5.3.0 .. 5.25.0"  # the transformers versions CI runs the suite on (.venv, .venv-st6)
_FACTORIES = {"list": list, "dict": dict, "set": set, "tuple": tuple}


class FieldSpec:
    """One field: name, annotation (source text), default or default_factory (``MISSING`` if none)."""

    __slots__ = ("name", "annotation", "default", "default_factory", "init")

    def __init__(self, name: str, annotation: str, default: Any = MISSING, default_factory: Any = MISSING,
                 init: bool = True):
        self.name, self.annotation, self.init = name, annotation, init
        self.default, self.default_factory = default, default_factory

    def __repr__(self):
        return f"FieldSpec({self.name!r}, {self.annotation!r}, default={self.default!r})"

    def as_field(self) -> dataclasses.Field:
        if self.default_factory is not MISSING:
            return dataclasses.field(default_factory=self.default_factory, init=self.init)
        return dataclasses.field(default=self.default, init=self.init)


class UnreadableTrainingArguments(RuntimeError):
    pass


def training_args_source() -> Path:
    """Path of the installed ``transformers/training_args.py`` (found without importing transformers)."""
    spec = importlib.util.find_spec("transformers")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("transformers is not installed; run `pip install 'transformers>=5.3.0'`.")
    return Path(list(spec.submodule_search_locations)[0]) / "training_args.py"


def transformers_version() -> str:
    try:
        return importlib.metadata.version("transformers")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _class_constants(body: list[ast.stmt], env: dict) -> None:
    """Literal class-level assignments, including inside ``if`` blocks (the torch-installed branch wins)."""
    for stmt in body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            try:
                env[stmt.targets[0].id] = ast.literal_eval(stmt.value)
            except ValueError:
                pass
        elif isinstance(stmt, ast.If):
            _class_constants(stmt.body, env)


def _value(node: ast.expr, env: dict, what: str):
    if isinstance(node, ast.Name) and node.id in env:
        return env[node.id]
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise UnreadableTrainingArguments(f"{what} = {ast.unparse(node)} is not a literal") from None


def _factory(node: ast.expr, env: dict, what: str):
    if isinstance(node, ast.Name) and node.id in _FACTORIES:
        return _FACTORIES[node.id]
    if isinstance(node, ast.Lambda) and not node.args.args:
        value = _value(node.body, env, what)
        return lambda: value
    raise UnreadableTrainingArguments(f"{what} = {ast.unparse(node)} is not a known factory")


def _field_spec(stmt: ast.AnnAssign, env: dict) -> FieldSpec:
    name, annotation = stmt.target.id, ast.unparse(stmt.annotation)
    node = stmt.value
    if node is None:
        return FieldSpec(name, annotation)
    is_field_call = isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "field"
    if not is_field_call:
        return FieldSpec(name, annotation, default=_value(node, env, name))
    kw = {k.arg: k.value for k in node.keywords}
    init = _value(kw["init"], env, f"{name}.init") if "init" in kw else True
    if "default_factory" in kw:
        return FieldSpec(name, annotation, default_factory=_factory(kw["default_factory"], env, name), init=init)
    if "default" in kw:
        return FieldSpec(name, annotation, default=_value(kw["default"], env, name), init=init)
    return FieldSpec(name, annotation, init=init)


def read_fields(path: Path) -> list[FieldSpec]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    cls = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "TrainingArguments"), None)
    if cls is None:
        raise UnreadableTrainingArguments("no `class TrainingArguments` at module level")
    env: dict = {}
    specs = []
    for stmt in cls.body:
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            specs.append(_field_spec(stmt, env))
        else:
            _class_constants([stmt], env)
    if not any(s.name == "output_dir" for s in specs):
        raise UnreadableTrainingArguments("no `output_dir` field found")
    return specs


@functools.lru_cache(maxsize=None)
def installed_fields() -> tuple[FieldSpec, ...]:
    """The installed transformers' TrainingArguments fields, in declaration order (read once)."""
    path = training_args_source()
    try:
        return tuple(read_fields(path))
    except (OSError, SyntaxError, UnreadableTrainingArguments) as exc:
        raise UnreadableTrainingArguments(
            f"Could not read the training-argument fields of transformers {transformers_version()} from {path}: "
            f"{exc}. The bridge is tested with transformers {TESTED_RANGE}; install one of those, e.g. "
            "`pip install 'transformers==5.25.0'`, and please report the version that failed."
        ) from exc

"""Strict config files: the building blocks every schema of the study is declared with.

A `Section` is a pydantic model that refuses unknown keys, does no type coercion (`true` is not
a number, `"3"` is not an int) and reads `null` as absent, as the published files write unused
options. `parse` turns the first validation error into one line naming the file and the key's
full path, so a typo never silently changes an experiment. The Heavy Ranker's schema
(`studylib.ranker.config`) and TwHIN's (`studylib.twhin.config`) are built from these.
"""

from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, ValidationError,
                      model_validator)

from studylib import yamlio
from studylib.errors import StudyError


def shipped_config_path(name: str) -> Path:
    """Path of a config shipped inside the package (`studylib/configs/`)."""
    return Path(str(resources.files("studylib") / "configs" / name))


# ---------------------------------------------------------------- the schema's building blocks


class Section(BaseModel):
    """One section of a config file: unknown keys refused, no type coercion, null = absent.
    `one_of` lists groups of keys of which exactly one must be set (the original's `one_of`)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    one_of: ClassVar[tuple[tuple[str, ...], ...]] = ()

    @model_validator(mode="before")
    @classmethod
    def _null_is_absent(cls, data):
        return {k: v for k, v in data.items() if v is not None} if isinstance(data, dict) else data

    @model_validator(mode="after")
    def _exactly_one_of_each_group(self):
        for group in self.one_of:
            exactly_one(self, *group)
        return self


def _refuse(value):
    raise ValueError("is not supported by this study (must be null)")


# An option of the original this study does not implement: only null (absent) is accepted.
Unsupported = Annotated[Any, AfterValidator(_refuse)]
# A key the original's trainer or data service reads and this study has no use for (paths, timeouts).
Ignored = Any


def _list_as_tuple(value):
    return tuple(value) if isinstance(value, list) else value


def Items(kind):  # noqa: N802 - reads as a type: Items[int] would need a generic alias
    """A YAML list, kept as a tuple (configs are frozen)."""
    return Annotated[tuple[kind, ...], BeforeValidator(_list_as_tuple)]


def exactly_one(section: BaseModel, *names: str) -> str:
    """The one of `names` that is set (the original's `one_of` groups)."""
    chosen = [name for name in names if getattr(section, name) is not None]
    if len(chosen) != 1:
        raise ValueError(f"needs exactly one of {', '.join(names)}")
    return chosen[0]


_KINDS = {"int_type": "int", "float_type": "float", "bool_type": "bool", "string_type": "str",
          "list_type": "a list", "tuple_type": "a list", "dict_type": "a mapping", "model_type": "a mapping"}
_BOUNDS = {"greater_than_equal": (">=", "ge"), "greater_than": (">", "gt"),
           "less_than_equal": ("<=", "le"), "less_than": ("<", "lt")}


def _key_path(loc: tuple) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def describe(error: dict) -> str:
    """One pydantic error as the study words it: the key's full path, then what is wrong."""
    where, kind, value = _key_path(error["loc"]), error["type"], error.get("input")
    if kind == "missing":
        return f"missing key {where}"
    if kind == "extra_forbidden":
        return f"unknown key {where}"
    if kind in _KINDS:
        return f"{where or 'top level'} must be {_KINDS[kind]}, got {yamlio.shorten(value)}"
    if kind in _BOUNDS:
        op, key = _BOUNDS[kind]
        return f"{where} must be {op} {error['ctx'][key]:g}, got {yamlio.shorten(value)}"
    if kind == "too_short":
        return f"{where} must not be empty"
    if kind == "literal_error":
        return f"{where} supports only {error['ctx']['expected']}, got {yamlio.shorten(value)}"
    if kind == "value_error":
        message = str(error["ctx"]["error"])
        return f"{where} {message}" if where else message
    return f"{where}: {error['msg']}"


def parse(schema: type[BaseModel], raw, source: str):
    """`raw` (a loaded YAML document) as `schema`; StudyError naming `source` and the first bad key."""
    try:
        return schema.model_validate(raw)
    except ValidationError as exc:
        raise StudyError(f"{source}: {describe(exc.errors()[0])}") from None


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    raw = yamlio.read(path, "config")
    if not isinstance(raw, dict):
        raise StudyError(f"{path}: top level must be a mapping")
    return raw


PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]


class TrainingConfig(Section):
    """The `training:` section, one schema for both models as in the original (its core TrainingConfig)."""

    num_train_steps: PositiveInt = 1000
    checkpoint_every_n: PositiveInt = 100
    train_log_every_n: PositiveInt = 10
    save_dir: Ignored = None
    num_eval_steps: Ignored = None  # the study evaluates whole held-out sets
    eval_timeout_in_s: Ignored = None
    eval_log_every_n: Ignored = None
    num_epochs: Ignored = None


class ConfigFile(Section):
    """A whole config file: its sections, and where it came from."""

    training: TrainingConfig
    validation_data: Ignored = None  # the original's evaluation sets; the study evaluates on its own split
    runtime: Ignored = None
    _source: str = PrivateAttr("")
    _raw: dict = PrivateAttr(default_factory=dict)

    @classmethod
    def read(cls, path: str | Path):
        """The file at `path`, parsed strictly."""
        return cls.from_raw(load_yaml(path), path)

    @classmethod
    def from_raw(cls, raw: dict, source: str | Path):
        """A loaded YAML document, parsed strictly; `source` (its file) names it in errors."""
        cfg = parse(cls, raw, Path(source).name)
        cfg._source, cfg._raw = str(source), copy.deepcopy(raw)
        return cfg

    def with_changes(self, changes: dict[tuple, object]):
        """The config with some keys set (key path, ints indexing lists -> value), parsed again, so
        the checks and the raw copy a run keeps agree with the change."""
        raw = copy.deepcopy(self.raw)
        for path, value in changes.items():
            node = raw
            for key in path[:-1]:
                node = node[key] if isinstance(key, int) else node.setdefault(key, {})
            node[path[-1]] = value
        return type(self).from_raw(raw, self.source)

    @property
    def source(self) -> str:
        """The file it was read from."""
        return self._source

    @property
    def raw(self) -> dict:
        """The file as loaded, for provenance (a run keeps it as its config copy)."""
        return self._raw

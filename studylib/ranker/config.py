"""The published Heavy Ranker configuration (`recap_local_prod.yaml`), declared as a schema.

Each section of the file is a pydantic model that states its fields once: type, default and
range, named as in the original's own (pydantic) configs. Reading is strict: an unknown key,
a value of the wrong type (`true` is not a number, `"3"` is not an int) or out of range is
refused with one line that names the file and the key's full path, so a typo never silently
changes an experiment. `null` reads as absent, as the published files write unused options.
Options the original supports but this study does not implement (DCN, DLRM, large
embeddings, position debiasing, ...) are accepted only when null.
"""

from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, ValidationError,
                      ValidationInfo, field_validator, model_validator)

from studylib import yamlio
from studylib.errors import StudyError

PUBLISHED_CONFIG = "recap_local_prod.yaml"
STUDY_CONFIG = "study_quick.yaml"


def shipped_config_path(name: str = PUBLISHED_CONFIG) -> Path:
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
        return f"{where or 'top level'} must be {_KINDS[kind]}, got {value!r}"
    if kind in _BOUNDS:
        op, key = _BOUNDS[kind]
        return f"{where} must be {op} {error['ctx'][key]:g}, got {value!r}"
    if kind == "too_short":
        return f"{where} must not be empty"
    if kind == "literal_error":
        return f"{where} supports only {error['ctx']['expected']}, got {value!r}"
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


# ---------------------------------------------------------------- model section


class BatchNormConfig(Section):
    affine: bool = True
    momentum: float = Field(0.1, ge=0, le=1)


class DropoutConfig(Section):
    rate: float = Field(ge=0, lt=1)


class MlpConfig(Section):
    layer_sizes: Annotated[Items(PositiveInt), Field(min_length=1)]
    batch_norm: BatchNormConfig | None = None
    dropout: DropoutConfig | None = None
    final_layer_activation: bool = False  # as the original: a ReLU after the last Linear, nothing else


class MaskBlockConfig(Section):
    output_size: PositiveInt
    aggregation_size: PositiveInt | None = None
    reduction_factor: float | None = Field(None, gt=0)
    input_layer_norm: bool = False
    one_of = (("aggregation_size", "reduction_factor"),)


class MaskNetConfig(Section):
    mask_blocks: Annotated[Items(MaskBlockConfig), Field(min_length=1)]
    mlp: MlpConfig | None = None
    use_parallel: bool = False


class BackboneConfig(Section):
    """A MaskNet or a plain MLP (the two backbones the study implements)."""

    mask_net_config: MaskNetConfig | None = None
    mlp_config: MlpConfig | None = None
    pos_weight: float = Field(1.0, gt=0)
    affine_map: Unsupported = None
    dcn_config: Unsupported = None
    dlrm_config: Unsupported = None
    one_of = (("mask_net_config", "mlp_config"),)


class TowerConfig(BackboneConfig):
    """A head's tower: the backbone section's format, always an MLP."""

    @model_validator(mode="after")
    def _an_mlp(self):
        if self.mlp_config is None:
            raise ValueError("must be an mlp_config tower")
        return self


class LayerNormConfig(Section):
    axis: Literal[-1] = -1
    epsilon: float = Field(1e-3, ge=0)  # the original's default
    center: bool = True
    scale: bool = True

    @model_validator(mode="after")
    def _one_switch(self):  # refused by the original too: torch's LayerNorm learns both or neither
        if self.center != self.scale:
            raise ValueError(f"center and .scale must be equal (got {self.center} and {self.scale}); "
                             "torch's LayerNorm learns both or neither")
        return self


class DoubleNormLogConfig(Section):
    batch_norm_config: BatchNormConfig
    clip_magnitude: float = Field(gt=0)
    layer_norm_config: LayerNormConfig


class FeaturizationConfig(Section):
    double_norm_log_config: DoubleNormLogConfig
    feature_names_to_concat: Items(Literal["binary"]) = ("binary",)
    clip_log1p_abs_config: Unsupported = None
    log1p_abs_config: Unsupported = None
    z_score_log_config: Unsupported = None


class ModelConfig(Section):
    featurization_config: FeaturizationConfig
    backbone: BackboneConfig
    tasks: dict[str, TowerConfig]  # head name -> tower and pos_weight
    multi_task_type: Literal["share_all"] = "share_all"
    large_embeddings: Unsupported = None
    position_debias_config: Unsupported = None
    small_embeddings: Unsupported = None
    stratifiers: Unsupported = None


# ---------------------------------------------------------------- data section


class TaskDataConfig(Section):
    """One label's downsampling rates. The original turns rates below 1 into per-example loss
    weights (label / pos_rate + (1 - label) / neg_rate). This study trains unweighted and
    calibrates from the rates a downsampled data set records in its own manifest
    (`studylib generate --downsample`), so a rate other than 1 is refused, not silently dropped."""

    pos_downsampling_rate: float = Field(1.0, gt=0, le=1)
    neg_downsampling_rate: float = Field(1.0, gt=0, le=1)

    @field_validator("pos_downsampling_rate", "neg_downsampling_rate")
    @classmethod
    def _no_loss_weights(cls, rate: float) -> float:
        if rate != 1.0:
            raise ValueError(f"is {rate:g}: per-example loss weights from config rates are not supported; generate "
                             "the data set with --downsample (its manifest carries the rates the calibration uses) "
                             "and leave the rate at 1")
        return rate


class SegDenseSchemaConfig(Section):
    renamed_features: dict[str, str]  # group name -> stored column name
    schema_path: Ignored = None


class TruncateAndSliceConfig(Section):
    continuous_feature_truncation: PositiveInt
    binary_feature_truncation: PositiveInt


class PreprocessConfig(Section):
    truncate_and_slice: TruncateAndSliceConfig


class DataConfig(Section):
    seg_dense_schema: SegDenseSchemaConfig
    tasks: dict[str, TaskDataConfig | None]  # label -> its rates (`{}` or null: the defaults)
    preprocess: PreprocessConfig
    global_batch_size: PositiveInt = 128
    inputs: Ignored = None
    dataset_service_compression: Ignored = None
    evaluation_tasks: Ignored = None

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.tasks)

    @property
    def renamed_features(self) -> dict[str, str]:
        return self.seg_dense_schema.renamed_features

    @property
    def truncation(self) -> dict[str, int]:
        """Feature group -> the width the model sees."""
        trunc = self.preprocess.truncate_and_slice
        return {"continuous": trunc.continuous_feature_truncation, "binary": trunc.binary_feature_truncation}


# ---------------------------------------------------------------- optimizer section


class LinearRampToConstant(Section):
    learning_rate: NonNegativeFloat
    num_ramp_steps: NonNegativeInt


class LinearRampToCosine(Section):
    """The cosine runs from num_ramp_steps to the absolute step final_num_steps, as the original."""

    learning_rate: NonNegativeFloat
    final_learning_rate: NonNegativeFloat
    num_ramp_steps: NonNegativeInt
    final_num_steps: NonNegativeInt

    @field_validator("final_num_steps")
    @classmethod
    def _after_the_ramp(cls, final: int, info: ValidationInfo) -> int:
        ramp = info.data.get("num_ramp_steps")
        if ramp is not None and final <= ramp:
            raise ValueError(f"must be > num_ramp_steps ({final} <= {ramp})")
        return final


class PiecewiseConstant(Section):
    learning_rate_boundaries: Items(NonNegativeInt)
    learning_rate_values: Items(NonNegativeFloat)

    @field_validator("learning_rate_values")
    @classmethod
    def _one_more_value(cls, values: tuple, info: ValidationInfo) -> tuple:
        bounds = info.data.get("learning_rate_boundaries")
        if bounds is not None and len(values) != len(bounds) + 1:
            raise ValueError("needs one more value than boundaries")
        return values


class LearningRate(Section):
    """One of the original's four schedules."""

    constant: NonNegativeFloat | None = None
    linear_ramp_to_constant: LinearRampToConstant | None = None
    linear_ramp_to_cosine: LinearRampToCosine | None = None
    piecewise_constant: PiecewiseConstant | None = None
    one_of = (("constant", "linear_ramp_to_constant", "linear_ramp_to_cosine", "piecewise_constant"),)

    @property
    def kind(self) -> str:
        return exactly_one(self, *self.one_of[0])


class AdamConfig(Section):
    beta_1: float = Field(0.9, ge=0, lt=1)
    beta_2: float = Field(0.999, ge=0, lt=1)
    epsilon: float = Field(1e-7, gt=0)


class MultiTaskLearningRates(Section):
    tower_learning_rates: dict[str, LearningRate]  # head name -> its tower's schedule
    backbone_learning_rate: LearningRate


class OptimizerConfig(Section):
    adam: AdamConfig
    multi_task_learning_rates: MultiTaskLearningRates
    single_task_learning_rate: Unsupported = None


# ---------------------------------------------------------------- whole file


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


class RecapConfig(ConfigFile):
    model: ModelConfig
    train_data: DataConfig
    optimizer: OptimizerConfig

    @model_validator(mode="after")
    def _heads_match(self):
        unknown = sorted(set(self.model.tasks) - set(self.train_data.tasks))
        if unknown:
            raise ValueError(f"model.tasks.{unknown[0]} is not a label in train_data.tasks")
        towers = self.optimizer.multi_task_learning_rates.tower_learning_rates
        missing, extra = sorted(set(self.heads) - set(towers)), sorted(set(towers) - set(self.heads))
        if missing or extra:
            raise ValueError(f"optimizer.multi_task_learning_rates.tower_learning_rates: "
                             f"{'missing' if missing else 'unknown'} head {(missing or extra)[0]}")
        return self

    @property
    def heads(self) -> tuple[str, ...]:
        return tuple(self.model.tasks)


def load_config(path: str | Path | None = None) -> RecapConfig:
    """Parse a recap config; `None` means the published file shipped with the package."""
    return RecapConfig.read(path if path is not None else shipped_config_path())

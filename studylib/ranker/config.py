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

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from studylib.strict import (ConfigFile, Ignored, Items, NonNegativeFloat, NonNegativeInt, PositiveInt, Section,
                             Unsupported, exactly_one, shipped_config_path)

PUBLISHED_CONFIG = "recap_local_prod.yaml"
STUDY_CONFIG = "study_quick.yaml"


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
    return RecapConfig.read(path if path is not None else shipped_config_path(PUBLISHED_CONFIG))

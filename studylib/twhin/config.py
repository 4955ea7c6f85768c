"""The TwHIN configuration (`twhin_local.yaml` format), declared as a schema.

Read as strictly as the recap config (`studylib.ranker.config`): unknown keys, wrong types and values
out of range are refused in one line naming the file and the key. Two keys extend the
published format, both off unless a config asks: `train_data.loss` (`softmax`: a sampled
softmax instead of BCE) and `model.node_bias` (a learned scalar per entity and relation); see
`studylib.twhin.model` for what they do.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from studylib.strict import ConfigFile, Ignored, Items, PositiveInt, Section, exactly_one, shipped_config_path
from studylib.twhin.graph import Relation

PUBLISHED_CONFIG = "twhin_local.yaml"
STUDY_CONFIG = "twhin_study.yaml"
OPTIMIZERS = ("sgd", "adagrad")  # the table optimizers torchrec fuses into backward


class LrConfig(Section):
    lr: float = Field(gt=0)


class ConstantRate(Section):
    constant: float = Field(gt=0)


class OptimizerConfig(Section):
    """{sgd|adagrad: {lr}, learning_rate: {constant: lr}}; the schedule, when given, wins."""

    sgd: LrConfig | None = None
    adagrad: LrConfig | None = None
    learning_rate: ConstantRate | None = None
    one_of = (OPTIMIZERS,)

    @property
    def kind(self) -> str:
        return exactly_one(self, *OPTIMIZERS)

    @property
    def lr(self) -> float:
        return self.learning_rate.constant if self.learning_rate is not None else getattr(self, self.kind).lr


class TableConfig(Section):
    name: str
    num_embeddings: PositiveInt
    embedding_dim: PositiveInt
    optimizer: OptimizerConfig  # fused into backward
    data_type: Literal["fp32"] = "fp32"


class EmbeddingsConfig(Section):
    tables: Items(TableConfig) = Field(min_length=1)

    @model_validator(mode="after")
    def _one_width(self):
        if len({t.embedding_dim for t in self.tables}) != 1:
            raise ValueError("tables must share one embedding_dim")
        return self


class RelationConfig(Section):
    name: str
    lhs: str  # table (entity type) of the left-hand side
    rhs: str
    operator: Literal["translation"] = "translation"


class ModelConfig(Section):
    embeddings: EmbeddingsConfig
    relations: Items(RelationConfig) = Field(min_length=1)
    translation_optimizer: OptimizerConfig
    node_bias: bool = False  # a learned scalar per entity and relation added to the score
    # PyTorch-BigGraph's name: the weight of the mean squared L2 norm of the embeddings each training edge
    # uses (its lhs and rhs rows), added to the loss; 0 (the original's choice) adds nothing
    regularization_coef: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _relations_name_tables(self):
        tables = {t.name for t in self.embeddings.tables}
        for i, rel in enumerate(self.relations):
            for side in ("lhs", "rhs"):
                if getattr(rel, side) not in tables:
                    raise ValueError(f"relations[{i}].{side} names unknown table {getattr(rel, side)}")
        if len({r.name for r in self.relations}) != len(self.relations):
            raise ValueError("relations has duplicate names")
        return self


class DataConfig(Section):
    per_replica_batch_size: PositiveInt = 500  # per process, as the original
    in_batch_negatives: int = Field(10, ge=0)  # per relation per side
    global_negatives: int | None = Field(None, ge=0)  # uniform ones; absent: as many as in-batch
    global_negatives_weight: float = Field(1.0, ge=0)  # total weight of an edge's uniform negatives (BCE)
    loss: Literal["bce", "softmax"] = "bce"
    data_root: Ignored = None
    limit: Ignored = None
    offset: Ignored = None

    @model_validator(mode="after")
    def _softmax_settings(self):
        if self.loss == "softmax" and "global_negatives_weight" in self.model_fields_set:
            raise ValueError("global_negatives_weight weighs BCE terms; it has no role with loss: softmax (remove it)")
        if self.loss == "softmax" and self.uniform_negatives + self.in_batch_negatives == 0:
            raise ValueError("loss: softmax needs negatives (global_negatives or in_batch_negatives > 0)")
        return self

    @property
    def uniform_negatives(self) -> int:
        return self.in_batch_negatives if self.global_negatives is None else self.global_negatives


class TwhinConfig(ConfigFile):
    model: ModelConfig
    train_data: DataConfig

    @property
    def tables(self) -> tuple[TableConfig, ...]:
        return self.model.embeddings.tables

    def table(self, name: str) -> TableConfig:
        return next(t for t in self.tables if t.name == name)

    @property
    def dim(self) -> int:
        return self.tables[0].embedding_dim

    @cached_property  # read for every training batch
    def relations(self) -> tuple[Relation, ...]:
        """The relations in id order, as the graph names them."""
        return tuple(Relation(r.name, r.lhs, r.rhs) for r in self.model.relations)


def load_twhin_config(path: str | Path | None = None) -> TwhinConfig:
    """Parse a TwHIN config strictly; `None` means the shipped study config."""
    return TwhinConfig.read(path if path is not None else shipped_config_path(STUDY_CONFIG))


__all__ = ["PUBLISHED_CONFIG", "STUDY_CONFIG", "OPTIMIZERS", "TableConfig", "TwhinConfig", "load_twhin_config"]

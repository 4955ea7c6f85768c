"""The TwHIN configuration (`twhin_local.yaml` format), declared as a schema.

Read as strictly as the recap config (`studylib.config`): unknown keys, wrong types and values
out of range are refused in one line naming the file and the key. Two keys extend the
published format, both off unless a config asks: `train_data.loss` (`softmax`: a sampled
softmax instead of BCE) and `model.node_bias` (a learned scalar per entity); see
`studylib.twhin.model` for what they do.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Literal

from pydantic import Field, PrivateAttr, model_validator

from studylib.config import Ignored, Items, PositiveInt, Section, exactly_one, load_yaml, parse, shipped_config_path
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

    @model_validator(mode="after")
    def _one_optimizer(self):
        exactly_one(self, *OPTIMIZERS)
        return self

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
    node_bias: bool = False  # a learned scalar per entity added to the score

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


class TrainingConfig(Section):
    num_train_steps: PositiveInt = 1000
    checkpoint_every_n: PositiveInt = 1000
    train_log_every_n: PositiveInt = 10
    save_dir: Ignored = None
    num_eval_steps: Ignored = None
    eval_log_every_n: Ignored = None
    eval_timeout_in_s: Ignored = None
    num_epochs: Ignored = None


class TwhinConfig(Section):
    training: TrainingConfig
    model: ModelConfig
    train_data: DataConfig
    runtime: Ignored = None
    validation_data: Ignored = None
    _source: str = PrivateAttr("")
    _raw: dict = PrivateAttr(default_factory=dict)

    @property
    def source(self) -> str:
        return self._source

    @property
    def raw(self) -> dict:
        """The file as loaded (a run keeps it as its config copy)."""
        return self._raw

    @property
    def tables(self) -> tuple[TableConfig, ...]:
        return self.model.embeddings.tables

    def table(self, name: str) -> TableConfig:
        return next(t for t in self.tables if t.name == name)

    @property
    def dim(self) -> int:
        return self.tables[0].embedding_dim

    @property
    def relations(self) -> tuple[Relation, ...]:
        """The relations in id order, as the graph names them."""
        return tuple(Relation(r.name, r.lhs, r.rhs) for r in self.model.relations)


def parse_twhin_config(raw: dict, source: str | Path) -> TwhinConfig:
    """`raw` (a loaded YAML document) as a TwhinConfig; `source` names it in errors."""
    cfg = parse(TwhinConfig, raw, Path(source).name)
    cfg._source, cfg._raw = str(source), copy.deepcopy(raw)
    return cfg


def load_twhin_config(path: str | Path | None = None) -> TwhinConfig:
    """Parse a TwHIN config strictly; `None` means the shipped study config."""
    path = Path(path) if path is not None else shipped_config_path(STUDY_CONFIG)
    return parse_twhin_config(load_yaml(path), path)


def with_changes(cfg: TwhinConfig, changes: dict[tuple, object]) -> TwhinConfig:
    """The config with some keys set (key path, ints indexing lists -> value), re-read, so the raw
    copy a run keeps and the checks agree with it."""
    raw = copy.deepcopy(cfg.raw)
    for path, value in changes.items():
        node = raw
        for key in path[:-1]:
            node = node[key] if isinstance(key, int) else node.setdefault(key, {})
        node[path[-1]] = value
    return parse_twhin_config(raw, cfg.source)


__all__ = ["PUBLISHED_CONFIG", "STUDY_CONFIG", "OPTIMIZERS", "TableConfig", "TwhinConfig", "load_twhin_config",
           "parse_twhin_config", "with_changes"]

"""TwHIN configuration (twhin_local.yaml format) and the torchrec model with its loss.

Score(lhs, rel, rhs) = <e_lhs, e_rhs + t_rel> (translation operator). Two defects of the
original are fixed here:
- the translations are a trainable `nn.Parameter` used directly (the original read them
  through `.data`, so they never received a gradient and kept their initial values);
- in-batch negatives are labelled 0 (the original labelled them 1, i.e. as positives).
The negative weighting is the published one: each of the 2·B·S negatives of a batch of B
edges with S negatives per side weighs B / (2·B·S), so negatives and positives weigh the
same in total. The loss is BCE-with-logits averaged over all B·(1 + 2S) terms, as published.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchrec import EmbeddingBagCollection, EmbeddingBagConfig, KeyedJaggedTensor, PoolingType

from studylib.config import _Section, load_yaml, shipped_config_path
from studylib.errors import StudyError
from studylib.twhin.graph import Relation

PUBLISHED_CONFIG = "twhin_local.yaml"
STUDY_CONFIG = "twhin_study.yaml"
OPTIMIZERS = ("sgd", "adagrad")
SIDES = ("lhs", "rhs")


@dataclass(frozen=True)
class TableConfig:
    name: str
    num_embeddings: int
    embedding_dim: int
    optimizer: str  # "sgd" or "adagrad", fused into backward
    learning_rate: float


@dataclass(frozen=True)
class TwhinConfig:
    source: str
    tables: tuple[TableConfig, ...]
    relations: tuple[Relation, ...]
    translation_lr: float
    batch_size: int  # per process, as the original's per_replica_batch_size
    in_batch_negatives: int  # per relation per side
    num_train_steps: int
    checkpoint_every_n: int
    train_log_every_n: int
    raw: dict

    @property
    def dim(self) -> int:
        return self.tables[0].embedding_dim

    def table(self, name: str) -> TableConfig:
        return next(t for t in self.tables if t.name == name)


def _optimizer(sec: _Section) -> tuple[str, float]:
    """{sgd|adagrad: {lr}, learning_rate: {constant: lr}} -> (kind, lr); the schedule wins."""
    kinds = [k for k in OPTIMIZERS if sec.raw.get(k) is not None]
    if len(kinds) != 1:
        raise StudyError(f"{sec.source}: {sec.path} needs exactly one of {', '.join(OPTIMIZERS)}")
    body = sec.section(kinds[0])
    lr = body.get("lr", float, required=True)
    body.done()
    schedule = sec.section("learning_rate")
    if schedule is not None:
        lr = schedule.get("constant", float, required=True)
        schedule.done()
    sec.done()
    if lr <= 0:
        raise StudyError(f"{sec.source}: {sec.path} learning rate must be > 0, got {lr}")
    return kinds[0], lr


def load_twhin_config(path: str | Path | None = None) -> TwhinConfig:
    """Parse a TwHIN config strictly; `None` means the shipped study config."""
    path = Path(path) if path is not None else shipped_config_path(STUDY_CONFIG)
    raw = load_yaml(path)
    source = path.name
    top = _Section(raw, "", source)
    top.ignore("runtime", "validation_data")
    train = top.section("training", required=True)
    train.ignore("save_dir", "num_eval_steps", "eval_log_every_n", "eval_timeout_in_s", "num_epochs")
    model = top.section("model", required=True)
    emb = model.section("embeddings", required=True)
    tables = []
    for i, item in enumerate(emb.get("tables", list, required=True)):
        sec = _Section(item, f"model.embeddings.tables[{i}]", source)
        if sec.get("data_type", str, "fp32") != "fp32":
            raise StudyError(f"{source}: {sec.path}.data_type supports only fp32")
        name = sec.get("name", str, required=True)
        rows, dim = sec.get("num_embeddings", int, required=True), sec.get("embedding_dim", int, required=True)
        kind, lr = _optimizer(sec.section("optimizer", required=True))
        sec.done()
        if rows < 1 or dim < 1:
            raise StudyError(f"{source}: {sec.path} num_embeddings and embedding_dim must be >= 1")
        tables.append(TableConfig(name, rows, dim, kind, lr))
    emb.done()
    if not tables or len({t.embedding_dim for t in tables}) != 1:
        raise StudyError(f"{source}: model.embeddings.tables must share one embedding_dim")
    relations = []
    for i, item in enumerate(model.get("relations", list, required=True)):
        sec = _Section(item, f"model.relations[{i}]", source)
        rel = Relation(sec.get("name", str, required=True), sec.get("lhs", str, required=True),
                       sec.get("rhs", str, required=True))
        if sec.get("operator", str, "translation") != "translation":
            raise StudyError(f"{source}: {sec.path}.operator supports only translation")
        sec.done()
        for side in SIDES:
            if getattr(rel, side) not in {t.name for t in tables}:
                raise StudyError(f"{source}: {sec.path}.{side} names unknown table {getattr(rel, side)}")
        relations.append(rel)
    if len({r.name for r in relations}) != len(relations):
        raise StudyError(f"{source}: model.relations has duplicate names")
    _, translation_lr = _optimizer(model.section("translation_optimizer", required=True))
    model.done()
    data = top.section("train_data", required=True)
    data.ignore("data_root", "limit", "offset")
    if data.get("global_negatives", int, 0) != 0:
        raise StudyError(f"{source}: train_data.global_negatives is not supported by this study (must be 0)")
    cfg = TwhinConfig(
        source=str(path), tables=tuple(tables), relations=tuple(relations), translation_lr=translation_lr,
        batch_size=data.get("per_replica_batch_size", int, 500),
        in_batch_negatives=data.get("in_batch_negatives", int, 10),
        num_train_steps=train.get("num_train_steps", int, 1000),
        checkpoint_every_n=train.get("checkpoint_every_n", int, 1000),
        train_log_every_n=train.get("train_log_every_n", int, 10),
        raw=copy.deepcopy(raw),
    )
    data.done()
    train.done()
    top.done()
    if cfg.batch_size < 1 or cfg.in_batch_negatives < 0:
        raise StudyError(f"{source}: train_data.per_replica_batch_size must be >= 1 and in_batch_negatives >= 0")
    return cfg


# ---------------------------------------------------------------- batches


def feature_names(cfg: TwhinConfig) -> dict[str, list[str]]:
    """Table -> its KJT features: one per side the table appears on (`lhs_user`, `rhs_tweet`, ...).

    One bag per edge and feature keeps the batch as B rows; a row's feature is empty when the
    edge's relation puts another table on that side.
    """
    used = {t.name: [] for t in cfg.tables}
    for side in SIDES:
        for table in dict.fromkeys(getattr(r, side) for r in cfg.relations):
            used[table].append(f"{side}_{table}")
    return used


def edges_to_kjt(lhs: torch.Tensor, rel: torch.Tensor, rhs: torch.Tensor, cfg: TwhinConfig) -> KeyedJaggedTensor:
    """B edges -> a KeyedJaggedTensor with stride B over the `feature_names` keys."""
    table_id = {t.name: i for i, t in enumerate(cfg.tables)}
    keys, lengths, values = [], [], []
    for table, features in feature_names(cfg).items():
        for feature in features:
            side = feature.split("_", 1)[0]
            side_table = torch.tensor([table_id[getattr(r, side)] for r in cfg.relations], dtype=torch.int64)
            present = side_table[rel] == table_id[table]
            keys.append(feature)
            lengths.append(present.to(torch.int32))
            values.append((lhs if side == "lhs" else rhs)[present])
    return KeyedJaggedTensor(keys=keys, values=torch.cat(values), lengths=torch.cat(lengths))


# ---------------------------------------------------------------- score and loss


def edge_scores(lhs: torch.Tensor, rhs: torch.Tensor, translation: torch.Tensor) -> torch.Tensor:
    """<e_lhs, e_rhs + t_rel> per row."""
    return (lhs * (rhs + translation)).sum(-1)


def in_batch_negative_scores(lhs: torch.Tensor, rhs: torch.Tensor, rel: torch.Tensor, translations: torch.Tensor,
                             negatives: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Scores of 2·n_r·S corrupted edges per relation r (S = negatives per side), flattened.

    Within each relation, S rhs and S lhs are sampled from the batch (with replacement) and
    every edge is paired with them: one matmul per side.
    """
    scores = []
    for r in torch.unique(rel).tolist():
        rows = torch.nonzero(rel == r).squeeze(1)
        left, right = lhs[rows], rhs[rows] + translations[r]
        pick_rhs = torch.randint(rows.numel(), (negatives,), generator=generator).to(lhs.device)
        pick_lhs = torch.randint(rows.numel(), (negatives,), generator=generator).to(lhs.device)
        scores.append((left @ right[pick_rhs].T).reshape(-1))  # corrupt the rhs
        scores.append((left[pick_lhs] @ right.T).reshape(-1))  # corrupt the lhs
    return torch.cat(scores) if scores else lhs.new_zeros(0)


def twhin_loss(positive: torch.Tensor, negative: torch.Tensor, negatives_per_side: int):
    """BCE-with-logits over positives (label 1, weight 1) and negatives (label 0, weight B/(2·B·S))."""
    n_pos, n_neg = positive.numel(), negative.numel()
    logits = torch.cat([positive, negative])
    labels = torch.cat([torch.ones(n_pos), torch.zeros(n_neg)]).to(logits)
    neg_weight = n_pos / (2 * n_pos * negatives_per_side) if negatives_per_side else 0.0
    weights = torch.cat([torch.ones(n_pos), torch.full((n_neg,), neg_weight)]).to(logits)
    loss = F.binary_cross_entropy_with_logits(logits, labels, weight=weights)
    return loss, logits, labels, weights


class TwhinModel(nn.Module):
    """One torchrec embedding table per entity type plus one translation vector per relation."""

    def __init__(self, cfg: TwhinConfig, device: torch.device | str = "cpu"):
        super().__init__()
        self.cfg = cfg
        self.features = feature_names(cfg)
        self.ebc = EmbeddingBagCollection(
            tables=[EmbeddingBagConfig(name=t.name, embedding_dim=t.embedding_dim, num_embeddings=t.num_embeddings,
                                       feature_names=self.features[t.name], pooling=PoolingType.SUM)
                    for t in cfg.tables],
            device=torch.device(device),
        )
        # Zero start: every relation begins as the plain dot product and learns its offset.
        self.translations = nn.Parameter(torch.zeros(len(cfg.relations), cfg.dim, device=device))

    def embed(self, kjt: KeyedJaggedTensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pooled lhs and rhs vectors [B, D]: the sum over each side's features (one is non-empty)."""
        pooled = self.ebc(kjt).to_dict()
        sides = []
        for side in SIDES:
            parts = [pooled[f] for feats in self.features.values() for f in feats if f.startswith(side + "_")]
            sides.append(parts[0] if len(parts) == 1 else torch.stack(parts).sum(0))
        return sides[0], sides[1]

    def forward(self, kjt: KeyedJaggedTensor, rel: torch.Tensor, generator: torch.Generator | None = None):
        lhs, rhs = self.embed(kjt)
        positive = edge_scores(lhs, rhs, self.translations[rel])
        negative = in_batch_negative_scores(lhs, rhs, rel, self.translations, self.cfg.in_batch_negatives, generator)
        loss, _, _, _ = twhin_loss(positive, negative, self.cfg.in_batch_negatives)
        return loss


__all__ = ["TwhinConfig", "TwhinModel", "edge_scores", "edges_to_kjt", "in_batch_negative_scores",
           "load_twhin_config", "twhin_loss"]

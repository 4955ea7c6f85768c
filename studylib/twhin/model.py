"""The TwHIN torchrec model and its loss (the config: `studylib.twhin.config`).

Score(lhs, rel, rhs) = <e_lhs, e_rhs + t_rel> (translation operator). Two defects of the
original are fixed here:
- the translations are a trainable `nn.Parameter` used directly (the original read them
  through `.data`, so they never received a gradient and kept their initial values);
- in-batch negatives are labelled 0 (the original labelled them 1, i.e. as positives).

Negatives, per relation and side, paired with every edge of the relation in the batch:
S in-batch ones (`in_batch_negatives`, entities of the relation's batch edges) with the
published weight B / (2·B·S) each, and U uniform ones (`global_negatives`, entities drawn
uniformly from the table, as PyTorch-BigGraph mixes in) with weight W·B / (2·B·U) each
(W = `global_negatives_weight`). So positives and in-batch negatives weigh B each in total,
uniform negatives W·B. In-batch negatives share the positives' popularity, so alone they
teach popularity-free affinity; the uniform ones put popularity back into the score
(the optimum logit is log p(x|u) - log(p(x) + W/N) for N table rows). The loss is
BCE-with-logits averaged over all B·(1 + 2S + 2U) terms (with U = 0: as published).

Two extensions, off unless a config asks (the published config loads as before):
- `train_data.loss: softmax` scores each edge against its candidates with a sampled softmax
  (cross-entropy of the true entity among itself and the negatives, once per side) instead
  of BCE. With uniform negatives its optimum is score = log p(x|u) + const(u), the
  generator's own ranking; `global_negatives_weight` then has no role and is refused.
- `model.node_bias: true` adds a learned scalar per entity and relation: score =
  <e_lhs, e_rhs + t_rel> + b_rel,lhs + b_rel,rhs. A tweet's popularity in a relation is then one
  number of its own. The translation operator cannot carry it: t_rel adds <e_lhs, t_rel>, the same
  for every candidate, so without these biases a user ranks tweets in one order for fav, reply,
  retweet and magic_recs alike (a bias per entity shared by the relations, measured too, helped no
  relation: docs/twhin.md).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torchrec import EmbeddingBagConfig, KeyedJaggedTensor, PoolingType
from torchrec.modules.fused_embedding_modules import FusedEmbeddingBagCollection

from studylib.twhin.config import TwhinConfig

TABLE_OPTIMIZERS = {"sgd": torch.optim.SGD, "adagrad": torch.optim.Adagrad}
SIDES = ("lhs", "rhs")


# ---------------------------------------------------------------- batches


def feature_names(cfg: TwhinConfig) -> dict[str, list[str]]:
    """Table -> its KJT features: one per side the table appears on (`lhs_user`, `rhs_tweet`, ...).

    One bag per row and feature keeps the batch as rows; a row's feature is empty when its
    relation puts another table on that side.
    """
    used = {t.name: [] for t in cfg.tables}
    for side in SIDES:
        for table in dict.fromkeys(getattr(r, side) for r in cfg.relations):
            used[table].append(f"{side}_{table}")
    return used


def edges_to_kjt(lhs: torch.Tensor, rel: torch.Tensor, rhs: torch.Tensor, cfg: TwhinConfig,
                 generator: torch.Generator | None = None) -> tuple[KeyedJaggedTensor, list[int]]:
    """B edges -> (KeyedJaggedTensor over the `feature_names` keys, edges per relation).

    Rows are grouped into one contiguous block per relation (slices, not gathers, later): U =
    uniform_negatives rows of uniformly drawn lhs and rhs entities of the relation's tables,
    then the relation's edges in batch order.
    """
    counts = torch.bincount(rel, minlength=len(cfg.relations)).tolist()
    order = torch.argsort(rel, stable=True)
    sides = {"lhs": lhs[order].split(counts), "rhs": rhs[order].split(counts)}
    rows = {t.name: t.num_embeddings for t in cfg.tables}
    uniform = cfg.train_data.uniform_negatives
    blocks = torch.tensor(counts) + uniform
    keys, values, lengths = [], [], []
    for table, features in feature_names(cfg).items():
        for feature in features:
            side = feature.split("_", 1)[0]
            mine = [getattr(r, side) == table for r in cfg.relations]
            for r, ids in enumerate(sides[side]):
                if mine[r]:
                    values += [torch.randint(rows[table], (uniform,), generator=generator), ids]
            keys.append(feature)
            lengths.append(torch.tensor(mine, dtype=torch.int32).repeat_interleave(blocks))
    return KeyedJaggedTensor(keys=keys, values=torch.cat(values), lengths=torch.cat(lengths),
                             stride=int(blocks.sum())), counts


# ---------------------------------------------------------------- score and loss


def relation_scores(lhs: torch.Tensor, rhs: torch.Tensor, uniform: int, in_batch: int,
                    lhs_bias: torch.Tensor | None = None, rhs_bias: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Positive [n] and negative [2·k, n] scores of one relation's block, k = U + min(S, n).

    `lhs` and `rhs` (translated: e_rhs + t_rel) are the block's rows: U uniform ones, then its
    n edges. The candidates are the first k rows: the U uniform entities and the first S edges'
    entities, a sample without replacement of the relation's batch edges, as batches come in
    random order. Each edge is scored against the k candidate rhs (rows 0..k-1 of the result),
    then the k candidate lhs (rows k..2k-1), each side one matmul over the whole block; the U
    columns of the uniform rows are cut from that small result rather than copying the block.
    With node biases (one per row of the block, the relation's) every score adds its lhs's and its
    rhs's bias.
    """
    k = uniform + min(in_batch, lhs.shape[0] - uniform)
    positive = (lhs * rhs).sum(1)[uniform:]
    negative = torch.cat([rhs[:k] @ lhs.T, lhs[:k] @ rhs.T])[:, uniform:]
    if lhs_bias is not None:
        l_bias, r_bias = lhs_bias[uniform:], rhs_bias[uniform:]
        positive = positive + l_bias + r_bias
        negative = negative + torch.cat([rhs_bias[:k, None] + l_bias, lhs_bias[:k, None] + r_bias])
    return positive, negative


def negative_weights(in_batch: int, uniform: int, uniform_weight: float) -> torch.Tensor:
    """Weight of each row of `relation_scores`' negatives: W/(2U) uniform, 1/(2S) in-batch.

    Per edge, the 2S in-batch negatives then weigh 1 together, as published (B/(2·B·S) each;
    S is smaller when a relation has fewer edges in the batch), and the 2U uniform ones W.
    """
    side = [uniform_weight / (2 * max(uniform, 1))] * uniform + [1 / (2 * max(in_batch, 1))] * in_batch
    return torch.tensor(side + side)


def twhin_loss(scores: list[tuple[torch.Tensor, torch.Tensor]], uniform: int, uniform_weight: float) -> torch.Tensor:
    """BCE-with-logits averaged over all terms of `relation_scores` results: positives (label 1,
    weight 1) and negatives (label 0, `negative_weights`). BCE against 1 is softplus(-x), against 0
    softplus(x)."""
    total, terms = 0.0, 0
    for positive, negative in scores:
        weights = negative_weights(negative.shape[0] // 2 - uniform, uniform, uniform_weight).to(negative)
        total = total + F.softplus(-positive).sum() + (weights @ F.softplus(negative)).sum()
        terms += positive.numel() + negative.numel()
    return total / terms


def softmax_loss(scores: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """Sampled softmax over `relation_scores` results: per edge and side, the cross-entropy of the
    true entity among itself and that side's k candidates, averaged over all edges and both sides."""
    total, terms = 0.0, 0
    for positive, negative in scores:
        k = negative.shape[0] // 2
        for candidates in (negative[:k], negative[k:]):  # rhs corrupted, then lhs corrupted
            total = total + (torch.logsumexp(torch.cat([positive[None], candidates]), 0) - positive).sum()
        terms += 2 * positive.numel()
    return total / terms


# ---------------------------------------------------------------- the model


def bag_configs(cfg: TwhinConfig) -> list[EmbeddingBagConfig]:
    features = feature_names(cfg)
    return [EmbeddingBagConfig(name=t.name, embedding_dim=t.embedding_dim, num_embeddings=t.num_embeddings,
                               feature_names=features[t.name], pooling=PoolingType.SUM) for t in cfg.tables]


class FusedTables(nn.Module):
    """The tables for one process: a torchrec `FusedEmbeddingBagCollection` (fbgemm kernels, the
    table's optimizer fused into backward) per table, as a fused collection has one optimizer
    and learning rate. Maps a KJT to {feature: pooled [rows, D]}.

    Each collection's fbgemm lookup is called on its features' bags directly: the collection's
    own forward would split the whole KJT again for every collection, copy its one table's
    indices and output through single-element concatenations, and hand the output on as a
    KeyedTensor whose split backward concatenates the gradients again. The result is the
    collection's forward's, bit for bit, in the outputs and in the fused updates (a test checks).
    """

    def __init__(self, cfg: TwhinConfig, device: torch.device | str = "cpu"):
        super().__init__()
        self.features = feature_names(cfg)
        self.dims = {t.name: t.embedding_dim for t in cfg.tables}
        self.collections = nn.ModuleDict({
            t.name: FusedEmbeddingBagCollection(tables=[bag], optimizer_type=TABLE_OPTIMIZERS[t.optimizer.kind],
                                                optimizer_kwargs={"lr": t.optimizer.lr}, device=torch.device(device))
            for t, bag in zip(cfg.tables, bag_configs(cfg))})

    def _lookup(self, table: str, bags: dict) -> torch.Tensor:
        """Pooled [rows, D·features] of one table: its collection's single fbgemm lookup module
        (torchrec makes one per group of tables sharing optimizer and pooling; here one table)."""
        (lookup,) = self.collections[table]._emb_modules
        features = [bags[f] for f in self.features[table]]
        if len(features) == 1:
            values, offsets = features[0].values(), features[0].offsets()
        else:  # feature-major, as the collection lays them out
            values = torch.cat([b.values() for b in features])
            offsets = torch.ops.fbgemm.asynchronous_complete_cumsum(torch.cat([b.lengths() for b in features]))
        return lookup(values.int(), offsets.int(), None)

    def forward(self, kjt: KeyedJaggedTensor) -> dict[str, torch.Tensor]:
        bags = kjt.to_dict()
        pooled = {}
        for table in self.collections:
            output, features = self._lookup(table, bags), self.features[table]
            pooled.update(zip(features, output.split(self.dims[table], dim=1) if len(features) > 1 else [output]))
        return pooled


class BatchScores(NamedTuple):
    relations: list[tuple[torch.Tensor, torch.Tensor]]  # per relation with edges: (positive, negative)
    penalty: torch.Tensor | None  # regularization_coef × the edges' mean squared embedding norm, or None


class TwhinModel(nn.Module):
    """One embedding table per entity type plus one translation vector per relation.

    `ebc` maps a KJT to pooled features: by default `FusedTables` (one process); training on
    several processes passes a torchrec `EmbeddingBagCollection` for DMP to shard.
    """

    def __init__(self, cfg: TwhinConfig, ebc: nn.Module | None = None, device: torch.device | str = "cpu"):
        super().__init__()
        self.cfg = cfg
        self.ebc = ebc if ebc is not None else FusedTables(cfg, device)
        # Zero start: every relation begins as the plain dot product and learns its offset.
        self.translations = nn.Parameter(torch.zeros(len(cfg.relations), cfg.dim, device=device))
        # Node biases (model.node_bias): [relations, entities] per table, dense as they are one float
        # per entity and relation (rows of relations the table is not part of stay zero); zero start.
        self.biases = nn.ParameterDict({
            t.name: nn.Parameter(torch.zeros(len(cfg.relations), t.num_embeddings, device=device))
            for t in cfg.tables} if cfg.model.node_bias else {})

    def _side_biases(self, kjt: KeyedJaggedTensor, side: str, blocks: list[int]) -> torch.Tensor:
        """Bias of every row's entity on one side, in the relation of the row's block (each row has one
        id in one of the side's features; block r holds relation r's rows)."""
        device = self.translations.device
        relation = torch.repeat_interleave(torch.arange(len(blocks), device=device), torch.tensor(blocks, device=device))
        out = torch.zeros(sum(blocks), device=device)
        for feature, bag in kjt.to_dict().items():
            side_of, table = feature.split("_", 1)
            if side_of == side:
                present = bag.lengths().bool()
                out = out.index_put((present,), self.biases[table][relation[present], bag.values()])
        return out

    def forward(self, kjt: KeyedJaggedTensor, counts: list[int]) -> BatchScores:
        """Scores of a batch from `edges_to_kjt` (`counts`: its edges per relation): per relation with
        edges, `relation_scores`' (positive, negative) pair, and the regularization penalty of the
        edges' own embeddings. `batch_loss` turns them into the loss."""
        pooled = self.ebc(kjt)
        if not isinstance(pooled, dict):  # EmbeddingBagCollection (or DMP's awaitable): a KeyedTensor
            pooled = pooled.to_dict()
        uniform = self.cfg.train_data.uniform_negatives
        blocks = [n + uniform for n in counts]
        sides = {}
        for side in SIDES:  # a row is empty in all but one feature of a side, so their sum is that one
            parts = [values for feature, values in pooled.items() if feature.startswith(side + "_")]
            sides[side] = sum(parts[1:], parts[0]).split(blocks)
        biases = ({side: self._side_biases(kjt, side, blocks).split(blocks) for side in SIDES} if self.cfg.model.node_bias
                  else {side: [None] * len(blocks) for side in SIDES})
        scores = [relation_scores(sides["lhs"][r], sides["rhs"][r] + self.translations[r], uniform,
                                  self.cfg.train_data.in_batch_negatives, biases["lhs"][r], biases["rhs"][r])
                  for r, n in enumerate(counts) if n]
        coef = self.cfg.model.regularization_coef
        penalty = None
        if coef > 0 and sum(counts):  # the rows after each block's U uniform negatives are its edges' own
            squares = sum(sides[side][r][uniform:].pow(2).sum() for side in SIDES for r, n in enumerate(counts) if n)
            penalty = coef * squares / sum(counts)
        return BatchScores(scores, penalty)


def batch_loss(cfg: TwhinConfig, scores: BatchScores) -> torch.Tensor:
    """The config's loss (`train_data.loss`) of `TwhinModel`'s scores: the sampled softmax, or the
    published weighted BCE; plus the regularization penalty where the config asks for one."""
    if cfg.train_data.loss == "softmax":
        loss = softmax_loss(scores.relations)
    else:
        loss = twhin_loss(scores.relations, cfg.train_data.uniform_negatives, cfg.train_data.global_negatives_weight)
    return loss if scores.penalty is None else loss + scores.penalty


__all__ = ["BatchScores", "FusedTables", "TwhinModel", "bag_configs", "batch_loss", "edges_to_kjt",
           "negative_weights", "relation_scores", "softmax_loss", "twhin_loss"]

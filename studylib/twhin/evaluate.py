"""Link prediction on held-out edges, per relation and direction: MRR, Hits@k, Recall@k with intervals.

Every distinct held-out (lhs, rhs) pair of a relation is scored (a seeded sample only when
`max_edges` asks for one) in both directions:
- `rhs`: the true rhs ranked among all entities of the rhs type, given the lhs (which tweets
  will this user favorite?);
- `lhs`: the true lhs ranked among all entities of the lhs type, given the rhs (which users
  will favorite this tweet?).
Ties count half. Two rankings: `raw` (every other entity is a candidate, also other true
edges) and `filtered` (the standard knowledge-graph protocol: the query's other known true
entities, from any split of that relation, are removed from its candidates). Two sets of
pairs: `all` held-out pairs, and `unseen`, the held-out pairs that do not also occur in the
training split (a pair drawn twice is otherwise partly memorised). Intervals: a cluster
bootstrap over lhs entities (users), since one user's pairs are not independent.

Scorers: `trained` embeddings; `random` embeddings of the same shape (the floor);
`popularity`, the candidate's train degree in that relation (no learning, no personalisation);
and, on planted graphs, `oracle`, the generator's own log-probability of the pair.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from studylib.data.world import World
from studylib.errors import StudyError
from studylib.stats import bootstrap_weights
from studylib.io import atomic_write
from studylib.twhin.graph import Graph
from studylib.twhin.planted import planted_log_intensity
from studylib.twhin.splits import SplitSpec
from studylib.twhin.runs import TrainedRun, load_splits, load_trained

SCORE_CELLS = 4_000_000  # score-matrix cells per chunk (memory bound)
HITS_AT = (1, 10, 50)
RECALL_AT = (10, 20, 50)
DIRECTIONS = ("rhs", "lhs")  # which side is ranked: rhs given lhs, lhs given rhs
RANKINGS = ("raw", "filtered")
PAIR_SETS = ("all", "unseen")
RESULTS = "evaluation.csv"
BOOTSTRAP_RESAMPLES = 500


# ---------------------------------------------------------------- scorers


# Every scorer of a link-prediction table, in the order tables and figures show them: the floor,
# the two popularity baselines, the trained embeddings (with and without node biases), the oracle.
SCORERS = ("random", "popularity", "pooled_popularity", "trained", "trained_node_bias", "oracle")
MAX_RESAMPLES = 100_000


class EmbeddingScorer:
    """<e_lhs, e_rhs + t_rel> (+ b_rel,lhs + b_rel,rhs with node biases) from tables (numpy)."""

    def __init__(self, name: str, tables: dict[str, np.ndarray], translations: np.ndarray, relations,
                 biases: dict[str, np.ndarray] | None = None):
        self.name, self.tables, self.translations, self.relations = name, tables, translations, relations
        self.biases = biases

    def matrix(self, rel: int, lhs: np.ndarray, rhs: np.ndarray) -> np.ndarray:
        """Scores [len(lhs), len(rhs)] of every lhs with every rhs."""
        r = self.relations[rel]
        scores = self.tables[r.lhs][lhs] @ (self.tables[r.rhs][rhs] + self.translations[rel]).T
        if self.biases is not None:
            scores += self.biases[r.lhs][rel, lhs][:, None] + self.biases[r.rhs][rel, rhs][None, :]
        return scores


class OracleScorer:
    """The planted graph's log-probability of a pair: log activity(lhs) + log-intensity(lhs, rhs).

    The generator draws pairs by importance resampling over one pool (users by activity), so a
    pair's probability is proportional to activity(user) · intensity(user, x): the best possible
    ranking in both directions."""

    name = "oracle"

    def __init__(self, world: World, relations):
        self.world, self.relations = world, relations
        self.log_activity = np.log(world.user_activity)

    def matrix(self, rel: int, lhs: np.ndarray, rhs: np.ndarray) -> np.ndarray:
        return planted_log_intensity(self.world, self.relations[rel].name, lhs, rhs) + self.log_activity[lhs][:, None]


class PopularityScorer:
    """log(1 + train degree) of each side in the relation: ranks candidates by how often they
    appear in training, the same order for every query."""

    name = "popularity"

    def __init__(self, train: Graph):
        self.degree = {rel: train.log_degrees(rel) for rel in range(len(train.relations))}

    def matrix(self, rel: int, lhs: np.ndarray, rhs: np.ndarray) -> np.ndarray:
        left, right = self.degree[rel]
        return left[lhs][:, None] + right[rhs][None, :]


class PooledPopularityScorer(PopularityScorer):
    """Popularity that one order per entity type can carry: each side's training degree summed over
    every relation with that side's table. A translation score <e_lhs, e_rhs + t_rel> ranks the
    right-hand side of a query identically in every relation (t_rel adds <e_lhs, t_rel>, the same
    for all candidates), so this, not the per-relation degree, is the popularity such embeddings
    can learn for the rhs."""

    name = "pooled_popularity"

    def __init__(self, train: Graph):
        super().__init__(train)
        relations = train.relations
        for side, index in (("lhs", 0), ("rhs", 1)):
            for table in {getattr(r, side) for r in relations}:
                same = [i for i, r in enumerate(relations) if getattr(r, side) == table]
                pooled = np.log1p(sum(np.expm1(self.degree[i][index]) for i in same))
                for i in same:
                    self.degree[i] = tuple(pooled if j == index else d for j, d in enumerate(self.degree[i]))


def trained_scorer(run: TrainedRun, name: str = "trained") -> EmbeddingScorer:
    return EmbeddingScorer(name, run.tables, run.translations, run.cfg.relations, run.biases)


def random_scorer(run: TrainedRun, seed: int = 0) -> EmbeddingScorer:
    rng = np.random.default_rng([seed, 0x2A4D])
    tables = {name: rng.standard_normal(t.shape).astype(np.float32) for name, t in run.tables.items()}
    return EmbeddingScorer("random", tables, np.zeros_like(run.translations), run.cfg.relations)


def translation_offsets(run: TrainedRun) -> pd.DataFrame:
    """What each relation's translation adds to the score: <e_lhs, e_rhs + t_r> = <e_lhs, e_rhs> + <e_lhs, t_r>.

    The added term <e_lhs, t_r> does not depend on the rhs, so it cannot reorder the rhs
    candidates of one lhs (every relation sharing an rhs table ranks them alike); ranking lhs
    entities for one rhs, it is a per-lhs offset. One row per relation: the translation's norm,
    the mean lhs vector norm, and the mean and standard deviation over lhs entities of the
    offset (how much it can reorder lhs candidates)."""
    rows = []
    for rel, relation in enumerate(run.cfg.relations):
        lhs = run.tables[relation.lhs]
        offset = lhs @ run.translations[rel]
        rows.append({"relation": relation.name, "lhs": relation.lhs, "rhs": relation.rhs,
                     "translation_norm": float(np.linalg.norm(run.translations[rel])),
                     "mean_lhs_norm": float(np.linalg.norm(lhs, axis=1).mean()),
                     "offset_mean": float(offset.mean()), "offset_std": float(offset.std())})
    return pd.DataFrame(rows).set_index("relation")


# ---------------------------------------------------------------- ranks


def _pair_codes(query: np.ndarray, target: np.ndarray, n_targets: int) -> np.ndarray:
    return query.astype(np.int64) * n_targets + target


@dataclass
class Queries:
    """Held-out pairs of one relation and direction, as query -> target, with the query's other
    known targets (any split) for filtered ranks."""

    query: np.ndarray  # per pair
    target: np.ndarray  # per pair
    user: np.ndarray  # per pair: the lhs entity (bootstrap cluster)
    seen: np.ndarray  # per pair: also a training pair
    n_candidates: int
    known_query: np.ndarray  # all known (query, target) pairs of the relation, sorted by query
    known_target: np.ndarray


def _queries(held_out: tuple[np.ndarray, np.ndarray], known: tuple[np.ndarray, np.ndarray],
             train: tuple[np.ndarray, np.ndarray], direction: str, tables: tuple[int, int]) -> Queries:
    (lhs, rhs), (k_lhs, k_rhs), (t_lhs, t_rhs) = held_out, known, train
    flip = direction == "lhs"
    query, target = (rhs, lhs) if flip else (lhs, rhs)
    k_query, k_target = (k_rhs, k_lhs) if flip else (k_lhs, k_rhs)
    n_targets = tables[0] if flip else tables[1]
    seen = np.isin(_pair_codes(lhs, rhs, tables[1]), _pair_codes(t_lhs, t_rhs, tables[1]))
    known_codes = np.unique(_pair_codes(k_query, k_target, n_targets))
    return Queries(query, target, lhs, seen, n_targets, known_codes // n_targets, known_codes % n_targets)


def rank_pairs(scorer, rel: int, q: Queries, direction: str) -> tuple[np.ndarray, np.ndarray]:
    """(raw, filtered) 1-based rank of each pair's target among all candidates; ties count half.

    Scores are computed once per distinct query (one row over all candidates), in chunks."""
    raw, filtered = np.zeros(q.query.size), np.zeros(q.query.size)
    queries, pair_row = np.unique(q.query, return_inverse=True)
    candidates = np.arange(q.n_candidates)
    rows_per_chunk = max(1, SCORE_CELLS // q.n_candidates)
    starts = np.searchsorted(q.known_query, queries)
    ends = np.searchsorted(q.known_query, queries, side="right")
    for first in range(0, queries.size, rows_per_chunk):
        chunk = queries[first:first + rows_per_chunk]
        scores = (scorer.matrix(rel, candidates, chunk).T if direction == "lhs"
                  else scorer.matrix(rel, chunk, candidates))
        pairs = np.flatnonzero((pair_row >= first) & (pair_row < first + chunk.size))
        for part in np.array_split(pairs, max(1, pairs.size * q.n_candidates // SCORE_CELLS)):
            rows = pair_row[part] - first
            block = scores[rows]
            positive = block[np.arange(part.size), q.target[part]]
            above = (block > positive[:, None]).sum(1)
            ties = (block == positive[:, None]).sum(1) - 1
            raw[part] = 1.0 + above + 0.5 * ties
            # Filtered: drop the query's other known targets that score above (or tie with) the target.
            lengths = ends[pair_row[part]] - starts[pair_row[part]]
            owner = np.repeat(np.arange(part.size), lengths)
            offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
            other = q.known_target[np.repeat(starts[pair_row[part]], lengths) + offsets]
            keep = other != q.target[part][owner]
            owner, other = owner[keep], other[keep]
            other_scores = block[owner, other]
            drop = (np.bincount(owner, weights=other_scores > positive[owner], minlength=part.size)
                    + 0.5 * np.bincount(owner, weights=other_scores == positive[owner], minlength=part.size))
            filtered[part] = raw[part] - drop
    return raw, filtered


# ---------------------------------------------------------------- metrics


def user_resamples(user: np.ndarray, n_resamples: int, seed: int) -> np.ndarray | None:
    """[B, pairs] cluster-bootstrap weights over users (None with fewer than 2 users or no
    resamples). The same users and seed give the same resamples, so scorers ranked on the same
    pairs are paired; compute them once for all of those scorers."""
    if np.unique(user).size < 2 or n_resamples < 1:
        return None
    return bootstrap_weights(user, n_resamples, seed)


def rank_metrics(ranks: np.ndarray, query: np.ndarray, user: np.ndarray, n_resamples: int = BOOTSTRAP_RESAMPLES,
                 seed: int = 0, baseline: np.ndarray | None = None, resamples: np.ndarray | None = None,
                 bar: tuple[np.ndarray, np.ndarray] | None = None) -> dict:
    """MRR and Hits@k with cluster-bootstrap 95 % intervals over users; Recall@k as in the TwHIN
    paper (per query, the share of its held-out targets in its top k, averaged over queries).

    baseline: another scorer's ranks of the same pairs; adds `mrr_vs_baseline` (this MRR minus the
    baseline's) with a paired interval (both resampled with the same users).
    resamples: `user_resamples(user, n_resamples, seed)`, when the caller already has them.
    bar: (floor, ceiling) ranks of the same pairs (popularity, oracle); adds `share_over_popularity`,
    the share of the ceiling's MRR gain over the floor that these ranks reach (1: the oracle, 0: no
    better than popularity), and `oracle_over_popularity`, that gain itself, each with its interval on
    the same resamples, and `mrr_over_popularity`, this MRR minus popularity's on the same pairs (paired
    interval: whether these ranks are at, above or below the popularity bar)."""
    values = {"mrr": 1.0 / ranks, **{f"hits@{k}": (ranks <= k).astype(float) for k in HITS_AT}}
    if baseline is not None:
        values["mrr_vs_baseline"] = 1.0 / ranks - 1.0 / baseline
    row = {name: float(v.mean()) for name, v in values.items()}
    weights = user_resamples(user, n_resamples, seed) if resamples is None else resamples
    boot = None if weights is None else (weights @ np.stack(list(values.values()), axis=1)) / weights.sum(1, keepdims=True)
    for i, name in enumerate(values):
        low_high = np.quantile(boot[:, i], [0.025, 0.975]) if boot is not None else (float("nan"),) * 2
        row[f"{name}_low"], row[f"{name}_high"] = (float(x) for x in low_high)
    if bar is not None:
        gained, possible = 1.0 / ranks - 1.0 / bar[0], 1.0 / bar[1] - 1.0 / bar[0]
        row["share_over_popularity"] = float(gained.sum() / possible.sum()) if possible.sum() > 0 else float("nan")
        row["oracle_over_popularity"] = float(possible.mean())  # the personal signal there is to learn
        share_bounds, gap_bounds, over_bounds = (float("nan"),) * 2, (float("nan"),) * 2, (float("nan"),) * 2
        if weights is not None:
            gap_bounds = np.quantile((weights @ possible) / weights.sum(1), [0.025, 0.975])
            over_bounds = np.quantile((weights @ gained) / weights.sum(1), [0.025, 0.975])
            if possible.sum() > 0:
                with np.errstate(invalid="ignore", divide="ignore"):
                    share_bounds = np.nanquantile((weights @ gained) / (weights @ possible), [0.025, 0.975])
        row["share_over_popularity_low"], row["share_over_popularity_high"] = (float(x) for x in share_bounds)
        row["oracle_over_popularity_low"], row["oracle_over_popularity_high"] = (float(x) for x in gap_bounds)
        row["mrr_over_popularity"] = float(gained.mean())
        row["mrr_over_popularity_low"], row["mrr_over_popularity_high"] = (float(x) for x in over_bounds)
    _, inverse = np.unique(query, return_inverse=True)
    for k in RECALL_AT:
        row[f"recall@{k}"] = float((np.bincount(inverse, weights=ranks <= k) / np.bincount(inverse)).mean())
    return row


def held_out_pairs(edges: Graph, rel: int, max_edges: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (lhs, rhs) pairs of one relation; all of them unless max_edges asks for a seeded sample."""
    mask = edges.rel == rel
    pairs = np.unique(np.stack([edges.lhs[mask], edges.rhs[mask]], axis=1), axis=0)
    if max_edges is not None and pairs.shape[0] > max_edges:
        pick = np.random.default_rng([seed, 0xE7A1, rel]).choice(pairs.shape[0], max_edges, replace=False)
        pairs = pairs[np.sort(pick)]
    return pairs[:, 0], pairs[:, 1]


def _relation_pairs(graph: Graph, rel: int) -> tuple[np.ndarray, np.ndarray]:
    mask = graph.rel == rel
    return graph.lhs[mask], graph.rhs[mask]


def evaluate_scorers(scorers, splits: dict[str, Graph], held_out: str = "test", max_edges: int | None = None,
                     n_resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0, progress=None,
                     baseline: str = "trained") -> list[dict]:
    """One row per (relation, direction, scorer, ranking, pair set). When a scorer is named
    `baseline`, every row also compares its scorer with it on the same pairs (`mrr_vs_baseline`:
    the difference of MRRs, with a paired bootstrap interval)."""
    edges, train = splits[held_out], splits["train"]
    every = Graph(edges.tables, edges.relations, *(np.concatenate([getattr(s, c) for s in splits.values()])
                                                  for c in ("lhs", "rel", "rhs", "time_chunk")), edges.source)
    rows = []
    for rel, relation in enumerate(edges.relations):
        pairs = held_out_pairs(edges, rel, max_edges, seed)
        if pairs[0].size == 0:
            continue
        sizes = (edges.tables[relation.lhs], edges.tables[relation.rhs])
        for direction in DIRECTIONS:
            q = _queries(pairs, _relation_pairs(every, rel), _relation_pairs(train, rel), direction, sizes)
            ranks = {}
            for scorer in scorers:
                ranks[scorer.name] = dict(zip(RANKINGS, rank_pairs(scorer, rel, q, direction)))
                if progress is not None:
                    progress.update(1)
            kept = {p: ~q.seen if p == "unseen" else np.ones(q.seen.size, bool) for p in PAIR_SETS}
            resamples = {p: user_resamples(q.user[keep], n_resamples, seed) for p, keep in kept.items() if keep.any()}
            for scorer in scorers:
                for ranking, pair_set in ((r, p) for r in RANKINGS for p in PAIR_SETS):
                    keep = kept[pair_set]
                    if not keep.any():
                        continue
                    base = ranks[baseline][ranking][keep] if baseline in ranks else None
                    bar = (tuple(ranks[b][ranking][keep] for b in ("popularity", "oracle"))
                           if {"popularity", "oracle"} <= set(ranks) else None)
                    rows.append({"relation": relation.name, "direction": direction, "scorer": scorer.name,
                                 "ranking": ranking, "pairs": pair_set, "n_pairs": int(keep.sum()),
                                 "n_users": int(np.unique(q.user[keep]).size), "candidates": q.n_candidates,
                                 "sample": "all" if max_edges is None else f"at most {max_edges}",
                                 "baseline": baseline if base is not None else "",
                                 **rank_metrics(ranks[scorer.name][ranking][keep], q.query[keep], q.user[keep],
                                                n_resamples, seed, base, resamples[pair_set], bar)})
    return rows


def evaluate_run(run_dir: str | Path, graph: str | Path | None = None, split: str = "test",
                 max_edges: int | None = None, n_resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0,
                 extra_runs: dict[str, str | Path] | None = None, progress: bool = False) -> pd.DataFrame:
    """Evaluate a run on its graph's held-out split; write `evaluation.csv` into the run folder.

    extra_runs: scorer name -> another run folder on the same graph (e.g. one with node biases),
    ranked beside the others."""
    if max_edges is not None and max_edges < 1:
        raise StudyError(f"--max-edges must be >= 1, got {max_edges}")
    if n_resamples < 0:
        raise StudyError(f"--resamples must be >= 0, got {n_resamples}")
    if n_resamples > MAX_RESAMPLES:  # the resample weights are held in memory, users x resamples
        raise StudyError(f"--resamples must be <= {MAX_RESAMPLES:,}, got {n_resamples:,}")
    run = load_trained(run_dir)
    identity = run.run["identity"]
    graph = graph or identity["graph"]
    splits = load_splits(str(graph), run.cfg, SplitSpec(**identity["split"]), identity.get("relation"))
    if split not in ("valid", "test"):
        raise StudyError(f"--split must be valid or test, got {split!r}")
    scorers = [random_scorer(run, seed), PopularityScorer(splits["train"]), PooledPopularityScorer(splits["train"]),
               trained_scorer(run)]
    for name, other in (extra_runs or {}).items():
        extra = load_trained(other)
        if extra.run["identity"]["graph"] != identity["graph"] or extra.run["identity"]["split"] != identity["split"]:
            raise StudyError(f"{other}: trained on another graph or split than {run_dir}; cannot rank beside it")
        scorers.append(trained_scorer(extra, name))
    if splits[split].world is not None:
        scorers.append(OracleScorer(World(splits[split].world), run.cfg.relations))
    bar = tqdm(total=len(run.cfg.relations) * len(DIRECTIONS) * len(scorers), desc="twhin-evaluate",
               unit="ranking", disable=not progress)
    rows = evaluate_scorers(scorers, splits, split, max_edges, n_resamples, seed, bar)
    bar.close()
    frame = pd.DataFrame(rows).assign(split=split, step=run.step)
    atomic_write(Path(run_dir) / RESULTS, lambda tmp: frame.to_csv(tmp, index=False))
    return frame


def format_table(frame: pd.DataFrame) -> str:
    """The filtered rankings of all held-out pairs as text (the CLI's summary)."""
    sub = frame[(frame["ranking"] == "filtered") & (frame["pairs"] == "all")]
    cols = ["relation", "direction", "scorer", "n_pairs", "mrr", "mrr_low", "mrr_high", "hits@10", "recall@10"]
    return sub[cols].to_string(index=False, float_format=lambda v: f"{v:.4f}")


__all__ = ["DIRECTIONS", "EmbeddingScorer", "OracleScorer", "PooledPopularityScorer", "PopularityScorer", "evaluate_run", "evaluate_scorers",
           "format_table", "held_out_pairs", "rank_metrics", "rank_pairs", "random_scorer", "trained_scorer",
           "translation_offsets"]

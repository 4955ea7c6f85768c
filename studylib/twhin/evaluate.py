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
`pooled_popularity`, the degree summed over relations; `neighbourhood`, Adamic–Adar over the
relation's training graph (`ranks.NeighbourhoodScorer`); and, on planted graphs, `oracle`, the
generator's own log-probability of the pair. The scorers and the ranks live in `ranks.py`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from studylib.data.world import World
from studylib.errors import StudyError
from studylib.stats import bootstrap_weights
from studylib.io import atomic_write
from studylib.twhin.graph import Graph
from studylib.twhin.splits import SplitSpec
from studylib.twhin.runs import TrainedRun, load_splits, load_trained
from studylib.twhin.ranks import (EmbeddingScorer, NeighbourhoodScorer, OracleScorer, PooledPopularityScorer, PopularityScorer, _queries, held_out_pairs, rank_pairs, relation_pairs)

HITS_AT = (1, 10, 50)
RECALL_AT = (10, 20, 50)
DIRECTIONS = ("rhs", "lhs")  # which side is ranked: rhs given lhs, lhs given rhs
RANKINGS = ("raw", "filtered")
PAIR_SETS = ("all", "unseen")
RESULTS = "evaluation.csv"
BOOTSTRAP_RESAMPLES = 500


# ---------------------------------------------------------------- scorers


# Every scorer of a link-prediction table, in the order tables and figures show them: the floor,
# the two popularity baselines, the neighbourhood heuristic, the trained embeddings (with and without node biases), the oracle.
SCORERS = ("random", "popularity", "pooled_popularity", "neighbourhood", "trained", "trained_node_bias", "oracle")
MAX_RESAMPLES = 100_000


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


def evaluate_scorers(scorers, splits: dict[str, Graph], held_out: str = "test", max_edges: int | None = None,
                     n_resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0, progress=None,
                     baseline: str = "trained") -> list[dict]:
    """One row per (relation, direction, scorer, ranking, pair set). When a scorer is named
    `baseline`, every row also compares its scorer with it on the same pairs (`mrr_vs_baseline`:
    the difference of MRRs, with a paired bootstrap interval)."""
    edges, train = splits[held_out], splits["train"]
    every = train.joined(*(g for name, g in splits.items() if name != "train"))  # every known pair, for filtering
    rows = []
    for rel, relation in enumerate(edges.relations):
        pairs = held_out_pairs(edges, rel, max_edges, seed)
        if pairs[0].size == 0:
            continue
        sizes = (edges.tables[relation.lhs], edges.tables[relation.rhs])
        for direction in DIRECTIONS:
            q = _queries(pairs, relation_pairs(every, rel), relation_pairs(train, rel), direction, sizes)
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
               NeighbourhoodScorer(splits["train"]), trained_scorer(run)]
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

"""Link prediction on held-out edges, per relation: MRR, Hits@1/10/50 and Recall@10/20/50.

For every held-out edge (lhs, rel, rhs) the true rhs is ranked against
- `sampled`: the same N random entities of the rhs type for all edges of a relation, and
- `all`: every entity of the rhs type (when the table has at most ALL_CANDIDATES_LIMIT rows).
Ranks are raw (other true edges among the candidates count as negatives) and ties count
half. Recall@k follows the TwHIN paper: per lhs entity, the share of its held-out rhs found
in its top k among all candidates, averaged over lhs entities.

Scorers: the trained embeddings; random embeddings of the same shape (the floor); and on
planted graphs the oracle, the generator's own log-intensity from the world's latents.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from studylib.data.world import World
from studylib.errors import StudyError
from studylib.io import atomic_write
from studylib.twhin.graph import Graph, SplitSpec, planted_log_intensity
from studylib.twhin.train import TrainedRun, load_splits, load_trained

ALL_CANDIDATES_LIMIT = 2_000_000
SCORE_CELLS = 4_000_000  # score-matrix cells per chunk (memory bound)
HITS_AT = (1, 10, 50)
RECALL_AT = (10, 20, 50)
RESULTS = "evaluation.csv"


class EmbeddingScorer:
    """<e_lhs, e_rhs + t_rel> from tables (numpy)."""

    def __init__(self, name: str, tables: dict[str, np.ndarray], translations: np.ndarray, relations):
        self.name, self.tables, self.translations, self.relations = name, tables, translations, relations

    def matrix(self, rel: int, lhs: np.ndarray, rhs: np.ndarray) -> np.ndarray:
        r = self.relations[rel]
        return self.tables[r.lhs][lhs] @ (self.tables[r.rhs][rhs] + self.translations[rel]).T

    def pairs(self, rel: int, lhs: np.ndarray, rhs: np.ndarray) -> np.ndarray:
        r = self.relations[rel]
        return (self.tables[r.lhs][lhs] * (self.tables[r.rhs][rhs] + self.translations[rel])).sum(1)


class OracleScorer:
    """The planted graph's true log-intensity (best possible ranking)."""

    name = "oracle"

    def __init__(self, world: World, relations):
        self.world, self.relations = world, relations

    def matrix(self, rel: int, lhs: np.ndarray, rhs: np.ndarray) -> np.ndarray:
        return planted_log_intensity(self.world, self.relations[rel].name, lhs, rhs)

    def pairs(self, rel: int, lhs: np.ndarray, rhs: np.ndarray) -> np.ndarray:
        return planted_log_intensity(self.world, self.relations[rel].name, lhs, rhs, pairwise=True)


def random_scorer(run: TrainedRun, seed: int = 0) -> EmbeddingScorer:
    rng = np.random.default_rng([seed, 0x2A4D])
    tables = {name: rng.standard_normal(t.shape).astype(np.float32) for name, t in run.tables.items()}
    return EmbeddingScorer("random", tables, np.zeros_like(run.translations), run.cfg.relations)


def _ranks(positive: np.ndarray, candidates: np.ndarray, includes_positive: bool) -> np.ndarray:
    """1-based rank of each positive among its row of candidate scores; ties count half."""
    above = (candidates > positive[:, None]).sum(1)
    ties = (candidates == positive[:, None]).sum(1) - (1 if includes_positive else 0)
    return 1.0 + above + 0.5 * np.maximum(ties, 0)


def _edge_ranks(scorer, rel: int, lhs: np.ndarray, rhs: np.ndarray, candidates: np.ndarray,
                includes_positive: bool) -> np.ndarray:
    positive = scorer.pairs(rel, lhs, rhs) if not includes_positive else None
    rows = max(1, SCORE_CELLS // max(1, candidates.size))
    out = []
    for start in range(0, lhs.size, rows):
        part = slice(start, start + rows)
        scores = scorer.matrix(rel, lhs[part], candidates)
        pos = scores[np.arange(scores.shape[0]), rhs[part]] if includes_positive else positive[part]
        out.append(_ranks(pos, scores, includes_positive))
    return np.concatenate(out) if out else np.zeros(0)


def _metrics(ranks: np.ndarray, lhs: np.ndarray | None) -> dict:
    row = {"mrr": float(np.mean(1.0 / ranks))}
    row.update({f"hits@{k}": float(np.mean(ranks <= k)) for k in HITS_AT})
    for k in RECALL_AT:
        if lhs is None:
            row[f"recall@{k}"] = float("nan")
            continue
        users, inverse = np.unique(lhs, return_inverse=True)
        per_user = np.bincount(inverse, weights=(ranks <= k)) / np.bincount(inverse)
        row[f"recall@{k}"] = float(per_user.mean()) if users.size else float("nan")
    return row


def held_out_edges(edges: Graph, rel: int, max_edges: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (lhs, rhs) pairs of one relation, at most max_edges (a seeded sample)."""
    mask = edges.rel == rel
    pairs = np.unique(np.stack([edges.lhs[mask], edges.rhs[mask]], axis=1), axis=0)
    if pairs.shape[0] > max_edges:
        pairs = pairs[np.sort(np.random.default_rng([seed, 0xE7A1, rel]).choice(pairs.shape[0], max_edges, replace=False))]
    return pairs[:, 0], pairs[:, 1]


def evaluate_scorers(scorers, edges: Graph, tables: dict[str, int], max_edges: int = 2000,
                     sampled_negatives: int = 1000, seed: int = 0) -> list[dict]:
    """One row per (relation, scorer, candidate set)."""
    rows = []
    for rel, relation in enumerate(edges.relations):
        lhs, rhs = held_out_edges(edges, rel, max_edges, seed)
        if lhs.size == 0:
            continue
        n_rhs = tables[relation.rhs]
        sampled = np.random.default_rng([seed, 0x5A3E, rel]).integers(0, n_rhs, sampled_negatives)
        for scorer in scorers:
            base = {"relation": relation.name, "scorer": scorer.name, "edges": int(lhs.size)}
            ranks = _edge_ranks(scorer, rel, lhs, rhs, sampled, includes_positive=False)
            rows.append({**base, "candidates": f"sampled_{sampled_negatives}", **_metrics(ranks, None)})
            if n_rhs <= ALL_CANDIDATES_LIMIT:
                ranks = _edge_ranks(scorer, rel, lhs, rhs, np.arange(n_rhs), includes_positive=True)
                rows.append({**base, "candidates": f"all_{n_rhs}", **_metrics(ranks, lhs)})
    return rows


def evaluate_run(run_dir: str | Path, graph: str | Path | None = None, split: str = "test", max_edges: int = 2000,
                 sampled_negatives: int = 1000, seed: int = 0) -> list[dict]:
    """Evaluate a run on its graph's held-out split; write `evaluation.csv` into the run folder."""
    if max_edges < 1:
        raise StudyError(f"--max-edges must be >= 1, got {max_edges}")
    if sampled_negatives < 1:
        raise StudyError(f"--negatives must be >= 1, got {sampled_negatives}")
    run = load_trained(run_dir)
    identity = run.run["identity"]
    graph = graph or identity["graph"]
    splits = load_splits(str(graph), run.cfg, SplitSpec(**identity["split"]), identity.get("relation"))
    if split not in splits:
        raise StudyError(f"--split must be valid or test, got {split!r}")
    edges = splits[split]
    scorers = [EmbeddingScorer("trained", run.tables, run.translations, run.cfg.relations), random_scorer(run, seed)]
    if edges.world is not None:
        scorers.append(OracleScorer(World(edges.world), run.cfg.relations))
    rows = evaluate_scorers(scorers, edges, {t: n for t, n in edges.tables.items()}, max_edges, sampled_negatives, seed)
    for row in rows:
        row["split"] = split
        row["step"] = run.step
    write_csv(Path(run_dir) / RESULTS, rows)
    return rows


def write_csv(path: Path, rows: list[dict]) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["relation"])
            writer.writeheader()
            writer.writerows(rows)

    atomic_write(path, write)


def format_table(rows: list[dict]) -> str:
    cols = ["mrr", "hits@1", "hits@10", "hits@50", "recall@10", "recall@50"]
    lines = [f"{'relation':11s} {'candidates':14s} {'scorer':8s} {'edges':>6s} " + " ".join(f"{c:>9s}" for c in cols)]
    for r in rows:
        lines.append(f"{r['relation']:11s} {r['candidates']:14s} {r['scorer']:8s} {r['edges']:6d} "
                     + " ".join(f"{r[c]:9.4f}" for c in cols))
    return "\n".join(lines)


__all__ = ["EmbeddingScorer", "OracleScorer", "evaluate_run", "evaluate_scorers", "format_table", "random_scorer"]

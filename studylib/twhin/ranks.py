"""Ranking held-out pairs of a TwHIN graph: the scorers (embeddings, popularity, a neighbourhood
heuristic, the planted oracle) and each pair's rank among all candidates, raw and filtered.

Below both the training loop (which ranks validation pairs to stop early) and the evaluation (which
adds metrics, intervals and tables), so neither imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sparse

from studylib.data.world import World
from studylib.twhin.graph import Graph
from studylib.twhin.planted import planted_log_intensity

SCORE_CELLS = 4_000_000  # score-matrix cells per chunk (memory bound)


# ---------------------------------------------------------------- scorers


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


class NeighbourhoodScorer:
    """Adamic–Adar over one relation's training graph, the degree heuristic link-prediction benchmarks
    (OGB) set beside embeddings: a candidate scores by the paths lhs → x' → u' → candidate through the
    lhs's own training targets x' and their other sources u', each path weighted 1 / log(1 + deg u')
    (a rare co-engager says more than a prolific one). Paths back through the query itself are not
    counted, and popularity breaks the ties among candidates no path reaches."""

    name = "neighbourhood"
    TIE_BREAK = 1e-6  # popularity's weight: below any one path's (>= 1 / log(1 + degrees) > 1e-3)

    def __init__(self, train: Graph):
        self.parts = {}
        for rel, relation in enumerate(train.relations):
            mask = train.rel == rel
            shape = (train.tables[relation.lhs], train.tables[relation.rhs])
            adjacency = sparse.csr_matrix((np.ones(int(mask.sum())), (train.lhs[mask], train.rhs[mask])), shape=shape)
            adjacency.data[:] = 1.0  # a pair drawn twice is one neighbour
            degree = np.asarray(adjacency.sum(1)).ravel()
            weight = np.where(degree > 0, 1.0 / np.log1p(np.maximum(degree, 1)), 0.0)
            popularity = np.log1p(np.asarray(adjacency.sum(0)).ravel())
            self.parts[rel] = (adjacency, (sparse.diags(weight) @ adjacency).tocsc(), degree * weight, popularity)

    def matrix(self, rel: int, lhs: np.ndarray, rhs: np.ndarray) -> np.ndarray:
        adjacency, weighted, self_paths, popularity = self.parts[rel]
        rows = adjacency[lhs]
        paths = ((rows @ adjacency.T) @ weighted[:, rhs]).toarray()
        paths -= self_paths[lhs][:, None] * rows[:, rhs].toarray()  # lhs -> x' -> lhs -> x: the query itself
        return paths + self.TIE_BREAK * popularity[rhs][None, :]


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


def held_out_pairs(edges: Graph, rel: int, max_edges: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (lhs, rhs) pairs of one relation; all of them unless max_edges asks for a seeded sample."""
    mask = edges.rel == rel
    pairs = np.unique(np.stack([edges.lhs[mask], edges.rhs[mask]], axis=1), axis=0)
    if max_edges is not None and pairs.shape[0] > max_edges:
        pick = np.random.default_rng([seed, 0xE7A1, rel]).choice(pairs.shape[0], max_edges, replace=False)
        pairs = pairs[np.sort(pick)]
    return pairs[:, 0], pairs[:, 1]


def relation_pairs(graph: Graph, rel: int) -> tuple[np.ndarray, np.ndarray]:
    mask = graph.rel == rel
    return graph.lhs[mask], graph.rhs[mask]


def unseen_queries(held_out: Graph, train: Graph, known: Graph, rel: int, max_pairs: int | None, seed: int) -> Queries:
    """The held-out pairs of a relation that do not occur in training, as queries for their right-hand
    side (filtered by the targets `known` holds: pass only the splits a caller may look at)."""
    relation = held_out.relations[rel]
    sizes = (held_out.tables[relation.lhs], held_out.tables[relation.rhs])
    q = _queries(held_out_pairs(held_out, rel, max_pairs, seed), relation_pairs(known, rel),
                 relation_pairs(train, rel), "rhs", sizes)
    keep = ~q.seen
    return Queries(q.query[keep], q.target[keep], q.user[keep], q.seen[keep], q.n_candidates, q.known_query,
                   q.known_target)


def filtered_mrr(scorer, rel: int, q: Queries) -> float:
    """Mean reciprocal filtered rank of the queries' targets (0 for no queries)."""
    if q.query.size == 0:
        return 0.0
    return float(np.mean(1.0 / rank_pairs(scorer, rel, q, "rhs")[1]))

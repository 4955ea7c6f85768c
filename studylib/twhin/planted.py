"""The planted TwHIN graph: edges drawn from the ranker data's own world.

The generator draws from the same planted world as the ranker data (same `WorldParams` ->
same users, tweets, authors), so trained embeddings can be compared with the truth:
- fav / reply / retweet: (user, tweet) pairs with probability proportional to
  activity(user) · popularity(tweet) · P(label | user, tweet), the world's true probability
  of is_favorited / is_replied / is_retweeted;
- magic_recs: popularity-driven (activity · popularity) times exp(signal · √pair_variance · affinity);
- follow: user -> author with activity(user) · size(author) · exp(signal · √pair_variance · affinity).
The world's `pair_variance` thus sets the personal part of every relation: through the labels'
u⊙t block for fav / reply / retweet, through the user–tweet and user–author affinity (each of
variance 1) for magic_recs and follow.
`planted_log_intensity` gives each relation's exact log sampling weight (up to a per-lhs
constant): the oracle scorer of the evaluation.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from studylib.data.world import World, WorldParams
from studylib.errors import StudyError
from studylib.io import LOCK_FILE, atomic_write, exclusive, file_sha256, read_json, remove_stale_temporaries, write_json
from studylib.schema import LABEL_PREFIX
from studylib.twhin.graph import EDGE_SCHEMA, EDGES_FILE, MANIFEST, Relation

# The planted graph's relations, in id order, and the label each engagement relation follows.
PLANTED_RELATIONS = (
    Relation("fav", "user", "tweet"),
    Relation("reply", "user", "tweet"),
    Relation("retweet", "user", "tweet"),
    Relation("magic_recs", "user", "tweet"),
    Relation("follow", "user", "author"),
)
ENGAGEMENT_LABEL = {
    "fav": LABEL_PREFIX + "is_favorited",
    "reply": LABEL_PREFIX + "is_replied",
    "retweet": LABEL_PREFIX + "is_retweeted",
}
ENGAGEMENT_RELATIONS = ("fav", "reply", "retweet", "magic_recs")
# Relations that are states, not events: a user follows an author, likes or retweets a tweet, and is
# notified of a tweet (magic_recs sends one push per tweet) at most once. A reply is an event: a
# user may reply to one tweet again. The generator draws each state pair at most once in the graph.
ONCE_PER_PAIR = frozenset({"fav", "retweet", "magic_recs", "follow"})
MAX_REDRAWS = 50  # rounds of drawing a relation's missing edges again after repeats are removed
# Share of the edges per relation (roughly the order of magnitude of real engagement counts).
RELATION_SHARE = {"fav": 0.4, "reply": 0.08, "retweet": 0.12, "magic_recs": 0.2, "follow": 0.2}
PROPOSALS_PER_EDGE = 8  # sampling-importance-resampling pool size


@dataclass(frozen=True)
class GraphParams:
    edges: int = 200_000
    seed: int = 0
    time_chunks: int = 10
    chunk_edges: int = 50_000  # edges per row group; each chunk has its own random stream
    world: WorldParams = field(default_factory=WorldParams)

    def validate(self) -> None:
        for name in ("edges", "time_chunks", "chunk_edges"):
            if getattr(self, name) < 1:
                raise StudyError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        self.world.validate()

    @property
    def n_chunks(self) -> int:
        return math.ceil(self.edges / self.chunk_edges)


def planted_tables(world: WorldParams) -> dict[str, int]:
    return {"user": world.n_users, "tweet": world.n_tweets, "author": world.n_authors}


def author_size(world: World) -> np.ndarray:
    """Follow propensity of each author: tweets written + 1 (heavy-tailed)."""
    return (np.bincount(world.author_of_tweet, minlength=world.params.n_authors) + 1).astype(np.float64)


def planted_log_intensity(world: World, relation: str, lhs: np.ndarray, rhs: np.ndarray,
                          pairwise: bool = False) -> np.ndarray:
    """Log of the generator's sampling weight of rhs given lhs (exact up to a per-lhs constant).

    pairwise=False: matrix [len(lhs), len(rhs)]; pairwise=True: one value per (lhs[i], rhs[i]).
    Engagement relations go through the world's public `true_probabilities` (pairs) or
    `root_probability_grid` (a matrix).
    """
    k = world.params.latent_dim
    s = world.params.signal * math.sqrt(world.params.pair_variance)  # the affinity's std in the log intensity
    u = world.user_latent[lhs].astype(np.float64)
    # Pairs: row-wise dot products; a grid: the same terms as matmuls, per-rhs terms broadcast.
    dot = (lambda x: (u * x).sum(1)) if pairwise else (lambda x: u @ x.T)
    per_rhs = (lambda v: v) if pairwise else (lambda v: v[None, :])
    if relation == "follow":
        return s * dot(world.author_latent[rhs].astype(np.float64)) / np.sqrt(k) + per_rhs(np.log(author_size(world)[rhs]))
    log_pop = per_rhs(np.log(world.tweet_popularity[rhs]))
    if relation == "magic_recs":
        return s * dot(world.tweet_latent[rhs].astype(np.float64)) / np.sqrt(k) + log_pop
    label = ENGAGEMENT_LABEL.get(relation)
    if label is None:
        raise StudyError(f"relation {relation!r} has no planted model")
    prob = world.true_probabilities(lhs, rhs)[label] if pairwise else world.root_probability_grid(label, lhs, rhs)
    return np.log(np.maximum(prob.astype(np.float64), 1e-30)) + log_pop


def _draw_relation(rng: np.random.Generator, world: World, relation: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """n (lhs, rhs) pairs by sampling-importance-resampling from the planted intensity."""
    pool = max(1, n * PROPOSALS_PER_EDGE)
    users = rng.choice(world.params.n_users, pool, p=world.user_activity)
    if relation == "follow":
        size = author_size(world)
        rhs = rng.choice(world.params.n_authors, pool, p=size / size.sum())
        log_w = planted_log_intensity(world, relation, users, rhs, pairwise=True) - np.log(size[rhs])
    else:
        rhs = rng.choice(world.params.n_tweets, pool, p=world.tweet_popularity)
        log_w = planted_log_intensity(world, relation, users, rhs, pairwise=True) - np.log(world.tweet_popularity[rhs])
    w = np.exp(log_w - log_w.max())
    pick = rng.choice(pool, n, p=w / w.sum())
    return users[pick], rhs[pick]


def _draw_new_pairs(rng: np.random.Generator, world: World, relation: str, n: int,
                    seen: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n pairs of a once-per-pair relation that are not in `seen` (sorted pair keys) nor repeated
    among themselves: drawn from the planted intensity, repeats dropped and drawn again.

    Keeping the first draw of each pair makes a pair's presence a monotone function of its
    intensity, so `planted_log_intensity` still orders every lhs's candidates as well as any
    scorer can (the oracle stays exact as a ranking). Returns (lhs, rhs, the new sorted keys)."""
    n_rhs = world.params.n_authors if relation == "follow" else world.params.n_tweets
    lhs, rhs = np.empty(0, np.int64), np.empty(0, np.int64)
    for _ in range(MAX_REDRAWS):
        missing = n - lhs.size
        if missing == 0:
            break
        left, right = _draw_relation(rng, world, relation, missing)
        lhs, rhs = np.concatenate([lhs, left]), np.concatenate([rhs, right])
        keys = lhs * n_rhs + rhs
        _, first = np.unique(keys, return_index=True)
        keep = np.zeros(keys.size, bool)
        keep[first] = True
        keep &= ~np.isin(keys, seen, assume_unique=False)
        lhs, rhs = lhs[keep], rhs[keep]
    if lhs.size < n:
        raise StudyError(f"planted graph: cannot draw {n:,} distinct {relation} pairs (each may occur once); "
                         f"ask for fewer --edges or a larger world")
    return lhs, rhs, np.union1d(seen, lhs * n_rhs + rhs)


def _chunk_table(params: GraphParams, world: World, chunk: int, seen: dict[str, np.ndarray]) -> pa.Table:
    """One chunk of edges; `seen` (relation -> sorted pair keys drawn so far) is updated in place for
    the relations in ONCE_PER_PAIR."""
    rng = np.random.default_rng([params.seed, 0x7A1F, chunk])
    n = min(params.chunk_edges, params.edges - chunk * params.chunk_edges)
    names = [r.name for r in PLANTED_RELATIONS]
    counts = rng.multinomial(n, [RELATION_SHARE[name] for name in names])
    lhs, rel, rhs = [], [], []
    for rel_id, (name, count) in enumerate(zip(names, counts)):
        if name in ONCE_PER_PAIR:
            left, right, seen[name] = _draw_new_pairs(rng, world, name, int(count), seen[name])
        else:
            left, right = _draw_relation(rng, world, name, int(count))
        lhs.append(left)
        rhs.append(right)
        rel.append(np.full(count, rel_id, dtype=np.int32))
    order = rng.permutation(n)  # mix relations within the chunk
    columns = {
        "lhs": np.concatenate(lhs).astype(np.int64)[order],
        "rel": np.concatenate(rel)[order],
        "rhs": np.concatenate(rhs).astype(np.int64)[order],
        "time_chunk": rng.integers(0, params.time_chunks, n, dtype=np.int32),
    }
    return pa.Table.from_pydict(columns, schema=EDGE_SCHEMA)


def generate_graph(params: GraphParams, out_dir: str | Path, progress: bool = True) -> dict:
    """Write `edges.parquet` + `manifest.json` to out_dir; return the manifest."""
    params.validate()
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise StudyError(f"{out}: is a file, not a folder; choose another --out")
    settings = asdict(params)
    finished = _finished_graph(out, settings)
    if finished is not None:
        return finished
    with exclusive(out, "graph"):
        finished = _finished_graph(out, settings)
        if finished is not None:
            return finished
        remove_stale_temporaries(out)
        world = World(params.world)
        per_relation = np.zeros(len(PLANTED_RELATIONS), dtype=np.int64)
        bar = tqdm(total=params.edges, unit="edge", unit_scale=True, desc="twhin-generate", disable=not progress)

        def write(tmp: Path) -> None:
            seen = {name: np.empty(0, np.int64) for name in ONCE_PER_PAIR}
            with pq.ParquetWriter(tmp, EDGE_SCHEMA, compression="zstd", write_statistics=False) as writer:
                for chunk in range(params.n_chunks):
                    table = _chunk_table(params, world, chunk, seen)
                    writer.write_table(table, row_group_size=table.num_rows)
                    per_relation[:] += np.bincount(table.column("rel").to_numpy(), minlength=len(PLANTED_RELATIONS))
                    bar.update(table.num_rows)

        atomic_write(out / EDGES_FILE, write)  # the edge file under its final name is always complete
        bar.close()
        manifest = {
            "format": "studylib-twhin-edges-v2",  # v2: state relations drawn at most once per pair
            "params": settings,
            "tables": planted_tables(params.world),
            "relations": [dict(asdict(r), id=i, edges=int(per_relation[i])) for i, r in enumerate(PLANTED_RELATIONS)],
            "columns": {f.name: str(f.type) for f in EDGE_SCHEMA},
            "rows": params.edges,
            "files": [{"file": EDGES_FILE, "rows": params.edges, "sha256": file_sha256(out / EDGES_FILE)}],
        }
        write_json(out / MANIFEST, manifest, sort_keys=True)
        return manifest


def _finished_graph(out: Path, settings: dict) -> dict | None:
    if (out / MANIFEST).exists():
        manifest = read_json(out / MANIFEST)
        if manifest.get("params") != settings:
            raise StudyError(f"{out}: holds a different graph (manifest.json); choose another --out or delete it")
        if not (out / EDGES_FILE).exists():
            raise StudyError(f"{out / EDGES_FILE}: listed in manifest.json but missing; delete {out} and generate again")
        return manifest
    if out.exists() and any(p.name != LOCK_FILE and not p.name.endswith(".tmp") for p in out.iterdir()):
        raise StudyError(f"{out}: is not empty and holds no graph; choose another --out")
    return None


__all__ = ["ENGAGEMENT_LABEL", "ENGAGEMENT_RELATIONS", "GraphParams", "ONCE_PER_PAIR", "PLANTED_RELATIONS", "generate_graph",
           "planted_log_intensity", "planted_tables"]

"""TwHIN edge lists: a planted graph generator, readers for the published formats, splits.

An edge is (lhs, rel, rhs, time_chunk). Entity ids are dense per entity type ("table"):
users 0..n_users-1, tweets 0..n_tweets-1, authors 0..n_authors-1; each relation names the
table of its lhs and of its rhs.

The generator draws from the same planted world as the ranker data (same `WorldParams` ->
same users, tweets, authors), so trained embeddings can be compared with the truth:
- fav / reply / retweet: (user, tweet) pairs with probability proportional to
  activity(user) · popularity(tweet) · P(label | user, tweet), the world's true probability
  of is_favorited / is_replied / is_retweeted;
- magic_recs: popularity-driven (activity · popularity) with half the latent affinity;
- follow: user -> author with activity(user) · size(author) · exp(signal · affinity).
`planted_log_intensity` gives each relation's exact log sampling weight (up to a per-lhs
constant): the oracle scorer of the evaluation.
"""

from __future__ import annotations

import math
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from studylib.data.world import World, WorldParams
from studylib.errors import StudyError
from studylib.io import (LOCK_FILE, atomic_write, exclusive, file_sha256, read_json, remove_stale_temporaries,
                         write_json)
from studylib.schema import LABEL_PREFIX

MANIFEST = "manifest.json"
EDGES_FILE = "edges.parquet"
EDGE_COLUMNS = ("lhs", "rel", "rhs", "time_chunk")
EDGE_SCHEMA = pa.schema([("lhs", pa.int64()), ("rel", pa.int32()), ("rhs", pa.int64()), ("time_chunk", pa.int32())])


@dataclass(frozen=True)
class Relation:
    name: str
    lhs: str  # table (entity type) of the left-hand side
    rhs: str


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
# Share of the edges per relation (roughly the order of magnitude of real engagement counts).
RELATION_SHARE = {"fav": 0.4, "reply": 0.08, "retweet": 0.12, "magic_recs": 0.2, "follow": 0.2}
PROPOSALS_PER_EDGE = 8  # sampling-importance-resampling pool size

# Public Hugging Face sample graphs: schema -> (relation, lhs table, rhs table, id columns).
HF_SCHEMAS = {
    "TwitterFollowGraph": (Relation("follow", "user", "author"), "user_index", "author_index"),
    "TwitterFaveGraph": (Relation("fav", "user", "tweet"), "user_index", "tweet_index"),
}


@dataclass
class Graph:
    """Edges in memory (numpy int64 columns) with the tables and relations they refer to."""

    tables: dict[str, int]  # table name -> number of entities
    relations: tuple[Relation, ...]  # relation id = position
    lhs: np.ndarray
    rel: np.ndarray
    rhs: np.ndarray
    time_chunk: np.ndarray
    source: str
    world: WorldParams | None = None  # set for planted graphs: enables the oracle

    def __len__(self) -> int:
        return int(self.lhs.size)

    def subset(self, mask_or_index: np.ndarray) -> "Graph":
        pick = lambda a: a[mask_or_index]  # noqa: E731
        return Graph(self.tables, self.relations, pick(self.lhs), pick(self.rel), pick(self.rhs),
                     pick(self.time_chunk), self.source, self.world)


# ---------------------------------------------------------------- generator


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
    Engagement relations go through the world's public `true_probabilities`.
    """
    if not pairwise:
        grid_l, grid_r = np.repeat(lhs, len(rhs)), np.tile(rhs, len(lhs))
        return planted_log_intensity(world, relation, grid_l, grid_r, pairwise=True).reshape(len(lhs), len(rhs))
    k, s = world.params.latent_dim, world.params.signal
    u = world.user_latent[lhs].astype(np.float64)
    if relation == "follow":
        a = world.author_latent[rhs].astype(np.float64)
        return s * (u * a).sum(1) / np.sqrt(k) + np.log(author_size(world)[rhs])
    log_pop = np.log(world.tweet_popularity[rhs])
    if relation == "magic_recs":
        t = world.tweet_latent[rhs].astype(np.float64)
        return 0.5 * s * (u * t).sum(1) / np.sqrt(k) + log_pop
    label = ENGAGEMENT_LABEL.get(relation)
    if label is None:
        raise StudyError(f"relation {relation!r} has no planted model")
    prob = world.true_probabilities(lhs, rhs)[label].astype(np.float64)
    return np.log(np.maximum(prob, 1e-30)) + log_pop


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


def _chunk_table(params: GraphParams, world: World, chunk: int) -> pa.Table:
    rng = np.random.default_rng([params.seed, 0x7A1F, chunk])
    n = min(params.chunk_edges, params.edges - chunk * params.chunk_edges)
    names = [r.name for r in PLANTED_RELATIONS]
    counts = rng.multinomial(n, [RELATION_SHARE[name] for name in names])
    lhs, rel, rhs = [], [], []
    for rel_id, (name, count) in enumerate(zip(names, counts)):
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
            with pq.ParquetWriter(tmp, EDGE_SCHEMA, compression="zstd", write_statistics=False) as writer:
                for chunk in range(params.n_chunks):
                    table = _chunk_table(params, world, chunk)
                    writer.write_table(table, row_group_size=table.num_rows)
                    per_relation[:] += np.bincount(table.column("rel").to_numpy(), minlength=len(PLANTED_RELATIONS))
                    bar.update(table.num_rows)

        atomic_write(out / EDGES_FILE, write)  # the edge file under its final name is always complete
        bar.close()
        manifest = {
            "format": "studylib-twhin-edges-v1",
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


# ---------------------------------------------------------------- readers


def _read_table(path: Path) -> pa.Table:
    """A Parquet, CSV or zipped CSV file as an Arrow table."""
    name = path.name.lower()
    try:
        if name.endswith(".parquet"):
            return pq.read_table(path)
        if name.endswith(".zip"):
            with zipfile.ZipFile(path) as archive:
                members = [m for m in archive.namelist() if m.lower().endswith(".csv")]
                if len(members) != 1:
                    raise StudyError(f"{path}: a zipped graph must hold exactly one .csv file, found {len(members)}")
                with archive.open(members[0]) as handle:
                    return pacsv.read_csv(handle)
        if name.endswith(".csv") or name.endswith(".csv.gz"):
            return pacsv.read_csv(path)
    except (OSError, pa.ArrowInvalid, zipfile.BadZipFile) as exc:
        raise StudyError(f"{path}: cannot read edges ({str(exc).splitlines()[0]})") from None
    raise StudyError(f"{path}: unknown edge file type (use .parquet, .csv, .csv.gz or .zip)")


def _int_column(table: pa.Table, column: str, path: Path) -> np.ndarray:
    if column not in table.column_names:
        raise StudyError(f"{path}: missing column {column} (found: {', '.join(table.column_names) or 'none'})")
    values = table.column(column)
    if not pa.types.is_integer(values.type):
        raise StudyError(f"{path}: column {column} must hold integers, got {values.type}")
    if values.null_count:
        raise StudyError(f"{path}: column {column} has {values.null_count} empty value(s)")
    return values.to_numpy().astype(np.int64, copy=False)


def validate_edges(graph: Graph, path: Path) -> None:
    """Refuse unknown relation ids and node ids outside their table, naming file and column."""
    n_rel = len(graph.relations)
    bad = (graph.rel < 0) | (graph.rel >= n_rel)
    if bad.any():
        raise StudyError(f"{path}: column rel has unknown relation id {int(graph.rel[bad][0])} "
                         f"(known: 0..{n_rel - 1} = {', '.join(r.name for r in graph.relations)})")
    for side in ("lhs", "rhs"):
        ids = getattr(graph, side)
        sizes = np.array([graph.tables[getattr(r, side)] for r in graph.relations], dtype=np.int64)
        limit = sizes[graph.rel]
        bad = (ids < 0) | (ids >= limit)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            relation = graph.relations[graph.rel[i]]
            table = getattr(relation, side)
            raise StudyError(f"{path}: column {side} has id {int(ids[i])} out of range for table {table} "
                             f"(0..{graph.tables[table] - 1}) in relation {relation.name} (row {i})")


def read_planted(directory: Path) -> Graph:
    """A graph written by `generate_graph` (or any folder with our manifest + edges)."""
    manifest_path = directory / MANIFEST
    if not manifest_path.exists():
        raise StudyError(f"{manifest_path}: missing (not a graph made by `studylib twhin-generate`)")
    manifest = read_json(manifest_path)
    for key in ("tables", "relations", "files"):
        if key not in manifest:
            raise StudyError(f"{manifest_path}: missing key {key}")
    try:
        relations = tuple(Relation(str(r["name"]), str(r["lhs"]), str(r["rhs"]))
                          for r in sorted(manifest["relations"], key=lambda r: r["id"]))
        tables = {str(name): int(n) for name, n in manifest["tables"].items()}
        files = [(str(entry["file"]), entry.get("sha256")) for entry in manifest["files"]]
    except (KeyError, TypeError, ValueError, AttributeError):
        raise StudyError(f"{manifest_path}: malformed tables, relations or files entries") from None
    for r in relations:
        for table in (r.lhs, r.rhs):
            if table not in tables:
                raise StudyError(f"{manifest_path}: relation {r.name} uses unknown table {table}")
    parts = []
    for name, sha256 in files:
        path = directory / name
        if sha256 is not None and path.exists() and file_sha256(path) != sha256:
            raise StudyError(f"{path}: contents differ from {MANIFEST} (sha256 mismatch); regenerate the graph")
        table = _read_table(path)
        parts.append({c: _int_column(table, c, path) for c in EDGE_COLUMNS})
        graph = Graph(tables, relations, parts[-1]["lhs"], parts[-1]["rel"], parts[-1]["rhs"],
                      parts[-1]["time_chunk"], str(path))
        validate_edges(graph, path)
    columns = {c: np.concatenate([p[c] for p in parts]) for c in EDGE_COLUMNS}
    world = None
    if "params" in manifest and "world" in manifest["params"]:
        world = WorldParams(**manifest["params"]["world"])
    return Graph(tables, relations, columns["lhs"], columns["rel"], columns["rhs"], columns["time_chunk"],
                 str(directory), world)


def read_hf(path: Path, relation_name: str | None = None, tables: dict[str, int] | None = None) -> Graph:
    """A TwitterFollowGraph / TwitterFaveGraph file (CSV, zipped CSV or Parquet) as one relation.

    relation_name renames the relation (e.g. map the fave graph onto `fav`); table sizes
    default to max id + 1.
    """
    table = _read_table(path)
    names = set(table.column_names)
    schema = next((s for s, (_, left, right) in HF_SCHEMAS.items() if {left, right} <= names), None)
    if schema is None:
        column = "author_index or tweet_index" if "user_index" in names else "user_index"
        raise StudyError(f"{path}: missing column {column} (found: {', '.join(table.column_names) or 'none'}); "
                         "expected TwitterFollowGraph or TwitterFaveGraph columns")
    relation, left, right = HF_SCHEMAS[schema]
    if relation_name:
        relation = Relation(relation_name, relation.lhs, relation.rhs)
    lhs, rhs = _int_column(table, left, path), _int_column(table, right, path)
    time_chunk = _int_column(table, "time_chunk", path)
    sizes = dict(tables or {})
    for side, ids, column in ((relation.lhs, lhs, left), (relation.rhs, rhs, right)):
        if (ids < 0).any():
            raise StudyError(f"{path}: column {column} has negative id {int(ids[ids < 0][0])}")
        sizes.setdefault(side, int(ids.max()) + 1 if ids.size else 0)
    graph = Graph(sizes, (relation,), lhs, np.zeros(lhs.size, dtype=np.int64), rhs, time_chunk, str(path))
    try:
        validate_edges(graph, path)
    except StudyError as exc:  # name the file's own column, not our internal one
        raise StudyError(str(exc).replace("column lhs", f"column {left}").replace("column rhs", f"column {right}")) from None
    return graph


def load_graph(path: str | Path, relation_name: str | None = None) -> Graph:
    """Our graph folder (manifest.json), or one file in a Hugging Face sample-graph schema."""
    path = Path(path)
    if path.is_dir():
        if not (path / MANIFEST).exists():
            raise StudyError(f"{path}: no {MANIFEST}; give a graph folder from twhin-generate or an edge file")
        return read_planted(path)
    if not path.exists():
        raise StudyError(f"{path}: no such graph file or folder")
    return read_hf(path, relation_name)


# ---------------------------------------------------------------- splits


@dataclass(frozen=True)
class SplitSpec:
    kind: str = "time"  # "time": last chunks held out; "random": a seeded shuffle
    valid_fraction: float = 0.1
    test_fraction: float = 0.1
    seed: int = 0

    def validate(self) -> None:
        if self.kind not in ("time", "random"):
            raise StudyError(f"--split must be time or random, got {self.kind!r}")
        if not (0 <= self.valid_fraction < 1 and 0 <= self.test_fraction < 1
                and self.valid_fraction + self.test_fraction < 1):
            raise StudyError("split fractions must be in [0, 1) and sum to less than 1")


def split_graph(graph: Graph, spec: SplitSpec = SplitSpec()) -> dict[str, Graph]:
    """{"train", "valid", "test"} by time chunk (held-out = the latest chunks) or at random."""
    spec.validate()
    if spec.kind == "time":
        chunks = np.unique(graph.time_chunk)
        n_test = int(round(spec.test_fraction * chunks.size))
        n_valid = int(round(spec.valid_fraction * chunks.size))
        test_from = chunks[chunks.size - n_test] if n_test else np.inf
        valid_from = chunks[chunks.size - n_test - n_valid] if n_valid else test_from
        part = np.where(graph.time_chunk >= test_from, 2, np.where(graph.time_chunk >= valid_from, 1, 0))
    else:
        u = np.random.default_rng([spec.seed, 0x5B117]).random(len(graph))
        part = np.where(u < spec.test_fraction, 2, np.where(u < spec.test_fraction + spec.valid_fraction, 1, 0))
    splits = {name: graph.subset(part == i) for i, name in enumerate(("train", "valid", "test"))}
    for name, want in (("train", 1.0), ("valid", spec.valid_fraction), ("test", spec.test_fraction)):
        if want > 0 and len(splits[name]) == 0:
            chunks = np.unique(graph.time_chunk)
            raise StudyError(f"{graph.source}: the {name} split is empty (column time_chunk has "
                             f"{chunks.size} distinct value(s); split {spec.kind})")
    return splits


__all__ = ["EDGE_COLUMNS", "ENGAGEMENT_RELATIONS", "Graph", "GraphParams", "HF_SCHEMAS", "PLANTED_RELATIONS",
           "Relation", "SplitSpec", "generate_graph", "load_graph", "planted_log_intensity", "split_graph"]

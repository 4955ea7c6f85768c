"""TwHIN edge lists: the in-memory graph, its file format, and readers.

An edge is (lhs, rel, rhs, time_chunk). Entity ids are dense per entity type ("table"):
users 0..n_users-1, tweets 0..n_tweets-1, authors 0..n_authors-1; each relation names the
table of its lhs and of its rhs. Two inputs are read: a graph folder (`edges.parquet` and
`manifest.json`, as `studylib.twhin.planted` writes) and the public Hugging Face sample
graphs (one Parquet, CSV or zipped CSV file). Splits: `studylib.twhin.splits`.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from studylib.data.world import WorldParams
from studylib.errors import StudyError
from studylib.io import file_sha256, read_json
from studylib.data.layout import MANIFEST

EDGES_FILE = "edges.parquet"
EDGE_COLUMNS = ("lhs", "rel", "rhs", "time_chunk")
EDGE_SCHEMA = pa.schema([("lhs", pa.int64()), ("rel", pa.int32()), ("rhs", pa.int64()), ("time_chunk", pa.int32())])


@dataclass(frozen=True)
class Relation:
    name: str
    lhs: str  # table (entity type) of the left-hand side
    rhs: str


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

    def joined(self, *others: "Graph") -> "Graph":
        """This graph's edges followed by the others' (splits of one graph: same tables and relations)."""
        column = lambda name: np.concatenate([getattr(g, name) for g in (self, *others)])  # noqa: E731
        return Graph(self.tables, self.relations, column("lhs"), column("rel"), column("rhs"), column("time_chunk"),
                     self.source, self.world)

    def log_degrees(self, rel: int) -> tuple[np.ndarray, np.ndarray]:
        """log(1 + degree) of every entity of the relation's lhs and rhs tables in relation `rel`:
        its popularity there (the popularity baseline's scores, the node biases' start)."""
        relation, in_relation = self.relations[rel], self.rel == rel
        return tuple(np.log1p(np.bincount(ids[in_relation], minlength=self.tables[table]))
                     for ids, table in ((self.lhs, relation.lhs), (self.rhs, relation.rhs)))


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
    parts, seen = [], set()
    for name, sha256 in files:
        if Path(name).name != name or name in ("", ".", ".."):
            raise StudyError(f"{manifest_path}: files entry {name!r} must be a file name inside the graph folder")
        if name in seen:
            raise StudyError(f"{manifest_path}: lists {name} a second time (its edges would train twice)")
        if not isinstance(sha256, str):
            raise StudyError(f"{manifest_path}: files entry {name} has no sha256 (every edge file is checked)")
        seen.add(name)
        path = directory / name
        if path.exists() and file_sha256(path) != sha256:
            raise StudyError(f"{path}: contents differ from {MANIFEST} (sha256 mismatch); regenerate the graph")
        table = _read_table(path)
        parts.append({c: _int_column(table, c, path) for c in EDGE_COLUMNS})
        graph = Graph(tables, relations, parts[-1]["lhs"], parts[-1]["rel"], parts[-1]["rhs"],
                      parts[-1]["time_chunk"], str(path))
        validate_edges(graph, path)
    columns = {c: np.concatenate([p[c] for p in parts]) for c in EDGE_COLUMNS}
    world = None
    if "params" in manifest and "world" in manifest["params"]:
        world = WorldParams.from_record(manifest["params"]["world"], str(manifest_path))
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


__all__ = ["EDGE_COLUMNS", "EDGE_SCHEMA", "EDGES_FILE", "Graph", "HF_SCHEMAS", "MANIFEST", "Relation", "load_graph"]

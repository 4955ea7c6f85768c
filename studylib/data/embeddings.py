"""The ranker-embedding file: the Heavy Ranker's three 200-wide embedding inputs as one Parquet file.

Columns `table` (string: user_embedding, user_eng_embedding or author_embedding), `id` (int64,
0..rows-1 per table: the world's user or author index) and `embedding` (fixed-size list of
float32). `studylib twhin-export` writes it from a trained TwHIN run; the generator and
embedding-view data sets read it. The format belongs to the data side so that data never
imports the TwHIN package.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from studylib.errors import StudyError
from studylib.io import atomic_write
from studylib.schema import GROUP_WIDTHS

RANKER_WIDTH = 200
RANKER_TABLES = ("user_embedding", "user_eng_embedding", "author_embedding")


# The embedding ablation's variants (chapter 2b): the ranker's three embedding features taken from
# seeded noise, from the planted world's noisy projections of the latents, or from trained TwHIN.
EMBEDDING_VARIANTS = ("none", "random", "planted", "trained")  # the ablation's arms, floor first

def write_ranker_embeddings(tables: dict[str, np.ndarray], out_path: str | Path, meta: dict | None = None) -> None:
    """Write the three ranker tables ({name: float32 [rows, W]}) as one Parquet file, atomically:
    columns `table`, `id` (0..rows-1 per table) and `embedding` (fixed-size list of W floats)."""
    values = [tables[name] for name in RANKER_TABLES]
    width = values[0].shape[1]
    table = pa.table({
        "table": pa.array(np.concatenate([np.full(v.shape[0], name, dtype=object)
                                          for name, v in zip(RANKER_TABLES, values)]), type=pa.string()),
        "id": pa.array(np.concatenate([np.arange(v.shape[0], dtype=np.int64) for v in values])),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(np.concatenate(values).reshape(-1)), width),
    })
    if meta is not None:
        table = table.replace_schema_metadata({"studylib.twhin": json.dumps(meta)})
    atomic_write(out_path, lambda tmp: pq.write_table(table, tmp))


def load_ranker_embeddings(path: str | Path) -> dict[str, np.ndarray]:
    """{"user_embedding": [n_users, W], "user_eng_embedding": [n_users, W], "author_embedding": [n_authors, W]}."""
    path = Path(path)
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise StudyError(f"{path}: cannot read embeddings ({str(exc).splitlines()[0]})") from None
    for column in ("table", "id", "embedding"):
        if column not in table.column_names:
            raise StudyError(f"{path}: missing column {column}")
        if table.column(column).null_count:  # a null would shift rows against their ids
            raise StudyError(f"{path}: column {column} has {table.column(column).null_count} null value(s)")
    if not pa.types.is_string(table.column("table").type) and not pa.types.is_large_string(table.column("table").type):
        raise StudyError(f"{path}: column table must hold strings, got {table.column('table').type}")
    if not pa.types.is_integer(table.column("id").type):
        raise StudyError(f"{path}: column id must be an integer, got {table.column('id').type}")
    emb = table.column("embedding")
    width = emb.type.list_size if pa.types.is_fixed_size_list(emb.type) else None
    if width is None or not pa.types.is_floating(emb.type.value_type):
        raise StudyError(f"{path}: column embedding must be a fixed-size list of floats")
    flat = emb.combine_chunks().flatten()
    if flat.null_count:
        raise StudyError(f"{path}: column embedding has {flat.null_count} null value(s) inside its vectors")
    names = table.column("table").to_numpy(zero_copy_only=False)
    ids = table.column("id").to_numpy()
    values = flat.to_numpy().astype(np.float32).reshape(-1, width)
    out = {}
    for name in RANKER_TABLES:
        rows = np.flatnonzero(names == name)
        if rows.size == 0:
            raise StudyError(f"{path}: column table has no rows for {name}")
        order = rows[np.argsort(ids[rows], kind="stable")]
        if not np.array_equal(ids[order], np.arange(order.size)):
            raise StudyError(f"{path}: column id of {name} must be 0..{order.size - 1} without gaps")
        out[name] = np.ascontiguousarray(values[order])
    return out


def load_world_embeddings(path: str | Path, n_users: int, n_authors: int) -> dict[str, np.ndarray]:
    """The three tables of `path`, checked to cover exactly this world's users and authors at the
    ranker's widths and to hold only finite values."""
    tables = load_ranker_embeddings(path)
    expected = {"user_embedding": n_users, "user_eng_embedding": n_users, "author_embedding": n_authors}
    for group, rows in expected.items():
        shape = tables[group].shape
        if shape != (rows, GROUP_WIDTHS[group]):
            raise StudyError(f"{path}: {group} has shape {shape}, this world needs ({rows}, "
                             f"{GROUP_WIDTHS[group]}) (same --users/--authors/--world-seed as the TwHIN graph?)")
        if not np.isfinite(tables[group]).all():
            raise StudyError(f"{path}: {group} holds NaN or Inf values")
    return {group: np.ascontiguousarray(tables[group], dtype=np.float32) for group in expected}


__all__ = ["RANKER_TABLES", "RANKER_WIDTH", "load_ranker_embeddings", "load_world_embeddings", "write_ranker_embeddings"]

"""Export trained TwHIN embeddings as the Heavy Ranker's three embedding inputs.

The ranker reads three 200-wide tables (FACTS.md): user_embedding (TwHIN user follow),
user_eng_embedding (TwHIN user engagement) and author_embedding (TwHIN author follow).
One model trains all relations here, so each is defined from the translation score
<e_u, e_x + t_r> = <[e_u, <e_u, t_r>], [e_x, 1]>, which makes the vectors relation-specific
and keeps scores exact under a plain dot product:
- user_embedding[u]     = [e_u, <e_u, t_follow>]                (follow relation, user side)
- author_embedding[a]   = [e_a, 1]                              (follow relation, author side)
- user_eng_embedding[u] = [e_u, mean over engagement r of <e_u, t_r>]  (fav, reply, retweet, magic_recs)
so <user_embedding[u], author_embedding[a]> is exactly the model's follow score.
These (dim+1)-wide vectors are mapped to the requested width (200 by default) with one
fixed, seeded random orthonormal map Q (QᵀQ = I), which preserves every dot product.

File: Parquet with columns `table` (string), `id` (int64), `embedding` (float32 list of the
width); schema metadata records the run, trained dim and projection.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from studylib.errors import StudyError
from studylib.twhin.graph import ENGAGEMENT_RELATIONS
from studylib.twhin.train import load_trained

RANKER_WIDTH = 200
RANKER_TABLES = ("user_embedding", "user_eng_embedding", "author_embedding")
PROJECTION_SEED = 0x7A11


def orthonormal_map(src_dim: int, dst_dim: int, seed: int = PROJECTION_SEED) -> np.ndarray:
    """[src_dim, dst_dim] with orthonormal rows: x @ Q keeps dot products."""
    if src_dim > dst_dim:
        raise StudyError(f"--dim {dst_dim} is smaller than the exported vectors ({src_dim}: trained dim + 1)")
    gaussian = np.random.default_rng(seed).standard_normal((dst_dim, src_dim))
    q, r = np.linalg.qr(gaussian)  # q: [dst, src] with orthonormal columns
    q *= np.sign(np.diag(r))  # unique (sign-fixed) factorization: same map on every machine
    return q.T.astype(np.float64)


def ranker_vectors(tables: dict[str, np.ndarray], translations: np.ndarray, relations) -> dict[str, np.ndarray]:
    """The three relation-specific tables of width trained dim + 1 (see module docstring)."""
    names = [r.name for r in relations]
    if "follow" not in names or "author" not in tables or "user" not in tables:
        raise StudyError("the run has no follow relation (user->author): the ranker's user_embedding and "
                         "author_embedding come from it; train with a config that has it (twhin_study.yaml)")
    engagement = [i for i, n in enumerate(names) if n in ENGAGEMENT_RELATIONS]
    if not engagement:
        raise StudyError(f"the run has no engagement relation ({', '.join(ENGAGEMENT_RELATIONS)}) for user_eng_embedding")
    user = tables["user"].astype(np.float64)
    follow_bias = user @ translations[names.index("follow")]
    eng_bias = (user @ translations[engagement].T).mean(1)
    author = tables["author"].astype(np.float64)
    return {
        "user_embedding": np.concatenate([user, follow_bias[:, None]], axis=1),
        "user_eng_embedding": np.concatenate([user, eng_bias[:, None]], axis=1),
        "author_embedding": np.concatenate([author, np.ones((author.shape[0], 1))], axis=1),
    }


def export_embeddings(run_dir: str | Path, out_path: str | Path, dim: int = RANKER_WIDTH) -> dict:
    run = load_trained(run_dir)
    vectors = ranker_vectors(run.tables, run.translations, run.cfg.relations)
    src = next(iter(vectors.values())).shape[1]
    q = orthonormal_map(src, dim)
    meta = {"run": str(Path(run_dir).resolve()), "step": run.step, "trained_dim": run.cfg.dim, "width": dim,
            "projection": f"[e, bias] (dim {src}) times a seeded random orthonormal map (seed {PROJECTION_SEED})"}
    projected = {name: (vectors[name] @ q).astype(np.float32) for name in RANKER_TABLES}
    write_ranker_embeddings(projected, out_path, meta)
    return {"rows": {name: int(v.shape[0]) for name, v in projected.items()}, **meta}


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
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, out_path)


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
    names = table.column("table").to_numpy(zero_copy_only=False)
    ids = table.column("id").to_numpy()
    emb = table.column("embedding")
    width = emb.type.list_size if pa.types.is_fixed_size_list(emb.type) else None
    if width is None:
        raise StudyError(f"{path}: column embedding must be a fixed-size list of floats")
    values = emb.combine_chunks().flatten().to_numpy().astype(np.float32).reshape(-1, width)
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


__all__ = ["RANKER_TABLES", "RANKER_WIDTH", "export_embeddings", "load_ranker_embeddings", "orthonormal_map",
           "ranker_vectors", "write_ranker_embeddings"]

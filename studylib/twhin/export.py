"""Export trained TwHIN embeddings as the Heavy Ranker's three embedding inputs.

The ranker reads three 200-wide tables (FACTS.md): user_embedding (TwHIN user follow),
user_eng_embedding (TwHIN user engagement) and author_embedding (TwHIN author follow).
One model trains all relations here, so each is defined from the translation score
<e_u, e_x + t_r> = <[e_u, <e_u, t_r>], [e_x, 1]>, which makes the vectors relation-specific
and keeps scores exact under a plain dot product:
- user_embedding[u]     = [e_u, <e_u, t_follow>]                (follow relation, user side)
- author_embedding[a]   = [e_a, 1]                              (follow relation, author side)
- user_eng_embedding[u] = [e_u, mean over engagement r of <e_u, t_r>]  (fav, reply, retweet, magic_recs)
so <user_embedding[u], author_embedding[a]> is exactly the model's follow score. With node biases
(model.node_bias, one per entity and relation) each vector gets one more column: user
[.., <e_u, t_follow> + b_follow,u, 1] and author [e_a, 1, b_follow,a], so the dot product still
equals the follow score, biases included; user_eng_embedding adds the user's bias averaged over
the engagement relations, as it averages their translations.
These (dim+1)-wide vectors are mapped to the requested width (200 by default) with one
fixed, seeded random orthonormal map Q (QᵀQ = I), which preserves every dot product.

File: Parquet with columns `table` (string), `id` (int64), `embedding` (float32 list of the
width); schema metadata records the run, trained dim and projection.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from studylib.data.embeddings import RANKER_TABLES, RANKER_WIDTH, write_ranker_embeddings
from studylib.errors import StudyError
from studylib.twhin.planted import ENGAGEMENT_RELATIONS
from studylib.twhin.runs import load_trained

PROJECTION_SEED = 0x7A11


def orthonormal_map(src_dim: int, dst_dim: int, seed: int = PROJECTION_SEED) -> np.ndarray:
    """[src_dim, dst_dim] with orthonormal rows: x @ Q keeps dot products."""
    if src_dim > dst_dim:
        raise StudyError(f"--dim {dst_dim} is smaller than the exported vectors ({src_dim}: trained dim + 1)")
    gaussian = np.random.default_rng(seed).standard_normal((dst_dim, src_dim))
    q, r = np.linalg.qr(gaussian)  # q: [dst, src] with orthonormal columns
    q *= np.sign(np.diag(r))  # unique (sign-fixed) factorization: same map on every machine
    return q.T.astype(np.float64)


def ranker_vectors(tables: dict[str, np.ndarray], translations: np.ndarray, relations,
                   biases: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
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
    ones = lambda n: np.ones((n, 1))  # noqa: E731
    if biases is None:
        return {
            "user_embedding": np.concatenate([user, follow_bias[:, None]], axis=1),
            "user_eng_embedding": np.concatenate([user, eng_bias[:, None]], axis=1),
            "author_embedding": np.concatenate([author, ones(author.shape[0])], axis=1),
        }
    follow = names.index("follow")
    b_user, b_author = biases["user"].astype(np.float64), biases["author"].astype(np.float64)[follow, :, None]
    b_follow, b_eng = b_user[follow, :, None], b_user[engagement].mean(0)[:, None]
    return {
        "user_embedding": np.concatenate([user, follow_bias[:, None] + b_follow, ones(user.shape[0])], axis=1),
        "user_eng_embedding": np.concatenate([user, eng_bias[:, None] + b_eng, 0 * ones(user.shape[0])], axis=1),
        "author_embedding": np.concatenate([author, ones(author.shape[0]), b_author], axis=1),
    }


def export_embeddings(run_dir: str | Path, out_path: str | Path, dim: int = RANKER_WIDTH) -> dict:
    if Path(out_path).suffix != ".parquet":
        raise StudyError(f"--out {out_path}: the embeddings file must end in .parquet")
    if Path(out_path).is_dir():
        raise StudyError(f"--out {out_path}: is a folder; give a .parquet file path")
    run = load_trained(run_dir)
    vectors = ranker_vectors(run.tables, run.translations, run.cfg.relations, run.biases)
    src = next(iter(vectors.values())).shape[1]
    q = orthonormal_map(src, dim)
    meta = {"run": str(Path(run_dir).resolve()), "step": run.step, "trained_dim": run.cfg.dim, "width": dim,
            "projection": f"[e, bias] (dim {src}) times a seeded random orthonormal map (seed {PROJECTION_SEED})"}
    projected = {name: (vectors[name] @ q).astype(np.float32) for name in RANKER_TABLES}
    write_ranker_embeddings(projected, out_path, meta)
    return {"rows": {name: int(v.shape[0]) for name, v in projected.items()}, **meta}


__all__ = ["export_embeddings", "orthonormal_map", "ranker_vectors"]

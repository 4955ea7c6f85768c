"""Generate Heavy Ranker data sets as Parquet shards with a manifest.

Scenarios (all grouped per request: one user, `candidates` tweets):
- `random`: features as in `planted`, but every label is drawn at its base rate whatever
  the features say (the null baseline: nothing to learn; the original's random data done honestly).
- `planted`: labels drawn from the planted world's true probabilities (stored beside them).
- `cohorts`: `planted`, with users split into cohorts whose negative (or positive)
  engagements are suppressed; the cohort is stored per row and the truth stays exact.

User history: as in production, a user's own past behaviour reaches the model. The last
`HISTORY_WIDTH` model-visible continuous columns are count-like "history" features of the
user's propensity for the positive and for the negative root labels (half the block each):
log-count = level + the user's latent propensity for the group + log(the cohort's factor for
the group) + noise. So a negatives-suppressed user shows few past negative engagements and a
model trained on data with cohorts can learn it; where there are no cohorts every user carries
factor 1.

Generation is vectorized per chunk of requests; chunk i draws from its own random stream
(seed, i), so the same parameters give byte-identical shards, and a killed run resumes
where it stopped.
"""

from __future__ import annotations

import contextlib
import math
import os
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from studylib.data.embeddings import load_world_embeddings
from studylib.data.layout import (
    MANIFEST,
    SCHEMA_VERSION,
    arrow_schema,
    stored_names,
)
from studylib.data.world import (COHORTS, NEGATIVE, NESTED, POSITIVE, ROOTS, SUPPRESSION, World, WorldParams,
                                 cohort_scale)
from studylib.errors import StudyError
from studylib.io import (LOCK_FILE, atomic_write, exclusive, file_sha256, read_json, remove_stale_temporaries,
                         write_json)
from studylib.schema import COHORT_COLUMN, GROUP_WIDTHS, LABELS, REQUEST_COLUMN, true_prob_column

SCENARIOS = ("random", "planted", "cohorts")
PROGRESS = ".progress.json"
HISTORY_WIDTH = 8  # user-history columns at the end of the model-visible continuous block
HISTORY_GROUPS = (POSITIVE, NEGATIVE)  # first half: positive propensity, second half: negative


@dataclass(frozen=True)
class GeneratorParams:
    scenario: str = "planted"
    examples: int = 20000
    seed: int = 0
    candidates: int = 50  # candidates per request (ranking is per user request)
    chunk_requests: int = 40  # requests per row group
    shard_chunks: int = 8  # row groups per shard
    downsample_task: str | None = None  # one label downsampled as in the original's eval sets
    pos_downsampling_rate: float = 1.0
    neg_downsampling_rate: float = 1.0
    compression: str = "lz4"  # with dictionary pages: 2.8x smaller than plain, as fast to write, ~15 % slower to read
    embeddings: str | None = None  # Parquet from `studylib twhin-export`: trained TwHIN tables as features
    world: WorldParams = WorldParams()

    def validate(self) -> None:
        if self.scenario not in SCENARIOS:
            raise StudyError(f"--scenario must be one of {', '.join(SCENARIOS)}, got {self.scenario!r}")
        for name in ("examples", "candidates", "chunk_requests", "shard_chunks"):
            if getattr(self, name) < 1:
                raise StudyError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.downsample_task is not None and self.downsample_task not in LABELS:
            raise StudyError(f"--downsample: unknown label {self.downsample_task!r}")
        for name in ("pos_downsampling_rate", "neg_downsampling_rate"):
            if not 0 < getattr(self, name) <= 1:
                raise StudyError(f"--downsample: {name} must be in (0, 1], got {getattr(self, name)}")
        if self.compression not in ("none", "zstd", "lz4", "snappy"):
            raise StudyError(f"--compression must be none, zstd, lz4 or snappy, got {self.compression!r}")
        self.world.validate()

    @property
    def n_requests(self) -> int:
        return math.ceil(self.examples / self.candidates)

    @property
    def n_chunks(self) -> int:
        return math.ceil(self.n_requests / self.chunk_requests)

    @property
    def n_shards(self) -> int:
        return math.ceil(self.n_chunks / self.shard_chunks)

    def as_dict(self) -> dict:
        return asdict(self)


class FeatureModel:
    """How the observed features arise from the latents (fixed per world seed).

    embeddings: optional trained TwHIN tables (group -> [entities, 200]) that replace the
    planted world's noisy projections as the three embedding features.
    """

    def __init__(self, world: World, embeddings: dict[str, np.ndarray] | None = None):
        k = world.params.latent_dim
        rng = np.random.default_rng([world.params.seed, 0xFEA7])
        n_cont, n_bin, emb = GROUP_WIDTHS["continuous"], GROUP_WIDTHS["binary"], GROUP_WIDTHS["user_embedding"]
        # Continuous features are count-like: floor(exp(level + loading·z + noise)). About 90%
        # load on the latents (user, author, tweet); the rest is noise, as in real logs.
        informative = rng.random(n_cont) < 0.9
        loading = rng.standard_normal((3 * k, n_cont)) * (rng.random((3 * k, n_cont)) < 0.15)
        loading *= informative / np.sqrt(np.maximum(1.0, (loading ** 2).sum(0)))
        self.cont_loading = loading.astype(np.float32)
        self.cont_level = rng.uniform(2.0, 6.0, n_cont).astype(np.float32)
        self.cont_noise = np.float32(0.3)
        self.cont_signed = rng.random(n_cont) < 0.1  # deltas and ratios may be negative
        self.bin_loading = (rng.standard_normal((3 * k, n_bin)) / np.sqrt(3 * k)).astype(np.float32)
        self.bin_threshold = rng.uniform(-1.5, 1.5, n_bin).astype(np.float32)
        # TwHIN-like entity embeddings: fixed per entity, noisy linear maps of the latents.
        def table(latent):
            proj = rng.standard_normal((k, emb)) / np.sqrt(k)
            return (latent @ proj + 0.3 * rng.standard_normal((latent.shape[0], emb))).astype(np.float32)
        # User history: per root-label group, the user's part of the group's label weights
        # (the `u` block of the interaction features) gives the user's latent propensity.
        user_block = slice(k, 2 * k)
        direction = np.stack([np.mean([world.label_weights[label][user_block] for label in group], axis=0)
                              for group in HISTORY_GROUPS], axis=1)  # [k, groups]
        self.history_propensity = (world.user_latent @ direction * world.params.signal).astype(np.float32)
        self.history_level = rng.uniform(2.0, 4.0, HISTORY_WIDTH).astype(np.float32)
        self.user_follow = table(world.user_latent)
        self.user_engagement = table(world.user_latent)
        self.author_follow = table(world.author_latent)
        if embeddings is not None:
            self.user_follow = embeddings["user_embedding"]
            self.user_engagement = embeddings["user_eng_embedding"]
            self.author_follow = embeddings["author_embedding"]


def generate(params: GeneratorParams, out_dir: str | Path, progress: bool = True, workers: int | None = None) -> dict:
    """Write the data set to `out_dir` (resuming an interrupted run); return its manifest.

    workers: threads writing shards in parallel (default: one per core for data sets of
    20,000 examples or more); the bytes written do not depend on it.
    """
    params.validate()
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise StudyError(f"{out}: is a file, not a folder; choose another --out")
    manifest = _finished(out, params.as_dict())
    if manifest is not None:
        return manifest
    trained = None  # read and checked before the folder exists: a bad file leaves nothing behind
    if params.embeddings is not None:
        trained = load_world_embeddings(params.embeddings, params.world.n_users, params.world.n_authors)
    with exclusive(out, "data set"):
        manifest = _finished(out, params.as_dict())  # another process may have finished it meanwhile
        if manifest is not None:
            return manifest
        return _generate(params, out, progress, workers, trained)


def _finished(out: Path, settings: dict) -> dict | None:
    """The manifest of a complete data set of these settings in `out`; None when there is none yet."""
    manifest_path = out / MANIFEST
    if not manifest_path.exists():
        if out.exists() and any(p.name not in (PROGRESS, LOCK_FILE) and not p.name.endswith(".tmp") for p in out.iterdir()):
            if not (out / PROGRESS).exists():
                raise StudyError(f"{out}: is not empty and holds no data set; choose another --out")
        return None
    manifest = read_json(manifest_path)
    if manifest.get("params") != settings:
        raise StudyError(f"{out}: holds a different data set (manifest.json); choose another --out or delete it")
    for shard in manifest.get("shards", []):
        if not (out / str(shard.get("file"))).exists():
            raise StudyError(f"{out / str(shard.get('file'))}: shard listed in manifest.json is missing; "
                             f"delete {out} and generate again")
    return manifest


def _generate(params: GeneratorParams, out: Path, progress: bool, workers: int | None,
              trained: dict[str, np.ndarray] | None) -> dict:
    settings = params.as_dict()
    manifest_path = out / MANIFEST
    remove_stale_temporaries(out)  # a killed writer's; we hold the folder's lock
    done = _load_progress(out, settings)
    world = World(params.world)
    features = FeatureModel(world, trained)
    bar = tqdm(total=params.n_requests * params.candidates, unit="ex", unit_scale=True,
               desc=f"generate {params.scenario}", disable=not progress)
    entries: dict[int, dict] = {}
    pending = []
    for shard in range(params.n_shards):
        name = _shard_name(shard)
        if name in done and (out / name).exists() and file_sha256(out / name) == done[name]["sha256"]:
            entries[shard] = done[name]  # finished by an earlier, interrupted run
            bar.update(done[name]["planned_rows"])
        else:
            pending.append(shard)
    # Shards are independent (each chunk has its own random stream), so they are written by
    # parallel threads (numpy and Parquet release the GIL); the bytes do not depend on how many.
    if workers is None:
        workers = (os.cpu_count() or 1) if params.examples >= 20000 else 1
    workers = min(len(pending), workers)
    with contextlib.ExitStack() as stack:
        if workers > 1:
            pool = stack.enter_context(ThreadPoolExecutor(workers))
            futures = [pool.submit(_write_shard, params, world, features, s, out) for s in pending]
            results = (f.result() for f in as_completed(futures))
        else:
            results = (_write_shard(params, world, features, shard, out) for shard in pending)
        for entry in results:  # record each finished shard at once, so a killed run resumes here
            entries[entry["shard"]] = entry
            done[entry["file"]] = entry
            write_json(out / PROGRESS, {"params": settings, "shards": done}, sort_keys=True)
            bar.update(entry["planned_rows"])
    bar.close()
    manifest = _manifest(params, world, [entries[i] for i in range(params.n_shards)])
    write_json(manifest_path, manifest, sort_keys=True)
    (out / PROGRESS).unlink(missing_ok=True)
    return manifest


def embedding_view(like: str | Path, embeddings: str | Path, out_dir: str | Path) -> dict:
    """A data set that is `like` with its three embedding features looked up from `embeddings`.

    Those features depend only on the example's user and author (TwHIN tables indexed by the
    world's ids), so the view stores no rows: its manifest names the base data set (relative
    path and manifest checksum) and the embedding file (relative path and checksum), and the
    reader swaps the three columns in as it reads. The rows, labels and other features are the
    base's, byte for byte; a materialised copy (`generate --embeddings`) would hold the same
    values at ~11 KB an example.
    """
    like, out, embeddings = Path(like), Path(out_dir), Path(embeddings)
    base_manifest_path = like / MANIFEST
    if not base_manifest_path.exists():
        raise StudyError(f"{like}: no data set here (manifest.json missing)")
    base = read_json(base_manifest_path)
    if "view_of" in base:
        raise StudyError(f"{like}: is itself an embedding view; make the view of its base data set")
    params = dict(base["params"], embeddings=str(embeddings))
    world = WorldParams.from_record(base["params"]["world"], str(base_manifest_path))
    load_world_embeddings(embeddings, world.n_users, world.n_authors)  # refuse a file that does not fit
    manifest = {k: v for k, v in base.items() if k != "shards"}
    manifest.update(
        params=params,
        view_of={"path": os.path.relpath(like.resolve(), out.resolve()), "manifest_sha256": file_sha256(base_manifest_path)},
        embeddings={"file": os.path.relpath(embeddings.resolve(), out.resolve()), "sha256": file_sha256(embeddings)},
    )
    if (out / MANIFEST).exists():
        if read_json(out / MANIFEST) == manifest:
            return manifest
        raise StudyError(f"{out}: holds a different data set (manifest.json); choose another --out or delete it")
    if out.exists() and any(out.iterdir()):
        raise StudyError(f"{out}: is not empty and holds no data set; choose another --out")
    write_json(out / MANIFEST, manifest, sort_keys=True)
    return manifest


def _shard_name(shard: int) -> str:
    return f"shard-{shard:05d}.parquet"


def _write_shard(params: GeneratorParams, world: World, features: "FeatureModel", shard: int, out: Path) -> dict:
    """Write one shard under a temporary name, then rename it: a final name means complete."""
    schema = arrow_schema(with_truth=True)
    name = _shard_name(shard)
    final = out / name
    chunks = range(shard * params.shard_chunks, min(params.n_chunks, (shard + 1) * params.shard_chunks))
    rows, positives, truth = 0, np.zeros(len(LABELS), dtype=np.int64), np.zeros(len(LABELS))

    def write(tmp: Path) -> None:
        nonlocal rows, positives, truth
        # Dictionary pages: the count-like continuous features take few distinct values.
        with pq.ParquetWriter(tmp, schema, compression=params.compression, write_statistics=False,
                              use_dictionary=True) as writer:
            for chunk in chunks:
                table = _chunk_table(params, world, features, chunk, schema)
                writer.write_table(table, row_group_size=max(1, table.num_rows))
                rows += table.num_rows
                positives += [pc.sum(table.column(label)).as_py() or 0 for label in LABELS]
                truth += [pc.sum(table.column(true_prob_column(label))).as_py() or 0.0 for label in LABELS]

    atomic_write(final, write)  # a final name means a complete shard
    return {"shard": shard, "file": name, "rows": rows, "sha256": file_sha256(final),
            "planned_rows": sum(_chunk_requests(params, c) for c in chunks) * params.candidates,
            "positives": dict(zip(LABELS, positives.tolist())), "true_prob_sum": dict(zip(LABELS, truth.tolist()))}


def _chunk_requests(params: GeneratorParams, chunk: int) -> int:
    return min(params.chunk_requests, params.n_requests - chunk * params.chunk_requests)


def _chunk_table(params: GeneratorParams, world: World, features: FeatureModel, chunk: int,
                 schema: pa.Schema) -> pa.Table:
    rng = np.random.default_rng([params.seed, 1, chunk])
    n_req = _chunk_requests(params, chunk)
    first_request = chunk * params.chunk_requests
    users = rng.choice(world.params.n_users, n_req, p=world.user_activity)
    user = np.repeat(users, params.candidates)
    tweet = rng.choice(world.params.n_tweets, n_req * params.candidates, p=world.tweet_popularity)
    request = np.repeat(np.arange(first_request, first_request + n_req, dtype=np.int64), params.candidates)
    author = world.author_of_tweet[tweet]
    n = user.size

    cohort = world.cohort_of_user[user] if params.scenario == "cohorts" else np.zeros(n, dtype=np.int8)
    scale = cohort_scale(cohort) if params.scenario == "cohorts" else None
    if params.scenario == "random":
        # Every label at its planted mean rate, whatever the features say.
        probs = {label: np.full(n, rate, dtype=np.float32) for label, rate in world.mean_rates().items()}
    else:
        probs = world.true_probabilities(user, tweet, cohort_scale=scale)
    labels = _draw_labels(rng, probs)

    # Observed features: noisy functions of the latents.
    z = np.concatenate([world.user_latent[user], world.author_latent[author], world.tweet_latent[tweet]], axis=1)
    log_value = z @ features.cont_loading
    log_value += features.cont_level
    # Uniform noise with the intended std: 4x cheaper to draw than Gaussian, and the model
    # sees it through log1p and BatchNorm either way.
    noise = rng.random(log_value.shape, dtype=np.float32)
    noise -= np.float32(0.5)
    noise *= features.cont_noise * np.float32(math.sqrt(12.0))
    log_value += noise
    continuous = np.floor(np.exp(log_value, out=log_value), out=log_value)
    continuous[:, features.cont_signed] *= np.where(rng.random((n, 1)) < 0.5, -1.0, 1.0).astype(np.float32)
    continuous[:, HISTORY_COLUMNS] = _user_history(features, user, cohort, rng)
    binary_logit = z @ features.bin_loading + rng.logistic(size=(n, features.bin_threshold.size)).astype(np.float32)
    binary = (binary_logit > features.bin_threshold).astype(np.int8)

    keep = _downsample_mask(params, rng, labels)
    columns = {
        "continuous": continuous,
        "binary": binary,
        "user_embedding": features.user_follow[user],
        "user_eng_embedding": features.user_engagement[user],
        "author_embedding": features.author_follow[author],
        "meta__user_id": user.astype(np.int64),
        "meta__author_id": author.astype(np.int64),
        "meta__tweet_id": tweet.astype(np.int64),
    }
    arrays = {}
    names = stored_names()
    if keep is not None:
        columns = {group: values[keep] for group, values in columns.items()}
        request, cohort = request[keep], cohort[keep]
        labels = {label: values[keep] for label, values in labels.items()}
        probs = {label: values[keep] for label, values in probs.items()}
    for group, values in columns.items():
        if values.ndim == 2:
            arrays[names[group]] = pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])
        else:
            arrays[names[group]] = pa.array(values)
    arrays[REQUEST_COLUMN] = pa.array(request)
    arrays[COHORT_COLUMN] = pa.DictionaryArray.from_arrays(pa.array(cohort), pa.array(COHORTS)).cast(pa.string())
    for label in LABELS:
        arrays[label] = pa.array(labels[label])
        arrays[true_prob_column(label)] = pa.array(probs[label])
    return pa.Table.from_pydict(arrays, schema=schema)


HISTORY_COLUMNS = slice(GROUP_WIDTHS["continuous"] - HISTORY_WIDTH, GROUP_WIDTHS["continuous"])


def _user_history(features: FeatureModel, user: np.ndarray, cohort: np.ndarray,
                  rng: np.random.Generator) -> np.ndarray:
    """[n, HISTORY_WIDTH] count-like features of each user's own propensity per root-label group,
    including the cohort's suppression (log factor), so the cohort is visible in the features."""
    per_group = HISTORY_WIDTH // len(HISTORY_GROUPS)
    log_factor = np.zeros((user.size, len(HISTORY_GROUPS)), dtype=np.float32)
    for name, (labels, factor) in SUPPRESSION.items():
        for g, group in enumerate(HISTORY_GROUPS):
            if labels == group:
                log_factor[cohort == COHORTS.index(name), g] = math.log(factor)
    log_count = np.repeat(features.history_propensity[user] + log_factor, per_group, axis=1)
    log_count += features.history_level + 0.3 * rng.standard_normal(log_count.shape, dtype=np.float32)
    return np.floor(np.exp(log_count))


def _draw_labels(rng: np.random.Generator, probs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Draw the 13 labels with nesting: a child happens only when a parent did."""
    n = next(iter(probs.values())).size
    uniform = rng.random((len(LABELS), n), dtype=np.float32)
    labels = {}
    for i, label in enumerate(LABELS):
        if label in ROOTS:
            labels[label] = (uniform[i] < probs[label]).astype(np.int8)
    for label, parents in NESTED.items():
        i = LABELS.index(label)
        parent_prob = 1.0 - np.prod([1.0 - probs[q] for q in parents], axis=0)
        parent_happened = np.any([labels[q] == 1 for q in parents], axis=0)
        # P(child | parent happened) = P(child) / P(parent), so the marginal is exact.
        conditional = np.divide(probs[label], parent_prob, out=np.zeros_like(probs[label]), where=parent_prob > 0)
        labels[label] = (parent_happened & (uniform[i] < conditional)).astype(np.int8)
    return labels


def _downsample_mask(params: GeneratorParams, rng: np.random.Generator, labels: dict) -> np.ndarray | None:
    """Rows kept by the downsampling of one label; None when nothing is downsampled."""
    n = next(iter(labels.values())).size
    if params.downsample_task is None:
        return None
    keep_prob = np.where(labels[params.downsample_task] == 1, params.pos_downsampling_rate,
                         params.neg_downsampling_rate)
    return rng.random(n) < keep_prob


def _manifest(params: GeneratorParams, world: World, shards: list[dict]) -> dict:
    rows = sum(s["rows"] for s in shards)
    positives = {label: sum(s["positives"][label] for s in shards) for label in LABELS}
    downsampling = {}
    if params.downsample_task is not None:
        downsampling[params.downsample_task] = {"pos_downsampling_rate": params.pos_downsampling_rate,
                                                "neg_downsampling_rate": params.neg_downsampling_rate}
    return {
        "schema_version": SCHEMA_VERSION,
        "scenario": params.scenario,
        "seed": params.seed,
        "params": params.as_dict(),
        "rows": rows,
        "requests": params.n_requests,
        "columns": {field.name: str(field.type) for field in arrow_schema(with_truth=True)},
        "feature_columns": stored_names(),
        "downsampling": downsampling,
        "embeddings": None if params.embeddings is None else {
            "file": params.embeddings, "sha256": file_sha256(params.embeddings)},
        "planted_rates": {label: sum(s["true_prob_sum"][label] for s in shards) / max(rows, 1) for label in LABELS},
        "realised_rates": {label: positives[label] / max(rows, 1) for label in LABELS},
        "world": world.describe(),
        "shards": [{k: s[k] for k in ("file", "rows", "sha256")} for s in shards],
    }


def _load_progress(out: Path, settings: dict) -> dict:
    path = out / PROGRESS
    if not path.exists():
        return {}
    progress = read_json(path)
    if progress.get("params") != settings:
        raise StudyError(f"{out}: an interrupted run with other parameters is here; delete it or choose another --out")
    return progress.get("shards", {})


def with_world(params: GeneratorParams, **world_changes) -> GeneratorParams:
    return replace(params, world=replace(params.world, **world_changes))


__all__ = ["GeneratorParams", "SCENARIOS", "embedding_view", "generate", "with_world"]

"""The ranker's steps of the study: its data sets, its training runs and its weights, each built
once and reused while its parameters match (`studylib.study.paths.generated`, `io.cached`)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import numpy as np

from studylib.data.layout import MANIFEST, stored_names
from studylib.errors import StudyError
from studylib.io import cached, file_sha256, read_json
from studylib.ranker.args import TrainArgs
from studylib.study.paths import RUN_MARKER, generated, stamp_beside
from studylib.data.world import WorldParams
from studylib.data.generate import embedding_view, generate, GeneratorParams
from studylib.strict import shipped_config_path
from studylib.ranker.config import STUDY_CONFIG
from studylib.ranker.weights import HEADS, load_weights
from studylib.data.embeddings import write_ranker_embeddings
from studylib.schema import META_GROUPS, REQUEST_COLUMN, short_name, true_prob_column


# The data sets the study uses: name -> scenario (None: the `scenario` parameter) and seed offset.
DATA_SETS = {"train": (None, 0), "planted": ("planted", 1), "random": ("random", 2), "cohorts": ("cohorts", 3),
             "fork_train": ("random", 4), "validation": (None, 5)}


def validation_every(steps: int, val_every: int) -> int:
    """Steps between the main run's held-out validations: `val_every`, or six points over the run
    when it is 0 (the loss curve's held-out points, and the stopping rule's cadence)."""
    return val_every or max(1, steps // 6)


def world_params(seed: int, rate_scale: float, pair_variance: float):
    """The world of the ranker data sets (01_generate): default sizes, world seed, rate scale and
    the personal part of every logit."""
    world = WorldParams(seed=int(seed), rate_scale=float(rate_scale), pair_variance=float(pair_variance))
    world.validate()
    return world


def ensure_data(out: Path, scenario: str, examples: int, seed: int, world_seed: int, rate_scale: float,
                pair_variance: float, candidates: int, progress: bool = False) -> dict:
    """Generate a data set (or reuse it when its manifest has the same parameters); return the manifest."""
    params = GeneratorParams(scenario=scenario, examples=int(examples), seed=int(seed), candidates=int(candidates),
                             world=world_params(world_seed, rate_scale, pair_variance))
    params.validate()
    return generated(out, params.as_dict(), lambda: generate(params, out, progress=progress))


def ensure_run(out: Path, data: Path, eval_data: Path | None, steps: int, batch_size: int, seed: int,
               pairing: str = "by_name", config: str | None = None, progress: bool = False,
               precision: str = TrainArgs.precision, val_data: Path | None = None,
               val_every: int = TrainArgs.val_every, stop_patience: int = TrainArgs.stop_patience,
               stop_min_delta: float = TrainArgs.stop_min_delta) -> dict:
    """Train (or reuse a finished run with the same settings and data, or continue an interrupted one);
    return its summary.
    `val_data`/`val_every`: held-out metrics every N steps (validation.csv) for the loss curve;
    `stop_patience` > 0: `steps` is a maximum and the run stops when that held-out loss stops
    improving (`train.StoppingRule`)."""
    from studylib.ranker.runs import CHECKPOINT, MODEL
    from studylib.ranker.train import train

    config = str(config or shipped_config_path(STUDY_CONFIG))
    if steps < 1:
        raise StudyError(f"parameter steps must be >= 1, got {steps}")
    if batch_size < 1:
        raise StudyError(f"parameter batch_size must be >= 1, got {batch_size}")
    for folder in (data, eval_data, val_data if val_every else None):
        if folder is not None and not (folder / MANIFEST).exists():
            raise StudyError(f"{folder}: no data set here; run 01_generate.ipynb first")
    settings = {"data_manifest": file_sha256(data / MANIFEST),
                "eval_manifest": file_sha256(eval_data / MANIFEST) if eval_data else None,
                "steps": int(steps), "batch_size": int(batch_size), "seed": int(seed), "pairing": pairing,
                "config": Path(config).name, "precision": precision}
    if val_data is not None and val_every:  # only then: other runs' stamps stay as they were
        settings.update(val_manifest=file_sha256(val_data / MANIFEST), val_every=int(val_every))
    if stop_patience:  # only then: runs without a stopping rule keep their stamps
        settings.update(stop_patience=int(stop_patience), stop_min_delta=float(stop_min_delta))

    def build() -> None:
        # a run interrupted under these same settings continues from its last checkpoint (every
        # `training.checkpoint_every_n` steps, bit for bit as if never stopped); one interrupted
        # before its first checkpoint starts again from a folder holding only the cache's stamp
        resume = (out / CHECKPOINT).exists()
        if not resume and out.exists():
            for path in out.iterdir():
                if path.is_dir():
                    shutil.rmtree(path)
                elif path.name != RUN_MARKER:
                    path.unlink()
        train(TrainArgs(data=str(data), out=str(out), config=config, steps=int(steps), resume=resume,
                        eval_data=eval_data and str(eval_data), batch_size=int(batch_size), device="auto",
                        seed=int(seed), label_pairing=pairing, precision=precision,
                        log_every=max(1, int(steps) // 40), progress=progress,
                        val_data=str(val_data) if val_data is not None and val_every else None,
                        val_every=int(val_every), stop_patience=int(stop_patience),
                        stop_min_delta=float(stop_min_delta)))

    reused, _ = cached(out / RUN_MARKER, settings, [out / MODEL], build, clear=out, resumable=True)
    return {"reused": reused, **settings}


def require_run(out: Path, notebook: str = "02_train.ipynb") -> None:
    from studylib.ranker.runs import MODEL

    if not (out / MODEL).exists():
        raise StudyError(f"{out}: no trained model here; run {notebook} first (or the pipeline without --weights)")


def require_scores(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise StudyError(f"{path}: no scores here; run 03_score.ipynb first")
    return pd.read_parquet(path)


def weight_specs(weights: str, presets: list[str]) -> list[str]:
    """The primary weight set first, then the presets to compare (without duplicate names)."""
    primary = load_weights(weights).name
    return [weights] + [p for p in presets if load_weights(p).name != primary]


def check_weights(weights: str, parameter: str = "weights") -> str:
    """The name of the weight set `weights` (preset or YAML path); StudyError naming the parameter otherwise."""
    try:
        return load_weights(weights).name
    except StudyError as exc:
        raise StudyError(f"parameter {parameter}: {exc}") from None


def write_random_embeddings(out: Path, n_users: int, n_authors: int, seed: int, width: int = 200) -> Path:
    """Seeded Gaussian noise in `studylib twhin-export`'s format (the ablation's floor); rewritten
    only when missing, so it keeps its bytes (same seed, same bytes)."""

    rows = {"user_embedding": n_users, "user_eng_embedding": n_users, "author_embedding": n_authors}
    settings = {"n_users": int(n_users), "n_authors": int(n_authors), "seed": int(seed), "width": int(width)}
    def build() -> None:
        rng = np.random.default_rng([int(seed), 0xAB1A])
        write_ranker_embeddings({name: rng.standard_normal((n, width)).astype(np.float32) for name, n in rows.items()},
                                out)

    cached(stamp_beside(out), settings, [out], build)
    return out


def write_constant_embeddings(out: Path, n_users: int, n_authors: int, width: int = 200) -> Path:
    """One vector of zeros for every user and author, in `studylib twhin-export`'s format: the ablation's
    "none" arm. Random vectors still tell entities apart (each keeps its own vector, an identifier the
    ranker can memorise); constant ones carry nothing at all."""
    rows = {"user_embedding": n_users, "user_eng_embedding": n_users, "author_embedding": n_authors}
    settings = {"n_users": int(n_users), "n_authors": int(n_authors), "width": int(width), "value": 0.0}
    cached(stamp_beside(out), settings, [out],
           lambda: write_ranker_embeddings({name: np.zeros((n, width), np.float32) for name, n in rows.items()}, out))
    return out


def ensure_data_like(out: Path, like: Path, embeddings: Path | None = None, progress: bool = False,
                     **changes) -> dict:
    """The data set `like` again (same scenario, size, seed and world: the same requests, labels and
    other features) with the three embedding features read from `embeddings` and any other generator
    parameters in `changes` (e.g. a negative downsampling); reused when unchanged.

    With only `embeddings` changed the result is an embedding view (`generate.embedding_view`):
    a manifest over `like`'s shards, no copy of its rows."""
    if not (like / MANIFEST).exists():
        raise StudyError(f"{like}: no data set here; run 01_generate.ipynb first")
    # The files read, by checksum: a changed base data set or embedding file rebuilds the result.
    settings = {"like": file_sha256(like / MANIFEST),
                "embeddings": None if embeddings is None else file_sha256(embeddings)}
    if embeddings is not None and not changes:
        return generated(out, {**settings, "view": True}, lambda: embedding_view(like, embeddings, out))
    base = read_json(like / MANIFEST)["params"]
    params = GeneratorParams(**{**base, "world": WorldParams.from_record(base["world"], str(like / MANIFEST)),
                                "embeddings": None if embeddings is None else str(embeddings), **changes})
    params.validate()
    return generated(out, {**settings, "params": params.as_dict()}, lambda: generate(params, out, progress=progress))


def with_popularity(frame: pd.DataFrame, data_dir: Path, train_dir: Path) -> pd.DataFrame:
    """A scored table with the two rankings that ignore the user beside the model's probabilities:
    `popularity_prob.<head>` (the popularity oracle of `data_dir`'s world) and
    `learned_popularity_prob.<head>` (smoothed engagement rates of `train_dir`'s examples)."""
    from studylib.data.popularity import learned_rates, oracle_probabilities

    tweets, authors = frame["meta__tweet_id"].to_numpy(), frame["meta__author_id"].to_numpy()
    columns = {}
    for name, probs in (("popularity", oracle_probabilities(data_dir, tweets)),
                        ("learned_popularity", learned_rates(train_dir, tweets, authors))):
        columns.update({f"{name}_prob.{short_name(h)}": probs[h] for h in HEADS})
    return frame.assign(**columns)


def truth_frame(data_dir: Path, train_dir: Path) -> pd.DataFrame:
    """A data set's candidates with their planted truth per head (`true_prob.<head>`, short names as in
    scored tables) and the two rankings that ignore the user (`with_popularity`)."""
    from studylib.data.reader import load_table

    stored = stored_names()
    ids = [REQUEST_COLUMN, *(stored[m] for m in META_GROUPS)]
    table = load_table(data_dir, columns=ids + [true_prob_column(h) for h in HEADS]).to_pandas()
    table = table.rename(columns={**{true_prob_column(h): f"true_prob.{short_name(h)}" for h in HEADS},
                                  **{stored[m]: m for m in META_GROUPS}})
    return with_popularity(table, data_dir, train_dir)

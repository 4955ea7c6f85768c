"""A run's stored per-head probabilities: `<run>/probabilities/<data set>.parquet`.

The probabilities do not depend on the engagement weights, so they are computed once per (model,
data set, precision) and kept beside the run, keyed by the SHA-256 of the model file and of the
data set's manifest and by the precision. `studylib train` stores them from its final evaluation
(one pass of the model serves both the metrics and the table); scoring reads them, and runs the
model only for a data set it has not seen.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from studylib.data.layout import MANIFEST as MANIFEST_FILE
from studylib.data.reader import Reader, open_dataset
from studylib.errors import StudyError
from studylib.io import atomic_write, file_sha256, read_json, require_regular_file
from studylib.schema import LABELS, REQUEST_COLUMN, short_name
from studylib.runtime import resolve_device, resolve_precision
from studylib.ranker.config import load_config
from studylib.ranker.runs import CHECKPOINT, CONFIG_COPY, MODEL, PREDICT_BATCH, RUN_INFO, load_run, predict

PROBABILITIES_DIR = "probabilities"
KEY = b"studylib.probabilities"  # the schema-metadata entry holding the table's key


def probability_table(ids: dict[str, np.ndarray], cohort, probs: np.ndarray, truth: np.ndarray | None,
                      labels: np.ndarray | None, heads: tuple[str, ...]) -> pa.Table:
    """What the model says about each candidate, independent of the weights: ids, cohort and per-head
    probability (and the planted truth and labels when the data has them)."""
    columns = {name: ids[name] for name in ids}
    if cohort is not None:
        columns["cohort"] = pa.array(cohort, type=pa.string())
    for i, head in enumerate(heads):
        columns[f"prob.{short_name(head)}"] = probs[:, i].astype(np.float32)
    if truth is not None:
        for i, head in enumerate(heads):
            columns[f"true_prob.{short_name(head)}"] = truth[:, i].astype(np.float32)
    if labels is not None:
        for i, head in enumerate(heads):
            columns[f"label.{short_name(head)}"] = labels[:, i].astype(np.int8)
    return pa.table(columns)


def stored_probabilities(run_dir: str, data_dir: str, device: str = "auto", precision: str = "auto",
                         progress: bool = True) -> tuple[pa.Table, bool]:
    """The run's per-head probabilities on `data_dir`: read from `<run>/probabilities/` when they were
    computed by the same model file on the same data set in the same precision, else computed now (one
    pass of the model) and stored. Returns (table, reused)."""
    run, data = Path(run_dir), Path(data_dir)
    model_file = run / MODEL if (run / MODEL).exists() else run / CHECKPOINT
    if not model_file.exists():
        raise StudyError(f"{run}: no trained model here (no {MODEL} or {CHECKPOINT}); train one with `studylib train`")
    if not (data / MANIFEST_FILE).exists():
        raise StudyError(f"{data}: no data set here (no {MANIFEST_FILE})")
    key = _key(model_file, data, resolve_precision(precision, resolve_device(device)))
    path = _path(run, data)
    if path.exists():
        try:
            stored = pq.read_schema(require_regular_file(path, "probability table")).metadata or {}
        except (pa.ArrowException, OSError):
            stored = {}  # unreadable: computed again and replaced below
        if stored.get(KEY) == json.dumps(key, sort_keys=True).encode():
            # the same manifest is not the same data: its shards are checked, and the stored table
            # against them, before a single stored number is used
            cfg = load_config(run / CONFIG_COPY)
            dataset = open_dataset(data_dir, renamed=cfg.train_data.renamed_features,
                                   truncation=cfg.train_data.truncation)
            heads = tuple(read_json(run / RUN_INFO).get("heads") or ())
            return _checked_probabilities(path, heads, sum(n for *_, n in dataset.row_groups)), True
    model, cfg, _, runtime = load_run(run_dir, device, precision)
    dataset = open_dataset(data_dir, renamed=cfg.train_data.renamed_features, truncation=cfg.train_data.truncation)
    reader = Reader(dataset, PREDICT_BATCH, shuffle=False, device=runtime.device, with_cohort=True)
    result = predict(model, reader, runtime, progress=progress, desc="probabilities")
    return _write(prediction_table(result, model.heads), key, path), False


def store_prediction(run_dir: str | Path, data_dir: str | Path, result: dict, heads: tuple[str, ...],
                     precision: str) -> Path:
    """Keep `result` — `predict` over `data_dir` (batches of `PREDICT_BATCH`, cohorts read) by the model
    the run has just saved — as the run's stored probabilities on that data set, so scoring it later
    reads them instead of running the model again. The model file must be written first: its hash is
    the key."""
    run, data = Path(run_dir), Path(data_dir)
    path = _path(run, data)
    _write(prediction_table(result, heads), _key(run / MODEL, data, precision), path)
    return path


def prediction_table(result: dict, heads: tuple[str, ...]) -> pa.Table:
    """The probability table of a `predict` result, in the order of `heads`."""
    head_columns = [LABELS.index(h) for h in heads]
    truth = result["truth"][:, head_columns].numpy() if result["truth"] is not None else None
    ids = {k: v.numpy() for k, v in result["ids"].items()}
    return probability_table(ids, result["cohort"], result["calibrated"].numpy(), truth,
                             result["labels"][:, head_columns].numpy(), heads)


def _key(model_file: Path, data: Path, precision: str) -> dict:
    return {"model_sha256": file_sha256(model_file), "data_manifest_sha256": file_sha256(data / MANIFEST_FILE),
            "precision": precision}


def _path(run: Path, data: Path) -> Path:
    return run / PROBABILITIES_DIR / f"{data.resolve().name}.parquet"


def _write(table: pa.Table, key: dict, path: Path) -> pa.Table:
    table = table.replace_schema_metadata({KEY: json.dumps(key, sort_keys=True).encode()})
    atomic_write(path, lambda tmp: pq.write_table(table, tmp))
    return table


def _checked_probabilities(path: Path, heads: tuple[str, ...], rows: int) -> pa.Table:
    """A stored probability table, read only when it is what `stored_probabilities` writes: one row per
    candidate of the data set, the request ids, and a probability in [0, 1] per head of the run."""
    def refuse(why: str) -> StudyError:
        return StudyError(f"{path}: stored probabilities {why}; delete the file to compute them again")

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError):
        raise refuse("are not a readable Parquet file (truncated?)") from None
    if table.num_rows != rows:
        raise refuse(f"have {table.num_rows:,} rows for a data set of {rows:,} candidates")
    if REQUEST_COLUMN not in table.column_names:
        raise refuse(f"lack the {REQUEST_COLUMN} column")
    expected = {f"prob.{short_name(h)}" for h in heads}
    found = {c for c in table.column_names if c.startswith("prob.")}
    if not heads or found != expected:
        raise refuse(f"do not hold one prob.* column per head of the run ({', '.join(sorted(found ^ expected)) or 'no heads'})")
    known = {REQUEST_COLUMN, "cohort", *expected} | {f"{kind}.{short_name(h)}" for kind in ("true_prob", "label") for h in heads}
    extra = [c for c in table.column_names if c not in known and not c.startswith("meta__")]
    if extra:
        raise refuse(f"have a column the scorer does not write ({extra[0]})")
    for name in sorted(expected | {c for c in table.column_names if c.startswith("true_prob.")}):
        column = table.column(name)
        if not pa.types.is_floating(column.type):
            raise refuse(f"column {name} is {column.type}, not a probability")
        values = column.to_numpy()
        if not (np.isfinite(values).all() and (values >= 0).all() and (values <= 1).all()):
            raise refuse(f"column {name} holds values outside [0, 1] (NaN or tampered)")
    return table


__all__ = ["PROBABILITIES_DIR", "prediction_table", "probability_table", "store_prediction", "stored_probabilities"]

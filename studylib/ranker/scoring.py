"""Weighted scoring: score = Σ weight_head · probability_head, ranked within each request.

The weight sets come from `studylib.ranker.weights` (presets and files). Any number of candidates
is scored against any number of weight sets in one matrix product.

The per-head probabilities do not depend on the weights, so they are computed once per
(model, data set) and kept beside the run (`<run>/probabilities/<data set>.parquet`, keyed by
the SHA-256 of the model file and of the data set's manifest and by the precision); scoring
under any weight set reads them and takes the weighted sum, without loading the model.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from studylib.data.layout import MANIFEST as MANIFEST_FILE
from studylib.data.reader import Reader, open_dataset
from studylib.data.requests import rank_within_requests
from studylib.errors import StudyError
from studylib.io import atomic_write, file_sha256, read_json, require_regular_file
from studylib.schema import LABELS, REQUEST_COLUMN, short_name
from studylib.runtime import resolve_device, resolve_precision
from studylib.ranker.config import load_config
from studylib.ranker.runs import CHECKPOINT, CONFIG_COPY, MODEL, RUN_INFO, load_run, predict
from studylib.ranker.weights import HEADS, WeightSet, load_weights


def score_matrix(probabilities: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """[candidates, heads] × [sets, heads] → [candidates, sets]."""
    return probabilities @ weights.T


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


def add_scores(table: pa.Table, heads: tuple[str, ...], weight_sets: list[WeightSet]) -> pa.Table:
    """`table` (a probability table) with score.<name> = Σ weight × probability and rank.<name>
    (1 = top within its request) for every weight set; the weights go into the schema metadata."""
    probs = np.stack([table.column(f"prob.{short_name(h)}").to_numpy() for h in heads], axis=1).astype(np.float64)
    W = np.stack([ws.vector(heads) for ws in weight_sets])
    scores = score_matrix(probs, W)
    request = table.column(REQUEST_COLUMN).to_numpy()
    for k, ws in enumerate(weight_sets):
        table = table.append_column(f"score.{ws.name}", pa.array(scores[:, k]))
        table = table.append_column(f"rank.{ws.name}", pa.array(rank_within_requests(request, scores[:, k])))
    metadata = {b"studylib.weights": yaml.safe_dump({ws.name: ws.as_published() for ws in weight_sets}).encode()}
    return table.replace_schema_metadata(metadata)


def scored_table(ids: dict[str, np.ndarray], cohort, probs: np.ndarray, truth: np.ndarray | None,
                 labels: np.ndarray | None, heads: tuple[str, ...], weight_sets: list[WeightSet]) -> pa.Table:
    """The scoring output: ids, cohort, per-head probability (and truth, labels), score and rank per weight set."""
    return add_scores(probability_table(ids, cohort, probs, truth, labels, heads), heads, weight_sets)


PROBABILITIES_DIR = "probabilities"
KEY = b"studylib.probabilities"


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
    key = {"model_sha256": file_sha256(model_file), "data_manifest_sha256": file_sha256(data / MANIFEST_FILE),
           "precision": resolve_precision(precision, resolve_device(device))}
    path = run / PROBABILITIES_DIR / f"{data.resolve().name}.parquet"
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
    reader = Reader(dataset, 2048, shuffle=False, device=runtime.device, with_cohort=True)
    result = predict(model, reader, runtime, progress=progress, desc="probabilities")
    head_columns = [LABELS.index(h) for h in model.heads]
    truth = result["truth"][:, head_columns].numpy() if result["truth"] is not None else None
    ids = {k: v.numpy() for k, v in result["ids"].items()}
    table = probability_table(ids, result["cohort"], result["calibrated"].numpy(), truth,
                              result["labels"][:, head_columns].numpy(), model.heads)
    table = table.replace_schema_metadata({KEY: json.dumps(key, sort_keys=True).encode()})
    _write_atomically(table, path)
    return table, False


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


def _write_atomically(table: pa.Table, path: Path) -> None:
    atomic_write(path, lambda tmp: pq.write_table(table, tmp))


def score_run(run_dir: str, data_dir: str, weight_specs: list[str], out_file: str, device: str = "auto",
              progress: bool = True, precision: str = "auto") -> pa.Table:
    """Score every candidate of `data_dir` with a trained run and write the Parquet table atomically.

    The model runs only when its probabilities on this data set are not stored yet (see
    `stored_probabilities`); `table.schema.metadata[b"studylib.reused"]` says which happened."""
    weight_sets = [load_weights(spec) for spec in weight_specs]
    names = [ws.name for ws in weight_sets]
    if len(set(names)) != len(names):
        raise StudyError(f"--weights: two weight sets are named {sorted(n for n in names if names.count(n) > 1)[0]}")
    out = Path(out_file)
    if out.is_dir():
        raise StudyError(f"{out}: is a directory, not a file; give --out a .parquet file path")
    if out.suffix != ".parquet":
        raise StudyError(f"--out {out_file}: must end in .parquet")
    probabilities, reused = stored_probabilities(run_dir, data_dir, device, precision, progress)
    by_short = {short_name(h): h for h in HEADS}  # the stored columns keep the model's head order
    heads = tuple(by_short[c.removeprefix("prob.")] for c in probabilities.column_names if c.startswith("prob."))
    table = add_scores(probabilities.replace_schema_metadata(None), heads, weight_sets)
    table = table.replace_schema_metadata({**table.schema.metadata, b"studylib.reused": b"yes" if reused else b"no"})
    _write_atomically(table, out)
    return table


__all__ = ["add_scores", "probability_table", "score_matrix", "score_run", "scored_table", "stored_probabilities"]

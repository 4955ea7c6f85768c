"""Weighted scoring: score = Σ weight_head · probability_head, ranked within each request.

The weight sets come from `studylib.ranker.weights` (presets and files). Any number of candidates
is scored against any number of weight sets in one matrix product.

The per-head probabilities do not depend on the weights: they are stored once per (model, data
set) beside the run (`studylib.ranker.probabilities`), and scoring under any weight set reads them
and takes the weighted sum, without loading the model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from studylib.data.requests import rank_within_requests
from studylib.errors import StudyError
from studylib.io import atomic_write
from studylib.schema import REQUEST_COLUMN, short_name
from studylib.ranker.probabilities import probability_table, stored_probabilities
from studylib.ranker.weights import HEADS, WeightSet, load_weights


def score_matrix(probabilities: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """[candidates, heads] × [sets, heads] → [candidates, sets]."""
    return probabilities @ weights.T


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
    try:
        _write_atomically(table, out)
    except StudyError as exc:  # e.g. a read-only folder: name the option, and the file the user gave
        raise StudyError(f"--out {exc}") from None
    return table


__all__ = ["add_scores", "probability_table", "score_matrix", "score_run", "scored_table", "stored_probabilities"]

"""TwHIN's steps of the study (chapter 01b) and the embedding ablation's tables (02b): the planted
graph, the training runs, their evaluation and export, each reused while its parameters match."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from dataclasses import asdict

import pandas as pd

from studylib.errors import StudyError
from studylib.io import cached, file_sha256, read_json
from studylib.study.paths import RUN_MARKER, Paths, generated, stamp_beside
from studylib.study.ranker_study import world_params
from studylib.data.layout import MANIFEST
from studylib.twhin.planted import GraphParams, generate_graph
from studylib.twhin.runs import BEST, CHECKPOINT, STOPPING
from studylib.strict import shipped_config_path
from studylib.twhin.config import STUDY_CONFIG as TWHIN_STUDY_CONFIG
from studylib.twhin.evaluate import RESULTS, evaluate_run
from studylib.twhin.export import export_embeddings


# Where the TwHIN side lives: data/<profile>/twhin/ holds the graph and the ablation's random
# tables, apart from the ranker data sets.
TWHIN_GRAPH = ("twhin", "graph")
TWHIN_RUN = "twhin"
TWHIN_BIAS_RUN = "twhin_node_bias"  # the same training with a learned scalar per entity (model.node_bias)
TWHIN_EXPORT = "ranker_embeddings.parquet"


def twhin_graph_dir(paths: Paths) -> Path:
    return paths.data.joinpath(*TWHIN_GRAPH)


def ensure_twhin_graph(out: Path, edges: int, seed: int, rate_scale: float, pair_variance: float,
                       progress: bool = False) -> dict:
    """The planted TwHIN graph of the ranker data's world (reused when its parameters match)."""

    if edges < 1:
        raise StudyError(f"parameter twhin_edges must be >= 1, got {edges}")
    params = GraphParams(edges=int(edges), seed=int(seed), world=world_params(seed, rate_scale, pair_variance))
    return generated(out, asdict(params), lambda: generate_graph(params, out, progress=progress))


@contextmanager
def _threads(n: int):
    """torch intra-op threads set to `n` for a block (TwHIN's small kernels are fastest on one thread)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# Held-out early stopping (literature practice for link prediction): every run is checked VALIDATION_CHECKS
# times on the validation split's unseen pairs, stops after STOP_PATIENCE checks without a new best, and is
# read at its best check (best.pt; the start counts). `twhin_steps` is the most it may train.
VALIDATION_CHECKS = 10
STOP_PATIENCE = 3


def model_file(run: Path) -> Path:
    """The file a run is read from: its best validation state when it has one, else its last checkpoint."""
    return run / BEST if (run / BEST).exists() else run / CHECKPOINT


def ensure_twhin_run(out: Path, graph: Path, steps: int, seed: int = 0, threads: int = 1,
                     progress: bool = False, node_bias: bool = False) -> dict:
    """Train TwHIN on `graph` (study config, node biases when asked) with held-out early stopping, or
    reuse a finished run with the same settings."""
    from studylib.twhin.train import TwhinTrainArgs, train

    if steps < 1:
        raise StudyError(f"parameter twhin_steps must be >= 1, got {steps}")
    if not (graph / MANIFEST).exists():
        raise StudyError(f"{graph}: no TwHIN graph here; run 01b_twhin.ipynb first")

    val_every = max(1, int(steps) // VALIDATION_CHECKS)
    settings = {"graph_manifest": file_sha256(graph / MANIFEST), "steps": int(steps), "seed": int(seed),
                "config": file_sha256(shipped_config_path(TWHIN_STUDY_CONFIG)), "node_bias": bool(node_bias),
                "val_every": val_every, "stop_patience": STOP_PATIENCE}

    def build() -> dict:
        with _threads(threads):
            result = train(TwhinTrainArgs(graph=str(graph), out=str(out), steps=int(steps), device="cpu",
                                          seed=int(seed), node_bias=bool(node_bias), progress=progress,
                                          val_every=val_every, stop_patience=STOP_PATIENCE))
        stopping = read_json(out / STOPPING)
        return {"edges_per_s": result["edges_per_s"], "best_step": stopping["best_step"],
                "last_step": stopping["last_step"], "stopped_early": stopping["stopped_early"]}

    reused, result = cached(out / RUN_MARKER, settings, [out / CHECKPOINT], build, clear=out)
    return {"reused": reused, **result, **settings}


def stopping_records(runs: dict[str, Path]) -> dict[str, dict]:
    """scorer name -> the run's held-out early-stopping record (`stopping.json`), for the runs that have one."""
    return {name: read_json(Path(run) / STOPPING) for name, run in runs.items() if (Path(run) / STOPPING).exists()}


def ensure_twhin_evaluation(run: Path, max_edges: int, resamples: int = 500, seed: int = 0,
                            beside: dict[str, Path] | None = None, progress: bool = False) -> pd.DataFrame:
    """Link prediction on the run's held-out test pairs (random, popularity, trained, the runs in
    `beside`, oracle; both directions, raw and filtered, all and unseen pairs); cached in the run.
    max_edges 0: all held-out pairs, else a seeded sample of at most that many per relation."""
    if max_edges < 0:
        raise StudyError(f"parameter twhin_eval_edges must be >= 0 (0: all held-out pairs), got {max_edges}")
    if resamples < 0:
        raise StudyError(f"parameter bootstrap_resamples must be >= 0, got {resamples}")
    beside = beside or {}
    settings = {"model": file_sha256(model_file(run)), "max_edges": int(max_edges), "resamples": int(resamples),
                "seed": int(seed), "beside": {name: file_sha256(model_file(Path(d))) for name, d in beside.items()},
                "scorers": "with pooled popularity, neighbourhood, share over popularity"}  # the table's columns

    def build() -> None:
        with _threads(1):
            evaluate_run(run, max_edges=int(max_edges) or None, n_resamples=int(resamples), seed=int(seed),
                         extra_runs=beside, progress=progress)

    cached(run / "study_evaluation.json", settings, [run / RESULTS], build)
    return pd.read_csv(run / RESULTS)


def ensure_twhin_export(run: Path, out: Path) -> dict:
    """The run's embeddings as the ranker's three 200-wide tables; rewritten only when the run changed
    (an unchanged file keeps the data sets built from it valid)."""
    settings = {"model": file_sha256(model_file(run))}
    reused, info = cached(stamp_beside(out), settings, [out], lambda: export_embeddings(run, out))
    return {"reused": reused, **settings, **info}

"""What the study notebooks share: where a profile's files live, and cached data and runs.

All paths derive from (workdir, profile): `data/<profile>/<set>`, `runs/<profile>/<run>`,
`runs/<profile>/scores/<set>.parquet`, `figures/`. Data sets and runs are reused when
their parameters match (so re-scoring never regenerates or retrains) and rebuilt when a
parameter changed: these folders belong to the pipeline.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from studylib.errors import StudyError
from studylib.io import cached, file_sha256, read_json

RUN_MARKER = "study.json"
MAIN_RUN = "by_name"  # runs/<profile>/ names of the runs that chapters pass to each other
FORK_RUN = "fork_random"


@dataclass(frozen=True)
class Paths:
    workdir: Path
    profile: str

    @classmethod
    def of(cls, workdir: str | Path, profile: str) -> "Paths":
        """A notebook's first call. Outside the pipeline (JupyterLab, papermill by hand) it says
        that the chapter writes into the study's own folders, and marks them out of step with
        the report until the pipeline runs again (see `out_of_step`)."""
        if not profile or "/" in profile:
            raise StudyError(f"parameter profile: not a profile name: {profile!r}")
        paths = cls(Path(workdir).resolve(), profile)
        if not os.environ.get(PIPELINE_ENV):
            _mark_out_of_step(paths)
        return paths

    @property
    def out_of_step(self) -> Path:
        """Present while a notebook run by hand may have changed data, runs, scores, figures or
        results since the last report; the pipeline then reruns every chapter and removes it."""
        return self.workdir / "_build" / f"out-of-step-{self.profile}.txt"

    @property
    def data(self) -> Path:
        return self.workdir / "data" / self.profile

    @property
    def runs(self) -> Path:
        return self.workdir / "runs" / self.profile

    @property
    def scores(self) -> Path:
        return self.runs / "scores"

    @property
    def figures(self) -> Path:
        return self.workdir / "figures"

    @property
    def results(self) -> Path:
        return self.workdir / "_build" / "results" / self.profile

    def data_set(self, name: str) -> Path:
        return self.data / name

    def run(self, name: str) -> Path:
        return self.runs / name

    @property
    def main_run(self) -> Path:
        """The study's model (heads paired with labels by name): trained in chapter 2, scored in 3."""
        return self.run(MAIN_RUN)

    def seed_runs(self, train_seed: int, seeds: int) -> list[Path]:
        """The main model trained with seeds train_seed, train_seed + 1, ...: the main run first."""
        return [self.main_run] + [self.run(f"{MAIN_RUN}_seed{train_seed + i}") for i in range(1, seeds)]

    @property
    def fork_run(self) -> Path:
        """The fork's experiment, a model trained on random labels: chapter 2 trains it, 3 scores it, 4 reads it."""
        return self.run(FORK_RUN)

    def score_file(self, name: str) -> Path:
        return self.scores / f"{name}.parquet"


PIPELINE_ENV = "STUDYLIB_PIPELINE"  # set by the pipeline in its notebooks' environment


def _mark_out_of_step(paths: Paths) -> None:
    from datetime import datetime, timezone

    from studylib.io import write_text

    when = datetime.now(timezone.utc).isoformat(timespec="seconds")
    write_text(paths.out_of_step, f"a notebook ran outside the pipeline at {when} (profile {paths.profile}); "
                                  "the report may not match data/, runs/, figures/ and _build/results/ until "
                                  "`make study` reruns the chapters\n")
    print(f"Running outside the pipeline: this notebook writes into {paths.workdir} (data/, runs/, figures/, "
          f"_build/results/), which the report was built from; the next `make study` reruns every chapter "
          f"and rebuilds the report ({paths.out_of_step.name} marks it until then).")


# The data sets the study uses: name -> scenario (None: the `scenario` parameter) and seed offset.
DATA_SETS = {"train": (None, 0), "planted": ("planted", 1), "random": ("random", 2), "cohorts": ("cohorts", 3),
             "fork_train": ("random", 4), "validation": (None, 5)}


def ensure_data(out: Path, scenario: str, examples: int, seed: int, world_seed: int, rate_scale: float,
                candidates: int, progress: bool = False) -> dict:
    """Generate a data set (or reuse it when its manifest has the same parameters); return the manifest."""
    from studylib.data.generate import GeneratorParams, generate
    from studylib.data.world import WorldParams

    params = GeneratorParams(scenario=scenario, examples=int(examples), seed=int(seed), candidates=int(candidates),
                             world=WorldParams(seed=int(world_seed), rate_scale=float(rate_scale)))
    params.validate()
    return _generated(out, params.as_dict(), lambda: generate(params, out, progress=progress))


def _stamp_beside(output: Path) -> Path:
    """The cache stamp of a step whose output is one file or a folder a generator owns: beside it."""
    return output.with_name(output.name + ".json")


def _generated(out: Path, settings: dict, build) -> dict:
    """A generator's output folder through the one cache (a generator resumes its own interrupted
    work, so an unfinished build of the same settings continues); its manifest."""
    def build_folder() -> None:
        build()  # the manifest stays in the folder; the stamp records only the settings

    cached(_stamp_beside(out), settings, [out / "manifest.json"], build_folder, clear=out, resumable=True)
    return read_json(out / "manifest.json")


def ensure_run(out: Path, data: Path, eval_data: Path | None, steps: int, batch_size: int, seed: int,
               pairing: str = "by_name", config: str | None = None, progress: bool = False,
               precision: str = "auto", val_data: Path | None = None, val_every: int = 0,
               stop_patience: int = 0, stop_min_delta: float = 0.002) -> dict:
    """Train (or reuse a finished run with the same settings and data); return its summary.
    `val_data`/`val_every`: held-out metrics every N steps (validation.csv) for the loss curve;
    `stop_patience` > 0: `steps` is a maximum and the run stops when that held-out loss stops
    improving (`train.StoppingRule`)."""
    from studylib.config import STUDY_CONFIG, shipped_config_path
    from studylib.runs import MODEL
    from studylib.train import TrainArgs, train

    config = str(config or shipped_config_path(STUDY_CONFIG))
    if steps < 1:
        raise StudyError(f"parameter steps must be >= 1, got {steps}")
    if batch_size < 1:
        raise StudyError(f"parameter batch_size must be >= 1, got {batch_size}")
    for folder in (data, eval_data, val_data if val_every else None):
        if folder is not None and not (folder / "manifest.json").exists():
            raise StudyError(f"{folder}: no data set here; run 01_generate.ipynb first")
    settings = {"data_manifest": file_sha256(data / "manifest.json"),
                "eval_manifest": file_sha256(eval_data / "manifest.json") if eval_data else None,
                "steps": int(steps), "batch_size": int(batch_size), "seed": int(seed), "pairing": pairing,
                "config": Path(config).name, "precision": precision}
    if val_data is not None and val_every:  # only then: other runs' stamps stay as they were
        settings.update(val_manifest=file_sha256(val_data / "manifest.json"), val_every=int(val_every))
    if stop_patience:  # only then: runs without a stopping rule keep their stamps
        settings.update(stop_patience=int(stop_patience), stop_min_delta=float(stop_min_delta))

    def build() -> None:
        train(TrainArgs(data=str(data), out=str(out), config=config, steps=int(steps),
                        eval_data=eval_data and str(eval_data), batch_size=int(batch_size), device="auto",
                        seed=int(seed), label_pairing=pairing, precision=precision,
                        log_every=max(1, int(steps) // 40), progress=progress,
                        val_data=str(val_data) if val_data is not None and val_every else None,
                        val_every=int(val_every), stop_patience=int(stop_patience),
                        stop_min_delta=float(stop_min_delta)))

    reused, _ = cached(out / RUN_MARKER, settings, [out / MODEL], build, clear=out)
    return {"reused": reused, **settings}


def require_run(out: Path, notebook: str = "02_train.ipynb") -> None:
    from studylib.runs import MODEL

    if not (out / MODEL).exists():
        raise StudyError(f"{out}: no trained model here; run {notebook} first (or the pipeline without --weights)")


def require_scores(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise StudyError(f"{path}: no scores here; run 03_score.ipynb first")
    return pd.read_parquet(path)


def weight_specs(weights: str, presets: list[str]) -> list[str]:
    """The primary weight set first, then the presets to compare (without duplicate names)."""
    from studylib.scoring import load_weights

    primary = load_weights(weights).name
    return [weights] + [p for p in presets if load_weights(p).name != primary]


def check_weights(weights: str) -> str:
    """The name of the weight set `weights` (preset or YAML path); StudyError naming the parameter otherwise."""
    from studylib.scoring import load_weights

    try:
        return load_weights(weights).name
    except StudyError as exc:
        raise StudyError(f"parameter weights: {exc}") from None


__all__ = ["Paths", "DATA_SETS", "ensure_data", "ensure_run", "require_run", "require_scores", "weight_specs",
           "check_weights"]


# ---------------------------------------------------------------- TwHIN (01b) and the embedding ablation (02b)

# Where the TwHIN side lives: data/<profile>/twhin/ holds the graph and the ablation's random
# tables, apart from the ranker data sets.
TWHIN_GRAPH = ("twhin", "graph")
TWHIN_RUN = "twhin"
TWHIN_BIAS_RUN = "twhin_node_bias"  # the same training with a learned scalar per entity (model.node_bias)
TWHIN_EXPORT = "ranker_embeddings.parquet"
# The ablation's variants: which embedding file each one's data sets use (None: the world's own,
# planted noisy projections of the latents: the data sets of 01_generate, reused unchanged).
EMBEDDING_VARIANTS = ("random", "planted", "trained")


def world_params(seed: int, rate_scale: float):
    """The world of the ranker data sets (01_generate): default sizes, world seed, rate scale."""
    from studylib.data.world import WorldParams

    return WorldParams(seed=int(seed), rate_scale=float(rate_scale))


def twhin_graph_dir(paths: Paths) -> Path:
    return paths.data.joinpath(*TWHIN_GRAPH)


def ensure_twhin_graph(out: Path, edges: int, seed: int, rate_scale: float, progress: bool = False) -> dict:
    """The planted TwHIN graph of the ranker data's world (reused when its parameters match)."""
    from dataclasses import asdict

    from studylib.twhin.planted import GraphParams, generate_graph

    if edges < 1:
        raise StudyError(f"parameter twhin_edges must be >= 1, got {edges}")
    params = GraphParams(edges=int(edges), seed=int(seed), world=world_params(seed, rate_scale))
    return _generated(out, asdict(params), lambda: generate_graph(params, out, progress=progress))


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


def ensure_twhin_run(out: Path, graph: Path, steps: int, seed: int = 0, threads: int = 1,
                     progress: bool = False, node_bias: bool = False) -> dict:
    """Train TwHIN on `graph` (study config, node biases when asked) or reuse a finished run with
    the same settings."""
    from studylib.twhin.runs import CHECKPOINT
    from studylib.twhin.train import TwhinTrainArgs, train

    if steps < 1:
        raise StudyError(f"parameter twhin_steps must be >= 1, got {steps}")
    if not (graph / "manifest.json").exists():
        raise StudyError(f"{graph}: no TwHIN graph here; run 01b_twhin.ipynb first")
    from studylib.config import shipped_config_path
    from studylib.twhin.config import STUDY_CONFIG as TWHIN_STUDY_CONFIG

    settings = {"graph_manifest": file_sha256(graph / "manifest.json"), "steps": int(steps), "seed": int(seed),
                "config": file_sha256(shipped_config_path(TWHIN_STUDY_CONFIG)), "node_bias": bool(node_bias)}

    def build() -> dict:
        with _threads(threads):
            result = train(TwhinTrainArgs(graph=str(graph), out=str(out), steps=int(steps), device="cpu",
                                          seed=int(seed), node_bias=bool(node_bias), progress=progress))
        return {"edges_per_s": result["edges_per_s"]}

    reused, result = cached(out / RUN_MARKER, settings, [out / CHECKPOINT], build, clear=out)
    return {"reused": reused, **result, **settings}


def ensure_twhin_evaluation(run: Path, max_edges: int, resamples: int = 500, seed: int = 0,
                            beside: dict[str, Path] | None = None, progress: bool = False) -> pd.DataFrame:
    """Link prediction on the run's held-out test pairs (random, popularity, trained, the runs in
    `beside`, oracle; both directions, raw and filtered, all and unseen pairs); cached in the run.
    max_edges 0: all held-out pairs, else a seeded sample of at most that many per relation."""
    from studylib.twhin.evaluate import RESULTS, evaluate_run
    from studylib.twhin.runs import CHECKPOINT

    if max_edges < 0:
        raise StudyError(f"parameter twhin_eval_edges must be >= 0 (0: all held-out pairs), got {max_edges}")
    if resamples < 0:
        raise StudyError(f"parameter bootstrap_resamples must be >= 0, got {resamples}")
    beside = beside or {}
    settings = {"checkpoint": file_sha256(run / CHECKPOINT), "max_edges": int(max_edges), "resamples": int(resamples),
                "seed": int(seed), "beside": {name: file_sha256(Path(d) / CHECKPOINT) for name, d in beside.items()},
                "scorers": "with pooled popularity, share over popularity"}  # the table's columns

    def build() -> None:
        with _threads(1):
            evaluate_run(run, max_edges=int(max_edges) or None, n_resamples=int(resamples), seed=int(seed),
                         extra_runs=beside, progress=progress)

    cached(run / "study_evaluation.json", settings, [run / RESULTS], build)
    return pd.read_csv(run / RESULTS)


def ensure_twhin_export(run: Path, out: Path) -> dict:
    """The run's embeddings as the ranker's three 200-wide tables; rewritten only when the run changed
    (an unchanged file keeps the data sets built from it valid)."""
    from studylib.twhin.export import export_embeddings
    from studylib.twhin.runs import CHECKPOINT

    settings = {"checkpoint": file_sha256(run / CHECKPOINT)}
    reused, info = cached(_stamp_beside(out), settings, [out], lambda: export_embeddings(run, out))
    return {"reused": reused, **settings, **info}


def write_random_embeddings(out: Path, n_users: int, n_authors: int, seed: int, width: int = 200) -> Path:
    """Seeded Gaussian noise in `studylib twhin-export`'s format (the ablation's floor); rewritten
    only when missing, so it keeps its bytes (same seed, same bytes)."""
    import numpy as np

    from studylib.data.embeddings import write_ranker_embeddings

    rows = {"user_embedding": n_users, "user_eng_embedding": n_users, "author_embedding": n_authors}
    settings = {"n_users": int(n_users), "n_authors": int(n_authors), "seed": int(seed), "width": int(width)}
    def build() -> None:
        rng = np.random.default_rng([int(seed), 0xAB1A])
        write_ranker_embeddings({name: rng.standard_normal((n, width)).astype(np.float32) for name, n in rows.items()},
                                out)

    cached(_stamp_beside(out), settings, [out], build)
    return out


def ensure_data_like(out: Path, like: Path, embeddings: Path | None = None, progress: bool = False,
                     **changes) -> dict:
    """The data set `like` again (same scenario, size, seed and world: the same requests, labels and
    other features) with the three embedding features read from `embeddings` and any other generator
    parameters in `changes` (e.g. a negative downsampling); reused when unchanged.

    With only `embeddings` changed the result is an embedding view (`generate.embedding_view`):
    a manifest over `like`'s shards, no copy of its rows."""
    from studylib.data.generate import GeneratorParams, embedding_view, generate
    from studylib.data.world import WorldParams

    if not (like / "manifest.json").exists():
        raise StudyError(f"{like}: no data set here; run 01_generate.ipynb first")
    # The files read, by checksum: a changed base data set or embedding file rebuilds the result.
    settings = {"like": file_sha256(like / "manifest.json"),
                "embeddings": None if embeddings is None else file_sha256(embeddings)}
    if embeddings is not None and not changes:
        return _generated(out, {**settings, "view": True}, lambda: embedding_view(like, embeddings, out))
    base = json.loads((like / "manifest.json").read_text())["params"]
    params = GeneratorParams(**{**base, "world": WorldParams(**base["world"]),
                                "embeddings": None if embeddings is None else str(embeddings), **changes})
    params.validate()
    return _generated(out, {**settings, "params": params.as_dict()}, lambda: generate(params, out, progress=progress))


__all__ += ["FORK_RUN", "MAIN_RUN", "EMBEDDING_VARIANTS", "TWHIN_BIAS_RUN", "ensure_data_like", "ensure_twhin_evaluation", "ensure_twhin_export",
            "ensure_twhin_graph", "ensure_twhin_run", "twhin_graph_dir", "world_params", "write_random_embeddings"]

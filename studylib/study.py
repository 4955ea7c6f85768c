"""What the study notebooks share: where a profile's files live, and cached data and runs.

All paths derive from (workdir, profile): `data/<profile>/<set>`, `runs/<profile>/<run>`,
`runs/<profile>/scores/<set>.parquet`, `figures/`. Data sets and runs are reused when
their parameters match (so re-scoring never regenerates or retrains) and rebuilt when a
parameter changed: these folders belong to the pipeline.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from studylib.errors import StudyError

RUN_MARKER = "study.json"


@dataclass(frozen=True)
class Paths:
    workdir: Path
    profile: str

    @classmethod
    def of(cls, workdir: str | Path, profile: str) -> "Paths":
        if not profile or "/" in profile:
            raise StudyError(f"parameter profile: not a profile name: {profile!r}")
        return cls(Path(workdir).resolve(), profile)

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

    def score_file(self, name: str) -> Path:
        return self.scores / f"{name}.parquet"


# The data sets the study uses: name -> scenario (None: the `scenario` parameter) and seed offset.
DATA_SETS = {"train": (None, 0), "planted": ("planted", 1), "random": ("random", 2), "cohorts": ("cohorts", 3),
             "fork_train": ("random", 4)}


def ensure_data(out: Path, scenario: str, examples: int, seed: int, world_seed: int, rate_scale: float,
                candidates: int, progress: bool = False) -> dict:
    """Generate a data set (or reuse it when its manifest has the same parameters); return the manifest."""
    from studylib.data.generate import GeneratorParams, generate
    from studylib.data.world import WorldParams

    params = GeneratorParams(scenario=scenario, examples=int(examples), seed=int(seed), candidates=int(candidates),
                             world=WorldParams(seed=int(world_seed), rate_scale=float(rate_scale)))
    params.validate()
    manifest = out / "manifest.json"
    if manifest.exists() and json.loads(manifest.read_text()).get("params") != params.as_dict():
        shutil.rmtree(out)
    return generate(params, out, progress=progress)


def ensure_run(out: Path, data: Path, eval_data: Path | None, steps: int, batch_size: int, seed: int,
               pairing: str = "by_name", config: str | None = None, progress: bool = False) -> dict:
    """Train (or reuse a finished run with the same settings and data); return its summary."""
    from studylib.config import shipped_config_path
    from studylib.train import TrainArgs, train

    config = str(config or shipped_config_path("study_quick.yaml"))
    if steps < 1:
        raise StudyError(f"parameter steps must be >= 1, got {steps}")
    if batch_size < 1:
        raise StudyError(f"parameter batch_size must be >= 1, got {batch_size}")
    for folder in (data, eval_data):
        if folder is not None and not (folder / "manifest.json").exists():
            raise StudyError(f"{folder}: no data set here; run 01_generate.ipynb first")
    settings = {"data_manifest": _digest(data / "manifest.json"),
                "eval_manifest": _digest(eval_data / "manifest.json") if eval_data else None,
                "steps": int(steps), "batch_size": int(batch_size), "seed": int(seed), "pairing": pairing,
                "config": Path(config).name}
    marker = out / RUN_MARKER
    if marker.exists() and json.loads(marker.read_text()) == settings and (out / "checkpoint.pt").exists():
        return {"reused": True, **settings}
    if out.exists():
        shutil.rmtree(out)
    train(TrainArgs(data=str(data), out=str(out), config=config, steps=int(steps), eval_data=eval_data and str(eval_data),
                    batch_size=int(batch_size), device="auto", seed=int(seed), label_pairing=pairing,
                    log_every=max(1, int(steps) // 40), progress=progress))
    marker.write_text(json.dumps(settings, indent=1))
    return {"reused": False, **settings}


def require_run(out: Path, notebook: str = "02_train.ipynb") -> None:
    if not (out / "checkpoint.pt").exists():
        raise StudyError(f"{out}: no trained model here; run {notebook} first (or the pipeline without --weights)")


def require_scores(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise StudyError(f"{path}: no scores here; run 03_score.ipynb first")
    return pd.read_parquet(path)


def _digest(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


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

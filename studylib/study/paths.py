"""Where a profile's files live, and the one way a step's output is built once and reused.

All paths derive from (workdir, profile): `data/<profile>/<set>`, `runs/<profile>/<run>`,
`runs/<profile>/scores/<set>.parquet`, `figures/`. Data sets and runs are reused when
their parameters match (so re-scoring never regenerates or retrains) and rebuilt when a
parameter changed: these folders belong to the pipeline.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from datetime import datetime, timezone

from studylib.errors import StudyError
from studylib.io import cached, read_json, write_text
from studylib.data.layout import MANIFEST

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

    when = datetime.now(timezone.utc).isoformat(timespec="seconds")
    write_text(paths.out_of_step, f"a notebook ran outside the pipeline at {when} (profile {paths.profile}); "
                                  "the report may not match data/, runs/, figures/ and _build/results/ until "
                                  "`make study` reruns the chapters\n")
    print(f"Running outside the pipeline: this notebook writes into {paths.workdir} (data/, runs/, figures/, "
          f"_build/results/), which the report was built from; the next `make study` reruns every chapter "
          f"and rebuilds the report ({paths.out_of_step.name} marks it until then).")


def stamp_beside(output: Path) -> Path:
    """The cache stamp of a step whose output is one file or a folder a generator owns: beside it."""
    return output.with_name(output.name + ".json")


def generated(out: Path, settings: dict, build) -> dict:
    """A generator's output folder through the one cache (a generator resumes its own interrupted
    work, so an unfinished build of the same settings continues); its manifest."""
    def build_folder() -> None:
        build()  # the manifest stays in the folder; the stamp records only the settings

    cached(stamp_beside(out), settings, [out / MANIFEST], build_folder, clear=out, resumable=True)
    return read_json(out / MANIFEST)

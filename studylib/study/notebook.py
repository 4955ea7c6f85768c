"""What every chapter notebook does first, in one place: the figure style, the tables' precision,
a quiet import of torchrec, and the chapter's `Paths` (which, outside the pipeline, also marks
the study out of step with its report)."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from studylib.analysis import plots
from studylib.study.paths import Paths


def start(workdir: str | Path, profile: str) -> Paths:
    """Set up a chapter notebook; returns where its data, runs, figures and results live."""
    logging.getLogger("torch.fx._symbolic_trace").setLevel(logging.ERROR)  # a torch notice on importing torchrec
    plots.setup()
    pd.set_option("display.precision", 4)
    return Paths.of(workdir, profile)


__all__ = ["start"]

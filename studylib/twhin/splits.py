"""Train / valid / test splits of a TwHIN graph: by time chunk or a seeded shuffle."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from studylib.errors import StudyError
from studylib.twhin.graph import Graph

@dataclass(frozen=True)
class SplitSpec:
    kind: str = "time"  # "time": last chunks held out; "random": a seeded shuffle
    valid_fraction: float = 0.1
    test_fraction: float = 0.1
    seed: int = 0

    def validate(self) -> None:
        if self.kind not in ("time", "random"):
            raise StudyError(f"--split must be time or random, got {self.kind!r}")
        if not (0 <= self.valid_fraction < 1 and 0 <= self.test_fraction < 1
                and self.valid_fraction + self.test_fraction < 1):
            raise StudyError("split fractions must be in [0, 1) and sum to less than 1")


def split_graph(graph: Graph, spec: SplitSpec = SplitSpec()) -> dict[str, Graph]:
    """{"train", "valid", "test"} by time chunk (held-out = the latest chunks) or at random."""
    spec.validate()
    if spec.kind == "time":
        chunks = np.unique(graph.time_chunk)
        n_test = int(round(spec.test_fraction * chunks.size))
        n_valid = int(round(spec.valid_fraction * chunks.size))
        test_from = chunks[chunks.size - n_test] if n_test else np.inf
        valid_from = chunks[chunks.size - n_test - n_valid] if n_valid else test_from
        part = np.where(graph.time_chunk >= test_from, 2, np.where(graph.time_chunk >= valid_from, 1, 0))
    else:
        u = np.random.default_rng([spec.seed, 0x5B117]).random(len(graph))
        part = np.where(u < spec.test_fraction, 2, np.where(u < spec.test_fraction + spec.valid_fraction, 1, 0))
    splits = {name: graph.subset(part == i) for i, name in enumerate(("train", "valid", "test"))}
    for name, want in (("train", 1.0), ("valid", spec.valid_fraction), ("test", spec.test_fraction)):
        if want > 0 and len(splits[name]) == 0:
            chunks = np.unique(graph.time_chunk)
            raise StudyError(f"{graph.source}: the {name} split is empty (column time_chunk has "
                             f"{chunks.size} distinct value(s); split {spec.kind})")
    return splits


__all__ = ["SplitSpec", "split_graph"]

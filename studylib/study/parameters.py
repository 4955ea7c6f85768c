"""The chapters' parameter rules, each stated once: a notebook checks its own values with `check`
(so a person running it by hand gets the same one-line error), and the pipeline checks the whole
profile with `check_all` before any notebook starts.

Parameters that a `studylib.study` step consumes directly (steps, batch sizes, TwHIN sizes) are
checked by that step; these are the ones only a notebook reads.
"""

from __future__ import annotations

from typing import Any, Callable

from studylib.data.generate import SCENARIOS
from studylib import yamlio
from studylib.errors import StudyError
from studylib.schema import LABELS, short_name

LABEL_NAMES = tuple(short_name(label) for label in LABELS)


def _at_least(bound: float) -> Callable[[Any], bool]:
    return lambda v: v >= bound


RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "scenario": (lambda v: v in SCENARIOS, f"one of {', '.join(SCENARIOS)}"),
    "train_examples": (_at_least(1), ">= 1"),
    "eval_examples": (_at_least(1), ">= 1"),
    "candidates": (_at_least(1), ">= 1"),
    "seeds": (_at_least(1), ">= 1"),
    "ablation_steps": (_at_least(1), ">= 1"),
    "ablation_seeds": (_at_least(1), ">= 1"),
    "bootstrap_resamples": (_at_least(10), ">= 10"),
    "top_k": (_at_least(1), ">= 1"),
    "alpha": (lambda v: 0 < v < 1, "in (0, 1)"),
    "null_splits": (_at_least(200), ">= 200"),
    "sobol_range": (lambda v: len(v) == 2, "[low, high]"),
    "sweep_factors": (lambda v: {0.0, 1.0} <= {float(f) for f in v}, "a list including 0 and 1"),
    "downsample_label": (lambda v: v in LABEL_NAMES, "a label's short name (" + ", ".join(LABEL_NAMES) + ")"),
    "downsample_negative_rate": (lambda v: isinstance(v, (int, float)) and 0 < v <= 1, "in (0, 1]"),
    "ablation_margin": (lambda v: isinstance(v, (int, float)) and v > 0, "> 0"),
    "calibration_margin": (lambda v: isinstance(v, (int, float)) and v > 0, "> 0"),
    "cohort_margin": (lambda v: isinstance(v, (int, float)) and v > 0, "> 0"),
}


def check(**values) -> None:
    """Each named parameter against its rule; one line naming the first that breaks it."""
    for name, value in values.items():
        ok, rule = RULES[name]
        if not ok(value):
            raise StudyError(f"parameter {name} must be {rule}, got {yamlio.shorten(value)}")


def check_all(params: dict, origin: dict[str, str] | None = None) -> None:
    """Every parameter of a profile that has a rule; the error names where the value came from."""
    for name in sorted(set(params) & set(RULES)):
        try:
            check(**{name: params[name]})
        except StudyError as exc:
            where = (origin or {}).get(name)
            raise StudyError(f"{where}: {exc}" if where else str(exc)) from None


__all__ = ["RULES", "check", "check_all"]

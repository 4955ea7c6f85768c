"""Engagement weight sets: the published presets, weight files, and their checks.

A weight set is ten numbers keyed by the published names (`scored_tweets_model_weight_fav`,
...). Presets: the two versions the-algorithm-ml README published, `april_2023` (default: 5 Apr
2023, commit b852108) and `march_2023` (31 Mar 2023, commit 78c3235: reply 27, one good-click
term; see its file for how that term is read), `equal_contribution` (derived from base rates:
every weighted head contributes equally on average) and `x_2026_mapped` (the 2026 weights mapped
onto the heads that exist). Nothing here needs torch: the analysis chapters read weights without
loading a model.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import yaml

from studylib import yamlio
from studylib.errors import StudyError
from studylib.io import dangling_link, write_text
from studylib.schema import BASE_RATES, WEIGHT_PREFIX, WEIGHT_SUFFIX, short_name

HEADS = tuple(WEIGHT_SUFFIX)  # the ten weighted heads, in the published config's order
PRESETS = ("april_2023", "march_2023", "equal_contribution", "x_2026_mapped")
DEFAULT_PRESET = "april_2023"


@dataclass(frozen=True)
class WeightSet:
    name: str
    weights: dict[str, float]  # head label name -> weight

    def vector(self, heads: tuple[str, ...]) -> np.ndarray:
        return np.array([self.weights[h] for h in heads], dtype=np.float64)

    def as_published(self) -> dict[str, float]:
        return {WEIGHT_PREFIX + WEIGHT_SUFFIX[h]: self.weights[h] for h in HEADS}


# The largest weight, in absolute value, that a weight set may hold. The published weights are at
# most 369 in absolute value (report, April 2023) and serving clamps them to [-20000, 0]; 1e6 is
# fifty times that bound. It keeps every number the study derives from weights finite, in float32
# as in float64: a score (ten weights times probabilities in [0, 1]) is at most 1e7 in absolute
# value, its square 1e14, a sum of squares over a billion candidates, seeds or resamples 1e23, and a
# weight's square times any count below 1e20 stays under float32's largest value (3.4e38). Without
# a bound, weights of 1e200 pass as finite, and the analysis' squares and variances turn into inf
# and NaN ("seed SD inf", "intraclass correlation nan") in a run that exits 0.
WEIGHT_BOUND = 1e6


def _text_number(value: str) -> str | None:
    """How to write `value`, a number YAML read as text (`1e3`, a quoted "0.5"), as a number."""
    try:
        number = float(value)
    except ValueError:
        return None
    if not math.isfinite(number):
        return None
    text = value.strip()
    match = re.fullmatch(r"([+-]?\d+)[eE]([+-]?\d+)", text)
    if match:  # YAML 1.1 (PyYAML) needs a dot in the mantissa to read an exponent as a number
        plain = int(number) if number.is_integer() and abs(number) < 1e16 else number
        return (f"YAML reads {text} as text, not a number (an exponent needs a dot in YAML 1.1); "
                f"write {match.group(1)}.0e{match.group(2)} or {plain}")
    return f"YAML reads {value!r} as text, not a number (quoted?); write {text} without quotes"


def parse_weights(raw, source: str, name: str) -> WeightSet:
    """Validate a mapping of published weight names; refuse unknown, missing, non-finite or
    out-of-bound values (|w| <= WEIGHT_BOUND), and a set whose weights are all zero."""
    if not isinstance(raw, dict):
        raise StudyError(f"{source}: must be a mapping of scored_tweets_model_weight_* to numbers")
    by_key = {WEIGHT_PREFIX + suffix: head for head, suffix in WEIGHT_SUFFIX.items()}
    weights = {}
    for key, value in raw.items():
        if key not in by_key:
            raise StudyError(f"{source}: unknown head weight {yamlio.shorten(key, quote=False)}")
        if isinstance(value, str) and _text_number(value):
            raise StudyError(f"{source}: {key}: {_text_number(value)}")
        try:
            number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
        except OverflowError:  # an integer beyond any float
            number = math.inf
        if not math.isfinite(number):
            raise StudyError(f"{source}: {key} must be a finite number, got {yamlio.shorten(value)}")
        if abs(number) > WEIGHT_BOUND:
            raise StudyError(f"{source}: {key} must be within ±{WEIGHT_BOUND:,.0f} (the published weights are at "
                             f"most 369 in absolute value), got {yamlio.shorten(value)}")
        weights[by_key[key]] = number
    missing = [key for key, head in by_key.items() if head not in weights]
    if missing:
        raise StudyError(f"{source}: missing head weight {missing[0]}")
    if not any(weights.values()):
        raise StudyError(f"{source}: every weight is 0, so every candidate scores 0 and nothing is ranked; "
                         "give at least one head a weight")
    return WeightSet(name, weights)


def equal_contribution(base_rates: dict[str, float] | None = None, anchor: str = HEADS[0],
                       anchor_weight: float = 0.5) -> WeightSet:
    """Weights with |weight · base rate| equal for every head (signs as published).

    Scaled so the anchor head (favorited) keeps its published weight of 0.5, which makes the
    set comparable to April 2023; the README says those weights started out this way.
    """
    rates = BASE_RATES if base_rates is None else base_rates
    april = load_weights(DEFAULT_PRESET)
    contribution = anchor_weight * rates[anchor]
    return WeightSet("equal_contribution",
                     {h: math.copysign(contribution / rates[h], april.weights[h]) for h in HEADS})


def load_weights(spec: str) -> WeightSet:
    """A preset name or a YAML file path."""
    if spec == "equal_contribution":
        return equal_contribution()
    if spec in PRESETS:
        path = Path(str(resources.files("studylib") / "weights" / f"{spec}.yaml"))
    else:
        path = Path(spec)
        if dangling_link(path):
            raise StudyError(f"--weights {dangling_link(path)}")
        if not path.exists():
            raise StudyError(f"--weights {spec}: neither a preset ({', '.join(PRESETS)}) nor an existing file")
    raw = yamlio.read(path, "weights file")
    return parse_weights(raw, str(path), path.stem)


def save_weights(weights: dict[str, float], path: str | Path, name: str = "my_weights") -> Path:
    """Write a weight file that `--weights`/`make study WEIGHTS=` accepts: `weights` maps each head's
    label name (or its short name) to its weight; checked like any weight file before writing."""
    by_short = {short_name(h): h for h in HEADS}
    values = {by_short.get(head, head): value for head, value in weights.items()}
    unknown = sorted(set(values) - set(HEADS))
    if unknown:
        raise StudyError(f"{path}: unknown head {unknown[0]}")
    published = {WEIGHT_PREFIX + WEIGHT_SUFFIX[h]: values[h] for h in HEADS if h in values}
    parse_weights(published, str(path), name)  # missing or non-finite weights are refused here
    text = (f"# {name}: ten scored_tweets_model_weight_* values for `make study WEIGHTS={path}`\n"
            + yaml.safe_dump({k: float(v) for k, v in published.items()}, sort_keys=False))
    return write_text(path, text)


__all__ = ["DEFAULT_PRESET", "HEADS", "PRESETS", "WEIGHT_BOUND", "WeightSet", "equal_contribution", "load_weights", "parse_weights",
           "save_weights"]

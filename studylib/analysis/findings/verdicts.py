"""Every finding's verdict is a value from a small set declared here, so that two studies' findings
compare by value (`core.compare`: the budget and world tables), never by wording. Counts and sizes
live in a finding's numbers, not in its verdict.

Each verdict is decided by one rule from the finding's numbers alone: `rule` registers it beside its
finding, `core.finding` applies it to the numbers the finding's function computed, and the tests
apply every rule to the numbers findings.json stores. A finding is thus numbers, then a verdict from them, then the
sentence.

A finding with one verdict per part (a cohort, an ablation variant, TwHIN's relation biases) joins
its parts as "part: value" with `PART_JOIN`; each part's value comes from its own set.
"""

from __future__ import annotations

import math
from typing import Callable

from studylib.schema import LABELS, short_name

PART_JOIN = "; "
HEAD_NAMES = tuple(short_name(label) for label in LABELS)


def extent(count: int, total: int) -> str:
    """'every', 'some' or 'no': how many of `total` things a verdict is about, as a value."""
    return "no" if count == 0 else "every" if count == total else "some"


def on_extent(count: int, total: int, thing: str) -> str:
    """'on every relation', 'on some relations', 'on no relation'."""
    word = extent(count, total)
    return f"on {word} {thing}{'s' if word == 'some' else ''}"


def _on_all(stem: str, thing: str) -> tuple[str, ...]:
    return tuple(f"{stem} on {word} {thing}{'s' if word == 'some' else ''}" for word in ("every", "some", "no"))


VERDICTS: dict[str, tuple[str, ...]] = {
    "base_rates": ("targets met", "targets missed"),
    "personal_signal": ("mostly personal", "partly personal", "mostly popularity", "unresolved"),
    "twhin_link_prediction": (_on_all("below popularity", "relation")
                              + _on_all("at the oracle goal", "relation")),
    "convergence": ("converged", "still learning", "unknown"),
    "head_quality": _on_all("better than chance", "evaluable head") + ("none evaluable",),
    "seed_spread": ("gap larger than seed noise", "gap comparable to seed noise", "unknown"),
    "positional_feed": ("positional worse than random", "positional no better than random",
                        "positional worse than by-name", "no clear difference"),
    "positional_heads": _on_all("below chance", "evaluable head"),
    "downsampling_calibration": ("calibration off", "calibration survives", "unresolved"),
    "score_shares": ("one head dominates", "no head dominates"),
    "model_vs_oracle_regret": ("captures most", "captures some", "no better than random", "above popularity",
                               "below popularity", "unresolved against popularity"),
    "regret_decomposition": ("shift dominates", "model error dominates", "shift and error both matter"),
    "feed_by_budget": ("depends on the feed's size", "no measurable dependence"),
    "distribution_tests": _on_all("a difference", "comparison"),
    "fork_scores": ("differs", "no difference", "unresolved"),
    "null_split_false_positive_rate": ("anti-conservative", "conservative", "consistent with α", "unresolved"),
    "tornado_top_head": HEAD_NAMES + ("unresolved",),
    "seed_replication": ("stable across seeds", "seed-dependent", "unresolved", "one seed"),
    "sobol_kendall_tau": ("model and oracle agree", "model and oracle disagree", "unresolved"),
    "sobol_utility": ("model and oracle agree", "model and oracle disagree", "unresolved"),
    "presets_paired": ("clear differences", "no clear difference"),
    "optimal_weights_gain": ("better weights exist", "fitted weights worse", "base weights not beaten"),
    "frontier_distance": ("off the model's frontier", "on the model's frontier"),
    "equal_contribution_claim": ("roughly equal", "far from equal"),
    "negative_flip": (),  # a description: no verdict
}
# Verdicts made of parts: part -> the values it may take (any part name of a cohort or variant).
PARTS: dict[str, tuple[str, ...]] = {
    "cohort_model_vs_truth": ("opposite to the truth", "understates the truth", "overstates the truth",
                              "tracks the truth", "misses a real difference", "invents a difference",
                              "no difference in either", "unresolved"),
    "embedding_ablation": ("helps", "hurts", "no difference", "unresolved", "too few seeds"),
    # after the main value: the variant with relation biases, and the oracle check of the weight search
    "twhin_link_prediction": _on_all("with relation biases below popularity", "relation"),
    "optimal_weights_gain": ("oracle check fails",),
}


NAMED_PARTS = ("cohort_model_vs_truth", "embedding_ablation")  # verdicts that are only "name: value" parts

# Values renamed since a committed findings file was made: (finding, old value) -> today's value. Findings
# are read through `renamed` (`core.by_id`), so a reference made by earlier code compares by value.
RENAMED: dict[tuple[str, str], str] = {
    ("null_split_false_positive_rate", "valid"): "consistent with α",  # 2026-12-07: exact intervals, plain words
    ("score_shares", "dominated"): "one head dominates",  # 2026-12-07: verdicts that read alone
    ("score_shares", "balanced"): "no head dominates",
    **{(sobol, old): f"model and oracle {old}" for sobol in ("sobol_kendall_tau", "sobol_utility")
       for old in ("agree", "disagree")},
}


def renamed(finding_id: str, verdict: str | None) -> str | None:
    """`verdict` in today's words (`RENAMED`); unchanged when it was not renamed."""
    return RENAMED.get((finding_id, verdict), verdict) if verdict is not None else None


def check_verdict(finding_id: str, verdict: str | None) -> None:
    """ValueError unless `verdict` is made of `finding_id`'s declared values; findings this module
    does not declare (a test's own) are not checked."""
    if finding_id not in VERDICTS and finding_id not in PARTS:
        return
    if verdict is None:
        if VERDICTS.get(finding_id) != ():
            raise ValueError(f"finding {finding_id}: no verdict")
        return
    parts = verdict.split(PART_JOIN)
    if finding_id in NAMED_PARTS:
        values = [part.split(": ", 1)[-1] for part in parts]
    else:
        main, *values = parts
        if main not in VERDICTS[finding_id]:
            raise ValueError(f"finding {finding_id}: verdict {main!r} is not one of {VERDICTS[finding_id]}")
    for value in values:
        if value not in PARTS.get(finding_id, ()):
            raise ValueError(f"finding {finding_id}: verdict part {value!r} is not one of {PARTS.get(finding_id, ())}")


# finding id -> the rule that decides its verdict from its numbers (as computed, or as findings.json
# stores them, where NaN and ±inf read None)
RULES: dict[str, Callable[[dict], str]] = {}


def rule(finding_id: str):
    """Registers the decorated function as `finding_id`'s verdict rule."""
    def register(decide: Callable[[dict], str]) -> Callable[[dict], str]:
        RULES[finding_id] = decide
        return decide
    return register


def number(numbers: dict, key: str, missing: float = math.nan) -> float:
    """A stored number for a rule: a missing key or a stored None (NaN, ±inf) reads `missing`."""
    value = numbers.get(key)
    return missing if value is None else value


__all__ = ["HEAD_NAMES", "NAMED_PARTS", "PARTS", "PART_JOIN", "RENAMED", "RULES", "VERDICTS", "check_verdict", "extent",
           "number", "on_extent", "renamed", "rule"]

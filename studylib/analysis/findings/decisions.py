"""What a finding decides: every test or interval among its numbers, with its p-value, and which
of them answer the study's questions (primary endpoints). `Finding.markdown` and the page plan read it."""

from __future__ import annotations

import math
from fnmatch import fnmatch

from scipy.stats import norm

from studylib.analysis.findings.hypotheses import FINDINGS_WITH_HYPOTHESES


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# The findings that answer the study's questions: those holding a hypothesis of the pre-registered
# primary family (`hypotheses.FAMILY`). Every other finding is secondary.
PRIMARY_ENDPOINTS = {i: () for i in FINDINGS_WITH_HYPOTHESES}
Z95 = 1.959963984540054  # the normal quantile behind a two-sided 95 % interval
# (finding id, stem) pairs whose _low/_high are not a 95 % interval of a difference from zero
NOT_INTERVALS = {("tornado_top_head", "top"), ("personal_signal", "personal_share"), *(("null_split_false_positive_rate", f"{t}_rate") for t in ("welch", "mwu", "ks"))}
# (finding id, stem pattern) whose interval is real but not one a normal approximation can test: a
# share of the oracle's gain over popularity divides by a gain near zero in relations with little
# personal signal, so its interval is lopsided and hundreds of percent wide. Its test is the paired
# MRR difference beside it (`*_trained_minus_popularity`).
NOT_TESTED = {("twhin_link_prediction", "*_trained_over_popularity")}
# (finding id, stem pattern) whose null is true or false by construction, so a test of it would say
# nothing: a regret is >= 0 and a share of the oracle's gain over a random order > 0 for any ranking
# that uses the scores at all; a downsampled set's raw rates differ from the truth because it was
# downsampled. Their intervals stay on the page; they are not decisions.
BY_CONSTRUCTION = {("model_vs_oracle_regret", "regret"), ("model_vs_oracle_regret", "seed_regret"),
                   ("regret_decomposition", "matched_regret"), ("regret_decomposition", "shifted_regret"),
                   ("model_vs_oracle_regret", "gain_share"), ("model_vs_oracle_regret", "seed_gain_share"),
                   ("model_vs_oracle_regret", "personal_share"),
                   ("regret_decomposition", "matched_oracle_gain_share"),
                   ("regret_decomposition", "shifted_oracle_gain_share"), ("presets_paired", "*_own_share"),
                   ("downsampling_calibration", "raw_bias")}
_NOT_ESTIMATES = ("_low", "_high", "_sd", "_conf", "_min", "_max", "_p")


def _interval_estimate(numbers: dict, stem: str, low: float, high: float) -> float:
    if _is_number(numbers.get(stem)):
        return float(numbers[stem])
    names = sorted((k for k, v in numbers.items() if k.startswith(stem + "_") and _is_number(v)
                    and not k.endswith(_NOT_ESTIMATES)), key=len)
    return float(numbers[names[0]]) if names else (low + high) / 2


def decisions(finding: dict) -> list[dict]:
    """The tests a finding's verdict rests on, each {"name", "p", "how"} (and "estimate", "low", "high"
    where it comes from an interval): its tests' p-values (numbers named `*_p`) where it has any,
    otherwise one per 95 % interval in its numbers (`<stem>_low`, `<stem>_high`), the two-sided p of
    a difference from zero under the normal approximation (standard error = width / 3.92)."""

    numbers = finding.get("numbers", {})
    equivalence = [{"name": k, "p": float(v), "how": "equivalence test (TOST) within the finding's margin",
                    "equivalence": True} for k, v in numbers.items() if k.endswith("_tost") and _is_number(v)]
    tested = [k for k, v in numbers.items() if k.endswith("_p") and _is_number(v)]
    if tested:
        return [{"name": k[:-2], "p": float(numbers[k]), "how": "from its test"} for k in tested] + equivalence
    out = []
    for key, low in numbers.items():
        stem = key[:-4]
        high = numbers.get(stem + "_high")
        if (not key.endswith("_low") or not _is_number(low) or not _is_number(high)
                or (finding.get("id"), stem) in NOT_INTERVALS
                or any(i == finding.get("id") and fnmatch(stem, pattern) for i, pattern in NOT_TESTED | BY_CONSTRUCTION)):
            continue
        se = (high - low) / (2 * Z95)
        if not se > 0:
            continue
        estimate = _interval_estimate(numbers, stem, low, high)
        out.append({"name": stem, "estimate": estimate, "low": float(low), "high": float(high),
                    "p": float(2 * norm.sf(abs(estimate) / se)),
                    "how": "from its 95 % interval (normal approximation, standard error = width / 3.92)"})
    return out + equivalence

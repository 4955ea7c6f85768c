"""The study's pre-registered primary family: one directional hypothesis per question, whose null is the
rule the finding's verdict applies, tested with Holm's procedure within the family.

Declared here, in code, before the converged study on today's world is run, so that run tests them.
A hypothesis reads its estimate and 95 % interval from its finding's numbers (or the finding's own
test's p-value) and gives a one-sided p under the normal approximation (standard error = width / 3.92).
The verdict a finding states is then read through `decided_verdict`: a verdict value that claims what
a hypothesis tests stands only if the hypothesis is rejected after Holm; otherwise the declared
fallback value replaces it. No other place decides what a primary verdict may claim.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy.stats import norm

from studylib.stats import holm
from studylib.analysis.findings.verdicts import PART_JOIN

Z95 = 1.959963984540054
# TwHIN's non-inferiority margin: a loss of 10 % of popularity's MRR. Ranking by counting is free and
# always available; an embedding that loses a tenth of what counting gets on pairs it has not seen is
# worse in a way a reader choosing between them would notice, and a smaller loss is within what a
# change of negatives or seed moves (docs/twhin.md).
TWHIN_MARGIN = 0.1
TWHIN_RELATIONS = ("fav", "reply", "retweet", "magic_recs", "follow")


@dataclass(frozen=True)
class Hypothesis:
    """H1: the finding's `estimate` is `greater` (or less) than `null`; H0 its complement."""
    name: str
    finding: str
    estimate: str  # the number's key; its interval is `<stem>_low`, `<stem>_high`
    stem: str
    null: float
    greater: bool
    statement: str  # the null as the findings page states it
    claim: str  # the alternative in plain words, as the abstract says it
    claims: tuple[str, ...]  # verdict values (or "part: value") that need H0 rejected
    fallback: str  # what the verdict reads when H0 stands
    p_key: str | None = None  # a two-sided p of the finding's own test, where it has one
    over_seeds: str | None = None  # the same number over training seeds (seed × user interval): used when present


FAMILY: tuple[Hypothesis, ...] = (
    Hypothesis("world_personal", "personal_signal", "personal_share", "personal_share", 0.25, True,
               "H0: at most 25 % of a top-k's value needs knowing the user (personal share ≤ 0.25)",
               "at least a quarter of a feed's value is personal",
               ("mostly personal", "partly personal"), "unresolved"),
    Hypothesis("model_beats_popularity", "model_vs_oracle_regret", "model_minus_popularity", "model_minus_popularity",
               0.0, True, "H0: the model's top k carries no more true value than the popularity oracle's "
               "(model − popularity ≤ 0, paired by request; over training seeds where the run has several)",
               "the model beats the popularity oracle", ("above popularity",), "unresolved against popularity",
               over_seeds="seed_user_model_minus_popularity"),
    Hypothesis("positional_costs", "positional_feed", "positional_minus_by_name_utility", "positional_minus_by_name",
               0.0, False, "H0: the original's positional label pairing costs the feed nothing "
               "(positional − by-name ≥ 0)", "the positional pairing costs the feed value",
               ("positional worse than random", "positional no better than random", "positional worse than by-name"),
               "no clear difference"),
    Hypothesis("error_over_shift", "regret_decomposition", "shift_share", "shift_share", 0.5, False,
               "H0: the data shift causes at least half of the regret (shift share ≥ 0.5)",
               "the model's errors, not the shift, cause most of the regret",
               ("model error dominates",), "shift and error both matter"),
    Hypothesis("weights_beaten", "optimal_weights_gain", "model_gain", "model_gain", 0.0, True,
               "H0: weights fitted on half of the users gain nothing on the other half (gain ≤ 0)",
               "searched weights beat the published ones on unseen users",
               ("better weights exist",), "base weights not beaten"),
    Hypothesis("trained_embeddings_help", "embedding_ablation", "trained_gain", "trained_gain", 0.0, True,
               "H0: TwHIN's trained embeddings do not raise the ranker's median AUROC over random vectors "
               "(gain ≤ 0, paired by seed)", "trained embeddings help the ranker",
               ("trained: helps",), "trained: unresolved", p_key="trained_gain_p"),
    Hypothesis("twhin_non_inferior", "twhin_link_prediction", "node_bias_over_popularity", "node_bias_over_popularity",
               -TWHIN_MARGIN, True, f"H0: on some relation where the oracle beats popularity, TwHIN with relation "
               f"biases loses at least {100 * TWHIN_MARGIN:.0f} % of popularity's MRR on unseen pairs "
               "(intersection–union over relations)",
               f"TwHIN with relation biases loses less than {100 * TWHIN_MARGIN:.0f} % of popularity's MRR on unseen "
               "pairs, on every relation where the oracle beats popularity", (), ""),
)
FINDINGS_WITH_HYPOTHESES = tuple(dict.fromkeys(h.finding for h in FAMILY))


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _one_sided(estimate: float, low: float, high: float, null: float, greater: bool) -> float:
    se = (high - low) / (2 * Z95)
    if not se > 0:
        return float((estimate > null) if not greater else (estimate <= null))
    z = (estimate - null) / se
    return float(norm.sf(z) if greater else norm.cdf(z))


def _twhin(h: Hypothesis, n: dict) -> dict | None:
    """Intersection–union: non-inferior on every relation whose oracle is clearly above popularity; p is the
    largest relation's one-sided p, and each relation's point estimate must also be ≥ 0."""
    parts = []
    for r in TWHIN_RELATIONS:
        key, ratio, oracle = f"{r}_{h.stem}", n.get(f"{r}_oracle_to_popularity"), n.get(f"{r}_oracle_mrr")
        if not (_number(n.get(key)) and _number(n.get(f"{key}_low")) and _number(ratio) and _number(oracle)
                and ratio > 0 and n.get(f"{r}_oracle_over_popularity_low", 0) > 0):
            continue
        delta = TWHIN_MARGIN * oracle / ratio  # a tenth of popularity's MRR
        parts.append({"relation": r, "estimate": n[key], "low": n[f"{key}_low"], "high": n[f"{key}_high"],
                      "margin": delta, "p": _one_sided(n[key], n[f"{key}_low"], n[f"{key}_high"], -delta, True)})
    if not parts:
        return None
    worst = max(parts, key=lambda part: part["p"])
    return {"estimate": min(part["estimate"] for part in parts), "low": worst["low"], "high": worst["high"],
            "p": worst["p"], "relations": [part["relation"] for part in parts],
            "all_estimates_at_least_zero": all(part["estimate"] >= 0 for part in parts),
            "margins": {part["relation"]: part["margin"] for part in parts}}


def evaluate(h: Hypothesis, finding: dict | None) -> dict | None:
    """One hypothesis on its finding: {"estimate", "low", "high", "p"} (one-sided), or None where the
    finding or its numbers are absent (the hypothesis is then not tested, and says so)."""
    if finding is None:
        return None
    n = finding.get("numbers", {})
    if h.finding == "twhin_link_prediction":
        return _twhin(h, n)
    if h.over_seeds is not None and _number(n.get(h.over_seeds)):  # the mean over seeds, its seed × user interval
        low, high = n.get(f"{h.over_seeds}_low"), n.get(f"{h.over_seeds}_high")
        if _number(low) and _number(high):
            estimate = float(n[h.over_seeds])
            return {"estimate": estimate, "low": float(low), "high": float(high), "over_seeds": True,
                    "p": _one_sided(estimate, float(low), float(high), h.null, h.greater)}
    estimate = n.get(h.estimate)
    if not _number(estimate):
        return None
    if h.p_key is not None:
        two_sided = n.get(h.p_key)
        if not _number(two_sided):
            return None
        toward = (estimate > h.null) == h.greater
        return {"estimate": float(estimate), "p": float(two_sided / 2 if toward else 1 - two_sided / 2)}
    low, high = n.get(f"{h.stem}_low"), n.get(f"{h.stem}_high")
    if not (_number(low) and _number(high)):
        return None
    return {"estimate": float(estimate), "low": float(low), "high": float(high),
            "p": _one_sided(float(estimate), float(low), float(high), h.null, h.greater)}


def run_family(found: dict[str, dict], alpha: float) -> dict[str, dict]:
    """Every hypothesis of the family on a page's findings, Holm-adjusted within the tested ones:
    name -> {"finding", "statement", "null", "alternative", "estimate", "low", "high", "p", "p_adjusted",
    "rejected"} (p None and rejected False where it could not be tested)."""
    results = {}
    for h in FAMILY:
        r = evaluate(h, found.get(h.finding))
        results[h.name] = {"finding": h.finding, "statement": h.statement, "claim": h.claim, "null": h.null,
                           "alternative": "greater" if h.greater else "less", **(r or {"p": None})}
    tested = [name for name, r in results.items() if r["p"] is not None]
    adjusted = holm([results[name]["p"] for name in tested]) if tested else []
    for name in results:
        results[name].update(p_adjusted=None, rejected=False)
    for name, p in zip(tested, adjusted):
        r = results[name]
        r["p_adjusted"] = float(p)
        r["rejected"] = bool(p < alpha) and r.get("all_estimates_at_least_zero", True)
    return results


# Claims of absence shown by an equivalence test (a secondary decision): finding -> (the TOST's decision
# name, "{part}" standing for the verdict part's name where the verdict has parts; the value it shows;
# what the verdict reads when the TOST lapses under the page's adjustment).
EQUIVALENCE_CLAIMS = {
    "embedding_ablation": ("{part}_tost", "no difference", "unresolved"),
    "cohort_model_vs_truth": ("{part}_bias_tost", "tracks the truth", "unresolved"),
    "fork_scores": ("equivalence_tost", "no difference", "unresolved"),
    "downsampling_calibration": ("bias_tost", "calibration survives", "unresolved"),
}


def decided_verdict(finding_id: str, verdict: str | None, results: dict[str, dict],
                    lapsed: list[str] | tuple[str, ...] = ()) -> str | None:
    """The verdict a finding may state after the page's plan: each value (or "part: value") that claims
    what a primary hypothesis tests is replaced by that hypothesis's fallback unless the hypothesis was
    rejected, and each absence its equivalence test showed becomes "unresolved" when that test is among
    the decisions that lapse (`lapsed`) under the secondary adjustment."""
    if verdict is None:
        return None
    parts = verdict.split(PART_JOIN)
    for h in FAMILY:
        if h.finding != finding_id or not h.claims or results.get(h.name, {}).get("rejected"):
            continue
        parts = [h.fallback if part in h.claims else part for part in parts]
    if finding_id in EQUIVALENCE_CLAIMS:
        test, shown, fallback = EQUIVALENCE_CLAIMS[finding_id]
        out = []
        for part in parts:
            name, _, value = part.rpartition(": ")
            if value == shown and test.format(part=name) in lapsed:
                part = f"{name}: {fallback}" if name else fallback
            out.append(part)
        parts = out
    return PART_JOIN.join(parts)


__all__ = ["EQUIVALENCE_CLAIMS", "FAMILY", "FINDINGS_WITH_HYPOTHESES", "Hypothesis", "TWHIN_MARGIN", "decided_verdict", "evaluate",
           "run_family"]

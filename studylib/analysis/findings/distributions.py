"""Chapter 4's findings: tests that respect the design (users, requests)."""

from __future__ import annotations

import math

import pandas as pd
from scipy import stats as scipy_stats

from studylib.analysis.findings.verdicts import number, on_extent, rule
from studylib.analysis.findings.core import NULL_RATE_RANGE, Finding, finding, _ci, excludes_zero, sentence, listed
from studylib.outputs import Result
from studylib.stats import absence_verdict, tost_from_interval


def _exact_interval(rate: float, splits: int) -> tuple[float, float]:
    """The Clopper–Pearson 95 % interval of a rejection rate observed over `splits` null splits."""
    ci = scipy_stats.binomtest(int(round(rate * splits)), splits).proportion_ci(0.95, method="exact")
    return float(ci.low), float(ci.high)


@rule("null_split_false_positive_rate")
def null_split_false_positive_rate_verdict(n: dict) -> str:
    """Each test's exact interval against α: above it, below it, or all inside the valid window."""
    alpha, lo, hi = n["alpha"], n["valid_from"], n["valid_to"]
    bounds = [(number(n, f"{k}_rate_low"), number(n, f"{k}_rate_high")) for k in ("welch", "mwu", "ks")]
    if any(low > alpha for low, _ in bounds):
        return "anti-conservative"
    if any(high < alpha for _, high in bounds):
        return "conservative"
    return "consistent with α" if all(lo <= low and high <= hi for low, high in bounds) else "unresolved"


def null_split_false_positive_rate(rates: dict, icc: dict, split: str = "user", unit: str = "user") -> Finding:
    """rates: inference.null_split_rates (split by `split`, tested on `unit` means); icc: the candidates'
    intraclass correlation within a `split` cluster."""
    lo, hi = NULL_RATE_RANGE
    alpha = rates["alpha"]
    study_rates = {k: rates[f"{k}_rate"] for k in ("welch", "mwu", "ks")}
    numbers = {"splits": rates["splits"], "alpha": alpha, **{f"{k}_rate": v for k, v in study_rates.items()},
               **{k: v for k, v in rates.items() if k.startswith("naive_")}, **icc}
    lo, hi = (lo, hi) if alpha == 0.05 else (0.4 * alpha, 1.6 * alpha)
    # each rate with its exact (Clopper–Pearson) 95 % interval over the splits, which keeps its coverage at
    # rates near 0 where the normal approximation does not: a rate is off when its interval excludes α, and
    # the tests are "consistent with α" only when every interval lies inside [lo, hi] (equivalence, not a
    # point in a window)
    n = max(1, int(rates["splits"]))
    bounds = {k: _exact_interval(v, n) for k, v in study_rates.items()}
    numbers.update({f"{k}_rate_{side}": b[i] for k, b in bounds.items() for i, side in enumerate(("low", "high"))},
                   valid_from=lo, valid_to=hi)
    numbers.update(split=split, unit=unit)
    return finding("null_split_false_positive_rate", "04_distributions", numbers, Result.NULL_SPLITS)


@sentence("null_split_false_positive_rate")
def null_split_false_positive_rate_sentence(n: dict, verdict: str) -> str:
    lo, hi, split, unit = n["valid_from"], n["valid_to"], n["split"], n["unit"]
    said = {"anti-conservative": ("At least one test rejects more often than stated (its exact interval over the "
                                  "splits lies above α); its p-values below overstate the evidence."),
            "conservative": ("At least one test rejects less often than stated (its exact interval over the splits "
                             "lies below α): its p-values are conservative, and real differences may be missed."),
            "consistent with α": (f"The tests hold their stated false-positive rate: every rate's exact interval lies "
                                  f"within {100 * lo:g}–{100 * hi:g} %."),
            "unresolved": (f"No rate is shown off α, but not every rate's exact interval lies within "
                           f"{100 * lo:g}–{100 * hi:g} %: more splits are needed to call the tests valid.")}[verdict]
    text = (f"Candidates of one {split} are correlated (intraclass correlation {n['icc']:.2f}, design effect "
            f"{n['design_effect']:.1f} at {n['mean_cluster_size']:.0f} candidates per {split}). On "
            f"{n['splits']} random {split}-level splits of one data set (no real difference), the chapter's tests "
            f"on {unit} means reject at α = {n['alpha']:g} in {100 * n['welch_rate']:.1f} % (Welch), "
            f"{100 * n['mwu_rate']:.1f} % (Mann–Whitney) and {100 * n['ks_rate']:.1f} % (KS) of the splits")
    if "naive_welch_rate" in n:
        text += (f"; treating candidates as independent, the same tests would reject in "
                 f"{100 * n['naive_welch_rate']:.0f} %, {100 * n['naive_mwu_rate']:.0f} % and "
                 f"{100 * n['naive_ks_rate']:.0f} % of {n['naive_splits']} splits")
    return text + ". " + said


def distribution_tests(tests: pd.DataFrame, alpha: float) -> Finding:
    """tests: one row per comparison (comparison, unit, difference[_low/_high], *_p_holm)."""
    numbers = {"comparisons": len(tests), "tests_in_family": 3 * len(tests), "alpha": alpha,
               "comparison_names": "; ".join(str(c) for c in tests["comparison"])}
    rejected = 0
    for _, r in tests.iterrows():  # the raw p-values, for the page-wide plan (`page_plan`)
        slug = _slug(r["comparison"])
        numbers.update({f"{slug}_{name}_p": float(r[f"{name}_p"]) for name in ("welch", "mwu", "ks") if f"{name}_p" in r})
        shown = any(r[key] < alpha for key in ("welch_p_holm", "mwu_p_holm", "ks_p_holm"))
        rejected += shown
        numbers.update({f"{slug}_unit": r["unit"], f"{slug}_difference": float(r["difference"]),
                        f"{slug}_difference_low": float(r["difference_low"]),
                        f"{slug}_difference_high": float(r["difference_high"]), f"{slug}_shown": bool(shown)})
    numbers["rejected"] = rejected
    numbers["shared_users_max"] = int(tests["shared_clusters"].max()) if "shared_clusters" in tests and len(tests) else 0
    return finding("distribution_tests", "04_distributions", numbers, Result.TESTS)


def _slug(comparison) -> str:
    return "_".join(str(comparison).replace("-", " ").split())


@sentence("distribution_tests")
def distribution_tests_sentence(n: dict, verdict: str) -> str:
    rejected, kept = [], []
    for comparison in listed(n, "comparison_names", "; "):
        slug = _slug(comparison)
        desc = (f"{comparison} ({n[f'{slug}_unit']} means: difference {n[f'{slug}_difference']:+.2f}, "
                f"{_ci(n[f'{slug}_difference_low'], n[f'{slug}_difference_high'], '+.2f')})")
        (rejected if n[f"{slug}_shown"] else kept).append(desc)
    shared = n["shared_users_max"]
    return (f"Of {n['comparisons']} comparisons ({n['tests_in_family']} tests, Holm-corrected as one family at "
            f"α = {n['alpha']:g}), {len(rejected)} {'shows' if len(rejected) == 1 else 'show'} a difference: "
            + ("; ".join(rejected) if rejected else "none") + ". "
            + (f"No test rejects for: {'; '.join(kept)}." if kept else "")
            + (f" A user found in both groups of a comparison (at most {shared} in one) counts on one side only, "
               "chosen at random, so the groups' users are disjoint as the tests assume." if shared else ""))


@rule("distribution_tests")
def distribution_tests_verdict(n: dict) -> str:
    return "a difference " + on_extent(n["rejected"], n["comparisons"], "comparison")


# The smallest difference in mean score per user that matters when a model trained on random labels is
# compared across data sets: a tenth of the real model's score spread (a shift that moves no ranking).
FORK_MARGIN = 0.1


@rule("fork_scores")
def fork_scores_verdict(n: dict) -> str:
    differs = excludes_zero(number(n, "difference_low"), number(n, "difference_high"))
    return absence_verdict(differs, {"p": number(n, "equivalence_tost")}, n["alpha"])


def fork_scores(test: pd.Series | dict, real_std: float, fork_std: float, alpha: float) -> Finding:
    """test: inference.compare_clusters of the fork model's scores on planted vs random data (user means).
    "no difference" needs an equivalence test (TOST within ±FORK_MARGIN × the real model's score SD);
    an interval that neither excludes zero nor fits in the margin is "unresolved"."""
    numbers = {"real_std": float(real_std), "fork_std": float(fork_std),
               "std_ratio": float(fork_std / real_std) if real_std > 0 else math.nan,
               "difference": float(test["difference"]), "difference_low": float(test["difference_low"]),
               "difference_high": float(test["difference_high"]), "welch_p": float(test["welch_p"])}
    margin = FORK_MARGIN * real_std
    eq = tost_from_interval(numbers["difference"], numbers["difference_low"], numbers["difference_high"], margin, alpha)
    numbers.update({"margin": float(margin), "equivalence_tost": eq["p"], "equivalence_power": eq["power"],
                    "alpha": alpha})
    return finding("fork_scores", "04_distributions", numbers, Result.FORK)


@sentence("fork_scores")
def fork_scores_sentence(n: dict, verdict: str) -> str:
    margin, tost, power = n["margin"], n["equivalence_tost"], n["equivalence_power"]
    said = {"differs": ": a difference, but one that comes from the features the model fitted to noise, not from user "
                       "behaviour.",
            "no difference": (f": no difference, shown by an equivalence test within ±{margin:.3g} (a tenth of the real "
                              f"model's score SD; TOST p = {tost:.2g})."),
            "unresolved": (f": neither a difference nor its absence is shown (equivalence within ±{margin:.3g}, a tenth "
                           f"of the real model's score SD: TOST p = {tost:.2g}, power {power:.2f}).")}[verdict]
    return (f"The model trained on random labels spreads its scores with a standard deviation of {n['fork_std']:.3g}, "
            f"{n['std_ratio']:.2f}× the real model's {n['real_std']:.3g}. Its mean score per user on planted vs random "
            f"candidates differs by {n['difference']:+.2f} ({_ci(n['difference_low'], n['difference_high'], '+.2f')}; "
            f"Welch p = {n['welch_p']:.2g} on user means)" + said
            + " A score distribution of a model trained on random labels describes the weights and the base rates, "
              "not what a ranker learns; only planted (or real) labels make the comparison meaningful.")

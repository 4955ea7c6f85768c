"""Chapter 4's findings: tests that respect the design (users, requests)."""

from __future__ import annotations

import math

import pandas as pd
from scipy import stats as scipy_stats

from studylib.analysis.findings.verdicts import number, on_extent, rule
from studylib.analysis.findings.core import NULL_RATE_RANGE, Finding, _ci, excludes_zero
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
    verdict = null_split_false_positive_rate_verdict(numbers)
    said = {"anti-conservative": ("At least one test rejects more often than stated (its exact interval over the "
                                  "splits lies above α); its p-values below overstate the evidence."),
            "conservative": ("At least one test rejects less often than stated (its exact interval over the splits "
                             "lies below α): its p-values are conservative, and real differences may be missed."),
            "consistent with α": (f"The tests hold their stated false-positive rate: every rate's exact interval lies "
                                  f"within {100 * lo:g}–{100 * hi:g} %."),
            "unresolved": (f"No rate is shown off α, but not every rate's exact interval lies within "
                           f"{100 * lo:g}–{100 * hi:g} %: more splits are needed to call the tests valid.")}[verdict]
    text = (f"Candidates of one {split} are correlated (intraclass correlation {icc['icc']:.2f}, design effect "
            f"{icc['design_effect']:.1f} at {icc['mean_cluster_size']:.0f} candidates per {split}). On "
            f"{rates['splits']} random {split}-level splits of one data set (no real difference), the chapter's tests "
            f"on {unit} means reject at α = {alpha:g} in {100 * study_rates['welch']:.1f} % (Welch), "
            f"{100 * study_rates['mwu']:.1f} % (Mann–Whitney) and {100 * study_rates['ks']:.1f} % (KS) of the splits")
    if "naive_welch_rate" in rates:
        text += (f"; treating candidates as independent, the same tests would reject in "
                 f"{100 * rates['naive_welch_rate']:.0f} %, {100 * rates['naive_mwu_rate']:.0f} % and "
                 f"{100 * rates['naive_ks_rate']:.0f} % of {rates['naive_splits']} splits")
    text += ". " + said
    return Finding("null_split_false_positive_rate", "04_distributions", text, numbers, verdict, Result.NULL_SPLITS)


def distribution_tests(tests: pd.DataFrame, alpha: float) -> Finding:
    """tests: one row per comparison (comparison, unit, difference[_low/_high], *_p_holm)."""
    rejected, kept = [], []
    for _, r in tests.iterrows():
        holm_hits = [name for name, key in (("Welch", "welch_p_holm"), ("Mann–Whitney", "mwu_p_holm"), ("KS", "ks_p_holm"))
                     if r[key] < alpha]
        desc = (f"{r['comparison']} ({r['unit']} means: difference {r['difference']:+.2f}, "
                f"{_ci(r['difference_low'], r['difference_high'], '+.2f')})")
        (rejected if holm_hits else kept).append(desc)
    numbers = {"comparisons": len(tests), "rejected": len(rejected), "tests_in_family": 3 * len(tests), "alpha": alpha}
    for _, r in tests.iterrows():  # the raw p-values, for the page-wide plan (`page_plan`)
        slug = "_".join(str(r["comparison"]).replace("-", " ").split())
        numbers.update({f"{slug}_{name}_p": float(r[f"{name}_p"]) for name in ("welch", "mwu", "ks") if f"{name}_p" in r})
    shared = int(tests["shared_clusters"].max()) if "shared_clusters" in tests and len(tests) else 0
    numbers["shared_users_max"] = shared
    text = (f"Of {len(tests)} comparisons ({3 * len(tests)} tests, Holm-corrected as one family at α = {alpha:g}), "
            f"{len(rejected)} {'shows' if len(rejected) == 1 else 'show'} a difference: "
            + ("; ".join(rejected) if rejected else "none") + ". "
            + (f"No test rejects for: {'; '.join(kept)}." if kept else "")
            + (f" A user found in both groups of a comparison (at most {shared} in one) counts on one side only, "
               "chosen at random, so the groups' users are disjoint as the tests assume." if shared else ""))
    return Finding("distribution_tests", "04_distributions", text, numbers, distribution_tests_verdict(numbers),
                   Result.TESTS)


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
    verdict = fork_scores_verdict(numbers)
    said = {"differs": ": a difference, but one that comes from the features the model fitted to noise, not from user "
                       "behaviour.",
            "no difference": (f": no difference, shown by an equivalence test within ±{margin:.3g} (a tenth of the real "
                              f"model's score SD; TOST p = {eq['p']:.2g})."),
            "unresolved": (f": neither a difference nor its absence is shown (equivalence within ±{margin:.3g}, a tenth "
                           f"of the real model's score SD: TOST p = {eq['p']:.2g}, power {eq['power']:.2f}).")}[verdict]
    text = (f"The model trained on random labels spreads its scores with a standard deviation of {fork_std:.3g}, "
            f"{numbers['std_ratio']:.2f}× the real model's {real_std:.3g}. Its mean score per user on planted vs random "
            f"candidates differs by {numbers['difference']:+.2f} ({_ci(test['difference_low'], test['difference_high'], '+.2f')}; "
            f"Welch p = {numbers['welch_p']:.2g} on user means)" + said
            + " A score distribution of a model trained on random labels describes the weights and the base rates, "
              "not what a ranker learns; only planted (or real) labels make the comparison meaningful.")
    return Finding("fork_scores", "04_distributions", text, numbers, verdict, Result.FORK)

"""Chapter 3's findings: scores, the feed against the oracle and popularity, regret, cohorts."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from studylib.stats import tost_from_interval
from studylib.analysis.findings.verdicts import PART_JOIN, number, rule
from studylib.analysis.findings.core import Finding, _ci, excludes_zero
from studylib.analysis.ranking import personal_share
from studylib.outputs import Result


@rule("score_shares")
def score_shares_verdict(n: dict) -> str:
    return "one head dominates" if number(n, "top_share") > 2 * (1.0 / n["heads"]) else "no head dominates"


def score_shares(shares: pd.DataFrame, weights: str) -> Finding:
    top = shares.iloc[0]
    top3 = float(shares["mean_share"].iloc[:3].sum())
    low = shares.iloc[-1]
    numbers = {"top_head": top["head"], "top_share": float(top["mean_share"]), "top3_share": top3,
               "smallest_head": low["head"], "smallest_share": float(low["mean_share"]), "heads": len(shares)}
    even = 1.0 / len(shares)
    verdict = score_shares_verdict(numbers)
    text = (f"With the `{weights}` weights {top['head']} makes up {100 * top['mean_share']:.0f} % of a candidate's "
            f"score on average and the three largest heads {100 * top3:.0f} %, against {100 * even:.0f} % per head for "
            f"an equal mix; the smallest contributor is {low['head']} ({100 * low['mean_share']:.1f} %). These shares "
            "are measured at the study's scaled base rates (`rate_scale`).")
    return Finding("score_shares", "03_score", text, numbers, verdict, Result.SHARES)


@rule("model_vs_oracle_regret")
def model_vs_oracle_regret_verdict(n: dict) -> str:
    """Beside popularity where the run has it (the paired difference, else the share of the oracle's
    gain over popularity), else the share of the oracle's gain over a random order."""
    for stem in ("model_minus_popularity", "popularity_gain_share"):
        if f"{stem}_low" in n:
            low, high = number(n, f"{stem}_low"), number(n, f"{stem}_high")
            return ("above popularity" if low > 0 else "below popularity" if high < 0
                    else "unresolved against popularity")
    share = number(n, "gain_share")
    return "captures most" if share >= 0.5 else "captures some" if share > 0 else "no better than random"


def model_vs_oracle_regret(summary: pd.DataFrame, weights: str, k: int, seeds: pd.DataFrame | None = None,
                           vs_popularity: pd.DataFrame | None = None, seed_user: pd.DataFrame | None = None) -> Finding:
    """summary: ranking.feed_comparison rows for rankings model, oracle, random (and popularity,
    learned_popularity where the scored set has them); seeds: regret.across_seeds rows (metric regret,
    oracle_gain_share) of the main model's training seeds; vs_popularity: feed_comparison's paired rows
    against the popularity oracle (reference "popularity"); seed_user: regret.seed_user_intervals rows, the
    headline numbers over training seeds with their seed × user interval (the primary numbers)."""
    m = summary.set_index(["ranking", "metric"])
    row = lambda metric: m.loc[("model", metric)]  # noqa: E731
    numbers = {"weights": weights, "oracle_utility": float(m.loc[("oracle", "utility"), "mean"]),
               "model_utility": float(row("utility")["mean"]),
               "random_utility": float(m.loc[("random", "utility"), "mean"]),
               "regret": float(row("regret")["mean"]), "regret_low": float(row("regret")["low"]),
               "regret_high": float(row("regret")["high"]),
               "gain_share": float(row("oracle_gain_share")["mean"]),
               "gain_share_low": float(row("oracle_gain_share")["low"]),
               "gain_share_high": float(row("oracle_gain_share")["high"]),
               "kendall_tau_oracle": float(row("kendall_tau_oracle")["mean"]), f"ndcg@{k}": float(row(f"ndcg@{k}")["mean"])}
    share = numbers["gain_share"]
    text = (f"Ranked by the model with the `{weights}` weights, the top {k} of a request carries a true weighted value "
            f"of {numbers['model_utility']:.3g} per request, against {numbers['oracle_utility']:.3g} for the oracle "
            f"(ranking by the true probabilities) and {numbers['random_utility']:.3g} for a random order: a regret of "
            f"{numbers['regret']:.3g} ({_ci(numbers['regret_low'], numbers['regret_high'], '.3g')}). The model captures "
            f"{100 * share:.0f} % ({_ci(100 * numbers['gain_share_low'], 100 * numbers['gain_share_high'], '.0f')}) of what "
            f"the oracle gains over a random order; Kendall's τ with the oracle's order "
            f"{numbers['kendall_tau_oracle']:.2f}, NDCG@{k} {numbers[f'ndcg@{k}']:.2f}.")
    if ("popularity", "utility") in m.index:
        text += _beside_popularity(m, numbers, vs_popularity, k)
    if seeds is not None and len(seeds) and int(seeds["seeds"].iloc[0]) > 1:
        by = seeds.set_index("metric")
        r, g = by.loc["regret"], by.loc["oracle_gain_share"]
        numbers.update(seeds=int(r["seeds"]), seed_regret_mean=float(r["mean"]), seed_regret_sd=float(r["seed_sd"]),
                       seed_regret_low=float(r["low"]), seed_regret_high=float(r["high"]),
                       seed_gain_share_mean=float(g["mean"]), seed_gain_share_low=float(g["low"]),
                       seed_gain_share_high=float(g["high"]))
        text += (f" Trained again with {int(r['seeds'])} seeds, the regret is {r['mean']:.3g} on average (seed SD "
                 f"{r['seed_sd']:.2g}; 95 % t-interval over seeds {r['low']:.3g} to {r['high']:.3g}) and the share "
                 f"{100 * g['mean']:.0f} % ({100 * g['low']:.0f} to {100 * g['high']:.0f} %): the interval above is "
                 "about sampling users for one trained model, this one about training it again.")
    if seed_user is not None and len(seed_user) and int(seed_user["seeds"].iloc[0]) > 1:
        by = seed_user.set_index("metric")
        for metric, key in (("regret", "regret"), ("oracle_gain_share", "gain_share"),
                            ("model_minus_popularity", "model_minus_popularity")):
            if metric in by.index:
                r = by.loc[metric]
                numbers.update({f"seed_user_{key}": float(r["mean"]), f"seed_user_{key}_low": float(r["low"]),
                                f"seed_user_{key}_high": float(r["high"])})
        numbers["seed_user_indicative"] = bool(by["indicative"].iloc[0])
        said = [f"regret {numbers['seed_user_regret']:.3g} ({_ci(numbers['seed_user_regret_low'], numbers['seed_user_regret_high'], '.3g')})"]
        if "seed_user_model_minus_popularity" in numbers:
            said.append(f"model − popularity {numbers['seed_user_model_minus_popularity']:+.3g} "
                        f"({_ci(numbers['seed_user_model_minus_popularity_low'], numbers['seed_user_model_minus_popularity_high'], '+.3g')})")
        text += (f" Over the {int(by['seeds'].iloc[0])} training seeds together, with an interval that resamples both "
                 f"the seeds and the users (two-stage bootstrap): " + "; ".join(said)
                 + (" — indicative: so few seeds make the seed draw coarse." if numbers["seed_user_indicative"] else ".")
                 + " These are the study's primary numbers for this question.")
    return Finding("model_vs_oracle_regret", "03_score", text, numbers, model_vs_oracle_regret_verdict(numbers),
                   Result.FEED)


def _beside_popularity(m: pd.DataFrame, numbers: dict, paired: pd.DataFrame | None, k: int) -> str:
    """The model against the rankings that ignore the user: numbers added in place; the text."""
    pop = lambda ranking, metric: m.loc[(ranking, metric)]  # noqa: E731
    personal = personal_share(m)
    over = pop("model", "popularity_gain_share")
    numbers.update(popularity_utility=float(pop("popularity", "utility")["mean"]),
                   personal_share=personal["mean"], personal_share_low=personal["low"],
                   personal_share_high=personal["high"],
                   popularity_gain_share=float(over["mean"]), popularity_gain_share_low=float(over["low"]),
                   popularity_gain_share_high=float(over["high"]))
    if ("learned_popularity", "utility") in m.index:
        numbers["learned_popularity_utility"] = float(pop("learned_popularity", "utility")["mean"])
    text = (f" The best ranking that ignores who asks (the popularity oracle) carries {numbers['popularity_utility']:.3g}"
            + (f" and smoothed per-tweet engagement rates learned from the training examples "
               f"{numbers['learned_popularity_utility']:.3g}" if "learned_popularity_utility" in numbers else "")
            + f"; {100 * numbers['personal_share']:.0f} % of the oracle's gain over a random order needs knowing the user.")
    if paired is None or paired.empty:
        return text
    d = paired[(paired["ranking"] == "model") & (paired["metric"] == "utility")].iloc[0]
    numbers.update(model_minus_popularity=float(d["difference"]), model_minus_popularity_low=float(d["low"]),
                   model_minus_popularity_high=float(d["high"]))
    text += (f" The model's top {k} carries {d['difference']:+.3g} per request against the popularity oracle "
             f"({_ci(d['low'], d['high'], '+.3g')}, paired by request): it captures {100 * over['mean']:.0f} % "
             f"({_ci(100 * over['low'], 100 * over['high'], '.0f')}) of the oracle's gain over popularity.")
    verdict = model_vs_oracle_regret_verdict(numbers)
    text += {"above popularity": " What it learned about the user is worth something beyond item popularity.",
             "below popularity": " Ranking by item popularity alone would serve these users better.",
             "unresolved against popularity": (" Whether it beats a ranking that ignores the user is unresolved "
                                               "at this size.")}[verdict]
    return text


@rule("regret_decomposition")
def regret_decomposition_verdict(n: dict) -> str:
    low, high = number(n, "shift_share_low"), number(n, "shift_share_high")
    return "shift dominates" if low > 0.5 else "model error dominates" if high < 0.5 else "shift and error both matter"


def regret_decomposition(parts: pd.DataFrame, heads: pd.DataFrame, matched: pd.DataFrame, shifted: pd.DataFrame,
                         ratios: pd.DataFrame, matched_set: str, shifted_set: str, k: int) -> Finding:
    """parts, heads: regret.decompose on the shifted set; matched, shifted: ranking.feed_comparison
    rows (ranking model) on the model's own distribution and on the shifted set; ratios:
    regret.calibration_ratios on the shifted set."""
    p = parts.set_index("part")
    share = p.loc["shift's share of the regret"]
    cost = p.loc["cost of the shift (removed by the re-fit)"]
    left = p.loc["regret after re-fitting each head's intercept"]
    feed = {name: t[t["ranking"] == "model"].set_index("metric") for name, t in (("matched", matched),
                                                                             ("shifted", shifted))}
    numbers = {"k": k, "matched_set": matched_set, "shifted_set": shifted_set,
               **{f"{name}_{m}{suffix}": float(feed[name].loc[m, col]) for name in feed
                  for m in ("regret", "oracle_gain_share") for suffix, col in (("", "mean"), ("_low", "low"),
                                                                              ("_high", "high"))},
               "report_regret": float(p.loc["regret of the model", "mean"]), "shift_cost": float(cost["mean"]),
               "shift_cost_low": float(cost["low"]), "shift_cost_high": float(cost["high"]),
               "shift_share": float(share["mean"]), "shift_share_low": float(share["low"]),
               "shift_share_high": float(share["high"]), "error_regret": float(left["mean"]),
               "report_requests": int(p["requests"].iloc[0]), "report_users": int(p["users"].iloc[0])}
    platt = "regret after re-fitting each head's slope and intercept (Platt)"
    if platt in p.index:  # tables made before the Platt rows existed lack them
        slopes = p.loc["removed by the slopes beyond the intercepts"]
        numbers.update(platt_regret=float(p.loc[platt, "mean"]), platt_regret_low=float(p.loc[platt, "low"]),
                       platt_regret_high=float(p.loc[platt, "high"]), slopes_removed=float(slopes["mean"]),
                       slopes_removed_low=float(slopes["low"]), slopes_removed_high=float(slopes["high"]))
    top = heads.dropna(subset=["share_of_regret"]).sort_values("share_of_regret", ascending=False).head(2)
    for i, row in enumerate(top.itertuples(), 1):
        numbers[f"top{i}_head"], numbers[f"top{i}_head_share"] = row.head, float(row.share_of_regret)
    off = ratios[(ratios["low"] > 1) | (ratios["high"] < 1)]
    numbers["heads_off_calibration"] = len(off)
    m, sh = feed["matched"], feed["shifted"]
    text = (f"On held-out data from its own training distribution (`{matched_set}`) the model's top {k} captures "
            f"{100 * m.loc['oracle_gain_share', 'mean']:.0f} % "
            f"({_ci(100 * m.loc['oracle_gain_share', 'low'], 100 * m.loc['oracle_gain_share', 'high'], '.0f')}) of "
            f"the oracle's gain over a random order; on the shifted `{shifted_set}` set "
            f"{100 * sh.loc['oracle_gain_share', 'mean']:.0f} % "
            f"({_ci(100 * sh.loc['oracle_gain_share', 'low'], 100 * sh.loc['oracle_gain_share', 'high'], '.0f')}). "
            f"Re-fitting each head's intercept on the labels of half of the `{shifted_set}` users "
            f"{'lowers' if numbers['shift_cost'] > 0 else 'raises'} the regret "
            f"on the other half ({numbers['report_requests']:,} requests, {numbers['report_users']:,} users) from "
            f"{numbers['report_regret']:.3g} to {numbers['error_regret']:.3g}: the shift of base rates costs "
            f"{numbers['shift_cost']:.3g} ({_ci(numbers['shift_cost_low'], numbers['shift_cost_high'], '.3g')}), "
            f"{100 * numbers['shift_share']:.0f} % of the regret "
            f"({_ci(100 * numbers['shift_share_low'], 100 * numbers['shift_share_high'], '.0f')}); the rest is the "
            f"model's own error.")
    if "platt_regret" in numbers:
        removed = (f"{numbers['slopes_removed']:+.3g} "
                   f"({_ci(numbers['slopes_removed_low'], numbers['slopes_removed_high'], '+.3g')})")
        text += (f" Re-fitting each head's slope as well (Platt scaling, the same halves) leaves a regret of "
                 f"{numbers['platt_regret']:.3g} ({_ci(numbers['platt_regret_low'], numbers['platt_regret_high'], '.3g')}); "
                 + (f"the slopes remove {removed} beyond the intercepts, so part of the model's error is the scale of each "
                    f"head's predictions, not the order it gives the candidates." if excludes_zero(numbers["slopes_removed_low"],
                                                                        numbers["slopes_removed_high"])
                    else f"what the slopes change beyond the intercepts, {removed}, is not shown to differ from 0."))
    if len(top):
        text += (" Replacing one head's prediction by its true probability removes most for " +
                 " and ".join(f"{r.head} ({100 * r.share_of_regret:.0f} % of the regret)" for r in top.itertuples())
                 + ".")
    if len(off):
        text += (f" On `{shifted_set}` {'1 head has its' if len(off) == 1 else f'{len(off)} heads have their'} "
                 "mean prediction outside the interval of the true mean (mean prediction / true mean): "
                 + ", ".join(f"{r.head} ({r.mean_over_truth:.2f}×)" for r in off.itertuples()) + ".")
    else:
        text += f" On `{shifted_set}` every head's mean prediction is within its interval of the true mean."
    return Finding("regret_decomposition", "03_score", text, numbers, regret_decomposition_verdict(numbers),
                   Result.REGRET_PARTS)


@rule("feed_by_budget")
def feed_by_budget_verdict(n: dict) -> str:
    """The extremes' intervals apart: the best budget's lower end above the worst one's upper end."""
    apart = number(n, "max_share_low") > number(n, "min_share_high")
    return "depends on the feed's size" if apart else "no measurable dependence"


def feed_by_budget(grid: pd.DataFrame, k: int, pool: int) -> Finding:
    """grid: regret.by_budget rows (pool, k, metric, mean, low, high)."""
    share = grid[grid["metric"] == "oracle_gain_share"].reset_index(drop=True)
    lo, hi = share.loc[share["mean"].idxmin()], share.loc[share["mean"].idxmax()]
    here = share[(share["k"] == k) & (share["pool"] == pool)]
    numbers = {"k": k, "pool": pool, "min_share": float(lo["mean"]), "min_share_k": int(lo["k"]),
               "min_share_pool": int(lo["pool"]), "max_share": float(hi["mean"]), "max_share_k": int(hi["k"]),
               "max_share_pool": int(hi["pool"]), "budgets": len(share),
               "min_share_high": float(lo["high"]), "max_share_low": float(hi["low"])}
    if len(here):
        numbers["study_share"] = float(here["mean"].iloc[0])
    verdict = feed_by_budget_verdict(numbers)
    apart = verdict == "depends on the feed's size"
    text = (f"Over {len(share)} feed sizes (top {', '.join(map(str, sorted(share['k'].unique())))} of "
            f"{', '.join(map(str, sorted(share['pool'].unique())))} candidates) the model's share of the oracle's gain "
            f"over a random order runs from {100 * lo['mean']:.0f} % (top {int(lo['k'])} of {int(lo['pool'])}) to "
            f"{100 * hi['mean']:.0f} % (top {int(hi['k'])} of {int(hi['pool'])})")
    text += (f"; the two extremes' intervals do not overlap (picked from {len(share)} budgets, so a screen rather "
             f"than a test), so the study's top {k} of {pool} ({100 * numbers.get('study_share', math.nan):.0f} %) "
             "is one point of a curve, not the model's single quality." if apart else "; their intervals overlap: at this evaluation size the share does "
             "not measurably depend on the feed's size.")
    personal = grid[grid["metric"] == "personal_share"].reset_index(drop=True)
    if len(personal):  # how personal each budget is, and what the model gets of the personal part
        over = grid[grid["metric"] == "popularity_gain_share"]
        at = lambda frame: frame[(frame["k"] == k) & (frame["pool"] == pool)]  # noqa: E731
        numbers.update(min_personal_share=float(personal["mean"].min()), max_personal_share=float(personal["mean"].max()))
        text += (f" The personal part of the gain (what a ranking that ignores the user cannot get) runs from "
                 f"{100 * numbers['min_personal_share']:.0f} % to {100 * numbers['max_personal_share']:.0f} % over "
                 "these budgets")
        if len(at(personal)) and len(at(over)):
            row = at(over).iloc[0]
            numbers.update(study_personal_share=float(at(personal)["mean"].iloc[0]),
                           study_popularity_gain_share=float(row["mean"]),
                           study_popularity_gain_share_low=float(row["low"]),
                           study_popularity_gain_share_high=float(row["high"]))
            text += (f"; at the study's top {k} of {pool} the model gets {100 * row['mean']:.0f} % "
                     f"({_ci(100 * row['low'], 100 * row['high'], '.0f')}) of the oracle's gain over popularity")
        text += "."
    return Finding("feed_by_budget", "03_score", text, numbers, verdict, Result.BUDGET)


COHORT_MARGIN = 0.25  # the model "tracks" a cohort's true difference when its bias is within this share of it (TOST)


def cohort_model_vs_truth(table: pd.DataFrame, weights: str, reference: str = "baseline",
                          margin: float = COHORT_MARGIN, alpha: float = 0.05) -> Finding:
    """table: ranking.cohort_scores rows (cohort, target ∈ model/truth/model − truth, mean,
    vs_reference[_low/_high]).

    The question is the model's bias: "tracks the truth" needs the cohort's bias difference
    (model − truth, against the reference cohort) shown within ±`margin` × the true difference by
    TOST; a bias that excludes zero under- or overstates the truth (with the share recovered); a
    bias neither excluded nor shown small is "unresolved", as is "no difference" unless both
    differences are shown within the margin of the largest true cohort difference.
    """
    others = [c for c in table["cohort"].unique() if c != reference]
    truth_rows = table[(table["cohort"] != reference) & (table["target"] == "truth")]
    largest = float(truth_rows["vs_reference"].abs().max()) if len(truth_rows) else math.nan
    numbers, parts = {"margin": margin, "alpha": alpha, "cohorts": ", ".join(others)}, []
    for c in others:
        t = table[(table["cohort"] == c)].set_index("target")
        model, truth = t.loc["model"], t.loc["truth"]
        numbers.update({f"{c}_model_diff": float(model["vs_reference"]), f"{c}_model_low": float(model["vs_reference_low"]),
                        f"{c}_model_high": float(model["vs_reference_high"]),
                        f"{c}_truth_diff": float(truth["vs_reference"]), f"{c}_truth_low": float(truth["vs_reference_low"]),
                        f"{c}_truth_high": float(truth["vs_reference_high"])})
        truth_sig = excludes_zero(truth["vs_reference_low"], truth["vs_reference_high"])
        recovered = float(model["vs_reference"] / truth["vs_reference"]) if truth["vs_reference"] != 0 else math.nan
        numbers[f"{c}_recovered"] = recovered
        bias_note = ""
        if "model − truth" in t.index:
            b = t.loc["model − truth"]
            bias, b_low, b_high = float(b["vs_reference"]), float(b["vs_reference_low"]), float(b["vs_reference_high"])
            eq = tost_from_interval(bias, b_low, b_high, margin * abs(truth["vs_reference"]) if truth_sig
                                    else margin * largest, alpha)
            numbers.update({f"{c}_bias_diff": bias, f"{c}_bias_low": b_low, f"{c}_bias_high": b_high,
                            f"{c}_bias_tost": eq["p"], f"{c}_bias_power": eq["power"]})
            bias_note = (f"; the model's bias differs from {reference}'s by {bias:+.3g} ({_ci(b_low, b_high, '+.3g')}), "
                         f"recovering {100 * recovered:.0f} % of the true difference")
        else:  # an older table without the bias rows: nothing shows the bias small
            eq = {"p": math.nan, "power": math.nan}
        v = _cohort_verdict(numbers, c)
        said = {"tracks the truth": f"the model follows the true difference, its bias shown within ±{100 * margin:.0f} % of it",
                "opposite to the truth": "the model moves the opposite way to the truth",
                "understates the truth": "the model follows the true difference's direction but understates it",
                "overstates the truth": "the model follows the true difference's direction but overstates it",
                "misses a real difference": "the model misses a real difference",
                "invents a difference": "the model shows a difference the truth does not have",
                "no difference in either": "neither differs, both shown within the margin",
                "unresolved": (f"neither a bias nor its absence is shown (equivalence power {eq['power']:.2f})"
                               if np.isfinite(eq["power"]) else "neither a bias nor its absence is shown")}[v]
        word = lambda x: "higher" if x > 0 else "lower"  # noqa: E731
        parts.append(f"{c} users score {abs(truth['vs_reference']):.3g} {word(truth['vs_reference'])} than {reference} "
                     f"in truth ({_ci(truth['vs_reference_low'], truth['vs_reference_high'], '+.3g')}) and "
                     f"{abs(model['vs_reference']):.3g} {word(model['vs_reference'])} by the model "
                     f"({_ci(model['vs_reference_low'], model['vs_reference_high'], '+.3g')}){bias_note}: {said}")
    text = (f"Per cohort, with the `{weights}` weights and user-level intervals: " + "; ".join(parts) + ".")
    return Finding("cohort_model_vs_truth", "03_score", text, numbers, cohort_model_vs_truth_verdict(numbers),
                   Result.COHORTS)


def _cohort_verdict(n: dict, c: str) -> str:
    """One cohort against the reference: its model and true differences, and the model's bias."""
    sig = lambda stem: excludes_zero(number(n, f"{c}_{stem}_low"), number(n, f"{c}_{stem}_high"))  # noqa: E731
    truth_sig, model_sig, bias_sig = sig("truth"), sig("model"), sig("bias")
    tost, alpha = number(n, f"{c}_bias_tost"), n["alpha"]
    if truth_sig and model_sig and np.sign(n[f"{c}_model_diff"]) != np.sign(n[f"{c}_truth_diff"]):
        return "opposite to the truth"
    if truth_sig and model_sig and bias_sig:
        return "understates the truth" if abs(number(n, f"{c}_recovered")) < 1 else "overstates the truth"
    if truth_sig and model_sig and tost < alpha:
        return "tracks the truth"
    if truth_sig and not model_sig and (bias_sig or not np.isfinite(tost)):
        return "misses a real difference"
    if model_sig and not truth_sig:
        return "invents a difference"
    if not truth_sig and not model_sig and tost < alpha:
        return "no difference in either"
    return "unresolved"


@rule("cohort_model_vs_truth")
def cohort_model_vs_truth_verdict(n: dict) -> str:
    return PART_JOIN.join(f"{c}: {_cohort_verdict(n, c)}" for c in n["cohorts"].split(", ") if c)

"""Chapter 3's findings: scores, the feed against the oracle and popularity, regret, cohorts."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from studylib.stats import tost_from_interval
from studylib.analysis.findings.verdicts import PART_JOIN, number, rule
from studylib.analysis.findings.core import Finding, finding, _ci, excludes_zero, sentence, listed
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
               "smallest_head": low["head"], "smallest_share": float(low["mean_share"]), "heads": len(shares),
               "weights": weights}
    return finding("score_shares", "03_score", numbers, Result.SHARES)


@sentence("score_shares")
def score_shares_sentence(n: dict, verdict: str) -> str:
    even = 1.0 / n["heads"]
    return (f"With the `{n['weights']}` weights {n['top_head']} makes up {100 * n['top_share']:.0f} % of a candidate's "
            f"score on average and the three largest heads {100 * n['top3_share']:.0f} %, against {100 * even:.0f} % per "
            f"head for an equal mix; the smallest contributor is {n['smallest_head']} ({100 * n['smallest_share']:.1f} %). "
            "These shares are measured at the study's scaled base rates (`rate_scale`).")


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
    numbers["k"] = k
    if ("popularity", "utility") in m.index:
        _popularity_numbers(m, numbers, vs_popularity)
    if seeds is not None and len(seeds) and int(seeds["seeds"].iloc[0]) > 1:
        by = seeds.set_index("metric")
        r, g = by.loc["regret"], by.loc["oracle_gain_share"]
        numbers.update(seeds=int(r["seeds"]), seed_regret_mean=float(r["mean"]), seed_regret_sd=float(r["seed_sd"]),
                       seed_regret_low=float(r["low"]), seed_regret_high=float(r["high"]),
                       seed_gain_share_mean=float(g["mean"]), seed_gain_share_low=float(g["low"]),
                       seed_gain_share_high=float(g["high"]))
    if seed_user is not None and len(seed_user) and int(seed_user["seeds"].iloc[0]) > 1:
        by = seed_user.set_index("metric")
        for metric, key in (("regret", "regret"), ("oracle_gain_share", "gain_share"),
                            ("model_minus_popularity", "model_minus_popularity")):
            if metric in by.index:
                r = by.loc[metric]
                numbers.update({f"seed_user_{key}": float(r["mean"]), f"seed_user_{key}_low": float(r["low"]),
                                f"seed_user_{key}_high": float(r["high"])})
        numbers["seed_user_indicative"] = bool(by["indicative"].iloc[0])
        numbers["seed_user_seeds"] = int(by["seeds"].iloc[0])
    return finding("model_vs_oracle_regret", "03_score", numbers, Result.FEED)


def _popularity_numbers(m: pd.DataFrame, numbers: dict, paired: pd.DataFrame | None) -> None:
    """The model against the rankings that ignore the user, added to `numbers`."""
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
    if paired is not None and not paired.empty:
        d = paired[(paired["ranking"] == "model") & (paired["metric"] == "utility")].iloc[0]
        numbers.update(model_minus_popularity=float(d["difference"]), model_minus_popularity_low=float(d["low"]),
                       model_minus_popularity_high=float(d["high"]))


@sentence("model_vs_oracle_regret")
def model_vs_oracle_regret_sentence(n: dict, verdict: str) -> str:
    k, share = n["k"], n["gain_share"]
    text = (f"Ranked by the model with the `{n['weights']}` weights, the top {k} of a request carries a true weighted "
            f"value of {n['model_utility']:.3g} per request, against {n['oracle_utility']:.3g} for the oracle "
            f"(ranking by the true probabilities) and {n['random_utility']:.3g} for a random order: a regret of "
            f"{n['regret']:.3g} ({_ci(n['regret_low'], n['regret_high'], '.3g')}). The model captures "
            f"{100 * share:.0f} % ({_ci(100 * n['gain_share_low'], 100 * n['gain_share_high'], '.0f')}) of what "
            f"the oracle gains over a random order; Kendall's τ with the oracle's order "
            f"{n['kendall_tau_oracle']:.2f}, NDCG@{k} {n[f'ndcg@{k}']:.2f}.")
    if "popularity_utility" in n:
        text += (f" The best ranking that ignores who asks (the popularity oracle) carries {n['popularity_utility']:.3g}"
                 + (f" and smoothed per-tweet engagement rates learned from the training examples "
                    f"{n['learned_popularity_utility']:.3g}" if "learned_popularity_utility" in n else "")
                 + f"; {100 * n['personal_share']:.0f} % of the oracle's gain over a random order needs knowing the user.")
    if "model_minus_popularity" in n:
        text += (f" The model's top {k} carries {n['model_minus_popularity']:+.3g} per request against the popularity "
                 f"oracle ({_ci(n['model_minus_popularity_low'], n['model_minus_popularity_high'], '+.3g')}, paired by "
                 f"request): it captures {100 * n['popularity_gain_share']:.0f} % "
                 f"({_ci(100 * n['popularity_gain_share_low'], 100 * n['popularity_gain_share_high'], '.0f')}) of the "
                 "oracle's gain over popularity.")
        text += {"above popularity": " What it learned about the user is worth something beyond item popularity.",
                 "below popularity": " Ranking by item popularity alone would serve these users better.",
                 "unresolved against popularity": (" Whether it beats a ranking that ignores the user is unresolved "
                                                   "at this size.")}[verdict]
    if "seed_regret_mean" in n:
        text += (f" Trained again with {n['seeds']} seeds, the regret is {n['seed_regret_mean']:.3g} on average (seed SD "
                 f"{n['seed_regret_sd']:.2g}; 95 % t-interval over seeds {n['seed_regret_low']:.3g} to "
                 f"{n['seed_regret_high']:.3g}) and the share {100 * n['seed_gain_share_mean']:.0f} % "
                 f"({100 * n['seed_gain_share_low']:.0f} to {100 * n['seed_gain_share_high']:.0f} %): the interval above "
                 "is about sampling users for one trained model, this one about training it again.")
    if "seed_user_seeds" in n:
        said = [f"regret {n['seed_user_regret']:.3g} ({_ci(n['seed_user_regret_low'], n['seed_user_regret_high'], '.3g')})"]
        if "seed_user_model_minus_popularity" in n:
            said.append(f"model − popularity {n['seed_user_model_minus_popularity']:+.3g} "
                        f"({_ci(n['seed_user_model_minus_popularity_low'], n['seed_user_model_minus_popularity_high'], '+.3g')})")
        text += (f" Over the {n['seed_user_seeds']} training seeds together, with an interval that resamples both "
                 f"the seeds and the users (two-stage bootstrap): " + "; ".join(said)
                 + (" — indicative: so few seeds make the seed draw coarse." if n["seed_user_indicative"] else ".")
                 + " These are the study's primary numbers for this question.")
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
    numbers["heads_off_calibration_names"] = ", ".join(off["head"])
    numbers.update({f"{r.head}_mean_over_truth": float(r.mean_over_truth) for r in off.itertuples()})
    return finding("regret_decomposition", "03_score", numbers, Result.REGRET_PARTS)


@sentence("regret_decomposition")
def regret_decomposition_sentence(n: dict, verdict: str) -> str:
    matched_set, shifted_set, k = n["matched_set"], n["shifted_set"], n["k"]
    text = (f"On held-out data from its own training distribution (`{matched_set}`) the model's top {k} captures "
            f"{100 * n['matched_oracle_gain_share']:.0f} % "
            f"({_ci(100 * n['matched_oracle_gain_share_low'], 100 * n['matched_oracle_gain_share_high'], '.0f')}) of "
            f"the oracle's gain over a random order; on the shifted `{shifted_set}` set "
            f"{100 * n['shifted_oracle_gain_share']:.0f} % "
            f"({_ci(100 * n['shifted_oracle_gain_share_low'], 100 * n['shifted_oracle_gain_share_high'], '.0f')}). "
            f"Re-fitting each head's intercept on the labels of half of the `{shifted_set}` users "
            f"{'lowers' if n['shift_cost'] > 0 else 'raises'} the regret "
            f"on the other half ({n['report_requests']:,} requests, {n['report_users']:,} users) from "
            f"{n['report_regret']:.3g} to {n['error_regret']:.3g}: the shift of base rates costs "
            f"{n['shift_cost']:.3g} ({_ci(n['shift_cost_low'], n['shift_cost_high'], '.3g')}), "
            f"{100 * n['shift_share']:.0f} % of the regret "
            f"({_ci(100 * n['shift_share_low'], 100 * n['shift_share_high'], '.0f')}); the rest is the "
            f"model's own error.")
    if "platt_regret" in n:
        removed = f"{n['slopes_removed']:+.3g} ({_ci(n['slopes_removed_low'], n['slopes_removed_high'], '+.3g')})"
        text += (f" Re-fitting each head's slope as well (Platt scaling, the same halves) leaves a regret of "
                 f"{n['platt_regret']:.3g} ({_ci(n['platt_regret_low'], n['platt_regret_high'], '.3g')}); "
                 + (f"the slopes remove {removed} beyond the intercepts, so part of the model's error is the scale of each "
                    f"head's predictions, not the order it gives the candidates."
                    if excludes_zero(n["slopes_removed_low"], n["slopes_removed_high"])
                    else f"what the slopes change beyond the intercepts, {removed}, is not shown to differ from 0."))
    top = [i for i in (1, 2) if f"top{i}_head" in n]
    if top:
        text += (" Replacing one head's prediction by its true probability removes most for " +
                 " and ".join(f"{n[f'top{i}_head']} ({100 * n[f'top{i}_head_share']:.0f} % of the regret)" for i in top)
                 + ".")
    off = listed(n, "heads_off_calibration_names")
    if off:
        text += (f" On `{shifted_set}` {'1 head has its' if len(off) == 1 else f'{len(off)} heads have their'} "
                 "mean prediction outside the interval of the true mean (mean prediction / true mean): "
                 + ", ".join(f"{h} ({n[f'{h}_mean_over_truth']:.2f}×)" for h in off) + ".")
    else:
        text += f" On `{shifted_set}` every head's mean prediction is within its interval of the true mean."
    return text


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
    numbers.update(budget_ks=", ".join(map(str, sorted(share["k"].unique()))),
                   budget_pools=", ".join(map(str, sorted(share["pool"].unique()))))
    if len(here):
        numbers["study_share"] = float(here["mean"].iloc[0])
    personal = grid[grid["metric"] == "personal_share"].reset_index(drop=True)
    if len(personal):  # how personal each budget is, and what the model gets of the personal part
        over = grid[grid["metric"] == "popularity_gain_share"]
        at = lambda frame: frame[(frame["k"] == k) & (frame["pool"] == pool)]  # noqa: E731
        numbers.update(min_personal_share=float(personal["mean"].min()), max_personal_share=float(personal["mean"].max()))
        if len(at(personal)) and len(at(over)):
            row = at(over).iloc[0]
            numbers.update(study_personal_share=float(at(personal)["mean"].iloc[0]),
                           study_popularity_gain_share=float(row["mean"]),
                           study_popularity_gain_share_low=float(row["low"]),
                           study_popularity_gain_share_high=float(row["high"]))
    return finding("feed_by_budget", "03_score", numbers, Result.BUDGET)


@sentence("feed_by_budget")
def feed_by_budget_sentence(n: dict, verdict: str) -> str:
    k, pool, budgets = n["k"], n["pool"], n["budgets"]
    text = (f"Over {budgets} feed sizes (top {n['budget_ks']} of {n['budget_pools']} candidates) the model's share of "
            f"the oracle's gain over a random order runs from {100 * n['min_share']:.0f} % (top {n['min_share_k']} of "
            f"{n['min_share_pool']}) to {100 * n['max_share']:.0f} % (top {n['max_share_k']} of {n['max_share_pool']})")
    text += (f"; the two extremes' intervals do not overlap (picked from {budgets} budgets, so a screen rather "
             f"than a test), so the study's top {k} of {pool} ({100 * n.get('study_share', math.nan):.0f} %) "
             "is one point of a curve, not the model's single quality." if verdict == "depends on the feed's size"
             else "; their intervals overlap: at this evaluation size the share does not measurably depend on the "
             "feed's size.")
    if "min_personal_share" in n:
        text += (f" The personal part of the gain (what a ranking that ignores the user cannot get) runs from "
                 f"{100 * n['min_personal_share']:.0f} % to {100 * n['max_personal_share']:.0f} % over "
                 "these budgets")
        if "study_popularity_gain_share" in n:
            text += (f"; at the study's top {k} of {pool} the model gets {100 * n['study_popularity_gain_share']:.0f} % "
                     f"({_ci(100 * n['study_popularity_gain_share_low'], 100 * n['study_popularity_gain_share_high'], '.0f')})"
                     " of the oracle's gain over popularity")
        text += "."
    return text


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
    numbers = {"margin": margin, "alpha": alpha, "cohorts": ", ".join(others), "weights": weights, "reference": reference}
    for c in others:
        t = table[(table["cohort"] == c)].set_index("target")
        model, truth = t.loc["model"], t.loc["truth"]
        numbers.update({f"{c}_model_diff": float(model["vs_reference"]), f"{c}_model_low": float(model["vs_reference_low"]),
                        f"{c}_model_high": float(model["vs_reference_high"]),
                        f"{c}_truth_diff": float(truth["vs_reference"]), f"{c}_truth_low": float(truth["vs_reference_low"]),
                        f"{c}_truth_high": float(truth["vs_reference_high"])})
        truth_sig = excludes_zero(truth["vs_reference_low"], truth["vs_reference_high"])
        numbers[f"{c}_recovered"] = (float(model["vs_reference"] / truth["vs_reference"]) if truth["vs_reference"] != 0
                                     else math.nan)
        if "model − truth" in t.index:  # an older table without the bias rows: nothing shows the bias small
            b = t.loc["model − truth"]
            bias, b_low, b_high = float(b["vs_reference"]), float(b["vs_reference_low"]), float(b["vs_reference_high"])
            eq = tost_from_interval(bias, b_low, b_high, margin * abs(truth["vs_reference"]) if truth_sig
                                    else margin * largest, alpha)
            numbers.update({f"{c}_bias_diff": bias, f"{c}_bias_low": b_low, f"{c}_bias_high": b_high,
                            f"{c}_bias_tost": eq["p"], f"{c}_bias_power": eq["power"]})
    return finding("cohort_model_vs_truth", "03_score", numbers, Result.COHORTS)


@sentence("cohort_model_vs_truth")
def cohort_model_vs_truth_sentence(n: dict, verdict: str | None) -> str:
    """Each cohort's part is written from its own verdict (`_cohort_verdict`)."""
    margin, reference, parts = n["margin"], n["reference"], []
    word = lambda x: "higher" if x > 0 else "lower"  # noqa: E731
    for c in listed(n, "cohorts"):
        truth, model, power = n[f"{c}_truth_diff"], n[f"{c}_model_diff"], number(n, f"{c}_bias_power")
        bias_note = (f"; the model's bias differs from {reference}'s by {n[f'{c}_bias_diff']:+.3g} "
                     f"({_ci(n[f'{c}_bias_low'], n[f'{c}_bias_high'], '+.3g')}), recovering "
                     f"{100 * n[f'{c}_recovered']:.0f} % of the true difference" if f"{c}_bias_diff" in n else "")
        said = {"tracks the truth": f"the model follows the true difference, its bias shown within ±{100 * margin:.0f} % of it",
                "opposite to the truth": "the model moves the opposite way to the truth",
                "understates the truth": "the model follows the true difference's direction but understates it",
                "overstates the truth": "the model follows the true difference's direction but overstates it",
                "misses a real difference": "the model misses a real difference",
                "invents a difference": "the model shows a difference the truth does not have",
                "no difference in either": "neither differs, both shown within the margin",
                "unresolved": (f"neither a bias nor its absence is shown (equivalence power {power:.2f})"
                               if np.isfinite(power) else "neither a bias nor its absence is shown")}[_cohort_verdict(n, c)]
        parts.append(f"{c} users score {abs(truth):.3g} {word(truth)} than {reference} "
                     f"in truth ({_ci(n[f'{c}_truth_low'], n[f'{c}_truth_high'], '+.3g')}) and "
                     f"{abs(model):.3g} {word(model)} by the model "
                     f"({_ci(n[f'{c}_model_low'], n[f'{c}_model_high'], '+.3g')}){bias_note}: {said}")
    return f"Per cohort, with the `{n['weights']}` weights and user-level intervals: " + "; ".join(parts) + "."


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
    return PART_JOIN.join(f"{c}: {_cohort_verdict(n, c)}" for c in listed(n, "cohorts"))

"""Chapter 5's findings: the weights' sensitivity, the best weights and the frontier."""

from __future__ import annotations

import math


import numpy as np
import pandas as pd

from studylib.errors import StudyError
from studylib.stats import MIN_POSITIVES
from studylib.analysis.findings.verdicts import PART_JOIN, number, rule
from studylib.analysis.findings.core import Finding, finding, _ci, excludes_zero, sentence, listed
from studylib.outputs import Result


def _left_out(not_evaluable, present) -> list[str]:
    """The heads that cannot be evaluated among `present` (a finding keeps them as its number `left_out`)."""
    return [h for h in (not_evaluable or ()) if h in set(present)]


def _left_out_note(n: dict) -> str:
    """The sentence that says which heads a finding left out (none: nothing)."""
    out = listed(n, "left_out")
    if not out:
        return ""
    return (f" Left out of every sentence here: {', '.join(out)} (fewer than {MIN_POSITIVES} held-out positives, "
            f"so what the model predicts for {'it' if len(out) == 1 else 'them'} is not evaluated).")


TOP_SHARE_BAR = 0.95  # a head is "the" top of the tornado when it leads in this share of user resamples


@rule("tornado_top_head")
def tornado_top_head_verdict(n: dict) -> str:
    """The leading head, unless the user resamples (where measured) put it first too rarely."""
    if "top_share" in n and number(n, "top_share") < n["top_share_bar"]:
        return "unresolved"
    return str(n["top_head"])


def tornado_top_head(tornado: pd.DataFrame, metric_label: str, low: float, high: float,
                     oracle: pd.DataFrame | None = None, not_evaluable: list[str] | None = None,
                     top_share: dict[str, float] | None = None) -> Finding:
    """tornado: sensitivity.tornado_table (head, low, high, departure), largest departure first; `oracle`
    the same table on the oracle's probabilities; `not_evaluable`: heads kept out of the ranking;
    `top_share`: sensitivity.tornado_top_share, each head's share of resamples in which it leads:
    below TOP_SHARE_BAR the verdict names no head ("unresolved")."""
    out = _left_out(not_evaluable, tornado["head"])
    tornado = tornado[~tornado["head"].isin(out)].reset_index(drop=True)
    if oracle is not None:
        oracle = oracle[~oracle["head"].isin(out)].reset_index(drop=True)
    top, last = tornado.iloc[0], tornado.iloc[-1]
    numbers = {"top_head": top["head"], "top_low": float(top["low"]), "top_high": float(top["high"]),
               "top_departure": float(top["departure"]), "last_head": last["head"],
               "last_departure": float(last["departure"]), "low_factor": low, "high_factor": high,
               "metric_label": metric_label, "left_out": ", ".join(out)}
    if top_share is not None:
        rival = max((h for h in top_share if h != top["head"]), key=lambda h: top_share[h], default=None)
        numbers.update(top_share=float(top_share.get(top["head"], 0.0)), top_share_bar=TOP_SHARE_BAR)
        if rival is not None:
            numbers.update(rival_head=rival, rival_share=float(top_share[rival]))
    if oracle is not None:
        o = oracle.iloc[0]
        numbers.update({"oracle_top_head": o["head"], "oracle_top_departure": float(o["departure"])})
    return finding("tornado_top_head", "05_sensitivity", numbers, Result.SWEEP)


@sentence("tornado_top_head")
def tornado_top_head_sentence(n: dict, verdict: str) -> str:
    top, low, high = n["top_head"], n["low_factor"], n["high_factor"]
    text = (f"Scaling one weight at a time, {top} moves the feed most: {n['metric_label']} {n['top_low']:.2f} at "
            f"×{low:g} and {n['top_high']:.2f} at ×{high:g} (largest departure from the base feed "
            f"{n['top_departure']:.2f}); {n['last_head']} moves it least (departure {n['last_departure']:.2f}).")
    if "top_share" in n:
        share = n["top_share"]
        text += (f" It leads in {100 * share:.0f} % of user-level bootstrap resamples"
                 + (f" ({n['rival_head']} in {100 * n['rival_share']:.0f} %)" if n.get("rival_share", 0) > 0 else "")
                 + ("." if share >= TOP_SHARE_BAR else f": below {100 * TOP_SHARE_BAR:.0f} %, so which weight moves the "
                    "feed most is unresolved."))
    if "oracle_top_head" in n:
        o_head, o_departure = n["oracle_top_head"], n["oracle_top_departure"]
        text += (f" On the oracle's probabilities the same weight leads ({o_head}, departure {o_departure:.2f})."
                 if o_head == top else
                 f" On the oracle's probabilities {o_head} leads instead (departure {o_departure:.2f}): the "
                 "model's errors change which weight matters most.")
    return text + _left_out_note(n)


def negative_flip(sweep: pd.DataFrame, heads: list[str], k: int, not_evaluable: list[str] | None = None) -> Finding | None:
    """sweep (model and oracle rows, feeds of top `k`): the change in expected negative feedback when a
    negative weight's sign flips; heads in `not_evaluable` are left out."""
    out = _left_out(not_evaluable, heads)
    heads = [h for h in heads if h not in out]
    flip = sweep[np.isclose(sweep["factor"], -1.0) & sweep["head"].isin(heads)]
    if flip.empty or "expected_negative_feedback_change_pct" not in flip:
        return None
    model = flip[flip["probabilities"] == "model"]
    numbers = {"k": k, "left_out": ", ".join(out), "flipped": ", ".join(model["head"])}
    for _, r in model.iterrows():
        o = flip[(flip["probabilities"] == "oracle") & (flip["head"] == r["head"])]
        numbers.update({f"{r['head']}_model_pct": float(r["expected_negative_feedback_change_pct"]),
                        f"{r['head']}_oracle_pct": float(o["expected_negative_feedback_change_pct"].iloc[0])})
    return finding("negative_flip", "05_sensitivity", numbers, Result.SWEEP)


@sentence("negative_flip")
def negative_flip_sentence(n: dict, verdict: None) -> str:
    parts = [f"{n[f'{h}_model_pct']:+.0f} % when {h} is flipped (oracle: {n[f'{h}_oracle_pct']:+.0f} %)"
             for h in listed(n, "flipped")]
    return ("Flipping the sign of a negative weight (rewarding what users dislike) changes the expected negative "
            f"feedback in the top {n['k']} by " + "; ".join(parts) + "." + _left_out_note(n))


SOBOL_MIN_ST = 0.01  # a weight counts as influential only when its total index is at least this share of the variance


STABLE_AT = 0.05  # the chance agreement below which "stable across seeds" may be claimed
SEEDS_FOR_STABILITY = 1 + math.ceil(math.log2(1 / STABLE_AT) + 1e-12)  # 6: 0.5^5 = 0.031


@rule("seed_replication")
def seed_replication_verdict(n: dict) -> str:
    """Any answer that changed makes it seed-dependent; none changed is stable only if chance agreement is rare."""
    if n["seeds"] < 2:
        return "one seed"
    if n["unstable"]:
        return "seed-dependent"
    return "stable across seeds" if number(n, "chance_agreement") < STABLE_AT else "unresolved"


def seed_replication(rep: pd.DataFrame, base: str, sobol_n: int) -> Finding:
    """rep: sensitivity.seed_replicates (train_seed, quantity, name, value). What training the main
    model again changes in chapter 5's answers: the presets' own-objective shares and their order,
    each preset's utility against the base weights, the tornado's and Sobol's leading heads."""
    seeds = sorted(rep["train_seed"].unique())
    n = len(seeds)
    numbers: dict = {"seeds": n, "sobol_n": sobol_n, "base": base}
    if n >= 2:
        numbers.update(_seed_replication_numbers(rep, base, n))
    return finding("seed_replication", "05_sensitivity", numbers, Result.SEED_REPLICATES)


_LEADERS = (("tornado_top_head", "the tornado's top head"),
            ("sobol_utility_top", "the input with the largest Sobol total index for utility"))


def _seed_replication_numbers(rep: pd.DataFrame, base: str, n: int) -> dict:
    numbers, unstable = {}, []
    own = rep[rep["quantity"] == "own_share"]
    if len(own):
        spans = own.groupby("name")["value"].agg(["min", "max"])
        numbers["own_share_presets"] = ", ".join(spans.index)
        for name, r in spans.iterrows():
            numbers[f"{name}_own_share_min"], numbers[f"{name}_own_share_max"] = float(r["min"]), float(r["max"])
        orders = own.sort_values(["train_seed", "value"], ascending=[True, False]).groupby("train_seed")["name"].apply(tuple)
        numbers["own_order_agreeing_seeds"] = int((orders == orders.iloc[0]).sum())
        if numbers["own_order_agreeing_seeds"] < n:
            unstable.append("the presets' order")
    versus = rep[(rep["quantity"] == "utility_vs_base") & (rep["name"] != base)]
    if len(versus):
        signs = versus.groupby("name")["value"].agg(lambda v: len(set(np.sign(v.round(12)))) == 1)
        flips = [name for name, same in signs.items() if not same]
        numbers.update(presets_whose_utility_sign_flips=len(flips), utility_sign_flips=", ".join(flips))
        if flips:
            unstable.append("a preset's gain or loss")
    for quantity, label in _LEADERS:
        leads = rep[rep["quantity"] == quantity]
        if not len(leads):
            continue
        counts = leads["name"].value_counts()
        numbers[f"{quantity}"], numbers[f"{quantity}_seeds"] = str(counts.index[0]), int(counts.iloc[0])
        numbers[f"{quantity}_others"] = ", ".join(counts.index[1:])
        if counts.iloc[0] < n:
            unstable.append(label)
    numbers["unstable"] = len(unstable)
    numbers["unstable_answers"] = "; ".join(unstable)
    # Agreement in every seed shows stability only when chance agreement is unlikely: an answer that came out
    # either way with even odds would agree across n seeds with probability 0.5^(n-1).
    numbers["chance_agreement"] = 0.5 ** (n - 1)
    return numbers


@sentence("seed_replication")
def seed_replication_sentence(n: dict, verdict: str) -> str:
    seeds, base = n["seeds"], n["base"]
    if seeds < 2:
        return ("One training seed of the main model: the chapter's answers carry no seed-to-seed variance (the "
                "profile's `seeds` is 1).")
    parts = []
    if "own_share_presets" in n:
        parts.append("own-objective shares " + ", ".join(
            f"{name} {100 * n[f'{name}_own_share_min']:.1f}–{100 * n[f'{name}_own_share_max']:.1f} %"
            for name in listed(n, "own_share_presets"))
            + f", in the same order in {n['own_order_agreeing_seeds']} of {seeds} seeds")
    if "utility_sign_flips" in n:
        flips = n["utility_sign_flips"]
        parts.append(f"each preset's utility against `{base}` keeps its sign in every seed" if not flips else
                     f"the sign of the utility against `{base}` changes between seeds for {flips}")
    for quantity, label in _LEADERS:
        if quantity in n:
            label += f" (n = {n['sobol_n']})" if quantity == "sobol_utility_top" else ""
            parts.append(f"{label} is {n[quantity]} in {n[f'{quantity}_seeds']} of {seeds} seeds"
                         + ("" if n[f"{quantity}_seeds"] == seeds else f" (else {n[f'{quantity}_others']})"))
    unstable = listed(n, "unstable_answers", "; ")
    enough = n["chance_agreement"] < STABLE_AT
    return (f"Trained again with {seeds} seeds (the same data and requests), the chapter's answers read: " + "; ".join(parts)
            + ". " + (f"Seed-dependent: {', '.join(unstable)} — one trained model would not settle "
                      f"{'it' if len(unstable) == 1 else 'them'}." if unstable else
                      "None of them changes with the training seed." if enough else
                      f"None of them changed, but {seeds} seeds cannot show that they do not: an answer that comes out "
                      f"either way with even odds would agree across {seeds} seeds with probability "
                      f"{n['chance_agreement']:.2g} (stability needs less than {STABLE_AT:g}, "
                      f"{SEEDS_FOR_STABILITY} seeds or more)."))


@rule("sobol_kendall_tau")
@rule("sobol_utility")
def sobol_verdict(n: dict) -> str:
    """Agreement on the leading input counts only where each leader is clear of its runner-up."""
    same = n.get("model_top_input") == n.get("oracle_top_input")
    separated = n.get("model_top_separated", False) and n.get("oracle_top_separated", False)
    return ("model and oracle agree" if same else "model and oracle disagree") if separated else "unresolved"


def sobol_summary(sobol: pd.DataFrame, output: str, output_label: str, n_base: int,
                  min_st: float = SOBOL_MIN_ST, not_evaluable: list[str] | None = None) -> Finding:
    """sobol: rows (probabilities ∈ model/oracle, output, input, ST, ST_conf) — wording from the intervals;
    inputs in `not_evaluable` are left out of the sentences."""
    out = _left_out(not_evaluable, sobol["input"])
    sobol = sobol[~sobol["input"].isin(out)]
    numbers = {"sobol_n": n_base, "output_label": output_label, "left_out": ", ".join(out)}
    for source in ("model", "oracle"):
        sub = sobol[(sobol["probabilities"] == source) & (sobol["output"] == output)].sort_values("ST", ascending=False)
        if sub.empty:
            continue
        top = sub.iloc[0]
        runner = sub.iloc[1] if len(sub) > 1 else None
        # the leader is told apart from the runner-up only when their intervals do not overlap
        numbers[f"{source}_top_separated"] = bool(runner is None or top["ST"] - top["ST_conf"] > runner["ST"] + runner["ST_conf"])
        clear = sub[(sub["ST"] - sub["ST_conf"] > 0) & (sub["ST"] >= min_st)]
        numbers["min_ST"] = min_st
        numbers.update({f"{source}_top_input": top["input"], f"{source}_top_ST": float(top["ST"]),
                        f"{source}_top_ST_conf": float(top["ST_conf"]), f"{source}_clear_inputs": len(clear),
                        f"{source}_max_conf": float(sub["ST_conf"].max()), f"{source}_inputs": len(sub)})
    return finding(f"sobol_{output}", "05_sensitivity", numbers, Result.SOBOL)


@sentence("sobol_kendall_tau")
@sentence("sobol_utility")
def sobol_sentence(n: dict, verdict: str) -> str:
    parts = [f"on the {source}'s probabilities {n[f'{source}_top_input']} has the largest total index "
             f"(ST {n[f'{source}_top_ST']:.2f} ± {n[f'{source}_top_ST_conf']:.2f}) and {n[f'{source}_clear_inputs']} of "
             f"{n[f'{source}_inputs']} weights have an ST whose interval excludes zero and that reaches {n['min_ST']:g} of "
             "the variance" for source in ("model", "oracle") if f"{source}_top_input" in n]
    return (f"For {n['output_label']}, with all weights varying together: " + "; ".join(parts) + ". "
            + {"model and oracle agree": "The model and the oracle agree on the most influential weight, each leader's "
                                         "interval clear of the runner-up's, so which weight matters most is not an "
                                         "artefact of the model's errors.",
               "model and oracle disagree": "The model and the oracle disagree on the most influential weight, each "
                                            "leader's interval clear of the runner-up's: part of what the weights seem to "
                                            "do on the model comes from its errors.",
               "unresolved": "On " + ("both" if not (n.get("model_top_separated") or n.get("oracle_top_separated"))
                                      else "one") + " of the two the leader's interval overlaps the runner-up's, so which "
                             "weight matters most is not settled at this sobol_n, and neither is whether the model and the "
                             "oracle agree on it."}[verdict]
            + f" The widest interval half-width is {max(n.get('model_max_conf', 0), n.get('oracle_max_conf', 0)):.2f} "
            f"(sobol_n = {n['sobol_n']}); indices within their interval of zero are not told apart from it."
            + _left_out_note(n))


def presets_paired(paired: pd.DataFrame, base: str, metric_labels: dict[str, str],
                   own: pd.DataFrame | None = None) -> Finding:
    """paired: rows (weights, metric, difference, low, high): each preset minus the base weights per request;
    own: sensitivity.own_objective_shares, every preset judged by its own weights on the truth."""
    presets = [w for w in paired["weights"].unique() if w != base]
    numbers = {"base": base, "presets": ", ".join(presets), "utility_compared": "utility" in set(paired["metric"])}
    clear_count = 0
    for preset in presets:
        sub = paired[(paired["weights"] == preset) & paired["metric"].isin(metric_labels)]
        if {"utility", "regret"} <= set(sub["metric"]):  # the same oracle: regret moves by exactly −utility, one decision
            sub = sub[sub["metric"] != "regret"]
            numbers["regret_counted_as_utility"] = True
        numbers[f"{preset}_metrics"] = ", ".join(sub["metric"])
        for _, r in sub.iterrows():
            numbers[f"label_{r['metric']}"] = metric_labels[r["metric"]]
            numbers[f"{preset}_{r['metric']}"] = float(r["difference"])
            numbers[f"{preset}_{r['metric']}_low"] = float(r["low"])
            numbers[f"{preset}_{r['metric']}_high"] = float(r["high"])
            clear_count += excludes_zero(r["low"], r["high"])
    numbers["clear_differences"] = clear_count
    if own is not None and len(own):
        numbers["own_share_presets"] = ", ".join(own["weights"])
        for _, r in own.iterrows():
            for key in ("own_share", "own_share_low", "own_share_high"):
                numbers[f"{r['weights']}_{key}"] = float(r[key])
        numbers["weakest_own_objective"] = str(own.loc[own["own_share"].idxmin(), "weights"])
    return finding("presets_paired", "05_sensitivity", numbers, Result.PRESETS_PAIRED)


@sentence("presets_paired")
def presets_paired_sentence(n: dict, verdict: str) -> str:
    base, parts = n["base"], []
    for preset in listed(n, "presets"):
        bits = [f"{n[f'label_{m}']} {n[f'{preset}_{m}']:+.3g} ({_ci(n[f'{preset}_{m}_low'], n[f'{preset}_{m}_high'], '+.3g')})"
                for m in listed(n, f"{preset}_metrics")
                if excludes_zero(number(n, f"{preset}_{m}_low"), number(n, f"{preset}_{m}_high"))]
        parts.append(f"{preset}: " + (", ".join(bits) if bits else "no difference whose interval excludes zero"))
    text = (f"Against the base `{base}` weights, per request on the same candidates (paired differences, user-level "
            "intervals): " + "; ".join(parts) + ".")
    if n.get("regret_counted_as_utility"):
        text += (" A preset's regret moves by exactly minus its utility (both against the same oracle), so it is "
                 "counted once, as utility.")
    if n["utility_compared"]:
        text += (f" Utility is the `{base}` weights' own objective, which the other presets do not optimise: a loss there "
                 "measures distance from that objective, not a preset's failure at its own.")
    if "own_share_presets" in n:
        bits = [f"{w} {100 * n[f'{w}_own_share']:.1f} % "
                f"({_ci(100 * n[f'{w}_own_share_low'], 100 * n[f'{w}_own_share_high'], '.1f')} %)"
                for w in listed(n, "own_share_presets")]
        text += (" Judged each by its own objective (its weights on the true probabilities), the model's feed reaches "
                 "this share of the oracle's gain over a random order: " + ", ".join(bits) + "; the model serves "
                 f"`{n['weakest_own_objective']}`'s objective least well. Where each preset sits on the "
                 "engagement/negative frontier is `frontier_distance`.")
    return text


@rule("presets_paired")
def presets_paired_verdict(n: dict) -> str:
    return "clear differences" if n["clear_differences"] else "no clear difference"


@rule("optimal_weights_gain")
def optimal_weights_gain_verdict(n: dict) -> str:
    """The fitted weights' gain on unseen users; the search on the oracle must find nothing (its check)."""
    low, high = number(n, "model_gain_low"), number(n, "model_gain_high")
    verdict = ("better weights exist" if excludes_zero(low, high) and low > 0 else
               "fitted weights worse" if high < 0 else "base weights not beaten")
    return verdict + (PART_JOIN + "oracle check fails" if n["oracle_check"] == "fails" else "")


def optimal_weights_gain(gain: pd.DataFrame, heads: pd.DataFrame, relation: dict, base: str, k: int) -> Finding:
    """gain, heads: weight_search.best_weights; relation: weight_search.noise_relation."""
    g = gain.set_index("scorer")
    m, o = g.loc["model"], g.loc["oracle"]
    free = heads[~heads["anchor"]].dropna(subset=["log2_change_model"])
    if free.empty:
        raise StudyError("optimal_weights_gain: no head besides the anchor was searched (all other weights are 0)")
    cut, raised = free.loc[free["log2_change_model"].idxmin()], free.loc[free["log2_change_model"].idxmax()]
    numbers = {"base": base, "k": k, "model_gain": float(m["gain"]), "model_gain_low": float(m["low"]),
               "model_gain_high": float(m["high"]), "model_gain_pct": float(m["gain_pct"]),
               "published_value": float(m["published_value"]), "fitted_value": float(m["fitted_value"]),
               "oracle_value": float(m["oracle_value"]), "regret_closed": float(m["regret_closed"]),
               "fit_gain": float(m["fit_gain"]), "oracle_gain": float(o["gain"]), "oracle_gain_low": float(o["low"]),
               "oracle_gain_high": float(o["high"]), "fit_users": int(m["fit_users"]),
               "report_users": int(m["report_users"]), "report_requests": int(m["report_requests"]),
               "most_cut_head": cut["head"], "most_cut_factor": float(2 ** cut["log2_change_model"]),
               "most_raised_head": raised["head"], "most_raised_factor": float(2 ** raised["log2_change_model"]),
               "noise_spearman": relation["spearman"], "noise_p": relation["p_value"], "noise_heads": relation["heads"]}
    check = "holds" if o["low"] <= 0 <= o["high"] else "fails"
    numbers["oracle_check"] = check
    if "popularity" in g.index:  # the same search for the best ranking that ignores the user
        p = g.loc["popularity"]
        numbers.update(popularity_published_value=float(p["published_value"]), popularity_gain=float(p["gain"]),
                       popularity_gain_low=float(p["low"]), popularity_gain_high=float(p["high"]))
    numbers.update(anchor_head=heads.loc[heads["anchor"], "head"].iloc[0],
                   min_prediction_truth_correlation=float(free["prediction_truth_correlation"].min()),
                   max_prediction_truth_correlation=float(free["prediction_truth_correlation"].max()))
    return finding("optimal_weights_gain", "05_sensitivity", numbers, Result.BEST_WEIGHTS)


@sentence("optimal_weights_gain")
def optimal_weights_gain_sentence(n: dict, verdict: str) -> str:
    base, k, spearman = n["base"], n["k"], number(n, "noise_spearman")
    text = (f"Searching the weights (differential evolution; the model's per-head probabilities rank, the "
            f"`{base}` weights on the true probabilities judge) on {n['fit_users']:,} users and judging on the other "
            f"{n['report_users']:,}: the fitted weights change the true value of the top {k} by "
            f"{n['model_gain']:+.3g} per request ({_ci(n['model_gain_low'], n['model_gain_high'], '+.3g')}), "
            f"{n['model_gain_pct']:+.1f} % of the `{base}` weights' {n['published_value']:.3g} (oracle: "
            f"{n['oracle_value']:.3g}). On the users it was fitted on the search gained {n['fit_gain']:+.3g}. "
            f"The same search on the oracle's probabilities changes the value by {n['oracle_gain']:+.3g} "
            f"({_ci(n['oracle_gain_low'], n['oracle_gain_high'], '+.3g')}): the built-in check {n['oracle_check']}. ")
    if "popularity_gain" in n:
        text += (f"Ranked by the popularity oracle (no personal signal) the `{base}` weights carry "
                 f"{n['popularity_published_value']:.3g} per request, and the same search changes that by "
                 f"{n['popularity_gain']:+.3g} "
                 f"({_ci(n['popularity_gain_low'], n['popularity_gain_high'], '+.3g')}). ")
    text += (f"Relative to {n['anchor_head']} (held at its `{base}` weight) the search cut {n['most_cut_head']} most "
             f"(×{n['most_cut_factor']:.2g}) and raised {n['most_raised_head']} most (×{n['most_raised_factor']:.2g}); "
             + (f"across {n['noise_heads']} heads a head's change and how well it is predicted (correlation of "
                f"predicted with true probability, {n['min_prediction_truth_correlation']:.2f} to "
                f"{n['max_prediction_truth_correlation']:.2f}) have Spearman ρ {spearman:.2f} "
                f"(p {number(n, 'noise_p'):.2g})." if np.isfinite(spearman) else
                f"{n['noise_heads']} searched heads are too few to relate their changes to their noise."))
    if verdict.startswith("better weights exist"):
        text += (" Weight moved toward the better predicted heads, as Milli, Pierson and Garg argue it should."
                 if np.isfinite(spearman) and spearman > 0 and number(n, "noise_p") < 0.05 else
                 " The changes are not ordered by how noisily each head is predicted at this size.")
    elif verdict.startswith("fitted weights worse"):
        text += " The fitted weights lose on unseen users: what the search found is the fitting half's noise."
    else:
        text += (" No gain is measurable on unseen users, so the fitted changes are mostly the fitting half's noise "
                 "and say little about which heads deserve more weight.")
    return text


def frontier_distance(points: pd.DataFrame, base: str, k: int, fitted: bool = False) -> Finding:
    """points: weight_search.frontier_points rows (weights, probabilities, positive, negative, to_*_frontier[_low/_high]);
    fitted: whether the model's frontier includes the weights fitted per point (`weight_search.fitted_frontier`)."""
    numbers = {"base": base, "k": k}
    for r in points.itertuples():
        key = f"{r.weights}_{r.probabilities}"
        numbers.update({f"{key}_positive": float(r.positive), f"{key}_negative": float(r.negative)})
        for front in ("oracle", "model"):
            for suffix in ("", "_low", "_high"):
                numbers[f"{key}_to_{front}_frontier{suffix}"] = float(getattr(r, f"to_{front}_frontier{suffix}"))
    numbers.update(fitted_frontier=bool(fitted),
                   model_weights=", ".join(points.loc[points["probabilities"] == "model", "weights"]))
    return finding("frontier_distance", "05_sensitivity", numbers, Result.FRONTIER_POINTS)


@sentence("frontier_distance")
def frontier_distance_sentence(n: dict, verdict: str) -> str:
    base, k = n["base"], n["k"]
    b = f"{base}_model"

    def more(key: str, front: str) -> str:
        if not np.isfinite(number(n, f"{key}_to_{front}_frontier")):
            return "nothing to compare (the set has fewer negative engagements than any point of that frontier)"
        return (f"{n[f'{key}_to_{front}_frontier']:.3g} more "
                f"({_ci(n[f'{key}_to_{front}_frontier_low'], n[f'{key}_to_{front}_frontier_high'], '.3g')})")

    text = (f"Counting true expected engagements in the top {k} (positive: the eight positive heads; negative: reports "
            f"+ negative feedback): ranked by the model with the `{base}` weights a request's top {k} holds "
            f"{n[f'{b}_positive']:.3g} positive and {n[f'{b}_negative']:.3g} negative engagements. At that negative count "
            f"the oracle's frontier holds {more(b, 'oracle')} positive engagements and the model's own frontier ("
            + ("the better of every positive head weighted 1 with both negative heads −s, and weights fitted per s on the "
               "other half of the users" if n["fitted_frontier"] else "every positive head weighted 1, both negative heads −s")
            + f") {more(b, 'model')}.")
    others = [w for w in listed(n, "model_weights") if w != base]
    if others:
        text += " The other weight sets' distances to the model's frontier: " + "; ".join(
            f"{w} {n[f'{w}_model_to_model_frontier']:.3g} "
            f"({_ci(n[f'{w}_model_to_model_frontier_low'], n[f'{w}_model_to_model_frontier_high'], '.3g')})"
            if np.isfinite(number(n, f"{w}_model_to_model_frontier")) else f"{w} below the frontier's smallest negative count"
            for w in others) + "."
    if f"{base}_oracle_to_oracle_frontier" in n:
        text += (f" Even on the true probabilities the `{base}` weights sit {n[f'{base}_oracle_to_oracle_frontier']:.3g} "
                 "positive engagements below the frontier: they value some engagements above others, the count does not.")
    return text


@rule("frontier_distance")
def frontier_distance_verdict(n: dict) -> str:
    off = number(n, f"{n['base']}_model_to_model_frontier_low") > 0
    return "off the model's frontier" if off else "on the model's frontier"


def equal_contribution_claim(published_rates: dict, world_rates: dict, points: pd.DataFrame, gain_vs_base: dict | None,
                             base: str, preset: str = "equal_contribution", score_shares: dict | None = None
                             ) -> Finding:
    """published_rates, world_rates: weight_search.contribution_balance summaries of the `base` weights
    under the published base rates and under this world's; points: frontier_points; gain_vs_base: the
    preset's true-value difference from the base weights (difference, low, high) on the model's
    probabilities; score_shares: the recorded `score_shares` finding's numbers (chapter 3)."""
    numbers = {"base": base, "preset": preset, **{f"published_rates_{k}": v for k, v in published_rates.items()},
               **{f"world_rates_{k}": v for k, v in world_rates.items()}}
    if score_shares:
        numbers.update({"score_shares_top_head": score_shares.get("top_head"),
                        "score_shares_top_share": score_shares.get("top_share")})
    model = points[points["probabilities"] == "model"].set_index("weights")
    if preset in model.index and base in model.index:
        e, b = model.loc[preset], model.loc[base]
        numbers.update({"preset_positive": float(e["positive"]), "preset_negative": float(e["negative"]),
                        "preset_to_model_frontier": float(e["to_model_frontier"]),
                        "preset_to_model_frontier_low": float(e["to_model_frontier_low"]),
                        "preset_to_model_frontier_high": float(e["to_model_frontier_high"]),
                        "base_positive": float(b["positive"]), "base_negative": float(b["negative"])})
    if gain_vs_base is not None:
        numbers.update({"preset_value_difference": float(gain_vs_base["difference"]),
                        "preset_value_difference_low": float(gain_vs_base["low"]),
                        "preset_value_difference_high": float(gain_vs_base["high"])})
    return finding("equal_contribution_claim", "05_sensitivity", numbers, Result.CONTRIBUTIONS)


@sentence("equal_contribution_claim")
def equal_contribution_claim_sentence(n: dict, verdict: str) -> str:
    base, preset = n["base"], n["preset"]
    p = {k.removeprefix("published_rates_"): v for k, v in n.items() if k.startswith("published_rates_")}
    w = {k.removeprefix("world_rates_"): v for k, v in n.items() if k.startswith("world_rates_")}
    zero_note = f"; {p['zero_heads']} weighted 0" if p.get("zero_heads") else ""
    text = (f"Twitter's README says the weights were first set so that every head contributes about equally on "
            f"average. Under the published base rates the `{base}` weights are far from that: {p['largest_head']} "
            f"contributes {100 * p['largest_share']:.0f} % of the average score and {p['smallest_head']} "
            f"{100 * p['smallest_share']:.2g} %, {p['max_over_min']:.3g} times less ({p['heads_within_2x']} of the heads "
            f"within a factor 2 of an equal share{zero_note}); under this world's rates the largest share is "
            f"{100 * w['largest_share']:.0f} % ({w['largest_head']}), {w['max_over_min']:.3g} times the smallest.")
    if "score_shares_top_head" in n:
        text += (f" On the model's probabilities chapter 3 measured {n['score_shares_top_head']} at "
                 f"{100 * float(n['score_shares_top_share']):.0f} % of a candidate's score (`score_shares`).")
    if "preset_positive" in n:
        text += (f" Ranked by the model, the `{preset}` preset's top 10 holds {n['preset_positive']:.3g} positive and "
                 f"{n['preset_negative']:.3g} negative engagements (`{base}`: {n['base_positive']:.3g} and "
                 f"{n['base_negative']:.3g}), {n['preset_to_model_frontier']:.3g} positive engagements from the model's "
                 f"frontier ({_ci(n['preset_to_model_frontier_low'], n['preset_to_model_frontier_high'], '.3g')}).")
    if "preset_value_difference" in n:
        text += (f" Judged by the `{base}` objective it changes the true value of the top 10 by "
                 f"{n['preset_value_difference']:+.3g} per request "
                 f"({_ci(n['preset_value_difference_low'], n['preset_value_difference_high'], '+.3g')}).")
    return text


@rule("equal_contribution_claim")
def equal_contribution_claim_verdict(n: dict) -> str:
    return "roughly equal" if number(n, "published_rates_max_over_min") <= 2 else "far from equal"


def max_rule_reading(n: dict, linear_name: str, base_name: str) -> str:
    """The sentence chapter 5 says about reading March 2023's max rule linearly, from
    `weight_search.max_rule_effect`'s numbers: the rankings' agreement, what the published rule would
    change, and (where the linear reading loses to the base weights) the share of that loss it explains."""
    k = n["k"]
    said = (f"The `{linear_name}` preset reads March's rule ({n['factor']:g} × the larger of the two good-click "
            f"predictions) as {n['factor']:g} × good_click alone. Ranked by the model's probabilities, the published "
            f"rule and that reading share {100 * n['overlap']:.1f} % of each top {k} "
            f"({_ci(100 * n['overlap_low'], 100 * n['overlap_high'], '.1f')}, {n['requests']:,} requests). ")
    gain = f"{n['rule_gain']:+.3g} per request ({_ci(n['rule_gain_low'], n['rule_gain_high'], '+.3g')})"
    if not excludes_zero(n["rule_gain_low"], n["rule_gain_high"]):
        said += (f"The rule's top {k} carries a true value no different from the reading's: {gain}, an interval "
                 f"that holds 0, so the approximation is not shown to matter here.")
    else:
        said += (f"The rule's top {k} carries {'more' if n['rule_gain'] > 0 else 'less'} true value than the "
                 f"reading's: {gain}.")
    if n["linear_loss"] > 0 and excludes_zero(n["linear_loss_low"], n["linear_loss_high"]):
        said += (f" Against `{base_name}`, the reading loses {n['linear_loss']:.3g} per request "
                 f"({_ci(n['linear_loss_low'], n['linear_loss_high'], '.3g')}); the published rule would win back "
                 f"{100 * n['share_recovered']:.0f} % of that loss "
                 f"({_ci(100 * n['share_recovered_low'], 100 * n['share_recovered_high'], '.0f')})")
        if n["share_recovered_high"] < 1:
            said += f", so the rest of March's gap to `{base_name}` comes from its other weights."
        elif n["share_recovered_low"] > 0:
            said += f", an interval that reaches 100 %: the linear reading may explain all of March's gap to `{base_name}`."
        else:
            said += ", an interval too wide to say how much of the gap the reading explains."
    return said

"""Chapter 2's findings: the trained model beside the oracle and popularity."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from studylib.stats import MIN_POSITIVES, paired_mean_difference, tost_from_interval
from studylib.ranker.stopping import StoppingRule
from studylib.analysis.findings.verdicts import number, on_extent, rule
from studylib.analysis.findings.core import Finding, finding, _ci, excludes_zero, sentence, listed
from studylib.outputs import Result


@rule("convergence")
def convergence_verdict(n: dict) -> str:
    if n["runs"] == 0:
        return "unknown"
    return "converged" if n["plateaued"] == n["runs"] else "still learning"


def convergence(curves: dict[int, dict[int, float]], patience: int, min_delta: float, max_steps: int,
                applied: bool) -> Finding:
    """curves: training seed -> {step: held-out loss} (`train.held_out_losses` of each run's validation.csv).
    `applied`: the runs were stopped by this rule (stop_patience > 0); otherwise the rule only judges
    whether their curves had flattened when the fixed number of steps ran out."""
    rule = StoppingRule(patience, min_delta)
    judged = {seed: curve for seed, curve in curves.items() if len(curve) > 0}
    flat = [seed for seed, curve in judged.items() if rule.plateaued(list(curve.values()))]
    ends = [max(curve) for curve in judged.values()]
    last_gain = [1 - list(c.values())[-1] / list(c.values())[-1 - patience] for c in judged.values()
                 if len(c) > patience]
    numbers = {"runs": len(judged), "plateaued": len(flat), "max_steps": max_steps, "patience": patience,
               "min_delta": min_delta, "first_stop": min(ends) if ends else math.nan,
               "last_stop": max(ends) if ends else math.nan,
               "max_recent_gain": max(last_gain) if last_gain else math.nan, "stopped_by_rule": bool(applied)}
    return finding("convergence", "02_train", numbers, Result.CONVERGENCE)


@sentence("convergence")
def convergence_sentence(n: dict, verdict: str) -> str:
    runs, flat, patience, max_steps = n["runs"], n["plateaued"], n["patience"], n["max_steps"]
    if not runs:
        return "No held-out loss was measured during training, so whether the model converged is unknown."
    rule_text = (f"the mean held-out log loss over heads gains at most {100 * n['min_delta']:.2g} % over {patience} "
                 f"validation{'s' if patience > 1 else ''} in a row")
    said_runs = "the run" if runs == 1 else f"{runs} runs"
    if n["stopped_by_rule"]:
        where = (f"step {n['first_stop']:,}" if n["first_stop"] == n["last_stop"] else
                 f"steps {n['first_stop']:,}–{n['last_stop']:,}")
        text = f"Training stopped by the rule ({rule_text}) in {flat} of {said_runs}, at {where} of at most {max_steps:,}"
        text += "." if flat == runs else (f"; the other {runs - flat} reached the most steps "
                                          "while the held-out loss was still improving.")
    else:
        text = (f"After {max_steps:,} steps the held-out loss of {said_runs} " +
                ("has reached its plateau" if flat == runs else f"is still falling in {runs - flat} of them") +
                f" by the study's stopping rule ({rule_text}): the last {patience} validation"
                f"{'s' if patience > 1 else ''} gained up to {100 * n['max_recent_gain']:.1f} %.")
        if flat < runs:
            text += " The findings below describe a model that stopped while still learning, not a converged one."
    return text


@rule("head_quality")
def head_quality_verdict(n: dict) -> str:
    if n["evaluable_heads"] == 0:
        return "none evaluable"
    return "better than chance " + on_extent(n["better_than_chance"], n["evaluable_heads"], "evaluable head")


def head_quality(metrics: pd.DataFrame, steps: int) -> Finding:
    """metrics: inference.head_metric_intervals rows (head, positives, evaluable, auroc*, oracle_*, *_gap*)."""
    ok = metrics[metrics["evaluable"]]
    out = metrics[~metrics["evaluable"]]
    numbers = {"steps": steps, "evaluable_heads": len(ok), "heads": len(metrics),
               "not_evaluable": ", ".join(out["head"]), **{f"{h}_positives": int(p) for h, p in zip(out["head"], out["positives"])}}
    if not ok.empty:
        clear = ok[ok["auroc_low"] > 0.5]
        closest, farthest = ok.loc[ok["auroc_gap"].idxmin()], ok.loc[ok["auroc_gap"].idxmax()]
        numbers.update({"better_than_chance": len(clear), "median_auroc_gap": float(ok["auroc_gap"].median()),
                        "closest_head": closest["head"], "closest_gap": float(closest["auroc_gap"]),
                        "farthest_head": farthest["head"], "farthest_gap": float(farthest["auroc_gap"]),
                        "farthest_gap_low": float(farthest["auroc_gap_low"]),
                        "farthest_gap_high": float(farthest["auroc_gap_high"]),
                        "heads_below_oracle": len(ok[ok["auroc_gap_low"] > 0])})
    if not ok.empty and "popularity_gauc" in ok:  # within requests: the model against the best ranking that ignores the user
        numbers.update(heads_above_popularity_gauc=len(ok[ok["gauc"] > ok["popularity_gauc"]]),
                       median_gauc_minus_popularity=float((ok["gauc"] - ok["popularity_gauc"]).median()),
                       median_oracle_gauc_minus_popularity=float((ok["oracle_gauc"] - ok["popularity_gauc"]).median()))
    return finding("head_quality", "02_train", numbers, Result.METRICS)


@sentence("head_quality")
def head_quality_sentence(n: dict, verdict: str) -> str:
    steps, ok = n["steps"], n["evaluable_heads"]
    if not ok:
        return (f"After {int(steps):,} steps no head has {MIN_POSITIVES} held-out positives, so no head is evaluable; "
                "the metrics below are listed for the record only.")
    text = (f"After {int(steps):,} steps {n['better_than_chance']} of {ok} evaluable heads (at least {MIN_POSITIVES} held-out "
            f"positives) rank better than chance (the lower end of the AUROC interval is above 0.5). The median "
            f"AUROC gap to the oracle is {n['median_auroc_gap']:.3f}; {n['heads_below_oracle']} of {ok} gaps are "
            f"clearly above zero (paired user-level interval). The closest head is {n['closest_head']} (gap "
            f"{n['closest_gap']:.3f}), the farthest {n['farthest_head']} (gap {n['farthest_gap']:.3f}, "
            f"{_ci(n['farthest_gap_low'], n['farthest_gap_high'])}).")
    if "heads_above_popularity_gauc" in n:
        text += (f" Within requests (GAUC, the ranking a feed uses) the model is above the popularity oracle on "
                 f"{n['heads_above_popularity_gauc']} of {ok} evaluable heads (median GAUC difference "
                 f"{n['median_gauc_minus_popularity']:+.3f}, where the oracle's own is "
                 f"{n['median_oracle_gauc_minus_popularity']:+.3f}): point estimates, one per head.")
    out = listed(n, "not_evaluable")
    if out:
        text += (f" Not evaluable (fewer than {MIN_POSITIVES} positives, no conclusion drawn): "
                 + ", ".join(f"{h} ({n[f'{h}_positives']})" for h in out) + ".")
    return text


@rule("seed_spread")
def seed_spread_verdict(n: dict) -> str:
    """The median gap to the oracle against the median seed-to-seed range (a zero range: any gap is larger)."""
    if "median_range" not in n:
        return "unknown"  # fewer than two seeds
    return "gap larger than seed noise" if _gap_over_range(n) > 2 else "gap comparable to seed noise"


def seed_spread(per_seed: pd.DataFrame, evaluable: list[str]) -> Finding:
    """per_seed: rows (seed, head, auroc, oracle_auroc) of the main model trained with several seeds."""
    seeds = sorted(per_seed["seed"].unique())
    sub = per_seed[per_seed["head"].isin(evaluable)]
    spread = sub.groupby("head")["auroc"].agg(lambda a: a.max() - a.min())
    gap = (sub["oracle_auroc"] - sub["auroc"]).groupby(sub["head"]).mean()
    numbers = {"seeds": len(seeds)}
    if len(seeds) >= 2 and not spread.empty:
        numbers.update({"median_range": float(spread.median()), "widest_head": spread.idxmax(),
                        "widest_range": float(spread.max()), "median_gap": float(gap.median())})
        numbers["gap_over_range"] = _gap_over_range(numbers)
    return finding("seed_spread", "02_train", numbers, Result.SEEDS)


def _gap_over_range(n: dict) -> float:
    spread = number(n, "median_range")
    return number(n, "median_gap") / spread if spread > 0 else math.inf


@sentence("seed_spread")
def seed_spread_sentence(n: dict, verdict: str) -> str:
    if "median_range" not in n:
        return (f"Only {n['seeds']} training seed ran, so nothing here says how much the per-head AUROC moves "
                "between training runs; no difference between runs below should be read as real.")
    ratio = _gap_over_range(n)
    return (f"Over {n['seeds']} training seeds the per-head AUROC moves by a median range of "
            f"{n['median_range']:.3f} (widest: {n['widest_head']}, {n['widest_range']:.3f}); the median over heads of "
            f"the gap to the oracle, averaged over the seeds, is {n['median_gap']:.3f}, {ratio:.1f}× the seed "
            "range: the "
            + ("gap is a property of the model and run length, not of one lucky or unlucky seed."
               if ratio > 2 else "gap is of the size of the seed-to-seed noise, so single-run differences of this "
                                 "size between heads mean little."))


@rule("positional_feed")
def positional_feed_verdict(n: dict) -> str:
    below_name = number(n, "positional_minus_by_name_high") < 0
    if number(n, "positional_minus_random_high") < 0:
        return "positional worse than random"
    if below_name and number(n, "positional_minus_random_low") <= 0:
        return "positional no better than random"
    return "positional worse than by-name" if below_name else "no clear difference"


def positional_feed(summary: pd.DataFrame, paired: pd.DataFrame, vs_random: pd.DataFrame, weights: str,
                    k: int) -> Finding:
    """summary: ranking.feed_comparison with rankings oracle, by_name, positional, random (and popularity where
    the by-name set has it); `paired` its
    differences against by_name and `vs_random` against random (same resamples, user-level)."""
    m = summary.set_index(["ranking", "metric"])
    get = lambda r, metric: float(m.loc[(r, metric), "mean"])  # noqa: E731
    numbers = {"weights": weights, **{f"{r}_{metric}": get(r, metric) for r in ("oracle", "by_name", "positional", "random")
                                      for metric in ("utility", "kendall_tau_oracle", f"ndcg@{k}")}}
    diff = paired.set_index(["ranking", "metric"]).loc[("positional", "utility")]
    rand = vs_random.set_index(["ranking", "metric"]).loc[("positional", "utility")]
    numbers.update({"positional_minus_by_name_utility": float(diff["difference"]),
                    "positional_minus_by_name_low": float(diff["low"]),
                    "positional_minus_by_name_high": float(diff["high"]),
                    "positional_minus_random_utility": float(rand["difference"]),
                    "positional_minus_random_low": float(rand["low"]), "positional_minus_random_high": float(rand["high"])})
    numbers["k"] = k
    if ("popularity", "utility") in m.index:  # the bar a personalised ranking must clear
        numbers.update(popularity_utility=get("popularity", "utility"),
                       by_name_popularity_gain_share=get("by_name", "popularity_gain_share"),
                       positional_popularity_gain_share=get("positional", "popularity_gain_share"))
    return finding("positional_feed", "02_train", numbers, Result.POSITIONAL_FEED)


@sentence("positional_feed")
def positional_feed_sentence(n: dict, verdict: str) -> str:
    text = (f"On the held-out feed ranked with the `{n['weights']}` weights, the true weighted value of the top {n['k']} is "
            f"{n['oracle_utility']:.3g} for the oracle, {n['by_name_utility']:.3g} with heads paired "
            f"to labels by name, {n['positional_utility']:.3g} with the original's positional pairing and "
            f"{n['random_utility']:.3g} for a random order. Positional minus by-name: "
            f"{n['positional_minus_by_name_utility']:+.3g} "
            f"({_ci(n['positional_minus_by_name_low'], n['positional_minus_by_name_high'], '+.3g')}); positional minus "
            f"random: {n['positional_minus_random_utility']:+.3g} "
            f"({_ci(n['positional_minus_random_low'], n['positional_minus_random_high'], '+.3g')}; paired, user-level). "
            f"Kendall's τ with the oracle's order: by name {n['by_name_kendall_tau_oracle']:.2f}, positional "
            f"{n['positional_kendall_tau_oracle']:.2f}. ")
    if "popularity_utility" in n:
        text += (f"The popularity oracle (each tweet's true probabilities averaged over users) carries "
                 f"{n['popularity_utility']:.3g}: of the oracle's gain over it the by-name model gets "
                 f"{100 * n['by_name_popularity_gain_share']:.0f} %, the positional one "
                 f"{100 * n['positional_popularity_gain_share']:.0f} %. ")
    text += {"positional worse than random": "The positional pairing ranks the feed worse than a random order: its "
             "weights multiply models of other labels, so it promotes some of what it means to demote.",
             "positional no better than random": "The positional pairing throws away what the model learned: its "
             "feed is no better than a random order.",
             "positional worse than by-name": "The positional pairing costs real value, though it still beats "
             "a random order.",
             "no clear difference": "At this run length the difference between the pairings is not distinguishable "
             "from resampling noise."}[verdict]
    return text


CALIBRATION_MARGIN = 0.1  # calibration "survives" when its bias is shown within this share of the mean true rate (TOST)


@rule("downsampling_calibration")
def downsampling_calibration_verdict(n: dict) -> str:
    """The downsampling's own bias where a same-steps control ran, else the calibrated bias."""
    stem = "downsampling_bias" if "downsampling_bias_low" in n else "calibrated_bias"
    if excludes_zero(number(n, f"{stem}_low"), number(n, f"{stem}_high")):
        return "calibration off"
    return "calibration survives" if number(n, "bias_tost") < n["alpha"] else "unresolved"


def downsampling_calibration(calibrated: np.ndarray, raw: np.ndarray, truth: np.ndarray, users: np.ndarray,
                             neg_rate: float, n_resamples: int = 1000, seed: int = 0,
                             control: np.ndarray | None = None, margin: float = CALIBRATION_MARGIN,
                             alpha: float = 0.05) -> Finding:
    """A head trained on negatively downsampled data: its mean calibrated and raw probability against the
    mean true probability on data that was not downsampled (paired per candidate, user-level intervals).

    `control`: the same head of a model trained as long on data not downsampled; then the question is
    the downsampling's own bias (calibrated − control), else the calibrated bias itself. "Survives"
    only when a TOST shows that bias within ±`margin` × the mean true rate; a bias that excludes
    zero is "calibration off"; anything else "unresolved" (with its power). The share of the raw
    bias removed is reported, not decided on: any calibration removes most of it.
    """
    cal = paired_mean_difference(calibrated, truth, users, n_resamples, seed)
    unc = paired_mean_difference(raw, truth, users, n_resamples, seed)
    mean_truth = float(np.mean(truth))
    numbers = {"neg_rate": neg_rate, "mean_truth": mean_truth, "mean_calibrated": float(np.mean(calibrated)),
               "mean_raw": float(np.mean(raw)), "calibrated_bias": cal["difference"], "calibrated_bias_low": cal["low"],
               "calibrated_bias_high": cal["high"], "raw_bias": unc["difference"], "raw_bias_low": unc["low"],
               "raw_bias_high": unc["high"], "margin": margin, "alpha": alpha}
    removed = 1.0 - abs(cal["difference"]) / abs(unc["difference"]) if unc["difference"] else math.nan
    numbers["bias_removed"] = removed
    question = cal
    if control is not None:
        ctl = paired_mean_difference(control, truth, users, n_resamples, seed)
        question = paired_mean_difference(calibrated, control, users, n_resamples, seed)
        numbers.update({"control_bias": ctl["difference"], "control_bias_low": ctl["low"], "control_bias_high": ctl["high"],
                        "downsampling_bias": question["difference"], "downsampling_bias_low": question["low"],
                        "downsampling_bias_high": question["high"]})
    eq = tost_from_interval(question["difference"], question["low"], question["high"], margin * mean_truth, alpha)
    numbers.update({"bias_tost": eq["p"], "bias_power": eq["power"]})
    return finding("downsampling_calibration", "02_train", numbers, Result.DOWNSAMPLING)


@sentence("downsampling_calibration")
def downsampling_calibration_sentence(n: dict, verdict: str) -> str:
    mean_truth, margin = n["mean_truth"], n["margin"]
    control = "downsampling_bias" in n
    q, against = ("downsampling_bias", "the same-steps model trained without downsampling") if control else (
        "calibrated_bias", "the truth")
    text = (f"Trained with {100 * n['neg_rate']:.0f} % of its negatives kept, the favorited head predicts a mean of "
            f"{n['mean_calibrated']:.4f} after calibration against a true mean of {mean_truth:.4f} (bias "
            f"{n['calibrated_bias']:+.4f}, {_ci(n['calibrated_bias_low'], n['calibrated_bias_high'], '+.4f')}, "
            f"{100 * n['calibrated_bias'] / mean_truth:+.0f} % of the true mean); uncalibrated it would predict "
            f"{n['mean_raw']:.4f} (bias {n['raw_bias']:+.4f}).")
    if control:
        text += (f" Trained as long without downsampling the head's bias is {n['control_bias']:+.4f} "
                 f"({_ci(n['control_bias_low'], n['control_bias_high'], '+.4f')}); the downsampling's own "
                 f"bias is {n[q]:+.4f} ({_ci(n[q + '_low'], n[q + '_high'], '+.4f')}).")
    text += (f" Against {against}, " + {
        "calibration off": f"the bias excludes zero: the calibration leaves a real bias ({n[q]:+.4f}, "
                           f"{100 * n[q] / mean_truth:+.0f} % of the true mean).",
        "calibration survives": f"the bias is shown within ±{100 * margin:.0f} % of the true mean (TOST p = {n['bias_tost']:.2g}).",
        "unresolved": f"the bias is neither shown nor shown within ±{100 * margin:.0f} % of the true mean (TOST p = "
                      f"{n['bias_tost']:.2g}, power {n['bias_power']:.2f}): unresolved."}[verdict]
             + f" (The calibration removes {100 * n['bias_removed']:.0f} % of the bias in the raw output, as any "
               "calibration would remove most of it.)")
    return text


def positional_heads(pairing: pd.DataFrame) -> Finding:
    """pairing: rows (head, pairing ∈ by_name/positional, trained_on, evaluable, auroc, auroc_low, auroc_high)."""
    pos = pairing[(pairing["pairing"] == "positional") & pairing["evaluable"]]
    name = pairing[(pairing["pairing"] == "by_name")].set_index("head")["auroc"]
    below = pos[pos["auroc_high"] < 0.5]
    drop = (name.reindex(pos["head"]).to_numpy() - pos["auroc"].to_numpy())
    numbers = {"evaluable_heads": len(pos), "below_chance": len(below),
               "median_auroc_drop": float(np.median(drop)) if len(drop) else math.nan,
               "heads_below_chance": ", ".join(below["head"]),
               **{f"{h}_{key}": value for h, a, t in zip(below["head"], below["auroc"], below["trained_on"])
                  for key, value in (("auroc", float(a)), ("trained_on", t))}}
    return finding("positional_heads", "02_train", numbers, Result.PAIRING)


@sentence("positional_heads")
def positional_heads_sentence(n: dict, verdict: str) -> str:
    below = listed(n, "heads_below_chance")
    return (f"Judged against their own labels, {n['below_chance']} of {n['evaluable_heads']} evaluable positionally "
            "paired heads rank worse than chance (the whole AUROC interval below 0.5)"
            + (": " + ", ".join(f"{h} {n[f'{h}_auroc']:.2f} (trained on {n[f'{h}_trained_on']})" for h in below)
               if below else "")
            + f"; the median head loses {n['median_auroc_drop']:.3f} AUROC against pairing by name. What is left "
            "comes from correlated labels: engagements share an 'interest' direction, so a head trained on a "
            "neighbour's label still ranks its own somewhat — or, for a negative label, in reverse.")


@rule("positional_heads")
def positional_heads_verdict(n: dict) -> str:
    return "below chance " + on_extent(n["below_chance"], n["evaluable_heads"], "evaluable head")

"""Chapter 1's findings: the planted data and how personal its world is."""

from __future__ import annotations

import math

import pandas as pd

from studylib.stats import MIN_POSITIVES
from studylib.analysis.findings.core import Finding, finding, _ci, sentence, listed
from studylib.analysis.findings.verdicts import number, rule
from studylib.outputs import Result


@rule("base_rates")
def base_rates_verdict(n: dict) -> str:
    return "targets met" if number(n, "max_target_error") < 0.05 else "targets missed"


def base_rates(rates: pd.DataFrame, rate_scale: float, scenario: str, rows: int) -> Finding:
    """rates: per label base_rate, target, target_note, world_rate (the world's mean true probability),
    planted (this data set's mean true probability), realised (share of positive draws), positives."""
    off = (rates["world_rate"] - rates["target"]).abs() / rates["target"]
    enough = rates[rates["positives"] >= MIN_POSITIVES]
    drawn = ((enough["realised"] - enough["planted"]).abs() / enough["planted"]) if len(enough) else pd.Series(dtype=float)
    shift = rates["planted"] / rates["world_rate"]
    notes = rates[rates["target_note"] != ""]
    few = rates[rates["positives"] < MIN_POSITIVES]
    numbers = {"rate_scale": rate_scale, "max_target_error": float(off.max()),
               "max_draw_error": float(drawn.max()) if len(drawn) else math.nan,
               "labels_with_enough_positives": len(enough), "min_planted_over_world": float(shift.min()),
               "max_planted_over_world": float(shift.max()), "rows": rows, "scenario": scenario,
               "labels_off_target": ", ".join(notes["label"]), "labels_with_few_positives": ", ".join(few["label"]),
               **{f"{r.label}_{key}": value for r in notes.itertuples()
                  for key, value in (("target_note", r.target_note), ("target", float(r.target)),
                                     ("base_rate", float(r.base_rate)))},
               **{f"{r.label}_positives": int(r.positives) for r in few.itertuples()}}
    return finding("base_rates", "01_generate", numbers, Result.BASE_RATES)


@sentence("base_rates")
def base_rates_sentence(n: dict, verdict: str) -> str:
    rate_scale, noted, few = n["rate_scale"], listed(n, "labels_off_target"), listed(n, "labels_with_few_positives")
    text = (f"The world's mean true rate of every label matches its stated target to within "
            f"{100 * n['max_target_error']:.2g} % (relative); the target is the published rate × {rate_scale:g}")
    if noted:
        text += (", except " + ", ".join(f"{label} ({n[f'{label}_target_note']}: {100 * n[f'{label}_target']:.1f} % "
                                         f"instead of {100 * n[f'{label}_base_rate'] * rate_scale:.1f} %)"
                                         for label in noted))
    text += (f". In the {n['rows']:,}-example training set (scenario `{n['scenario']}`) the realised rates are within "
             f"{100 * n['max_draw_error']:.0f} % of the set's own true rates for the "
             f"{n['labels_with_enough_positives']} labels with at least {MIN_POSITIVES} positives")
    if n["scenario"] == "cohorts":
        text += (f"; the cohorts' suppression puts the set's true rates at {n['min_planted_over_world']:.2f}–"
                 f"{n['max_planted_over_world']:.2f}× the world's")
    few_labels = "1 label has" if len(few) == 1 else f"{len(few)} labels have"
    text += "." + (f" {few_labels} fewer than {MIN_POSITIVES} positives: "
                   + ", ".join(f"{label} ({n[f'{label}_positives']})" for label in few) + "." if few else "")
    return text



PERSONAL_TARGET = 0.3  # the default world's aim: at least this share of a top-k's value needs knowing the user


@rule("personal_signal")
def personal_signal_verdict(n: dict) -> str:
    low, high = number(n, "personal_share_low"), number(n, "personal_share_high")
    return ("mostly personal" if low > 0.5 else "partly personal" if low >= PERSONAL_TARGET - 0.05
            else "mostly popularity" if high < PERSONAL_TARGET - 0.05 else "unresolved")


def personal_signal(shares: pd.DataFrame, weights: str, pair_variance: float, k: int, requests: int) -> Finding:
    """shares: `ranking.personal_shares` rows, the first for the `weights` set, then one per head
    (weights named by the head: its probability alone)."""
    main, heads = shares.iloc[0], shares.iloc[1:]
    numbers = {"weights": weights, "pair_variance": pair_variance, "k": k, "requests": requests,
               "personal_share": float(main["personal_share"]), "personal_share_low": float(main["personal_share_low"]),
               "personal_share_high": float(main["personal_share_high"]),
               "popularity_oracle_utility": float(main["popularity_utility"]),
               "oracle_utility": float(main["oracle_utility"]), "random_utility": float(main["random_utility"])}
    if len(heads):
        lo, hi = heads.loc[heads["personal_share"].idxmin()], heads.loc[heads["personal_share"].idxmax()]
        numbers.update(least_personal_head=lo["weights"], least_personal_share=float(lo["personal_share"]),
                       most_personal_head=hi["weights"], most_personal_share=float(hi["personal_share"]))
    return finding("personal_signal", "01_generate", numbers, Result.PERSONAL_SHARE)


@sentence("personal_signal")
def personal_signal_sentence(n: dict, verdict: str) -> str:
    share, low, high = n["personal_share"], n["personal_share_low"], n["personal_share_high"]
    text = (f"In this world {100 * n['pair_variance']:.0f} % of each label's latent logit variance is the user×tweet "
            f"affinity (`pair_variance`). On {n['requests']:,} held-out requests ranked with the `{n['weights']}` weights, "
            f"the oracle's top {n['k']} carries {n['oracle_utility']:.3g} per request, the best ranking that ignores who "
            f"asks (each tweet's true probabilities averaged over users, the popularity oracle) "
            f"{n['popularity_oracle_utility']:.3g} and a random order {n['random_utility']:.3g}: "
            f"{100 * share:.0f} % ({_ci(100 * low, 100 * high, '.0f')}) of what ranking is worth needs knowing the user")
    if "least_personal_head" in n:
        text += (f"; per head from {100 * n['least_personal_share']:.0f} % ({n['least_personal_head']}) to "
                 f"{100 * n['most_personal_share']:.0f} % ({n['most_personal_head']})")
    text += {"mostly personal": ". Most of a feed's value is personal.",
             "partly personal": (f". A ranker that ignores the user leaves a measurable part of the value behind, "
                                 f"at or above the study's aim of {100 * PERSONAL_TARGET:.0f} %."),
             "mostly popularity": (f". Below the study's aim of {100 * PERSONAL_TARGET:.0f} %: a feed here is mostly "
                                   "item popularity, and a personalised model has little to show."),
             "unresolved": f". The interval reaches both sides of the study's aim ({100 * PERSONAL_TARGET:.0f} %)."}[verdict]
    return text


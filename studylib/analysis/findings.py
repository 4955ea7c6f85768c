"""The study's findings: every sentence that states a direction or a size is written here, from
the numbers of the run, never as fixed prose beside them.

Each function takes the tables a chapter computed and returns a `Finding`: its id, the chapter,
the text, the numbers the text rests on and, where it decides something, the verdict. The
notebooks display `finding.markdown()` and `record()` it into
`_build/results/<profile>/findings.json` (a list of {"id", "chapter", "text", "numbers",
"verdict", "source"}), so a reader or a test can check every sentence against its numbers.

When the report is assembled, `apply_page_plan` adds to every finding its decisions (each test's or
interval's p-value, and how it was had), its endpoint (primary or secondary), the page-wide Holm
adjustment over all of them and the verdict that adjustment leaves (`adjusted_verdict`). Claims of
absence ("no difference", "tracks", "survives") are TOST tests against a margin the profile states,
with their power; without equivalence shown they read "unresolved".
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from studylib.errors import StudyError
from studylib.io import read_json, write_json
from studylib.analysis.stats import MIN_POSITIVES

FINDINGS_FILE = "findings.json"
NULL_RATE_RANGE = (0.02, 0.08)  # a valid test at α = 0.05 rejects the null split about this often


@dataclass
class Finding:
    id: str
    chapter: str
    text: str
    numbers: dict[str, float | int | str] = field(default_factory=dict)
    verdict: str | None = None
    source: str | None = None  # the results CSV the numbers come from

    def markdown(self) -> str:
        """The chapter's sentence. Where it rests on tests or intervals, it says that its verdict is
        the chapter's: the Findings page applies one multiplicity plan over the whole page."""
        tail = ""
        if decisions({"numbers": self.numbers}):
            tail = (" *This is the chapter's verdict, before the page-wide multiplicity plan; the Findings page "
                    "says which of its differences hold under it.*")
        return f"**Finding.** {self.text}{tail}"

    def _repr_markdown_(self) -> str:
        return self.markdown()


def record(results: str | Path, *findings: Finding) -> Path:
    """Merge findings (by id) into results/findings.json, atomically; returns the file."""
    path = Path(results) / FINDINGS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    current = read_json(path, list) if path.exists() else []
    by_id = {f["id"]: f for f in current}
    for finding in findings:
        by_id[finding.id] = _plain(asdict(finding))
    write_json(path, sorted(by_id.values(), key=lambda f: (f["chapter"], f["id"])))
    return path


def load(results: str | Path) -> dict[str, dict]:
    path = Path(results) / FINDINGS_FILE
    if not path.exists():
        raise StudyError(f"{path}: no findings recorded yet")
    return {f["id"]: f for f in read_json(path, list)}


def compare(here: dict[str, dict], other: dict[str, dict], top: int = 3) -> list[dict]:
    """Two studies' findings (`load` of each) side by side, by id: both verdicts, whether the verdict
    changed (a finding present in one study only counts as changed), and the `top` shared numbers
    that moved most (relative change), as (name, here, other)."""
    rows = []
    for finding_id in sorted(set(here) | set(other)):
        a, b = here.get(finding_id), other.get(finding_id)
        numbers_a, numbers_b = (a or {}).get("numbers", {}), (b or {}).get("numbers", {})
        shared = [k for k, v in numbers_a.items() if _is_number(v) and _is_number(numbers_b.get(k))]
        moved = sorted(shared, key=lambda k: -abs(numbers_a[k] - numbers_b[k]) /
                       max(abs(numbers_a[k]), abs(numbers_b[k]), 1e-12))
        rows.append({"id": finding_id, "chapter": (a or b)["chapter"], "verdict": (a or {}).get("verdict"),
                     "other_verdict": (b or {}).get("verdict"),
                     "changed": a is None or b is None or a.get("verdict") != b.get("verdict"),
                     "numbers": [(k, numbers_a[k], numbers_b[k]) for k in moved[:top]]})
    return rows


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def budget_note(finding: dict, other: dict | None, other_profile: str) -> str:
    """The sentence a finding of a smaller study carries when a larger study's verdict differs
    (empty when it agrees or the other study lacks the finding)."""
    if other is None or other.get("verdict") == finding.get("verdict"):
        return ""
    return f" With the `{other_profile}` profile this verdict is *{other.get('verdict')}* instead."


def _plain(value):
    """JSON-safe: numpy scalars to Python, NaN to None."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def _ci(low: float, high: float, fmt: str = ".3f") -> str:
    return f"95 % CI {low:{fmt}} to {high:{fmt}}"


def excludes_zero(low: float, high: float) -> bool:
    return bool(np.isfinite(low) and np.isfinite(high) and (low > 0 or high < 0))


# ---------------------------------------------------------------- chapter 1: the data


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
               "max_planted_over_world": float(shift.max()), "rows": rows}
    text = (f"The world's mean true rate of every label matches its stated target to within "
            f"{100 * numbers['max_target_error']:.2g} % (relative); the target is the published rate × {rate_scale:g}")
    if len(notes):
        text += (", except " + ", ".join(f"{r.label} ({r.target_note}: {100 * r.target:.1f} % instead of "
                                         f"{100 * r.base_rate * rate_scale:.1f} %)" for r in notes.itertuples()))
    text += (f". In the {rows:,}-example training set (scenario `{scenario}`) the realised rates are within "
             f"{100 * numbers['max_draw_error']:.0f} % of the set's own true rates for the {len(enough)} labels with at "
             f"least {MIN_POSITIVES} positives")
    if scenario == "cohorts":
        text += (f"; the cohorts' suppression puts the set's true rates at {numbers['min_planted_over_world']:.2f}–"
                 f"{numbers['max_planted_over_world']:.2f}× the world's")
    few_labels = "1 label has" if len(few) == 1 else f"{len(few)} labels have"
    text += "." + (f" {few_labels} fewer than {MIN_POSITIVES} positives: "
                   + ", ".join(f"{r.label} ({r.positives})" for r in few.itertuples()) + "." if len(few) else "")
    verdict = "targets met" if numbers["max_target_error"] < 0.05 else "targets missed"
    return Finding("base_rates", "01_generate", text, numbers, verdict, "01_base_rates.csv")


PERSONAL_TARGET = 0.3  # the default world's aim: at least this share of a top-k's value needs knowing the user


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
    share, low, high = numbers["personal_share"], numbers["personal_share_low"], numbers["personal_share_high"]
    verdict = ("mostly personal" if low > 0.5 else "partly personal" if low >= PERSONAL_TARGET - 0.05
               else "mostly popularity" if high < PERSONAL_TARGET - 0.05 else "unresolved")
    text = (f"In this world {100 * pair_variance:.0f} % of each label's latent logit variance is the user×tweet "
            f"affinity (`pair_variance`). On {requests:,} held-out requests ranked with the `{weights}` weights, the "
            f"oracle's top {k} carries {numbers['oracle_utility']:.3g} per request, the best ranking that ignores who "
            f"asks (each tweet's true probabilities averaged over users, the popularity oracle) "
            f"{numbers['popularity_oracle_utility']:.3g} and a random order {numbers['random_utility']:.3g}: "
            f"{100 * share:.0f} % ({_ci(100 * low, 100 * high, '.0f')}) of what ranking is worth needs knowing the user")
    if len(heads):
        text += (f"; per head from {100 * numbers['least_personal_share']:.0f} % ({numbers['least_personal_head']}) to "
                 f"{100 * numbers['most_personal_share']:.0f} % ({numbers['most_personal_head']})")
    text += {"mostly personal": ". Most of a feed's value is personal.",
             "partly personal": (f". A ranker that ignores the user leaves a measurable part of the value behind, "
                                 f"at or above the study's aim of {100 * PERSONAL_TARGET:.0f} %."),
             "mostly popularity": (f". Below the study's aim of {100 * PERSONAL_TARGET:.0f} %: a feed here is mostly "
                                   "item popularity, and a personalised model has little to show."),
             "unresolved": f". The interval reaches both sides of the study's aim ({100 * PERSONAL_TARGET:.0f} %)."}[verdict]
    return Finding("personal_signal", "01_generate", text, numbers, verdict, "01_personal_share.csv")


TWHIN_GOAL = 0.5  # trained MRR at least this share of the oracle's (secondary: popularity is the bar)
PERSONAL_SIGNAL = 0.25  # the oracle must beat popularity's MRR by this share for a share of that gain to mean much


# TwHIN is judged on held-out pairs that never occur in training (a model that memorises pairs is
# rewarded on repeats, as FB15k-237 and WN18RR were rebuilt to avoid); all pairs stay a secondary row.
TWHIN_PAIRS = "unseen"


def _paired_versus_trained(evaluation: pd.DataFrame) -> dict[str, tuple[list[str], list[str]]]:
    """scorer -> (relations where its MRR is above the trained one's, where it is below), by the paired
    interval of the difference (`mrr_vs_baseline` with baseline trained): filtered ranks of the
    right-hand side, held-out pairs not seen in training."""
    if "mrr_vs_baseline_low" not in evaluation:
        return {}
    sub = evaluation[(evaluation["direction"] == "rhs") & (evaluation["ranking"] == "filtered")
                     & (evaluation["pairs"] == TWHIN_PAIRS) & (evaluation["baseline"] == "trained")]
    return {scorer: (list(rows.loc[rows["mrr_vs_baseline_low"] > 0, "relation"]),
                     list(rows.loc[rows["mrr_vs_baseline_high"] < 0, "relation"]))
            for scorer, rows in sub.groupby("scorer", sort=False) if scorer != "trained"}


def _against_popularity(evaluation: pd.DataFrame, scorer: str) -> tuple[list[str], list[str], pd.DataFrame] | None:
    """(relations where `scorer` is above popularity, where below, its rows by relation) by the paired
    interval of `mrr_over_popularity`: filtered ranks of the right-hand side, unseen held-out pairs. None
    when the evaluation has no such rows."""
    if "mrr_over_popularity_low" not in evaluation:
        return None
    rows = evaluation[(evaluation["direction"] == "rhs") & (evaluation["ranking"] == "filtered")
                      & (evaluation["pairs"] == TWHIN_PAIRS) & (evaluation["scorer"] == scorer)].set_index("relation")
    if rows.empty:
        return None
    return (list(rows.index[rows["mrr_over_popularity_low"] > 0]), list(rows.index[rows["mrr_over_popularity_high"] < 0]),
            rows)


def _named(relations: list[str]) -> str:
    """'no relation', '1 relation (fav)', '3 relations (fav, reply, retweet)'."""
    if not relations:
        return "no relation"
    return f"{len(relations)} relation{'s' if len(relations) > 1 else ''} ({', '.join(relations)})"


def twhin_link_prediction(evaluation: pd.DataFrame, steps: int) -> Finding:
    """evaluation: twhin-evaluate rows (relation, direction, scorer, ranking, pairs, n_pairs, mrr, mrr_low,
    mrr_high, ...). Reads the filtered ranks of the rhs given the lhs on the held-out pairs that never
    occur in training (the chapter's test), all held-out pairs (secondary), and the reverse direction."""
    from studylib.analysis.tables import link_prediction_table

    main = link_prediction_table(evaluation, "rhs", "filtered", TWHIN_PAIRS)
    every = link_prediction_table(evaluation, "rhs", "filtered", "all")
    reverse = link_prediction_table(evaluation, "lhs", "filtered", "all")
    reverse_unseen = link_prediction_table(evaluation, "lhs", "filtered", "unseen")
    share = main["trained_of_oracle"]
    met = list(share[share >= TWHIN_GOAL].index)
    numbers = {"steps": steps, "relations": len(share), "goal_met": len(met),
               "min_trained_of_oracle": float(share.min()), "max_trained_of_oracle": float(share.max()),
               **{f"{r}_trained_mrr": float(main.loc[r, "trained"]) for r in main.index},
               **{f"{r}_oracle_mrr": float(main.loc[r, "oracle"]) for r in main.index},
               **{f"{r}_trained_of_oracle": float(share[r]) for r in share.index},
               **{f"{r}_all_pairs_trained_of_oracle": float(every.loc[r, "trained_of_oracle"]) for r in every.index}}
    counted = evaluation[(evaluation["direction"] == "rhs") & (evaluation["ranking"] == "filtered")
                         & (evaluation["scorer"] == "trained")].pivot_table(index="relation", columns="pairs",
                                                                             values="n_pairs", sort=False)
    repeated = 1.0 - counted[TWHIN_PAIRS] / counted["all"]
    numbers.update({f"{r}_repeated_share": float(repeated[r]) for r in repeated.index})
    if "popularity" in main:  # the world's personal signal per relation: the oracle's MRR over popularity's
        numbers.update({f"{r}_oracle_to_popularity": float(main.loc[r, "oracle"] / main.loc[r, "popularity"])
                        for r in main.index})
    text = (f"Of the held-out pairs, " + ", ".join(f"{r} {100 * repeated[r]:.0f} %" for r in repeated.index)
            + " repeat a training pair (the generator draws a follow, like, retweet or notification at most once per "
            "pair; a reply may repeat); every number below is on the pairs that do not. After "
            f"{steps} steps")
    if "trained_over_popularity" in main:  # the headline: the bar is popularity, the ceiling the oracle
        gap = evaluation[(evaluation["direction"] == "rhs") & (evaluation["ranking"] == "filtered")
                         & (evaluation["pairs"] == TWHIN_PAIRS) & (evaluation["scorer"] == "trained")].set_index("relation")
        signal = [r for r in main.index if gap.loc[r, "oracle_over_popularity_low"] > 0
                  and gap.loc[r, "oracle_over_popularity"] >= PERSONAL_SIGNAL * main.loc[r, "popularity"]]
        numbers.update({f"{r}_{name}{suffix}": float(v) for r in main.index
                        for name, frame, column in (("trained_over_popularity", main, "trained_over_popularity"),
                                                    ("oracle_over_popularity", gap, "oracle_over_popularity"))
                        for suffix in ("", "_low", "_high") for v in [frame.loc[r, column + suffix]]})
        numbers["relations_with_personal_signal"] = len(signal)
        if signal:
            text += (", of what the oracle gains over ranking by popularity (training degree) the trained embeddings "
                     "reach " + ", ".join(f"{r} {100 * main.loc[r, 'trained_over_popularity']:+.0f} % "
                                          f"({100 * main.loc[r, 'trained_over_popularity_low']:+.0f} to "
                                          f"{100 * main.loc[r, 'trained_over_popularity_high']:+.0f})" for r in signal)
                     + " (MRR, filtered ranks of the right-hand side, unseen held-out pairs; 95 % intervals over users; "
                     "0 % is popularity, 100 % the oracle)")
        flat = [r for r in main.index if r not in signal]
        if flat:
            text += ("; in " + _named(flat) + " the oracle's MRR is within "
                     f"{100 * PERSONAL_SIGNAL:.0f} % of popularity's or its gain's interval holds 0 (" +
                     ", ".join(f"{r} {gap.loc[r, 'oracle_over_popularity']:+.4f} on {main.loc[r, 'popularity']:.4f}"
                               for r in flat) +
                     "): at this size the world leaves too little personal signal there for a share of it to be "
                     "measured")
        text += "."
    versus = _paired_versus_trained(evaluation)
    below_popularity = versus.get("popularity", ([], []))[0]
    if "popularity" in versus:
        higher, lower = versus["popularity"]
        numbers.update(popularity_higher=len(higher), popularity_lower=len(lower),
                       trained_above_popularity=", ".join(lower), trained_below_popularity=", ".join(higher))
        text += (f" Compared pair by pair (paired interval over users), popularity is ahead of the trained embeddings "
                 f"in {_named(higher)} and behind in {_named(lower)}.")
    plain_bar = _against_popularity(evaluation, "trained")
    if plain_bar is not None:  # the chapter's test: the trained MRR minus popularity's, paired over users
        numbers.update({f"{r}_trained_minus_popularity{suffix}": float(plain_bar[2].loc[r, "mrr_over_popularity" + suffix])
                        for r in plain_bar[2].index for suffix in ("", "_low", "_high")})
    if "pooled_popularity" in versus and below_popularity:
        higher, lower = versus["pooled_popularity"]
        numbers.update(pooled_popularity_higher=len(higher), pooled_popularity_lower=len(lower))
        text += (" A translation score <user, tweet + t_rel> ranks a user's tweets in the same order for every "
                 "relation, so the popularity it can learn is one order over all relations: the training degree "
                 f"summed over them is ahead of the trained embeddings in {_named(higher)}, behind in "
                 f"{_named(lower)}, and within its interval elsewhere.")
    text += (f" As a share of the oracle's MRR the trained embeddings reach {100 * share.min():.0f}–"
             f"{100 * share.max():.0f} %, popularity included")
    text += (f" ({len(met)} of {len(share)} relations at {100 * TWHIN_GOAL:.0f} % or more)." if len(met) < len(share)
             else ".")
    if (evaluation["ranking"] == "raw").any():
        raw = link_prediction_table(evaluation, "rhs", "raw", "all")["trained_of_oracle"]
        numbers.update(raw_min_trained_of_oracle=float(raw.min()), raw_max_trained_of_oracle=float(raw.max()))
        text += f" With raw ranks (other true entities counted as negatives) it is {100 * raw.min():.0f}–{100 * raw.max():.0f} %."
    text += (f" On all held-out pairs, repeats included, the share is "
             f"{100 * every['trained_of_oracle'].min():.0f}–{100 * every['trained_of_oracle'].max():.0f} % (a model that "
             "recalls training pairs gains there what it has not learned).")
    if "trained_node_bias" in versus:
        higher, lower = versus["trained_node_bias"]
        gain = main["trained_node_bias"] - main["trained"]
        numbers.update(node_bias_gain_min=float(gain.min()), node_bias_gain_max=float(gain.max()),
                       node_bias_higher=len(higher), node_bias_lower=len(lower))
        text += (f" A learned bias per entity and relation, started at popularity (`model.node_bias`), changes the MRR "
                 f"by {gain.min():+.4f} to {gain.max():+.4f}; the change is beyond its paired interval upward in "
                 f"{_named(higher)} and downward in {_named(lower)}.")
    bias_bar = _against_popularity(evaluation, "trained_node_bias")
    if bias_bar is not None:
        above_bar, below_bar, rows = bias_bar
        numbers.update(node_bias_above_popularity=len(above_bar), node_bias_below_popularity=len(below_bar),
                       node_bias_ahead_of_popularity=", ".join(above_bar), node_bias_behind_popularity=", ".join(below_bar),
                       **{f"{r}_node_bias_over_popularity{suffix}": float(rows.loc[r, "mrr_over_popularity" + suffix])
                          for r in rows.index for suffix in ("", "_low", "_high")})
        text += (" With those biases the embeddings carry each relation's own popularity: against ranking by it, "
                 f"pair by pair, they are ahead in {_named(above_bar)}, behind in {_named(below_bar)} and within the "
                 "interval elsewhere (MRR minus popularity's: " +
                 ", ".join(f"{r} {rows.loc[r, 'mrr_over_popularity']:+.4f} ({rows.loc[r, 'mrr_over_popularity_low']:+.4f} "
                           f"to {rows.loc[r, 'mrr_over_popularity_high']:+.4f})" for r in rows.index) + ").")
        # Behind popularity where the world holds little personal signal: the oracle's own gain over
        # popularity bounds what any score can add there, so a personal term fitted from training
        # pairs (shared with the other relations) is mostly noise for that relation.
        popularity_mrr = rows["mrr"] - rows["mrr_over_popularity"]
        little = [r for r in below_bar if "oracle_over_popularity" in rows
                  and rows.loc[r, "oracle_over_popularity"] < PERSONAL_SIGNAL * popularity_mrr[r]]
        numbers["node_bias_below_little_signal"] = len(little)
        if little:
            text += (" Where they are behind, the world leaves almost nothing personal to learn: the oracle itself "
                     "gains only " + ", ".join(
                         f"{r} {rows.loc[r, 'oracle_over_popularity']:+.4f} ({rows.loc[r, 'oracle_over_popularity_low']:+.4f} "
                         f"to {rows.loc[r, 'oracle_over_popularity_high']:+.4f}) on popularity's {popularity_mrr[r]:.4f}"
                         for r in little) +
                     f" (under {100 * PERSONAL_SIGNAL:.0f} %), so no score can gain much over popularity there, and the "
                     "personal part these embeddings fit from training pairs costs more there than it gains.")
    above = list(reverse.index[reverse["trained"] > reverse["oracle"]])
    above_unseen = list(reverse_unseen.index[reverse_unseen["trained"] > reverse_unseen["oracle"]])
    numbers.update(reverse_trained_above_oracle=len(above), reverse_unseen_trained_above_oracle=len(above_unseen))
    if above:
        text += (f" Ranking users for a tweet (the other direction), the trained scores exceed the oracle's in "
                 f"{len(above)} of {len(reverse)} relations on all pairs but in {len(above_unseen)} on unseen pairs: they recall "
                 "pairs that were drawn more than once (replies may repeat), which no "
                 "model of the probabilities can know.")
    if "popularity" not in versus:
        verdict = f"{len(met)}/{len(share)} relations at {100 * TWHIN_GOAL:.0f} % of the oracle"
    elif not below_popularity:  # an interval holding zero is no evidence of parity: count the relations shown above
        verdict = f"above popularity on {len(versus['popularity'][1])}/{len(share)} relations, below on none"
    else:
        pooled_ahead = versus.get("pooled_popularity", ([], []))[0]
        pooled_behind = versus.get("pooled_popularity", ([], []))[1]
        verdict = (f"below popularity on {len(below_popularity)}/{len(share)} relations"
                   + (f", above the popularity a translation score can carry on {len(pooled_behind)} and below it on "
                      f"{len(pooled_ahead)}" if "pooled_popularity" in versus else ""))
    if "popularity" in versus and bias_bar is not None:  # the variant that can carry per-relation popularity
        verdict += f"; with relation biases below on {len(bias_bar[1])}/{len(share)}"
        if bias_bar[1] and numbers["node_bias_below_little_signal"] == len(bias_bar[1]):
            verdict += f" (the oracle {100 * PERSONAL_SIGNAL:.0f} % or less above popularity there)"
    return Finding("twhin_link_prediction", "01b_twhin", text, numbers, verdict, "01b_link_prediction.csv")


# ---------------------------------------------------------------- chapter 2: the model beside the oracle


def convergence(curves: dict[int, dict[int, float]], patience: int, min_delta: float, max_steps: int,
                applied: bool) -> Finding:
    """curves: training seed -> {step: held-out loss} (`train.held_out_losses` of each run's validation.csv).
    `applied`: the runs were stopped by this rule (stop_patience > 0); otherwise the rule only judges
    whether their curves had flattened when the fixed number of steps ran out."""
    from studylib.ranker.train import StoppingRule

    rule = StoppingRule(patience, min_delta)
    judged = {seed: curve for seed, curve in curves.items() if len(curve) > 0}
    flat = [seed for seed, curve in judged.items() if rule.plateaued(list(curve.values()))]
    ends = [max(curve) for curve in judged.values()]
    last_gain = [1 - list(c.values())[-1] / list(c.values())[-1 - patience] for c in judged.values()
                 if len(c) > patience]
    numbers = {"runs": len(judged), "plateaued": len(flat), "max_steps": max_steps, "patience": patience,
               "min_delta": min_delta, "first_stop": min(ends) if ends else math.nan,
               "last_stop": max(ends) if ends else math.nan,
               "max_recent_gain": max(last_gain) if last_gain else math.nan}
    rule_text = (f"the mean held-out log loss over heads gains at most {100 * min_delta:.2g} % over {patience} "
                 f"validation{'s' if patience > 1 else ''} in a row")
    runs = "the run" if len(judged) == 1 else f"{len(judged)} runs"
    if not judged:
        return Finding("convergence", "02_train", "No held-out loss was measured during training, so whether the "
                       "model converged is unknown.", numbers, "unknown", "02_convergence.csv")
    if applied:
        where = (f"step {numbers['first_stop']:,}" if numbers["first_stop"] == numbers["last_stop"] else
                 f"steps {numbers['first_stop']:,}–{numbers['last_stop']:,}")
        text = f"Training stopped by the rule ({rule_text}) in {len(flat)} of {runs}, at {where} of at most {max_steps:,}"
        text += "." if len(flat) == len(judged) else (f"; the other {len(judged) - len(flat)} reached the most steps "
                                                       "while the held-out loss was still improving.")
    else:
        text = (f"After {max_steps:,} steps the held-out loss of {runs} " +
                ("has reached its plateau" if len(flat) == len(judged) else
                 f"is still falling in {len(judged) - len(flat)} of them") +
                f" by the study's stopping rule ({rule_text}): the last {patience} validation"
                f"{'s' if patience > 1 else ''} gained up to {100 * numbers['max_recent_gain']:.1f} %.")
        if len(flat) < len(judged):
            text += " The findings below describe a model that stopped while still learning, not a converged one."
    verdict = "converged" if len(flat) == len(judged) else "still learning"
    return Finding("convergence", "02_train", text, numbers, verdict, "02_convergence.csv")


def head_quality(metrics: pd.DataFrame, steps: int) -> Finding:
    """metrics: inference.head_metric_intervals rows (head, positives, evaluable, auroc*, oracle_*, *_gap*)."""
    ok = metrics[metrics["evaluable"]]
    out = metrics[~metrics["evaluable"]]
    numbers = {"steps": steps, "evaluable_heads": len(ok), "heads": len(metrics)}
    if ok.empty:
        text = (f"After {steps} steps no head has {MIN_POSITIVES} held-out positives, so no head is evaluable; "
                "the metrics below are listed for the record only.")
        return Finding("head_quality", "02_train", text, numbers, "none evaluable", "02_metrics.csv")
    clear = ok[ok["auroc_low"] > 0.5]
    closest, farthest = ok.loc[ok["auroc_gap"].idxmin()], ok.loc[ok["auroc_gap"].idxmax()]
    gap_clear = ok[ok["auroc_gap_low"] > 0]
    numbers.update({"better_than_chance": len(clear), "median_auroc_gap": float(ok["auroc_gap"].median()),
                    "closest_head": closest["head"], "closest_gap": float(closest["auroc_gap"]),
                    "farthest_head": farthest["head"], "farthest_gap": float(farthest["auroc_gap"]),
                    "farthest_gap_low": float(farthest["auroc_gap_low"]),
                    "farthest_gap_high": float(farthest["auroc_gap_high"]), "heads_below_oracle": len(gap_clear)})
    text = (f"After {steps} steps {len(clear)} of {len(ok)} evaluable heads (at least {MIN_POSITIVES} held-out "
            f"positives) rank better than chance (the lower end of the AUROC interval is above 0.5). The median "
            f"AUROC gap to the oracle is {numbers['median_auroc_gap']:.3f}; {len(gap_clear)} of {len(ok)} gaps are "
            f"clearly above zero (paired user-level interval). The closest head is {closest['head']} (gap "
            f"{closest['auroc_gap']:.3f}), the farthest {farthest['head']} (gap {farthest['auroc_gap']:.3f}, "
            f"{_ci(farthest['auroc_gap_low'], farthest['auroc_gap_high'])}).")
    if "popularity_gauc" in ok:  # within requests: the model against the best ranking that ignores the user
        above = ok[ok["gauc"] > ok["popularity_gauc"]]
        numbers.update(heads_above_popularity_gauc=len(above),
                       median_gauc_minus_popularity=float((ok["gauc"] - ok["popularity_gauc"]).median()),
                       median_oracle_gauc_minus_popularity=float((ok["oracle_gauc"] - ok["popularity_gauc"]).median()))
        text += (f" Within requests (GAUC, the ranking a feed uses) the model is above the popularity oracle on "
                 f"{len(above)} of {len(ok)} evaluable heads (median GAUC difference "
                 f"{numbers['median_gauc_minus_popularity']:+.3f}, where the oracle's own is "
                 f"{numbers['median_oracle_gauc_minus_popularity']:+.3f}): point estimates, one per head.")
    if not out.empty:
        text += (f" Not evaluable (fewer than {MIN_POSITIVES} positives, no conclusion drawn): "
                 + ", ".join(f"{h} ({p})" for h, p in zip(out["head"], out["positives"])) + ".")
    return Finding("head_quality", "02_train", text, numbers, f"{len(clear)}/{len(ok)} better than chance",
                   "02_metrics.csv")


def seed_spread(per_seed: pd.DataFrame, evaluable: list[str]) -> Finding:
    """per_seed: rows (seed, head, auroc, oracle_auroc) of the main model trained with several seeds."""
    seeds = sorted(per_seed["seed"].unique())
    sub = per_seed[per_seed["head"].isin(evaluable)]
    spread = sub.groupby("head")["auroc"].agg(lambda a: a.max() - a.min())
    gap = (sub["oracle_auroc"] - sub["auroc"]).groupby(sub["head"]).mean()
    numbers = {"seeds": len(seeds)}
    if len(seeds) < 2 or spread.empty:
        text = (f"Only {len(seeds)} training seed ran, so nothing here says how much the per-head AUROC moves "
                "between training runs; no difference between runs below should be read as real.")
        return Finding("seed_spread", "02_train", text, numbers, "unknown", "02_seeds.csv")
    widest = spread.idxmax()
    numbers.update({"median_range": float(spread.median()), "widest_head": widest, "widest_range": float(spread.max()),
                    "median_gap": float(gap.median())})
    ratio = numbers["median_gap"] / numbers["median_range"] if numbers["median_range"] > 0 else math.inf
    numbers["gap_over_range"] = ratio
    verdict = "gap larger than seed noise" if ratio > 2 else "gap comparable to seed noise"
    text = (f"Over {len(seeds)} training seeds the per-head AUROC moves by a median range of "
            f"{numbers['median_range']:.3f} (widest: {widest}, {numbers['widest_range']:.3f}); the median over heads of "
            f"the gap to the oracle, averaged over the seeds, is {numbers['median_gap']:.3f}, {ratio:.1f}× the seed "
            "range: the "
            + ("gap is a property of the model and run length, not of one lucky or unlucky seed."
               if ratio > 2 else "gap is of the size of the seed-to-seed noise, so single-run differences of this "
                                 "size between heads mean little."))
    return Finding("seed_spread", "02_train", text, numbers, verdict, "02_seeds.csv")


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
    if rand["high"] < 0:
        verdict = "positional worse than random"
    elif diff["high"] < 0 and rand["low"] <= 0:
        verdict = "positional no better than random"
    elif diff["high"] < 0:
        verdict = "positional worse than by-name"
    else:
        verdict = "no clear difference"
    text = (f"On the held-out feed ranked with the `{weights}` weights, the true weighted value of the top {k} is "
            f"{numbers['oracle_utility']:.3g} for the oracle, {numbers['by_name_utility']:.3g} with heads paired "
            f"to labels by name, {numbers['positional_utility']:.3g} with the original's positional pairing and "
            f"{numbers['random_utility']:.3g} for a random order. Positional minus by-name: "
            f"{diff['difference']:+.3g} ({_ci(diff['low'], diff['high'], '+.3g')}); positional minus random: "
            f"{rand['difference']:+.3g} ({_ci(rand['low'], rand['high'], '+.3g')}; paired, user-level). Kendall's τ "
            f"with the oracle's order: by name {numbers['by_name_kendall_tau_oracle']:.2f}, positional "
            f"{numbers['positional_kendall_tau_oracle']:.2f}. ")
    if ("popularity", "utility") in m.index:  # the bar a personalised ranking must clear
        numbers.update(popularity_utility=get("popularity", "utility"),
                       by_name_popularity_gain_share=get("by_name", "popularity_gain_share"),
                       positional_popularity_gain_share=get("positional", "popularity_gain_share"))
        text += (f"The popularity oracle (each tweet's true probabilities averaged over users) carries "
                 f"{numbers['popularity_utility']:.3g}: of the oracle's gain over it the by-name model gets "
                 f"{100 * numbers['by_name_popularity_gain_share']:.0f} %, the positional one "
                 f"{100 * numbers['positional_popularity_gain_share']:.0f} %. ")
    text += {"positional worse than random": "The positional pairing ranks the feed worse than a random order: its "
             "weights multiply models of other labels, so it promotes some of what it means to demote.",
             "positional no better than random": "The positional pairing throws away what the model learned: its "
             "feed is no better than a random order.",
             "positional worse than by-name": "The positional pairing costs real value, though it still beats "
             "a random order.",
             "no clear difference": "At this run length the difference between the pairings is not distinguishable "
             "from resampling noise."}[verdict]
    return Finding("positional_feed", "02_train", text, numbers, verdict, "02_positional_feed.csv")


CALIBRATION_MARGIN = 0.1  # calibration "survives" when its bias is shown within this share of the mean true rate (TOST)


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
    from studylib.analysis.stats import paired_mean_difference, tost_from_interval

    cal = paired_mean_difference(calibrated, truth, users, n_resamples, seed)
    unc = paired_mean_difference(raw, truth, users, n_resamples, seed)
    mean_truth = float(np.mean(truth))
    numbers = {"neg_rate": neg_rate, "mean_truth": mean_truth, "mean_calibrated": float(np.mean(calibrated)),
               "mean_raw": float(np.mean(raw)), "calibrated_bias": cal["difference"], "calibrated_bias_low": cal["low"],
               "calibrated_bias_high": cal["high"], "raw_bias": unc["difference"], "raw_bias_low": unc["low"],
               "raw_bias_high": unc["high"], "margin": margin}
    removed = 1.0 - abs(cal["difference"]) / abs(unc["difference"]) if unc["difference"] else math.nan
    numbers["bias_removed"] = removed
    question, against = cal, "the truth"
    if control is not None:
        ctl = paired_mean_difference(control, truth, users, n_resamples, seed)
        question = paired_mean_difference(calibrated, control, users, n_resamples, seed)
        against = "the same-steps model trained without downsampling"
        numbers.update({"control_bias": ctl["difference"], "control_bias_low": ctl["low"], "control_bias_high": ctl["high"],
                        "downsampling_bias": question["difference"], "downsampling_bias_low": question["low"],
                        "downsampling_bias_high": question["high"]})
    eq = tost_from_interval(question["difference"], question["low"], question["high"], margin * mean_truth, alpha)
    numbers.update({"bias_tost": eq["p"], "bias_power": eq["power"]})
    if excludes_zero(question["low"], question["high"]):
        verdict = "calibration off"
    elif eq["p"] < alpha:
        verdict = "calibration survives"
    else:
        verdict = "unresolved"
    text = (f"Trained with {100 * neg_rate:.0f} % of its negatives kept, the favorited head predicts a mean of "
            f"{numbers['mean_calibrated']:.4f} after calibration against a true mean of {mean_truth:.4f} (bias "
            f"{cal['difference']:+.4f}, {_ci(cal['low'], cal['high'], '+.4f')}, {100 * cal['difference'] / mean_truth:+.0f} % "
            f"of the true mean); uncalibrated it would predict {numbers['mean_raw']:.4f} (bias {unc['difference']:+.4f}).")
    if control is not None:
        text += (f" Trained as long without downsampling the head's bias is {numbers['control_bias']:+.4f} "
                 f"({_ci(numbers['control_bias_low'], numbers['control_bias_high'], '+.4f')}); the downsampling's own "
                 f"bias is {question['difference']:+.4f} ({_ci(question['low'], question['high'], '+.4f')}).")
    text += (f" Against {against}, " + {
        "calibration off": f"the bias excludes zero: the calibration leaves a real bias ({question['difference']:+.4f}, "
                           f"{100 * question['difference'] / mean_truth:+.0f} % of the true mean).",
        "calibration survives": f"the bias is shown within ±{100 * margin:.0f} % of the true mean (TOST p = {eq['p']:.2g}).",
        "unresolved": f"the bias is neither shown nor shown within ±{100 * margin:.0f} % of the true mean (TOST p = "
                      f"{eq['p']:.2g}, power {eq['power']:.2f}): unresolved."}[verdict]
             + f" (The calibration removes {100 * removed:.0f} % of the bias in the raw output, as any calibration would remove most of it.)")
    return Finding("downsampling_calibration", "02_train", text, numbers, verdict, "02_downsampling.csv")


def positional_heads(pairing: pd.DataFrame) -> Finding:
    """pairing: rows (head, pairing ∈ by_name/positional, trained_on, evaluable, auroc, auroc_low, auroc_high)."""
    pos = pairing[(pairing["pairing"] == "positional") & pairing["evaluable"]]
    name = pairing[(pairing["pairing"] == "by_name")].set_index("head")["auroc"]
    below = pos[pos["auroc_high"] < 0.5]
    drop = (name.reindex(pos["head"]).to_numpy() - pos["auroc"].to_numpy())
    numbers = {"evaluable_heads": len(pos), "below_chance": len(below),
               "median_auroc_drop": float(np.median(drop)) if len(drop) else math.nan}
    text = (f"Judged against their own labels, {len(below)} of {len(pos)} evaluable positionally paired heads rank "
            "worse than chance (the whole AUROC interval below 0.5)"
            + (": " + ", ".join(f"{h} {a:.2f} (trained on {t})" for h, a, t in
                                zip(below["head"], below["auroc"], below["trained_on"])) if len(below) else "")
            + f"; the median head loses {numbers['median_auroc_drop']:.3f} AUROC against pairing by name. What is left "
            "comes from correlated labels: engagements share an 'interest' direction, so a head trained on a "
            "neighbour's label still ranks its own somewhat — or, for a negative label, in reverse.")
    return Finding("positional_heads", "02_train", text, numbers, f"{len(below)} below chance", "02_pairing.csv")


# ---------------------------------------------------------------- chapter 3: scores, cohorts, regret


def score_shares(shares: pd.DataFrame, weights: str) -> Finding:
    top = shares.iloc[0]
    top3 = float(shares["mean_share"].iloc[:3].sum())
    low = shares.iloc[-1]
    numbers = {"top_head": top["head"], "top_share": float(top["mean_share"]), "top3_share": top3,
               "smallest_head": low["head"], "smallest_share": float(low["mean_share"]), "heads": len(shares)}
    even = 1.0 / len(shares)
    verdict = "dominated" if top["mean_share"] > 2 * even else "balanced"
    text = (f"With the `{weights}` weights {top['head']} makes up {100 * top['mean_share']:.0f} % of a candidate's "
            f"score on average and the three largest heads {100 * top3:.0f} %, against {100 * even:.0f} % per head for "
            f"an equal mix; the smallest contributor is {low['head']} ({100 * low['mean_share']:.1f} %). These shares "
            "are measured at the study's scaled base rates (`rate_scale`).")
    return Finding("score_shares", "03_score", text, numbers, verdict, "03_shares.csv")


def model_vs_oracle_regret(summary: pd.DataFrame, weights: str, k: int, seeds: pd.DataFrame | None = None,
                           vs_popularity: pd.DataFrame | None = None) -> Finding:
    """summary: ranking.feed_comparison rows for rankings model, oracle, random (and popularity,
    learned_popularity where the scored set has them); seeds: regret.across_seeds rows (metric regret,
    oracle_gain_share) of the main model's training seeds; vs_popularity: feed_comparison's paired rows
    against the popularity oracle (reference "popularity")."""
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
    verdict = "captures most" if share >= 0.5 else "captures some" if share > 0 else "no better than random"
    text = (f"Ranked by the model with the `{weights}` weights, the top {k} of a request carries a true weighted value "
            f"of {numbers['model_utility']:.3g} per request, against {numbers['oracle_utility']:.3g} for the oracle "
            f"(ranking by the true probabilities) and {numbers['random_utility']:.3g} for a random order: a regret of "
            f"{numbers['regret']:.3g} ({_ci(numbers['regret_low'], numbers['regret_high'], '.3g')}). The model captures "
            f"{100 * share:.0f} % ({_ci(100 * numbers['gain_share_low'], 100 * numbers['gain_share_high'], '.0f')}) of what "
            f"the oracle gains over a random order; Kendall's τ with the oracle's order "
            f"{numbers['kendall_tau_oracle']:.2f}, NDCG@{k} {numbers[f'ndcg@{k}']:.2f}.")
    if ("popularity", "utility") in m.index:
        verdict, popularity_text = _beside_popularity(m, numbers, vs_popularity, k)
        text += popularity_text
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
    return Finding("model_vs_oracle_regret", "03_score", text, numbers, verdict, "03_feed.csv")


def _beside_popularity(m: pd.DataFrame, numbers: dict, paired: pd.DataFrame | None, k: int) -> tuple[str, str]:
    """The model against the rankings that ignore the user: numbers added in place; (verdict, text)."""
    pop = lambda ranking, metric: m.loc[(ranking, metric)]  # noqa: E731
    personal = pop("popularity", "oracle_gain_share")
    over = pop("model", "popularity_gain_share")
    numbers.update(popularity_utility=float(pop("popularity", "utility")["mean"]),
                   personal_share=1.0 - float(personal["mean"]), personal_share_low=1.0 - float(personal["high"]),
                   personal_share_high=1.0 - float(personal["low"]),
                   popularity_gain_share=float(over["mean"]), popularity_gain_share_low=float(over["low"]),
                   popularity_gain_share_high=float(over["high"]))
    if ("learned_popularity", "utility") in m.index:
        numbers["learned_popularity_utility"] = float(pop("learned_popularity", "utility")["mean"])
    text = (f" The best ranking that ignores who asks (the popularity oracle) carries {numbers['popularity_utility']:.3g}"
            + (f" and smoothed per-tweet engagement rates learned from the training examples "
               f"{numbers['learned_popularity_utility']:.3g}" if "learned_popularity_utility" in numbers else "")
            + f"; {100 * numbers['personal_share']:.0f} % of the oracle's gain over a random order needs knowing the user.")
    if paired is None or paired.empty:
        return ("above popularity" if over["low"] > 0 else "below popularity" if over["high"] < 0
                else "unresolved against popularity"), text
    d = paired[(paired["ranking"] == "model") & (paired["metric"] == "utility")].iloc[0]
    numbers.update(model_minus_popularity=float(d["difference"]), model_minus_popularity_low=float(d["low"]),
                   model_minus_popularity_high=float(d["high"]))
    text += (f" The model's top {k} carries {d['difference']:+.3g} per request against the popularity oracle "
             f"({_ci(d['low'], d['high'], '+.3g')}, paired by request): it captures {100 * over['mean']:.0f} % "
             f"({_ci(100 * over['low'], 100 * over['high'], '.0f')}) of the oracle's gain over popularity.")
    verdict = ("above popularity" if d["low"] > 0 else "below popularity" if d["high"] < 0
               else "unresolved against popularity")
    text += {"above popularity": " What it learned about the user is worth something beyond item popularity.",
             "below popularity": " Ranking by item popularity alone would serve these users better.",
             "unresolved against popularity": (" Whether it beats a ranking that ignores the user is unresolved "
                                               "at this size.")}[verdict]
    return verdict, text


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
    verdict = ("shift dominates" if share["low"] > 0.5 else "model error dominates" if share["high"] < 0.5
               else "shift and error both matter")
    return Finding("regret_decomposition", "03_score", text, numbers, verdict, "03_regret_parts.csv")


def feed_by_budget(grid: pd.DataFrame, k: int, pool: int) -> Finding:
    """grid: regret.by_budget rows (pool, k, metric, mean, low, high)."""
    share = grid[grid["metric"] == "oracle_gain_share"].reset_index(drop=True)
    lo, hi = share.loc[share["mean"].idxmin()], share.loc[share["mean"].idxmax()]
    here = share[(share["k"] == k) & (share["pool"] == pool)]
    numbers = {"k": k, "pool": pool, "min_share": float(lo["mean"]), "min_share_k": int(lo["k"]),
               "min_share_pool": int(lo["pool"]), "max_share": float(hi["mean"]), "max_share_k": int(hi["k"]),
               "max_share_pool": int(hi["pool"]), "budgets": len(share)}
    if len(here):
        numbers["study_share"] = float(here["mean"].iloc[0])
    apart = bool(hi["low"] > lo["high"])
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
    return Finding("feed_by_budget", "03_score", text, numbers, "depends on the feed's size" if apart else
                   "no measurable dependence", "03_budget.csv")


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
    from studylib.analysis.stats import tost_from_interval

    others = [c for c in table["cohort"].unique() if c != reference]
    truth_rows = table[(table["cohort"] != reference) & (table["target"] == "truth")]
    largest = float(truth_rows["vs_reference"].abs().max()) if len(truth_rows) else math.nan
    numbers, parts, verdicts = {"margin": margin}, [], []
    for c in others:
        t = table[(table["cohort"] == c)].set_index("target")
        model, truth = t.loc["model"], t.loc["truth"]
        numbers.update({f"{c}_model_diff": float(model["vs_reference"]), f"{c}_model_low": float(model["vs_reference_low"]),
                        f"{c}_model_high": float(model["vs_reference_high"]),
                        f"{c}_truth_diff": float(truth["vs_reference"]), f"{c}_truth_low": float(truth["vs_reference_low"]),
                        f"{c}_truth_high": float(truth["vs_reference_high"])})
        model_sig = excludes_zero(model["vs_reference_low"], model["vs_reference_high"])
        truth_sig = excludes_zero(truth["vs_reference_low"], truth["vs_reference_high"])
        recovered = float(model["vs_reference"] / truth["vs_reference"]) if truth["vs_reference"] != 0 else math.nan
        numbers[f"{c}_recovered"] = recovered
        bias_note = ""
        if "model − truth" in t.index:
            b = t.loc["model − truth"]
            bias, b_low, b_high = float(b["vs_reference"]), float(b["vs_reference_low"]), float(b["vs_reference_high"])
            bias_sig = excludes_zero(b_low, b_high)
            eq = tost_from_interval(bias, b_low, b_high, margin * abs(truth["vs_reference"]) if truth_sig
                                    else margin * largest, alpha)
            numbers.update({f"{c}_bias_diff": bias, f"{c}_bias_tost": eq["p"], f"{c}_bias_power": eq["power"]})
            bias_note = (f"; the model's bias differs from {reference}'s by {bias:+.3g} ({_ci(b_low, b_high, '+.3g')}), "
                         f"recovering {100 * recovered:.0f} % of the true difference")
        else:  # an older table without the bias rows: nothing shows the bias small
            bias_sig, eq = False, {"p": math.nan, "power": math.nan}
        if truth_sig and model_sig and np.sign(model["vs_reference"]) != np.sign(truth["vs_reference"]):
            v = "opposite to the truth"
        elif truth_sig and model_sig and bias_sig:
            v = "understates the truth" if abs(recovered) < 1 else "overstates the truth"
        elif truth_sig and model_sig and eq["p"] < alpha:
            v = "tracks the truth"
        elif truth_sig and not model_sig and (bias_sig or not np.isfinite(eq["p"])):
            v = "misses a real difference"
        elif model_sig and not truth_sig:
            v = "invents a difference"
        elif not truth_sig and not model_sig and eq["p"] < alpha:
            v = "no difference in either"
        else:
            v = "unresolved"
        said = {"tracks the truth": f"the model follows the true difference, its bias shown within ±{100 * margin:.0f} % of it",
                "opposite to the truth": "the model moves the opposite way to the truth",
                "understates the truth": "the model follows the true difference's direction but understates it",
                "overstates the truth": "the model follows the true difference's direction but overstates it",
                "misses a real difference": "the model misses a real difference",
                "invents a difference": "the model shows a difference the truth does not have",
                "no difference in either": "neither differs, both shown within the margin",
                "unresolved": (f"neither a bias nor its absence is shown (equivalence power {eq['power']:.2f})"
                               if np.isfinite(eq["power"]) else "neither a bias nor its absence is shown")}[v]
        verdicts.append(v)
        word = lambda x: "higher" if x > 0 else "lower"  # noqa: E731
        parts.append(f"{c} users score {abs(truth['vs_reference']):.3g} {word(truth['vs_reference'])} than {reference} "
                     f"in truth ({_ci(truth['vs_reference_low'], truth['vs_reference_high'], '+.3g')}) and "
                     f"{abs(model['vs_reference']):.3g} {word(model['vs_reference'])} by the model "
                     f"({_ci(model['vs_reference_low'], model['vs_reference_high'], '+.3g')}){bias_note}: {said}")
    text = (f"Per cohort, with the `{weights}` weights and user-level intervals: " + "; ".join(parts) + ".")
    verdict = ", ".join(f"{c}: {v}" for c, v in zip(others, verdicts))
    return Finding("cohort_model_vs_truth", "03_score", text, numbers, verdict, "03_cohorts.csv")


# ---------------------------------------------------------------- chapter 4: tests that respect the design


def null_split_false_positive_rate(rates: dict, icc: dict, split: str = "user", unit: str = "user") -> Finding:
    """rates: inference.null_split_rates (split by `split`, tested on `unit` means); icc: the candidates'
    intraclass correlation within a `split` cluster."""
    lo, hi = NULL_RATE_RANGE
    alpha = rates["alpha"]
    study_rates = {k: rates[f"{k}_rate"] for k in ("welch", "mwu", "ks")}
    numbers = {"splits": rates["splits"], "alpha": alpha, **{f"{k}_rate": v for k, v in study_rates.items()},
               **{k: v for k, v in rates.items() if k.startswith("naive_")}, **icc}
    lo, hi = (lo, hi) if alpha == 0.05 else (0.4 * alpha, 1.6 * alpha)
    # each rate with its binomial 95 % interval over the splits: a rate is off when its interval excludes α,
    # and the tests are "valid" only when every interval lies inside [lo, hi] (equivalence, not a point in a window)
    n = max(1, int(rates["splits"]))
    bounds = {k: (v - Z95 * math.sqrt(v * (1 - v) / n), v + Z95 * math.sqrt(v * (1 - v) / n)) for k, v in study_rates.items()}
    numbers.update({f"{k}_rate_{side}": b[i] for k, b in bounds.items() for i, side in enumerate(("low", "high"))},
                   valid_from=lo, valid_to=hi)
    if any(b[0] > alpha for b in bounds.values()):
        verdict, said = "anti-conservative", ("At least one test rejects more often than stated (its binomial interval "
                                              "over the splits lies above α); its p-values below overstate the evidence.")
    elif any(b[1] < alpha for b in bounds.values()):
        verdict, said = "conservative", ("At least one test rejects less often than stated (its binomial interval over "
                                         "the splits lies below α): its p-values are conservative, and real differences "
                                         "may be missed.")
    elif all(lo <= b[0] and b[1] <= hi for b in bounds.values()):
        verdict, said = "valid", (f"The tests hold their stated false-positive rate: every rate's binomial interval lies "
                                  f"within {100 * lo:g}–{100 * hi:g} %.")
    else:
        verdict, said = "unresolved", (f"No rate is shown off α, but not every rate's binomial interval lies within "
                                       f"{100 * lo:g}–{100 * hi:g} %: more splits are needed to call the tests valid.")
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
    return Finding("null_split_false_positive_rate", "04_distributions", text, numbers, verdict, "04_null_splits.csv")


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
    return Finding("distribution_tests", "04_distributions", text, numbers, f"{len(rejected)} of {len(tests)}",
                   "04_tests.csv")


def fork_scores(test: pd.Series | dict, real_std: float, fork_std: float, alpha: float) -> Finding:
    """test: inference.compare_clusters of the fork model's scores on planted vs random data (user means)."""
    numbers = {"real_std": float(real_std), "fork_std": float(fork_std),
               "std_ratio": float(fork_std / real_std) if real_std > 0 else math.nan,
               "difference": float(test["difference"]), "difference_low": float(test["difference_low"]),
               "difference_high": float(test["difference_high"]), "welch_p": float(test["welch_p"])}
    differs = excludes_zero(test["difference_low"], test["difference_high"])
    text = (f"The model trained on random labels spreads its scores with a standard deviation of {fork_std:.3g}, "
            f"{numbers['std_ratio']:.2f}× the real model's {real_std:.3g}. Its mean score per user on planted vs random "
            f"candidates differs by {numbers['difference']:+.2f} ({_ci(test['difference_low'], test['difference_high'], '+.2f')}; "
            f"Welch p = {numbers['welch_p']:.2g} on user means)"
            + (": a difference, but one that comes from the features the model fitted to noise, not from user behaviour."
               if differs else ": no difference beyond resampling noise.")
            + " A score distribution of a model trained on random labels describes the weights and the base rates, "
              "not what a ranker learns; only planted (or real) labels make the comparison meaningful.")
    return Finding("fork_scores", "04_distributions", text, numbers, "differs" if differs else "no difference",
                   "04_fork.csv")


# ---------------------------------------------------------------- chapter 5: weights


def _left_out(not_evaluable, present) -> tuple[list[str], str]:
    """The heads that cannot be evaluated among `present`, and the sentence that says they are left out."""
    out = [h for h in (not_evaluable or ()) if h in set(present)]
    if not out:
        return out, ""
    return out, (f" Left out of every sentence here: {', '.join(out)} (fewer than {MIN_POSITIVES} held-out positives, "
                 f"so what the model predicts for {'it' if len(out) == 1 else 'them'} is not evaluated).")


TOP_SHARE_BAR = 0.95  # a head is "the" top of the tornado when it leads in this share of user resamples


def tornado_top_head(tornado: pd.DataFrame, metric_label: str, low: float, high: float,
                     oracle: pd.DataFrame | None = None, not_evaluable: list[str] | None = None,
                     top_share: dict[str, float] | None = None) -> Finding:
    """tornado: sensitivity.tornado_table (head, low, high, departure), largest departure first; `oracle`
    the same table on the oracle's probabilities; `not_evaluable`: heads kept out of the ranking;
    `top_share`: sensitivity.tornado_top_share, each head's share of resamples in which it leads:
    below TOP_SHARE_BAR the verdict names no head ("unresolved")."""
    out, note = _left_out(not_evaluable, tornado["head"])
    tornado = tornado[~tornado["head"].isin(out)].reset_index(drop=True)
    if oracle is not None:
        oracle = oracle[~oracle["head"].isin(out)].reset_index(drop=True)
    top, last = tornado.iloc[0], tornado.iloc[-1]
    numbers = {"top_head": top["head"], "top_low": float(top["low"]), "top_high": float(top["high"]),
               "top_departure": float(top["departure"]), "last_head": last["head"],
               "last_departure": float(last["departure"]), "low_factor": low, "high_factor": high}
    text = (f"Scaling one weight at a time, {top['head']} moves the feed most: {metric_label} {top['low']:.2f} at "
            f"×{low:g} and {top['high']:.2f} at ×{high:g} (largest departure from the base feed "
            f"{top['departure']:.2f}); {last['head']} moves it least (departure {last['departure']:.2f}).")
    verdict = str(top["head"])
    if top_share is not None:
        share = float(top_share.get(top["head"], 0.0))
        rival = max((h for h in top_share if h != top["head"]), key=lambda h: top_share[h], default=None)
        numbers.update(top_share=share, top_share_bar=TOP_SHARE_BAR)
        text += (f" It leads in {100 * share:.0f} % of user-level bootstrap resamples"
                 + (f" ({rival} in {100 * top_share[rival]:.0f} %)" if rival is not None and top_share[rival] > 0 else "")
                 + ("." if share >= TOP_SHARE_BAR else f": below {100 * TOP_SHARE_BAR:.0f} %, so which weight moves the "
                    "feed most is unresolved."))
        if share < TOP_SHARE_BAR:
            verdict = "unresolved"
    if oracle is not None:
        o = oracle.iloc[0]
        numbers.update({"oracle_top_head": o["head"], "oracle_top_departure": float(o["departure"])})
        text += (f" On the oracle's probabilities the same weight leads ({o['head']}, departure {o['departure']:.2f})."
                 if o["head"] == top["head"] else
                 f" On the oracle's probabilities {o['head']} leads instead (departure {o['departure']:.2f}): the "
                 "model's errors change which weight matters most.")
    text += note
    return Finding("tornado_top_head", "05_sensitivity", text, numbers, verdict, "05_sweep.csv")


def negative_flip(sweep: pd.DataFrame, heads: list[str], k: int, not_evaluable: list[str] | None = None) -> Finding | None:
    """sweep (model and oracle rows, feeds of top `k`): the change in expected negative feedback when a
    negative weight's sign flips; heads in `not_evaluable` are left out."""
    out, note = _left_out(not_evaluable, heads)
    heads = [h for h in heads if h not in out]
    flip = sweep[np.isclose(sweep["factor"], -1.0) & sweep["head"].isin(heads)]
    if flip.empty or "expected_negative_feedback_change_pct" not in flip:
        return None
    numbers, parts = {}, []
    for _, r in flip[flip["probabilities"] == "model"].iterrows():
        o = flip[(flip["probabilities"] == "oracle") & (flip["head"] == r["head"])]
        change, oracle_change = float(r["expected_negative_feedback_change_pct"]), float(o["expected_negative_feedback_change_pct"].iloc[0])
        numbers.update({f"{r['head']}_model_pct": change, f"{r['head']}_oracle_pct": oracle_change})
        parts.append(f"{change:+.0f} % when {r['head']} is flipped (oracle: {oracle_change:+.0f} %)")
    text = ("Flipping the sign of a negative weight (rewarding what users dislike) changes the expected negative "
            f"feedback in the top {k} by " + "; ".join(parts) + "." + note)
    return Finding("negative_flip", "05_sensitivity", text, numbers, None, "05_sweep.csv")


SOBOL_MIN_ST = 0.01  # a weight counts as influential only when its total index is at least this share of the variance


def seed_replication(rep: pd.DataFrame, base: str, sobol_n: int) -> Finding:
    """rep: sensitivity.seed_replicates (train_seed, quantity, name, value). What training the main
    model again changes in chapter 5's answers: the presets' own-objective shares and their order,
    each preset's utility against the base weights, the tornado's and Sobol's leading heads."""
    seeds = sorted(rep["train_seed"].unique())
    n = len(seeds)
    numbers: dict = {"seeds": n, "sobol_n": sobol_n, "base": base}
    if n < 2:
        return Finding("seed_replication", "05_sensitivity", "One training seed of the main model: the chapter's "
                       "answers carry no seed-to-seed variance (the profile's `seeds` is 1).", numbers, "one seed",
                       "05_seed_replicates.csv")
    parts, unstable = [], []
    own = rep[rep["quantity"] == "own_share"]
    if len(own):
        spans = own.groupby("name")["value"].agg(["min", "max"])
        for name, r in spans.iterrows():
            numbers[f"{name}_own_share_min"], numbers[f"{name}_own_share_max"] = float(r["min"]), float(r["max"])
        orders = own.sort_values(["train_seed", "value"], ascending=[True, False]).groupby("train_seed")["name"].apply(tuple)
        same_order = int((orders == orders.iloc[0]).sum())
        numbers["own_order_agreeing_seeds"] = same_order
        parts.append("own-objective shares " + ", ".join(f"{name} {100 * r['min']:.1f}–{100 * r['max']:.1f} %"
                                                          for name, r in spans.iterrows())
                     + f", in the same order in {same_order} of {n} seeds")
        if same_order < n:
            unstable.append("the presets' order")
    versus = rep[(rep["quantity"] == "utility_vs_base") & (rep["name"] != base)]
    if len(versus):
        signs = versus.groupby("name")["value"].agg(lambda v: len(set(np.sign(v.round(12)))) == 1)
        flips = [name for name, same in signs.items() if not same]
        numbers["presets_whose_utility_sign_flips"] = len(flips)
        parts.append(f"each preset's utility against `{base}` keeps its sign in every seed" if not flips else
                     f"the sign of the utility against `{base}` changes between seeds for {', '.join(flips)}")
        if flips:
            unstable.append("a preset's gain or loss")
    for quantity, label in (("tornado_top_head", "the tornado's top head"),
                            ("sobol_utility_top", f"the input with the largest Sobol total index for utility (n = {sobol_n})")):
        leads = rep[rep["quantity"] == quantity]
        if not len(leads):
            continue
        counts = leads["name"].value_counts()
        numbers[f"{quantity}"], numbers[f"{quantity}_seeds"] = str(counts.index[0]), int(counts.iloc[0])
        parts.append(f"{label} is {counts.index[0]} in {counts.iloc[0]} of {n} seeds"
                     + ("" if counts.iloc[0] == n else f" (else {', '.join(counts.index[1:])})"))
        if counts.iloc[0] < n:
            unstable.append(label.split(" (")[0])
    numbers["unstable"] = len(unstable)
    text = (f"Trained again with {n} seeds (the same data and requests), the chapter's answers read: " + "; ".join(parts)
            + ". " + ("None of them depends on the training seed." if not unstable else
                      f"Seed-dependent: {', '.join(unstable)} — one trained model would not settle "
                      f"{'it' if len(unstable) == 1 else 'them'}."))
    verdict = "stable across seeds" if not unstable else f"seed-dependent: {len(unstable)}"
    return Finding("seed_replication", "05_sensitivity", text, numbers, verdict, "05_seed_replicates.csv")


def sobol_summary(sobol: pd.DataFrame, output: str, output_label: str, n_base: int,
                  min_st: float = SOBOL_MIN_ST, not_evaluable: list[str] | None = None) -> Finding:
    """sobol: rows (probabilities ∈ model/oracle, output, input, ST, ST_conf) — wording from the intervals;
    inputs in `not_evaluable` are left out of the sentences."""
    out, note = _left_out(not_evaluable, sobol["input"])
    sobol = sobol[~sobol["input"].isin(out)]
    numbers, parts = {"sobol_n": n_base}, []
    for source in ("model", "oracle"):
        sub = sobol[(sobol["probabilities"] == source) & (sobol["output"] == output)].sort_values("ST", ascending=False)
        if sub.empty:
            continue
        top = sub.iloc[0]
        clear = sub[(sub["ST"] - sub["ST_conf"] > 0) & (sub["ST"] >= min_st)]
        numbers["min_ST"] = min_st
        numbers.update({f"{source}_top_input": top["input"], f"{source}_top_ST": float(top["ST"]),
                        f"{source}_top_ST_conf": float(top["ST_conf"]), f"{source}_clear_inputs": len(clear),
                        f"{source}_max_conf": float(sub["ST_conf"].max())})
        parts.append(f"on the {source}'s probabilities {top['input']} has the largest total index "
                     f"(ST {top['ST']:.2f} ± {top['ST_conf']:.2f}) and {len(clear)} of {len(sub)} weights have an ST "
                     f"whose interval excludes zero and that reaches {min_st:g} of the variance")
    same = numbers.get("model_top_input") == numbers.get("oracle_top_input")
    text = (f"For {output_label}, with all weights varying together: " + "; ".join(parts) + ". "
            + ("The model and the oracle agree on the most influential weight, so which weight matters most is not "
               "an artefact of the model's errors." if same else "The model and the oracle disagree on the most influential weight: part of "
               "what the weights seem to do on the model comes from its errors.")
            + f" The widest interval half-width is {max(numbers.get('model_max_conf', 0), numbers.get('oracle_max_conf', 0)):.2f} "
            f"(sobol_n = {n_base}); indices within their interval of zero are not told apart from it." + note)
    return Finding(f"sobol_{output}", "05_sensitivity", text, numbers, "agree" if same else "disagree", "05_sobol.csv")


def presets_paired(paired: pd.DataFrame, base: str, metric_labels: dict[str, str],
                   own: pd.DataFrame | None = None) -> Finding:
    """paired: rows (weights, metric, difference, low, high): each preset minus the base weights per request;
    own: sensitivity.own_objective_shares, every preset judged by its own weights on the truth."""
    numbers, parts = {"base": base}, []
    clear_count = 0
    for preset in [w for w in paired["weights"].unique() if w != base]:
        sub = paired[(paired["weights"] == preset) & paired["metric"].isin(metric_labels)]
        if {"utility", "regret"} <= set(sub["metric"]):  # the same oracle: regret moves by exactly −utility, one decision
            sub = sub[sub["metric"] != "regret"]
            numbers["regret_counted_as_utility"] = True
        bits = []
        for _, r in sub.iterrows():
            numbers[f"{preset}_{r['metric']}"] = float(r["difference"])
            numbers[f"{preset}_{r['metric']}_low"] = float(r["low"])
            numbers[f"{preset}_{r['metric']}_high"] = float(r["high"])
            if excludes_zero(r["low"], r["high"]):
                clear_count += 1
                bits.append(f"{metric_labels[r['metric']]} {r['difference']:+.3g} ({_ci(r['low'], r['high'], '+.3g')})")
        parts.append(f"{preset}: " + (", ".join(bits) if bits else "no difference whose interval excludes zero"))
    numbers["clear_differences"] = clear_count
    text = (f"Against the base `{base}` weights, per request on the same candidates (paired differences, user-level "
            "intervals): " + "; ".join(parts) + ".")
    if numbers.get("regret_counted_as_utility"):
        text += (" A preset's regret moves by exactly minus its utility (both against the same oracle), so it is "
                 "counted once, as utility.")
    if "utility" in set(paired["metric"]):
        text += (f" Utility is the `{base}` weights' own objective, which the other presets do not optimise: a loss there "
                 "measures distance from that objective, not a preset's failure at its own.")
    if own is not None and len(own):
        bits = []
        for _, r in own.iterrows():
            for key in ("own_share", "own_share_low", "own_share_high"):
                numbers[f"{r['weights']}_{key}"] = float(r[key])
            bits.append(f"{r['weights']} {100 * r['own_share']:.1f} % "
                        f"({_ci(100 * r['own_share_low'], 100 * r['own_share_high'], '.1f')} %)")
        weakest = own.loc[own["own_share"].idxmin()]
        numbers["weakest_own_objective"] = str(weakest["weights"])
        text += (" Judged each by its own objective (its weights on the true probabilities), the model's feed reaches "
                 "this share of the oracle's gain over a random order: " + ", ".join(bits) + "; the model serves "
                 f"`{weakest['weights']}`'s objective least well. Where each preset sits on the engagement/negative "
                 "frontier is `frontier_distance`.")
    return Finding("presets_paired", "05_sensitivity", text, numbers, f"{clear_count} clear differences",
                   "05_presets_paired.csv")


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
    text = (f"Searching the weights (differential evolution; the model's per-head probabilities rank, the "
            f"`{base}` weights on the true probabilities judge) on {numbers['fit_users']:,} users and judging on the other "
            f"{numbers['report_users']:,}: the fitted weights change the true value of the top {k} by "
            f"{numbers['model_gain']:+.3g} per request ({_ci(numbers['model_gain_low'], numbers['model_gain_high'], '+.3g')}), "
            f"{numbers['model_gain_pct']:+.1f} % of the `{base}` weights' {numbers['published_value']:.3g} (oracle: "
            f"{numbers['oracle_value']:.3g}). On the users it was fitted on the search gained {numbers['fit_gain']:+.3g}. "
            f"The same search on the oracle's probabilities changes the value by {numbers['oracle_gain']:+.3g} "
            f"({_ci(numbers['oracle_gain_low'], numbers['oracle_gain_high'], '+.3g')}): the built-in check {check}. ")
    if "popularity_gain" in numbers:
        text += (f"Ranked by the popularity oracle (no personal signal) the `{base}` weights carry "
                 f"{numbers['popularity_published_value']:.3g} per request, and the same search changes that by "
                 f"{numbers['popularity_gain']:+.3g} "
                 f"({_ci(numbers['popularity_gain_low'], numbers['popularity_gain_high'], '+.3g')}). ")
    anchor = heads.loc[heads["anchor"], "head"].iloc[0]
    text += (f"Relative to {anchor} (held at its `{base}` weight) the search cut {cut['head']} most "
             f"(×{numbers['most_cut_factor']:.2g}) and raised {raised['head']} most (×{numbers['most_raised_factor']:.2g}); "
             + (f"across {relation['heads']} heads a head's change and how well it is predicted (correlation of "
                f"predicted with true probability, {free['prediction_truth_correlation'].min():.2f} to "
                f"{free['prediction_truth_correlation'].max():.2f}) have Spearman ρ {relation['spearman']:.2f} "
                f"(p {relation['p_value']:.2g})." if np.isfinite(relation["spearman"]) else
                f"{relation['heads']} searched heads are too few to relate their changes to their noise."))
    if excludes_zero(m["low"], m["high"]) and m["low"] > 0:
        verdict = "better weights exist"
        text += (" Weight moved toward the better predicted heads, as Milli, Pierson and Garg argue it should."
                 if np.isfinite(relation["spearman"]) and relation["spearman"] > 0 and relation["p_value"] < 0.05 else
                 " The changes are not ordered by how noisily each head is predicted at this size.")
    elif m["high"] < 0:
        verdict = "fitted weights worse"
        text += " The fitted weights lose on unseen users: what the search found is the fitting half's noise."
    else:
        verdict = "base weights not beaten"
        text += (" No gain is measurable on unseen users, so the fitted changes are mostly the fitting half's noise "
                 "and say little about which heads deserve more weight.")
    if check == "fails":
        verdict += "; oracle check fails"
    return Finding("optimal_weights_gain", "05_sensitivity", text, numbers, verdict, "05_best_weights.csv")


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
    model = points[points["probabilities"] == "model"].set_index("weights")
    b = model.loc[base]
    def more(row, front: str) -> str:
        if not np.isfinite(row[f"to_{front}_frontier"]):
            return "nothing to compare (the set has fewer negative engagements than any point of that frontier)"
        return (f"{row[f'to_{front}_frontier']:.3g} more "
                f"({_ci(row[f'to_{front}_frontier_low'], row[f'to_{front}_frontier_high'], '.3g')})")

    text = (f"Counting true expected engagements in the top {k} (positive: the eight positive heads; negative: reports "
            f"+ negative feedback): ranked by the model with the `{base}` weights a request's top {k} holds "
            f"{b['positive']:.3g} positive and {b['negative']:.3g} negative engagements. At that negative count the oracle's "
            f"frontier holds {more(b, 'oracle')} positive engagements and the model's own frontier ("
            + ("the better of every positive head weighted 1 with both negative heads −s, and weights fitted per s on the "
               "other half of the users" if fitted else "every positive head weighted 1, both negative heads −s")
            + f") {more(b, 'model')}.")
    others = [w for w in model.index if w != base]
    if others:
        text += " The other weight sets' distances to the model's frontier: " + "; ".join(
            f"{w} {model.loc[w, 'to_model_frontier']:.3g} "
            f"({_ci(model.loc[w, 'to_model_frontier_low'], model.loc[w, 'to_model_frontier_high'], '.3g')})"
            if np.isfinite(model.loc[w, "to_model_frontier"]) else f"{w} below the frontier's smallest negative count"
            for w in others) + "."
    oracle = points[points["probabilities"] == "oracle"].set_index("weights")
    if base in oracle.index:
        text += (f" Even on the true probabilities the `{base}` weights sit {oracle.loc[base, 'to_oracle_frontier']:.3g} "
                 "positive engagements below the frontier: they value some engagements above others, the count does not.")
    off = bool(b["to_model_frontier_low"] > 0)
    return Finding("frontier_distance", "05_sensitivity", text, numbers,
                   "off the model's frontier" if off else "on the model's frontier", "05_frontier_points.csv")


def equal_contribution_claim(published_rates: dict, world_rates: dict, points: pd.DataFrame, gain_vs_base: dict | None,
                             base: str, preset: str = "equal_contribution", score_shares: dict | None = None
                             ) -> Finding:
    """published_rates, world_rates: weight_search.contribution_balance summaries of the `base` weights
    under the published base rates and under this world's; points: frontier_points; gain_vs_base: the
    preset's true-value difference from the base weights (difference, low, high) on the model's
    probabilities; score_shares: the recorded `score_shares` finding's numbers (chapter 3)."""
    p, w = published_rates, world_rates
    numbers = {"base": base, **{f"published_rates_{k}": v for k, v in p.items()},
               **{f"world_rates_{k}": v for k, v in w.items()}}
    zero_note = f"; {p['zero_heads']} weighted 0" if p.get("zero_heads") else ""
    text = (f"Twitter's README says the weights were first set so that every head contributes about equally on "
            f"average. Under the published base rates the `{base}` weights are far from that: {p['largest_head']} "
            f"contributes {100 * p['largest_share']:.0f} % of the average score and {p['smallest_head']} "
            f"{100 * p['smallest_share']:.2g} %, {p['max_over_min']:.3g} times less ({p['heads_within_2x']} of the heads "
            f"within a factor 2 of an equal share{zero_note}); under this world's rates the largest share is "
            f"{100 * w['largest_share']:.0f} % ({w['largest_head']}), {w['max_over_min']:.3g} times the smallest.")
    if score_shares:
        numbers.update({"score_shares_top_head": score_shares.get("top_head"),
                        "score_shares_top_share": score_shares.get("top_share")})
        text += (f" On the model's probabilities chapter 3 measured {score_shares.get('top_head')} at "
                 f"{100 * float(score_shares.get('top_share')):.0f} % of a candidate's score (`score_shares`).")
    model = points[points["probabilities"] == "model"].set_index("weights")
    if preset in model.index and base in model.index:
        e, b = model.loc[preset], model.loc[base]
        numbers.update({"preset_positive": float(e["positive"]), "preset_negative": float(e["negative"]),
                        "preset_to_model_frontier": float(e["to_model_frontier"]),
                        "preset_to_model_frontier_low": float(e["to_model_frontier_low"]),
                        "preset_to_model_frontier_high": float(e["to_model_frontier_high"])})
        text += (f" Ranked by the model, the `{preset}` preset's top 10 holds {e['positive']:.3g} positive and "
                 f"{e['negative']:.3g} negative engagements (`{base}`: {b['positive']:.3g} and {b['negative']:.3g}), "
                 f"{e['to_model_frontier']:.3g} positive engagements from the model's frontier "
                 f"({_ci(e['to_model_frontier_low'], e['to_model_frontier_high'], '.3g')}).")
    if gain_vs_base is not None:
        numbers.update({"preset_value_difference": float(gain_vs_base["difference"]),
                        "preset_value_difference_low": float(gain_vs_base["low"]),
                        "preset_value_difference_high": float(gain_vs_base["high"])})
        text += (f" Judged by the `{base}` objective it changes the true value of the top 10 by "
                 f"{gain_vs_base['difference']:+.3g} per request ({_ci(gain_vs_base['low'], gain_vs_base['high'], '+.3g')}).")
    verdict = "roughly equal" if p["max_over_min"] <= 2 else "far from equal"
    return Finding("equal_contribution_claim", "05_sensitivity", text, numbers, verdict, "05_contributions.csv")


# ---------------------------------------------------------------- chapter 2b: the embedding ablation


EMBEDDING_MARGIN = 0.01  # median AUROC: a gain smaller than this over random vectors is no gain (profile: ablation_margin)


def embedding_ablation(per_seed: pd.DataFrame, steps: int, margin: float = EMBEDDING_MARGIN,
                       alpha: float = 0.05) -> Finding:
    """per_seed: rows (variant, seed, head, auroc, positives) of the ablation runs.

    The variants of one seed share everything but the embeddings, so gains over `random` are
    paired by seed: a paired t-test says whether they help or hurt, and only a TOST against
    ±`margin` (with its power at this many seeds) may say they make no difference; otherwise
    the verdict is "unresolved".
    """
    from scipy.stats import t as t_dist

    from studylib.analysis.stats import POWER_BAR, tost

    ok = per_seed[per_seed["positives"] >= MIN_POSITIVES]
    med = ok.groupby(["variant", "seed"], observed=True)["auroc"].median().unstack("variant")
    seeds = len(med)
    numbers = {"seeds": seeds, "steps": steps, "heads": int(ok["head"].nunique())}
    parts, verdicts = [], []
    for v in [c for c in ("planted", "trained") if c in med and "random" in med]:
        gain = med[v] - med["random"]
        mean, sd = float(gain.mean()), float(gain.std(ddof=1)) if seeds > 1 else math.nan
        numbers.update({f"{v}_gain": mean, f"{v}_gain_sd": sd, f"{v}_gain_min": float(gain.min()),
                        f"{v}_gain_max": float(gain.max())})
        se = sd / math.sqrt(seeds) if seeds > 1 else math.nan
        p = (float(2 * t_dist.sf(abs(mean) / se, seeds - 1)) if se > 0 else
             math.nan if seeds < 2 else float(mean == 0))  # identical gains over seeds: no noise to test against
        eq = tost(mean, se, margin, seeds - 1, alpha) if seeds > 1 else {"p": math.nan, "power": math.nan}
        numbers.update({f"{v}_gain_p": p, f"{v}_tost": eq["p"], f"{v}_power": eq["power"], "margin": margin,
                        "power_bar": POWER_BAR})
        if seeds < 3:
            verdict = "too few seeds"
        elif p < alpha:
            verdict = "helps" if mean > 0 else "hurts"
        elif eq["p"] < alpha:
            verdict = f"no difference (within ±{margin:g})"
        else:
            verdict = "unresolved"
        verdicts.append(f"{v}: {verdict}")
        said = (f"paired t p = {p:.2g}; equivalence within ±{margin:g} (TOST) p = {eq['p']:.2g}, power "
                f"{eq['power']:.2f} at {seeds} seeds" if seeds >= 3 else "")
        if verdict == "unresolved" and eq["power"] < POWER_BAR:
            said += f", below the {POWER_BAR:g} bar: neither a gain nor its absence is shown"
        parts.append(f"{v} embeddings change the median AUROC by {mean:+.3f} over random ones (range over seeds "
                     f"{gain.min():+.3f} to {gain.max():+.3f}; {said}): {verdict}")
    text = (f"Over {seeds} training seeds per variant ({steps} steps each, median over {numbers['heads']} heads with "
            f"at least {MIN_POSITIVES} positives): " + "; ".join(parts) + ".")
    if seeds < 3:
        text += " With fewer than three seeds no claim about noise is made."
    if "random" in med:
        floor = med["random"]
        numbers.update({"random_auroc": float(floor.median()), "random_auroc_min": float(floor.min())})
        if floor.min() > 0.5:  # every seed: random vectors still carry something the ranker uses
            text += (f" Random vectors are not pure noise to the ranker: with them the median AUROC is "
                     f"{floor.median():.3f} (lowest seed {floor.min():.3f}; 0.5 is chance), since each user and "
                     "author keeps one fixed, distinct vector, an identifier from which per-user and per-author "
                     "effects can be memorised.")
    return Finding("embedding_ablation", "02b_twhin_ablation", text, numbers, "; ".join(verdicts), "02b_ablation_seeds.csv")


__all__ = ["FINDINGS_FILE", "Finding", "NULL_RATE_RANGE", "base_rates", "cohort_model_vs_truth", "distribution_tests", "downsampling_calibration",
           "embedding_ablation", "equal_contribution_claim", "excludes_zero", "frontier_distance", "fork_scores", "negative_flip", "head_quality", "load", "model_vs_oracle_regret",
           "null_split_false_positive_rate", "optimal_weights_gain", "personal_signal", "positional_feed", "positional_heads", "presets_paired", "record", "score_shares",
           "seed_spread", "sobol_summary", "tornado_top_head", "twhin_link_prediction"]


# ---------------------------------------------------------------- the page: one multiplicity plan

PAGE_ALPHA = 0.05
# Holm, not Benjamini–Hochberg: the page's decisions share users, seeds and models (dependence BH's
# positive-dependence condition is not shown to cover), and a reader takes each declared difference
# as a claim of its own, so the family-wise error is the rate that matters. One family: every
# decision on the page.
PAGE_ADJUSTMENT = "Holm"
# The study's questions, answered by these findings (id -> the numbers' stems that are its endpoints,
# shell patterns; empty: all of its decisions). Every other finding is secondary.
# The model's feed against the popularity oracle (paired by request) where the scored set has it: regret
# alone is >= 0 by construction, and beating a random order says nothing about personalization.
PRIMARY_ENDPOINTS = {"model_vs_oracle_regret": ("model_minus_popularity",), "positional_feed": ("positional_minus_by_name",),
                     "twhin_link_prediction": ("*_trained_minus_popularity",), "optimal_weights_gain": ()}
Z95 = 1.959963984540054  # the normal quantile behind a two-sided 95 % interval
# (finding id, stem) pairs whose _low/_high are not a 95 % interval of a difference from zero
NOT_INTERVALS = {("tornado_top_head", "top"), ("personal_signal", "personal_share"), *(("null_split_false_positive_rate", f"{t}_rate") for t in ("welch", "mwu", "ks"))}
# (finding id, stem pattern) whose interval is real but not one a normal approximation can test: a
# share of the oracle's gain over popularity divides by a gain near zero in relations with little
# personal signal, so its interval is lopsided and hundreds of percent wide. Its test is the paired
# MRR difference beside it (`*_trained_minus_popularity`).
NOT_TESTED = {("twhin_link_prediction", "*_trained_over_popularity")}
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
    from fnmatch import fnmatch

    from scipy.stats import norm

    numbers = finding.get("numbers", {})
    tested = [k for k, v in numbers.items() if k.endswith("_p") and _is_number(v)]
    if tested:
        return [{"name": k[:-2], "p": float(numbers[k]), "how": "from its test"} for k in tested]
    out = []
    for key, low in numbers.items():
        stem = key[:-4]
        high = numbers.get(stem + "_high")
        if (not key.endswith("_low") or not _is_number(low) or not _is_number(high)
                or (finding.get("id"), stem) in NOT_INTERVALS
                or any(i == finding.get("id") and fnmatch(stem, pattern) for i, pattern in NOT_TESTED)):
            continue
        se = (high - low) / (2 * Z95)
        if not se > 0:
            continue
        estimate = _interval_estimate(numbers, stem, low, high)
        out.append({"name": stem, "estimate": estimate, "low": float(low), "high": float(high),
                    "p": float(2 * norm.sf(abs(estimate) / se)),
                    "how": "from its 95 % interval (normal approximation, standard error = width / 3.92)"})
    return out


def _primary(finding_id: str, name: str) -> bool:
    from fnmatch import fnmatch

    patterns = PRIMARY_ENDPOINTS.get(finding_id)
    return patterns is not None and (not patterns or any(fnmatch(name, p) for p in patterns))


def page_plan(found: dict[str, dict] | list[dict], alpha: float = PAGE_ALPHA) -> dict[str, dict]:
    """Every finding of a run with the page-wide plan applied: its decisions (`decisions`), all of the
    page's in one Holm family, each with its adjusted p; the finding's `endpoint` (primary or
    secondary), `p_value` and `p_how` (its smallest decision p, and how it was had), `p_adjusted`,
    `adjustment` and `adjusted_verdict` (which of its declared differences, p < alpha before the
    adjustment, lapse after it). Findings without a test keep `p_value` None and say so."""
    from studylib.analysis.stats import holm

    found = {f["id"]: f for f in (found.values() if isinstance(found, dict) else found)}
    tests = {i: decisions(f) for i, f in found.items()}
    flat = [d for i in sorted(tests) for d in tests[i]]
    adjusted = holm(np.array([d["p"] for d in flat])) if flat else np.array([])
    for d, p in zip(flat, adjusted):
        d["p_adjusted"] = float(p)
    out = {}
    for i, f in found.items():
        ds = tests[i]
        for d in ds:
            d["primary"] = _primary(i, d["name"])
        f = {**f, "decisions": ds, "endpoint": "primary" if i in PRIMARY_ENDPOINTS else "secondary",
             "adjustment": f"{PAGE_ADJUSTMENT} over the page's {len(flat)} decisions, α = {alpha:g}"}
        if not ds:
            f.update(p_value=None, p_how="no test: a threshold rule", p_adjusted=None,
                     adjusted_verdict="no test to adjust (a threshold rule)")
        else:
            best = min(ds, key=lambda d: d["p"])
            declared = [d for d in ds if (excludes_zero(d["low"], d["high"]) if "low" in d else d["p"] < alpha)]
            lapsed = [d["name"] for d in declared if d["p_adjusted"] >= alpha]
            f.update(p_value=best["p"], p_how=best["how"], p_adjusted=min(d["p_adjusted"] for d in ds))
            if not declared:
                f["adjusted_verdict"] = "no difference declared before the adjustment"
            elif not lapsed:
                f["adjusted_verdict"] = (f"holds: {'its' if len(declared) == 1 else f'all {len(declared)}'} declared "
                                         f"difference{'s' if len(declared) > 1 else ''} survive{'s' if len(declared) == 1 else ''} "
                                         f"page-wide {PAGE_ADJUSTMENT}")
            else:
                f["adjusted_verdict"] = (f"{len(lapsed)} of {len(declared)} declared differences lapse under page-wide "
                                         f"{PAGE_ADJUSTMENT}: {', '.join(lapsed)}")
            f["lapsed"] = lapsed  # the differences the finding's own text declares that the page cannot
        out[i] = _plain(f)
    return out


def apply_page_plan(results: str | Path, alpha: float = PAGE_ALPHA) -> dict[str, dict]:
    """`page_plan` over results/findings.json, written back (so the file carries every finding's p-value,
    adjusted p and adjusted verdict); returns the findings by id."""
    planned = page_plan(load(results), alpha)
    write_json(Path(results) / FINDINGS_FILE, sorted(planned.values(), key=lambda f: (f["chapter"], f["id"])))
    return planned


__all__ += ["PAGE_ADJUSTMENT", "PAGE_ALPHA", "PRIMARY_ENDPOINTS", "apply_page_plan", "decisions", "page_plan"]


# ---------------------------------------------------------------- the report's first page: a computed abstract

ORIGINAL_CANDIDATES = 1500  # candidates the original ranks per timeline request (the published description)


def _page_wide(f: dict) -> str:
    """Whether a primary finding's endpoint differences survive the page-wide plan."""
    declared = [d for d in f.get("decisions", []) if d.get("primary") and d["p"] < PAGE_ALPHA]
    if not declared:
        return ""
    lapsed = [d["name"] for d in declared if d["p_adjusted"] >= PAGE_ALPHA]
    if not lapsed:
        return f" (each declared difference survives page-wide {PAGE_ADJUSTMENT})"
    return f" ({len(lapsed)} of {len(declared)} lapse under page-wide {PAGE_ADJUSTMENT}: {', '.join(lapsed)})"


def _endpoint_sentence(f: dict) -> str:
    """A primary finding without a tailored sentence: its primary decisions with their intervals."""
    ds = [d for d in f.get("decisions", []) if d.get("primary") and "low" in d]
    said = "; ".join(f"{d['name'].replace('_', ' ')} {d['estimate']:+.3g} ({_ci(d['low'], d['high'], '+.3g')})" for d in ds)
    return f"`{f['id']}`: {said or f.get('verdict') or 'no interval'}{_page_wide(f)}."


def abstract(found: dict[str, dict], params: dict) -> str:
    """The report's opening paragraphs from the run's primary findings (`page_plan` applied) and its
    parameters: one answer per question of the study, each with its interval and page-wide verdict,
    and the limits the run's own settings put on them. Questions without their finding are left out."""
    found = page_plan(found) if found and "adjusted_verdict" not in next(iter(found.values())) else found
    answers = []
    world = found.get("personal_signal")
    if world is not None:
        n = world["numbers"]
        answers.append(f"In the planted world of this run, {100 * n['personal_share']:.0f} % "
                       f"({_ci(100 * n['personal_share_low'], 100 * n['personal_share_high'], '.0f')}) of what ranking a "
                       f"top {n['k']} is worth needs knowing the user: the rest a ranking by each tweet's average "
                       f"engagement (the popularity oracle) already gets.")
    reg = found.get("model_vs_oracle_regret")
    if reg is not None:
        n = reg["numbers"]
        sentence = (f"Ranked by its scores with the `{n['weights']}` weights, the Heavy Ranker's feed carries a regret of "
                    f"{n['regret']:.3g} per request against the oracle ({_ci(n['regret_low'], n['regret_high'], '.3g')}"
                    + (f"; the oracle's top {params.get('top_k', 10)} carries {n['oracle_utility']:.3g}"
                       if _is_number(n.get("oracle_utility")) else "") + "), "
                    f"{100 * n['gain_share']:.0f} % ({_ci(100 * n['gain_share_low'], 100 * n['gain_share_high'], '.0f')}) "
                    f"of what the oracle gains over a random order")
        if _is_number(n.get("model_minus_popularity")):
            sentence += (f"; against the popularity oracle it gains {n['model_minus_popularity']:+.3g} per request "
                         f"({_ci(n['model_minus_popularity_low'], n['model_minus_popularity_high'], '+.3g')}, paired), "
                         f"{100 * n['popularity_gain_share']:.0f} % of the oracle's gain over popularity")
        answers.append(sentence + f"{_page_wide(reg)}.")
    pos = found.get("positional_feed")
    if pos is not None and _is_number(pos["numbers"].get("positional_minus_by_name_utility")):
        n = pos["numbers"]
        answers.append(f"Paired with its labels by position, as the published configuration does, the ranker's top of the "
                       f"feed changes in true value by {n['positional_minus_by_name_utility']:+.3g} per request against "
                       f"pairing them by name ({_ci(n['positional_minus_by_name_low'], n['positional_minus_by_name_high'], '+.3g')})"
                       f"{_page_wide(pos)}.")
    rel = found.get("twhin_link_prediction")
    if rel is not None:
        n = rel["numbers"]
        if "trained_above_popularity" in n:  # the finding's own pair-by-pair comparison with popularity
            above = [r for r in n["trained_above_popularity"].split(", ") if r]
            below = [r for r in n["trained_below_popularity"].split(", ") if r]
            answers.append(f"TwHIN's trained embeddings rank held-out engagements they have not seen in training better "
                           f"than popularity on {_named(above)} "
                           f"and worse on {_named(below)} of {n['relations']}, by the paired 95 % intervals of the MRR "
                           f"difference over users{_page_wide(rel)}.")
        if "node_bias_behind_popularity" in n:  # the variant that can carry each relation's own popularity
            ahead = [r for r in n["node_bias_ahead_of_popularity"].split(", ") if r]
            behind = [r for r in n["node_bias_behind_popularity"].split(", ") if r]
            tests = {d["name"]: d for d in rel.get("decisions", [])}
            lapsed = [r for r in behind if tests.get(f"{r}_node_bias_over_popularity", {}).get("p_adjusted", 0) >= PAGE_ALPHA]
            answers.append(f"With a learned bias per entity and relation, started at popularity, they are better on "
                           f"{_named(ahead)} and worse on {_named(behind)}"
                           + (f" (on {', '.join(lapsed)} the shortfall does not survive page-wide {PAGE_ADJUSTMENT})"
                              if lapsed else "") + ".")
    for i in PRIMARY_ENDPOINTS:
        if i in found and i not in ("twhin_link_prediction", "positional_feed", "model_vs_oracle_regret"):
            answers.append(_endpoint_sentence(found[i]))
    get = lambda name, default=0: params.get(name, default)  # noqa: E731
    candidates = get("candidates", 50)
    limits = [f"These answers hold for the planted world this run generated (scenario `{get('scenario', '?')}`, base rates "
              f"scaled ×{get('rate_scale', 1):g}), not for Twitter's data, which is not public",
              f"{get('train_examples'):,} training examples and {get('steps'):,} steps with {get('seeds', 1)} seed"
              f"{'s' if get('seeds', 1) != 1 else ''}"]
    conv = found.get("convergence")
    if conv is not None and conv.get("verdict"):
        limits[-1] += f" (convergence: *{conv['verdict']}*)"
    limits.append(f"{candidates} candidates per request against the original's about {ORIGINAL_CANDIDATES:,}, so a top "
                  f"{get('top_k', 10)} is {100 * get('top_k', 10) / max(1, candidates):.0f} % of the pool here")
    hq = found.get("head_quality")
    if hq is not None and _is_number(hq["numbers"].get("evaluable_heads")) and _is_number(hq["numbers"].get("heads")):
        limits.append(f"{hq['numbers']['evaluable_heads']} of {hq['numbers']['heads']} heads have enough held-out "
                      f"positives ({MIN_POSITIVES}) to be evaluated")
    primary = [i for i in PRIMARY_ENDPOINTS if i in found]
    lapsed = [i for i in found if "lapse" in (found[i].get("adjusted_verdict") or "")]
    plan = (f"Primary endpoints: {', '.join(f'`{i}`' for i in primary)}; every verdict on the Findings page is read "
            f"under one {PAGE_ADJUSTMENT} plan over the page, under which {len(lapsed)} finding"
            f"{'s' if len(lapsed) != 1 else ''} lose{'s' if len(lapsed) == 1 else ''} a declared difference.")
    return ("## Abstract\n\n" + " ".join(answers) + ("\n\n" if answers else "") + plan
            + "\n\n**Limits.** " + "; ".join(limits) + ".\n\n")


__all__ += ["ORIGINAL_CANDIDATES", "TOP_SHARE_BAR", "abstract"]
__all__ += ["seed_replication"]

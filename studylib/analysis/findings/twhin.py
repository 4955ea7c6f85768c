"""Chapters 1b and 2b's findings: TwHIN's link prediction and the ranker's embedding ablation."""

from __future__ import annotations

import math

import pandas as pd
from scipy.stats import t as t_dist

from studylib.stats import MIN_POSITIVES, POWER_BAR, seeds_for_power, tost
from studylib.analysis.findings.core import Finding, finding, _named, sentence, listed
from studylib.analysis.findings.verdicts import PART_JOIN, number, on_extent, rule
from studylib.outputs import Result
from studylib.analysis.tables import link_prediction_table


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


def twhin_link_prediction(evaluation: pd.DataFrame, steps: int, stopping: dict[str, dict] | None = None) -> Finding:
    """evaluation: twhin-evaluate rows (relation, direction, scorer, ranking, pairs, n_pairs, mrr, mrr_low,
    mrr_high, ...). Reads the filtered ranks of the rhs given the lhs on the held-out pairs that never
    occur in training (the chapter's test), all held-out pairs (secondary), and the reverse direction.
    stopping: scorer -> the run's `stopping.json` (held-out early stopping), where the runs have one."""
    main = link_prediction_table(evaluation, "rhs", "filtered", TWHIN_PAIRS)
    every = link_prediction_table(evaluation, "rhs", "filtered", "all")
    reverse = link_prediction_table(evaluation, "lhs", "filtered", "all")
    reverse_unseen = link_prediction_table(evaluation, "lhs", "filtered", "unseen")
    share = main["trained_of_oracle"]
    numbers = {"steps": steps, "relations": len(share), "goal_met": int((share >= TWHIN_GOAL).sum()),
               "relation_names": ", ".join(main.index),
               "min_trained_of_oracle": float(share.min()), "max_trained_of_oracle": float(share.max()),
               **{f"{r}_trained_mrr": float(main.loc[r, "trained"]) for r in main.index},
               **{f"{r}_oracle_mrr": float(main.loc[r, "oracle"]) for r in main.index},
               **{f"{r}_trained_of_oracle": float(share[r]) for r in share.index},
               **{f"{r}_all_pairs_trained_of_oracle": float(every.loc[r, "trained_of_oracle"]) for r in every.index},
               "all_pairs_min_trained_of_oracle": float(every["trained_of_oracle"].min()),
               "all_pairs_max_trained_of_oracle": float(every["trained_of_oracle"].max())}
    counted = evaluation[(evaluation["direction"] == "rhs") & (evaluation["ranking"] == "filtered")
                         & (evaluation["scorer"] == "trained")].pivot_table(index="relation", columns="pairs",
                                                                             values="n_pairs", sort=False)
    repeated = 1.0 - counted[TWHIN_PAIRS] / counted["all"]
    numbers["repeated_relations"] = ", ".join(repeated.index)
    numbers.update({f"{r}_repeated_share": float(repeated[r]) for r in repeated.index})
    if "popularity" in main:  # the world's personal signal per relation: the oracle's MRR over popularity's
        numbers.update({f"{r}_oracle_to_popularity": float(main.loc[r, "oracle"] / main.loc[r, "popularity"])
                        for r in main.index})
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
        numbers["personal_signal_relations"] = ", ".join(signal)
        numbers.update({f"{r}_popularity_mrr": float(main.loc[r, "popularity"]) for r in main.index})
    versus = _paired_versus_trained(evaluation)
    if "popularity" in versus:
        higher, lower = versus["popularity"]
        numbers.update(popularity_higher=len(higher), popularity_lower=len(lower),
                       trained_above_popularity=", ".join(lower), trained_below_popularity=", ".join(higher))
    plain_bar = _against_popularity(evaluation, "trained")
    if plain_bar is not None:  # the chapter's test: the trained MRR minus popularity's, paired over users
        numbers.update({f"{r}_trained_minus_popularity{suffix}": float(plain_bar[2].loc[r, "mrr_over_popularity" + suffix])
                        for r in plain_bar[2].index for suffix in ("", "_low", "_high")})
    if "pooled_popularity" in versus and versus.get("popularity", ([], []))[0]:
        higher, lower = versus["pooled_popularity"]
        numbers.update(pooled_popularity_higher=len(higher), pooled_popularity_lower=len(lower),
                       pooled_popularity_ahead=", ".join(higher), pooled_popularity_behind=", ".join(lower))
    if (evaluation["ranking"] == "raw").any():
        raw = link_prediction_table(evaluation, "rhs", "raw", "all")["trained_of_oracle"]
        numbers.update(raw_min_trained_of_oracle=float(raw.min()), raw_max_trained_of_oracle=float(raw.max()))
    if "trained_node_bias" in versus:
        higher, lower = versus["trained_node_bias"]
        gain = main["trained_node_bias"] - main["trained"]
        numbers.update(node_bias_gain_min=float(gain.min()), node_bias_gain_max=float(gain.max()),
                       node_bias_higher=len(higher), node_bias_lower=len(lower),
                       node_bias_higher_relations=", ".join(higher), node_bias_lower_relations=", ".join(lower))
    bias_bar = _against_popularity(evaluation, "trained_node_bias")
    if bias_bar is not None:
        above_bar, below_bar, rows = bias_bar
        numbers.update(node_bias_above_popularity=len(above_bar), node_bias_below_popularity=len(below_bar),
                       node_bias_ahead_of_popularity=", ".join(above_bar), node_bias_behind_popularity=", ".join(below_bar),
                       node_bias_relations=", ".join(rows.index),
                       **{f"{r}_node_bias_over_popularity{suffix}": float(rows.loc[r, "mrr_over_popularity" + suffix])
                          for r in rows.index for suffix in ("", "_low", "_high")})
        # Behind popularity where the world holds little personal signal: the oracle's own gain over
        # popularity bounds what any score can add there, so a personal term fitted from training
        # pairs (shared with the other relations) is mostly noise for that relation.
        popularity_mrr = rows["mrr"] - rows["mrr_over_popularity"]
        little = [r for r in below_bar if "oracle_over_popularity" in rows
                  and rows.loc[r, "oracle_over_popularity"] < PERSONAL_SIGNAL * popularity_mrr[r]]
        numbers["node_bias_below_little_signal"] = len(little)
        numbers["node_bias_little_signal_relations"] = ", ".join(little)
        numbers.update({f"{r}_node_bias_{key}": float(value) for r in little
                        for key, value in (("popularity_mrr", popularity_mrr[r]),
                                           ("oracle_gain", rows.loc[r, "oracle_over_popularity"]),
                                           ("oracle_gain_lower", rows.loc[r, "oracle_over_popularity_low"]),
                                           ("oracle_gain_upper", rows.loc[r, "oracle_over_popularity_high"]))})
    neighbours = _against_popularity(evaluation, "neighbourhood")
    if neighbours is not None:  # the degree heuristic link-prediction benchmarks set beside embeddings
        ahead, behind, rows = neighbours
        numbers.update(neighbourhood_ahead_of_popularity=", ".join(ahead), neighbourhood_behind_popularity=", ".join(behind),
                       **{f"{r}_neighbourhood_minus_popularity{suffix}": float(rows.loc[r, "mrr_over_popularity" + suffix])
                          for r in rows.index for suffix in ("", "_low", "_high")})
    for scorer in ("trained", "trained_node_bias"):
        stop = (stopping or {}).get(scorer)
        if stop:
            numbers.update({f"{scorer}_best_step": int(stop["best_step"]), f"{scorer}_last_step": int(stop["last_step"]),
                            f"{scorer}_val_every": int(stop["rule"]["val_every"]),
                            f"{scorer}_stopped_early": bool(stop["stopped_early"])})
    numbers.update(reverse_relations=len(reverse),
                   reverse_trained_above_oracle=int((reverse["trained"] > reverse["oracle"]).sum()),
                   reverse_unseen_trained_above_oracle=int((reverse_unseen["trained"] > reverse_unseen["oracle"]).sum()))
    return finding("twhin_link_prediction", "01b_twhin", numbers, Result.LINK_PREDICTION)


@sentence("twhin_link_prediction")
def twhin_link_prediction_sentence(n: dict, verdict: str) -> str:
    relations = listed(n, "relation_names")
    text = ("Of the held-out pairs, " + ", ".join(f"{r} {100 * n[f'{r}_repeated_share']:.0f} %"
                                                  for r in listed(n, "repeated_relations"))
            + " repeat a training pair (the generator draws a follow, like, retweet or notification at most once per "
            "pair; a reply may repeat); every number below is on the pairs that do not. "
            + (f"At the step held-out early stopping kept ({int(n['trained_best_step']):,} of at most {int(n['steps']):,})"
               if "trained_best_step" in n else f"After {int(n['steps']):,} steps"))
    if "relations_with_personal_signal" in n:
        signal = listed(n, "personal_signal_relations")
        if signal:
            text += (", of what the oracle gains over ranking by popularity (training degree) the trained embeddings "
                     "reach " + ", ".join(f"{r} {100 * n[f'{r}_trained_over_popularity']:+.0f} % "
                                          f"({100 * n[f'{r}_trained_over_popularity_low']:+.0f} to "
                                          f"{100 * n[f'{r}_trained_over_popularity_high']:+.0f})" for r in signal)
                     + " (MRR, filtered ranks of the right-hand side, unseen held-out pairs; 95 % intervals over users; "
                     "0 % is popularity, 100 % the oracle)")
        flat = [r for r in relations if r not in signal]
        if flat:
            text += ("; in " + _named(flat) + " the oracle's MRR is within "
                     f"{100 * PERSONAL_SIGNAL:.0f} % of popularity's or its gain's interval holds 0 (" +
                     ", ".join(f"{r} {n[f'{r}_oracle_over_popularity']:+.4f} on {n[f'{r}_popularity_mrr']:.4f}"
                               for r in flat) +
                     "): at this size the world leaves too little personal signal there for a share of it to be "
                     "measured")
        text += "."
    if "popularity_higher" in n:
        text += (f" Compared pair by pair (paired interval over users), popularity is ahead of the trained embeddings "
                 f"in {_named(listed(n, 'trained_below_popularity'))} and behind in "
                 f"{_named(listed(n, 'trained_above_popularity'))}.")
    if "pooled_popularity_higher" in n:
        text += (" A translation score <user, tweet + t_rel> ranks a user's tweets in the same order for every "
                 "relation, so the popularity it can learn is one order over all relations: the training degree "
                 f"summed over them is ahead of the trained embeddings in {_named(listed(n, 'pooled_popularity_ahead'))}, "
                 f"behind in {_named(listed(n, 'pooled_popularity_behind'))}, and within its interval elsewhere.")
    met, total = n["goal_met"], n["relations"]
    text += (f" As a share of the oracle's MRR the trained embeddings reach {100 * n['min_trained_of_oracle']:.0f}–"
             f"{100 * n['max_trained_of_oracle']:.0f} %, popularity included")
    text += f" ({met} of {total} relations at {100 * TWHIN_GOAL:.0f} % or more)." if met < total else "."
    if "raw_min_trained_of_oracle" in n:
        text += (f" With raw ranks (other true entities counted as negatives) it is "
                 f"{100 * n['raw_min_trained_of_oracle']:.0f}–{100 * n['raw_max_trained_of_oracle']:.0f} %.")
    text += (f" On all held-out pairs, repeats included, the share is "
             f"{100 * n['all_pairs_min_trained_of_oracle']:.0f}–{100 * n['all_pairs_max_trained_of_oracle']:.0f} % (a "
             "model that recalls training pairs gains there what it has not learned).")
    if "node_bias_gain_min" in n:
        text += (f" A learned bias per entity and relation, started at popularity (`model.node_bias`), changes the MRR "
                 f"by {n['node_bias_gain_min']:+.4f} to {n['node_bias_gain_max']:+.4f}; the change is beyond its paired "
                 f"interval upward in {_named(listed(n, 'node_bias_higher_relations'))} and downward in "
                 f"{_named(listed(n, 'node_bias_lower_relations'))}.")
    if "node_bias_above_popularity" in n:
        text += (" With those biases the embeddings carry each relation's own popularity: against ranking by it, "
                 f"pair by pair, they are ahead in {_named(listed(n, 'node_bias_ahead_of_popularity'))}, behind in "
                 f"{_named(listed(n, 'node_bias_behind_popularity'))} and within the interval elsewhere (MRR minus "
                 "popularity's: " +
                 ", ".join(f"{r} {n[f'{r}_node_bias_over_popularity']:+.4f} ({n[f'{r}_node_bias_over_popularity_low']:+.4f} "
                           f"to {n[f'{r}_node_bias_over_popularity_high']:+.4f})" for r in listed(n, "node_bias_relations"))
                 + ").")
        little = listed(n, "node_bias_little_signal_relations")
        if little:
            text += (" Where they are behind, the world leaves almost nothing personal to learn: the oracle itself "
                     "gains only " + ", ".join(
                         f"{r} {n[f'{r}_node_bias_oracle_gain']:+.4f} ({n[f'{r}_node_bias_oracle_gain_lower']:+.4f} "
                         f"to {n[f'{r}_node_bias_oracle_gain_upper']:+.4f}) on popularity's "
                         f"{n[f'{r}_node_bias_popularity_mrr']:.4f}" for r in little) +
                     f" (under {100 * PERSONAL_SIGNAL:.0f} %), so no score can gain much over popularity there, and the "
                     "personal part these embeddings fit from training pairs costs more there than it gains.")
    if "neighbourhood_ahead_of_popularity" in n:
        text += (" A neighbourhood heuristic that needs no training (Adamic–Adar over each relation's training graph: "
                 "what the user's co-engagers engaged with) is ahead of popularity in "
                 f"{_named(listed(n, 'neighbourhood_ahead_of_popularity'))} and behind in "
                 f"{_named(listed(n, 'neighbourhood_behind_popularity'))}: where even that is not ahead, the training "
                 "graph holds too few pairs per user and per tweet for a user's neighbours to say more than counting does.")
    for scorer, said in (("trained", "the trained embeddings"), ("trained_node_bias", "the run with relation biases")):
        if f"{scorer}_best_step" in n:
            best, last = n[f"{scorer}_best_step"], n[f"{scorer}_last_step"]
            text += (f" Held-out early stopping (validation pairs not seen in training, every "
                     f"{n[f'{scorer}_val_every']} steps) kept {said} at step {best:,}"
                     + (f" of the {last:,} trained" + (", then stopped" if n[f"{scorer}_stopped_early"] else ""))
                     + (": training never beat its start, popularity's biases and untrained vectors, on pairs it had "
                        "not seen" if best == 0 else "") + ".")
    above, above_unseen = n["reverse_trained_above_oracle"], n["reverse_unseen_trained_above_oracle"]
    if above:
        text += (f" Ranking users for a tweet (the other direction), the trained scores exceed the oracle's in "
                 f"{above} of {n['reverse_relations']} relations on all pairs but in {above_unseen} on unseen pairs: they "
                 "recall pairs that were drawn more than once (replies may repeat), which no model of the probabilities "
                 "can know.")
    return text


@rule("twhin_link_prediction")
def twhin_link_prediction_verdict(n: dict) -> str:
    """Without popularity in the evaluation, the oracle goal; with it, the relations where popularity is
    shown ahead (an interval holding zero is no evidence of parity), then the same for the run with
    relation biases, the variant that can carry each relation's popularity."""
    if "popularity_higher" not in n:
        return "at the oracle goal " + on_extent(n["goal_met"], n["relations"], "relation")
    verdict = "below popularity " + on_extent(n["popularity_higher"], n["relations"], "relation")
    if "node_bias_below_popularity" in n:
        verdict += PART_JOIN + "with relation biases below popularity " + on_extent(
            n["node_bias_below_popularity"], n["relations"], "relation")
    return verdict




EMBEDDING_MARGIN = 0.01  # median AUROC: a gain smaller than this over random vectors is no gain (profile: ablation_margin)


def embedding_ablation(per_seed: pd.DataFrame, steps: int, margin: float = EMBEDDING_MARGIN,
                       alpha: float = 0.05) -> Finding:
    """per_seed: rows (variant, seed, head, auroc, positives) of the ablation runs.

    The variants of one seed share everything but the embeddings, so gains are paired by seed: planted
    and trained against `random` (part names "planted", "trained") and, where the run has the `none` arm
    (one constant vector for everyone: no identity at all), against it ("planted over none", "trained
    over none"). A paired t-test says whether they help or hurt, and only a TOST against ±`margin` (with
    its power at this many seeds, and the seeds that power would need) may say they make no difference;
    otherwise the verdict is "unresolved".
    """
    ok = per_seed[per_seed["positives"] >= MIN_POSITIVES]
    med = ok.groupby(["variant", "seed"], observed=True)["auroc"].median().unstack("variant")
    seeds = len(med)
    contrasts = [(v, "random", v) for v in ("planted", "trained") if v in med and "random" in med]
    contrasts += [(v, "none", f"{v}_over_none") for v in ("planted", "trained") if v in med and "none" in med]
    numbers = {"seeds": seeds, "steps": steps, "heads": int(ok["head"].nunique()), "margin": margin,
               "power_bar": POWER_BAR, "alpha": alpha, "contrasts": ", ".join(key for _, _, key in contrasts)}
    for v, reference, key in contrasts:
        gain = med[v] - med[reference]
        mean, sd = float(gain.mean()), float(gain.std(ddof=1)) if seeds > 1 else math.nan
        numbers.update({f"{key}_gain": mean, f"{key}_gain_sd": sd, f"{key}_gain_min": float(gain.min()),
                        f"{key}_gain_max": float(gain.max())})
        se = sd / math.sqrt(seeds) if seeds > 1 else math.nan
        p = (float(2 * t_dist.sf(abs(mean) / se, seeds - 1)) if se > 0 else
             math.nan if seeds < 2 else float(mean == 0))  # identical gains over seeds: no noise to test against
        eq = tost(mean, se, margin, seeds - 1, alpha) if seeds > 1 else {"p": math.nan, "power": math.nan}
        numbers.update({f"{key}_gain_p": p, f"{key}_tost": eq["p"], f"{key}_power": eq["power"],
                        f"{key}_seeds_needed": seeds_for_power(sd, margin, alpha)})
    if "random" in med:
        floor = med["random"]
        numbers.update({"random_auroc": float(floor.median()), "random_auroc_min": float(floor.min())})
    return finding("embedding_ablation", "02b_twhin_ablation", numbers, Result.ABLATION_SEEDS)


@sentence("embedding_ablation")
def embedding_ablation_sentence(n: dict, verdict: str) -> str:
    """Each contrast's part is written from its own verdict (`_contrast_verdict`)."""
    seeds, margin, parts = n["seeds"], n["margin"], []
    for key in listed(n, "contrasts"):
        v, reference = (key.removesuffix("_over_none"), "none") if key.endswith("_over_none") else (key, "random")
        part, p, tost_p, power = _contrast_verdict(n, key), number(n, f"{key}_gain_p"), number(n, f"{key}_tost"), \
            number(n, f"{key}_power")
        said_verdict = f"no difference (within ±{margin:g})" if part == "no difference" else part
        said = (f"paired t p = {p:.2g}; equivalence within ±{margin:g} (TOST) p = {tost_p:.2g}, power "
                f"{power:.2f} at {seeds} seeds" if seeds >= 3 else "")
        needed = n[f"{key}_seeds_needed"]
        if part == "unresolved" and power < POWER_BAR:
            said += (f", below the {POWER_BAR:g} bar: neither a gain nor its absence is shown"
                     + (f" ({needed} seeds would reach it at this spread)" if needed else ""))
        against = "random ones" if reference == "random" else "one constant vector for everyone"
        parts.append(f"{v} embeddings change the median AUROC by {n[f'{key}_gain']:+.3f} over {against} (range over "
                     f"seeds {n[f'{key}_gain_min']:+.3f} to {n[f'{key}_gain_max']:+.3f}; {said}): {said_verdict}")
    text = (f"Over {seeds} training seeds per variant ({int(n['steps']):,} steps each, median over {n['heads']} heads with "
            f"at least {MIN_POSITIVES} positives): " + "; ".join(parts) + ".")
    if seeds < 3:
        text += " With fewer than three seeds no claim about noise is made."
    if number(n, "random_auroc_min") > 0.5:  # every seed: random vectors still carry something the ranker uses
        text += (f" Random vectors are not pure noise to the ranker: with them the median AUROC is "
                 f"{n['random_auroc']:.3f} (lowest seed {n['random_auroc_min']:.3f}; 0.5 is chance), since each user "
                 "and author keeps one fixed, distinct vector, an identifier from which per-user and per-author "
                 "effects can be memorised.")
    return text


def _contrast_verdict(n: dict, key: str) -> str:
    """A paired t-test says helps or hurts; only a TOST within ±margin says no difference."""
    if n["seeds"] < 3:
        return "too few seeds"
    if number(n, f"{key}_gain_p") < n["alpha"]:
        return "helps" if number(n, f"{key}_gain") > 0 else "hurts"
    return "no difference" if number(n, f"{key}_tost") < n["alpha"] else "unresolved"


@rule("embedding_ablation")
def embedding_ablation_verdict(n: dict) -> str:
    return PART_JOIN.join(f"{key.replace('_', ' ')}: {_contrast_verdict(n, key)}"
                          for key in listed(n, "contrasts"))

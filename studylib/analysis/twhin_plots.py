"""The TwHIN chapters' figures (1b: link prediction and training; 2b: the embedding ablation), in
the study's style (`studylib.analysis.plots`)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from studylib.analysis.plots import WIDTH, _finish, _wrap, _zoom
from studylib.stats import MIN_POSITIVES
from studylib.analysis.tables import link_prediction_table
from studylib.schema import short_name

SCORER_LABELS = {"random": "random embeddings (floor)", "popularity": "popularity (train degree)",
                 "pooled_popularity": "popularity over all relations",
                 "neighbourhood": "neighbourhood (Adamic–Adar)", "trained": "trained TwHIN",
                 "trained_node_bias": "trained TwHIN + node bias", "oracle": "oracle (planted truth)"}
# One look per scorer, the same in every panel: a hue per family (grey floor, orange/brown counting,
# green neighbourhood, blue/lilac TwHIN, black truth) and a marker each, so that no two read alike.
SCORER_STYLES = {"random": ("0.5", "X"), "popularity": (1, "s"), "pooled_popularity": (5, "v"),
                 "neighbourhood": (2, "D"), "trained": (0, "o"), "trained_node_bias": (4, "^"), "oracle": ("k", "*")}
VARIANT_LABELS = {"none": "none (one constant vector)", "random": "random (noise)", "planted": "planted (oracle-like)", "trained": "trained TwHIN"}


def link_prediction(evaluation: pd.DataFrame, ranking: str = "filtered", pairs: str = "all") -> plt.Figure:
    """evaluation (twhin-evaluate rows). MRR with its bootstrap interval over users, per relation
    and scorer, in both directions (left: the right-hand side given the left, e.g. tweets for a
    user; right: users for a tweet), on a log axis (the relations differ by two orders of magnitude)."""
    fig, axes = plt.subplots(1, 2, figsize=(WIDTH, 5.4), sharey=True)
    titles = {"rhs": "rank the right-hand side\n(tweets or authors for a user)", "lhs": "rank the left-hand side\n(users for a tweet or author)"}
    handles = {}
    for ax, direction in zip(axes, ("rhs", "lhs")):
        table = link_prediction_table(evaluation, direction, ranking, pairs)
        scorers = [c for c in table.columns if f"{c}_low" in table and c in SCORER_LABELS]
        y = np.arange(len(table))
        step = 0.8 / max(1, len(scorers))
        palette = sns.color_palette("colorblind")
        for i, scorer in enumerate(scorers):
            color, marker = SCORER_STYLES[scorer]
            pos = y - 0.4 + step * (i + 0.5)
            err = np.vstack([table[scorer] - table[f"{scorer}_low"], table[f"{scorer}_high"] - table[scorer]])
            handles[scorer] = ax.errorbar(table[scorer], pos, xerr=err, fmt=marker, ms=7 if marker == "*" else 5,
                                          color=palette[color] if isinstance(color, int) else color, capsize=2,
                                          lw=1, label=SCORER_LABELS[scorer])
        ax.set_yticks(y, [f"{r}\n({int(n):,} pairs)" for r, n in zip(table.index, table["pairs"])], fontsize=8)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlabel(f"MRR, {ranking} ranks (log scale)")
        ax.set_title(titles[direction], fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_ylabel("relation (held-out pairs)")
    fig.legend(list(handles.values()), [h.get_label() for h in handles.values()], loc="lower center", ncol=3,
               bbox_to_anchor=(0.5, -0.1), frameon=False, fontsize=8)
    scope = "all held-out pairs" if pairs == "all" else "held-out pairs never seen in training"
    return _finish(fig, f"TwHIN link prediction: MRR with 95 % intervals over users ({scope})")


def twhin_loss(history: pd.DataFrame, window: int = 5) -> plt.Figure:
    """history (twhin-train history.csv): step, loss, edges_per_s."""
    fig, axes = plt.subplots(1, 2, figsize=(WIDTH, 3.6), gridspec_kw={"width_ratios": [2, 1]})
    axes[0].plot(history["step"], history["loss"], color="0.7", lw=1, marker=".", label="logged")
    axes[0].plot(history["step"], history["loss"].rolling(window, min_periods=1).mean(), lw=2,
                 label=f"mean of {window}")
    axes[0].set_xlabel("training step (batch of edges)")
    axes[0].set_ylabel("training loss (nats)")
    axes[0].legend(fontsize=8)
    axes[0].set_title("loss", fontsize=9)
    axes[1].plot(history["step"], history["edges_per_s"] / 1e3, lw=2, color=sns.color_palette()[2])
    axes[1].set_ylim(0, 1.15 * float(history["edges_per_s"].max()) / 1e3)
    axes[1].set_xlabel("training step")
    axes[1].set_ylabel("throughput (thousand edges/s)")
    axes[1].set_title("speed (running average)", fontsize=9)
    return _finish(fig, "TwHIN training: loss and throughput")


# ---------------------------------------------------------------- 02b embedding ablation


def embedding_ablation(long: pd.DataFrame, per_seed: pd.DataFrame | None = None) -> plt.Figure:
    """long (analysis.embedding_ablation): head, positives, variant, auroc, rce, oracle_auroc, oracle_rce.

    AUROC and RCE per head for each embedding variant (points: the first seed; whiskers: the
    range over per_seed's training seeds, rows variant, seed, head, auroc, rce); black ticks: the
    oracle. Heads with fewer than MIN_POSITIVES held-out positives, which no finding uses, are left out.
    """
    order = list(long["variant"].cat.categories) if hasattr(long["variant"], "cat") \
        else list(dict.fromkeys(long["variant"]))
    ok = long["positives"] >= MIN_POSITIVES
    dropped = list(dict.fromkeys(long.loc[~ok, "head"].map(short_name)))
    frame = long[ok].assign(head=long["head"].map(short_name))
    heads = list(dict.fromkeys(frame["head"]))
    y = np.arange(len(heads))
    colors = sns.color_palette()
    fig, axes = plt.subplots(1, 2, figsize=(WIDTH, 0.6 * len(heads) + 2.4), sharey=True)
    handles = []
    for ax, metric, unit in ((axes[0], "auroc", "AUROC (0.5 = chance)"), (axes[1], "rce", "RCE (%, 0 = constant)")):
        floor = -100.0 if metric == "rce" else -np.inf  # a near-empty head's RCE can run to −∞
        for i, variant in enumerate(order):
            mid = frame[frame["variant"] == variant].set_index("head")[metric].reindex(heads).clip(lower=floor)
            err = None
            if per_seed is not None:
                seeds = per_seed[per_seed["variant"] == variant].groupby("head")[metric]
                err = [(mid - seeds.min().reindex(heads).clip(lower=floor)).clip(lower=0),
                       (seeds.max().reindex(heads).clip(lower=floor) - mid).clip(lower=0)]
            handles.append(ax.errorbar(mid, y + 0.2 * (i - (len(order) - 1) / 2), xerr=err, fmt="o", ms=5, capsize=2, lw=1,
                                       color=colors[i], label=VARIANT_LABELS.get(variant, variant)))
        oracle = frame.drop_duplicates("head").set_index("head")[f"oracle_{metric}"].reindex(heads).clip(lower=floor)
        handles.append(ax.scatter(oracle, y, marker="|", s=250, color="k", zorder=5,
                                  label="oracle (true probabilities)"))
        ax.axvline(0.5 if metric == "auroc" else 0.0, color="k", lw=1, ls="--")
        ax.set_xlabel(unit + ("; clipped at −100" if (frame[metric] < floor).any() else ""))
    axes[0].set_yticks(y, [_wrap(h) for h in heads])
    axes[0].invert_yaxis()
    axes[0].set_ylabel("head")
    handles = handles[:len(order) + 1]  # the first panel's: variants, then the oracle
    fig.legend(handles, [h.get_label() for h in handles], loc="lower center", ncol=2, bbox_to_anchor=(0.5, -0.1),
               frameon=False)
    seed_auroc = per_seed.loc[per_seed["head"].map(short_name).isin(heads), "auroc"] if per_seed is not None else []
    _zoom(axes[0], np.concatenate([frame[["auroc", "oracle_auroc"]].to_numpy(float).ravel(), seed_auroc]))
    note = "points: first training seed"
    if per_seed is not None:
        note += f"; whiskers: range over {per_seed['seed'].nunique()} seeds"
    if dropped:
        note += f"; not shown (fewer than {MIN_POSITIVES} positives): {', '.join(dropped)}"
    variants = ", ".join(order[:-1]) + f" and {order[-1]}" if len(order) > 1 else order[0]
    return _finish(fig, f"Heavy Ranker per head with {variants} embeddings ({note})")


__all__ = ["SCORER_LABELS", "VARIANT_LABELS", "embedding_ablation", "link_prediction", "twhin_loss"]

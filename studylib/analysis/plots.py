"""Seaborn figures for the study: titled, labelled (with units), readable at report width.

Chapter 5's figures (the weights) are in `weight_plots`, the TwHIN chapters' in `twhin_plots`.
Every helper returns the matplotlib Figure; `save(fig, name)` writes `figures/<name>.png`
and `.svg` under stable names, so the report and the README can point at them.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from studylib.outputs import FIGURES
from studylib.schema import short_name

FIGURES_DIR = Path("figures")
WIDTH = 7.5  # inches: the book's text column, so that figures are shown near 100 % and their fonts stay readable


def setup() -> None:
    """The study's plot style (call once per notebook)."""
    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind", font_scale=0.9)
    plt.rcParams.update({"figure.dpi": 100, "savefig.dpi": 150, "savefig.bbox": "tight",
                         "axes.titleweight": "bold", "figure.titleweight": "bold", "svg.fonttype": "none"})


def save(fig: plt.Figure, name: str, figures_dir: str | Path = FIGURES_DIR) -> Path:
    """Write `<figures_dir>/<name>.png` and `.svg`; returns the PNG path. Both carry the figure's
    title as metadata: the report uses it as the image's alt text. `name` is a registered figure
    (`studylib.outputs.Figure`), so the README and the report can name every figure."""
    if name not in FIGURES:
        raise ValueError(f"figure {name!r} is not in studylib.outputs.Figure; register it there first")
    out = Path(figures_dir)
    out.mkdir(parents=True, exist_ok=True)
    png = out / f"{name}.png"
    metadata = {"Title": title_of(fig) or name}
    fig.savefig(png, metadata=metadata)
    fig.savefig(out / f"{name}.svg", metadata=metadata)
    return png


def title_of(fig: plt.Figure) -> str:
    """The figure's title on one line: its suptitle, else its panels' titles."""
    suptitle = fig.get_suptitle()
    titles = [suptitle] if suptitle else [ax.get_title() for ax in fig.axes if ax.get_title()]
    return " ".join(" ".join(titles).split())


def _finish(fig: plt.Figure, title: str) -> plt.Figure:
    fig.suptitle(textwrap.fill(title, int(9 * fig.get_figwidth()), break_on_hyphens=False))  # ~9 bold characters an inch
    fig.tight_layout()
    return fig


def _zoom(ax: plt.Axes, values: np.ndarray, margin: float = 0.06) -> None:
    """x-axis from the smallest to the largest value plus a margin (a reference line beyond it is not shown)."""
    lo, hi = np.nanmin(values), np.nanmax(values)
    ax.set_xlim(lo - margin * (hi - lo), hi + margin * (hi - lo))


def _wrap(text: str, width: int = 25) -> str:
    """Break a long label name (good_clicked_convo_desc_favorited_or_replied) at its underscores and spaces
    into as few lines as `width` characters allow, of similar length (no stub of a last line); prose goes
    through textwrap instead."""
    out = []
    for part in text.split("\n"):
        pieces = re.findall(r"[^_ ]+[_ ]?|[_ ]", part)  # each piece keeps its trailing separator
        fewest = -(-len(part) // width) or 1
        for target in range(-(-len(part) // fewest), len(part) + 1):  # shortest lines that keep the fewest
            lines = [""]
            for piece in pieces:
                if lines[-1].strip() and len(lines[-1]) + len(piece.rstrip()) > target:
                    lines.append("")
                lines[-1] += piece
            if len(lines) <= fewest:
                break
        out += [line.rstrip() for line in lines]
    return "\n".join(out)


def _format(value: float, fmt: str, prefix: str = "") -> str:
    """`value` formatted with a typographic minus and without a negative zero (−0.0 prints as 0.0)."""
    text = format(value, fmt)
    if text.startswith("-") and float(text) == 0:
        text = text[1:]
    return prefix + text.replace("-", "−")


# ---------------------------------------------------------------- 01 data


def base_rates(rates: pd.DataFrame) -> plt.Figure:
    """rates: columns label, target, planted, realised (fractions). Horizontal bars on a log axis."""
    long = rates.melt(id_vars="label", value_vars=["target", "planted", "realised"], var_name="rate", value_name="value")
    long["percent"] = 100.0 * long["value"]
    long["label"] = long["label"].map(_wrap)
    fig, ax = plt.subplots(figsize=(WIDTH, 6))
    sns.barplot(long, y="label", x="percent", hue="rate", ax=ax, orient="h")
    ax.set_xscale("log")
    ax.set_xlabel("base rate (% of candidates, log scale)")
    ax.set_ylabel("label")
    ax.legend(title=None, loc="lower right")
    return _finish(fig, "Base rate per label: target, planted truth (this data set) and realised draws")


# ---------------------------------------------------------------- 02 training


def personal_shares(shares: pd.DataFrame, k: int) -> plt.Figure:
    """Personal share of the top-k value per weight set (first row: the study's weights) with 95 % intervals."""
    fig, ax = plt.subplots(figsize=(WIDTH, 0.45 * len(shares) + 1.4))  # room for two-line head names
    y = np.arange(len(shares))
    share = 100 * shares["personal_share"].to_numpy()
    err = np.vstack([share - 100 * shares["personal_share_low"], 100 * shares["personal_share_high"] - share])
    colors = ["C0"] + ["C7"] * (len(shares) - 1)
    ax.barh(y, share, xerr=err, color=colors, capsize=2)
    ax.set_yticks(y, [f"{w} (all heads)" if i == 0 else _wrap(w) for i, w in enumerate(shares["weights"])])
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel(f"share of the top {k}'s gain over a random order that needs knowing the user (%)")
    return _finish(fig, f"How personal the feed is: (oracle − popularity oracle) / (oracle − random), top {k} "
                        "(95 % user-level CI)")


def training_curves(history: pd.DataFrame, heads: list[str], window: int = 10,
                    held_out: pd.DataFrame | None = None) -> plt.Figure:
    """history: step and loss.<head> columns (head = full label name); one panel per head.

    Each logged value is one batch's loss, so the line is a centred running mean over `window`
    logged batches. `held_out` (a run's validation.csv: step, head, log_loss, oracle_log_loss)
    adds the loss on held-out data drawn like the training data, and the oracle's loss on the
    same data (the true probabilities: the floor a model can reach).
    """
    cols = 2
    rows = int(np.ceil(len(heads) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(WIDTH, 1.7 * rows + 1.2), sharex=True, squeeze=False)
    for i, (ax, head) in enumerate(zip(np.ravel(axes), heads)):
        y = history[f"loss.{head}"]
        ax.plot(history["step"], y, color="0.75", lw=0.8, marker=".", ms=3, label="one training batch (logged)")
        ax.plot(history["step"], y.rolling(window, min_periods=1, center=True).mean(), lw=2,
                label=f"training: mean of {window} logged batches")
        if held_out is not None:
            mine = held_out[held_out["head"] == head].sort_values("step")
            ax.plot(mine["step"], mine["log_loss"], color="C1", lw=1.5, marker="o", ms=4, label="held-out data")
            if "oracle_log_loss" in mine and mine["oracle_log_loss"].notna().any():
                ax.axhline(mine["oracle_log_loss"].mean(), color="k", ls="--", lw=1,
                           label="oracle on the held-out data (floor)")
        ax.set_title(short_name(head), fontsize=9)
        if i % cols == 0:
            ax.set_ylabel("BCE (nats)")
        if i + cols >= len(heads):  # no panel below: this one carries the step axis
            ax.set_xlabel("training step")
            ax.xaxis.set_tick_params(labelbottom=True)
    for ax in np.ravel(axes)[len(heads):]:
        ax.set_visible(False)
    handles, labels = np.ravel(axes)[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, bbox_to_anchor=(0.5, -0.05), frameon=False, fontsize=8)
    what = "training and held-out loss" if held_out is not None else "training loss"
    return _finish(fig, f"{what[0].upper()}{what[1:]} per head (training line: mean of {window} logged batches)")


def metrics_vs_oracle(metrics: pd.DataFrame) -> plt.Figure:
    """metrics (inference.head_metric_intervals): head, evaluable, auroc/rce with _low/_high, oracle_* alike.

    Points with 95 % user-level intervals; heads with too few positives are greyed and labelled
    "not evaluable" (their numbers are shown, no conclusion rests on them).
    """
    frame = metrics.assign(label=[_wrap(short_name(h)) + ("" if ok else "\n(not evaluable)")
                                  for h, ok in zip(metrics["head"], metrics["evaluable"])])
    fig, axes = plt.subplots(1, 2, figsize=(WIDTH, 0.55 * len(frame) + 2.2), sharey=True)
    y = np.arange(len(frame))
    colors = sns.color_palette()
    for ax, metric, unit, ref in ((axes[0], "auroc", "AUROC (0.5 = chance)", 0.5),
                                  (axes[1], "rce", "RCE (%, 0 = predicting the base rate)", 0.0)):
        floor = -100.0 if metric == "rce" else None
        for offset, prefix, name, color in ((0.15, "", "model", colors[0]), (-0.15, "oracle_", "oracle (true probabilities)", colors[1])):
            mid, lo, hi = (frame[f"{prefix}{metric}{sfx}"].to_numpy(float) for sfx in ("", "_low", "_high"))
            if floor is not None:
                mid, lo, hi = (np.clip(v, floor, None) for v in (mid, lo, hi))
            for ok in (True, False):
                sel = frame["evaluable"].to_numpy() == ok
                ax.errorbar(mid[sel], y[sel] + offset, xerr=[mid[sel] - lo[sel], hi[sel] - mid[sel]], fmt="o",
                            color=color if ok else "0.6", capsize=3, ms=5, label=name if ok else None)
        ax.axvline(ref, color="k", lw=1, ls="--")
        clipped = floor is not None and (frame[metric] < floor).any()
        ax.set_xlabel(textwrap.fill(unit + ("; clipped at −100" if clipped else ""), 30))
    # AUROC zoomed to the intervals (not to chance at 0.5): the model-oracle gaps are a few hundredths
    _zoom(axes[0], frame[[f"{p}auroc{s}" for p in ("", "oracle_") for s in ("_low", "_high")]].to_numpy(float))
    axes[0].set_yticks(y, frame["label"])
    axes[0].invert_yaxis()
    axes[0].set_ylabel("head")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, bbox_to_anchor=(0.5, -0.05), frameon=False)
    return _finish(fig, "Held-out metrics per head, model vs oracle (95 % user-level bootstrap intervals)")


def feed_comparison(summary: pd.DataFrame, metrics: dict[str, str], title: str, ylabel: str = "ranking") -> plt.Figure:
    """summary (ranking.feed_comparison): ranking, metric, mean, low, high. One panel per metric."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(WIDTH, 0.5 * summary["ranking"].nunique() + 2.4),
                             sharey=True)
    rankings = list(dict.fromkeys(summary["ranking"]))
    y = np.arange(len(rankings))
    for ax, (metric, label) in zip(np.ravel(axes), metrics.items()):
        sub = summary[summary["metric"] == metric].set_index("ranking").reindex(rankings)
        colors = [sns.color_palette()[i % 10] for i in range(len(rankings))]
        for i, r in enumerate(rankings):
            ax.errorbar(sub.loc[r, "mean"], y[i], xerr=[[sub.loc[r, "mean"] - sub.loc[r, "low"]],
                                                          [sub.loc[r, "high"] - sub.loc[r, "mean"]]],
                        fmt="o", capsize=4, color=colors[i])
        ax.set_xlabel(textwrap.fill(label, 24))
        ax.margins(x=0.15)
    np.ravel(axes)[0].set_yticks(y, [_wrap(r) for r in rankings])
    np.ravel(axes)[0].invert_yaxis()
    np.ravel(axes)[0].set_ylabel(ylabel)
    return _finish(fig, title)


def regret_by_head(heads: pd.DataFrame, shifted_set: str) -> plt.Figure:
    """heads (regret.decompose): per head the share of the model's regret removed by its true
    probability (95 % user-level CI), and its mean prediction over the truth before/after the re-fit."""
    order = heads.sort_values("share_of_regret", ascending=False, na_position="last")
    y = np.arange(len(order))
    fig, (left, right) = plt.subplots(1, 2, figsize=(WIDTH, 0.32 * len(order) + 2.2), sharey=True)
    left.errorbar(order["share_of_regret"], y, xerr=[order["share_of_regret"] - order["share_low"],
                                                     order["share_high"] - order["share_of_regret"]],
                  fmt="o", capsize=3)
    left.axvline(0, color="grey", lw=0.8)
    left.set_xlabel("share of the model's regret\nremoved by its true probability")
    right.scatter(order["mean_over_truth"], y, label="model", marker="o")
    right.scatter(order["mean_over_truth_refitted"], y, label="intercept re-fitted", marker="x")
    right.axvline(1, color="grey", lw=0.8)
    right.set_xscale("log")
    right.set_xlabel(f"mean prediction / true mean\non {shifted_set} (1: calibrated)")
    right.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, fontsize="small", frameon=False)
    left.set_yticks(y, [_wrap(h) for h in order["head"]])
    left.invert_yaxis()
    return _finish(fig, f"Where the regret comes from, head by head ({shifted_set}, report half of the users)")


def gain_share_by_budget(grid: pd.DataFrame, k: int, pool: int) -> plt.Figure:
    """grid (regret.by_budget): the model's share of the oracle's gain over a random order against
    top-k size, one line per candidate-pool size (95 % user-level CI), the popularity oracle's dashed
    beside it where the grid has it; the study's (k, pool) marked."""
    share = grid[grid["metric"] == "oracle_gain_share"]
    personal = grid[grid["metric"] == "personal_share"]
    fig, ax = plt.subplots(figsize=(WIDTH, 3.6))
    for i, (n, sub) in enumerate(share.groupby("pool")):
        sub = sub.sort_values("k")
        ax.errorbar(sub["k"], sub["mean"], yerr=[sub["mean"] - sub["low"], sub["high"] - sub["mean"]],
                    marker="o", capsize=3, color=f"C{i}", label=f"model, {n} candidates")
        pop = personal[personal["pool"] == n].sort_values("k")
        if len(pop):  # the popularity oracle keeps 1 − the personal share of the oracle's gain
            ax.plot(pop["k"], 1.0 - pop["mean"], ls="--", color=f"C{i}", label=f"popularity oracle, {n} candidates")
    mark = share[(share["k"] == k) & (share["pool"] == pool)]
    ax.scatter(mark["k"], mark["mean"], s=160, facecolors="none", edgecolors="black", zorder=3,
               label=f"the study's top {k} of {pool}")
    ax.set_xscale("log")
    ax.set_xticks(sorted(share["k"].unique()), [str(v) for v in sorted(share["k"].unique())])
    ax.set_xlabel("top k shown")
    ax.set_ylabel("share of the oracle's gain\nover a random order")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1))  # beside the axes: no line hidden
    return _finish(fig, "The model's feed and the popularity oracle's against the feed's size")


def reliability(curves: pd.DataFrame) -> plt.Figure:
    """curves: head, bin_mean_prediction, observed_rate, rate_low, rate_high, count, evaluable. One panel per head."""
    heads = list(dict.fromkeys(curves["head"]))
    cols = min(4, len(heads))
    rows = int(np.ceil(len(heads) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(min(WIDTH, 2.2 * cols + 0.8), 2.1 * rows + 1.0), squeeze=False)
    for i, (ax, head) in enumerate(zip(np.ravel(axes), heads)):
        c = curves[curves["head"] == head]
        ok = bool(c["evaluable"].iloc[0]) if "evaluable" in c else True
        top = max(float(c["bin_mean_prediction"].max()), float(c["rate_high"].max()), 1e-3) * 1.1
        ax.plot([0, top], [0, top], color="k", lw=1, ls="--")
        ax.errorbar(c["bin_mean_prediction"], c["observed_rate"],
                    yerr=[c["observed_rate"] - c["rate_low"], c["rate_high"] - c["observed_rate"]],
                    fmt="o-", ms=4, lw=1, capsize=2, color=None if ok else "0.6")
        ax.set_xlim(0, top)
        ax.set_ylim(0, top)
        ax.set_title(_wrap(short_name(head) + ("" if ok else " (not evaluable)"), 18), fontsize=9)
        if i + cols >= len(heads):  # no panel below
            ax.set_xlabel("mean predicted P")
        if i % cols == 0:
            ax.set_ylabel("observed rate")
    for ax in np.ravel(axes)[len(heads):]:
        ax.set_visible(False)
    return _finish(fig, "Reliability: observed rate per bin of predicted probability (95 % Wilson intervals; dashed: perfect)")


def pairing_effect(pairing: pd.DataFrame) -> plt.Figure:
    """pairing: head, pairing, trained_on, evaluable, auroc, auroc_low, auroc_high (against each head's own label)."""
    heads = list(dict.fromkeys(pairing["head"]))
    y = np.arange(len(heads))
    fig, ax = plt.subplots(figsize=(WIDTH, 0.55 * len(heads) + 2))
    names = {"by_name": "labels paired by name", "positional": "labels paired by position (the original)"}
    for offset, (name, color) in zip((0.15, -0.15), (("by_name", sns.color_palette()[0]),
                                                     ("positional", sns.color_palette()[3]))):
        sub = pairing[pairing["pairing"] == name].set_index("head").reindex(heads)
        ax.errorbar(sub["auroc"], y + offset, xerr=[sub["auroc"] - sub["auroc_low"], sub["auroc_high"] - sub["auroc"]],
                    fmt="o", capsize=3, color=color, label=names[name])
    ax.axvline(0.5, color="k", lw=1, ls="--")
    evaluable = pairing.drop_duplicates("head").set_index("head")["evaluable"].reindex(heads)
    ax.set_yticks(y, [_wrap(h) if ok else f"{_wrap(h)}\n(not evaluable)" for h, ok in evaluable.items()])
    ax.invert_yaxis()
    ax.set_xlabel("AUROC against the head's own label\n(0.5 = chance; 95 % user-level CI)")
    ax.set_ylabel("head")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=1, frameon=False)
    return _finish(fig, "Faithfulness: labels paired by name vs by position (the original's defect)")


# ---------------------------------------------------------------- 03 scoring


def contribution_shares(shares: pd.DataFrame, weight_name: str) -> plt.Figure:
    """shares: head, mean_share, share_p10, share_p90 (fractions). Dotted line: the equal mix (1 / heads)."""
    frame = shares.assign(head=shares["head"].map(lambda h: _wrap(short_name(h))))
    fig, ax = plt.subplots(figsize=(WIDTH, 0.45 * len(frame) + 1.6))
    pct = 100 * frame["mean_share"]
    ax.barh(frame["head"], pct, color=sns.color_palette()[0])
    ax.errorbar(pct, frame["head"], xerr=[pct - 100 * frame["share_p10"], 100 * frame["share_p90"] - pct],
                fmt="none", ecolor="k", capsize=3, lw=1)
    even = 100 / len(frame)
    ax.axvline(even, color=sns.color_palette()[3], lw=1.5, ls=":", label=f"equal mix ({even:.0f} % per head)")
    ax.legend(loc="lower right")
    ax.invert_yaxis()
    ax.set_xlabel("share of |score| (% per candidate)\nbar: mean; whiskers: 10th–90th percentile")
    ax.set_ylabel("head")
    return _finish(fig, f"Contribution of each head to the score ({weight_name})")


def score_distribution(frame: pd.DataFrame, score: str, hue: str | None, title: str, xlabel: str) -> plt.Figure:
    """Histogram (density per group) and ECDF of a score column, optionally per group."""
    fig, axes = plt.subplots(1, 2, figsize=(WIDTH, 4.2))
    lo, hi = np.nanpercentile(frame[score], [0.5, 99.5])
    clipped = frame[(frame[score] >= lo) & (frame[score] <= hi)]
    sns.histplot(clipped, x=score, hue=hue, stat="density", common_norm=False, element="step", bins=60, ax=axes[0])
    axes[0].set_xlabel(xlabel)
    axes[0].set_ylabel("density (per unit score)")
    axes[0].set_title("histogram (0.5–99.5th percentile)", fontsize=9)
    sns.ecdfplot(frame, x=score, hue=hue, ax=axes[1])
    axes[1].set_xlabel(xlabel)
    axes[1].set_ylabel("fraction of candidates ≤ score")
    axes[1].set_title("empirical CDF (all candidates)", fontsize=9)
    if hue is not None:  # one legend for both panels, below them (long group names would cover the curves)
        axes[0].get_legend().remove()
        legend = axes[1].get_legend()
        fig.legend(legend.legend_handles, [t.get_text() for t in legend.get_texts()], title=hue, loc="upper center",
                   bbox_to_anchor=(0.5, 0.0), frameon=False)
        legend.remove()
    return _finish(fig, title)


def preset_scores(frame: pd.DataFrame) -> plt.Figure:
    """frame: weights (preset), score. Box plots per preset on a linear axis.

    Outliers are not drawn, so the long tails that large negative weights give the scores do not
    squeeze the boxes; a symmetric-log axis would distort the quartiles that the boxes compare.
    """
    fig, ax = plt.subplots(figsize=(WIDTH, 0.8 * frame["weights"].nunique() + 1.6))
    sns.boxplot(frame, x="score", y="weights", ax=ax, orient="h", showfliers=False)
    ax.set_xlabel("score (weighted sum of probabilities, unitless)")
    ax.set_ylabel("weight set")
    return _finish(fig, "Score of the same candidates under each weight set (boxes: quartiles, whiskers: 1.5 IQR)")


# ---------------------------------------------------------------- 04 distributions


def scenario_box(frame: pd.DataFrame, score: str, xlabel: str) -> plt.Figure:
    """frame: scenario, cohort, score. One box per scenario × cohort present, coloured by cohort."""
    # One row per pair that exists: hue-dodging would leave room for cohorts a scenario lacks, off its tick
    multi = frame.groupby("scenario", sort=False)["cohort"].nunique() > 1
    rows = frame.assign(row=[f"{s}:\n{c}" if multi[s] else s for s, c in zip(frame["scenario"], frame["cohort"])])
    fig, ax = plt.subplots(figsize=(WIDTH, 0.55 * rows["row"].nunique() + 1.8))
    sns.boxplot(rows, x=score, y="row", hue="cohort", dodge=False, ax=ax, orient="h", showfliers=False, width=0.6)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("scenario")
    sns.move_legend(ax, "upper center", bbox_to_anchor=(0.5, -0.2), ncol=3, title="cohort", frameon=False)
    return _finish(fig, "Score distributions per scenario and cohort (boxes: quartiles, whiskers: 1.5 IQR)")


def effect_sizes(tests: pd.DataFrame) -> plt.Figure:
    """tests: comparison, unit, difference, difference_low, difference_high, prob_superiority (cluster means)."""
    fig, axes = plt.subplots(1, 2, figsize=(WIDTH, 0.7 * len(tests) + 2.2), sharey=True)
    y = np.arange(len(tests))
    axes[0].errorbar(tests["difference"], y, xerr=[tests["difference"] - tests["difference_low"],
                                                   tests["difference_high"] - tests["difference"]], fmt="o", capsize=4)
    axes[0].axvline(0.0, color="k", lw=1, ls=":")
    axes[0].set_xlabel("difference of means A − B\n(score units; 95 % cluster-bootstrap CI)")
    axes[1].scatter(tests["prob_superiority"], y, color=sns.color_palette()[1])
    axes[1].axvline(0.5, color="k", lw=1, ls=":")
    axes[1].set_xlim(0, 1)
    axes[1].set_xlabel("P(unit of A > unit of B)\n(0.5: no shift)")
    axes[0].set_yticks(y, [f"{_wrap(c, 24)}\n({u} means)" for c, u in zip(tests["comparison"], tests["unit"])])
    axes[0].invert_yaxis()
    axes[0].set_ylabel("comparison (A vs B)")
    return _finish(fig, "Effect sizes of the score comparisons, on independent units")


__all__ = ["setup", "save", "base_rates", "training_curves", "metrics_vs_oracle", "feed_comparison", "reliability",
           "pairing_effect", "contribution_shares", "score_distribution", "preset_scores", "scenario_box", "effect_sizes",
           "FIGURES_DIR"]

"""Chapter 5's figures (the weights: tornado, heatmaps, Sobol indices, presets, the frontier and the
best weights), in the study's style (`studylib.analysis.plots`)."""

from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from studylib.analysis.plots import WIDTH, _finish, _format, _wrap
from studylib.schema import short_name


def tornado(table: pd.DataFrame, metric_label: str, base_value: float, low: float, high: float,
            intervals: pd.DataFrame | None = None) -> plt.Figure:
    """table (tornado_table): head, low, high, largest departure first; intervals
    (sensitivity.tornado_intervals): head, factor, metric_low, metric_high. Per head, the metric at
    each end of the weight's range as a point with its 95 % user-level interval, joined to the base
    weights' value (the vertical line): a departure's length is read from the line, not from an axis end."""
    frame = table.assign(label=table["head"].map(lambda h: _wrap(short_name(h)))).iloc[::-1]  # largest on top
    fig, ax = plt.subplots(figsize=(WIDTH, 0.5 * len(frame) + 1.8))
    y = np.arange(len(frame))
    colors = sns.color_palette()
    for offset, end, factor, color, marker in ((0.15, "low", low, colors[0], "o"), (-0.15, "high", high, colors[1], "s")):
        yy = y + offset
        ax.hlines(yy, base_value, frame[end], color=color, lw=1.2, alpha=0.6)
        if intervals is not None:
            ends = intervals[np.isclose(intervals["factor"], factor)].set_index("head").reindex(frame["head"])
            ax.errorbar(frame[end], yy, xerr=[frame[end].to_numpy() - ends["metric_low"].to_numpy(),
                                              ends["metric_high"].to_numpy() - frame[end].to_numpy()],
                        fmt=marker, color=color, capsize=2, lw=1, ms=5, label=f"weight × {factor:g}")
        else:
            ax.plot(frame[end], yy, marker, color=color, ms=5, label=f"weight × {factor:g}")
    ax.axvline(base_value, color="k", lw=1)
    ax.set_yticks(y, frame["label"])
    ax.set_xlabel(f"{metric_label}\n(vertical line: the base weights, {_format(base_value, '.3g')})")
    ax.set_ylabel("head whose weight moves")
    ax.legend(fontsize=9, loc="best")
    whiskers = " (whiskers: 95 % user-level CI)" if intervals is not None else ""
    return _finish(fig, f"Tornado: {metric_label} when one weight moves{whiskers}")


def sweep_heatmap(sweep: pd.DataFrame, metric: str, metric_label: str, fmt: str = ".2f",
                  center: float | None = None) -> plt.Figure:
    """sweep: head, factor, metric. Heatmap head × factor, each cell annotated with its value.

    The colour scale ends at the 95th percentile of the values (of their distance from `center`
    on a diverging scale), so that one extreme cell does not wash out the others; cells beyond
    it take the end colour and keep their true value as annotation.
    """
    grid = sweep.assign(head=sweep["head"].map(lambda h: _wrap(short_name(h)))).pivot(index="head", columns="factor",
                                                                                   values=metric)
    values = grid.to_numpy(float)
    if center is not None:
        reach = np.nanpercentile(np.abs(values - center), 95)
        vmin, vmax = center - reach, center + reach
    else:
        vmin, vmax = np.nanpercentile(values, [5, 95])
    extend = {(False, False): "neither", (True, False): "min", (False, True): "max", (True, True): "both"}[
        (bool(np.nanmin(values) < vmin), bool(np.nanmax(values) > vmax))]
    labels = np.vectorize(lambda v: _format(v, fmt))(values)
    fig, ax = plt.subplots(figsize=(WIDTH, 0.5 * len(grid) + 2))
    sns.heatmap(grid, annot=labels, fmt="", cmap="vlag" if center is not None else "viridis", center=center,
                vmin=vmin, vmax=vmax, ax=ax, annot_kws={"fontsize": 7.5},
                cbar_kws={"extend": extend, "label": textwrap.fill(
                    metric_label + (" (colour clipped at the ends)" if extend != "neither" else ""), 40)})
    ax.set_xticklabels([_format(float(t.get_text()), "g", "×") for t in ax.get_xticklabels()])
    ax.set_xlabel("factor applied to the head's weight\n(×−1: sign flipped, ×0: head removed)")
    ax.set_ylabel("head")
    return _finish(fig, f"{metric_label[:1].upper()}{metric_label[1:]} per head and weight factor")


def sobol_bars(indices: pd.DataFrame, outputs: dict[str, str]) -> plt.Figure:
    """indices: probabilities (model/oracle), output, input, ST, ST_conf. One panel per output:
    total indices with their 95 % intervals, on the model's and the oracle's probabilities."""
    n = len(outputs)
    cols = 2
    rows = int(np.ceil(n / cols))
    inputs = list(dict.fromkeys(indices["input"]))
    fig, axes = plt.subplots(rows, cols, figsize=(WIDTH, (0.36 * len(inputs) + 1.2) * rows + 0.8), sharey=True,
                             squeeze=False)
    y = np.arange(len(inputs))
    colors = {"model": sns.color_palette()[0], "oracle": sns.color_palette()[1]}
    for ax, (out, label) in zip(np.ravel(axes), outputs.items()):
        for offset, source in ((0.18, "model"), (-0.18, "oracle")):
            sub = indices[(indices["output"] == out) & (indices["probabilities"] == source)].set_index("input").reindex(inputs)
            if sub["ST"].isna().all():
                continue
            ax.barh(y + offset, sub["ST"], height=0.34, color=colors[source], label=f"{source}'s probabilities")
            ax.errorbar(sub["ST"], y + offset, xerr=sub["ST_conf"], fmt="none", ecolor="k", capsize=2, lw=1)
        ax.axvline(0, color="k", lw=0.8)
        ax.set_xlabel("total index ST\n(share of variance)")
        ax.set_title(textwrap.fill(label, 34), fontsize=9)
    for ax in np.ravel(axes)[n:]:
        ax.set_visible(False)
    first = np.ravel(axes)[0]
    first.set_yticks(y, [_wrap(short_name(i)) for i in inputs])
    first.invert_yaxis()
    for ax in np.ravel(axes)[::cols]:
        ax.set_ylabel("weight")
        ax.tick_params(axis="y", labelsize=8)  # two-line names, ten to a panel
    handles, labels = first.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, bbox_to_anchor=(0.5, -0.04), frameon=False)
    return _finish(fig, "Sobol total indices (whiskers: 95 % CI), all ten weights varied at once: model vs oracle")


def preset_comparison(paired: pd.DataFrame, metrics: dict[str, str], base: str) -> plt.Figure:
    """paired: weights, metric, difference, low, high (each preset minus the base, per request). One panel per metric."""
    n = len(metrics)
    cols = 2
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(WIDTH, (1.8 + 0.4 * paired["weights"].nunique()) * rows + 0.6),
                             sharey=True, squeeze=False)
    for ax in np.ravel(axes)[n:]:
        ax.set_visible(False)
    for ax, (metric, label) in zip(np.ravel(axes), metrics.items()):
        sub = paired[paired["metric"] == metric]
        y = np.arange(len(sub))
        ax.errorbar(sub["difference"], y, xerr=[sub["difference"] - sub["low"], sub["high"] - sub["difference"]],
                    fmt="o", capsize=4)
        ax.axvline(0.0, color="k", lw=1, ls=":")
        ax.set_yticks(y, sub["weights"])
        ax.set_xlabel(f"{textwrap.fill(label, 30)}\n(preset − {base})")
        ax.margins(x=0.15, y=0.25)
        ax.set_ylabel("weight set")
    return _finish(fig, f"Presets against {base}: paired differences per request (95 % user-level CI)")


def frontier(front: pd.DataFrame, points: pd.DataFrame, k: int) -> plt.Figure:
    """front: weight_search.frontier (scorer, negative_scale, positive, negative); points:
    weight_search.frontier_points (weights, probabilities, positive, negative with intervals). Lines: the
    model's and the oracle's frontiers (scorer model_fitted: dashed, the model with weights fitted per point); markers: every weight set ranked by the model (filled) and by the
    oracle (open), with 95 % user-level intervals."""
    fig, ax = plt.subplots(figsize=(WIDTH, 4.8))
    colors = dict(zip(("model", "oracle"), sns.color_palette()[:2]))
    labels = {"model": "model, Σ positive − s·Σ negative", "oracle": "oracle's frontier (Σ positive − s·Σ negative)",
              "model_fitted": "model, weights fitted per s (other half of the users)"}
    for scorer, sub in front.groupby("scorer"):
        sub = sub.sort_values("negative_scale")
        fitted = scorer == "model_fitted"
        ax.plot(sub["negative"], sub["positive"], color=colors["model" if fitted else scorer], lw=1.4 if fitted else 1.8,
                ls="--" if fitted else "-", marker="." if fitted else None, label=labels.get(scorer, scorer))
    markers = "osD^vP*X"
    for i, (name, sub) in enumerate(points.groupby("weights", sort=False)):
        for _, r in sub.iterrows():
            filled = r["probabilities"] == "model"
            ax.errorbar(r["negative"], r["positive"], xerr=[[r["negative"] - r["negative_low"]], [r["negative_high"] - r["negative"]]],
                        yerr=[[r["positive"] - r["positive_low"]], [r["positive_high"] - r["positive"]]],
                        fmt=markers[i % len(markers)], color=colors[r["probabilities"]], mfc=None if filled else "white",
                        capsize=2, lw=0.8, ms=7, label=f"{name} ({r['probabilities']})")
    ax.set_xlabel(f"expected negative engagements in the top {k} (reports + negative feedback, per request)")
    ax.set_ylabel(f"expected positive engagements\nin the top {k} (per request)")
    ax.legend(fontsize=7, loc="lower right", ncol=2)
    return _finish(fig, f"The trade-off frontier: positive against negative engagement in the top {k} (95 % user-level CI)")


def fitted_weights(heads: pd.DataFrame, gain: pd.DataFrame | None = None) -> plt.Figure:
    """heads: weight_search.best_weights heads table; gain: its gain table (scorer, gain, low, high).

    Top left: log2 of fitted over published weight per head, bars for the model and (where searched)
    the popularity oracle, and the oracle's fit as a marker, which should sit at 0 (the published weights
    are its optimum only if its marker does). Top right, on the same rows: how well the model predicts
    each head (correlation of predicted with true probability), so a weight moved away from a noisy head
    reads across one row. Bottom: what the fitted weights gain over the published ones on the users
    not used to fit them, per scorer, with 95 % user-level intervals."""
    frame = heads.assign(label=heads["head"].map(lambda h: _wrap(short_name(h))))
    rows = 0 if gain is None else len(gain)
    fig = plt.figure(figsize=(WIDTH, 0.42 * len(frame) + 2.0 + (0.35 * rows + 1.3 if rows else 0)))
    grid = fig.add_gridspec(2 if rows else 1, 2, width_ratios=[3, 1.4],
                            height_ratios=[0.42 * len(frame) + 1.2, 0.35 * rows + 0.9] if rows else None)
    left = fig.add_subplot(grid[0, 0])
    right = fig.add_subplot(grid[0, 1], sharey=left)
    y = np.arange(len(frame))
    colors = sns.color_palette()
    bars = [(name, label) for name, label in (("model", "model"), ("popularity", "popularity oracle"))
            if f"log2_change_{name}" in frame]
    height = 0.8 / len(bars)
    for i, (name, label) in enumerate(bars):
        left.barh(y + (i - (len(bars) - 1) / 2) * height, frame[f"log2_change_{name}"], height=height,
                  color=colors[i], label=label)
    if "log2_change_oracle" in frame:
        left.scatter(frame["log2_change_oracle"], y, marker="D", s=22, color="k", zorder=3,
                     label="oracle (a check: at 0)")
    left.axvline(0, color="k", lw=1)
    left.set_yticks(y, frame["label"])
    left.invert_yaxis()
    left.set_xlabel("log2(fitted / published weight)\n(favorited held fixed)")
    left.legend(fontsize=8, loc="best")
    free = ~frame["anchor"].astype(bool)
    right.scatter(frame.loc[free, "prediction_truth_correlation"], y[free.to_numpy()], color=colors[0], s=22)
    right.set_xlim(min(0.0, float(np.nanmin(frame["prediction_truth_correlation"]))) - 0.05, 1.0)
    right.set_xlabel("model's correlation\nwith the true probability")
    right.tick_params(axis="y", labelleft=False)
    if rows:
        bottom = fig.add_subplot(grid[1, :])
        names = {"model": "model", "popularity": "popularity oracle", "oracle": "oracle"}
        g = gain.reset_index(drop=True)
        yy = np.arange(len(g))
        bottom.errorbar(g["gain"], yy, xerr=[g["gain"] - g["low"], g["high"] - g["gain"]], fmt="o", color="k",
                        capsize=3)
        bottom.axvline(0, color="k", lw=1, ls=":")
        bottom.set_yticks(yy, [names.get(s, s) for s in g["scorer"]])
        bottom.invert_yaxis()
        bottom.margins(y=0.3)
        k = int(g["k"].iloc[0]) if "k" in g else 10
        bottom.set_xlabel(f"gain of the fitted weights: true value of the top {k} per request, fitted − published\n"
                          "(users not used to fit them; 95 % user-level CI)")
    return _finish(fig, "The best weights beside the published ones, how well each head is predicted, "
                        "and what the fit gains")


__all__ = ["fitted_weights", "frontier", "preset_comparison", "sobol_bars", "sweep_heatmap", "tornado"]

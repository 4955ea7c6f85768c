"""Summary tables for the report: model quality from a scored table (reliability bins with
Wilson intervals), each head's contribution to the score, and the TwHIN chapters' link-prediction
and embedding-ablation tables. Rankings live in `studylib.analysis.ranking`, weight sensitivity in
`studylib.analysis.sensitivity`, intervals and tests in `studylib.stats`."""

from __future__ import annotations


import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from studylib import stats
from studylib.data.embeddings import EMBEDDING_VARIANTS
from studylib.errors import StudyError
from studylib.twhin.evaluate import SCORERS


# ---------------------------------------------------------------- display


def named_values(values: dict, column: str = "value") -> pd.DataFrame:
    """A dict of numbers as a one-column table for display: counts as whole numbers with thousands
    separators, other numbers to 4 significant digits (a float column would print 1000 as 1000.0000)."""
    def shown(v) -> str:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
            return str(v)
        if isinstance(v, (int, np.integer)) or (np.isfinite(v) and float(v).is_integer() and abs(v) >= 1):
            return f"{int(v):,}"
        return f"{v:.4g}"
    return pd.DataFrame({column: [shown(v) for v in values.values()]}, index=list(values))


# ---------------------------------------------------------------- model quality from a scored table


def reliability_curves(frame: pd.DataFrame, heads: tuple[str, ...], bins: int = 10) -> pd.DataFrame:
    """Per head: equal-count bins of predicted probability -> mean prediction and observed label rate
    with its 95 % Wilson interval; `evaluable` marks heads with enough positives to judge."""
    rows = []
    for head in heads:
        prob = frame[f"prob.{head}"].to_numpy(np.float64)
        label = frame[f"label.{head}"].to_numpy(np.float64)
        edges = np.unique(np.quantile(prob, np.linspace(0, 1, bins + 1)))
        which = np.clip(np.searchsorted(edges, prob, side="right") - 1, 0, max(edges.size - 2, 0))
        count = np.bincount(which, minlength=edges.size)
        keep = count > 0
        mean_pred = np.bincount(which, prob, minlength=edges.size)[keep] / count[keep]
        hits = np.bincount(which, label, minlength=edges.size)[keep]
        # Labels are independent draws given the true probabilities, so a bin's rate is binomial.
        ci = [scipy_stats.binomtest(int(round(k)), int(n)).proportion_ci(0.95, method="wilson")
              for k, n in zip(hits, count[keep])]
        rows.append(pd.DataFrame({"head": head, "bin_mean_prediction": mean_pred, "observed_rate": hits / count[keep],
                                  "rate_low": [c.low for c in ci], "rate_high": [c.high for c in ci],
                                  "count": count[keep], "evaluable": label.sum() >= stats.MIN_POSITIVES}))
    return pd.concat(rows, ignore_index=True)


# ---------------------------------------------------------------- score decomposition


def contribution_shares(prob: np.ndarray, weights: np.ndarray, heads: tuple[str, ...]) -> pd.DataFrame:
    """How much each head contributes to the score: weight × probability per candidate.

    share = |w_h·p_h| / Σ_h |w_h·p_h| per candidate; reported as mean and spread (std,
    10th/90th percentiles) over candidates, with the mean signed contribution.
    """
    prob = np.asarray(prob, np.float64)
    weights = np.asarray(weights, np.float64)
    contrib = prob * weights[None, :]
    total = np.abs(contrib).sum(axis=1, keepdims=True)
    share = np.divide(np.abs(contrib), total, out=np.zeros_like(contrib), where=total > 0)
    return pd.DataFrame({
        "head": list(heads), "weight": weights, "mean_probability": prob.mean(axis=0),
        "mean_contribution": contrib.mean(axis=0), "mean_share": share.mean(axis=0), "share_std": share.std(axis=0),
        "share_p10": np.percentile(share, 10, axis=0), "share_p90": np.percentile(share, 90, axis=0),
    }).sort_values("mean_share", ascending=False, ignore_index=True)



# ---------------------------------------------------------------- TwHIN embeddings




def link_prediction_table(evaluation: pd.DataFrame, direction: str = "rhs", ranking: str = "filtered",
                          pairs: str = "all", metric: str = "mrr") -> pd.DataFrame:
    """evaluation (twhin-evaluate rows): one row per relation, per scorer the metric and its
    bootstrap interval (`<scorer>`, `<scorer>_low`, `<scorer>_high`), plus the pairs ranked and
    `trained_of_oracle`, the trained scorer's share of the oracle's value."""
    sub = evaluation[(evaluation["direction"] == direction) & (evaluation["ranking"] == ranking)
                     & (evaluation["pairs"] == pairs)]
    if sub.empty:
        raise StudyError(f"no link-prediction rows for direction {direction!r}, ranking {ranking!r}, pairs {pairs!r}")
    scorers = [s for s in SCORERS if s in set(sub["scorer"])] + \
        [s for s in dict.fromkeys(sub["scorer"]) if s not in SCORERS]
    relations = list(dict.fromkeys(sub["relation"]))
    wide = sub.pivot(index="relation", columns="scorer", values=metric)
    table = pd.DataFrame(index=pd.Index(relations, name="relation"))
    table["pairs"] = sub.groupby("relation")["n_pairs"].first().reindex(relations)
    table["candidates"] = sub.groupby("relation")["candidates"].first().reindex(relations)
    for scorer in scorers:
        table[scorer] = wide[scorer].reindex(relations)
        for bound in ("low", "high"):
            column = f"{metric}_{bound}"
            if column in sub:
                table[f"{scorer}_{bound}"] = sub[sub["scorer"] == scorer].set_index("relation")[column].reindex(relations)
    if {"trained", "oracle"} <= set(scorers):
        table["trained_of_oracle"] = table["trained"] / table["oracle"]
    if "share_over_popularity" in sub:  # each scorer's share of the oracle's gain over popularity
        for scorer in scorers:
            rows = sub[sub["scorer"] == scorer].set_index("relation").reindex(relations)
            for suffix in ("", "_low", "_high"):
                table[f"{scorer}_over_popularity{suffix}"] = rows[f"share_over_popularity{suffix}"]
    return table




def embedding_ablation(evals: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """evals: variant -> a run's final eval rows (head, positives, auroc, rce, oracle_auroc, oracle_rce).

    Long table head × variant, with each metric's gain over the random-embedding variant
    (`auroc_gain`, `rce_gain`; NaN without a random variant).
    """
    cols = ["head", "positives", "auroc", "rce", "oracle_auroc", "oracle_rce"]
    frames = []
    for variant, frame in evals.items():
        last = frame[frame["step"] == frame["step"].max()] if "step" in frame else frame
        frames.append(last[cols].assign(variant=variant))
    long = pd.concat(frames, ignore_index=True)
    order = [v for v in EMBEDDING_VARIANTS if v in evals] + [v for v in evals if v not in EMBEDDING_VARIANTS]
    long["variant"] = pd.Categorical(long["variant"], categories=order, ordered=True)
    if "random" in evals:
        floor = long[long["variant"] == "random"].set_index("head")
        long["auroc_gain"] = long["auroc"] - long["head"].map(floor["auroc"])
        long["rce_gain"] = long["rce"] - long["head"].map(floor["rce"])
    else:
        long["auroc_gain"] = long["rce_gain"] = np.nan
    heads = list(dict.fromkeys(long["head"]))
    long["head_order"] = long["head"].map({h: i for i, h in enumerate(heads)})
    return long.sort_values(["head_order", "variant"]).drop(columns="head_order").reset_index(drop=True)


__all__ = ["contribution_shares", "embedding_ablation", "link_prediction_table", "named_values", "reliability_curves"]

"""Ranking and score analysis for the study notebooks, vectorized over requests.

Candidates are grouped per request (one user's feed request) into padded matrices
`[requests, slots]` with a validity mask, so every ranking metric is computed for all
requests at once: Kendall's τ-b between two score vectors, the overlap of the two top-k
sets, and the true expected value of a top-k (sum of the planted true probabilities of
the k chosen candidates: expected likes, replies, reports, negative feedback).

On top of that: one-at-a-time weight sweeps, global Sobol indices (SALib) over all ten
weights, bootstrap confidence intervals (scipy), two-sample tests of score distributions
(Welch's t, Mann–Whitney U, Kolmogorov–Smirnov) with effect sizes, and per-head
contribution shares. Loops run over heads, factors or weight sets, never over examples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
from scipy import stats

from studylib.errors import StudyError

# Metrics reported for every weight set (top-10 true expected values use the planted truth).
TOP_K = 10
VALUE_HEADS = {  # report name -> short head name whose true probability is summed over the top k
    "expected_likes": "favorited",
    "expected_replies": "replied",
    "expected_reports": "report_tweet_clicked",
    "expected_negative_feedback": "negative_feedback_v2",
}


# ---------------------------------------------------------------- per-request matrices


@dataclass
class Requests:
    """Candidates grouped per request: `index[r, j]` is the row of slot j of request r (-1: padding)."""

    ids: np.ndarray  # [R] request ids
    index: np.ndarray  # [R, n] row numbers into the flat arrays, -1 where padded
    mask: np.ndarray  # [R, n] True where a slot holds a candidate

    @classmethod
    def from_ids(cls, request: np.ndarray) -> "Requests":
        request = np.asarray(request)
        if request.ndim != 1 or request.size == 0:
            raise StudyError("analysis: need a non-empty 1-d array of request ids")
        order = np.argsort(request, kind="stable")
        sorted_req = request[order]
        starts = np.flatnonzero(np.r_[True, sorted_req[1:] != sorted_req[:-1]])
        sizes = np.diff(np.r_[starts, sorted_req.size])
        slot = np.arange(sorted_req.size) - np.repeat(starts, sizes)
        group = np.repeat(np.arange(starts.size), sizes)
        index = np.full((starts.size, sizes.max()), -1, dtype=np.int64)
        index[group, slot] = order
        return cls(sorted_req[starts], index, index >= 0)

    @property
    def n_requests(self) -> int:
        return self.index.shape[0]

    def gather(self, values: np.ndarray, fill: float = np.nan) -> np.ndarray:
        """Flat [N, ...] values -> [R, n, ...] (padding filled with `fill`)."""
        values = np.asarray(values)
        out = values[np.where(self.mask, self.index, 0)].astype(np.float64)
        pad = ~self.mask
        out[pad] = fill
        return out


def _masked(score: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return np.where(mask, score, -np.inf)


def kendall_tau(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Kendall's τ-b between score vectors a and b of every request: [..., R, n] -> [..., R].

    τ-b = Σ sign(a_i−a_j)·sign(b_i−b_j) / sqrt(Σ sign(a_i−a_j)² · Σ sign(b_i−b_j)²) over valid
    pairs, which counts ties exactly as scipy.stats.kendalltau does. NaN when a request has
    fewer than two candidates or one vector is constant.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if mask is None:
        mask = np.ones(a.shape[-2:], dtype=bool)
    pair = mask[..., :, None] & mask[..., None, :]
    sa = np.sign(a[..., :, None] - a[..., None, :]) * pair
    sb = np.sign(b[..., :, None] - b[..., None, :]) * pair
    num = (sa * sb).sum(axis=(-1, -2))
    den = np.sqrt((sa * sa).sum(axis=(-1, -2)) * (sb * sb).sum(axis=(-1, -2)))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def top_k_mask(score: np.ndarray, mask: np.ndarray, k: int = TOP_K) -> np.ndarray:
    """[..., R, n] bool: the k highest-scored valid candidates of each request (ties: lower slot first)."""
    order = np.argsort(-_masked(score, mask), axis=-1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(score.shape[-1]), axis=-1)
    return (rank < k) & mask


def top_k_overlap(a: np.ndarray, b: np.ndarray, mask: np.ndarray, k: int = TOP_K) -> np.ndarray:
    """Share of request's top k under `a` that is also in its top k under `b`: [..., R] in [0, 1]."""
    ta, tb = top_k_mask(a, mask, k), top_k_mask(b, mask, k)
    size = np.minimum(k, mask.sum(axis=-1))
    return (ta & tb).sum(axis=-1) / np.maximum(size, 1)


def top_k_value(score: np.ndarray, values: np.ndarray, mask: np.ndarray, k: int = TOP_K) -> np.ndarray:
    """Sum of `values` ([R, n]: e.g. true like probabilities) over each request's top k: [..., R]."""
    top = top_k_mask(score, mask, k)
    return np.where(top, np.nan_to_num(values), 0.0).sum(axis=-1)


# ---------------------------------------------------------------- a scored table, ready for analysis


@dataclass
class ScoredSet:
    """Per-head probabilities and planted truth of one scored data set, grouped per request."""

    heads: tuple[str, ...]  # short head names, column order of prob / truth
    requests: Requests
    prob: np.ndarray  # [R, n, H] predicted (calibrated) probabilities
    truth: np.ndarray | None  # [R, n, H] planted true probabilities
    cohort: np.ndarray | None  # [N] cohort per row (flat)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, heads: tuple[str, ...]) -> "ScoredSet":
        missing = [f"prob.{h}" for h in heads if f"prob.{h}" not in frame]
        if missing:
            raise StudyError(f"scored table: missing column {missing[0]}")
        requests = Requests.from_ids(frame["request_id"].to_numpy())
        prob = requests.gather(frame[[f"prob.{h}" for h in heads]].to_numpy(np.float64), fill=0.0)
        truth = None
        if all(f"true_prob.{h}" in frame for h in heads):
            truth = requests.gather(frame[[f"true_prob.{h}" for h in heads]].to_numpy(np.float64), fill=0.0)
        cohort = frame["cohort"].to_numpy() if "cohort" in frame else None
        return cls(tuple(heads), requests, prob, truth, cohort)

    def scores(self, weights: np.ndarray) -> np.ndarray:
        """weights [H] or [K, H] -> scores [R, n] or [K, R, n]."""
        weights = np.asarray(weights, dtype=np.float64)
        if weights.shape[-1] != len(self.heads):
            raise StudyError(f"analysis: {weights.shape[-1]} weights for {len(self.heads)} heads")
        return np.einsum("rnh,...h->...rn", self.prob, weights)


def ranking_metrics(scored: ScoredSet, base_weights: np.ndarray, weight_sets: np.ndarray, k: int = TOP_K,
                    chunk: int = 16) -> dict[str, np.ndarray]:
    """Per-request ranking metrics of every weight set against the base weights.

    Returns arrays [K, R]: `kendall_tau`, `top10_overlap` and, with planted truth, the
    true expected value of each top k (`expected_likes`, ...). Weight sets are processed
    `chunk` at a time to bound memory ([chunk, R, n, n] pair matrices).
    """
    weight_sets = np.atleast_2d(np.asarray(weight_sets, dtype=np.float64))
    mask = scored.requests.mask
    base = scored.scores(base_weights)
    out: dict[str, list[np.ndarray]] = {"kendall_tau": [], f"top{k}_overlap": []}
    value_cols = {}
    if scored.truth is not None:
        value_cols = {name: scored.heads.index(h) for name, h in VALUE_HEADS.items() if h in scored.heads}
        for name in value_cols:
            out[name] = []
    for start in range(0, weight_sets.shape[0], chunk):
        s = scored.scores(weight_sets[start:start + chunk])  # [c, R, n]
        out["kendall_tau"].append(kendall_tau(s, base[None], mask))
        out[f"top{k}_overlap"].append(top_k_overlap(s, base[None], mask, k))
        for name, col in value_cols.items():
            out[name].append(top_k_value(s, scored.truth[..., col][None], mask, k))
    return {name: np.concatenate(parts) for name, parts in out.items()}


def summarize(metrics: dict[str, np.ndarray]) -> pd.DataFrame:
    """[K, R] arrays -> one row per weight set: the mean over requests of every metric."""
    return pd.DataFrame({name: np.nanmean(values, axis=1) for name, values in metrics.items()})


# ---------------------------------------------------------------- one-at-a-time sweeps


def sweep_weight_sets(base: np.ndarray, factors: list[float]) -> tuple[np.ndarray, pd.DataFrame]:
    """Every head's weight scaled by every factor, the others kept: ([H·F, H], index frame)."""
    base = np.asarray(base, dtype=np.float64)
    sets, rows = [], []
    for h in range(base.size):
        for f in factors:
            w = base.copy()
            w[h] = base[h] * f
            sets.append(w)
            rows.append({"head_index": h, "factor": float(f), "weight": w[h]})
    return np.array(sets), pd.DataFrame(rows)


def sensitivity_sweep(scored: ScoredSet, base: np.ndarray, factors: list[float], k: int = TOP_K) -> pd.DataFrame:
    """One-at-a-time sweep: mean ranking metrics per (head, factor), with changes vs the base weights."""
    if not factors:
        raise StudyError("sweep_factors: give at least one factor")
    sets, index = sweep_weight_sets(base, factors)
    table = pd.concat([index, summarize(ranking_metrics(scored, base, sets, k))], axis=1)
    table.insert(0, "head", [scored.heads[i] for i in table.pop("head_index")])
    baseline = summarize(ranking_metrics(scored, base, base[None], k)).iloc[0]
    for name in VALUE_HEADS:
        if name in table:
            table[f"{name}_change_pct"] = 100.0 * (table[name] / baseline[name] - 1.0) if baseline[name] else np.nan
    return table


def tornado_table(sweep: pd.DataFrame, metric: str, low: float, high: float) -> pd.DataFrame:
    """Per head: the metric at factor `low` and `high` and the swing between them, largest swing first."""
    lo = sweep[np.isclose(sweep["factor"], low)].set_index("head")[metric]
    hi = sweep[np.isclose(sweep["factor"], high)].set_index("head")[metric]
    out = pd.DataFrame({"low": lo, "high": hi})
    out["swing"] = (out["high"] - out["low"]).abs()
    return out.sort_values("swing", ascending=False).reset_index()


# ---------------------------------------------------------------- global sensitivity (Sobol)


def sobol_analysis(names: list[str], bounds: list[tuple[float, float]], func: Callable[[np.ndarray], np.ndarray],
                   outputs: list[str], n_base: int, seed: int = 0, second_order: bool = False) -> pd.DataFrame:
    """Sobol first-order (S1) and total (ST) indices of every output over the inputs.

    `func` maps a sample matrix [M, D] to outputs [M, len(outputs)]. Saltelli/Sobol sampling
    of SALib with `n_base` base points (a power of two); M = n_base·(D+2).
    """
    from SALib.analyze import sobol as sobol_analyze
    from SALib.sample import sobol as sobol_sample

    if n_base < 2 or n_base & (n_base - 1):
        raise StudyError(f"sobol_n must be a power of two >= 2, got {n_base}")
    problem = {"num_vars": len(names), "names": list(names), "bounds": [list(b) for b in bounds]}
    X = sobol_sample.sample(problem, n_base, calc_second_order=second_order, seed=seed)
    Y = np.asarray(func(X), dtype=np.float64).reshape(X.shape[0], len(outputs))
    rows = []
    for j, out in enumerate(outputs):
        y = Y[:, j]
        if np.nanstd(y) == 0:
            res = {"S1": np.zeros(len(names)), "S1_conf": np.zeros(len(names)),
                   "ST": np.zeros(len(names)), "ST_conf": np.zeros(len(names))}
        else:
            res = sobol_analyze.analyze(problem, np.nan_to_num(y, nan=np.nanmean(y)), calc_second_order=second_order,
                                        seed=seed, print_to_console=False)
        for i, name in enumerate(names):
            rows.append({"output": out, "input": name, "S1": float(res["S1"][i]), "S1_conf": float(res["S1_conf"][i]),
                         "ST": float(res["ST"][i]), "ST_conf": float(res["ST_conf"][i])})
    return pd.DataFrame(rows)


def weight_sobol(scored: ScoredSet, base: np.ndarray, factor_range: tuple[float, float], n_base: int,
                 seed: int = 0, k: int = TOP_K) -> pd.DataFrame:
    """Sobol indices of the mean ranking metrics when all ten weights are scaled at once,
    each by an independent factor drawn uniformly from `factor_range`."""
    lo, hi = factor_range
    if not lo < hi:
        raise StudyError(f"sobol_range must be [low, high] with low < high, got {list(factor_range)}")
    outputs = ["kendall_tau", f"top{k}_overlap"] + [n for n in VALUE_HEADS if scored.truth is not None]

    def func(X: np.ndarray) -> np.ndarray:
        summary = summarize(ranking_metrics(scored, base, X * base[None], k))
        return summary[outputs].to_numpy()

    return sobol_analysis(list(scored.heads), [(lo, hi)] * len(scored.heads), func, outputs, n_base, seed)


# ---------------------------------------------------------------- uncertainty and tests


def bootstrap_ci(values: np.ndarray, statistic: Callable = np.mean, n_resamples: int = 1000,
                 confidence: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """(estimate, low, high): a BCa bootstrap interval (percentile when BCa is undefined)."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size < 2:
        return (float(statistic(values)) if values.size else math.nan, math.nan, math.nan)
    estimate = float(statistic(values))
    if np.all(values == values[0]):
        return estimate, estimate, estimate
    for method in ("BCa", "percentile"):
        with np.errstate(all="ignore"):
            res = stats.bootstrap((values,), statistic, n_resamples=n_resamples, confidence_level=confidence,
                                  method=method, rng=np.random.default_rng(seed), vectorized=True, axis=-1)
        low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if math.isfinite(low) and math.isfinite(high):
            return estimate, low, high
    return estimate, math.nan, math.nan


def bootstrap_table(metrics: dict[str, np.ndarray], labels: list[str], n_resamples: int = 1000,
                    seed: int = 0) -> pd.DataFrame:
    """Mean over requests with a 95% bootstrap interval, for every (weight set, metric)."""
    rows = []
    for name, values in metrics.items():
        for i, label in enumerate(labels):
            est, lo, hi = bootstrap_ci(values[i], n_resamples=n_resamples, seed=seed)
            rows.append({"weights": label, "metric": name, "mean": est, "ci_low": lo, "ci_high": hi})
    return pd.DataFrame(rows)


def cohens_d(a: np.ndarray, b: np.ndarray) -> float:
    """Standardized mean difference (a − b) with the average of the two variances (suits Welch)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    sd = math.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2.0)
    return float((a.mean() - b.mean()) / sd) if sd > 0 else 0.0


def effect_label(d: float) -> str:
    """Cohen's conventional words for |d|."""
    d = abs(d)
    return "negligible" if d < 0.2 else "small" if d < 0.5 else "medium" if d < 0.8 else "large"


def compare_distributions(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Welch's t, Mann–Whitney U and two-sample KS of a vs b, with effect sizes.

    `prob_superiority` is P(A > B) + ½P(A = B) = U / (n_a·n_b) (0.5: no shift);
    `rank_biserial` = 2·prob_superiority − 1; `ks_d` is the largest gap between the ECDFs.
    """
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if a.size < 2 or b.size < 2:
        raise StudyError(f"compare_distributions: need two samples of >= 2 values, got {a.size} and {b.size}")
    welch = stats.ttest_ind(a, b, equal_var=False)
    mwu = stats.mannwhitneyu(a, b, alternative="two-sided")
    ks = stats.ks_2samp(a, b)
    superiority = float(mwu.statistic) / (a.size * b.size)
    d = cohens_d(a, b)
    return {"n_a": a.size, "n_b": b.size, "mean_a": float(a.mean()), "mean_b": float(b.mean()),
            "median_a": float(np.median(a)), "median_b": float(np.median(b)),
            "welch_t": float(welch.statistic), "welch_p": float(welch.pvalue),
            "mwu_u": float(mwu.statistic), "mwu_p": float(mwu.pvalue),
            "ks_d": float(ks.statistic), "ks_p": float(ks.pvalue),
            "cohens_d": d, "effect": effect_label(d),
            "prob_superiority": superiority, "rank_biserial": 2.0 * superiority - 1.0}


def compare_groups(frame: pd.DataFrame, value: str, group: str, reference: str) -> pd.DataFrame:
    """Every group of `frame[group]` against the `reference` group on `frame[value]`."""
    groups = list(pd.unique(frame[group]))
    if reference not in groups:
        raise StudyError(f"compare_groups: no group {reference!r} in {group} (have {groups})")
    ref = frame.loc[frame[group] == reference, value].to_numpy()
    rows = []
    for g in groups:
        if g == reference:
            continue
        rows.append({"group": g, "reference": reference,
                     **compare_distributions(frame.loc[frame[group] == g, value].to_numpy(), ref)})
    return pd.DataFrame(rows)


def describe_test(row: dict | pd.Series, alpha: float = 0.05, a: str = "A", b: str = "B") -> str:
    """One plain-words sentence about a compare_distributions result."""
    significant = [name for name, key in (("Welch's t", "welch_p"), ("Mann–Whitney U", "mwu_p"), ("KS", "ks_p"))
                   if row[key] < alpha]
    direction = "higher" if row["mean_a"] > row["mean_b"] else "lower"
    tests = (", ".join(significant) + f" reject{'s' if len(significant) == 1 else ''} 'same distribution' at α={alpha}"
             if significant else f"no test rejects 'same distribution' at α={alpha}")
    return (f"{a} scores are on average {direction} than {b} ({row['mean_a']:.4g} vs {row['mean_b']:.4g}); "
            f"{tests}; the effect is {row['effect']} (Cohen's d = {row['cohens_d']:.2f}, "
            f"P({a} > {b}) = {row['prob_superiority']:.2f}, KS D = {row['ks_d']:.2f}).")


# ---------------------------------------------------------------- model quality from a scored table


def auroc(prob: np.ndarray, label: np.ndarray) -> float:
    """Area under the ROC curve via the Mann–Whitney rank statistic (ties count half); NaN if one class is absent."""
    prob = np.asarray(prob, np.float64)
    label = np.asarray(label).astype(bool)
    n_pos = int(label.sum())
    n_neg = label.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = stats.rankdata(prob)
    return float((ranks[label].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def reliability_curves(frame: pd.DataFrame, heads: tuple[str, ...], bins: int = 10) -> pd.DataFrame:
    """Per head: equal-count bins of predicted probability -> mean prediction and observed label rate."""
    rows = []
    for head in heads:
        prob = frame[f"prob.{head}"].to_numpy(np.float64)
        label = frame[f"label.{head}"].to_numpy(np.float64)
        edges = np.unique(np.quantile(prob, np.linspace(0, 1, bins + 1)))
        which = np.clip(np.searchsorted(edges, prob, side="right") - 1, 0, max(edges.size - 2, 0))
        count = np.bincount(which, minlength=edges.size)
        keep = count > 0
        mean_pred = np.bincount(which, prob, minlength=edges.size)[keep] / count[keep]
        observed = np.bincount(which, label, minlength=edges.size)[keep] / count[keep]
        rows.append(pd.DataFrame({"head": head, "bin_mean_prediction": mean_pred, "observed_rate": observed,
                                  "count": count[keep]}))
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


SCORER_ORDER = ("random", "trained", "oracle")


def link_prediction_table(evaluation: pd.DataFrame, candidates: str = "all",
                          metrics: tuple[str, ...] = ("mrr", "hits@10", "hits@50")) -> pd.DataFrame:
    """evaluation (twhin-evaluate rows): one row per relation, columns (metric, scorer).

    candidates: "all" (every entity of the rhs type) or "sampled" (the shared random sample).
    """
    sub = evaluation[evaluation["candidates"].str.startswith(candidates)]
    if sub.empty:
        raise StudyError(f"no link-prediction rows with {candidates} candidates")
    scorers = [s for s in SCORER_ORDER if s in set(sub["scorer"])]
    relations = list(dict.fromkeys(sub["relation"]))
    table = sub.pivot(index="relation", columns="scorer", values=list(metrics))
    return table.reindex(index=relations, columns=pd.MultiIndex.from_product([list(metrics), scorers]))


VARIANT_ORDER = ("random", "planted", "trained")


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
    order = [v for v in VARIANT_ORDER if v in evals] + [v for v in evals if v not in VARIANT_ORDER]
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


__all__ = [
    "Requests", "ScoredSet", "kendall_tau", "top_k_mask", "top_k_overlap", "top_k_value", "ranking_metrics",
    "summarize", "sweep_weight_sets", "sensitivity_sweep", "tornado_table", "sobol_analysis", "weight_sobol",
    "bootstrap_ci", "bootstrap_table", "cohens_d", "effect_label", "compare_distributions", "compare_groups",
    "describe_test", "contribution_shares", "auroc", "reliability_curves", "TOP_K", "VALUE_HEADS",
    "link_prediction_table", "embedding_ablation", "SCORER_ORDER", "VARIANT_ORDER",
]

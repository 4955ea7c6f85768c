"""Inference that respects the study's design: candidates of one request, and requests of one
user, are not independent observations.

- Cluster bootstrap: whole clusters (users or requests) are resampled with replacement; each
  resample is a weight per row (how often its cluster was drawn), so any weighted statistic —
  AUROC, RCE, a mean, a paired difference — gets an interval from the same resamples, and two
  statistics computed on the same resamples give a paired interval of their difference. AUROC and
  RCE under many resamples are summed per cluster first (`cluster_bootstrap_auroc`): the same
  numbers, without a [resamples × rows] matrix (a gigabyte at 1,000 resamples of 120,000 rows).
- Two-group tests on cluster means (Welch's t, Mann–Whitney U, KS from scipy) with a
  cluster-bootstrap interval for the difference of means, Holm's correction within a family.
- The false-positive rate of a test, measured on random cluster-level splits of one sample.
- The intraclass correlation of candidates within a cluster and the design effect it implies.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from studylib.errors import StudyError
from studylib.schema import PREDICTION_EPS as EPS  # the original's clipping, the same as a run's eval.csv
MIN_POSITIVES = 50  # a head with fewer held-out positives is "not evaluable"


# ---------------------------------------------------------------- cluster bootstrap


def cluster_codes(cluster: np.ndarray) -> tuple[np.ndarray, int]:
    """Cluster ids -> (dense code per row, number of clusters)."""
    _, codes = np.unique(np.asarray(cluster), return_inverse=True)
    return codes.ravel(), int(codes.max()) + 1 if codes.size else 0


def bootstrap_counts(cluster: np.ndarray, n_resamples: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(dense cluster code per row, [B, C] draws per cluster): each resample draws C clusters of C
    with replacement. Row weights are `counts[:, codes]`; statistics that sum over rows can sum per
    cluster first and never build the [B, N] matrix (`cluster_bootstrap_auroc`, `cluster_bootstrap_rce`)."""
    codes, n = cluster_codes(cluster)
    if n < 2:
        raise StudyError(f"cluster bootstrap: need at least 2 clusters, got {n}")
    counts = np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=int(n_resamples))
    return codes, counts.astype(np.float64)


def bootstrap_weights(cluster: np.ndarray, n_resamples: int, seed: int = 0) -> np.ndarray:
    """[B, N] row weights of a cluster bootstrap: each resample draws C clusters of C with replacement."""
    codes, counts = bootstrap_counts(cluster, n_resamples, seed)
    return counts[:, codes]


def weighted_auroc(score: np.ndarray, label: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUROC with row weights ([N] or [B, N]) -> scalar or [B]; ties count half (Mann–Whitney).

    The order of the scores does not depend on the weights, so the sort is done once for all
    resamples: per distinct score value, AUROC adds w_pos · (negatives below + ½ tied negatives).
    """
    score = np.asarray(score, np.float64)
    label = np.asarray(label).astype(bool)
    w = np.atleast_2d(np.asarray(weights, np.float64))
    order = np.argsort(score, kind="stable")
    s, y, w = score[order], label[order], w[:, order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    pos = np.add.reduceat(w * y, starts, axis=1)
    neg = np.add.reduceat(w * ~y, starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    n_pos, n_neg = pos.sum(axis=1), neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (pos * (below + 0.5 * neg)).sum(axis=1) / (n_pos * n_neg)
    auc = np.where((n_pos > 0) & (n_neg > 0), auc, np.nan)
    return auc if np.ndim(weights) == 2 else float(auc[0])


def _row_cross_entropy(prob: np.ndarray, label: np.ndarray) -> np.ndarray:
    """Each row's cross-entropy, the probability clipped as the original clips it."""
    p = np.clip(np.asarray(prob, np.float64), EPS, 1 - EPS)
    return -(label * np.log(p) + (1 - label) * np.log1p(-p))


def _rce(cross_entropy: np.ndarray, positives: np.ndarray, total: np.ndarray) -> np.ndarray:
    """RCE from weighted sums: of the rows' cross-entropy, of their labels, of their weights."""
    ce = cross_entropy / total
    rate = np.clip(positives / total, EPS, 1 - EPS)
    base = -(rate * np.log(rate) + (1 - rate) * np.log1p(-rate))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((rate > EPS) & (rate < 1 - EPS), 100.0 * (1.0 - ce / base), np.nan)


def weighted_rce(prob: np.ndarray, label: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """RCE = 100·(1 − CE(prob) / CE(weighted base rate)) with row weights ([N] or [B, N])."""
    y = np.asarray(label, np.float64)
    w = np.atleast_2d(np.asarray(weights, np.float64))
    rce = _rce(w @ _row_cross_entropy(prob, y), w @ y, w.sum(axis=1))
    return rce if np.ndim(weights) == 2 else float(rce[0])


def _ordered_pairs_by_cluster(score: np.ndarray, label: np.ndarray, codes: np.ndarray, n_clusters: int,
                              chunk: int = 2048) -> np.ndarray:
    """[C, C] matrix A: A[c', c] = pairs (positive of cluster c', negative of cluster c) that the
    score orders correctly, a tie counting half.

    Up the sorted scores, a positive meets, per cluster, the negatives below its tie group and half
    of those inside it: running counts of negatives per cluster, taken only at the tie-group bounds of
    positives (a cumulative sum over the segments between them), so the work grows with the smaller
    class × clusters, not rows × clusters. With more positives than negatives the roles swap (the
    same pairs, counted from the negatives' side on the reversed scores)."""
    if label.sum() > label.size - label.sum():
        return _ordered_pairs_by_cluster(-score, ~label, codes, n_clusters, chunk).T
    order = np.argsort(score, kind="stable")
    s, y, c = score[order], label[order], codes[order]
    new_group = np.r_[True, s[1:] != s[:-1]]
    group = np.cumsum(new_group) - 1
    group_start = np.flatnonzero(new_group)
    group_end = np.r_[group_start[1:], s.size]  # exclusive
    positive_rows = np.flatnonzero(y)
    positive_group = group[positive_rows]
    negative_rows = np.flatnonzero(~y)
    negative_cluster = c[negative_rows]
    pairs = np.zeros((n_clusters, n_clusters))
    running = np.zeros(n_clusters)  # negatives per cluster in the rows before `counted`
    counted = at = 0
    while at < positive_rows.size:
        # a chunk of positives ends with its last tie group, so the bounds only move up
        stop = int(np.searchsorted(positive_group, positive_group[min(at + chunk, positive_rows.size) - 1], "right"))
        low, high = group_start[positive_group[at:stop]], group_end[positive_group[at:stop]]
        bounds = np.unique(np.r_[low, high])
        first, middle, last = np.searchsorted(negative_rows, [counted, bounds[0], bounds[-1]])
        running = running + np.bincount(negative_cluster[first:middle], minlength=n_clusters)
        segment = np.searchsorted(bounds, negative_rows[middle:last], "right") - 1  # [bounds[m], bounds[m+1])
        per_segment = np.bincount(segment * n_clusters + negative_cluster[middle:last],
                                  minlength=bounds.size * n_clusters).reshape(bounds.size, n_clusters)
        at_bound = running + np.vstack([np.zeros(n_clusters), np.cumsum(per_segment[:-1], axis=0)])
        met = 0.5 * (at_bound[np.searchsorted(bounds, low)] + at_bound[np.searchsorted(bounds, high)])
        cluster = c[positive_rows[at:stop]]
        by_cluster = np.argsort(cluster, kind="stable")
        runs = np.flatnonzero(np.r_[True, np.diff(cluster[by_cluster]) != 0])
        pairs[cluster[by_cluster][runs]] += np.add.reduceat(met[by_cluster], runs, axis=0)
        running, counted, at = at_bound[-1], bounds[-1], stop
    return pairs


def cluster_bootstrap_auroc(score: np.ndarray, label: np.ndarray, codes: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """[B] AUROC under each resample of a cluster bootstrap (`bootstrap_counts`): the same numbers as
    `weighted_auroc(score, label, counts[:, codes])`, from the correctly ordered pairs of every two
    clusters (a resample weights them by the product of their draws), without the [B, N] weights."""
    label = np.asarray(label).astype(bool)
    codes = np.asarray(codes)
    n_clusters = counts.shape[1]
    pairs = _ordered_pairs_by_cluster(np.asarray(score, np.float64), label, codes, n_clusters)
    n_pos = counts @ np.bincount(codes[label], minlength=n_clusters)
    n_neg = counts @ np.bincount(codes[~label], minlength=n_clusters)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = np.einsum("bi,ij,bj->b", counts, pairs, counts, optimize=True) / (n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), auc, np.nan)


def cluster_bootstrap_rce(prob: np.ndarray, label: np.ndarray, codes: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """[B] RCE under each resample of a cluster bootstrap: `weighted_rce(prob, label, counts[:, codes])`
    from per-cluster sums of cross-entropy, labels and rows."""
    y = np.asarray(label, np.float64)
    n_clusters = counts.shape[1]
    per_cluster = [np.bincount(codes, v, n_clusters) for v in (_row_cross_entropy(prob, y), y, np.ones_like(y))]
    return _rce(*(counts @ v for v in per_cluster))


def interval(samples: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap samples (NaN-aware; NaN when fewer than half are finite)."""
    samples = np.asarray(samples, np.float64)
    finite = samples[np.isfinite(samples)]
    if finite.size < max(2, samples.size // 2):
        return math.nan, math.nan
    tail = 100 * (1 - confidence) / 2
    return float(np.percentile(finite, tail)), float(np.percentile(finite, 100 - tail))


def with_intervals(table: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """For reading: every column `x` that has `x_low` and `x_high` beside it becomes one column
    "estimate [low, high]" (a tenth as wide as three numeric columns); other columns stay."""
    out = table.copy()
    for col in [c for c in table.columns if f"{c}_low" in table and f"{c}_high" in table]:
        out[col] = [f"{v:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]" if np.isfinite(v) else "—"
                    for v, lo, hi in zip(table[col], table[f"{col}_low"], table[f"{col}_high"])]
        out = out.drop(columns=[f"{col}_low", f"{col}_high"])
    return out


def head_metric_intervals(frame: pd.DataFrame, heads: tuple[str, ...], cluster: str, n_resamples: int = 500,
                          seed: int = 0, min_positives: int = MIN_POSITIVES) -> pd.DataFrame:
    """Per head: AUROC and RCE of the model (`prob.*`) and the oracle (`true_prob.*`) against the
    labels, each with a cluster-bootstrap 95 % interval, and the paired gaps oracle − model.

    A head with fewer than `min_positives` positives is marked not evaluable (its numbers are
    still computed, for the record, but no conclusion should rest on them).
    """
    if cluster not in frame:
        raise StudyError(f"head_metric_intervals: no column {cluster!r} to cluster on")
    codes, counts = bootstrap_counts(frame[cluster].to_numpy(), n_resamples, seed)
    ones = np.ones(len(frame))
    rows = []
    for h in heads:
        y = frame[f"label.{h}"].to_numpy()
        row = {"head": h, "positives": int(y.sum()), "evaluable": bool(y.sum() >= min_positives)}
        for metric, fn, resampled in (("auroc", weighted_auroc, cluster_bootstrap_auroc),
                                      ("rce", weighted_rce, cluster_bootstrap_rce)):
            model_b = resampled(frame[f"prob.{h}"].to_numpy(), y, codes, counts)
            oracle_b = resampled(frame[f"true_prob.{h}"].to_numpy(), y, codes, counts)
            model, oracle = fn(frame[f"prob.{h}"].to_numpy(), y, ones), fn(frame[f"true_prob.{h}"].to_numpy(), y, ones)
            row[metric], (row[f"{metric}_low"], row[f"{metric}_high"]) = model, interval(model_b)
            row[f"oracle_{metric}"], (row[f"oracle_{metric}_low"], row[f"oracle_{metric}_high"]) = oracle, interval(oracle_b)
            row[f"{metric}_gap"] = oracle - model
            row[f"{metric}_gap_low"], row[f"{metric}_gap_high"] = interval(oracle_b - model_b)
        rows.append(row)
    return pd.DataFrame(rows)


def paired_mean_difference(values_a: np.ndarray, values_b: np.ndarray, cluster: np.ndarray,
                           n_resamples: int = 1000, seed: int = 0) -> dict[str, float]:
    """Mean of a − b over units observed under both conditions (e.g. requests under two weight
    sets), with a cluster-bootstrap 95 % interval (clusters: users)."""
    diff = np.asarray(values_a, np.float64) - np.asarray(values_b, np.float64)
    keep = np.isfinite(diff)
    diff, cluster = diff[keep], np.asarray(cluster)[keep]
    W = bootstrap_weights(cluster, n_resamples, seed)
    boot = (W @ diff) / W.sum(axis=1)
    low, high = interval(boot)
    return {"difference": float(diff.mean()), "low": low, "high": high, "units": int(diff.size),
            "clusters": cluster_codes(cluster)[1]}


def mean_interval(values: np.ndarray, cluster: np.ndarray, n_resamples: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """(mean, low, high) of per-unit values with a cluster-bootstrap 95 % interval."""
    out = paired_mean_difference(values, np.zeros(len(values)), cluster, n_resamples, seed)
    return out["difference"], out["low"], out["high"]


# ---------------------------------------------------------------- tests on cluster means


def cluster_means(values: np.ndarray, cluster: np.ndarray) -> np.ndarray:
    """Mean of `values` per cluster (the cluster is the independent unit)."""
    codes, n = cluster_codes(cluster)
    values = np.asarray(values, np.float64)
    return np.bincount(codes, values, n) / np.bincount(codes, minlength=n)


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values (family-wise error control) in the input order."""
    p = np.asarray(p_values, np.float64)
    order = np.argsort(p)
    m = p.size
    adjusted = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adjusted
    return out


TESTS = {"welch": "Welch's t", "mwu": "Mann–Whitney U", "ks": "Kolmogorov–Smirnov"}


def _test_p(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    return {"welch_p": float(stats.ttest_ind(a, b, equal_var=False).pvalue),
            "mwu_p": float(stats.mannwhitneyu(a, b, alternative="two-sided").pvalue),
            "ks_p": float(stats.ks_2samp(a, b).pvalue)}


def separate_shared_clusters(a_cluster: np.ndarray, b_cluster: np.ndarray, seed: int = 0
                             ) -> tuple[np.ndarray, np.ndarray, int]:
    """Row masks (keep_a, keep_b) that leave every cluster on one side only, and how many were shared.

    Two data sets drawn from one world share some users; their rows are not independent of each
    other, which a two-sample test assumes. Each shared cluster keeps its rows on one side, picked
    at random (seeded) so neither group is favoured, and loses them on the other."""
    a_cluster, b_cluster = np.asarray(a_cluster), np.asarray(b_cluster)
    shared = np.intersect1d(a_cluster, b_cluster)
    keep_on_a = shared[np.random.default_rng(seed).random(shared.size) < 0.5]
    keep_a = ~np.isin(a_cluster, shared) | np.isin(a_cluster, keep_on_a)
    keep_b = ~np.isin(b_cluster, keep_on_a)
    return keep_a, keep_b, int(shared.size)


def compare_clusters(a: np.ndarray, a_cluster: np.ndarray, b: np.ndarray, b_cluster: np.ndarray,
                     n_resamples: int = 1000, seed: int = 0) -> dict[str, float]:
    """Group A vs group B at the level of their clusters: the three tests on cluster means, the
    difference of means with a bootstrap interval (clusters resampled within each group),
    Cohen's d and P(A > B) on cluster means. The tests assume independent groups, so a cluster
    found in both (a user of two data sets drawn from one world) counts on one side only
    (`separate_shared_clusters`; how many, in `shared_clusters`)."""
    keep_a, keep_b, shared = separate_shared_clusters(a_cluster, b_cluster, seed)
    a, a_cluster = np.asarray(a)[keep_a], np.asarray(a_cluster)[keep_a]
    b, b_cluster = np.asarray(b)[keep_b], np.asarray(b_cluster)[keep_b]
    ma, mb = cluster_means(a, a_cluster), cluster_means(b, b_cluster)
    if ma.size < 2 or mb.size < 2:
        raise StudyError(f"compare_clusters: need >= 2 clusters per group, got {ma.size} and {mb.size}")
    boot = stats.bootstrap((ma, mb), lambda x, y, axis: x.mean(axis) - y.mean(axis), n_resamples=n_resamples,
                           method="percentile", rng=np.random.default_rng(seed), vectorized=True, axis=-1)
    sd = math.sqrt((ma.var(ddof=1) + mb.var(ddof=1)) / 2.0)
    u = stats.mannwhitneyu(ma, mb, alternative="two-sided").statistic
    return {"clusters_a": ma.size, "clusters_b": mb.size, "shared_clusters": shared,
            "mean_a": float(ma.mean()), "mean_b": float(mb.mean()),
            "difference": float(ma.mean() - mb.mean()), "difference_low": float(boot.confidence_interval.low),
            "difference_high": float(boot.confidence_interval.high),
            "cohens_d": float((ma.mean() - mb.mean()) / sd) if sd > 0 else 0.0,
            "prob_superiority": float(u) / (ma.size * mb.size), **_test_p(ma, mb)}


def compare_groups(comparisons: dict[str, tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]],
                   n_resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Named comparisons of two groups, each given as (values, clusters): one `compare_clusters` row
    per comparison, and each test's p-value Holm-adjusted over the whole family (every test of every
    comparison) in the columns `<test>_p_holm`."""
    table = pd.DataFrame([{"comparison": name, "unit": "user", **compare_clusters(*a, *b, n_resamples, seed)}
                          for name, (a, b) in comparisons.items()])
    columns = [f"{test}_p" for test in TESTS]
    table[[f"{c}_holm" for c in columns]] = holm(table[columns].to_numpy().ravel()).reshape(len(table), len(columns))
    return table


def null_split_rates(values: np.ndarray, split: np.ndarray, unit: np.ndarray | None = None, n_splits: int = 500,
                     alpha: float = 0.05, seed: int = 0, candidate_level: bool = True) -> dict[str, float]:
    """False-positive rate of each test on random splits of one sample into two halves.

    The sample is split at random by `split` (e.g. requests) and each half is reduced to the
    means of its `unit`s (default: the split clusters; e.g. users, whose requests may land in
    both halves), exactly as the chapter's tests see their groups. Both halves come from the
    same distribution, so a valid test rejects in about α of the splits. For contrast the same
    tests run on the candidates as if they were independent (`naive_*`; on a fifth of the splits).
    """
    values = np.asarray(values, np.float64)
    split_codes, n_split = cluster_codes(split)
    unit_codes, n_unit = cluster_codes(split if unit is None else unit)
    if n_split < 4:
        raise StudyError(f"null splits: need at least 4 clusters to split, got {n_split}")
    rng = np.random.default_rng(seed)
    hits = {k: 0 for k in TESTS}
    naive = {k: 0 for k in TESTS}
    naive_splits = max(1, n_splits // 5) if candidate_level else 0
    for i in range(n_splits):
        side = (rng.permutation(n_split) < n_split // 2)[split_codes]
        a = cluster_means(values[side], unit_codes[side])
        b = cluster_means(values[~side], unit_codes[~side])
        for k, p in _test_p(a, b).items():
            hits[k[:-2]] += p < alpha
        if i < naive_splits:
            for k, p in _test_p(values[side], values[~side]).items():
                naive[k[:-2]] += p < alpha
    out = {"splits": n_splits, "alpha": alpha, "split_clusters": n_split, "units": n_unit}
    out.update({f"{k}_rate": hits[k] / n_splits for k in TESTS})
    if naive_splits:
        out["naive_splits"] = naive_splits
        out.update({f"naive_{k}_rate": naive[k] / naive_splits for k in TESTS})
    return out


def intraclass_correlation(values: np.ndarray, cluster: np.ndarray) -> dict[str, float]:
    """One-way ANOVA estimate of the ICC and the design effect 1 + (m̄ − 1)·ICC (m̄: mean cluster size)."""
    codes, k = cluster_codes(cluster)
    values = np.asarray(values, np.float64)
    size = np.bincount(codes, minlength=k).astype(np.float64)
    mean = np.bincount(codes, values, k) / size
    n = values.size
    ms_between = (size * (mean - values.mean()) ** 2).sum() / (k - 1)
    ms_within = ((values - mean[codes]) ** 2).sum() / (n - k)
    m0 = (n - (size ** 2).sum() / n) / (k - 1)
    icc = (ms_between - ms_within) / (ms_between + (m0 - 1) * ms_within)
    return {"icc": float(icc), "mean_cluster_size": float(size.mean()),
            "design_effect": float(1 + (size.mean() - 1) * icc)}


__all__ = ["separate_shared_clusters", "MIN_POSITIVES", "TESTS", "bootstrap_counts", "bootstrap_weights",
           "cluster_bootstrap_auroc", "cluster_bootstrap_rce", "cluster_codes", "cluster_means", "compare_clusters",
           "head_metric_intervals", "holm", "interval", "intraclass_correlation", "mean_interval",
           "null_split_rates", "paired_mean_difference", "weighted_auroc", "weighted_rce", "with_intervals"]


# ---------------------------------------------------------------- equivalence before absence

POWER_BAR = 0.8  # below this power to show equivalence, a claim of absence is "unresolved"
Z95 = 1.959963984540054


def tost(estimate: float, se: float, margin: float, df: float | None = None, alpha: float = 0.05) -> dict[str, float]:
    """Two one-sided tests of |true difference| < margin, from an estimate and its standard error (t with
    `df` degrees of freedom, normal when None): {"p": the larger one-sided p (equivalence shown when
    p < alpha), "power": the chance of showing equivalence at this standard error when the true
    difference is zero, "margin"}."""
    dist = stats.norm if df is None else stats.t(df)
    if not (se >= 0 and margin > 0 and np.isfinite(estimate)):
        return {"p": math.nan, "power": math.nan, "margin": margin}
    if se == 0:  # no noise: the estimate is the difference
        return {"p": float(abs(estimate) >= margin), "power": 1.0, "margin": float(margin)}
    p = max(dist.sf((estimate + margin) / se), dist.cdf((estimate - margin) / se))
    power = max(0.0, 2 * dist.cdf(margin / se - dist.isf(alpha)) - 1)
    return {"p": float(p), "power": float(power), "margin": float(margin)}


def seeds_for_power(sd: float, margin: float, alpha: float = 0.05, bar: float = POWER_BAR, most: int = 10_000) -> int | None:
    """The fewest paired runs (seeds) at which a TOST against ±`margin` reaches power `bar` when the true
    difference is 0 and the runs' differences spread with standard deviation `sd` (t test, n − 1 degrees
    of freedom); None when `sd` is unknown or `most` runs do not suffice."""
    if not (np.isfinite(sd) and sd >= 0 and margin > 0):
        return None
    enough = lambda n: tost(0.0, sd / math.sqrt(n), margin, n - 1, alpha)["power"] >= bar  # noqa: E731  rises with n
    if not enough(most):
        return None
    low, high = 1, most  # enough(high) holds, enough(low) does not (one run has no spread to test)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if enough(mid) else (mid, high)
    return high


def tost_from_interval(estimate: float, low: float, high: float, margin: float, alpha: float = 0.05) -> dict[str, float]:
    """`tost` with the standard error read off a 95 % interval (width / 3.92, normal approximation)."""
    return tost(estimate, (high - low) / (2 * Z95), margin, None, alpha)


def absence_verdict(differs: bool, equivalence: dict[str, float], alpha: float = 0.05,
                    equivalent: str = "no difference") -> str:
    """"differs", `equivalent` (TOST shows |difference| < margin), or "unresolved": never absence
    without an equivalence test, whatever the power."""
    if differs:
        return "differs"
    if equivalence["p"] < alpha:
        return equivalent
    return "unresolved"


__all__ += ["POWER_BAR", "absence_verdict", "seeds_for_power", "tost", "tost_from_interval"]

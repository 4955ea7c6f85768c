"""Where the model's regret against the oracle comes from, and how it depends on the feed's size.

The feed chapter measures one number, the regret of the model's top k against the oracle's
(the same weights applied to the true probabilities). This module takes it apart on the stored
per-head probabilities, with user-level intervals (`studylib.stats`):

- **Shift against error.** The main model trains on one scenario and is judged on another. Each
  head's intercept is re-fitted on the labels of half of the evaluation set's users
  (calibration-in-the-large: the logit shift that makes the head's mean prediction equal those
  users' positive rate), and the regret is measured on the other half before and after. What the
  re-fit removes is what the shift of base rates costs; what remains is the model's own error.
  A head with fewer than 50 positives among the fitting users keeps its intercept. Beside it, a
  full per-head recalibration (Platt scaling: slope and intercept on the logit, same halves) says
  how much of the model's own error is only each head's spread of predictions.
- **Head by head.** One head's prediction replaced by its true probability at a time: the regret
  each head's error costs (the heads interact through the ranking, so these need not add up).
- **Budget.** The share of the oracle's gain the model captures for several top-k sizes and
  candidate-pool sizes (the first n candidates of each request: candidates are drawn
  independently, so they are a random subset of the request).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import brentq, minimize
from scipy.special import expit, logit
from scipy import stats as scipy_stats

from studylib import stats
from studylib.errors import StudyError
from studylib.analysis.ranking import (POPULARITY, ScoredSet, feed_comparison, personal_share, random_expectation,
                                      random_scores, top_k_value)
from studylib.data.requests import Requests

CLIP = 1e-7  # probabilities are clipped to [CLIP, 1 - CLIP] before the logit


def user_halves(users: np.ndarray, seed: int = 0) -> np.ndarray:
    """[R] bool: True for the requests whose user falls in the fitting half (a seeded split of the
    distinct users, so one user's requests are all on one side)."""
    distinct = np.unique(users)
    fitting = np.random.default_rng([int(seed), 0xCA11B]).permutation(distinct)[: distinct.size // 2]
    return np.isin(users, fitting)


def intercept_shift(prob: np.ndarray, target_rate: float) -> float:
    """The logit shift b with mean(sigmoid(logit(prob) + b)) = target_rate (0 < target_rate < 1)."""
    if not 0 < target_rate < 1:
        raise StudyError(f"recalibration: a head's positive rate must be in (0, 1), got {target_rate}")
    z = logit(np.clip(prob, CLIP, 1 - CLIP))
    return float(brentq(lambda b: expit(z + b).mean() - target_rate, -30.0, 30.0, xtol=1e-12))


def recalibrated(prob: np.ndarray, labels: np.ndarray, fit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """prob, labels [R, n, H] (padding included), fit [R, n] bool: the valid candidates to fit on.
    Returns (prob with each head's intercept re-fitted on `fit`, the shifts [H]). A head with fewer
    than MIN_POSITIVES positives (or negatives) there keeps its intercept: its shift is NaN."""
    shifts = np.full(prob.shape[-1], np.nan)
    for h in range(prob.shape[-1]):
        y = labels[..., h][fit]
        if min(y.sum(), y.size - y.sum()) >= stats.MIN_POSITIVES:
            shifts[h] = intercept_shift(prob[..., h][fit], float(y.mean()))
    return _shifted(prob, shifts), shifts


def platt(prob: np.ndarray, labels: np.ndarray, fit: np.ndarray) -> np.ndarray:
    """Per head, the slope and intercept (a, b) of Platt scaling, sigmoid(a · logit(p) + b), fitted by
    maximum likelihood on the `fit` candidates ([R, n] bool) -> [H, 2]; a head with fewer than
    MIN_POSITIVES positives (or negatives) there keeps (1, 0). The intercept-only re-fit (`recalibrated`)
    moves every prediction of a head alike; the slope also stretches or shrinks their spread, which is
    what a ranking within a request sees."""
    params = np.tile([1.0, 0.0], (prob.shape[-1], 1))
    for h in range(prob.shape[-1]):
        y = labels[..., h][fit]
        if min(y.sum(), y.size - y.sum()) < stats.MIN_POSITIVES:
            continue
        z = logit(np.clip(prob[..., h][fit], CLIP, 1 - CLIP))

        def loss(ab):  # mean log loss and its gradient
            q = expit(ab[0] * z + ab[1])
            nll = -np.mean(y * np.log(np.clip(q, CLIP, 1)) + (1 - y) * np.log(np.clip(1 - q, CLIP, 1)))
            return nll, np.array([np.mean((q - y) * z), np.mean(q - y)])

        params[h] = minimize(loss, params[h], jac=True, method="BFGS").x
    return params


def _platt_scaled(prob: np.ndarray, params: np.ndarray) -> np.ndarray:
    return expit(params[:, 0] * logit(np.clip(prob, CLIP, 1 - CLIP)) + params[:, 1])


def _shifted(prob: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Each head's probabilities with its logit shifted (NaN: that head unchanged)."""
    return expit(logit(np.clip(prob, CLIP, 1 - CLIP)) + np.nan_to_num(shifts))


def _subset(scored: ScoredSet, rows: np.ndarray) -> ScoredSet:
    """The requests `rows` ([R] bool) of a scored set."""
    requests = Requests(scored.requests.ids[rows], scored.requests.index[rows], scored.requests.mask[rows])
    pick = lambda a: None if a is None else a[rows]  # noqa: E731
    return ScoredSet(scored.heads, requests, scored.prob[rows], pick(scored.truth), scored.cohort, scored.user,
                     pick(scored.labels), {name: values[rows] for name, values in scored.baselines.items()})


subset = _subset  # public name for the modules that split requests the same way (weight_search)


def _regret_share(removed: np.ndarray, regret: np.ndarray, W: np.ndarray) -> tuple[float, float, float]:
    """Σ removed / Σ regret over requests, with its user-bootstrap interval (same resamples); NaN
    where there is no regret to share (the oracle)."""
    if not regret.sum() > 0:
        return np.nan, np.nan, np.nan
    with np.errstate(invalid="ignore", divide="ignore"):
        low, high = stats.interval((W @ removed) / (W @ regret))
    return float(removed.sum() / regret.sum()), low, high


def decompose(scored: ScoredSet, weights: np.ndarray, k: int, n_resamples: int = 1000, seed: int = 0
              ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The regret of the model's top k on the report half of the users, taken apart.

    Returns (parts, heads). `parts`: one row per part (regret of the model, of the model with
    re-fitted intercepts, the shift's cost = their difference, and its share of the regret), each
    with a 95 % user-level interval. `heads`: per head, the regret removed by replacing that head's
    prediction with its true probability, its share of the model's regret, and the head's mean
    prediction over its true mean before and after the re-fit (on the report half).
    """
    if scored.truth is None or scored.labels is None:
        raise StudyError("regret decomposition: the scored set needs true_prob.* and label.* columns")
    users = scored.request_users()
    fit_rows = user_halves(users, seed)
    if fit_rows.all() or not fit_rows.any():
        raise StudyError("regret decomposition: needs at least two users to split into halves")
    fitting, report = _subset(scored, fit_rows), _subset(scored, ~fit_rows)
    calibrated_prob, shifts = _refit(fitting, report)
    mask, w = report.requests.mask, np.asarray(weights, np.float64)
    value = report.true_value(w)
    best = top_k_value(value, value, mask, k)
    utility = top_k_value(report.scores(w), value, mask, k)
    regret = best - utility
    regret_calibrated = best - top_k_value(np.einsum("rnh,h->rn", calibrated_prob, w), value, mask, k)
    slopes = platt(fitting.prob, fitting.labels, fitting.requests.mask)
    regret_platt = best - top_k_value(np.einsum("rnh,h->rn", _platt_scaled(report.prob, slopes), w), value, mask, k)
    W = stats.bootstrap_weights(users[~fit_rows], n_resamples, seed)

    def mean_row(part: str, values: np.ndarray) -> dict:
        low, high = stats.interval((W @ values) / W.sum(axis=1))
        return {"part": part, "mean": float(values.mean()), "low": low, "high": high}

    shift_cost = regret - regret_calibrated
    share, share_low, share_high = _regret_share(shift_cost, regret, W)
    parts = pd.DataFrame([mean_row("regret of the model", regret),
                          mean_row("regret after re-fitting each head's intercept", regret_calibrated),
                          mean_row("cost of the shift (removed by the re-fit)", shift_cost),
                          mean_row("regret after re-fitting each head's slope and intercept (Platt)", regret_platt),
                          mean_row("removed by the slopes beyond the intercepts", regret_calibrated - regret_platt),
                          {"part": "shift's share of the regret", "mean": share, "low": share_low, "high": share_high}])
    parts["requests"], parts["users"] = int(mask.shape[0]), int(np.unique(users[~fit_rows]).size)

    valid = mask[..., None]
    truth_mean = (report.truth * valid).sum(axis=(0, 1)) / mask.sum()
    rows = []
    for h, head in enumerate(scored.heads):
        swapped = report.prob.copy()
        swapped[..., h] = report.truth[..., h]
        removed = top_k_value(np.einsum("rnh,h->rn", swapped, w), value, mask, k) - utility
        est, low, high = _regret_share(removed, regret, W)
        rows.append({"head": head, "weight": float(w[h]), "regret_removed": float(removed.mean()),
                     "share_of_regret": est, "share_low": low, "share_high": high,
                     "intercept_shift": float(shifts[h]), "refitted": bool(np.isfinite(shifts[h])),
                     "platt_slope": float(slopes[h, 0]), "platt_intercept": float(slopes[h, 1]),
                     "mean_over_truth": float((report.prob[..., h] * mask).sum() / mask.sum() / truth_mean[h]),
                     "mean_over_truth_refitted": float((calibrated_prob[..., h] * mask).sum() / mask.sum()
                                                       / truth_mean[h])})
    return parts, pd.DataFrame(rows)


def _refit(fitting: ScoredSet, report: ScoredSet) -> tuple[np.ndarray, np.ndarray]:
    """Intercepts fitted on the fitting half's labels, applied to the report half's predictions."""
    _, shifts = recalibrated(fitting.prob, fitting.labels, fitting.requests.mask)
    return _shifted(report.prob, shifts), shifts


def calibration_ratios(scored: ScoredSet, n_resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Per head, the mean prediction over the mean true probability, with a user-level interval
    (1: calibrated in the large; below 1: the head under-predicts on this set)."""
    if scored.truth is None:
        raise StudyError("calibration ratios: the scored set needs true_prob.* columns")
    mask = scored.requests.mask
    W = stats.bootstrap_weights(scored.request_users(), n_resamples, seed)
    pred = (scored.prob * mask[..., None]).sum(axis=1)  # [R, H] per request sums
    true = (scored.truth * mask[..., None]).sum(axis=1)
    boot = (W @ pred) / (W @ true)  # [B, H]
    rows = []
    for h, head in enumerate(scored.heads):
        low, high = stats.interval(boot[:, h])
        rows.append({"head": head, "mean_over_truth": float(pred[:, h].sum() / true[:, h].sum()),
                     "low": low, "high": high})
    return pd.DataFrame(rows)


def by_budget(scored: ScoredSet, weights: np.ndarray, ks: list[int], pools: list[int], n_resamples: int = 1000,
              seed: int = 0) -> pd.DataFrame:
    """The model's regret and share of the oracle's gain over a random order, for every top-k size
    `ks` and candidate-pool size `pools` (the first n candidates of each request) with k < n. Where the
    scored set has the popularity oracle, also the model's share of the oracle's gain over it
    (`popularity_gain_share`) and the personal share of the budget (`personal_share`: 1 − popularity's
    share of the oracle's gain over random)."""
    width = scored.requests.mask.shape[1]
    if any(n < 2 or n > width for n in pools):
        raise StudyError(f"regret by budget: pool sizes must be in [2, {width}], got {pools}")
    rows, value = [], scored.true_value(np.asarray(weights, np.float64))
    model, users = scored.scores(weights), scored.request_users()
    popularity = {POPULARITY: scored.baseline_scores(weights)[POPULARITY]} if POPULARITY in scored.baselines else {}
    for n in pools:
        mask = scored.requests.mask & (np.arange(width) < n)
        rankings = {"model": model, **popularity, "random": random_scores(mask, seed)}
        for k in (k for k in ks if 1 <= k < n):
            summary, _ = feed_comparison(rankings, value, mask, users, k, n_resamples, seed)
            keep = summary[(summary["ranking"] == "model")
                           & summary["metric"].isin(["regret", "oracle_gain_share", "popularity_gain_share"])]
            rows += [{"pool": n, "k": k, **row} for row in keep.drop(columns="ranking").to_dict("records")]
            if popularity:
                rows.append({"pool": n, "k": k, "metric": "personal_share", **personal_share(summary)})
    return pd.DataFrame(rows)


def seed_feed_metrics(sets: dict[int, ScoredSet], weights: np.ndarray, k: int, seed: int = 0) -> pd.DataFrame:
    """sets: training seed -> the same requests scored by that seed's model. Rows (seed, metric, mean):
    each model's mean regret against the oracle and its share of the oracle's gain over the random
    order of `ranking.feed_comparison` (same seed, so the numbers match its table)."""
    rows = []
    for train_seed, scored in sets.items():
        mask, value = scored.requests.mask, scored.true_value(np.asarray(weights, np.float64))
        best, floor = top_k_value(value, value, mask, k), random_expectation(value, mask, k)  # the exact random floor
        utility = top_k_value(scored.scores(weights), value, mask, k)
        rows += [{"seed": train_seed, "metric": "regret", "mean": float((best - utility).mean())},
                 {"seed": train_seed, "metric": "oracle_gain_share",
                  "mean": float((utility - floor).sum() / (best - floor).sum())}]
    return pd.DataFrame(rows)


SEEDS_FOR_A_SEED_INTERVAL = 5  # fewer training seeds than this: the seed × user interval is marked indicative


def seed_user_intervals(sets: dict[int, ScoredSet], weights: np.ndarray, k: int, n_resamples: int,
                        seed: int = 0) -> pd.DataFrame:
    """sets: training seed -> the same requests scored by that seed's model. The feed's headline numbers as
    the mean over training seeds, with a two-stage bootstrap interval: each resample draws the seeds with
    replacement, then the users (a cluster bootstrap, the same users in every drawn seed: they are the
    same requests), and averages the drawn seeds' numbers. So the interval holds both the variance of
    training again and that of sampling users. Rows (metric, seeds, mean, low, high, indicative) for
    regret, oracle_gain_share and (where the sets have the popularity oracle) model_minus_popularity;
    with fewer than SEEDS_FOR_A_SEED_INTERVAL seeds the seed draw is coarse and the row says so."""
    seeds = sorted(sets)
    first = sets[seeds[0]]
    users = first.request_users()
    codes, n_users = stats.cluster_codes(users)
    w = np.asarray(weights, np.float64)
    per_user = {name: np.zeros((len(seeds), n_users)) for name in ("best", "utility", "floor", "popularity")}
    with_popularity = all(POPULARITY in sets[s].baselines for s in seeds)
    for i, s in enumerate(seeds):
        scored = sets[s]
        mask, value = scored.requests.mask, scored.true_value(w)
        arrays = {"best": top_k_value(value, value, mask, k), "utility": top_k_value(scored.scores(w), value, mask, k),
                  "floor": random_expectation(value, mask, k)}
        if with_popularity:
            arrays["popularity"] = top_k_value(scored.baseline_scores(w)[POPULARITY], value, mask, k)
        for name, per_request in arrays.items():
            per_user[name][i] = np.bincount(codes, per_request, n_users)
    requests = np.bincount(codes, minlength=n_users).astype(np.float64)
    user_weights = stats.bootstrap_weights(np.arange(n_users), n_resamples, seed)  # [B, users]: a cluster each
    drawn = np.random.default_rng([seed, 0x5EED]).integers(0, len(seeds), (n_resamples, len(seeds)))

    def metrics(totals: dict[str, np.ndarray], count: np.ndarray) -> dict[str, np.ndarray]:
        out = {"regret": (totals["best"] - totals["utility"]) / count,
               "oracle_gain_share": (totals["utility"] - totals["floor"]) / (totals["best"] - totals["floor"])}
        if with_popularity:
            out["model_minus_popularity"] = (totals["utility"] - totals["popularity"]) / count
        return out

    point = metrics({n: v.sum(1) for n, v in per_user.items()}, requests.sum())  # [seeds] each
    boot = metrics({n: user_weights @ v.T for n, v in per_user.items()},  # [B, seeds]
                   (user_weights @ requests)[:, None])
    rows = []
    for name, values in point.items():
        resampled = np.take_along_axis(boot[name], drawn, axis=1).mean(1)
        low, high = np.quantile(resampled, [0.025, 0.975])
        rows.append({"metric": name, "seeds": len(seeds), "mean": float(values.mean()), "low": float(low),
                     "high": float(high), "indicative": len(seeds) < SEEDS_FOR_A_SEED_INTERVAL})
    return pd.DataFrame(rows)


def across_seeds(per_seed: pd.DataFrame) -> pd.DataFrame:
    """per_seed: rows (seed, metric, mean) of one feed metric per training seed. Per metric: the
    mean over seeds, the seeds' standard deviation and a 95 % t-interval over seeds (the
    variance a reader would see by training again, which a bootstrap over users does not hold)."""
    rows = []
    for metric, group in per_seed.groupby("metric", sort=False):
        values = group["mean"].to_numpy(np.float64)
        n, mean = values.size, float(values.mean())
        sd = float(values.std(ddof=1)) if n > 1 else float("nan")
        half = float(scipy_stats.t.ppf(0.975, n - 1) * sd / np.sqrt(n)) if n > 1 else float("nan")
        rows.append({"metric": metric, "seeds": n, "mean": mean, "seed_sd": sd, "low": mean - half,
                     "high": mean + half, "min": float(values.min()), "max": float(values.max())})
    return pd.DataFrame(rows)


__all__ = ["SEEDS_FOR_A_SEED_INTERVAL", "across_seeds", "by_budget", "calibration_ratios", "decompose", "intercept_shift",
           "platt", "recalibrated",
           "seed_feed_metrics", "seed_user_intervals", "subset", "user_halves"]

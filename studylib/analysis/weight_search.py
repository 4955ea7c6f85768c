"""From sensitivity to decisions: the best weights for a model, the trade-off frontier they move
on, and Twitter's equal-contribution claim, all measured against the planted truth.

- **Best weights** (`best_weights`). The study's objective is the true value of each request's
  top k: the base weights applied to the *true* probabilities, summed over the k candidates a
  ranking shows. A weight vector only chooses the ranking (the model's stored per-head
  probabilities decide the order); the search finds the vector whose ranking maximises that
  objective on the requests of one half of the users (`regret.user_halves`) and reports the gain
  over the published weights on the other half, per request, with a user-level interval
  (`stats.paired_mean_difference`). Nothing of the report half is seen by the search.

  Optimiser: `scipy.optimize.differential_evolution`, seeded, `polish=False`, over the log of
  each weight's multiplier of its published value (bounds 1/bound to bound, signs kept as
  published, a weight of 0 kept at 0, the anchor head favorited fixed because a ranking does not change when every weight
  is multiplied by the same positive number). Why this one: the objective is a sum of top-k
  selections, piecewise constant in the weights, so gradient methods see zero gradients and
  Nelder–Mead stalls on the first plateau; differential evolution needs only function values,
  handles bounds, is deterministic for a fixed seed, and evaluates its whole population in one
  vectorised call (`vectorized=True`), which keeps it to a few seconds on the quick study. The
  published weights are put in the first population, and the search keeps them unless it finds a
  vector strictly better on the fitting half.

  Built-in check: the same search on the oracle's own probabilities. Ranking by the base weights
  on the true probabilities already maximises the objective in every request, so nothing can beat
  the published weights there: the oracle's gain is 0 (its interval contains 0) unless the search
  is broken.

  Each head's fitted change (log2 of fitted over published, relative to the anchor) is set beside
  how noisily the head is predicted (Pearson correlation of the predicted with the true
  probability over the fitting half's candidates): Milli, Pierson and Garg (2023) argue that a
  noisily predicted behaviour should get a smaller weight; here the truth says whether it does.

- **Frontier** (`frontier`, `frontier_points`). Positive engagement (the expected number of
  positive engagements: the sum of the eight positive heads' true probabilities over the top k)
  against negative engagement (reports + negative feedback, the same sum over the two negative
  heads). Traced by one family of scores, Σ positive probabilities − s · Σ negative probabilities,
  for negative scales s from 0 upwards. On the oracle's probabilities this scalarisation reaches
  the exact frontier's supported points (the best expected positive count at each expected
  negative count any top-k selection can have). On the model's probabilities the same family is one
  half of the model's frontier; the other half (`fitted_frontier`) re-fits the weights per point:
  for each of a coarser grid of s, `fit_weights` maximises the true Σ positive − s · Σ negative on
  one half of the users and ranks the other half with the result, then the halves swap
  (cross-fitting, no request ranked by weights fitted on its own user). That search does not depend
  on the base weights, so it is cached by its inputs and a weights-only re-score reads it back. The
  model's frontier is the better of the two at each negative count. A weight set's distance to a frontier is the positive engagements it gives up at its
  own negative count: the frontier's positive count there (linear between the frontier's
  non-dominated points) minus the set's. Intervals: user-level bootstrap, the frontier and the
  point recomputed on the same resamples.

- **Equal contribution** (`contribution_balance`): each head's average contribution
  |weight| × base rate as a share of the total, for a weight set under given base rates, and how far
  those shares are from equal (largest over smallest, and the largest share against 1/heads).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import differential_evolution
from scipy import stats as scipy_stats

from studylib import stats
from studylib.errors import StudyError
from studylib.analysis.ranking import POPULARITY, TOP_K, ScoredSet, top_k_overlap, top_k_value
from studylib.analysis.regret import subset, user_halves

NEGATIVE_HEADS = ("negative_feedback_v2", "report_tweet_clicked")  # short names; every other head is positive
ANCHOR = "favorited"  # the head whose weight the search holds fixed (a ranking is scale-free)
BOUND = 16.0  # each weight may move between published / BOUND and published × BOUND
NEGATIVE_SCALES = tuple([0.0] + list(np.geomspace(0.01, 1e4, 49)))  # the frontier's s grid
FITTED_SCALES = (0.0, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0)  # where weights are fitted per point


# ---------------------------------------------------------------- the best weights


def mean_top_k_value(prob: np.ndarray, value: np.ndarray, mask: np.ndarray, weight_sets: np.ndarray, k: int = TOP_K,
                     chunk: int = 64) -> np.ndarray:
    """weight_sets [S, H] -> [S]: the mean over requests of the true `value` ([R, n]) of the top k
    ranked by prob ([R, n, H]) · weights."""
    weight_sets = np.atleast_2d(np.asarray(weight_sets, np.float64))
    out = []
    for start in range(0, weight_sets.shape[0], chunk):
        scores = np.einsum("rnh,sh->srn", prob, weight_sets[start:start + chunk])
        out.append(top_k_value(scores, value[None], mask, k).mean(axis=-1))
    return np.concatenate(out)


def fit_weights(prob: np.ndarray, truth: np.ndarray, mask: np.ndarray, base: np.ndarray, k: int = TOP_K,
                anchor: int = 0, bound: float = BOUND, seed: int = 0, maxiter: int = 40, popsize: int = 8
                ) -> tuple[np.ndarray, dict]:
    """The weights that maximise the mean true value (base weights · truth) of each request's top k
    when the ranking is prob · weights, searched by differential evolution over log multipliers of
    `base` (signs kept, head `anchor` fixed; a head whose base weight is 0 stays at 0, since a
    multiplier cannot move it). Returns (weights [H], info: objective of the published and of the
    fitted weights on these requests, generations run, whether the published were kept)."""
    base = np.asarray(base, np.float64)
    if base[anchor] == 0:
        raise StudyError("weight search: the anchor head's weight must be non-zero")
    if not bound > 1:
        raise StudyError(f"weight search: bound must be > 1, got {bound}")
    value = np.einsum("rnh,h->rn", truth, base)
    free = np.array([h for h in range(base.size) if h != anchor and base[h] != 0], dtype=int)
    published = float(mean_top_k_value(prob, value, mask, base[None], k)[0])
    if free.size == 0:
        return base.copy(), {"fit_published": published, "fit_fitted": published, "generations": 0,
                             "kept_published": True}

    def weights_of(theta: np.ndarray) -> np.ndarray:  # theta [F, S] -> [S, H]
        multipliers = np.ones((theta.shape[1], base.size))
        multipliers[:, free] = np.exp(theta.T)
        return base[None] * multipliers

    def objective(theta: np.ndarray) -> np.ndarray:
        theta = theta.reshape(free.size, -1)
        return -mean_top_k_value(prob, value, mask, weights_of(theta), k)

    result = differential_evolution(objective, [(-np.log(bound), np.log(bound))] * free.size, maxiter=maxiter,
                                    popsize=popsize, rng=seed, polish=False, init="sobol", x0=np.zeros(free.size),
                                    vectorized=True, updating="deferred", tol=1e-6)
    fitted = weights_of(np.asarray(result.x)[:, None])[0]
    best = -float(result.fun)
    kept = not best > published + 1e-12 * max(1.0, abs(published))
    if kept:
        fitted, best = base.copy(), published
    return fitted, {"fit_published": published, "fit_fitted": best, "generations": int(result.nit),
                    "kept_published": kept}


def head_noise(prob: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """[H]: Pearson correlation of each head's predicted with its true probability over the valid
    candidates (1: predicted without noise; NaN where one of them is constant)."""
    p, t = prob[mask], truth[mask]
    with np.errstate(invalid="ignore", divide="ignore"):
        pc, tc = p - p.mean(axis=0), t - t.mean(axis=0)
        return (pc * tc).sum(axis=0) / np.sqrt((pc ** 2).sum(axis=0) * (tc ** 2).sum(axis=0))


def best_weights(scored: ScoredSet, base: np.ndarray, k: int = TOP_K, n_resamples: int = 1000, seed: int = 0,
                 bound: float = BOUND, maxiter: int = 40, popsize: int = 8) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The best weights for the model's and for the oracle's probabilities, fitted on one half of the
    users and judged on the other.

    Returns (gain, heads). `gain`: per scorer (model, oracle) the mean true value of the report half's
    top k under the published and the fitted weights, the gain (fitted − published, per request) with
    a 95 % user-level interval, the same gain on the fitting half, and the halves' sizes. `heads`: per
    head the published weight, the fitted weights of both scorers (anchor held at its published value),
    log2 of fitted over published, and the correlation of predicted with true probability on the
    fitting half (the head's noise)."""
    if scored.truth is None:
        raise StudyError("weight search: the scored set needs true_prob.* columns")
    base = np.asarray(base, np.float64)
    if not np.any(base != 0):
        raise StudyError("weight search: every base weight is 0; there is nothing to rank by")
    anchor = scored.heads.index(ANCHOR) if ANCHOR in scored.heads else 0
    if base[anchor] == 0:  # the first head with a weight holds the scale instead
        anchor = int(np.flatnonzero(base)[0])
    users = scored.request_users()
    fit_rows = user_halves(users, seed)
    if fit_rows.all() or not fit_rows.any():
        raise StudyError("weight search: needs at least two users to split into halves")
    fitting, report = subset(scored, fit_rows), subset(scored, ~fit_rows)
    rows, fitted = [], {}
    scorers = [("model", fitting, report), ("oracle", fitting.oracle(), report.oracle())]
    if POPULARITY in scored.baselines:  # does a gain need the personal signal, or would popularity get it too?
        scorers.append((POPULARITY, fitting.ranked_by(POPULARITY), report.ranked_by(POPULARITY)))
    for scorer, fit_set, report_set in scorers:
        w, info = fit_weights(fit_set.prob, fit_set.truth, fit_set.requests.mask, base, k, anchor, bound, seed, maxiter,
                              popsize)
        fitted[scorer] = w
        value = report_set.true_value(base)
        mask = report_set.requests.mask
        published = top_k_value(report_set.scores(base), value, mask, k)
        new = top_k_value(report_set.scores(w), value, mask, k)
        diff = stats.paired_mean_difference(new, published, users[~fit_rows], n_resamples, seed)
        oracle_best = top_k_value(value, value, mask, k)
        rows.append({"scorer": scorer, "published_value": float(published.mean()), "fitted_value": float(new.mean()),
                     "gain": diff["difference"], "low": diff["low"], "high": diff["high"],
                     "gain_pct": 100 * diff["difference"] / abs(float(published.mean())),
                     "oracle_value": float(oracle_best.mean()),
                     "regret_closed": (diff["difference"] / float((oracle_best - published).mean())
                                       if (oracle_best - published).mean() > 0 else np.nan),
                     "fit_gain": info["fit_fitted"] - info["fit_published"], "kept_published": info["kept_published"],
                     "generations": info["generations"], "fit_requests": int(fit_rows.sum()),
                     "report_requests": int((~fit_rows).sum()), "fit_users": int(np.unique(users[fit_rows]).size),
                     "report_users": int(np.unique(users[~fit_rows]).size), "k": k, "bound": bound})
    noise = head_noise(fitting.prob, fitting.truth, fitting.requests.mask)
    heads = pd.DataFrame({"head": list(scored.heads), "published": base,
                          **{f"fitted_{name}": w for name, w in fitted.items()},
                          **{f"log2_change_{name}": _log2_ratio(w, base) for name, w in fitted.items()},
                          "prediction_truth_correlation": noise, "anchor": [h == anchor for h in range(base.size)]})
    return pd.DataFrame(rows), heads


def _log2_ratio(fitted: np.ndarray, base: np.ndarray) -> np.ndarray:
    """log2(fitted / base) per head; NaN where the base weight is 0 (that head was not searched)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(base != 0, np.log2(np.abs(fitted) / np.abs(np.where(base != 0, base, 1.0))), np.nan)


def noise_relation(heads: pd.DataFrame) -> dict[str, float]:
    """Spearman correlation, over the heads other than the anchor, between a head's fitted change
    (log2_change_model) and how well it is predicted (prediction_truth_correlation): positive means
    the search moved weight away from the noisily predicted heads (Milli–Pierson–Garg)."""
    sub = heads[~heads["anchor"]].dropna(subset=["log2_change_model", "prediction_truth_correlation"])
    if len(sub) < 3 or sub["log2_change_model"].nunique() < 2:
        return {"spearman": np.nan, "p_value": np.nan, "heads": len(sub)}
    res = scipy_stats.spearmanr(sub["prediction_truth_correlation"], sub["log2_change_model"])
    return {"spearman": float(res.statistic), "p_value": float(res.pvalue), "heads": len(sub)}


# ---------------------------------------------------------------- the frontier


def _sides(heads: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    negative = np.array([h in NEGATIVE_HEADS for h in heads])
    if not negative.any() or negative.all():
        raise StudyError(f"frontier: needs positive and negative heads ({', '.join(NEGATIVE_HEADS)}), got {heads}")
    return ~negative, negative


def engagement_counts(scored: ScoredSet, scores: np.ndarray, k: int = TOP_K) -> tuple[np.ndarray, np.ndarray]:
    """scores [..., R, n] -> (positive, negative) [..., R]: the true expected number of positive and
    of negative engagements (reports + negative feedback) among each request's top k."""
    pos, neg = _sides(scored.heads)
    mask = scored.requests.mask
    return (top_k_value(scores, scored.truth[..., pos].sum(-1), mask, k),
            top_k_value(scores, scored.truth[..., neg].sum(-1), mask, k))


def frontier_weights(heads: tuple[str, ...], scales=NEGATIVE_SCALES) -> np.ndarray:
    """[S, H]: weight 1 on every positive head and −s on both negative heads, one row per scale s."""
    pos, neg = _sides(heads)
    return np.array([np.where(neg, -float(s), 1.0) for s in scales])


def _per_request_frontier(scored: ScoredSet, k: int, scales) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for scorer, source in (("model", scored), ("oracle", scored.oracle())):
        out[scorer] = engagement_counts(scored, source.scores(frontier_weights(scored.heads, scales)), k)  # [S, R]
    return out


def fitted_frontier(scored: ScoredSet, k: int = TOP_K, scales=FITTED_SCALES, seed: int = 0, maxiter: int = 20,
                    popsize: int = 8, bound: float = BOUND, cache_dir: str | Path | None = None
                    ) -> tuple[tuple[float, ...], np.ndarray, np.ndarray]:
    """The model's frontier with the weights fitted per point: for each scale s, `fit_weights` finds the
    weights (starting from 1 per positive head, −s per negative head) that maximise the true
    Σ positive − s · Σ negative of the top k on one half of the users, and they rank the other half;
    then the halves swap (cross-fitting), so every request is ranked by weights fitted without its
    user. Returns (scales, positive [S, R], negative [S, R]) per request.

    It does not depend on the base weights, so with `cache_dir` it is stored there keyed by the SHA-256
    of its inputs and settings, and a weights-only re-score reads it back instead of searching again."""
    if scored.truth is None:
        raise StudyError("frontier: the scored set needs true_prob.* columns")
    scales = tuple(float(x) for x in scales)
    users = scored.request_users()
    digest = hashlib.sha256()
    for part in (scored.prob, scored.truth, scored.requests.mask, np.asarray(users).astype(str)):
        digest.update(np.ascontiguousarray(part).tobytes())
    digest.update(repr((scored.heads, k, scales, seed, maxiter, popsize, bound)).encode())
    path = Path(cache_dir) / f"fitted_frontier-{digest.hexdigest()[:16]}.npz" if cache_dir is not None else None
    if path is not None and path.exists():
        stored = np.load(path)
        return scales, stored["positive"], stored["negative"]
    half = user_halves(users, seed)
    if half.all() or not half.any():
        raise StudyError("frontier: needs at least two users to split into halves")
    anchor = scored.heads.index(ANCHOR) if ANCHOR in scored.heads else int(np.flatnonzero(~_sides(scored.heads)[1])[0])
    positive = np.zeros((len(scales), half.size))
    negative = np.zeros_like(positive)
    for i, c in enumerate(frontier_weights(scored.heads, scales)):
        for rows in (half, ~half):
            fitting, other = subset(scored, rows), subset(scored, ~rows)
            w, _ = fit_weights(fitting.prob, fitting.truth, fitting.requests.mask, c, k, anchor, bound, seed, maxiter,
                               popsize)
            positive[i, ~rows], negative[i, ~rows] = engagement_counts(other, other.scores(w), k)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, positive=positive, negative=negative)
        tmp.replace(path)
    return scales, positive, negative


def frontier(scored: ScoredSet, k: int = TOP_K, scales=NEGATIVE_SCALES, fitted=None) -> pd.DataFrame:
    """Rows (scorer, negative_scale, positive, negative): the mean expected positive and negative
    engagements per top k when the model's (or the oracle's) probabilities are ranked by
    Σ positive − s · Σ negative, for every scale s; with `fitted` (`fitted_frontier`'s result) also
    the rows of scorer `model_fitted`."""
    if scored.truth is None:
        raise StudyError("frontier: the scored set needs true_prob.* columns")
    rows = []
    fronts = [(scorer, scales, pos, neg) for scorer, (pos, neg) in _per_request_frontier(scored, k, scales).items()]
    if fitted is not None:
        fronts.append(("model_fitted", *fitted))
    for scorer, grid, pos, neg in fronts:
        rows += [{"scorer": scorer, "negative_scale": float(s), "positive": float(p), "negative": float(n)}
                 for s, p, n in zip(grid, pos.mean(-1), neg.mean(-1))]
    return pd.DataFrame(rows)


def frontier_positive_at(negative: np.ndarray, front_neg: np.ndarray, front_pos: np.ndarray) -> np.ndarray:
    """The frontier's positive count at the given negative counts: linear between its non-dominated
    points (sorted by negative, keeping each point with more positive than every point with less
    negative); beyond its largest negative, its largest positive; NaN below its smallest negative."""
    order = np.lexsort((-front_pos, front_neg))
    x, y = front_neg[order], front_pos[order]
    keep = y > np.maximum.accumulate(np.r_[-np.inf, y[:-1]])
    return np.interp(negative, x[keep], y[keep], left=np.nan, right=y[keep].max())


def frontier_points(scored: ScoredSet, weight_sets: np.ndarray, names: list[str], k: int = TOP_K,
                    scales=NEGATIVE_SCALES, n_resamples: int = 1000, seed: int = 0, fitted=None) -> pd.DataFrame:
    """Each weight set ranked by the model's and by the oracle's probabilities: its mean expected
    positive and negative engagements per top k, and its distance to the oracle's and to the model's
    frontier (positive engagements given up at its own negative count), each with a 95 % user-level
    interval (frontier and point recomputed on the same resamples). With `fitted` (`fitted_frontier`'s
    result) the model's frontier is the better of its two families at each negative count: equal
    positive weights with scaled negative ones, and weights fitted per point."""
    if scored.truth is None:
        raise StudyError("frontier: the scored set needs true_prob.* columns")
    weight_sets = np.atleast_2d(np.asarray(weight_sets, np.float64))
    W = stats.bootstrap_weights(scored.request_users(), n_resamples, seed)
    total = W.sum(axis=1, keepdims=True)
    fronts = {name: (pos.mean(-1), neg.mean(-1), (W @ pos.T) / total, (W @ neg.T) / total)
              for name, (pos, neg) in _per_request_frontier(scored, k, scales).items()}
    if fitted is not None:  # the model's frontier: the best of both families of points
        _, pos, neg = fitted
        fp, fn, bp, bn = fronts["model"]
        fronts["model"] = (np.r_[fp, pos.mean(-1)], np.r_[fn, neg.mean(-1)], np.c_[bp, (W @ pos.T) / total],
                           np.c_[bn, (W @ neg.T) / total])
    rows = []
    for probabilities, source in (("model", scored), ("oracle", scored.oracle())):
        pos, neg = engagement_counts(scored, source.scores(weight_sets), k)  # [S, R]
        boot_pos, boot_neg = (W @ pos.T) / total, (W @ neg.T) / total  # [B, S]
        for i, name in enumerate(names):
            row = {"weights": name, "probabilities": probabilities, "positive": float(pos[i].mean()),
                   "negative": float(neg[i].mean())}
            row["positive_low"], row["positive_high"] = stats.interval(boot_pos[:, i])
            row["negative_low"], row["negative_high"] = stats.interval(boot_neg[:, i])
            for front, (fp, fn, bp, bn) in fronts.items():
                est = float(frontier_positive_at(np.array([row["negative"]]), fn, fp)[0] - row["positive"])
                boot = np.array([frontier_positive_at(boot_neg[b, i:i + 1], bn[b], bp[b])[0] for b in range(W.shape[0])])
                low, high = stats.interval(boot - boot_pos[:, i])
                row.update({f"to_{front}_frontier": est, f"to_{front}_frontier_low": low,
                            f"to_{front}_frontier_high": high})
            rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- equal contribution


def contribution_balance(weights: np.ndarray, rates: np.ndarray, heads: tuple[str, ...]) -> tuple[pd.DataFrame, dict]:
    """Each head's average contribution |weight| × base rate and its share of the total, under
    `rates` ([H]); with the summary: largest share, smallest share (among heads with a weight), largest
    over smallest, the heads weighted 0, and the largest share over the equal share 1/H (1: the claim
    of equal contributions holds exactly)."""
    weights, rates = np.asarray(weights, np.float64), np.asarray(rates, np.float64)
    contribution = np.abs(weights) * rates
    if not contribution.sum() > 0:
        raise StudyError("contribution balance: every weight (or rate) is 0")
    share = contribution / contribution.sum()
    table = pd.DataFrame({"head": list(heads), "weight": weights, "rate": rates, "contribution": contribution,
                          "share": share})
    weighted = np.flatnonzero(contribution > 0)
    top, low = int(np.argmax(share)), int(weighted[np.argmin(share[weighted])])
    summary = {"largest_head": heads[top], "largest_share": float(share[top]), "smallest_head": heads[low],
               "smallest_share": float(share[low]), "max_over_min": float(share[top] / share[low]),
               "zero_heads": int(len(heads) - weighted.size),
               "largest_over_equal": float(share[top] * len(heads)),
               "heads_within_2x": int(((share * len(heads) >= 0.5) & (share * len(heads) <= 2)).sum())}
    return table, summary


# March 2023's README weighted the two good-click heads by one term, 11 × the larger of their two
# predictions; a weight file is linear, so the `march_2023` preset reads it as good_click 11, good_click_v2 0.
MAX_RULE_HEADS = ("good_clicked_convo_desc_favorited_or_replied", "good_clicked_convo_desc_v2")


def max_rule_effect(scored: ScoredSet, base: np.ndarray, linear: np.ndarray, k: int = TOP_K,
                    n_resamples: int = 1000, seed: int = 0, pair: tuple[str, str] = MAX_RULE_HEADS) -> dict[str, float]:
    """What reading a max rule linearly changes. `linear` weights `pair[0]` by the rule's factor and
    `pair[1]` by 0; the published rule scores the factor × the larger of the two heads' predictions
    instead. Per request, with user-level 95 % intervals: the top-k overlap of the two rankings, the
    true value (the `base` weights on the true probabilities) of the rule's top k minus the linear
    reading's (`rule_gain`), the linear reading's loss against the base weights' own ranking
    (`linear_loss`), and the share of that loss the rule would win back (`share_recovered`)."""
    i, j = (scored.heads.index(h) for h in pair)
    linear = np.asarray(linear, np.float64)
    if linear[j] != 0:
        raise StudyError(f"max rule: the linear reading weights {pair[1]} by {linear[j]:g}; the rule's second head takes 0")
    rest = linear.copy()
    rest[i] = 0.0
    rule = scored.scores(rest) + linear[i] * np.maximum(scored.prob[..., i], scored.prob[..., j])
    read = scored.scores(linear)
    value, mask = scored.true_value(base), scored.requests.mask
    v_rule, v_read, v_base = (top_k_value(s, value, mask, k) for s in (rule, read, scored.scores(base)))
    overlap = top_k_overlap(rule, read, mask, k)
    W = stats.bootstrap_weights(scored.request_users(), n_resamples, seed)
    mean = lambda x: (W @ x) / W.sum(axis=1)  # noqa: E731  per resample
    gain, loss = v_rule - v_read, v_base - v_read
    out = {"k": int(k), "requests": int(v_rule.size), "factor": float(linear[i])}
    for name, x in (("overlap", overlap), ("rule_gain", gain), ("linear_loss", loss)):
        out[name] = float(x.mean())
        out[f"{name}_low"], out[f"{name}_high"] = stats.interval(mean(x))
    out["share_recovered"] = out["rule_gain"] / out["linear_loss"] if out["linear_loss"] > 0 else float("nan")
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = np.where(mean(loss) > 0, mean(gain) / mean(loss), np.nan)
    out["share_recovered_low"], out["share_recovered_high"] = stats.interval(shares)
    return out


def world_rates(scored: ScoredSet) -> np.ndarray:
    """[H]: each head's mean true probability over the set's candidates (the world's base rates)."""
    if scored.truth is None:
        raise StudyError("world rates: the scored set needs true_prob.* columns")
    return scored.truth[scored.requests.mask].mean(axis=0)


__all__ = ["ANCHOR", "BOUND", "FITTED_SCALES", "NEGATIVE_HEADS", "NEGATIVE_SCALES", "best_weights",
           "contribution_balance", "engagement_counts", "fit_weights", "fitted_frontier", "frontier", "frontier_points", "frontier_positive_at",
           "frontier_weights", "head_noise", "MAX_RULE_HEADS", "max_rule_effect", "mean_top_k_value", "noise_relation",
           "world_rates"]

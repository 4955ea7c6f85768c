"""How the feed moves when the weights move: one-at-a-time sweeps, tornado tables, global Sobol
indices (SALib) over all ten weights, and presets against the base weights as paired differences;
each on the model's and on the oracle's probabilities (`model_and_oracle`)."""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

from studylib import stats
from studylib.errors import StudyError
from studylib.analysis.ranking import (TOP_K, VALUE_HEADS, ScoredSet, random_expectation, ranking_metrics, summarize,
                                       top_k_value)


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


def tornado_table(sweep: pd.DataFrame, metric: str, low: float, high: float, base: float) -> pd.DataFrame:
    """Per head: the metric at factor `low` and `high` and its largest departure from the base
    feed's value `base` (|low − base| or |high − base|, whichever is larger), largest first.

    Ranked by departure, not by |high − low|: for a strong weight both ends move the feed and
    the swing between them can cancel (overlap 0.81 at ×0 and 0.82 at ×4 is a swing of 0.01).
    """
    lo = sweep[np.isclose(sweep["factor"], low)].set_index("head")[metric]
    hi = sweep[np.isclose(sweep["factor"], high)].set_index("head")[metric]
    out = pd.DataFrame({"low": lo, "high": hi})
    out["departure"] = np.maximum((out["low"] - base).abs(), (out["high"] - base).abs())
    return out.sort_values("departure", ascending=False, kind="stable").reset_index()


# ---------------------------------------------------------------- global sensitivity (Sobol)


def _tornado_resamples(scored: ScoredSet, base: np.ndarray, metric: str, low: float, high: float, k: int,
                       n_resamples: int, seed: int) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """The tornado's numbers on user-level bootstrap resamples: (head and factor of each weight set,
    the metric's mean per resample and weight set [B, 2H], the base feed's mean per resample [B])."""
    base = np.asarray(base, np.float64)
    sets, index = sweep_weight_sets(base, [low, high])
    per = ranking_metrics(scored, base, sets, k)[metric]  # [2H, R]
    at_base = ranking_metrics(scored, base, base[None], k)[metric][0]  # [R]
    W = stats.bootstrap_weights(scored.request_users(), n_resamples, seed)
    ok = np.isfinite(at_base) & np.isfinite(per).all(axis=0)
    W, per, at_base = W[:, ok], per[:, ok], at_base[ok]
    means = (W @ per.T) / W.sum(axis=1, keepdims=True)  # [B, 2H]
    base_mean = (W @ at_base) / W.sum(axis=1)
    return [scored.heads[i] for i in index["head_index"]], index["factor"].to_numpy(float), means, base_mean


def tornado_intervals(scored: ScoredSet, base: np.ndarray, metric: str, low: float, high: float, k: int = TOP_K,
                      n_resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Per head and end of the tornado (`low`, `high`): the 95 % user-level percentile interval of the
    metric's mean, the same resamples as `tornado_top_share` (columns head, factor, metric_low, metric_high)."""
    heads, factors, means, _ = _tornado_resamples(scored, base, metric, low, high, k, n_resamples, seed)
    lo, hi = np.percentile(means, [2.5, 97.5], axis=0)
    return pd.DataFrame({"head": heads, "factor": factors, "metric_low": lo, "metric_high": hi})


def tornado_top_share(scored: ScoredSet, base: np.ndarray, metric: str, low: float, high: float, k: int = TOP_K,
                      n_resamples: int = 1000, seed: int = 0, exclude: list[str] | tuple = ()) -> dict[str, float]:
    """The tornado's ordering with its noise: per head, the share of user-level bootstrap resamples in
    which it has the largest departure from the base feed (`tornado_table`'s rule on the resample's
    means); heads in `exclude` take no part."""
    heads, _, means, base_mean = _tornado_resamples(scored, base, metric, low, high, k, n_resamples, seed)
    names = [h for h in dict.fromkeys(heads) if h not in set(exclude)]
    departure = np.stack([np.abs(means[:, [i for i, h in enumerate(heads) if h == name]] - base_mean[:, None]).max(axis=1)
                          for name in names], axis=1)  # [B, heads]
    top = np.bincount(departure.argmax(axis=1), minlength=len(names)) / departure.shape[0]
    return {name: float(share) for name, share in zip(names, top)}


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
            # SALib seeds its bootstrap only for a truthy seed (0 means "unseeded"): shift by one so
            # that every seed, 0 included, gives the same intervals on every run.
            res = sobol_analyze.analyze(problem, np.nan_to_num(y, nan=np.nanmean(y)), calc_second_order=second_order,
                                        seed=int(seed) + 1, print_to_console=False)
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
    values = [name for name, head in VALUE_HEADS.items() if head in scored.heads]  # as ranking_metrics computes them
    outputs = ["kendall_tau", f"top{k}_overlap"] + ([*values, "utility"] if scored.truth is not None else [])

    def func(X: np.ndarray) -> np.ndarray:
        summary = summarize(ranking_metrics(scored, base, X * base[None], k))
        return summary[outputs].to_numpy()

    return sobol_analysis(list(scored.heads), [(lo, hi)] * len(scored.heads), func, outputs, n_base, seed)


def model_and_oracle(analyse: Callable[["ScoredSet"], pd.DataFrame], scored: ScoredSet) -> pd.DataFrame:
    """Run one analysis (a sweep, Sobol) on the model's and on the oracle's probabilities, stacked with a
    `probabilities` column: what the weights do to a perfect ranker beside what they do to this model."""
    return pd.concat([analyse(scored).assign(probabilities="model"),
                      analyse(scored.oracle()).assign(probabilities="oracle")], ignore_index=True)


def preset_differences(scored: ScoredSet, base: np.ndarray, weight_sets: np.ndarray, names: list[str],
                       k: int = TOP_K, n_resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Each weight set against the base weights on the same requests: per metric the mean over
    requests of (set − base), with a user-level cluster-bootstrap 95 % interval (paired design)."""
    sets = np.vstack([np.asarray(base, np.float64)[None], np.atleast_2d(weight_sets)])
    per = ranking_metrics(scored, base, sets, k)
    users = scored.request_users()
    rows = []
    for i, name in enumerate(names, start=1):
        for metric, values in per.items():
            out = stats.paired_mean_difference(values[i], values[0], users, n_resamples, seed)
            rows.append({"weights": name, "metric": metric, "mean": float(np.nanmean(values[i])),
                         "difference": out["difference"], "low": out["low"], "high": out["high"]})
    return pd.DataFrame(rows)


def own_objective_shares(scored: ScoredSet, weight_sets: np.ndarray, names: list[str], k: int = TOP_K,
                         n_resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Each weight set judged by its own objective: its weights applied to the true probabilities.

    Per set, the model's feed (ranked by the set on predicted probabilities) against the oracle's
    (the set on the true ones) and the exact random expectation, all valued by that set: the share
    of the oracle's gain over random that the model's feed reaches, with a user-level interval. A
    preset is then not marked down for ignoring another preset's objective (the paired comparison's
    yardstick is the base weights'). `n_resamples` 0: the shares alone, no interval."""
    mask, users = scored.requests.mask, scored.request_users()
    W = stats.bootstrap_weights(users, n_resamples, seed) if n_resamples else None
    rows = []
    for name, weights in zip(names, np.atleast_2d(np.asarray(weight_sets, np.float64))):
        value = scored.true_value(weights)
        model = top_k_value(scored.scores(weights), value, mask, k)
        best = top_k_value(value, value, mask, k)
        floor = random_expectation(value, mask, k)
        gained, possible = model - floor, best - floor
        low, high = stats.interval((W @ gained) / (W @ possible)) if W is not None else (np.nan, np.nan)
        rows.append({"weights": name, "model_value": float(model.mean()), "oracle_value": float(best.mean()),
                     "random_value": float(floor.mean()), "own_share": float(gained.sum() / possible.sum()),
                     "own_share_low": low, "own_share_high": high})
    return pd.DataFrame(rows)


def seed_replicates(seed_sets: dict[int, ScoredSet], base: np.ndarray, weight_sets: np.ndarray, names: list[str],
                    factors: list[float], sobol_range: tuple[float, float], sobol_n: int, k: int = TOP_K,
                    seed: int = 0, exclude: list[str] | tuple = ()) -> pd.DataFrame:
    """The weight analyses repeated on every training seed of the main model (one row per seed and
    quantity): what training the model again changes, beside the resampling noise of one model.

    Per seed: each preset's own-objective share (`own_objective_shares`) and its utility minus the
    base weights' (paired, per request), the tornado's top head for the top-k overlap, and the Sobol
    input with the largest total index for the utility and its ST (a `sobol_n` sample per seed).
    Heads in `exclude` (not evaluable) take no part in the orderings."""
    overlap = f"top{k}_overlap"
    low, high = 0.0, max(factors)
    rows = []
    for train_seed, scored in seed_sets.items():
        own = own_objective_shares(scored, weight_sets, names, k, n_resamples=0)  # the seeds are the replicates
        per = ranking_metrics(scored, base, np.vstack([np.asarray(base, np.float64)[None], weight_sets]), k)
        for i, r in own.iterrows():
            rows.append({"train_seed": train_seed, "quantity": "own_share", "name": r["weights"], "value": r["own_share"]})
            if "utility" in per:
                rows.append({"train_seed": train_seed, "quantity": "utility_vs_base", "name": r["weights"],
                             "value": float(np.nanmean(per["utility"][i + 1] - per["utility"][0]))})
        sweep = sensitivity_sweep(scored, base, [low, high], k)
        sweep = sweep[~sweep["head"].isin(exclude)]
        base_value = float(np.nanmean(per[overlap][0]))
        top = tornado_table(sweep, overlap, low, high, base_value).iloc[0]
        rows.append({"train_seed": train_seed, "quantity": "tornado_top_head", "name": top["head"],
                     "value": float(top["departure"])})
        if scored.truth is not None:
            sobol = weight_sobol(scored, base, sobol_range, sobol_n, seed, k)
            sobol = sobol[(sobol["output"] == "utility") & ~sobol["input"].isin(exclude)]
            lead = sobol.loc[sobol["ST"].idxmax()]
            rows.append({"train_seed": train_seed, "quantity": "sobol_utility_top", "name": lead["input"],
                         "value": float(lead["ST"])})
    return pd.DataFrame(rows)


__all__ = ["own_objective_shares", "seed_replicates", "model_and_oracle", "preset_differences", "sensitivity_sweep", "sobol_analysis", "sweep_weight_sets", "tornado_table", "tornado_top_share", "weight_sobol"]

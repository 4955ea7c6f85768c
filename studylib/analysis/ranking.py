"""Ranking metrics over requests, vectorized: each request's candidates in padded matrices.

Candidates are grouped per request (one user's feed request) into padded matrices
`[requests, slots]` with a validity mask, so every metric is computed for all requests at once:
Kendall's τ-b between two score vectors, the overlap of two top-k sets, the true expected value
of a top k (sum of the planted true probabilities of the k chosen candidates), NDCG@k and
per-request AUROC. Every ranking is judged beside the oracle (the same weights applied to the
planted true probabilities): true weighted utility of its top k, regret against the oracle's top
k, Kendall's τ with the oracle's order and NDCG@k (`feed_comparison`), with user-level intervals
from `studylib.stats`. Loops run over weight sets or heads, never over examples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from studylib import stats
from studylib.data.requests import Requests
from studylib.errors import StudyError

# Metrics reported for every weight set (top-10 true expected values use the planted truth).
TOP_K = 10
USER_COLUMN = "meta__user_id"
VALUE_HEADS = {  # report name -> short head name whose true probability is summed over the top k
    "expected_likes": "favorited",
    "expected_replies": "replied",
    "expected_reports": "report_tweet_clicked",
    "expected_negative_feedback": "negative_feedback_v2",
}


# ---------------------------------------------------------------- per-request matrices


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
    return _tau_against(a, *_pair_signs(b, mask))


def _pair_signs(b: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """sign(b_i − b_j) over each request's pairs i < j ([..., R, n(n−1)/2], int8, 0 off the valid
    pairs) and which pairs are valid: computed once for a base ranking many sets are compared with."""
    i, j = np.triu_indices(b.shape[-1], 1)  # each unordered pair once: half the work of the full matrix
    valid = mask[..., i] & mask[..., j]
    return (np.sign(b[..., i] - b[..., j]) * valid).astype(np.int8), valid


def _tau_against(a: np.ndarray, signs_b: np.ndarray, valid: np.ndarray) -> np.ndarray:
    i, j = np.triu_indices(a.shape[-1], 1)
    diff = a[..., i] - a[..., j]
    agree = diff * signs_b
    concordant_minus_discordant = (agree > 0).sum(axis=-1) - (agree < 0).sum(axis=-1)
    untied_a = ((diff != 0) & valid).sum(axis=-1)
    untied_b = (signs_b != 0).sum(axis=-1)
    den = np.sqrt((untied_a * untied_b).astype(np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, concordant_minus_discordant / np.where(den > 0, den, 1.0), np.nan)


def top_k_mask(score: np.ndarray, mask: np.ndarray, k: int = TOP_K) -> np.ndarray:
    """[..., R, n] bool: the k highest-scored valid candidates of each request (ties: lower slot first)."""
    order = np.argsort(-_masked(score, mask), axis=-1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(score.shape[-1]), axis=-1)
    return (rank < k) & mask


def top_k_overlap(a: np.ndarray, b: np.ndarray, mask: np.ndarray, k: int = TOP_K) -> np.ndarray:
    """Share of request's top k under `a` that is also in its top k under `b`: [..., R] in [0, 1]."""
    return _shared_share(top_k_mask(a, mask, k), top_k_mask(b, mask, k), mask, k)


def top_k_value(score: np.ndarray, values: np.ndarray, mask: np.ndarray, k: int = TOP_K) -> np.ndarray:
    """Sum of `values` ([R, n]: e.g. true like probabilities) over each request's top k: [..., R]."""
    return _value_in(top_k_mask(score, mask, k), values)


def _shared_share(top_a: np.ndarray, top_b: np.ndarray, mask: np.ndarray, k: int) -> np.ndarray:
    """Of two top-k masks, the share of the first's members also in the second's."""
    return (top_a & top_b).sum(axis=-1) / np.maximum(np.minimum(k, mask.sum(axis=-1)), 1)


def _value_in(top: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Sum of `values` over a top-k mask."""
    return np.where(top, np.nan_to_num(values), 0.0).sum(axis=-1)


def ndcg_at_k(score: np.ndarray, value: np.ndarray, mask: np.ndarray, k: int = TOP_K) -> np.ndarray:
    """NDCG@k of each request's ranking by `score` with `value` as relevance: [..., R].

    A weighted value can be negative (a likely report), and NDCG needs gains >= 0, so the gain
    is the value minus the request's smallest value: the worst candidate gains 0. NaN when every
    candidate of a request has the same value.
    """
    gain = np.where(mask, value - np.where(mask, value, np.inf).min(axis=-1, keepdims=True), 0.0)
    discount = 1.0 / np.log2(np.arange(score.shape[-1]) + 2.0)

    def dcg(order_by):
        order = np.argsort(-_masked(order_by, mask), axis=-1, kind="stable")[..., :k]
        return (np.take_along_axis(np.broadcast_to(gain, order_by.shape), order, axis=-1) * discount[:k]).sum(-1)

    ideal = dcg(np.broadcast_to(value, score.shape))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ideal > 0, dcg(score) / np.where(ideal > 0, ideal, 1.0), np.nan)


def gauc(score: np.ndarray, label: np.ndarray, mask: np.ndarray) -> tuple[float, int]:
    """Group AUROC: each request's own AUROC of `score` against `label` ([R, n]), averaged over
    the requests that have both classes, weighted by their number of candidates. Returns
    (GAUC, requests used); NaN when no request has both classes."""
    label = np.where(mask, label, 0).astype(bool)
    pos, neg = label & mask, ~label & mask
    diff = score[:, :, None] - score[:, None, :]
    pair = pos[:, :, None] & neg[:, None, :]
    wins = ((diff > 0) + 0.5 * (diff == 0)) * pair
    n_pairs = pair.sum(axis=(1, 2))
    used = n_pairs > 0
    if not used.any():
        return math.nan, 0
    per_request = wins.sum(axis=(1, 2))[used] / n_pairs[used]
    size = mask.sum(axis=1)[used]
    return float((per_request * size).sum() / size.sum()), int(used.sum())


def feed_metrics(score: np.ndarray, value: np.ndarray, mask: np.ndarray, k: int = TOP_K) -> dict[str, np.ndarray]:
    """Per request [R], a ranking by `score` judged by the true weighted `value` of its candidates:
    the true utility of its top k, the regret against the oracle's top k (ranked by `value`),
    Kendall's τ with the oracle's order and NDCG@k with the value as relevance."""
    utility = top_k_value(score, value, mask, k)
    return {"utility": utility, "regret": top_k_value(value, value, mask, k) - utility,
            "kendall_tau_oracle": kendall_tau(score, value, mask), f"ndcg@{k}": ndcg_at_k(score, value, mask, k)}


def random_scores(mask: np.ndarray, seed: int = 0) -> np.ndarray:
    """A seeded random ranking of every request (the floor any ranking should beat)."""
    return np.random.default_rng([int(seed), 0x5A11D]).random(mask.shape)


RANDOM_RANKING = "random"  # a ranking of this name is read at its exact expectation over shuffles (`random_expectation`)
POPULARITY = "popularity"  # the popularity oracle: the best ranking that ignores the user
POPULARITY_RANKINGS = (POPULARITY, "learned_popularity")


def random_expectation(value: np.ndarray, mask: np.ndarray, k: int = TOP_K) -> np.ndarray:
    """Per request [R], the exact expected true value of the top k of a uniformly random order: each
    candidate is in the top k with probability min(k, n) / n, so k / n of the request's total value."""
    n = mask.sum(axis=-1)
    total = np.where(mask, np.nan_to_num(value), 0.0).sum(axis=-1)
    return total * np.minimum(k, n) / np.maximum(n, 1)


def feed_comparison(rankings: dict[str, np.ndarray], value: np.ndarray, mask: np.ndarray, users: np.ndarray,
                    k: int = TOP_K, n_resamples: int = 1000, seed: int = 0, reference: str | None = None
                    ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rankings of the same requests (name -> score [R, n]) judged against the oracle.

    Returns (summary, paired): `summary` has per ranking and metric the mean over requests with
    a 95 % interval from a user-level cluster bootstrap (requests of one user move together);
    `paired` has every ranking minus `reference` on the same requests and resamples. The
    oracle's gain over a random ranking that each ranking captures is `oracle_gain_share`; where a
    ranking named `POPULARITY` is present, `popularity_gain_share` is the share of the oracle's gain
    over *that* ranking each one captures (negative: below popularity), and the popularity ranking's
    own `oracle_gain_share` is 1 − the personal share of the ranking's value. The random
    floor is the exact expectation over shuffles, not one shuffle: a ranking named `RANDOM_RANKING`
    has its utility and regret at that expectation and its Kendall's τ at 0 (NDCG@k stays its shuffle's).
    """
    if reference is not None and reference not in rankings:
        raise StudyError(f"feed_comparison: no ranking named {reference!r}")
    W = stats.bootstrap_weights(users, n_resamples, seed)
    per = {name: feed_metrics(score, value, mask, k) for name, score in rankings.items()}
    best = top_k_value(value, value, mask, k)
    floor = random_expectation(value, mask, k)
    if RANDOM_RANKING in per:
        per[RANDOM_RANKING] = {**per[RANDOM_RANKING], "utility": floor, "regret": best - floor,
                               "kendall_tau_oracle": np.where(mask.sum(axis=-1) > 1, 0.0, np.nan)}
    bases = {"oracle_gain_share": floor}
    if POPULARITY in per:
        bases["popularity_gain_share"] = per[POPULARITY]["utility"]
    rows, paired = [], []
    for name, metrics in per.items():
        metrics = {**metrics, **dict.fromkeys(bases)}
        for metric, values in metrics.items():
            if metric in bases:
                gained, possible = per[name]["utility"] - bases[metric], best - bases[metric]
                with np.errstate(invalid="ignore", divide="ignore"):  # NaN where the base is the oracle already
                    est = gained.sum() / possible.sum()
                    boot = (W @ gained) / (W @ possible)
            else:
                ok = np.isfinite(values)
                est = float(values[ok].mean())
                boot = (W[:, ok] @ values[ok]) / W[:, ok].sum(axis=1)
            low, high = stats.interval(boot)
            rows.append({"ranking": name, "metric": metric, "mean": float(est), "low": low, "high": high})
        if reference is not None and name != reference:
            for metric, values in metrics.items():
                if metric in bases:
                    continue
                diff = values - per[reference][metric]
                ok = np.isfinite(diff)
                boot = (W[:, ok] @ diff[ok]) / W[:, ok].sum(axis=1)
                low, high = stats.interval(boot)
                paired.append({"ranking": name, "reference": reference, "metric": metric,
                               "difference": float(diff[ok].mean()), "low": low, "high": high})
    return pd.DataFrame(rows), pd.DataFrame(paired)


def personal_share(summary: pd.DataFrame) -> dict[str, float]:
    """The personal share of the oracle's gain over a random order, from a `feed_comparison` summary
    that holds the popularity oracle: 1 − the share that ranking keeps, its interval flipped. The
    one place this is computed (chapter 1's share, the feed's finding, the budget curve)."""
    indexed = summary if isinstance(summary.index, pd.MultiIndex) else summary.set_index(["ranking", "metric"])
    kept = indexed.loc[(POPULARITY, "oracle_gain_share")]
    return {"mean": 1.0 - float(kept["mean"]), "low": 1.0 - float(kept["high"]), "high": 1.0 - float(kept["low"])}


def personal_shares(scored: ScoredSet, weight_sets: dict[str, np.ndarray], k: int = TOP_K, n_resamples: int = 1000,
                    seed: int = 0) -> pd.DataFrame:
    """How much of a feed's value depends on knowing the user, per weight set (name -> [H] weights):
    the personal share (oracle − popularity oracle) / (oracle − random) of the top k's true value,
    with a user-level 95 % interval, beside the three rankings' mean top-k values.

    It is 0 when the best ranking that ignores the user is as good as the oracle, 1 when such a
    ranking is no better than a random order."""
    if POPULARITY not in scored.baselines:
        raise StudyError("personal_shares: the scored set has no popularity oracle (popularity_prob.* columns)")
    mask, users = scored.requests.mask, scored.request_users()
    rows = []
    for name, weights in weight_sets.items():
        value = scored.true_value(weights)
        rankings = {"oracle": value, POPULARITY: scored.baseline_scores(weights)[POPULARITY],
                    RANDOM_RANKING: random_scores(mask, seed)}
        summary, _ = feed_comparison(rankings, value, mask, users, k, n_resamples, seed)
        at, share = summary.set_index(["ranking", "metric"]), personal_share(summary)
        rows.append({"weights": name, "personal_share": share["mean"], "personal_share_low": share["low"],
                     "personal_share_high": share["high"],
                     **{f"{r}_utility": float(at.loc[(r, "utility"), "mean"]) for r in rankings}})
    return pd.DataFrame(rows)


def models_beside_oracle(sets: dict[str, "ScoredSet"], weights: np.ndarray, k: int = TOP_K, n_resamples: int = 1000,
                         seed: int = 0, reference: str | None = None
                         ) -> tuple[dict[str, np.ndarray], pd.DataFrame, pd.DataFrame]:
    """Models scored on the same requests (name -> ScoredSet), each ranked by `weights`, beside the
    oracle (the same weights on the true probabilities) and a seeded random ranking.

    Returns (rankings, summary, paired): the rankings in order oracle, the models, the rankings that
    ignore the user (where the first set has them), random; the
    `feed_comparison` summary; every ranking minus `reference` (default: the first model) and
    minus the random ranking, on the same requests and resamples."""
    reference = reference or next(iter(sets))
    first = sets[reference]
    value = first.true_value(weights)
    mask, users = first.requests.mask, first.request_users()
    rankings = {"oracle": value, **{name: scored.scores(weights) for name, scored in sets.items()},
                **first.baseline_scores(weights), "random": random_scores(mask, seed)}
    summary, paired = feed_comparison(rankings, value, mask, users, k, n_resamples, seed, reference=reference)
    _, vs_random = feed_comparison(rankings, value, mask, users, k, n_resamples, seed, reference="random")
    return rankings, summary, pd.concat([paired, vs_random], ignore_index=True)


def head_gaucs(frame: pd.DataFrame, heads: tuple[str, ...]) -> pd.DataFrame:
    """Per head, the GAUC (mean AUROC within requests) of the model (`prob.*`), of the oracle
    (`true_prob.*`) and, where the table has them, of the rankings that ignore the user
    (`popularity_prob.*`, `learned_popularity_prob.*`) against the labels: columns head, gauc,
    oracle_gauc[, popularity_gauc, learned_popularity_gauc]. Within a request only the user's own
    preferences separate the model from popularity."""
    grouped = Requests.from_ids(frame["request_id"].to_numpy())
    scorers = {"gauc": "prob", "oracle_gauc": "true_prob",
               **{f"{name}_gauc": f"{name}_prob" for name in POPULARITY_RANKINGS if f"{name}_prob.{heads[0]}" in frame}}
    rows = [{"head": h, **{who: gauc(grouped.gather(frame[f"{prefix}.{h}"]), grouped.gather(frame[f"label.{h}"], 0),
                                     grouped.mask)[0]
                           for who, prefix in scorers.items()}}
            for h in heads]
    return pd.DataFrame(rows)


def cohort_scores(frame: pd.DataFrame, heads: tuple[str, ...], weights: np.ndarray, reference: str = "baseline",
                  n_resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Per cohort, the model's weighted score and the true weighted score (Σ weight × true
    probability) of the same candidates, with user-level inference (cohorts are per user).

    Rows per (cohort, target ∈ model/truth/model − truth): the cohort's mean over its users
    with a 95 % user-cluster interval, and its difference from the `reference` cohort
    (users are disjoint between cohorts, so the groups are independent).
    """
    for col in ("cohort", USER_COLUMN):
        if col not in frame:
            raise StudyError(f"cohort_scores: the scored table has no {col!r} column")
    P = frame[[f"prob.{h}" for h in heads]].to_numpy(np.float64)
    T = frame[[f"true_prob.{h}" for h in heads]].to_numpy(np.float64)
    w = np.asarray(weights, np.float64)
    targets = {"model": P @ w, "truth": T @ w}
    targets["model − truth"] = targets["model"] - targets["truth"]
    cohort, user = frame["cohort"].to_numpy(), frame[USER_COLUMN].to_numpy()
    if reference not in set(cohort):
        raise StudyError(f"cohort_scores: no cohort {reference!r} (have {sorted(set(cohort))})")
    rows = []
    for target, values in targets.items():
        ref = cohort == reference
        for c in pd.unique(cohort):
            rows_c = cohort == c
            mean, low, high = stats.mean_interval(values[rows_c], user[rows_c], n_resamples, seed)
            row = {"cohort": c, "target": target, "users": stats.cluster_codes(user[rows_c])[1],
                   "mean": mean, "low": low, "high": high}
            if c != reference:
                cmp = stats.compare_clusters(values[rows_c], user[rows_c], values[ref], user[ref], n_resamples, seed)
                row.update({"vs_reference": cmp["difference"], "vs_reference_low": cmp["difference_low"],
                            "vs_reference_high": cmp["difference_high"], "welch_p": cmp["welch_p"]})
            rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- a scored table, ready for analysis


@dataclass
class ScoredSet:
    """Per-head probabilities and planted truth of one scored data set, grouped per request."""

    heads: tuple[str, ...]  # short head names, column order of prob / truth
    requests: Requests
    prob: np.ndarray  # [R, n, H] predicted (calibrated) probabilities
    truth: np.ndarray | None  # [R, n, H] planted true probabilities
    cohort: np.ndarray | None  # [N] cohort per row (flat)
    user: np.ndarray | None = None  # [N] user id per row (flat)
    labels: np.ndarray | None = None  # [R, n, H] drawn labels (0 in padding), where the table has them
    # [R, n, H] probabilities of the rankings that ignore the user (`studylib.data.popularity`):
    # name ("popularity": the popularity oracle, "learned_popularity") -> values, where the table has them
    baselines: dict[str, np.ndarray] = field(default_factory=dict)

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
        user = frame[USER_COLUMN].to_numpy() if USER_COLUMN in frame else None
        labels = None
        if all(f"label.{h}" in frame for h in heads):
            labels = requests.gather(frame[[f"label.{h}" for h in heads]].to_numpy(np.float64), fill=0.0)
        baselines = {name: requests.gather(frame[[f"{name}_prob.{h}" for h in heads]].to_numpy(np.float64), fill=0.0)
                     for name in POPULARITY_RANKINGS if all(f"{name}_prob.{h}" in frame for h in heads)}
        return cls(tuple(heads), requests, prob, truth, cohort, user, labels, baselines)

    @classmethod
    def truth_only(cls, frame: pd.DataFrame, heads: tuple[str, ...]) -> "ScoredSet":
        """A data set's candidates with their planted truth (`true_prob.<head>`) and no model: scored by
        the truth itself, i.e. the oracle (chapter 1 describes the world before any model is trained)."""
        missing = [f"true_prob.{h}" for h in heads if f"true_prob.{h}" not in frame]
        if missing:
            raise StudyError(f"data table: missing column {missing[0]}")
        return cls.from_frame(frame.assign(**{f"prob.{h}": frame[f"true_prob.{h}"] for h in heads}), heads)

    def scores(self, weights: np.ndarray) -> np.ndarray:
        """weights [H] or [K, H] -> scores [R, n] or [K, R, n]."""
        weights = np.asarray(weights, dtype=np.float64)
        if weights.shape[-1] != len(self.heads):
            raise StudyError(f"analysis: {weights.shape[-1]} weights for {len(self.heads)} heads")
        return np.einsum("rnh,...h->...rn", self.prob, weights)

    def true_value(self, weights: np.ndarray) -> np.ndarray:
        """[R, n]: every candidate's true weighted value Σ weight × true probability (what a feed
        ranked by these weights tries to maximise)."""
        if self.truth is None:
            raise StudyError("analysis: this scored set has no planted truth (true_prob.* columns)")
        return np.einsum("rnh,h->rn", self.truth, np.asarray(weights, dtype=np.float64))

    def oracle(self) -> "ScoredSet":
        """The same candidates scored by their true probabilities: the best any model could rank."""
        if self.truth is None:
            raise StudyError("analysis: this scored set has no planted truth (true_prob.* columns)")
        return ScoredSet(self.heads, self.requests, self.truth, self.truth, self.cohort, self.user, self.labels,
                         self.baselines)

    def ranked_by(self, name: str) -> "ScoredSet":
        """The same candidates scored by one of the rankings that ignore the user (`baselines`)."""
        if name not in self.baselines:
            raise StudyError(f"analysis: this scored set has no {name} probabilities ({name}_prob.* columns)")
        return ScoredSet(self.heads, self.requests, self.baselines[name], self.truth, self.cohort, self.user,
                         self.labels, self.baselines)

    def baseline_scores(self, weights: np.ndarray) -> dict[str, np.ndarray]:
        """name -> [R, n]: each ranking that ignores the user, scored by the same weights."""
        weights = np.asarray(weights, dtype=np.float64)
        return {name: np.einsum("rnh,h->rn", values, weights) for name, values in self.baselines.items()}

    def request_users(self) -> np.ndarray:
        """[R]: the user of each request (the cluster for user-level resampling); the request id
        itself when the table has no user column."""
        if self.user is None:
            return self.requests.ids
        return self.user[self.requests.index[:, 0]]


def ranking_metrics(scored: ScoredSet, base_weights: np.ndarray, weight_sets: np.ndarray, k: int = TOP_K,
                    chunk: int = 16) -> dict[str, np.ndarray]:
    """Per-request ranking metrics of every weight set against the base weights.

    Returns arrays [K, R]: `kendall_tau`, `top10_overlap` and, with planted truth, the
    true expected value of each top k (`expected_likes`, ...), the true weighted utility of
    the top k under the *base* weights (`utility`) and its regret against the oracle's top k
    under the base weights (`regret`). Weight sets are processed
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
    if scored.truth is not None:
        value = scored.true_value(base_weights)
        best = top_k_value(value, value, mask, k)
        out["utility"], out["regret"] = [], []
    # What every set is compared with is computed once: the base ranking's pair signs and top k.
    base_signs, valid = _pair_signs(base, mask)
    base_top = top_k_mask(base, mask, k)
    for start in range(0, weight_sets.shape[0], chunk):
        s = scored.scores(weight_sets[start:start + chunk])  # [c, R, n]
        top = top_k_mask(s, mask, k)  # one sort per set serves every top-k metric
        out["kendall_tau"].append(_tau_against(s, base_signs, valid))
        out[f"top{k}_overlap"].append(_shared_share(top, base_top, mask, k))
        for name, col in value_cols.items():
            out[name].append(_value_in(top, scored.truth[..., col]))
        if scored.truth is not None:
            utility = _value_in(top, value)
            out["utility"].append(utility)
            out["regret"].append(best[None] - utility)
    return {name: np.concatenate(parts) for name, parts in out.items()}


def summarize(metrics: dict[str, np.ndarray]) -> pd.DataFrame:
    """[K, R] arrays -> one row per weight set: the mean over requests of every metric."""
    return pd.DataFrame({name: np.nanmean(values, axis=1) for name, values in metrics.items()})


__all__ = ["RANDOM_RANKING", "Requests", "ScoredSet", "TOP_K", "USER_COLUMN", "VALUE_HEADS", "cohort_scores", "feed_comparison", "feed_metrics", "gauc", "kendall_tau", "ndcg_at_k", "random_expectation", "random_scores", "ranking_metrics", "summarize", "top_k_mask", "top_k_overlap", "top_k_value"]

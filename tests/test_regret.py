"""Taking the model's regret apart: shift against error, head by head, by feed size, over seeds."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.special import expit, logit

from studylib.analysis import regret
from studylib.errors import StudyError
from studylib.analysis.ranking import ScoredSet
from studylib.data.requests import Requests

HEADS = ("like", "reply", "negative")
WEIGHTS = np.array([1.0, 5.0, -20.0])


def world(requests=1200, candidates=20, users=600, seed=0):
    """True probabilities per candidate and labels drawn from them; two requests per user."""
    rng = np.random.default_rng(seed)
    truth = expit(rng.normal([-1.5, -2.5, -2.5], 1.0, size=(requests, candidates, 3)))
    labels = (rng.random(truth.shape) < truth).astype(float)
    request_ids = np.repeat(np.arange(requests), candidates)
    user = np.repeat(np.arange(requests) % users, candidates)
    return truth, labels, request_ids, user


def scored_set(prob, truth, labels, request_ids, user):
    requests = Requests.from_ids(request_ids)
    flat = lambda a: a.reshape(-1, a.shape[-1])  # noqa: E731 (rows are already in request order)
    return ScoredSet(HEADS, requests, requests.gather(flat(prob)), requests.gather(flat(truth)), None, user,
                     requests.gather(flat(labels), fill=0.0))


def test_intercept_shift_solves_the_mean():
    prob = np.full(100, 0.1)
    assert regret.intercept_shift(prob, 0.2) == pytest.approx(logit(0.2) - logit(0.1), abs=1e-9)
    with pytest.raises(StudyError, match=r"positive rate must be in \(0, 1\)"):
        regret.intercept_shift(prob, 0.0)


def test_user_halves_keep_each_users_requests_together():
    users = np.repeat(np.arange(50), 3)
    fit = regret.user_halves(users, seed=3)
    assert fit.sum() == 25 * 3
    for u in range(50):
        assert len(set(fit[users == u])) == 1
    assert (regret.user_halves(users, seed=3) == fit).all()  # seeded


def test_the_oracle_has_no_regret_and_nothing_to_decompose():
    truth, labels, ids, user = world()
    parts, heads = regret.decompose(scored_set(truth, truth, labels, ids, user), WEIGHTS, k=5, n_resamples=200)
    assert parts.loc[parts["part"] == "regret of the model", "mean"].item() == 0
    assert (heads["regret_removed"] == 0).all()


def test_a_shifted_head_is_found_and_its_shift_removed_by_the_refit():
    truth, labels, ids, user = world()
    prob = truth.copy()
    prob[..., 2] = expit(logit(truth[..., 2]) - 1.5)  # the negative head under-predicts, as after a shift
    parts, heads = regret.decompose(scored_set(prob, truth, labels, ids, user), WEIGHTS, k=5, n_resamples=200)
    by = parts.set_index("part")
    assert by.loc["regret of the model", "low"] > 0
    share = by.loc["shift's share of the regret"]
    assert share["mean"] > 0.8 and share["low"] > 0.5  # re-fitting the intercept removes most of it
    neg = heads.set_index("head").loc["negative"]
    assert neg["share_of_regret"] == pytest.approx(1.0)  # swapping in the truth removes all of it
    assert neg["intercept_shift"] == pytest.approx(1.5, abs=0.15) and neg["refitted"]
    assert neg["mean_over_truth"] < 0.5 and neg["mean_over_truth_refitted"] == pytest.approx(1.0, abs=0.1)
    assert heads.set_index("head").loc[["like", "reply"], "regret_removed"].abs().max() == 0


def test_a_head_without_enough_positives_keeps_its_intercept():
    truth, labels, ids, user = world(requests=200, candidates=10, users=100)
    labels[..., 1] = 0.0
    labels[0, 0, 1] = 1.0  # one positive: no re-fit
    _, shifts = regret.recalibrated(truth, labels, np.ones(truth.shape[:2], bool))
    assert np.isnan(shifts[1]) and np.isfinite(shifts[0])


def test_calibration_ratio_is_mean_prediction_over_mean_truth():
    truth, labels, ids, user = world(requests=300, users=150)
    ratios = regret.calibration_ratios(scored_set(truth * 0.5, truth, labels, ids, user), n_resamples=100)
    assert ratios["mean_over_truth"].to_numpy() == pytest.approx(0.5)
    assert ((ratios["low"] <= 0.5 + 1e-12) & (ratios["high"] >= 0.5 - 1e-12)).all()


def test_budget_grid_covers_every_k_below_its_pool():
    truth, labels, ids, user = world(requests=300, users=150)
    grid = regret.by_budget(scored_set(truth, truth, labels, ids, user), WEIGHTS, [1, 5, 10], [5, 20],
                            n_resamples=100)
    assert sorted(set(zip(grid["pool"], grid["k"]))) == [(5, 1), (20, 1), (20, 5), (20, 10)]
    oracle = grid.set_index(["pool", "k", "metric"])["mean"]
    assert (oracle.xs("regret", level="metric") == 0).all()
    assert oracle.xs("oracle_gain_share", level="metric").to_numpy() == pytest.approx(1.0)
    with pytest.raises(StudyError, match="pool sizes must be in"):
        regret.by_budget(scored_set(truth, truth, labels, ids, user), WEIGHTS, [1], [30])


def test_across_seeds_gives_the_t_interval_over_seeds():
    values = np.array([5.0, 6.0, 7.5, 5.5, 6.5])
    table = regret.across_seeds(pd.DataFrame({"seed": range(5), "metric": "regret", "mean": values}))
    row = table.iloc[0]
    low, high = stats.t.interval(0.95, 4, loc=values.mean(), scale=stats.sem(values))
    assert row["seeds"] == 5 and row["mean"] == pytest.approx(values.mean())
    assert (row["low"], row["high"]) == pytest.approx((low, high))
    assert row["seed_sd"] == pytest.approx(values.std(ddof=1))


def test_seed_feed_metrics_match_the_feed_table():
    from studylib.analysis.ranking import feed_comparison, random_scores

    truth, labels, ids, user = world(requests=300, users=150)
    noisy = expit(logit(truth) + np.random.default_rng(1).normal(0, 1, truth.shape))
    sets = {0: scored_set(noisy, truth, labels, ids, user), 1: scored_set(truth, truth, labels, ids, user)}
    rows = regret.seed_feed_metrics(sets, WEIGHTS, k=5, seed=7).set_index(["seed", "metric"])["mean"]
    model = sets[0]
    summary, _ = feed_comparison({"model": model.scores(WEIGHTS), "random": random_scores(model.requests.mask, 7)},
                                 model.true_value(WEIGHTS), model.requests.mask, model.request_users(), 5, 50, 7)
    table = summary[summary["ranking"] == "model"].set_index("metric")["mean"]
    assert rows[(0, "regret")] == pytest.approx(table["regret"])
    assert rows[(0, "oracle_gain_share")] == pytest.approx(table["oracle_gain_share"])
    assert rows[(1, "regret")] == 0 and rows[(1, "oracle_gain_share")] == pytest.approx(1.0)


def test_the_seed_by_user_interval_holds_both_the_seeds_and_the_users_variance():
    truth, labels, ids, user = world(requests=400, users=200)
    rng = np.random.default_rng(3)
    # five "seeds": the same requests ranked by models of very different quality
    sets = {s: scored_set(expit(logit(truth) + rng.normal(0, noise, truth.shape)), truth, labels, ids, user)
            for s, noise in enumerate((0.2, 0.5, 1.0, 2.0, 3.0))}
    rows = regret.seed_user_intervals(sets, WEIGHTS, k=5, n_resamples=400, seed=1).set_index("metric")
    per_seed = regret.seed_feed_metrics(sets, WEIGHTS, k=5).set_index(["metric", "seed"])["mean"]
    regrets = per_seed.loc["regret"].to_numpy()
    r = rows.loc["regret"]
    assert r["seeds"] == 5 and not r["indicative"] and r["mean"] == pytest.approx(regrets.mean())
    assert r["low"] < r["mean"] < r["high"]
    # one seed's users-only interval is far narrower than the spread the seeds add
    one = regret.seed_user_intervals({0: sets[0], 1: sets[0]}, WEIGHTS, k=5, n_resamples=400, seed=1).set_index("metric")
    assert (one.loc["regret", "high"] - one.loc["regret", "low"]) < 0.5 * (r["high"] - r["low"])
    assert rows.loc["oracle_gain_share", "mean"] == pytest.approx(per_seed.loc["oracle_gain_share"].mean())
    assert "model_minus_popularity" not in rows.index  # these sets carry no popularity oracle
    few = regret.seed_user_intervals({0: sets[0], 1: sets[1], 2: sets[2]}, WEIGHTS, 5, 100, 1)
    assert few["indicative"].all() and regret.SEEDS_FOR_A_SEED_INTERVAL == 5


def test_platt_recovers_a_squeezed_head_that_an_intercept_cannot():
    """A head whose predictions are squeezed towards their mean (logit × 0.4) ranks candidates in the
    right order within the head but weighs it wrongly in the sum: the intercept-only re-fit leaves that
    error, Platt scaling (slope and intercept, fitted on the other half of the users) finds slope ≈ 2.5
    and removes it."""
    truth, labels, ids, user = world()
    prob = truth.copy()
    prob[..., 2] = expit(0.4 * logit(truth[..., 2]) - 1.5)
    params = regret.platt(prob, labels, np.ones(truth.shape[:2], bool))
    assert params[2, 0] == pytest.approx(2.5, rel=0.15) and params[0, 0] == pytest.approx(1.0, abs=0.1)
    parts, heads = regret.decompose(scored_set(prob, truth, labels, ids, user), WEIGHTS, k=5, n_resamples=200)
    by = parts.set_index("part")
    slopes = by.loc["removed by the slopes beyond the intercepts"]
    assert slopes["low"] > 0  # the slope removes regret the intercept left
    platt_regret = by.loc["regret after re-fitting each head's slope and intercept (Platt)", "mean"]
    assert platt_regret < 0.5 * by.loc["regret after re-fitting each head's intercept", "mean"]
    assert heads.set_index("head").loc["negative", "platt_slope"] == pytest.approx(2.5, rel=0.15)

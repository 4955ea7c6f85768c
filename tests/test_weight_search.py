"""The best weights, the frontier and the equal-contribution check, on constructed worlds whose
answers are known."""

import numpy as np
import pandas as pd
import pytest

from studylib.analysis import findings, weight_search
from studylib.analysis.ranking import ScoredSet
from studylib.data.requests import Requests

HEADS = ("favorited", "replied", "negative_feedback_v2", "report_tweet_clicked")
WEIGHTS = np.array([1.0, 4.0, -3.0, -20.0])


def world(requests=400, candidates=20, seed=0):
    rng = np.random.default_rng(seed)
    truth = rng.uniform(0, 1, size=(requests, candidates, len(HEADS))) * np.array([0.4, 0.2, 0.1, 0.01])
    return truth, np.repeat(np.arange(requests), candidates), np.repeat(np.arange(requests) // 2, candidates)


def scored_set(prob, truth, request_ids, user):
    requests = Requests.from_ids(request_ids)
    flat = lambda a: a.reshape(-1, a.shape[-1])  # noqa: E731 (rows are already in request order)
    return ScoredSet(HEADS, requests, requests.gather(flat(prob)), requests.gather(flat(truth)), None, user)


def noisy_model(truth, head=1, sd=0.5, seed=1):
    """The oracle with planted noise on one head: its predictions carry little of its truth."""
    prob = truth.copy()
    prob[..., head] = np.clip(truth[..., head] + np.random.default_rng(seed).normal(0, sd, truth.shape[:-1]), 0, 1)
    return prob


def test_the_search_finds_no_gain_on_the_oracle():
    truth, ids, user = world()
    gain, heads = weight_search.best_weights(scored_set(truth, truth, ids, user), WEIGHTS, k=5, n_resamples=200,
                                             maxiter=15)
    for scorer in ("model", "oracle"):  # here the "model" is the oracle too
        row = gain.set_index("scorer").loc[scorer]
        assert row["low"] <= 0 <= row["high"]
        assert row["gain"] == pytest.approx(0, abs=1e-12)
        assert row["kept_published"]
    assert np.allclose(heads["fitted_oracle"], WEIGHTS)


def test_the_search_recovers_a_planted_improvement_and_shrinks_the_noisy_head():
    truth, ids, user = world()
    scored = scored_set(noisy_model(truth), truth, ids, user)
    gain, heads = weight_search.best_weights(scored, WEIGHTS, k=5, n_resamples=200, maxiter=15)
    model = gain.set_index("scorer").loc["model"]
    assert model["low"] > 0  # judged on users the search never saw
    assert 0 < model["regret_closed"] <= 1
    noisy = heads.set_index("head").loc["replied"]
    assert noisy["log2_change_model"] < -1  # its weight falls by more than half against the anchor
    assert noisy["prediction_truth_correlation"] < heads.set_index("head").loc["favorited", "prediction_truth_correlation"]
    oracle = gain.set_index("scorer").loc["oracle"]
    assert oracle["low"] <= 0 <= oracle["high"]


def test_the_search_is_deterministic():
    truth, ids, user = world(requests=120)
    scored = scored_set(noisy_model(truth), truth, ids, user)
    a = weight_search.best_weights(scored, WEIGHTS, k=5, n_resamples=50, maxiter=5)
    b = weight_search.best_weights(scored, WEIGHTS, k=5, n_resamples=50, maxiter=5)
    pd.testing.assert_frame_equal(a[1], b[1])
    pd.testing.assert_frame_equal(a[0], b[0])


def test_the_oracle_frontier_bounds_every_weight_set():
    truth, ids, user = world(requests=200)
    scored = scored_set(noisy_model(truth), truth, ids, user)
    front = weight_search.frontier(scored, k=5)
    oracle = front[front["scorer"] == "oracle"].sort_values("negative_scale")
    # more weight on the negative side: fewer negative and fewer positive engagements
    assert (np.diff(oracle["negative"]) <= 1e-12).all() and (np.diff(oracle["positive"]) <= 1e-12).all()
    sets = np.array([WEIGHTS, [1.0, 1.0, -1.0, -1.0], [1.0, 0.0, 0.0, 0.0]])
    points = weight_search.frontier_points(scored, sets, ["a", "count", "likes"], k=5, n_resamples=100)
    assert (points["to_oracle_frontier"].dropna() >= -1e-9).all()
    on = points[(points["weights"] == "count") & (points["probabilities"] == "oracle")].iloc[0]
    assert on["to_oracle_frontier"] == pytest.approx(0, abs=1e-9)  # the frontier's own s = 1 point
    off = points[(points["weights"] == "a") & (points["probabilities"] == "model")].iloc[0]
    assert off["to_oracle_frontier_low"] > 0  # the noisy model is off the oracle's frontier


def test_frontier_interpolation_keeps_non_dominated_points():
    neg, pos = np.array([0.1, 0.2, 0.3, 0.25]), np.array([1.0, 2.0, 3.0, 1.5])
    got = weight_search.frontier_positive_at(np.array([0.05, 0.15, 0.3, 0.9]), neg, pos)
    assert np.isnan(got[0]) and got[1] == pytest.approx(1.5) and got[2] == 3.0 and got[3] == 3.0


def test_contribution_balance():
    table, summary = weight_search.contribution_balance(np.array([1.0, -2.0]), np.array([0.2, 0.1]), ("a", "b"))
    assert summary["max_over_min"] == pytest.approx(1.0) and summary["largest_over_equal"] == pytest.approx(1.0)
    table, summary = weight_search.contribution_balance(np.array([3.0, 1.0]), np.array([0.1, 0.1]), ("a", "b"))
    assert summary["largest_head"] == "a" and summary["max_over_min"] == pytest.approx(3.0)
    assert table["share"].sum() == pytest.approx(1.0)
    _, summary = weight_search.contribution_balance(np.array([3.0, 1.0, 0.0]), np.array([0.1, 0.1, 0.1]), ("a", "b", "c"))
    assert summary["smallest_head"] == "b" and summary["max_over_min"] == pytest.approx(3.0) and summary["zero_heads"] == 1


def test_findings_state_the_numbers():
    truth, ids, user = world(requests=200)
    scored = scored_set(noisy_model(truth), truth, ids, user)
    gain, heads = weight_search.best_weights(scored, WEIGHTS, k=5, n_resamples=100, maxiter=10)
    f = findings.optimal_weights_gain(gain, heads, weight_search.noise_relation(heads), "base", 5)
    assert f.id == "optimal_weights_gain" and f.numbers["oracle_gain_low"] <= 0 <= f.numbers["oracle_gain_high"]
    assert f"{f.numbers['model_gain']:.3g}" in f.text
    sets = np.array([WEIGHTS, [1.0, 1.0, -1.0, -1.0]])
    points = weight_search.frontier_points(scored, sets, ["base", "equal_contribution"], k=5, n_resamples=100)
    f = findings.frontier_distance(points, "base", 5)
    assert f.id == "frontier_distance" and "base_model_to_oracle_frontier_low" in f.numbers
    _, balance = weight_search.contribution_balance(WEIGHTS, np.array([0.2, 0.1, 0.05, 0.005]), HEADS)
    f = findings.equal_contribution_claim(balance, balance, points, gain_vs_base=None, base="base")
    assert f.id == "equal_contribution_claim" and f"{balance['max_over_min']:.3g}" in f.text


def test_a_zero_weight_stays_zero_and_a_zero_anchor_hands_over():
    truth, ids, user = world(requests=120)
    scored = scored_set(noisy_model(truth), truth, ids, user)
    base = np.array([0.0, 4.0, -3.0, 0.0])  # favorited and report switched off
    gain, heads = weight_search.best_weights(scored, base, k=5, n_resamples=50, maxiter=5)
    h = heads.set_index("head")
    assert h.loc["favorited", "fitted_model"] == 0 and h.loc["report_tweet_clicked", "fitted_model"] == 0
    assert h.loc["replied", "anchor"] and h.loc["replied", "fitted_model"] == 4.0
    assert np.isnan(h.loc["favorited", "log2_change_model"])
    f = findings.optimal_weights_gain(gain, heads, weight_search.noise_relation(heads), "base", 5)
    assert "Relative to replied" in f.text


def test_the_fitted_frontier_is_cross_fitted_and_cached(tmp_path, monkeypatch):
    truth, ids, user = world(requests=120)
    scored = scored_set(noisy_model(truth), truth, ids, user)
    scales, pos, neg = weight_search.fitted_frontier(scored, 5, scales=(0.0, 10.0), maxiter=3, cache_dir=tmp_path)
    assert pos.shape == neg.shape == (2, scored.requests.n_requests) and len(list(tmp_path.glob("*.npz"))) == 1
    assert neg[1].mean() <= neg[0].mean()  # weighting the negative heads lowers the negative count
    monkeypatch.setattr(weight_search, "fit_weights", lambda *a, **k: (_ for _ in ()).throw(AssertionError("searched")))
    again = weight_search.fitted_frontier(scored, 5, scales=(0.0, 10.0), maxiter=3, cache_dir=tmp_path)
    assert np.array_equal(again[1], pos) and np.array_equal(again[2], neg)  # read back, not searched again
    points = weight_search.frontier_points(scored, WEIGHTS[None], ["a"], k=5, n_resamples=50, fitted=(scales, pos, neg))
    plain = weight_search.frontier_points(scored, WEIGHTS[None], ["a"], k=5, n_resamples=50)
    model = lambda t: t[t["probabilities"] == "model"].iloc[0]["to_model_frontier"]  # noqa: E731
    assert model(points) >= model(plain) - 1e-12  # the better of two families is at least as far out
    front = weight_search.frontier(scored, 5, fitted=(scales, pos, neg))
    assert set(front["scorer"]) == {"model", "oracle", "model_fitted"}


def test_the_search_runs_on_the_popularity_oracle_when_the_set_has_it():
    """Beside the model and the oracle: the same search on a ranking that ignores the user. Here it is
    each candidate slot's truth averaged over all requests, the same for every request, so it ranks
    below the oracle."""
    truth, ids, user = world()
    scored = scored_set(noisy_model(truth), truth, ids, user)
    requests = scored.requests
    average = np.broadcast_to(truth.mean(axis=0, keepdims=True), truth.shape)  # one value per slot: no personal part
    scored.baselines["popularity"] = requests.gather(average.reshape(-1, len(HEADS)))
    gain, heads = weight_search.best_weights(scored, WEIGHTS, k=5, n_resamples=200, maxiter=15)
    rows = gain.set_index("scorer")
    assert list(rows.index) == ["model", "oracle", "popularity"]
    assert rows.loc["popularity", "published_value"] < rows.loc["oracle", "published_value"]
    assert {"fitted_popularity", "log2_change_popularity"} <= set(heads)
    f = findings.optimal_weights_gain(gain, heads, weight_search.noise_relation(heads), "april_2023", 5)
    assert f.numbers["popularity_published_value"] == pytest.approx(rows.loc["popularity", "published_value"])
    assert "Ranked by the popularity oracle (no personal signal) the `april_2023` weights carry" in f.text

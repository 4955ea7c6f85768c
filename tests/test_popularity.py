"""The personal part of the world, and the two rankings that ignore the user beside the oracle."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import SMALL_WORLD, small_params
from studylib.analysis import ranking
from studylib.data.generate import generate
from studylib.data.popularity import learned_rates, oracle_probabilities
from studylib.data.reader import load_table
from studylib.data.world import ROOTS, World, WorldParams, cohort_scale
from studylib.errors import StudyError
from studylib.ranker.weights import HEADS, load_weights
from studylib.schema import LABELS

WORLD = dict(n_users=300, n_authors=60, n_tweets=2000, rate_scale=20.0, seed=3)
K = 4  # top 4 of 12 candidates


def _requests(world: World, n_requests=300, candidates=12, seed=0):
    rng = np.random.default_rng(seed)
    users = np.repeat(rng.choice(world.params.n_users, n_requests, p=world.user_activity), candidates)
    tweets = rng.choice(world.params.n_tweets, n_requests * candidates, p=world.tweet_popularity)
    return users, tweets


def _scored(world: World, users, tweets, candidates=12) -> ranking.ScoredSet:
    """A ScoredSet of the world's truth and its popularity oracle (no model)."""
    truth, pop = world.true_probabilities(users, tweets), world.popularity_probabilities(tweets)
    frame = pd.DataFrame({"request_id": np.arange(users.size) // candidates, "meta__user_id": users,
                          **{f"true_prob.{h}": truth[h] for h in HEADS},
                          **{f"popularity_prob.{h}": pop[h] for h in HEADS}})
    return ranking.ScoredSet.truth_only(frame, tuple(HEADS))


@pytest.mark.parametrize("pair_variance", [0.0, 0.5, 1.0])
def test_pair_variance_moves_the_split_not_the_spread(pair_variance):
    world = World(WorldParams(**WORLD, pair_variance=pair_variance))
    rng = np.random.default_rng(1)
    users, tweets = rng.integers(0, 300, 40_000), rng.integers(0, 2000, 40_000)
    inter = world._interactions(users, tweets).astype(np.float64)
    k = world.params.latent_dim
    spread, share = [], []
    for label in LABELS:
        w = world.label_weights[label].astype(np.float64)
        total = inter @ w * world.params.signal
        spread.append(total.std() / world.params.signal)
        share.append((inter[:, 3 * k:] @ w[3 * k:]).var() / (inter @ w).var())
    # Exact in expectation over latent draws; one world's 300 users and 60 authors deviate a little.
    assert np.mean(spread) == pytest.approx(1.0, abs=0.05) and np.ptp(spread) < 0.3
    assert np.mean(share) == pytest.approx(pair_variance, abs=0.05) and np.ptp(share) < 0.25
    # the label biases are re-fitted: the base rates do not move with the split
    assert max(abs(world.mean_rates()[l] / world.targets()[l][0] - 1) for l in LABELS) < 1e-6


def test_pair_variance_is_checked():
    with pytest.raises(StudyError, match="pair_variance must be in \\[0, 1\\]"):
        WorldParams(pair_variance=1.5).validate()
    with pytest.raises(StudyError, match="pair_variance must be a number"):
        WorldParams.from_record({"pair_variance": "0.5"}, "manifest.json")


@pytest.mark.parametrize("cohorts", [False, True])
def test_popularity_oracle_is_the_activity_weighted_average_over_users(cohorts):
    world = World(WorldParams(**WORLD))
    tweets = np.array([0, 17, 17, 1999])
    got = world.popularity_probabilities(tweets, cohorts=cohorts, chunk=3)
    users = np.arange(300)
    for i, t in enumerate(tweets):  # by hand: every user's truth for this tweet, averaged by activity
        scale = cohort_scale(world.cohort_of_user) if cohorts else None
        truth = world.true_probabilities(users, np.full(300, t), cohort_scale=scale)
        for label in LABELS:
            assert got[label][i] == pytest.approx(float(world.user_activity @ truth[label]), rel=1e-4)


def test_without_a_personal_part_popularity_ranks_every_head_as_the_oracle():
    world = World(WorldParams(**WORLD, pair_variance=0.0))
    scored = _scored(world, *_requests(world))
    roots = {h: np.eye(len(HEADS))[i] for i, h in enumerate(HEADS) if h in ROOTS}
    shares = ranking.personal_shares(scored, roots, K, n_resamples=50)
    # a root label's logit is user part + tweet part: the average over users orders tweets the same way
    assert len(shares) == 7
    np.testing.assert_allclose(shares["personal_share"], 0.0, atol=1e-9)


def test_personal_share_grows_with_the_personal_part():
    april = {"april_2023": load_weights("april_2023").vector(HEADS)}
    found = []
    for pair_variance in (0.0, 0.5, 1.0):
        world = World(WorldParams(**WORLD, pair_variance=pair_variance))
        found.append(ranking.personal_shares(_scored(world, *_requests(world)), april, K, n_resamples=200).iloc[0])
    shares = [row["personal_share"] for row in found]
    assert shares[0] < 0.1 < shares[1] < shares[2]  # a weighted mix of heads is nearly popularity at 0
    assert shares[2] > 0.5  # all personal: popularity keeps less than half of the oracle's gain
    for row in found:  # the interval holds the estimate, and the oracle >= popularity >= random
        assert row["personal_share_low"] <= row["personal_share"] <= row["personal_share_high"]
        assert row["oracle_utility"] >= row["popularity_utility"] >= row["random_utility"]


def test_feed_comparison_measures_the_model_over_popularity():
    world = World(WorldParams(**WORLD))
    scored = _scored(world, *_requests(world))
    w = load_weights("april_2023").vector(HEADS)
    value = scored.true_value(w)
    mask, users = scored.requests.mask, scored.request_users()
    rankings = {"oracle": value, **scored.baseline_scores(w), "random": ranking.random_scores(mask)}
    summary, paired = ranking.feed_comparison(rankings, value, mask, users, K, 100, reference=ranking.POPULARITY)
    share = summary.set_index(["ranking", "metric"])["mean"]
    assert share[("oracle", "popularity_gain_share")] == pytest.approx(1.0)
    assert share[("popularity", "popularity_gain_share")] == pytest.approx(0.0)
    assert share[("random", "popularity_gain_share")] < 0
    oracle_minus_pop = paired[(paired["ranking"] == "oracle") & (paired["metric"] == "utility")].iloc[0]
    assert oracle_minus_pop["low"] > 0  # half the logit variance personal: the oracle is clearly ahead


def test_learned_popularity_shrinks_each_tweet_to_its_author(tmp_path):
    out = tmp_path / "train"
    generate(small_params("planted", examples=3000), out, progress=False)
    table = load_table(out).to_pandas()
    tweets, authors = table["meta.tweet_id"].to_numpy(), table["meta.author_id"].to_numpy()
    label = "recap.engagement.is_favorited"
    never_seen = np.setdiff1d(np.arange(SMALL_WORLD["n_tweets"]), tweets)[:1]
    author_of = World(small_params().world).author_of_tweet
    ask_t = np.concatenate([tweets[:5], never_seen])
    ask_a = np.concatenate([authors[:5], author_of[never_seen]])
    got = learned_rates(out, ask_t, ask_a, prior=10.0)[label]
    overall = table[label].mean()
    by_author = table.groupby("meta.author_id")[label].agg(["sum", "count"])
    by_tweet = table.groupby("meta.tweet_id")[label].agg(["sum", "count"])
    for i, (t, a) in enumerate(zip(ask_t, ask_a)):  # by hand, one tweet at a time
        author_rate = (by_author["sum"].get(a, 0) + 10 * overall) / (by_author["count"].get(a, 0) + 10)
        want = (by_tweet["sum"].get(t, 0) + 10 * author_rate) / (by_tweet["count"].get(t, 0) + 10)
        assert got[i] == pytest.approx(want)
    assert by_tweet["count"].get(never_seen[0], 0) == 0  # the unseen tweet got its author's rate
    with pytest.raises(StudyError, match="prior must be > 0"):
        learned_rates(out, ask_t, ask_a, prior=0.0)
    # the popularity oracle of the set reads its world from the manifest
    pop = oracle_probabilities(out, ask_t)
    world = World(small_params().world)
    direct = world.popularity_probabilities(ask_t)
    np.testing.assert_allclose(pop[label], direct[label])


def _share_rows(low, share, high):
    return pd.DataFrame([{"weights": "april_2023", "personal_share": share, "personal_share_low": low,
                          "personal_share_high": high, "oracle_utility": 100.0, "popularity_utility": 60.0,
                          "random_utility": 0.0},
                         {"weights": "favorited", "personal_share": 0.5, "personal_share_low": 0.4,
                          "personal_share_high": 0.6, "oracle_utility": 4.0, "popularity_utility": 3.0,
                          "random_utility": 2.0}])


@pytest.mark.parametrize("interval, verdict", [((0.45, 0.48, 0.52), "partly personal"),
                                               ((0.55, 0.6, 0.65), "mostly personal"),
                                               ((0.05, 0.06, 0.07), "mostly popularity"),
                                               ((0.2, 0.27, 0.34), "unresolved")])
def test_the_personal_signal_finding_reads_its_interval_against_the_aim(interval, verdict):
    from studylib.analysis import findings

    f = findings.personal_signal(_share_rows(*interval), "april_2023", 0.6, 10, 200)
    assert f.verdict == verdict and f.chapter == "01_generate"
    assert f.numbers["personal_share"] == interval[1] and f.numbers["most_personal_head"] == "favorited"
    assert f"{100 * interval[1]:.0f} % (95 % CI {100 * interval[0]:.0f} to {100 * interval[2]:.0f})" in f.text
    # the share is >= 0 by construction: it is no test of the page plan
    assert findings.decisions({"id": "personal_signal", "numbers": f.numbers}) == []


def test_the_world_table_marks_verdicts_that_differ_from_the_default_world():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "world_effect", Path(__file__).resolve().parents[1] / "benchmarks" / "world_effect.py")
    world_effect = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(world_effect)
    found = lambda verdict, share: {"personal_signal": {"verdict": verdict, "numbers": {"personal_share": share}}}  # noqa: E731
    worlds = {"default": {"minutes": 7.0, "findings": found("partly personal", 0.48)},
              "pair_0.04": {"minutes": 6.5, "findings": found("mostly popularity", 0.06)}}
    text = world_effect.table(worlds)
    assert "| personal share of the top-k value (chapter 1) | 0.48 | 0.06 |" in text
    assert "| `personal_signal` | partly personal | **mostly popularity** |" in text
    assert "| minutes (this machine) | 7.0 | 6.5 |" in text


def test_a_finding_without_tests_does_not_point_to_the_page_plan():
    from studylib.analysis import findings

    f = findings.personal_signal(_share_rows(0.45, 0.48, 0.52), "april_2023", 0.6, 10, 200)
    assert "before the page-wide multiplicity plan" not in f.markdown()  # its interval is no test (NOT_INTERVALS)

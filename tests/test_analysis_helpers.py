"""The helpers that chapters call instead of computing in their cells: GAUC per head, models beside
the oracle, a family of group comparisons under Holm, and the label a short name stands for."""

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from studylib.analysis import findings, ranking
from studylib import stats
from studylib.analysis.ranking import ScoredSet
from studylib.data.requests import Requests
from studylib.errors import StudyError
from studylib.schema import LABELS, label_named, short_name

HEADS = ("like", "negative")
WEIGHTS = np.array([1.0, -10.0])


def _world(requests=300, candidates=10, seed=0):
    rng = np.random.default_rng(seed)
    truth = expit(rng.normal([-1.0, -2.0], 1.0, size=(requests * candidates, 2)))
    labels = (rng.random(truth.shape) < truth).astype(float)
    ids = np.repeat(np.arange(requests), candidates)
    users = np.repeat(np.arange(requests) % (requests // 2), candidates)
    return truth, labels, ids, users


def _scored(prob, truth, labels, ids, users):
    requests = Requests.from_ids(ids)
    return ScoredSet(HEADS, requests, requests.gather(prob), requests.gather(truth), None, users,
                     requests.gather(labels, fill=0.0))


def test_models_beside_oracle_orders_the_rankings_and_pairs_against_the_first_model_and_random():
    truth, labels, ids, users = _world()
    noisy = expit(np.log(truth / (1 - truth)) + np.random.default_rng(1).normal(0, 1.5, truth.shape))
    sets = {"good": _scored(truth, truth, labels, ids, users), "noisy": _scored(noisy, truth, labels, ids, users)}
    rankings, summary, paired = ranking.models_beside_oracle(sets, WEIGHTS, k=3, n_resamples=100, seed=0)
    assert list(rankings) == ["oracle", "good", "noisy", "random"]
    assert set(paired["reference"]) == {"good", "random"}
    utility = summary[summary["metric"] == "utility"].set_index("ranking")["mean"]
    assert utility["oracle"] == pytest.approx(utility["good"])  # the true probabilities are the oracle's
    assert utility["good"] > utility["noisy"] > utility["random"]
    noisy_vs_good = paired[(paired["reference"] == "good") & (paired["ranking"] == "noisy")
                           & (paired["metric"] == "utility")].iloc[0]
    assert noisy_vs_good["high"] < 0


def test_head_gaucs_are_one_for_labels_that_equal_the_scores_rank():
    truth, _, ids, _ = _world(requests=50)
    labels = (truth > 0.3).astype(float)  # the score orders every label perfectly within each request
    frame = pd.DataFrame({"request_id": ids, **{f"prob.{h}": truth[:, i] for i, h in enumerate(HEADS)},
                          **{f"true_prob.{h}": 1 - truth[:, i] for i, h in enumerate(HEADS)},
                          **{f"label.{h}": labels[:, i] for i, h in enumerate(HEADS)}})
    table = ranking.head_gaucs(frame, HEADS).set_index("head")
    assert list(table.index) == list(HEADS)
    assert (table["gauc"] == 1.0).all() and (table["oracle_gauc"] == 0.0).all()


def test_compare_groups_holm_adjusts_over_every_test_of_every_comparison():
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(60), 5)
    same = (rng.normal(0, 1, 300), users), (rng.normal(0, 1, 300), users + 100)
    shifted = (rng.normal(0, 1, 300), users), (rng.normal(2, 1, 300), users + 100)
    table = stats.compare_groups({"same": same, "shifted": shifted}, n_resamples=100, seed=0)
    raw = table[["welch_p", "mwu_p", "ks_p"]].to_numpy().ravel()
    adjusted = table[["welch_p_holm", "mwu_p_holm", "ks_p_holm"]].to_numpy().ravel()
    assert adjusted == pytest.approx(stats.holm(raw))  # one family of six tests
    assert (adjusted >= raw).all()
    assert table.set_index("comparison").loc["shifted", "welch_p_holm"] < 0.05


def test_label_named_reads_short_and_full_names():
    assert label_named("favorited") == "recap.engagement.is_favorited"
    assert label_named("recap.engagement.is_replied") == "recap.engagement.is_replied"
    assert all(label_named(short_name(label)) == label for label in LABELS)
    assert label_named("no_such_label") == "no_such_label"


def test_embedding_ablation_states_what_random_vectors_carry_only_when_every_seed_shows_it():
    rows = [{"variant": v, "seed": s, "head": h, "positives": 100, "auroc": auroc + 0.01 * s}
            for s in range(3) for h in ("a", "b")
            for v, auroc in (("random", 0.6), ("planted", 0.7), ("trained", 0.65))]
    finding = findings.embedding_ablation(pd.DataFrame(rows), 100)
    assert finding.numbers["random_auroc"] == pytest.approx(0.61)
    assert "Random vectors are not pure noise" in finding.text and "0.610" in finding.text
    at_chance = pd.DataFrame([{**r, "auroc": 0.5 if r["variant"] == "random" else r["auroc"]} for r in rows])
    assert "not pure noise" not in findings.embedding_ablation(at_chance, 100).text


def test_negative_flip_names_the_feed_size_it_was_measured_on():
    sweep = pd.DataFrame([{"factor": -1.0, "head": "report", "probabilities": p, "expected_negative_feedback_change_pct": c}
                          for p, c in (("model", 40.0), ("oracle", 55.0))])
    finding = findings.negative_flip(sweep, ["report"], 25)
    assert "in the top 25 by +40 % when report is flipped (oracle: +55 %)" in finding.text


def test_tornado_intervals_bracket_the_sweep_and_leave_an_unmoved_head_at_its_base():
    """The tornado's whiskers: the 95 % user-level interval of each end holds the sweep's own value, and
    a head whose weight is 0 (so ×0 and ×4 change nothing) has a zero-width interval at the base value."""
    from studylib.analysis import ranking, sensitivity
    from studylib.data.requests import Requests

    rng = np.random.default_rng(3)
    R, n = 60, 20
    truth = rng.uniform(0.0, 0.3, (R, n, 3))
    req = Requests.from_ids(np.repeat(np.arange(R), n))
    scored = ranking.ScoredSet(("a", "b", "c"), req, np.clip(truth + rng.normal(0, 0.05, truth.shape), 0, 1), truth,
                               None, np.repeat(np.arange(R // 3), 3 * n))
    base = np.array([1.0, 2.0, 0.0])
    sweep = sensitivity.sensitivity_sweep(scored, base, [0.0, 4.0], k=5)
    ci = sensitivity.tornado_intervals(scored, base, "top5_overlap", 0.0, 4.0, k=5, n_resamples=400, seed=1)
    both = sweep.merge(ci, on=["head", "factor"])
    assert len(both) == 6 and (both["metric_low"] <= both["top5_overlap"] + 1e-12).all()
    assert (both["top5_overlap"] <= both["metric_high"] + 1e-12).all()
    unmoved = both[both["head"] == "c"]
    assert np.allclose(unmoved[["metric_low", "metric_high"]].to_numpy(), 1.0)
    moved = both[(both["head"] == "b") & (both["factor"] == 0.0)].iloc[0]
    assert moved["metric_high"] < 1.0 and moved["metric_high"] > moved["metric_low"]


def test_named_values_print_counts_as_counts():
    from studylib.analysis.tables import named_values

    table = named_values({"splits": 1000, "alpha": 0.05, "units": 182.0, "icc": 0.149249, "design_effect": 9.0512527})
    assert table["value"].tolist() == ["1,000", "0.05", "182", "0.1492", "9.051"]


def test_march_max_rule_against_its_linear_reading_on_constructed_scores():
    """Where good_click's prediction is always the larger, the rule and the linear reading are the same
    ranking (overlap 1, gain 0, "not shown to matter"); where only good_click_v2 carries the signal, the
    rule sees it and the reading does not, so the rule's top k is worth more, and the sentence says so."""
    from studylib.analysis import ranking, weight_search
    from studylib.analysis.findings import max_rule_reading
    from studylib.data.requests import Requests

    heads = ("favorited", *weight_search.MAX_RULE_HEADS)
    rng = np.random.default_rng(0)
    R, n = 80, 20
    req = Requests.from_ids(np.repeat(np.arange(R), n))
    users = np.repeat(np.arange(R // 2), 2 * n)
    truth = rng.uniform(0, 0.2, (R, n, 3))
    base = np.array([1.0, 11.0, 10.0])
    march = np.array([1.0, 11.0, 0.0])
    larger_first = truth.copy()
    larger_first[..., 2] = larger_first[..., 1] * 0.5
    same = weight_search.max_rule_effect(ranking.ScoredSet(heads, req, larger_first, larger_first, None, users),
                                         base, march, k=5, n_resamples=200)
    assert same["overlap"] == 1.0 and same["rule_gain"] == 0.0
    assert "not shown to matter" in max_rule_reading(same, "march_2023", "april_2023")
    v2_only = truth.copy()
    v2_only[..., 1] = 0.001
    v2_only[..., 2] = rng.uniform(0, 0.5, (R, n))
    seen = weight_search.max_rule_effect(ranking.ScoredSet(heads, req, v2_only, v2_only, None, users),
                                         base, march, k=5, n_resamples=200)
    assert seen["overlap"] < 1.0 and seen["rule_gain_low"] > 0 and seen["linear_loss_low"] > 0
    said = max_rule_reading(seen, "march_2023", "april_2023")
    assert "carries more true value" in said and "win back" in said
    with pytest.raises(StudyError, match="second head takes 0"):
        weight_search.max_rule_effect(ranking.ScoredSet(heads, req, truth, truth, None, users), base, base)

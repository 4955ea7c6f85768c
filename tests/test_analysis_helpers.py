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

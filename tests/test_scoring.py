"""Weighted scoring and ranking against hand-computed cases, and weight-file validation."""

import json
import math

import numpy as np
import pytest
import yaml

from studylib.errors import StudyError
from studylib.schema import BASE_RATES, short_name
from studylib.data.requests import rank_within_requests
from studylib.ranker.weights import HEADS, equal_contribution, load_weights
from studylib.ranker.scoring import score_matrix, scored_table


def test_april_2023_preset_has_the_published_weights():
    w = load_weights("april_2023").as_published()
    assert w["scored_tweets_model_weight_reply_engaged_by_author"] == 75.0
    assert w["scored_tweets_model_weight_report"] == -369.0
    assert w["scored_tweets_model_weight_video_playback50"] == 0.005
    assert len(w) == 10



def test_both_published_versions_are_presets():
    """31 Mar 2023 (78c3235) and 5 Apr 2023 (b852108, `april_2023`) differ in reply and the good clicks."""
    march, april = load_weights("march_2023").as_published(), load_weights("april_2023").as_published()
    key = "scored_tweets_model_weight_"
    assert (march[key + "reply"], april[key + "reply"]) == (27.0, 13.5)
    assert (march[key + "good_click"], march[key + "good_click_v2"]) == (11.0, 0.0)
    assert (april[key + "good_click"], april[key + "good_click_v2"]) == (11.0, 10.0)
    same = [k for k in march if k.removeprefix(key) not in ("reply", "good_click_v2")]
    assert all(march[k] == april[k] for k in same) and len(same) == 8

def test_score_against_a_hand_computed_example():
    april = load_weights("april_2023")
    probs = np.zeros((2, 10))
    fav, reply, report = (HEADS.index("recap.engagement.is_" + n) for n in ("favorited", "replied", "report_tweet_clicked"))
    probs[0, [fav, reply]] = [0.2, 0.1]  # 0.5*0.2 + 13.5*0.1 = 1.45
    probs[1, [fav, report]] = [0.4, 0.001]  # 0.5*0.4 - 369*0.001 = -0.169
    scores = score_matrix(probs, np.stack([april.vector(HEADS), np.ones(10)]))
    assert scores[:, 0] == pytest.approx([1.45, -0.169])
    assert scores[:, 1] == pytest.approx([0.3, 0.401])


def test_ranks_are_per_request_and_descending():
    request = np.array([7, 7, 7, 3, 3])
    score = np.array([0.1, 0.9, 0.5, -1.0, 2.0])
    assert rank_within_requests(request, score).tolist() == [3, 1, 2, 2, 1]


def test_equal_contribution_weights_contribute_equally_at_base_rates():
    weights = equal_contribution()
    contributions = [abs(weights.weights[h] * BASE_RATES[h]) for h in HEADS]
    assert np.allclose(contributions, contributions[0])
    assert weights.weights[HEADS[0]] == 0.5
    assert weights.weights["recap.engagement.is_report_tweet_clicked"] < 0


def test_2026_mapping_covers_every_head():
    w = load_weights("x_2026_mapped").as_published()
    assert w["scored_tweets_model_weight_negative_feedback_v2"] == -43.2 and w["scored_tweets_model_weight_reply"] == 5.0


@pytest.mark.parametrize("key, value, message", [
    ("scored_tweets_model_weight_quote", "5.0", "unknown head weight scored_tweets_model_weight_quote"),
    ("scored_tweets_model_weight_fav", "null", "scored_tweets_model_weight_fav must be a finite number"),
    ("scored_tweets_model_weight_fav", ".nan", "scored_tweets_model_weight_fav must be a finite number"),
    ("scored_tweets_model_weight_fav", "lots", "scored_tweets_model_weight_fav must be a finite number"),
])
def test_bad_weight_files_are_refused(tmp_path, key, value, message):
    weights = load_weights("april_2023").as_published()
    weights.pop(key, None)
    text = "".join(f"{k}: {v}\n" for k, v in weights.items()) + f"{key}: {value}\n"
    path = tmp_path / "weights.yaml"
    path.write_text(text)
    with pytest.raises(StudyError, match=f"weights.yaml: {message}"):
        load_weights(str(path))


def test_missing_head_weight_is_refused(tmp_path):
    path = tmp_path / "partial.yaml"
    path.write_text("scored_tweets_model_weight_fav: 0.5\n")
    with pytest.raises(StudyError, match=r"partial.yaml: missing head weight scored_tweets_model_weight_retweet"):
        load_weights(str(path))


def test_slider_weights_saved_as_a_file_that_make_study_accepts(tmp_path):
    """The sliders' export (chapter 5) round-trips: short names in, the published keys out, and the
    file passes the same check `make study WEIGHTS=` runs before any notebook."""
    from studylib.study.ranker_study import check_weights
    from studylib.ranker.weights import save_weights

    chosen = {short_name(h): w * 1.5 for h, w in load_weights("april_2023").weights.items()}
    path = save_weights(chosen, tmp_path / "weights" / "slider_weights.yaml", "slider_weights")
    assert check_weights(str(path)) == "slider_weights"
    loaded = load_weights(str(path))
    assert loaded.weights == {h: chosen[short_name(h)] for h in HEADS}
    assert set(yaml.safe_load(path.read_text())) == set(load_weights("april_2023").as_published())
    with pytest.raises(StudyError, match=r"bad.yaml: scored_tweets_model_weight_fav must be a finite number"):
        save_weights({**chosen, "favorited": float("nan")}, tmp_path / "bad.yaml")
    with pytest.raises(StudyError, match=r"bad.yaml: missing head weight"):
        save_weights({"favorited": 1.0}, tmp_path / "bad.yaml")
    assert not (tmp_path / "bad.yaml").exists()


def test_unknown_preset_is_refused():
    with pytest.raises(StudyError, match="neither a preset"):
        load_weights("april_2024")


def test_scored_table_has_scores_and_ranks_for_each_weight_set():
    n = 6
    ids = {"request_id": np.array([0, 0, 0, 1, 1, 1]), "meta__tweet_id": np.arange(n)}
    probs = np.random.default_rng(0).random((n, 10)) * 0.1
    table = scored_table(ids, ["baseline"] * n, probs, probs, None, HEADS,
                         [load_weights("april_2023"), equal_contribution()])
    for name in ("april_2023", "equal_contribution"):
        assert f"score.{name}" in table.column_names and f"rank.{name}" in table.column_names
        ranks = table.column(f"rank.{name}").to_numpy()
        assert sorted(ranks[:3]) == [1, 2, 3] and sorted(ranks[3:]) == [1, 2, 3]
    assert "prob.favorited" in table.column_names and "true_prob.favorited" in table.column_names
    assert not math.isnan(table.column("score.april_2023").to_numpy().sum())


def test_second_weight_set_rescoring_reads_stored_probabilities_without_the_model(small_data, tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    from studylib.ranker import probabilities, scoring
    from studylib.strict import shipped_config_path
    from studylib.ranker.config import STUDY_CONFIG
    from studylib.ranker.train import TrainArgs, train

    run = tmp_path / "run"
    train(TrainArgs(data=str(small_data), out=str(run), config=str(shipped_config_path(STUDY_CONFIG)), steps=2,
                    batch_size=64, progress=False))
    first = scoring.score_run(str(run), str(small_data), ["april_2023"], str(tmp_path / "a.parquet"), progress=False)
    assert first.schema.metadata[b"studylib.reused"] == b"no"
    assert (run / probabilities.PROBABILITIES_DIR / f"{small_data.name}.parquet").exists()

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded although its probabilities are stored")

    monkeypatch.setattr(probabilities, "load_run", no_model)
    mine = {**load_weights("april_2023").as_published(), "scored_tweets_model_weight_report": -10.0}
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump(mine))
    second = scoring.score_run(str(run), str(small_data), [str(tmp_path / "mine.yaml")], str(tmp_path / "b.parquet"),
                               progress=False)
    assert second.schema.metadata[b"studylib.reused"] == b"yes"
    order = tuple(h for c in second.column_names if c.startswith("prob.") for h in HEADS if short_name(h) == c[5:])
    probs = np.stack([second.column(f"prob.{short_name(h)}").to_numpy() for h in order], axis=1).astype(np.float64)
    expected = probs @ load_weights(str(tmp_path / "mine.yaml")).vector(order)  # the sum in the stored head order
    assert np.array_equal(second.column("score.mine").to_numpy(), expected)
    assert np.array_equal(first.column("prob.favorited").to_numpy(), second.column("prob.favorited").to_numpy())
    # a different precision is a different computation: the model must run again
    stored = json.loads(pq.read_schema(run / "probabilities" / f"{small_data.name}.parquet").metadata[probabilities.KEY])
    other = "fp32" if stored["precision"] == "bf16" else "bf16"
    with pytest.raises(AssertionError, match="was loaded"):
        scoring.score_run(str(run), str(small_data), ["april_2023"], str(tmp_path / "c.parquet"), progress=False,
                          precision=other)


def test_training_stores_its_final_evaluation_as_the_probabilities_scoring_would_compute(small_data, tmp_path,
                                                                                           monkeypatch):
    """One forward pass at the end of training serves the metrics and the stored table: scoring the
    evaluation set afterwards runs no model, and the table is byte for byte what running the saved
    model would give."""
    import pyarrow.parquet as pq

    from studylib.ranker import probabilities, scoring
    from studylib.strict import shipped_config_path
    from studylib.ranker.config import STUDY_CONFIG
    from studylib.ranker.train import TrainArgs, train

    run = tmp_path / "run"
    train(TrainArgs(data=str(small_data), eval_data=str(small_data), out=str(run), steps=2, batch_size=64,
                    config=str(shipped_config_path(STUDY_CONFIG)), progress=False, precision="fp32"))
    stored = run / probabilities.PROBABILITIES_DIR / f"{small_data.name}.parquet"
    from_training = pq.read_table(stored)
    assert from_training.num_rows == 2000 and "cohort" in from_training.column_names

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded although training stored its probabilities")

    with monkeypatch.context() as patch:
        patch.setattr(probabilities, "load_run", no_model)
        scored = scoring.score_run(str(run), str(small_data), ["april_2023"], str(tmp_path / "a.parquet"),
                                   progress=False, precision="fp32")
    assert scored.schema.metadata[b"studylib.reused"] == b"yes"
    stored.unlink()  # now the saved model runs: the same table, metadata included
    again, reused = probabilities.stored_probabilities(str(run), str(small_data), precision="fp32", progress=False)
    assert not reused and again.equals(from_training, check_metadata=True)

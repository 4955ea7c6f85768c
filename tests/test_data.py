"""Data sets: determinism, planted truth, scenarios, the reader, and bad input."""

import json
import os
import shutil

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from conftest import SMALL_WORLD, small_params
from studylib.data import generate as generate_module
from studylib.data.generate import generate
from studylib.data.layout import RENAMED_FEATURES
from studylib.data.reader import Reader, load_table, open_dataset
from studylib.data.world import NESTED
from studylib.errors import StudyError
from studylib.schema import GROUP_WIDTHS, LABELS

FAV = "recap.engagement.is_favorited"


def shard_bytes(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.parquet"))}


def test_same_seed_gives_identical_bytes_and_another_seed_does_not(tmp_path, small_data):
    generate(small_params(), tmp_path / "again", progress=False)
    assert shard_bytes(tmp_path / "again") == shard_bytes(small_data)
    assert (tmp_path / "again" / "manifest.json").read_text() == (small_data / "manifest.json").read_text()
    generate(small_params(seed=4), tmp_path / "other", progress=False)
    assert shard_bytes(tmp_path / "other") != shard_bytes(small_data)


def test_manifest_records_parameters_counts_and_checksums(small_data):
    manifest = json.loads((small_data / "manifest.json").read_text())
    assert manifest["scenario"] == "planted" and manifest["seed"] == 3
    assert manifest["rows"] == 2000 and len(manifest["shards"]) == 2
    assert manifest["params"]["world"]["rate_scale"] == 20.0
    assert all(len(s["sha256"]) == 64 for s in manifest["shards"])
    assert set(manifest["realised_rates"]) == set(LABELS)


def test_columns_have_the_published_widths(small_data):
    table = pq.read_table(small_data / "shard-00000.parquet")
    for group, width in GROUP_WIDTHS.items():
        assert table.schema.field(RENAMED_FEATURES[group]).type.list_size == width
    assert set(LABELS) <= set(table.column_names)


def test_nested_labels_never_happen_without_a_parent(small_data):
    table = load_table(small_data)
    for child, parents in NESTED.items():
        child_on = table.column(child).to_numpy() == 1
        parent_on = np.any([table.column(p).to_numpy() == 1 for p in parents], axis=0)
        assert child_on.any() and not (child_on & ~parent_on).any()


def test_realised_rates_match_the_stored_true_probabilities(tmp_path):
    manifest = generate(small_params(examples=20000, seed=5), tmp_path / "big", progress=False)
    for label in (FAV, "recap.engagement.is_replied", "recap.engagement.is_negative_feedback_v2"):
        planted, realised = manifest["planted_rates"][label], manifest["realised_rates"][label]
        assert abs(realised - planted) < 4 * np.sqrt(planted * (1 - planted) / manifest["rows"])


def test_random_scenario_has_constant_truth(tmp_path):
    generate(small_params(scenario="random"), tmp_path / "random", progress=False)
    truth = load_table(tmp_path / "random").column("true_prob." + FAV).to_numpy()
    assert np.ptp(truth) == 0.0 and truth[0] > 0


def test_cohorts_suppress_negative_engagement(tmp_path):
    generate(small_params(scenario="cohorts", examples=6000), tmp_path / "cohorts", progress=False)
    table = load_table(tmp_path / "cohorts").to_pandas()
    neg = table.groupby("cohort")["true_prob.recap.engagement.is_negative_feedback_v2"].mean()
    fav = table.groupby("cohort")["true_prob." + FAV].mean()
    assert set(neg.index) == {"baseline", "negatives_suppressed", "positives_suppressed"}
    assert neg["negatives_suppressed"] < 0.2 * neg["baseline"]
    assert fav["positives_suppressed"] < 0.4 * fav["baseline"]


def test_candidates_are_grouped_per_request(small_data):
    table = load_table(small_data).to_pandas()
    per_request = table.groupby("request_id")
    assert (per_request.size() == 50).all()
    assert (per_request["meta.user_id"].nunique() == 1).all()


def test_downsampling_records_rates_and_keeps_positives(tmp_path):
    params = small_params(examples=4000, downsample_task=FAV, pos_downsampling_rate=1.0, neg_downsampling_rate=0.1)
    manifest = generate(params, tmp_path / "ds", progress=False)
    assert manifest["downsampling"] == {FAV: {"pos_downsampling_rate": 1.0, "neg_downsampling_rate": 0.1}}
    assert manifest["rows"] < 2000 and manifest["realised_rates"][FAV] > 0.5


def test_interrupted_generation_resumes_to_the_same_bytes(tmp_path, small_data, monkeypatch):
    real_replace, calls = generate_module.os.replace, []

    def crash_after_first_shard(src, dst):
        real_replace(src, dst)
        calls.append(dst)
        if len(calls) == 2:  # shard 0 and the progress file are written: die
            raise KeyboardInterrupt

    monkeypatch.setattr(generate_module.os, "replace", crash_after_first_shard)
    with pytest.raises(KeyboardInterrupt):
        generate(small_params(), tmp_path / "resumed", progress=False)
    monkeypatch.setattr(generate_module.os, "replace", real_replace)
    assert not (tmp_path / "resumed" / "manifest.json").exists()
    generate(small_params(), tmp_path / "resumed", progress=False)
    assert shard_bytes(tmp_path / "resumed") == shard_bytes(small_data)


def test_other_parameters_into_a_finished_folder_are_refused(small_data):
    with pytest.raises(StudyError, match="holds a different data set"):
        generate(small_params(seed=99), small_data, progress=False)


def test_reader_batches_are_keyed_by_group_and_label(small_data):
    reader = Reader(open_dataset(small_data), batch_size=64, shuffle=True, seed=1)
    batch = next(iter(reader.epoch(0)))
    assert {k: tuple(v.shape) for k, v in batch.features.items()} == {k: (64, w) for k, w in GROUP_WIDTHS.items()}
    assert set(batch.labels) == set(LABELS) and set(batch.true_probs) == set(LABELS)
    assert batch.labels[FAV].dtype == torch.float32


def test_reader_order_is_shuffled_across_shards_and_reproducible(small_data):
    def requests(seed, epoch):
        reader = Reader(open_dataset(small_data), batch_size=100, shuffle=True, seed=seed)
        return torch.cat([b.ids["request_id"] for b in reader.epoch(epoch)])

    first = requests(1, 0)
    assert torch.equal(first, requests(1, 0))
    assert not torch.equal(first, requests(1, 1))
    assert sorted(first.tolist()) == sorted(requests(2, 0).tolist())  # a permutation of all rows
    assert first[:100].max() - first[:100].min() > 10  # rows from far apart in one batch


def test_reader_skip_resumes_the_same_stream(small_data):
    reader = Reader(open_dataset(small_data), batch_size=64, shuffle=True, seed=1)
    full = [b.ids["request_id"] for b in reader.epoch(0)]
    resumed = [b.ids["request_id"] for b in reader.epoch(0, skip=11)]
    assert len(resumed) == len(full) - 11
    assert all(torch.equal(a, b) for a, b in zip(full[11:], resumed))


def test_reader_splits_the_global_batch_between_processes(small_data):
    data = open_dataset(small_data)
    whole = next(iter(Reader(data, batch_size=64, shuffle=True, seed=1).epoch(0)))
    halves = [next(iter(Reader(data, 64, shuffle=True, seed=1, rank=r, world_size=2).epoch(0))) for r in (0, 1)]
    assert torch.equal(torch.cat([h.ids["request_id"] for h in halves]), whole.ids["request_id"])


# ---------------------------------------------------------------- bad input


def copy_of(small_data, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(small_data, target)
    return target


def rewrite_shard(folder, change):
    """Apply `change` to shard 0's table, write it back and fix the manifest checksum."""
    from studylib.io import file_sha256

    path = folder / "shard-00000.parquet"
    pq.write_table(change(pq.read_table(path)), path, row_group_size=500)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["shards"][0]["sha256"] = file_sha256(path)
    (folder / "manifest.json").write_text(json.dumps(manifest))


def replace_column(table, name, array):
    return table.set_column(table.schema.get_field_index(name), name, array)


def test_missing_shard(small_data, tmp_path):
    folder = copy_of(small_data, tmp_path)
    (folder / "shard-00001.parquet").unlink()
    with pytest.raises(StudyError, match=r"shard-00001.parquet: shard listed in manifest.json is missing"):
        open_dataset(folder)


def test_corrupt_shard(small_data, tmp_path):
    folder = copy_of(small_data, tmp_path)
    path = folder / "shard-00000.parquet"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(StudyError, match=r"shard-00000.parquet: checksum differs"):
        open_dataset(folder)
    with pytest.raises(StudyError, match=r"shard-00000.parquet: not a readable Parquet file"):
        open_dataset(folder, verify=False)


def test_missing_folder_and_manifest(tmp_path):
    with pytest.raises(StudyError, match="data folder not found"):
        open_dataset(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StudyError, match="manifest.json: missing"):
        open_dataset(tmp_path / "empty")


def test_column_of_wrong_length(small_data, tmp_path):
    folder = copy_of(small_data, tmp_path)
    column = RENAMED_FEATURES["binary"]

    def shorten(table):
        values = np.zeros((table.num_rows, 40), dtype=np.int8)
        return replace_column(table, column, pa.FixedSizeListArray.from_arrays(pa.array(values.ravel()), 40))

    rewrite_shard(folder, shorten)
    with pytest.raises(StudyError, match=rf"shard-00000.parquet: column {column} has length 40, the model needs 59"):
        open_dataset(folder)


def test_column_of_wrong_type(small_data, tmp_path):
    folder = copy_of(small_data, tmp_path)
    rewrite_shard(folder, lambda t: replace_column(t, FAV, pa.array(np.zeros(t.num_rows), type=pa.float64())))
    with pytest.raises(StudyError, match=rf"column {FAV} must be an integer"):
        open_dataset(folder)


def test_labels_outside_zero_one(small_data, tmp_path):
    folder = copy_of(small_data, tmp_path)
    rewrite_shard(folder, lambda t: replace_column(t, FAV, pa.array(np.full(t.num_rows, 7, dtype=np.int8))))
    with pytest.raises(StudyError, match=rf"shard-00000.parquet: column {FAV} has 1000 value\(s\) outside"):
        open_dataset(folder)


def test_nonfinite_continuous_values_are_counted(small_data, tmp_path):
    folder = copy_of(small_data, tmp_path)
    column = RENAMED_FEATURES["continuous"]

    def poison(table):
        values = table.column(column).combine_chunks().flatten().to_numpy().copy()
        values[[0, 5, 9]] = [np.nan, np.inf, -np.inf]
        return replace_column(table, column, pa.FixedSizeListArray.from_arrays(pa.array(values), 2117))

    rewrite_shard(folder, poison)
    reader = Reader(open_dataset(folder), batch_size=100, shuffle=False)
    assert sum(b.nonfinite for b in reader.epoch(0)) == 3


def test_nonfinite_embeddings_are_refused(small_data, tmp_path):
    folder = copy_of(small_data, tmp_path)
    column = RENAMED_FEATURES["user_embedding"]

    def poison(table):
        values = table.column(column).combine_chunks().flatten().to_numpy().copy()
        values[3] = np.nan
        return replace_column(table, column, pa.FixedSizeListArray.from_arrays(pa.array(values), 200))

    rewrite_shard(folder, poison)
    with pytest.raises(StudyError, match=rf"shard-00000.parquet: column {column} holds NaN"):
        open_dataset(folder)


def test_parallel_writers_give_the_same_bytes(tmp_path, small_data):
    generate(small_params(), tmp_path / "parallel", progress=False, workers=2)
    assert shard_bytes(tmp_path / "parallel") == shard_bytes(small_data)


def write_embeddings(path, n_users, n_authors, width=200):
    """A file in `studylib twhin-export`'s format: columns table, id, embedding."""
    rng = np.random.default_rng(0)
    parts = {"user_embedding": n_users, "user_eng_embedding": n_users, "author_embedding": n_authors}
    tables = {name: rng.standard_normal((rows, width)).astype(np.float32) for name, rows in parts.items()}
    names = np.concatenate([np.full(rows, name, dtype=object) for name, rows in parts.items()])
    ids = np.concatenate([np.arange(rows) for rows in parts.values()])
    flat = np.concatenate(list(tables.values()))
    pq.write_table(pa.table({"table": pa.array(names, type=pa.string()), "id": ids,
                             "embedding": pa.FixedSizeListArray.from_arrays(pa.array(flat.ravel()), width)}), path)
    return tables


def test_trained_twhin_embeddings_become_the_embedding_features(tmp_path):
    tables = write_embeddings(tmp_path / "emb.parquet", n_users=300, n_authors=60)
    manifest = generate(small_params(embeddings=str(tmp_path / "emb.parquet")), tmp_path / "d", progress=False)
    assert manifest["embeddings"]["sha256"]
    data = load_table(tmp_path / "d").to_pandas()
    user = data["meta.user_id"].to_numpy()
    author = data["meta.author_id"].to_numpy()
    stored_user = np.stack(data[RENAMED_FEATURES["user_embedding"]].to_numpy())
    stored_author = np.stack(data[RENAMED_FEATURES["author_embedding"]].to_numpy())
    assert np.array_equal(stored_user, tables["user_embedding"][user])
    assert np.array_equal(stored_author, tables["author_embedding"][author])


def test_embeddings_for_another_world_are_refused(tmp_path):
    write_embeddings(tmp_path / "emb.parquet", n_users=100, n_authors=60)
    with pytest.raises(StudyError, match=r"emb.parquet: user_embedding has shape \(100, 200\), this world needs \(300, 200\)"):
        generate(small_params(embeddings=str(tmp_path / "emb.parquet")), tmp_path / "d", progress=False)


def test_user_history_features_show_the_cohort(tmp_path):
    """A user's own history reaches the features: the cohorts' suppression is visible to a model."""
    from studylib.data.generate import HISTORY_COLUMNS, HISTORY_WIDTH

    generate(small_params(scenario="cohorts", examples=6000), tmp_path / "cohorts", progress=False)
    table = load_table(tmp_path / "cohorts")
    cont = np.stack(table.column("home_recap_2022_cont__segdense_vals").to_numpy(zero_copy_only=False))
    history = np.log1p(cont[:, HISTORY_COLUMNS])
    half = HISTORY_WIDTH // 2
    frame = pd.DataFrame({"positive": history[:, :half].mean(1), "negative": history[:, half:].mean(1),
                          "cohort": table.column("cohort").to_numpy(zero_copy_only=False)})
    means = frame.groupby("cohort").mean()
    # log(0.1) ≈ −2.3 on the negative block, log(0.25) ≈ −1.4 on the positive block
    assert means.loc["baseline", "negative"] - means.loc["negatives_suppressed", "negative"] > 1.5
    assert means.loc["baseline", "positive"] - means.loc["positives_suppressed", "positive"] > 1.0
    assert abs(means.loc["baseline", "positive"] - means.loc["negatives_suppressed", "positive"]) < 0.5
    # without cohorts every user carries factor 1: the same users give the same history levels
    generate(small_params(scenario="planted", examples=6000), tmp_path / "planted", progress=False)
    planted = load_table(tmp_path / "planted")
    pcont = np.stack(planted.column("home_recap_2022_cont__segdense_vals").to_numpy(zero_copy_only=False))
    assert abs(np.log1p(pcont[:, HISTORY_COLUMNS]).mean() - means.loc["baseline"].mean()) < 0.5


def test_target_rates_are_capped_and_reported():
    from studylib.data.world import RATE_CAP, World, WorldParams, target_rates
    from studylib.schema import BASE_RATES, LABEL_PREFIX

    dwell = LABEL_PREFIX + "is_tweet_detail_dwelled_15_sec"
    assert target_rates(20.0)[dwell] == RATE_CAP and BASE_RATES[dwell] * 20.0 == pytest.approx(0.6)
    world = World(WorldParams(n_users=300, n_authors=60, n_tweets=2000, rate_scale=20.0, seed=3))
    targets, rates = world.targets(), world.mean_rates()
    assert targets[dwell] == (RATE_CAP, "capped")
    for label, (target, _) in targets.items():
        assert rates[label] == pytest.approx(target, rel=1e-6)


@pytest.mark.parametrize("column, values, message", [
    (FAV, lambda n: pa.array([None] * 3 + [0] * (n - 3), type=pa.int8()), r"recap.engagement.is_favorited has 3 null value\(s\)"),
    ("true_prob." + FAV, lambda n: pa.array([float("nan")] * 2 + [0.1] * (n - 2), type=pa.float32()),
     r"true_prob.recap.engagement.is_favorited has 2 value\(s\) that are not probabilities"),
    ("true_prob." + FAV, lambda n: pa.array([1.5] + [0.1] * (n - 1), type=pa.float32()),
     r"true_prob.recap.engagement.is_favorited has 1 value\(s\) that are not"),
    ("request_id", lambda n: pa.array([None] + list(range(n - 1)), type=pa.int64()), r"request_id has 1 null value"),
])
def test_nulls_and_impossible_values_are_refused_with_a_count(small_data, tmp_path, column, values, message):
    folder = copy_of(small_data, tmp_path)
    rewrite_shard(folder, lambda t: replace_column(t, column, values(t.num_rows)))
    with pytest.raises(StudyError, match=r"shard-00000.parquet: column " + message):
        open_dataset(folder)


def test_embedding_view_reads_like_a_materialised_copy_without_storing_rows(small_data, tmp_path):
    """The ablation's data sets differ from the base only in the three embedding columns: a view
    stores a manifest, and reads back exactly what `generate --embeddings` would have written."""
    import dataclasses

    from studylib.data.embeddings import write_ranker_embeddings
    from studylib.data.generate import embedding_view

    rng = np.random.default_rng(0)
    world = SMALL_WORLD
    emb = tmp_path / "emb.parquet"
    write_ranker_embeddings({"user_embedding": rng.standard_normal((world["n_users"], 200)).astype(np.float32),
                             "user_eng_embedding": rng.standard_normal((world["n_users"], 200)).astype(np.float32),
                             "author_embedding": rng.standard_normal((world["n_authors"], 200)).astype(np.float32)}, emb)
    copy = tmp_path / "copy"
    generate(dataclasses.replace(small_params(), embeddings=str(emb)), copy, progress=False)
    view = tmp_path / "view"
    embedding_view(small_data, emb, view)
    assert [p.name for p in view.iterdir()] == ["manifest.json"]
    assert sum(p.stat().st_size for p in view.iterdir()) < 20_000
    for shuffle in (True, False):
        pairs = zip(Reader(open_dataset(copy), 64, shuffle=shuffle, seed=1).epoch(0),
                    Reader(open_dataset(view), 64, shuffle=shuffle, seed=1).epoch(0))
        n = 0
        for a, b in pairs:
            n += 1
            assert all(torch.equal(a.features[g], b.features[g]) for g in a.features)
            assert all(torch.equal(a.labels[k], b.labels[k]) for k in a.labels)
        assert n > 0
    column = "user.timelines.twhin_user_follow_embeddings.twhin_user_follow_embeddings"
    assert load_table(copy, [column, "meta.user_id"]).column(column).to_pylist() == \
        load_table(view, [column, "meta.user_id"]).column(column).to_pylist()
    # Reused when unchanged; refused with one line when what it points at changed.
    assert embedding_view(small_data, emb, view)["view_of"]["path"] == os.path.relpath(small_data, view)
    write_ranker_embeddings({"user_embedding": np.zeros((world["n_users"], 200), np.float32),
                             "user_eng_embedding": np.zeros((world["n_users"], 200), np.float32),
                             "author_embedding": np.zeros((world["n_authors"], 200), np.float32)}, emb)
    with pytest.raises(StudyError, match="emb.parquet: checksum differs from .*the embeddings changed"):
        open_dataset(view)
    with pytest.raises(StudyError, match="view: holds a different data set"):
        embedding_view(small_data, emb, view)
    bad = tmp_path / "bad.parquet"
    write_ranker_embeddings({"user_embedding": np.zeros((5, 200), np.float32),
                             "user_eng_embedding": np.zeros((5, 200), np.float32),
                             "author_embedding": np.zeros((5, 200), np.float32)}, bad)
    with pytest.raises(StudyError, match=r"bad.parquet: user_embedding has shape \(5, 200\), this world needs"):
        embedding_view(small_data, bad, tmp_path / "view2")
    assert not (tmp_path / "view2").exists()

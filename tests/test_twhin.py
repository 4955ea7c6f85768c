"""TwHIN: graph formats, model maths, training, evaluation, export, torchrun with 2 processes."""

import argparse
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from scipy import stats

from studylib.strict import shipped_config_path
from studylib.io import file_sha256
from studylib.data.world import World, WorldParams
from studylib.errors import StudyError
from studylib.twhin.cli import register
from studylib.twhin.evaluate import (PooledPopularityScorer, PopularityScorer, _queries, evaluate_run,
                                     rank_metrics, rank_pairs, trained_scorer, translation_offsets)
from studylib.data.embeddings import load_ranker_embeddings
from studylib.twhin.export import orthonormal_map
from studylib.twhin.config import load_twhin_config
from studylib.twhin.graph import load_graph
from studylib.twhin.planted import ENGAGEMENT_LABEL, ONCE_PER_PAIR, GraphParams, generate_graph, planted_log_intensity
from studylib.twhin.splits import SplitSpec, split_graph
from studylib.twhin.model import (TwhinModel, batch_loss, edges_to_kjt, negative_weights,
                                  relation_scores, softmax_loss, twhin_loss)
from studylib.twhin.runs import load_splits, load_trained
from studylib.twhin.train import TwhinTrainArgs, train

SMALL_WORLD = WorldParams(n_users=300, n_authors=200, n_tweets=1500)
REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    out = tmp_path_factory.mktemp("graph") / "planted"
    generate_graph(GraphParams(edges=40_000, chunk_edges=10_000, world=SMALL_WORLD), out, progress=False)
    return out


def _cli(argv):
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def _train(graph, out, steps, **kw):
    return train(TwhinTrainArgs(graph=str(graph), out=str(out), steps=steps, device="cpu", progress=False, **kw))


# ---------------------------------------------------------------- config


def test_published_config_loads_unchanged():
    cfg = load_twhin_config(shipped_config_path("twhin_local.yaml"))
    assert [(t.name, t.num_embeddings, t.embedding_dim, t.optimizer.kind, t.optimizer.lr) for t in cfg.tables] == [
        ("user", 424_241, 4, "sgd", 0.01), ("tweet", 72_543, 4, "sgd", 0.005)]
    assert [r.name for r in cfg.relations] == ["fav", "reply", "retweet", "magic_recs"]
    assert all((r.lhs, r.rhs) == ("user", "tweet") for r in cfg.relations)
    data = cfg.train_data
    assert (data.per_replica_batch_size, data.in_batch_negatives, cfg.model.translation_optimizer.lr) == (500, 10, 0.05)
    assert (data.uniform_negatives, data.global_negatives_weight) == (0, 1.0)  # global_negatives: 0, as published


def test_uniform_negatives_default_to_the_in_batch_count(tmp_path):
    text = shipped_config_path("twhin_local.yaml").read_text().replace("  global_negatives: 0\n", "", 1)
    (tmp_path / "c.yaml").write_text(text)
    cfg = load_twhin_config(tmp_path / "c.yaml")
    data = cfg.train_data
    assert (data.uniform_negatives, data.global_negatives_weight) == (data.in_batch_negatives, 1.0)
    study = load_twhin_config()
    assert (study.train_data.loss, study.train_data.in_batch_negatives, study.train_data.uniform_negatives,
            study.model.node_bias) == ("softmax", 0, 300, False)
    assert (cfg.train_data.loss, cfg.model.node_bias) == ("bce", False)  # the published config: BCE, no biases


@pytest.mark.parametrize("change, message", [
    (("  in_batch_negatives: 10\n", "  in_batch_negatives: 10\n  loss: hinge\n"), "train_data.loss supports only 'bce' or 'softmax', got 'hinge'"),
    (("  in_batch_negatives: 10\n", "  in_batch_negatives: 10\n  loss: softmax\n  global_negatives_weight: 3\n"),
     "global_negatives_weight weighs BCE terms; it has no role with loss: softmax"),
    (("      operator: translation\ntrain_data", "      operator: translation\n  node_bias: 1\ntrain_data"),
     "model.node_bias must be bool"),
])
def test_loss_and_node_bias_settings_are_checked(tmp_path, change, message):
    text = shipped_config_path("twhin_local.yaml").read_text()
    assert change[0] in text
    (tmp_path / "c.yaml").write_text(text.replace(*change, 1))
    with pytest.raises(StudyError, match=message):
        load_twhin_config(tmp_path / "c.yaml")


def test_config_typo_is_refused(tmp_path):
    text = shipped_config_path("twhin_local.yaml").read_text().replace("in_batch_negatives", "in_batch_negativs", 1)
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(StudyError, match="bad.yaml: unknown key train_data.in_batch_negativs"):
        load_twhin_config(tmp_path / "bad.yaml")


# ---------------------------------------------------------------- graph generation and formats


def test_generator_is_deterministic_and_described(tmp_path, planted):
    again = tmp_path / "again"
    manifest = generate_graph(GraphParams(edges=40_000, chunk_edges=10_000, world=SMALL_WORLD), again, progress=False)
    assert (again / "edges.parquet").read_bytes() == (planted / "edges.parquet").read_bytes()
    assert manifest["tables"] == {"user": 300, "tweet": 1500, "author": 200}
    assert [r["name"] for r in manifest["relations"]] == ["fav", "reply", "retweet", "magic_recs", "follow"]
    assert sum(r["edges"] for r in manifest["relations"]) == manifest["rows"] == 40_000
    assert not list(again.glob("*.tmp"))
    other = generate_graph(GraphParams(edges=40_000, chunk_edges=10_000, seed=1, world=SMALL_WORLD), tmp_path / "o",
                           progress=False)
    assert other["files"][0]["sha256"] != manifest["files"][0]["sha256"]


def test_planted_edges_follow_the_world(planted):
    graph = load_graph(planted)
    world = World(graph.world)
    degrees = np.bincount(graph.lhs[graph.rel == 0])
    assert degrees.max() > 8 * np.median(degrees)  # heavy-tailed
    lhs, rhs = np.arange(40), np.arange(40) * 13
    for rel, label in ENGAGEMENT_LABEL.items():  # the oracle is the world's true probability
        prob = world.true_probabilities(lhs, rhs)[label]
        got = planted_log_intensity(world, rel, lhs, rhs, pairwise=True) - np.log(world.tweet_popularity[rhs])
        np.testing.assert_allclose(got, np.log(prob), rtol=1e-5, atol=1e-5)
    for rel in ("fav", "reply", "retweet", "magic_recs", "follow"):  # the oracle's grid form: the same values
        right = np.arange(world.params.n_authors if rel == "follow" else 300)
        matrix = planted_log_intensity(world, rel, lhs, right)
        pairs = planted_log_intensity(world, rel, np.repeat(lhs, right.size), np.tile(right, lhs.size), pairwise=True)
        assert matrix.shape == (lhs.size, right.size)
        np.testing.assert_allclose(matrix, pairs.reshape(matrix.shape), rtol=0, atol=1e-5)  # float32 rounding
    with pytest.raises(StudyError, match="is_good_clicked_convo_desc_v2 is not a root label"):
        world.root_probability_grid("recap.engagement.is_good_clicked_convo_desc_v2", lhs, rhs)


def test_states_occur_once_per_pair_and_replies_may_repeat(planted):
    graph = load_graph(planted)
    names = [r.name for r in graph.relations]
    for rel, name in enumerate(names):
        pairs = np.unique(np.stack([graph.lhs[graph.rel == rel], graph.rhs[graph.rel == rel]]), axis=1).shape[1]
        edges = int((graph.rel == rel).sum())
        if name in ONCE_PER_PAIR:
            assert pairs == edges, name  # a follow, like, retweet or notification happens once
        else:
            assert pairs < edges  # replies to one tweet by one user repeat
    assert ONCE_PER_PAIR == {"fav", "retweet", "magic_recs", "follow"}


def test_drawn_once_pairs_still_follow_the_planted_intensity(planted):
    """Removing repeats keeps a pair's presence monotone in its intensity: per user, the follows
    drawn are the authors the oracle ranks high (its mean rank far above a random author's)."""
    graph = load_graph(planted)
    world = World(graph.world)
    follow = [r.name for r in graph.relations].index("follow")
    users, authors = graph.lhs[graph.rel == follow], graph.rhs[graph.rel == follow]
    grid = planted_log_intensity(world, "follow", np.arange(300), np.arange(200))
    rank = (grid[users][:, None, :] > grid[users, authors][:, None, None]).sum(-1).ravel()
    assert rank.mean() < 0.6 * 100  # a random author's mean rank among 200 is 99.5


def test_unseen_pairs_leave_out_held_out_pairs_that_repeat_a_training_pair():
    held_out = (np.array([0, 0, 1, 1]), np.array([1, 2, 3, 3]))
    known = (np.array([0, 0, 1]), np.array([1, 2, 3]))
    train = (np.array([0, 1]), np.array([2, 0]))  # (0, 2) repeats a training pair
    q = _queries(held_out, known, train, "rhs", (2, 4))
    assert q.seen.tolist() == [False, True, False, False]  # only (0, 2) occurs in training


def _hf_table(kind, n=500, seed=0):
    rng = np.random.default_rng(seed)
    right = "author_index" if kind == "follow" else "tweet_index"
    return pa.table({"user_index": rng.integers(0, 50, n), right: rng.integers(0, 80, n),
                     "time_chunk": rng.integers(0, 5, n)})


@pytest.mark.parametrize("fmt", ["csv", "zip", "parquet"])
@pytest.mark.parametrize("kind", ["follow", "fav"])
def test_hugging_face_schemas(tmp_path, fmt, kind):
    table = _hf_table(kind)
    csv_path = tmp_path / "edges.csv"
    import pyarrow.csv as pacsv

    pacsv.write_csv(table, csv_path)
    path = {"csv": csv_path, "zip": tmp_path / "edges.zip", "parquet": tmp_path / "edges.parquet"}[fmt]
    if fmt == "zip":
        with zipfile.ZipFile(path, "w") as archive:
            archive.write(csv_path, "edges.csv")
    if fmt == "parquet":
        pq.write_table(table, path)
    graph = load_graph(path)
    right = "author_index" if kind == "follow" else "tweet_index"
    assert graph.relations[0].name == kind and graph.relations[0].rhs == ("author" if kind == "follow" else "tweet")
    np.testing.assert_array_equal(graph.lhs, table.column("user_index").to_numpy())
    np.testing.assert_array_equal(graph.rhs, table.column(right).to_numpy())
    assert (graph.rel == 0).all() and graph.tables["user"] == table.column("user_index").to_numpy().max() + 1
    assert load_graph(path, relation_name="magic_recs").relations[0].name == ("magic_recs")


def test_splits_by_time_and_at_random(planted):
    graph = load_graph(planted)
    by_time = split_graph(graph)
    assert by_time["train"].time_chunk.max() < by_time["valid"].time_chunk.min() <= by_time["test"].time_chunk.min()
    assert sum(len(s) for s in by_time.values()) == len(graph)
    random = split_graph(graph, SplitSpec(kind="random", seed=3))
    assert 0.07 < len(random["test"]) / len(graph) < 0.13
    assert len(np.unique(random["test"].time_chunk)) > 1


# ---------------------------------------------------------------- bad input


def _write_edges(path, **columns):
    pq.write_table(pa.table(columns), path)


def test_missing_column_names_file_and_column(tmp_path):
    path = tmp_path / "follow.parquet"
    _write_edges(path, user_index=np.arange(5), author_index=np.arange(5))
    with pytest.raises(StudyError, match=r"follow.parquet: missing column time_chunk"):
        load_graph(path)
    _write_edges(path, user_index=np.arange(5), time_chunk=np.arange(5))
    with pytest.raises(StudyError, match=r"follow.parquet: missing column author_index or tweet_index"):
        load_graph(path)


def _corrupt_planted(planted, tmp_path, column, value):
    bad = tmp_path / "bad"
    bad.mkdir(parents=True)
    table = pq.read_table(planted / "edges.parquet")
    values = table.column(column).to_numpy().copy()
    values[7] = value
    pq.write_table(table.set_column(table.column_names.index(column), column, pa.array(values)), bad / "edges.parquet")
    # a consistent manifest (checksum updated), so the values themselves must be caught
    manifest = json.loads((planted / "manifest.json").read_text())
    manifest["files"][0]["sha256"] = file_sha256(bad / "edges.parquet")
    (bad / "manifest.json").write_text(json.dumps(manifest))
    return bad


def test_out_of_range_and_unknown_relation(planted, tmp_path):
    with pytest.raises(StudyError, match=r"edges.parquet: column rhs has id 99999 out of range for table"):
        load_graph(_corrupt_planted(planted, tmp_path / "a", "rhs", 99999))
    with pytest.raises(StudyError, match=r"edges.parquet: column rel has unknown relation id 9"):
        load_graph(_corrupt_planted(planted, tmp_path / "b", "rel", 9))
    path = tmp_path / "fave.csv"
    path.write_text("user_index,tweet_index,time_chunk\n0,1,0\n-3,2,0\n")
    with pytest.raises(StudyError, match=r"fave.csv: column user_index has negative id -3"):
        load_graph(path)


def test_empty_split_and_nothing_half_written(tmp_path):
    path = tmp_path / "fave.parquet"
    _write_edges(path, user_index=np.arange(20), tweet_index=np.arange(20), time_chunk=np.zeros(20, dtype=np.int64))
    with pytest.raises(StudyError, match=r"fave.parquet: the valid split is empty \(column time_chunk"):
        split_graph(load_graph(path))
    out = tmp_path / "run"
    with pytest.raises(StudyError, match="time_chunk"):
        _train(path, out, steps=1)
    assert not out.exists()
    big = tmp_path / "big.parquet"
    _write_edges(big, user_index=np.arange(20), tweet_index=np.arange(20) * 5000, time_chunk=np.arange(20))
    with pytest.raises(StudyError, match=r"table tweet has 95,001 entities but twhin_study.yaml "
                                         r"model.embeddings.tables.tweet.num_embeddings is 20000"):
        _train(big, out, steps=1)
    assert not out.exists()


# ---------------------------------------------------------------- the model's maths


def test_score_matches_hand_computation():
    lhs = torch.tensor([[1.0, 2.0]])
    rhs = torch.tensor([[3.0, -1.0]]) + torch.tensor([0.5, 0.5])  # e_rhs + t_rel
    # <(1,2), (3.5, -0.5)> = 3.5 - 1 = 2.5
    assert relation_scores(lhs, rhs, uniform=0, in_batch=0)[0].item() == pytest.approx(2.5)


def test_negatives_are_labelled_zero_with_published_weight():
    # Two relations' blocks: U = 2 uniform rows, then the edges (8 and 4); S = 3.
    lhs, rhs = torch.randn(10, 4), torch.randn(10, 4)
    blocks = [relation_scores(lhs, rhs, 2, 3), relation_scores(lhs[:6], rhs[:6], 2, 3)]
    (pos, neg), _ = blocks
    assert pos.shape == (8,) and neg.shape == (2 * (2 + 3), 8)
    torch.testing.assert_close(pos, (lhs[2:] * rhs[2:]).sum(1))
    torch.testing.assert_close(neg[:5], rhs[:5] @ lhs[2:].T)  # rhs corrupted: 2 uniform + first 3 edges
    torch.testing.assert_close(neg[5:], lhs[:5] @ rhs[2:].T)  # lhs corrupted
    weights = negative_weights(3, 2, 7.0)
    torch.testing.assert_close(weights, torch.tensor([7 / 4] * 2 + [1 / 6] * 3).repeat(2))
    assert weights[[2, 3, 4, 7, 8, 9]].sum().item() == pytest.approx(1.0)  # in-batch: B/(2·B·S) each
    assert weights[[0, 1, 5, 6]].sum().item() == pytest.approx(7.0)  # uniform: W per edge
    # The loss is BCE-with-logits (label 1 positives, label 0 weighted negatives), mean over all terms.
    logits = torch.cat([torch.cat([p, n.T.reshape(-1)]) for p, n in blocks])
    labels = torch.cat([torch.cat([torch.ones_like(p), torch.zeros(n.numel())]) for p, n in blocks])
    per_term = torch.cat([torch.cat([torch.ones_like(p), weights.repeat(p.numel())]) for p, n in blocks])
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels, weight=per_term)
    assert twhin_loss(blocks, 2, 7.0).item() == pytest.approx(expected.item())


def test_batch_blocks_are_uniform_rows_then_edges():
    cfg = load_twhin_config()
    u = cfg.train_data.uniform_negatives  # uniform rows per relation
    rel = torch.tensor([4, 0, 4, 1, 0])
    lhs, rhs = torch.arange(5) * 10, torch.tensor([7, 8, 9, 10, 11])
    kjt, counts = edges_to_kjt(lhs, rel, rhs, cfg, torch.Generator().manual_seed(0))
    assert counts == [2, 1, 0, 0, 2] and kjt.stride() == 5 + 5 * u
    bags = kjt.to_dict()
    user = bags["lhs_user"].values()
    assert user.numel() == 5 + 5 * u and user[u:u + 2].tolist() == [10, 40]  # relation 0: its edges in batch order
    assert user[-2:].tolist() == [0, 20] and bool((user < 2000).all())
    author = bags["rhs_author"]  # only follow (relation 4, the last block) has an author rhs
    assert author.lengths()[:4 * u + 3].eq(0).all() and author.values()[-2:].tolist() == [7, 9]


def test_sampled_softmax_is_the_cross_entropy_of_the_true_entity():
    lhs, rhs = torch.randn(10, 4), torch.randn(10, 4)
    pos, neg = relation_scores(lhs, rhs, 2, 0)  # 2 uniform candidates per side, 8 edges
    per_side = [torch.nn.functional.cross_entropy(torch.cat([pos[:, None], part.T], 1), torch.zeros(8, dtype=torch.long))
                for part in (neg[:2], neg[2:])]
    assert softmax_loss([(pos, neg)]).item() == pytest.approx(sum(per_side).item() / 2)


def test_node_biases_add_to_every_score():
    lhs, rhs = torch.randn(7, 3), torch.randn(7, 3)
    b_lhs, b_rhs = torch.randn(7), torch.randn(7)
    pos, neg = relation_scores(lhs, rhs, 2, 1, b_lhs, b_rhs)
    plain_pos, plain_neg = relation_scores(lhs, rhs, 2, 1)
    torch.testing.assert_close(pos, plain_pos + b_lhs[2:] + b_rhs[2:])
    torch.testing.assert_close(neg[:3], plain_neg[:3] + b_rhs[:3, None] + b_lhs[2:])  # rhs candidates, edge's lhs
    torch.testing.assert_close(neg[3:], plain_neg[3:] + b_lhs[:3, None] + b_rhs[2:])


def test_node_bias_run_learns_biases_and_exports_exact_scores(planted, tmp_path):
    out = tmp_path / "bias"
    _train(planted, out, steps=20, batch_size=512, node_bias=True)
    run = load_trained(out)
    assert run.cfg.model.node_bias and set(run.biases) == {"user", "tweet", "author"}
    assert np.abs(run.biases["tweet"]).max() > 0  # the biases learned
    assert _cli(["twhin-export", "--run", str(out), "--out", str(tmp_path / "e.parquet")]) == 0
    tables = load_ranker_embeddings(tmp_path / "e.parquet")
    follow = [r.name for r in run.cfg.relations].index("follow")
    assert run.biases["tweet"].shape == (len(run.cfg.relations), run.cfg.table("tweet").num_embeddings)
    expected = (run.tables["user"][:4] @ (run.tables["author"][:3] + run.translations[follow]).T
                + run.biases["user"][follow, :4, None] + run.biases["author"][follow, None, :3])
    np.testing.assert_allclose(tables["user_embedding"][:4] @ tables["author_embedding"][:3].T, expected,
                               rtol=1e-4, atol=1e-4)


def test_node_biases_are_per_relation_so_one_user_can_rank_tweets_differently_per_relation():
    """Without them <e_u, e_x + t_r> orders a user's tweets the same in every relation; with them a
    batch of one relation moves only that relation's biases, and the orders can differ."""
    from studylib.twhin.evaluate import EmbeddingScorer

    cfg = load_twhin_config()
    cfg = cfg.with_changes({("model", "node_bias"): True})
    names = [r.name for r in cfg.relations]
    fav, retweet = names.index("fav"), names.index("retweet")
    model = TwhinModel(cfg)
    lhs, rhs = torch.randint(0, 100, (64,)), torch.randint(0, 100, (64,))
    batch_loss(cfg, model(*edges_to_kjt(lhs, torch.full((64,), fav), rhs, cfg,
                                        torch.Generator().manual_seed(0)))).backward()
    grad = model.biases["tweet"].grad
    assert grad[fav].abs().sum() > 0 and grad[torch.arange(len(names)) != fav].abs().sum() == 0

    rng = np.random.default_rng(0)
    tables = {t.name: rng.standard_normal((t.num_embeddings, cfg.dim)).astype(np.float32) * 0.01 for t in cfg.tables}
    biases = {t.name: np.zeros((len(names), t.num_embeddings), np.float32) for t in cfg.tables}
    biases["tweet"][fav, :10], biases["tweet"][retweet, :10] = np.arange(10), -np.arange(10)
    scorer = EmbeddingScorer("b", tables, np.zeros((len(names), cfg.dim), np.float32), cfg.relations, biases)
    user, tweets = np.array([0]), np.arange(10)
    fav_order = np.argsort(-scorer.matrix(fav, user, tweets)[0])
    assert fav_order.tolist() == list(range(9, -1, -1))
    assert np.argsort(-scorer.matrix(retweet, user, tweets)[0]).tolist() == list(range(10))
    plain = EmbeddingScorer("p", tables, rng.standard_normal((len(names), cfg.dim)).astype(np.float32), cfg.relations)
    assert (np.argsort(-plain.matrix(fav, user, tweets)[0]) == np.argsort(-plain.matrix(retweet, user, tweets)[0])).all()


def test_node_biases_start_at_each_relations_popularity():
    from studylib.twhin.graph import Graph
    from studylib.twhin.train import initial_state

    cfg = load_twhin_config().with_changes({("model", "node_bias"): True})
    names = [r.name for r in cfg.relations]
    fav, follow = names.index("fav"), names.index("follow")
    edges = Graph({t.name: t.num_embeddings for t in cfg.tables}, tuple(cfg.relations), np.array([0, 0, 1, 2, 2]),
                  np.array([fav, fav, fav, follow, follow]), np.array([5, 5, 7, 3, 3]), np.zeros(5, np.int64), "test")
    state = initial_state(cfg, 0, edges)
    tweet, user, author = state["biases.tweet"], state["biases.user"], state["biases.author"]
    assert tweet.shape == (len(names), cfg.table("tweet").num_embeddings)
    assert tweet[fav, 5].item() == pytest.approx(np.log(3)) and tweet[fav, 7].item() == pytest.approx(np.log(2))
    assert tweet[fav].count_nonzero() == 2 and tweet[names.index("reply")].count_nonzero() == 0
    assert user[fav, 0].item() == pytest.approx(np.log(3)) and user[follow, 2].item() == pytest.approx(np.log(3))
    assert author[follow, 3].item() == pytest.approx(np.log(3)) and author[fav].count_nonzero() == 0
    assert initial_state(cfg, 0)["biases.tweet"].count_nonzero() == 0  # no edges given: zeros


def test_translations_receive_gradients_and_change():
    cfg = load_twhin_config()
    model = TwhinModel(cfg)
    lhs, rhs = torch.randint(0, 100, (64,)), torch.randint(0, 100, (64,))
    rel = torch.randint(0, len(cfg.relations), (64,))
    opt = torch.optim.SGD([model.translations], lr=0.5)
    before = model.translations.detach().clone()
    batch_loss(cfg, model(*edges_to_kjt(lhs, rel, rhs, cfg, torch.Generator().manual_seed(0)))).backward()
    assert model.translations.grad is not None and model.translations.grad.abs().sum() > 0
    opt.step()
    assert not torch.equal(before, model.translations.detach())


def _collections_forward(tables, kjt):
    """FusedTables through each torchrec collection's own forward (the reference)."""
    pooled = {}
    for collection in tables.collections.values():
        pooled.update(collection(kjt).to_dict())
    return pooled


@pytest.mark.parametrize("config, changes", [
    ("twhin_local.yaml", {}),
    ("twhin_study.yaml", {}),  # three tables, Adagrad
    ("twhin_local.yaml", {("model", "relations", 3, "rhs"): "user"}),  # a table on both sides: two features
])
def test_direct_fbgemm_lookups_train_exactly_as_the_collections_forward(config, changes, monkeypatch):
    """FusedTables calls each collection's fbgemm lookup directly: the same pooled outputs, and
    after training steps the same tables, fused optimizer state and translations, bit for bit."""
    from studylib.twhin import model as twhin_model
    from studylib.twhin.train import _stateful_tensors, initial_state, scatter_full_state

    cfg = load_twhin_config(shipped_config_path(config)).with_changes(changes)
    gen = torch.Generator().manual_seed(0)
    sizes = {t.name: t.num_embeddings for t in cfg.tables}
    rel = torch.randint(0, len(cfg.relations), (512,), generator=gen)
    lhs = torch.stack([torch.randint(0, sizes[cfg.relations[r].lhs], (), generator=gen) for r in rel.tolist()])
    rhs = torch.stack([torch.randint(0, sizes[cfg.relations[r].rhs], (), generator=gen) for r in rel.tolist()])

    def trained() -> dict:
        model = TwhinModel(cfg)
        scatter_full_state(model, initial_state(cfg, 0))
        optimizer = torch.optim.SGD([model.translations], lr=cfg.model.translation_optimizer.lr)
        for step in range(4):
            kjt, counts = edges_to_kjt(lhs, rel, rhs, cfg, torch.Generator().manual_seed(step))
            optimizer.zero_grad()
            batch_loss(cfg, model(kjt, counts)).backward()
            optimizer.step()
        return {k: v.detach().clone() for k, v in _stateful_tensors(model).items()}

    direct = trained()
    with monkeypatch.context() as patch:
        patch.setattr(twhin_model.FusedTables, "forward", _collections_forward)
        reference = trained()
    assert direct.keys() == reference.keys()
    for key in direct:
        assert torch.equal(direct[key], reference[key]), key
    assert not torch.equal(direct["translations"], torch.zeros_like(direct["translations"]))

    model = TwhinModel(cfg)
    kjt, _ = edges_to_kjt(lhs, rel, rhs, cfg, gen)
    with torch.no_grad():
        pooled, expected = model.ebc(kjt), _collections_forward(model.ebc, kjt)
    assert pooled.keys() == expected.keys()
    for feature in pooled:
        assert torch.equal(pooled[feature], expected[feature]), feature


# ---------------------------------------------------------------- training, evaluation, export


@pytest.fixture(scope="module")
def trained_run(planted, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "run"
    _train(planted, out, steps=150, batch_size=1024)
    return out


def test_training_beats_random_below_oracle(trained_run, planted):
    frame = evaluate_run(trained_run, n_resamples=50)
    main = frame[(frame["direction"] == "rhs") & (frame["ranking"] == "filtered") & (frame["pairs"] == "unseen")]
    mrr = main.set_index(["relation", "scorer"])["mrr"]
    for rel, margin in (("fav", 3), ("follow", 1.5), ("magic_recs", 2)):  # 200 authors: follow's floor is high
        assert mrr[(rel, "trained")] > margin * mrr[(rel, "random")], rel
        assert mrr[(rel, "oracle")] > mrr[(rel, "trained")], rel
    # Every (relation, direction, scorer) has raw and filtered rows for all and unseen pairs, with intervals.
    assert len(frame) == 5 * 2 * 6 * 2 * 2 and (frame["mrr_low"] <= frame["mrr"]).all() and (frame["mrr"] <= frame["mrr_high"]).all()
    assert (frame.pivot_table(index=["relation", "direction", "scorer", "pairs"], columns="ranking", values="mrr")
            .eval("filtered >= raw").all())  # removing other true entities can only raise the target
    on_disk = pd.read_csv(trained_run / "evaluation.csv")
    assert on_disk.shape == frame.shape and (on_disk["sample"] == "all").all()
    history = (trained_run / "history.csv").read_text().splitlines()
    first, last = float(history[1].split(",")[1]), float(history[-1].split(",")[1])
    assert last < first


def test_translation_offsets_cannot_reorder_tweets_for_a_user(trained_run):
    """The docs' and the chapter's claim about the operator, on a trained run: for one user every
    relation into the tweet table ranks the tweets in the same order, and the relations differ by
    a per-user offset <e_u, t_r>, which translation_offsets describes."""
    run = load_trained(trained_run)
    scorer, names = trained_scorer(run), [r.name for r in run.cfg.relations]
    users, tweets = np.arange(5), np.arange(run.tables["tweet"].shape[0])
    fav, reply = scorer.matrix(names.index("fav"), users, tweets), scorer.matrix(names.index("reply"), users, tweets)
    difference = reply - fav  # constant along each user's row: no reordering of tweets
    np.testing.assert_allclose(difference, np.repeat(difference[:, :1], tweets.size, axis=1), rtol=0, atol=1e-4)
    for user in users:  # the same tweet order (up to float32 rounding of near-ties)
        assert stats.spearmanr(fav[user], reply[user]).statistic > 0.9999
    offsets = translation_offsets(run)
    assert list(offsets.index) == names
    user_offsets = run.tables["user"] @ run.translations[names.index("reply")]
    assert offsets.loc["reply", "offset_std"] == pytest.approx(float(user_offsets.std()), rel=1e-6)
    assert offsets.loc["reply", "translation_norm"] == pytest.approx(float(np.linalg.norm(run.translations[names.index("reply")])), rel=1e-6)
    assert (offsets["offset_std"] > 0).all()  # the translations learned: ranking users for a tweet, they matter


def test_filtered_ranks_match_a_direct_count():
    """rank_pairs against a by-hand count on a tiny relation with known scores."""
    class Fixed:
        def matrix(self, rel, lhs, rhs):
            return table[np.ix_(lhs, rhs)]

    table = np.array([[0.9, 0.5, 0.5, 0.1], [0.2, 0.8, 0.3, 0.3]])  # 2 users x 4 tweets
    held_out = (np.array([0, 0, 1]), np.array([1, 2, 3]))
    known = (np.array([0, 0, 0, 1, 1]), np.array([0, 1, 2, 3, 1]))  # plus training pairs (0, 0), (1, 1)
    train = (np.array([0, 1]), np.array([0, 1]))
    q = _queries(held_out, known, train, "rhs", (2, 4))
    raw, filtered = rank_pairs(Fixed(), 0, q, "rhs")
    # user 0, tweet 1 (0.5): 0.9 above, tweet 2 ties -> 2.5; filtered drops tweets 0 and 2 (known) -> 1
    # user 1, tweet 3 (0.3): 0.8 above, tweet 2 ties -> 2.5; filtered drops tweet 1 (known) -> 1.5
    np.testing.assert_allclose(raw, [2.5, 2.5, 2.5])
    np.testing.assert_allclose(filtered, [1.0, 1.0, 1.5])
    assert q.seen.tolist() == [False, False, False]
    q = _queries(held_out, known, train, "lhs", (2, 4))  # users for a tweet: tweet 3 -> user 1 (0.3 vs 0.1)
    raw, _ = rank_pairs(Fixed(), 0, q, "lhs")
    np.testing.assert_allclose(raw, [2.0, 1.0, 1.0])  # tweet 1: user 1 (0.8) above user 0 (0.5)


def test_popularity_scorer_ranks_by_training_degree(planted):
    cfg = load_twhin_config()
    splits = load_splits(str(planted), cfg, SplitSpec())
    scorer = PopularityScorer(splits["train"])
    train = splits["train"]
    fav = train.rhs[train.rel == 0]
    degree = np.bincount(fav, minlength=train.tables["tweet"])
    scores = scorer.matrix(0, np.array([0, 1]), np.arange(train.tables["tweet"]))
    assert np.ptp(scores[0] - scores[1]) < 1e-12  # the same order of tweets for every user
    np.testing.assert_allclose(scores[0] - scores[0].min(), np.log1p(degree) - np.log1p(degree).min())


def test_pooled_popularity_sums_the_degree_over_relations_of_one_table(planted):
    splits = load_splits(str(planted), load_twhin_config(), SplitSpec())
    train = splits["train"]
    tweet_relations = [i for i, r in enumerate(train.relations) if r.rhs == "tweet"]
    degree = sum(np.bincount(train.rhs[train.rel == i], minlength=train.tables["tweet"]) for i in tweet_relations)
    pooled = PooledPopularityScorer(train)
    for i in tweet_relations:  # one order of tweets, whatever the relation
        scores = pooled.matrix(i, np.array([0]), np.arange(train.tables["tweet"]))[0]
        np.testing.assert_allclose(scores - scores.min(), np.log1p(degree) - np.log1p(degree).min())


def test_share_over_popularity_runs_from_popularity_to_the_oracle():
    user = np.arange(400) % 100
    popularity, oracle = np.full(400, 10.0), np.full(400, 2.0)
    for ranks, share in ((oracle, 1.0), (popularity, 0.0), (np.full(400, 4.0), (1 / 4 - 1 / 10) / (1 / 2 - 1 / 10))):
        row = rank_metrics(ranks, np.arange(400), user, n_resamples=100, bar=(popularity, oracle))
        assert row["share_over_popularity"] == pytest.approx(share)
        assert row["oracle_over_popularity"] == pytest.approx(0.5 - 0.1)
        assert row["share_over_popularity_low"] == pytest.approx(share)  # every user alike: no spread
    assert "share_over_popularity" not in rank_metrics(oracle, np.arange(400), user, n_resamples=10)
    # the paired difference to popularity: half the users gain 1/2 - 1/10, half lose 1/10 - 1/20
    mixed = np.where(user < 50, 2.0, 20.0)
    row = rank_metrics(mixed, np.arange(400), user, n_resamples=500, bar=(popularity, oracle))
    assert row["mrr_over_popularity"] == pytest.approx(((0.5 - 0.1) + (0.05 - 0.1)) / 2)
    assert row["mrr_over_popularity_low"] < row["mrr_over_popularity"] < row["mrr_over_popularity_high"]
    assert row["mrr_over_popularity_low"] > 0  # ahead of popularity pair by pair, interval and all


def test_bootstrap_intervals_cover_and_widen_with_fewer_users():
    rng = np.random.default_rng(0)

    def clustered(users):  # one user's pairs share their ranks (correlated, as in real feeds)
        user = np.arange(4000) % users
        return rank_metrics(rng.integers(1, 50, users)[user].astype(float), np.arange(4000), user, n_resamples=300)

    many, few = clustered(400), clustered(20)
    for row in (many, few):
        assert row["mrr_low"] < row["mrr"] < row["mrr_high"] and row["hits@10_low"] < row["hits@10"] < row["hits@10_high"]
    assert few["mrr_high"] - few["mrr_low"] > many["mrr_high"] - many["mrr_low"]


def test_resume_continues_exactly(planted, tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    _train(planted, straight, steps=6, batch_size=256, checkpoint_every=3)
    _train(planted, split, steps=3, batch_size=256)
    with pytest.raises(StudyError, match="is not empty; pass --resume"):
        _train(planted, split, steps=6, batch_size=256)
    _train(planted, split, steps=6, batch_size=256, resume=True)
    a, b = load_trained(straight), load_trained(split)
    assert a.step == b.step == 6
    for name in a.tables:
        np.testing.assert_allclose(a.tables[name], b.tables[name], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a.translations, b.translations, rtol=1e-5, atol=1e-6)
    assert np.abs(a.translations).sum() > 0  # the translations learned


def test_export_for_the_ranker(trained_run, tmp_path):
    out = tmp_path / "emb.parquet"
    assert _cli(["twhin-export", "--run", str(trained_run), "--out", str(out)]) == 0
    tables = load_ranker_embeddings(out)
    run = load_trained(trained_run)
    assert set(tables) == {"user_embedding", "user_eng_embedding", "author_embedding"}
    assert tables["user_embedding"].shape == (2000, 200) and tables["author_embedding"].shape == (400, 200)
    assert tables["user_eng_embedding"].shape == (2000, 200) and tables["user_embedding"].dtype == np.float32
    # user_embedding · author_embedding is the model's follow score.
    follow = [r.name for r in run.cfg.relations].index("follow")
    expected = run.tables["user"][:5] @ (run.tables["author"][:3] + run.translations[follow]).T
    np.testing.assert_allclose(tables["user_embedding"][:5] @ tables["author_embedding"][:3].T, expected,
                               rtol=1e-4, atol=1e-4)
    q = orthonormal_map(33, 200)
    np.testing.assert_allclose(q @ q.T, np.eye(33), atol=1e-10)


def test_cli_generate_and_evaluate(tmp_path, trained_run, capsys):
    assert _cli(["twhin-generate", "--out", str(tmp_path / "g"), "--edges", "3000", "--users", "50", "--tweets",
                 "200", "--authors", "100", "--quiet"]) == 0
    assert "3,000 edges" in capsys.readouterr().out
    with pytest.raises(StudyError, match="cannot draw [0-9,]+ distinct [a-z_]+ pairs .each may occur once.; ask for fewer"):
        _cli(["twhin-generate", "--out", str(tmp_path / "full"), "--edges", "3000", "--users", "5", "--tweets",
              "200", "--authors", "5", "--quiet"])  # 25 possible follows for ~600 follow edges, 1,000 likes for ~1,200
    assert not (tmp_path / "full" / "edges.parquet").exists()
    assert _cli(["twhin-evaluate", "--run", str(trained_run), "--max-edges", "50", "--resamples", "20", "--quiet"]) == 0
    assert "oracle" in capsys.readouterr().out
    assert set(pd.read_csv(trained_run / "evaluation.csv")["n_pairs"]) <= set(range(51))
    with pytest.raises(StudyError, match="--beside 'oops': expected NAME=RUN_FOLDER"):
        _cli(["twhin-evaluate", "--run", str(trained_run), "--beside", "oops"])


# ---------------------------------------------------------------- two processes


def test_torchrun_two_processes_shard_the_tables(planted, tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    out = tmp_path / "dist"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2",
                           str(REPO / "tests" / "twhin_dist_check.py"), str(planted), str(out), "4"],
                          capture_output=True, text=True, timeout=120, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "WORLD_SIZE=2 STEP=4" in proc.stdout
    shares: dict[str, list[float]] = {}
    for line in proc.stdout.splitlines():
        if line.startswith("SHARE "):
            _, rank, table, share = line.split()
            shares.setdefault(table, []).append(float(share))
    assert set(shares) == {"user", "tweet", "author"}, proc.stdout
    for table, parts in shares.items():  # each process holds a part of each table, the parts make the whole
        assert len(parts) == 2 and all(0 < part < 1 for part in parts), (table, parts)
        assert sum(parts) == pytest.approx(1.0), (table, parts)
    run = load_trained(out)
    assert run.run["world_size"] == 2
    assert run.tables["tweet"].shape == (20000, 32) and np.abs(run.tables["tweet"]).sum() > 0


class _Payload:
    """A pickle that would run a command when loaded unsafely."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_crafted_twhin_checkpoint_is_refused_and_runs_nothing(planted, tmp_path, capsys):
    run = tmp_path / "run"
    _train(planted, run, steps=2, batch_size=256)
    marker = tmp_path / "pwned"
    torch.save({"step": 2, "state": _Payload(marker)}, run / "checkpoint.pt")
    with pytest.raises(StudyError, match=r"checkpoint.pt: not a readable TwHIN checkpoint \(UnpicklingError\)"):
        load_trained(run)  # what twhin-export and twhin-evaluate read
    with pytest.raises(StudyError, match="not a readable TwHIN checkpoint"):
        _train(planted, run, steps=4, batch_size=256, resume=True)
    from studylib.cli import main

    assert main(["twhin-export", "--run", str(run), "--out", str(tmp_path / "e.parquet")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a readable TwHIN checkpoint" in err[0]
    assert not marker.exists() and not (tmp_path / "e.parquet").exists()


def test_changed_graph_file_is_refused_by_its_checksum(planted, tmp_path):
    import shutil

    copy = tmp_path / "graph"
    shutil.copytree(planted, copy)
    table = pq.read_table(copy / "edges.parquet")
    pq.write_table(table.slice(0, table.num_rows - 1), copy / "edges.parquet")  # one edge dropped, still valid
    with pytest.raises(StudyError, match=r"edges.parquet: contents differ from manifest.json \(sha256 mismatch\)"):
        _train(copy, tmp_path / "run", steps=1)
    assert not (tmp_path / "run").exists()


def test_neighbourhood_scorer_counts_adamic_adar_paths_and_not_the_query_itself():
    from studylib.twhin.graph import Graph, Relation
    from studylib.twhin.ranks import NeighbourhoodScorer

    # users 0, 1, 2 and tweets 0..3: user 0 liked tweet 0; user 1 liked tweets 0 and 1; user 2 liked 0, 1 and 2
    lhs, rhs = np.array([0, 1, 1, 2, 2, 2]), np.array([0, 0, 1, 0, 1, 2])
    graph = Graph({"user": 3, "tweet": 4}, (Relation("fav", "user", "tweet"),), lhs, np.zeros(6, np.int64), rhs,
                  np.zeros(6, np.int64), "constructed")
    scores = NeighbourhoodScorer(graph).matrix(0, np.array([0]), np.arange(4))[0]
    # tweet 1: paths 0 -> tweet 0 -> user 1 (2 likes) and -> user 2 (3 likes); tweet 2: only through user 2
    tie = NeighbourhoodScorer.TIE_BREAK * np.log1p(np.array([3, 2, 1, 0]))
    np.testing.assert_allclose(scores - tie, [1 / np.log(3) + 1 / np.log(4), 1 / np.log(3) + 1 / np.log(4),
                                              1 / np.log(4), 0.0], rtol=1e-9)
    # tweet 0 is user 0's own: the path back through user 0 is not counted, the ones through users 1, 2 are


def test_held_out_early_stopping_keeps_the_best_validation_state_and_readers_take_it(planted, tmp_path):
    from studylib.twhin.runs import BEST, STOPPING, VALIDATION, load_trained, read_checkpoint

    out = tmp_path / "stopped"
    result = _train(planted, out, 40, node_bias=True, val_every=10, stop_patience=2)
    checks = (out / VALIDATION).read_text().splitlines()[1:]
    steps = [int(line.split(",")[0]) for line in checks]
    scores = [float(line.split(",")[1]) for line in checks]
    assert steps[0] == 0 and steps == sorted(steps) and steps[-1] == result["step"]  # the start is checked too
    stopping = json.loads((out / STOPPING).read_text())
    assert stopping["best_step"] == steps[int(np.argmax(scores))] and stopping["best_score"] == pytest.approx(max(scores), abs=1e-6)
    assert stopping["stopped_early"] == (steps[-1] < 40) and len(steps) - 1 - int(np.argmax(scores)) <= 2
    best = read_checkpoint(out / BEST)
    assert best["step"] == stopping["best_step"] and not any(k.startswith("fused_optimizer") for k in best["state"])
    run = load_trained(out)  # evaluation and export read the best state, not the last step
    assert run.step == stopping["best_step"]
    np.testing.assert_array_equal(run.tables["user"], best["state"]["ebc.embedding_bags.user.weight"].numpy())
    # the same settings give the same checks (deterministic on CPU)
    again = tmp_path / "again"
    _train(planted, again, 40, node_bias=True, val_every=10, stop_patience=2)
    assert (again / VALIDATION).read_text() == (out / VALIDATION).read_text()


def test_stopping_needs_validation_and_counts_are_checked(planted, tmp_path):
    with pytest.raises(StudyError, match="--stop-patience needs --val-every"):
        _train(planted, tmp_path / "a", 5, stop_patience=2)
    with pytest.raises(StudyError, match="--val-every and --stop-patience must be >= 0"):
        _train(planted, tmp_path / "b", 5, val_every=-1)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_every_variant_of_the_twhin_variants_benchmark_is_a_valid_config(tmp_path):
    """benchmarks/twhin_variants.py changes the study's configuration one thing at a time; each change
    must still be a configuration the strict schema accepts, so the table can be re-made."""
    import importlib.util

    from studylib.twhin.config import load_twhin_config

    spec = importlib.util.spec_from_file_location("twhin_variants", REPO / "benchmarks" / "twhin_variants.py")
    variants = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(variants)
    seen = set()
    for name in variants.VARIANTS:
        cfg = load_twhin_config(variants.variant_config(name, tmp_path))
        seen.add((cfg.dim, cfg.model.node_bias, cfg.train_data.uniform_negatives, cfg.train_data.in_batch_negatives,
                  cfg.tables[0].optimizer.lr, cfg.model.regularization_coef))
    assert len(seen) == len(variants.VARIANTS)  # each variant changes something


def test_regularization_adds_the_edges_mean_squared_embedding_norm_and_0_adds_nothing():
    """`model.regularization_coef` (PyTorch-BigGraph's name): the loss gains coef × the mean over the
    batch's edges of ||e_lhs||² + ||e_rhs||², the rows the edges themselves use (not their negatives);
    0 adds nothing. Its gradient is what reaches the fused table optimizer."""
    cfg = load_twhin_config()
    coef = 0.25
    strong = cfg.model_copy(update={"model": cfg.model.model_copy(update={"regularization_coef": coef})})
    lhs, rhs = torch.randint(0, 100, (64,)), torch.randint(0, 100, (64,))
    rel = torch.tensor([0] * 40 + [4] * 24)  # fav (user → tweet) and follow (user → author)
    model = TwhinModel(strong)
    weights = {k.split(".")[-2]: v for k, v in model.state_dict().items() if k.startswith("ebc.")}
    rhs_table = ["tweet"] * 40 + ["author"] * 24
    by_hand = sum(weights["user"][lhs[i]].pow(2).sum() + weights[rhs_table[i]][rhs[i]].pow(2).sum() for i in range(64))
    scores = model(*edges_to_kjt(lhs, rel, rhs, strong, torch.Generator().manual_seed(0)))
    assert scores.penalty.item() == pytest.approx(coef * by_hand.item() / 64, rel=1e-5)
    plain = TwhinModel(cfg)
    plain.load_state_dict(model.state_dict())
    unregularized = plain(*edges_to_kjt(lhs, rel, rhs, cfg, torch.Generator().manual_seed(0)))
    assert unregularized.penalty is None
    assert batch_loss(strong, scores).item() == pytest.approx(batch_loss(cfg, unregularized).item() + scores.penalty.item(),
                                                              rel=1e-5)

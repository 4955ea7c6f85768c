"""How personal the planted world is at several `pair_variance` values, before any model is trained.

For each value: the personal share of a top-k's true value, (oracle − popularity oracle) / (oracle −
random), on requests drawn as the study's evaluation sets draw them, and, with --twhin, each TwHIN
relation's oracle MRR over popularity's on held-out pairs that never occur in training (a 200,000-edge
planted graph, time split). docs/world.md's table is this script's output:

    .venv/bin/python benchmarks/personal_share.py 0.04 0.25 0.4 0.5 0.6 --twhin 0.5 0.6
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np
import pandas as pd

from studylib.analysis import ranking
from studylib.data.world import World, WorldParams
from studylib.ranker.weights import DEFAULT_PRESET, HEADS, load_weights


def ranker_share(pair_variance: float, requests: int, candidates: int, k: int, rate_scale: float) -> dict:
    world = World(WorldParams(rate_scale=rate_scale, pair_variance=pair_variance))
    rng = np.random.default_rng(1)
    users = np.repeat(rng.choice(world.params.n_users, requests, p=world.user_activity), candidates)
    tweets = rng.choice(world.params.n_tweets, requests * candidates, p=world.tweet_popularity)
    truth, pop = world.true_probabilities(users, tweets), world.popularity_probabilities(tweets)
    frame = pd.DataFrame({"request_id": np.arange(users.size) // candidates, "meta__user_id": users,
                          **{f"true_prob.{h}": truth[h] for h in HEADS}, **{f"popularity_prob.{h}": pop[h] for h in HEADS}})
    scored = ranking.ScoredSet.truth_only(frame, tuple(HEADS))
    weights = {DEFAULT_PRESET: load_weights(DEFAULT_PRESET).vector(HEADS)}
    return ranking.personal_shares(scored, weights, k, n_resamples=500).iloc[0].to_dict()


def twhin_ratios(pair_variance: float, rate_scale: float, edges: int) -> dict[str, float]:
    from studylib.twhin.evaluate import OracleScorer, PopularityScorer, evaluate_scorers
    from studylib.twhin.graph import load_graph
    from studylib.twhin.planted import GraphParams, generate_graph
    from studylib.twhin.splits import split_graph

    world = WorldParams(rate_scale=rate_scale, pair_variance=pair_variance)
    with tempfile.TemporaryDirectory() as folder:
        generate_graph(GraphParams(edges=edges, world=world), folder, progress=False)
        graph = load_graph(folder)
    splits = split_graph(graph)
    oracle, popularity = OracleScorer(World(world), graph.relations), PopularityScorer(splits["train"])
    oracle.name, popularity.name = "oracle", "popularity"
    rows = pd.DataFrame(evaluate_scorers([oracle, popularity], splits, n_resamples=10, baseline="popularity"))
    rows = rows[(rows["direction"] == "rhs") & (rows["ranking"] == "filtered") & (rows["pairs"] == "unseen")]
    mrr = rows.pivot(index="relation", columns="scorer", values="mrr")
    return (mrr["oracle"] / mrr["popularity"]).to_dict()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pair_variance", type=float, nargs="+", help="values of WorldParams.pair_variance")
    parser.add_argument("--twhin", type=float, nargs="*", default=[], help="values to also measure TwHIN at")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--candidates", type=int, default=50)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--rate-scale", type=float, default=20.0)
    parser.add_argument("--edges", type=int, default=200_000)
    args = parser.parse_args(argv)
    for pv in args.pair_variance:
        row = ranker_share(pv, args.requests, args.candidates, args.k, args.rate_scale)
        print(f"pair_variance {pv:g}: personal share of the top {args.k} {row['personal_share']:.3f} "
              f"({row['personal_share_low']:.3f} to {row['personal_share_high']:.3f}) on {args.requests:,} requests",
              flush=True)
    for pv in args.twhin:
        ratios = twhin_ratios(pv, args.rate_scale, args.edges)
        print(f"pair_variance {pv:g}: TwHIN oracle MRR / popularity's on unseen pairs: "
              + ", ".join(f"{r} {v:.2f}" for r, v in ratios.items()), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The `twhin-*` subcommands; `register(subparsers)` adds them to the `studylib` command."""

from __future__ import annotations

import argparse

from studylib.data.world import WorldParams
from studylib.twhin.planted import GraphParams, generate_graph
from studylib.errors import StudyError
from studylib.twhin.evaluate import RESULTS, evaluate_run, format_table
from studylib.twhin.export import export_embeddings

WORLD = WorldParams()  # the planted world's defaults, shown as the options' defaults


def _generate(args) -> int:
    world = WorldParams(n_users=args.users, n_authors=args.authors, n_tweets=args.tweets,
                        latent_dim=args.latent_dim, signal=args.signal,
                        pair_variance=args.pair_variance, seed=args.seed)
    params = GraphParams(edges=args.edges, seed=args.seed, time_chunks=args.time_chunks, world=world)
    manifest = generate_graph(params, args.out, progress=not args.quiet)
    counts = ", ".join(f"{r['name']} {r['edges']:,}" for r in manifest["relations"])
    print(f"{args.out}: {manifest['rows']:,} edges ({counts}), seed {args.seed}")
    return 0


def _train(args) -> int:
    from studylib.twhin.train import TwhinTrainArgs, train

    result = train(TwhinTrainArgs(graph=args.graph, out=args.out, config=args.config, steps=args.steps,
                                  resume=args.resume, batch_size=args.batch_size, device=args.device, seed=args.seed,
                                  checkpoint_every=args.checkpoint_every, split=args.split, relation=args.relation,
                                  node_bias=args.node_bias, val_every=args.val_every, stop_patience=args.stop_patience,
                                  progress=not args.quiet))
    print(f"{args.out}: trained to step {result['step']}, loss {result['loss']:.5f}, "
          f"{result['edges_per_s']:,.0f} edges/s")
    return 0


def _evaluate(args) -> int:
    extra = {}
    for item in args.beside or []:
        name, sep, run = item.partition("=")
        if not sep or not name or not run:
            raise StudyError(f"--beside {item!r}: expected NAME=RUN_FOLDER")
        extra[name] = run
    frame = evaluate_run(args.run, args.graph, split=args.split, max_edges=args.max_edges, n_resamples=args.resamples,
                         seed=args.seed, extra_runs=extra, progress=not args.quiet)
    print(format_table(frame))
    print(f"{args.run}/{RESULTS}: {len(frame)} rows (raw and filtered ranks, all and unseen pairs, both directions)")
    return 0


def _export(args) -> int:
    info = export_embeddings(args.run, args.out, dim=args.dim)
    rows = ", ".join(f"{name} {n:,}" for name, n in info["rows"].items())
    print(f"{args.out}: {rows} rows of width {info['width']} (trained dim {info['trained_dim']}; {info['projection']})")
    return 0


def register(subparsers) -> None:
    g = subparsers.add_parser("twhin-generate", help="write a planted TwHIN graph (Parquet edges + manifest)",
                              description="Draw a heterogeneous graph (fav, reply, retweet, magic_recs, follow) "
                                          "from the same planted world as the ranker data.")
    g.add_argument("--out", required=True, help="output folder")
    g.add_argument("--seed", type=int, default=0, help="world and edge seed (same seed, same bytes)")
    g.add_argument("--edges", type=int, default=200_000)
    g.add_argument("--time-chunks", type=int, default=10, help="distinct time_chunk values (default 10)")
    g.add_argument("--users", type=int, default=WORLD.n_users)
    g.add_argument("--authors", type=int, default=WORLD.n_authors)
    g.add_argument("--tweets", type=int, default=WORLD.n_tweets)
    g.add_argument("--latent-dim", type=int, default=WORLD.latent_dim)
    g.add_argument("--signal", type=float, default=WORLD.signal)
    g.add_argument("--pair-variance", type=float, default=WORLD.pair_variance,
                   help="share of each logit's latent variance in the user×tweet affinity (the personal part)")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g.set_defaults(func=_generate)

    t = subparsers.add_parser("twhin-train", help="train TwHIN embeddings (torchrec, DMP)",
                              description="Train TwHIN embeddings; run under torchrun to shard the tables.")
    t.add_argument("--graph", required=True, help="graph folder (twhin-generate) or a TwitterFollowGraph / "
                                                  "TwitterFaveGraph file (.csv, .zip, .parquet)")
    t.add_argument("--config", help="TwHIN config YAML (default: the shipped twhin_study.yaml)")
    t.add_argument("--steps", type=int, help="default: the config's training.num_train_steps")
    t.add_argument("--out", required=True, help="run folder (checkpoint.pt, history.csv, run.json)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    t.add_argument("--batch-size", type=int, help="edges per process (default: per_replica_batch_size)")
    t.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--checkpoint-every", type=int, help="default: the config's training.checkpoint_every_n")
    t.add_argument("--split", default="time", choices=["time", "random"],
                   help="time: the latest time_chunks are held out (default); random: a seeded 80/10/10 split")
    t.add_argument("--relation", help="relation name for a Hugging Face sample-graph file (default follow / fav)")
    t.add_argument("--node-bias", action=argparse.BooleanOptionalAction, default=None,
                   help="a learned scalar per entity added to the score (default: the config's model.node_bias)")
    t.add_argument("--val-every", type=int, default=0, metavar="N",
                   help="every N steps (and at the start) score the validation split's pairs not seen in training; "
                        "the run folder's best.pt keeps the best tables, which evaluation and export read (default 0: off)")
    t.add_argument("--stop-patience", type=int, default=0, metavar="P",
                   help="stop after P validation checks without a new best (default 0: train every step)")
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=_train)

    e = subparsers.add_parser("twhin-evaluate", help="link prediction on held-out edges",
                              description="MRR, Hits@k (with bootstrap intervals over users) and Recall@k per "
                                          "relation and direction, raw and filtered, for the trained, random, "
                                          "popularity and (planted graphs) oracle scorers.")
    e.add_argument("--run", required=True, help="run folder made by twhin-train")
    e.add_argument("--graph", help="graph (default: the one the run trained on)")
    e.add_argument("--split", default="test", choices=["valid", "test"])
    e.add_argument("--max-edges", type=int, help="rank a seeded sample of at most this many held-out pairs per "
                                                 "relation (default: all of them)")
    e.add_argument("--resamples", type=int, default=500, help="bootstrap resamples over users (default 500; 0: none)")
    e.add_argument("--beside", action="append", metavar="NAME=RUN",
                   help="rank another run on the same graph beside this one as scorer NAME (repeatable)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--quiet", action="store_true", help="no progress bar")
    e.set_defaults(func=_evaluate)

    x = subparsers.add_parser("twhin-export", help="export embeddings for the Heavy Ranker",
                              description="Write user_embedding, user_eng_embedding and author_embedding to Parquet.")
    x.add_argument("--run", required=True, help="run folder made by twhin-train")
    x.add_argument("--out", required=True, help="output .parquet file")
    x.add_argument("--dim", type=int, default=200, help="width (default 200, the ranker's)")
    x.set_defaults(func=_export)

"""The Heavy Ranker's commands: `generate` (data sets), `train`, `score`, `model-summary`.

Registered on the `studylib` command by `studylib.cli`, as TwHIN's are by `studylib.twhin.cli`.
"""

from __future__ import annotations

import json

from studylib.data.world import WorldParams
from studylib.errors import StudyError
from studylib.ranker.weights import DEFAULT_PRESET, PRESETS
from studylib.ranker.args import TrainArgs
from studylib.ranker.train import PAIRINGS
from studylib.data.generate import GeneratorParams, generate
from studylib.schema import label_named, short_name
from studylib.ranker.config import PUBLISHED_CONFIG, load_config
from studylib.strict import load_yaml, shipped_config_path

WORLD = WorldParams()  # the planted world's defaults, shown as the options' defaults


def _generate(args) -> int:
    downsample = {}
    if args.downsample:
        parts = args.downsample.split(":")
        task = label_named(parts[0])
        if len(parts) == 3:
            try:
                downsample = {"pos_downsampling_rate": float(parts[1]), "neg_downsampling_rate": float(parts[2])}
            except ValueError:
                raise StudyError(f"--downsample {args.downsample}: rates must be numbers (TASK:POS:NEG)") from None
        elif len(parts) == 1:
            downsample = _published_downsampling(task)
        else:
            raise StudyError(f"--downsample {args.downsample}: use TASK or TASK:POS_RATE:NEG_RATE")
        downsample["downsample_task"] = task
    world = WorldParams(n_users=args.users, n_authors=args.authors, n_tweets=args.tweets,
                        latent_dim=args.latent_dim, signal=args.signal,
                        pair_variance=args.pair_variance, rate_scale=args.rate_scale, seed=args.world_seed)
    params = GeneratorParams(scenario=args.scenario, examples=args.examples, seed=args.seed,
                             candidates=args.candidates, compression=args.compression, world=world,
                             embeddings=args.embeddings, **downsample)
    manifest = generate(params, args.out, progress=not args.quiet)
    print(f"{args.out}: {manifest['rows']:,} examples in {len(manifest['shards'])} shard(s), "
          f"{manifest['requests']:,} requests, scenario {manifest['scenario']}, seed {manifest['seed']}")
    return 0


def _published_downsampling(task: str) -> dict:
    """The published validation downsampling rates for `task` (recap_local_prod.yaml)."""
    raw = load_yaml(shipped_config_path(PUBLISHED_CONFIG))
    rates = raw["validation_data"].get(task, {}).get("tasks", {}).get(task)
    if not rates:
        raise StudyError(f"--downsample {task}: the published config has no downsampling rates for it; "
                         "give them as TASK:POS_RATE:NEG_RATE")
    return {"pos_downsampling_rate": float(rates["pos_downsampling_rate"]),
            "neg_downsampling_rate": float(rates["neg_downsampling_rate"])}


def _train(args) -> int:
    from studylib.ranker.train import TrainArgs, train

    result = train(TrainArgs(data=args.data, out=args.out, config=args.config, steps=args.steps,
                             eval_data=args.eval_data, batch_size=args.batch_size, device=args.device,
                             resume=args.resume, keep_checkpoint=args.keep_checkpoint, seed=args.seed, eval_every=args.eval_every,
                             checkpoint_every=args.checkpoint_every, log_every=args.log_every,
                             label_pairing=args.label_pairing, output_bias=args.output_bias,
                             progress=not args.quiet, precision=args.precision, val_data=args.val_data,
                             val_every=args.val_every, stop_patience=args.stop_patience,
                             stop_min_delta=args.stop_min_delta))
    if not result["is_main"]:  # under torchrun, one process reports
        return 0
    if result["eval"]:
        _print_eval(result["eval"])
    print(f"{args.out}: trained to step {result['step']}")
    return 0


def _print_eval(rows: list[dict]) -> None:
    has_oracle = "oracle_auroc" in rows[0]
    header = f"{'head':45s} {'pos':>6s} {'AUROC':>7s} {'RCE':>7s} {'logloss':>8s} {'ECE':>7s}"
    print(header + (f" {'oracle AUROC':>12s} {'oracle RCE':>10s}" if has_oracle else ""))
    for row in rows:
        line = (f"{short_name(row['head']):45s} {row['positives']:6d} {row['auroc']:7.4f} {row['rce']:7.2f} "
                f"{row['log_loss']:8.5f} {row['calibration_error']:7.4f}")
        if has_oracle:
            line += f" {row['oracle_auroc']:12.4f} {row['oracle_rce']:10.2f}"
        print(line)


def _score(args) -> int:
    from studylib.ranker.scoring import score_run

    table = score_run(args.run, args.data, args.weights or [DEFAULT_PRESET], args.out, device=args.device,
                      progress=not args.quiet, precision=args.precision)
    sets = [c.removeprefix("score.") for c in table.column_names if c.startswith("score.")]
    how = ("stored probabilities reused, model not run" if table.schema.metadata[b"studylib.reused"] == b"yes"
           else "model run once, probabilities stored in the run folder")
    print(f"{args.out}: {table.num_rows:,} candidates scored with {', '.join(sets)} ({how})")
    return 0


def _model_summary(args) -> int:
    from studylib.ranker.model import HeavyRanker, forward_flops, parameter_breakdown

    cfg = load_config(args.config)
    model = HeavyRanker(cfg.model)
    parts = parameter_breakdown(model)
    flops = forward_flops(model)
    if args.json:
        print(json.dumps({"parameters": parts, "forward_flops_per_example": flops}, indent=1))
        return 0
    print(f"Heavy Ranker from {cfg.source}")
    labels = {"featurization": "featurization (BatchNorm + LayerNorm)", "twhin_layer_norms": "TwHIN embedding LayerNorms",
              "backbone": "backbone (MaskNet + MLP)", "towers": f"{len(model.heads)} task towers"}
    for key, label in labels.items():
        print(f"  {label:40s} {parts[key]:>12,}")
    print(f"  {'total trainable parameters':40s} {parts['total']:>12,}")
    print(f"  forward cost per example: {flops / 1e6:,.1f} MFLOP ({flops // 2:,} multiply-adds); "
          f"a training step is about 3x that")
    return 0


PRECISION_HELP = "auto (bf16 autocast on CUDA and on CPUs with bf16 instructions, else fp32), fp32 or bf16"


def register(subparsers) -> None:
    g = subparsers.add_parser("generate", help="write a data set (Parquet shards + manifest)",
                       description="Write a Heavy Ranker data set: Parquet shards and manifest.json.")
    g.add_argument("--scenario", choices=["random", "planted", "cohorts"], default="planted",
                   help="random: labels at base rates, nothing to learn; planted: labels from known true "
                        "probabilities; cohorts: planted with cohorts whose engagements are suppressed")
    g.add_argument("--examples", type=int, default=20000, help="number of examples (rounded up to whole requests)")
    g.add_argument("--seed", type=int, default=0, help="seed of the examples drawn (same seeds, same bytes)")
    g.add_argument("--world-seed", type=int, default=0,
                   help="seed of the planted world (users, authors, tweets, label model); keep it equal for "
                        "training, evaluation and scoring data so that they describe the same world")
    g.add_argument("--out", required=True, help="output folder")
    g.add_argument("--candidates", type=int, default=50, help="candidates per request (default 50)")
    g.add_argument("--rate-scale", type=float, default=1.0,
                   help="multiply every base rate (CPU-sized data sets need more positives; default 1)")
    g.add_argument("--signal", type=float, default=WORLD.signal, help="std of the latent part of each label's logit")
    g.add_argument("--pair-variance", type=float, default=WORLD.pair_variance,
                   help="share of each logit's latent variance in the user×tweet affinity (the personal part)")
    g.add_argument("--users", type=int, default=WORLD.n_users)
    g.add_argument("--authors", type=int, default=WORLD.n_authors)
    g.add_argument("--tweets", type=int, default=WORLD.n_tweets)
    g.add_argument("--latent-dim", type=int, default=WORLD.latent_dim)
    g.add_argument("--downsample", metavar="TASK[:POS:NEG]",
                   help="downsample by one label as the original's evaluation sets do; rates default to the "
                        "published ones (e.g. favorited, or favorited:1:0.05)")
    g.add_argument("--embeddings", metavar="FILE.parquet",
                   help="use trained TwHIN embeddings (from `studylib twhin-export`) as the user, user-engagement "
                        "and author embedding features instead of the planted world's")
    g.add_argument("--compression", default="lz4", choices=["none", "zstd", "lz4", "snappy"],
                   help="Parquet page compression (default lz4: with dictionary pages 2.8x smaller than none)")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g.set_defaults(func=_generate)

    t = subparsers.add_parser("train", help="train the Heavy Ranker on a data set",
                       description="Train the Heavy Ranker; evaluates per head against the oracle on planted data.")
    t.add_argument("--data", required=True, help="training data folder")
    t.add_argument("--config", help="recap config YAML (default: the published recap_local_prod.yaml)")
    t.add_argument("--steps", type=int, help="optimizer steps (default: the config's training.num_train_steps)")
    t.add_argument("--out", required=True, help="run folder (checkpoint, history, evaluation)")
    t.add_argument("--eval-data", help="evaluation data folder")
    t.add_argument("--batch-size", type=int, help="global batch size (default: the config's, 128)")
    t.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    t.add_argument("--precision", default=TrainArgs.precision, help=PRECISION_HELP)
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    t.add_argument("--keep-checkpoint", action="store_true",
                   help="keep the optimizer checkpoint when the run finishes (to continue it later; 3x the model's size)")
    t.add_argument("--seed", type=int, default=TrainArgs.seed)
    t.add_argument("--eval-every", type=int, default=TrainArgs.eval_every, help="evaluate every N steps (default: at the end)")
    t.add_argument("--val-data", help="held-out data drawn like the training data: its metrics during training "
                                      "go to validation.csv (the loss curve's held-out points)")
    t.add_argument("--val-every", type=int, default=TrainArgs.val_every, help="evaluate --val-data every N steps and at the end")
    t.add_argument("--stop-patience", type=int, default=TrainArgs.stop_patience,
                   help="stop once this many --val-every validations in a row improve the held-out loss by at most "
                        "--stop-min-delta (--steps is then the maximum; default 0: train every step)")
    t.add_argument("--stop-min-delta", type=float, default=TrainArgs.stop_min_delta,
                   help="relative gain in held-out loss that counts as an improvement (default %(default)s)")
    t.add_argument("--checkpoint-every", type=int, help="default: the config's training.checkpoint_every_n")
    t.add_argument("--log-every", type=int, help="history row every N steps (default: the config's train_log_every_n)")
    t.add_argument("--label-pairing", default="by_name", choices=PAIRINGS,
                   help="positional reproduces the original's defect (heads train on neighbours' labels)")
    t.add_argument("--output-bias", default="base_rate", choices=["base_rate", "zero"],
                   help="start each head's output at its label's log-odds in the training data (default) or at "
                        "0 as the original does (rare heads then stay near p=0.5 on short runs)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=_train)

    s = subparsers.add_parser("score", help="score candidates with engagement weights",
                       description="Score every candidate with one or more weight sets and rank per request.")
    s.add_argument("--run", required=True, help="run folder made by `studylib train`")
    s.add_argument("--data", required=True, help="data folder to score")
    s.add_argument("--weights", action="append", metavar="PRESET_OR_YAML",
                   help=f"{DEFAULT_PRESET} (default), {', '.join(p for p in PRESETS if p != DEFAULT_PRESET)} or a YAML "
                        "file; repeatable")
    s.add_argument("--out", required=True, help="output .parquet file")
    s.add_argument("--device", default="auto")
    s.add_argument("--precision", default="auto", help=PRECISION_HELP)
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=_score)

    m = subparsers.add_parser("model-summary", help="parameters per component and FLOPs per example",
                       description="Build the model from a config and print its size and cost.")
    m.add_argument("--config", help="recap config YAML (default: the published recap_local_prod.yaml)")
    m.add_argument("--json", action="store_true", help="machine-readable output")
    m.set_defaults(func=_model_summary)

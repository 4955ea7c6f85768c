"""What each training choice does to TwHIN on pairs it has not seen: a table of variants of the study's
configuration, chosen on validation and reported on test.

Every variant trains on the same planted graph (the quick study's, `data/quick/twhin/graph`, by default)
with the study's held-out early stopping (validation pairs not seen in training, checked
`VALIDATION_CHECKS` times, `STOP_PATIENCE` checks of patience) and is read at its best check. The
table gives, per variant, the validation score the stopping rule saw (mean over relations of filtered
MRR over popularity's: what a variant is chosen by) and, on the test split's unseen pairs, each
relation's filtered MRR minus popularity's with its paired 95 % interval over users
(`studylib.twhin.evaluate`). The variant to keep is the one with the best validation score; the test
columns only report it, so no choice is made on test.

    .venv/bin/python benchmarks/twhin_variants.py [--graph data/quick/twhin/graph] [--out _build/twhin_variants]
        [--only base lr_0.1] [--markdown docs_table.md]

Each variant's run is kept under `--out/<variant>/` and reused when its config is unchanged, so an
interrupted table resumes. One thread per run (TwHIN's small kernels are fastest on one).
"""

from __future__ import annotations

import argparse
import copy
import shutil
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

from studylib.data.layout import MANIFEST
from studylib.errors import StudyError
from studylib.io import read_json, write_text
from studylib.strict import shipped_config_path
from studylib.study.twhin_study import STOP_PATIENCE, VALIDATION_CHECKS, _threads
from studylib.twhin.config import STUDY_CONFIG
from studylib.twhin.evaluate import RESULTS, evaluate_run
from studylib.twhin.runs import STOPPING
from studylib.twhin.train import TwhinTrainArgs, train

REPO = Path(__file__).resolve().parents[1]


def _tables(cfg: dict, key: str, value) -> dict:
    for table in cfg["model"]["embeddings"]["tables"]:
        if key == "lr":
            table["optimizer"]["adagrad"]["lr"] = value
        else:
            table[key] = value
    return cfg


# name -> (what changes, how): each a change of the study's configuration (studylib/configs/twhin_study.yaml)
VARIANTS = {
    "base": ("the study's configuration (dim 32, Adagrad lr 0.03, softmax over 300 uniform negatives)", lambda c: c),
    "node_bias": ("+ a learned bias per entity and relation (model.node_bias)",
                  lambda c: {**c, "model": {**c["model"], "node_bias": True}}),
    "dim_16": ("embedding dimension 16", lambda c: _tables(c, "embedding_dim", 16)),
    "dim_64": ("embedding dimension 64", lambda c: _tables(c, "embedding_dim", 64)),
    "lr_0.01": ("table learning rate 0.01", lambda c: _tables(c, "lr", 0.01)),
    "lr_0.1": ("table learning rate 0.1", lambda c: _tables(c, "lr", 0.1)),
    "neg_100": ("100 uniform negatives per relation and side",
                lambda c: {**c, "train_data": {**c["train_data"], "global_negatives": 100}}),
    "neg_1000": ("1,000 uniform negatives per relation and side",
                 lambda c: {**c, "train_data": {**c["train_data"], "global_negatives": 1000}}),
    "in_batch": ("softmax over 300 in-batch negatives (drawn by degree) instead of uniform ones",
                 lambda c: {**c, "train_data": {**c["train_data"], "global_negatives": 0, "in_batch_negatives": 300}}),
    **{f"l2_{coef:g}": (f"+ L2 regularization of each edge's embeddings, coefficient {coef:g} (model.regularization_coef)",
                        lambda c, coef=coef: {**c, "model": {**c["model"], "regularization_coef": coef}})
       for coef in (0.001, 0.01, 0.1)},
    "node_bias_l2_0.01": ("+ relation biases and L2 regularization 0.01",
                          lambda c: {**c, "model": {**c["model"], "node_bias": True, "regularization_coef": 0.01}}),
}


def variant_config(name: str, out: Path) -> Path:
    """The study's configuration with variant `name`'s change, written to `out/configs/<name>.yaml` (kept, with
    its date, while its text is unchanged)."""
    base = yaml.safe_load(shipped_config_path(STUDY_CONFIG).read_text())
    changed = VARIANTS[name][1](copy.deepcopy(base))
    path = out / "configs" / f"{name}.yaml"
    text = f"# benchmarks/twhin_variants.py: {VARIANTS[name][0]}\n" + yaml.safe_dump(changed, sort_keys=False)
    if not path.exists() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, text)
    return path


def run_variant(name: str, graph: Path, out: Path, steps: int, seed: int, resamples: int) -> dict:
    """Train (or reuse) one variant with held-out early stopping, evaluate it on test; its table rows."""
    run = out / name
    config = variant_config(name, out)
    started = time.perf_counter()
    if not (run / RESULTS).exists() or (run / RESULTS).stat().st_mtime < config.stat().st_mtime:
        shutil.rmtree(run, ignore_errors=True)  # a run of another config, or one cut short: start afresh
        with _threads(1):
            train(TwhinTrainArgs(graph=str(graph), out=str(run), config=str(config), steps=steps, device="cpu",
                                 seed=seed, val_every=max(1, steps // VALIDATION_CHECKS), stop_patience=STOP_PATIENCE,
                                 progress=False))
            evaluate_run(run, n_resamples=resamples, seed=seed, progress=False)
    stopping = read_json(run / STOPPING)
    frame = pd.read_csv(run / RESULTS)
    test = frame[(frame["scorer"] == "trained") & (frame["ranking"] == "filtered") & (frame["pairs"] == "unseen")
                 & (frame["direction"] == "rhs")]
    row = {"variant": name, "change": VARIANTS[name][0], "validation score": stopping["best_score"],
           "kept step": stopping["best_step"], "minutes": (time.perf_counter() - started) / 60}
    for r in test.itertuples():
        row[r.relation] = (r.mrr_over_popularity, r.mrr_over_popularity_low, r.mrr_over_popularity_high)
    return row


def table(rows: list[dict], relations: list[str]) -> str:
    best = max(rows, key=lambda r: r["validation score"])["variant"]
    lines = ["| variant | validation score | kept step | " + " | ".join(relations) + " |",
             "|---|---:|---:|" + "---:|" * len(relations)]
    for r in rows:
        cells = [f"{r[rel][0]:+.4f} ({r[rel][1]:+.4f} to {r[rel][2]:+.4f})" if rel in r else "–" for rel in relations]
        name = f"**{r['variant']}** (chosen)" if r["variant"] == best else r["variant"]
        lines.append(f"| {name}: {r['change']} | {r['validation score']:.3f} | {r['kept step']:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--graph", type=Path, default=REPO / "data" / "quick" / "twhin" / "graph")
    parser.add_argument("--out", type=Path, default=REPO / "_build" / "twhin_variants")
    parser.add_argument("--steps", type=int, default=1000, help="the most any run may train (the study's twhin_steps)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resamples", type=int, default=500, help="user resamples of each interval")
    parser.add_argument("--only", nargs="+", choices=list(VARIANTS), default=list(VARIANTS), metavar="VARIANT",
                        help=f"the variants to run (default: all of {', '.join(VARIANTS)})")
    parser.add_argument("--markdown", type=Path, help="also write the table here")
    args = parser.parse_args(argv)
    names = args.only
    if not (args.graph / MANIFEST).exists():
        parser.exit(2, f"twhin_variants: error: {args.graph}: no TwHIN graph here; run `make study` first\n")
    rows = []
    try:
        for name in names:
            rows.append(run_variant(name, args.graph, args.out, args.steps, args.seed, args.resamples))
            print(f"[{name}] validation {rows[-1]['validation score']:.3f} at step {rows[-1]['kept step']} "
                  f"({rows[-1]['minutes']:.1f} min)", flush=True)
    except StudyError as exc:
        parser.exit(2, f"twhin_variants: error: {exc}\n")
    relations = [k for k in rows[0] if isinstance(rows[0][k], tuple)]
    text = table(rows, relations)
    print("\nTest, unseen pairs, filtered MRR minus popularity's (paired 95 % interval over users):\n" + text)
    if args.markdown:
        write_text(args.markdown, text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

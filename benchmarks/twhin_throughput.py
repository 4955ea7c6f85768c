"""TwHIN training throughput (edges/s): torchrec (fbgemm, fused SGD in backward) vs plain nn.EmbeddingBag.

Both run the same `TwhinModel` (translation score, 10 in-batch negatives per relation per
side, one matmul per side) on the same batches; only the tables differ: torchrec
`FusedEmbeddingBagCollection`s (what `twhin-train` uses in one process) or
`torch.nn.EmbeddingBag` with sparse gradients and `torch.optim.SGD`. The tables are
twhin_local.yaml's (user 424,241, tweet 72,543 rows) at dimension 64. A step includes
building the batch's KeyedJaggedTensor.

The two alternate for --rounds rounds and each reports its best round, so that load from
other processes on a shared machine hits both alike; this is done at each of --threads
(default 1 and 2 intra-op threads) in the same run. Goals: >= 500,000 edges/s, and torchrec
not slower than plain at every thread count.

    .venv/bin/python benchmarks/twhin_throughput.py [--batch 16384] [--steps 20] [--rounds 3] [--threads 1 2] [--json out.json]
"""

import argparse
import json
import time
from pathlib import Path

import torch

from studylib.strict import shipped_config_path
from studylib.twhin.config import load_twhin_config
from studylib.twhin.model import TwhinModel, batch_loss, edges_to_kjt, feature_names
from studylib.twhin.train import initial_state, scatter_full_state

TORCHREC, PLAIN = "torchrec FusedEmbeddingBagCollection", "plain nn.EmbeddingBag, sparse SGD"


class PlainTables(torch.nn.Module):
    """The same tables as torch.nn.EmbeddingBag (sparse gradients), reading the same KJT."""

    def __init__(self, cfg, state):
        super().__init__()
        self.features = feature_names(cfg)
        self.bags = torch.nn.ModuleDict({
            t.name: torch.nn.EmbeddingBag.from_pretrained(state[f"ebc.embedding_bags.{t.name}.weight"], freeze=False,
                                                          mode="sum", sparse=True, include_last_offset=True)
            for t in cfg.tables})

    def forward(self, kjt):
        bags = kjt.to_dict()
        return {f: self.bags[table](bags[f].values(), bags[f].offsets())
                for table, features in self.features.items() for f in features}


def bench(step, steps, batch):
    start = time.perf_counter()
    for i in range(steps):
        step(i)
    return steps * batch / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16384)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="intra-op thread counts to measure")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--config", default=str(shipped_config_path("twhin_local.yaml")))
    args = parser.parse_args()
    cfg = load_twhin_config(args.config)
    tables = ("model", "embeddings", "tables")
    changes = {("train_data", "in_batch_negatives"): 10, ("train_data", "global_negatives"): 0}
    for i, t in enumerate(cfg.tables):
        changes[(*tables, i, "embedding_dim")] = args.dim
        changes[(*tables, i, "optimizer")] = {"sgd": {"lr": t.optimizer.lr}}
    cfg = cfg.with_changes(changes)
    rng = torch.Generator().manual_seed(0)
    sizes = {t.name: t.num_embeddings for t in cfg.tables}
    batches = []
    for _ in range(8):  # pre-drawn edges: measure training, not sampling
        rel = torch.randint(len(cfg.relations), (args.batch,), generator=rng)
        lhs = torch.randint(sizes[cfg.relations[0].lhs], (args.batch,), generator=rng)
        rhs = torch.randint(min(sizes[r.rhs] for r in cfg.relations), (args.batch,), generator=rng)
        batches.append((lhs, rel, rhs))
    state = initial_state(cfg, 0)

    ours = TwhinModel(cfg)
    scatter_full_state(ours, state)
    plain = TwhinModel(cfg, PlainTables(cfg, state))
    optimizers = {
        TORCHREC: torch.optim.SGD([ours.translations], lr=cfg.model.translation_optimizer.lr),  # the tables step inside backward
        PLAIN: torch.optim.SGD([{"params": [plain.ebc.bags[t.name].weight], "lr": t.optimizer.lr} for t in cfg.tables]
                               + [{"params": [plain.translations], "lr": cfg.model.translation_optimizer.lr}]),
    }

    def trainer(model, optimizer):
        def step(i):
            lhs, rel, rhs = batches[i % len(batches)]
            loss = batch_loss(cfg, model(*edges_to_kjt(lhs, rel, rhs, cfg)))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return step

    steps = {TORCHREC: trainer(ours, optimizers[TORCHREC]), PLAIN: trainer(plain, optimizers[PLAIN])}
    tables = ", ".join(f"{t.name} {t.num_embeddings:,}" for t in cfg.tables)
    print(f"TwHIN training throughput: tables {tables} (dim {args.dim}), {len(cfg.relations)} relations, "
          f"batch {args.batch}, 10 in-batch negatives per side, best of {args.rounds} rounds of {args.steps} steps")
    print(f"{'threads':>7s} {'torchrec edges/s':>17s} {'plain edges/s':>14s} {'torchrec/plain':>15s}")
    out = {"batch": args.batch, "dim": args.dim, "rounds": args.rounds, "steps": args.steps, "threads": {}}
    for threads in args.threads:
        torch.set_num_threads(threads)
        for step in steps.values():
            bench(step, args.warmup, args.batch)
        results = {name: 0.0 for name in steps}
        for _ in range(args.rounds):
            for name, step in steps.items():
                results[name] = max(results[name], bench(step, args.steps, args.batch))
        ratio = results[TORCHREC] / results[PLAIN]
        out["threads"][threads] = {"torchrec_edges_per_s": results[TORCHREC], "plain_edges_per_s": results[PLAIN],
                                   "torchrec_over_plain": ratio}
        print(f"{threads:7d} {results[TORCHREC]:17,.0f} {results[PLAIN]:14,.0f} {ratio:14.2f}x", flush=True)
    worst = min(r["torchrec_over_plain"] for r in out["threads"].values())
    slowest = min(r["torchrec_edges_per_s"] for r in out["threads"].values())
    print(f"goal >= 500,000 edges/s: {'met' if slowest >= 5e5 else 'not met'}; torchrec not slower than plain "
          f"at every thread count: {'met' if worst >= 1.0 else 'not met'} (lowest ratio {worst:.2f}x)")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

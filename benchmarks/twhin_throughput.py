"""TwHIN training throughput (edges/s): torchrec (DMP, fused SGD in backward) vs plain nn.EmbeddingBag.

Same model and loss in both (translation score, 10 in-batch negatives per relation per side,
scored by one matmul per side); the tables are twhin_local.yaml's (user 424,241, tweet
72,543 rows) at dimension 64. The plain version uses sparse gradients and torch.optim.SGD.

    .venv/bin/python benchmarks/twhin_throughput.py [--batch 16384] [--steps 20] [--threads 1]
"""

import argparse
import dataclasses
import time

import torch

from studylib.config import shipped_config_path
from studylib.twhin.model import edge_scores, edges_to_kjt, in_batch_negative_scores, load_twhin_config, twhin_loss
from studylib.twhin.train import build_model, initial_state, scatter_full_state, start_runtime, translation_parameter


class PlainTwhin(torch.nn.Module):
    """The same model on torch.nn.EmbeddingBag tables (sparse gradients)."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.tables = torch.nn.ModuleDict({t.name: torch.nn.EmbeddingBag(t.num_embeddings, t.embedding_dim, mode="sum",
                                                                         sparse=True) for t in cfg.tables})
        self.translations = torch.nn.Parameter(torch.zeros(len(cfg.relations), cfg.dim))

    def _side(self, ids, rel, side):
        out = None
        for table in dict.fromkeys(getattr(r, side) for r in self.cfg.relations):
            present = torch.tensor([getattr(r, side) == table for r in self.cfg.relations])[rel]
            offsets = torch.cat([torch.zeros(1, dtype=torch.int64), torch.cumsum(present.long(), 0)[:-1]])
            part = self.tables[table](ids[present], offsets)
            out = part if out is None else out + part
        return out

    def forward(self, lhs_ids, rel, rhs_ids, generator):
        lhs, rhs = self._side(lhs_ids, rel, "lhs"), self._side(rhs_ids, rel, "rhs")
        negatives = in_batch_negative_scores(lhs, rhs, rel, self.translations, self.cfg.in_batch_negatives, generator)
        return twhin_loss(edge_scores(lhs, rhs, self.translations[rel]), negatives, self.cfg.in_batch_negatives)[0]


def bench(step, steps, warmup, batch):
    for i in range(warmup):
        step(i)
    start = time.perf_counter()
    for i in range(steps):
        step(warmup + i)
    return steps * batch / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16384)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0: torch default)")
    parser.add_argument("--config", default=str(shipped_config_path("twhin_local.yaml")))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_twhin_config(args.config)
    cfg = dataclasses.replace(cfg, tables=tuple(dataclasses.replace(t, embedding_dim=args.dim, optimizer="sgd")
                                                for t in cfg.tables), in_batch_negatives=10)
    rng = torch.Generator().manual_seed(0)
    sizes = {t.name: t.num_embeddings for t in cfg.tables}
    batches = []
    for _ in range(8):  # pre-drawn batches: measure training, not sampling
        rel = torch.randint(len(cfg.relations), (args.batch,), generator=rng)
        lhs = torch.randint(sizes[cfg.relations[0].lhs], (args.batch,), generator=rng)
        rhs = torch.randint(min(sizes[r.rhs] for r in cfg.relations), (args.batch,), generator=rng)
        batches.append((lhs, rel, rhs))

    runtime = start_runtime("cpu")
    dmp = build_model(cfg, runtime)
    scatter_full_state(dmp, initial_state(cfg, 0))
    trans_opt = torch.optim.SGD([translation_parameter(dmp)], lr=cfg.translation_lr)

    def torchrec_step(i):
        lhs, rel, rhs = batches[i % len(batches)]
        loss = dmp(edges_to_kjt(lhs, rel, rhs, cfg), rel, torch.Generator().manual_seed(i))
        trans_opt.zero_grad()
        loss.backward()
        trans_opt.step()

    plain = PlainTwhin(cfg)
    plain_opt = torch.optim.SGD([{"params": [plain.tables[t.name].weight], "lr": t.learning_rate} for t in cfg.tables]
                                + [{"params": [plain.translations], "lr": cfg.translation_lr}])

    def plain_step(i):
        lhs, rel, rhs = batches[i % len(batches)]
        loss = plain(lhs, rel, rhs, torch.Generator().manual_seed(i))
        plain_opt.zero_grad()
        loss.backward()
        plain_opt.step()

    results = {}
    for name, step in (("torchrec EBC + DMP, fused SGD", torchrec_step), ("plain nn.EmbeddingBag, sparse SGD", plain_step)):
        results[name] = bench(step, args.steps, args.warmup, args.batch)
    tables = ", ".join(f"{t.name} {t.num_embeddings:,}" for t in cfg.tables)
    print(f"TwHIN training throughput: tables {tables} (dim {args.dim}), {len(cfg.relations)} relations, "
          f"batch {args.batch}, 10 in-batch negatives per side, {torch.get_num_threads()} thread(s)")
    print(f"{'implementation':36s} {'edges/s':>12s}")
    for name, rate in results.items():
        print(f"{name:36s} {rate:12,.0f}")
    ours, plain_rate = results["torchrec EBC + DMP, fused SGD"], results["plain nn.EmbeddingBag, sparse SGD"]
    print(f"torchrec / plain: {ours / plain_rate:.2f}x; goal 500,000 edges/s: {'met' if ours >= 5e5 else 'not met'}")


if __name__ == "__main__":
    main()

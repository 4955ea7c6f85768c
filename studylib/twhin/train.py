"""Train TwHIN embeddings: torchrec fused table optimizers, DistributedModelParallel, checkpoints.

Runs as one process or under `torchrun --standalone --nproc_per_node N` (gloo on CPU, NCCL on
CUDA). On N > 1 processes torchrec's planner shards the tables across them (DMP), each process
trains on its slice of a global batch of N·B edges and the translations are data-parallel
(DDP). One process needs none of that (DMP's input distribution and DDP would only cost
time): its tables are torchrec `FusedEmbeddingBagCollection`s and no process group is made.

The embedding tables are updated inside backward (fbgemm's fused SGD or Adagrad per table with
the config's learning rate; `apply_optimizer_in_backward` under DMP); the translations have
their own SGD.

Checkpoints hold full (unsharded) tables and optimizer state, gathered on rank 0 and written
atomically (tmp + os.replace), so a run resumes on any number of processes; `studylib.twhin.runs`
names the run folder's files and reads a finished run. Batches are a
pure function of (seed, step), so a resumed run sees the same edges as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torchrec import EmbeddingBagCollection
from torchrec.distributed import DistributedModelParallel
from torchrec.distributed.planner import EmbeddingShardingPlanner, Topology
from torchrec.distributed.planner.types import ParameterConstraints
from torchrec.distributed.sharding_plan import get_default_sharders
from torchrec.distributed.types import ShardingType
from torchrec.optim.apply_optimizer_in_backward import apply_optimizer_in_backward
from tqdm.auto import tqdm

from studylib.errors import StudyError
from studylib.io import (LOCK_FILE, atomic_write, exclusive, file_sha256, read_json, remove_stale_temporaries,
                         settings_sha256, write_json)
from studylib.runtime import Runtime, start_runtime
from studylib.twhin.graph import MANIFEST, Graph
from studylib.twhin.splits import SplitSpec
from studylib.twhin.config import TwhinConfig, load_twhin_config
from studylib.twhin.model import TABLE_OPTIMIZERS, TwhinModel, bag_configs, batch_loss, edges_to_kjt
from studylib.twhin.ranks import EmbeddingScorer, PopularityScorer, Queries, filtered_mrr, unseen_queries
from studylib.twhin.runs import (BEST, CHECKPOINT, CONFIG_COPY, HISTORY, RUN_FILE, STOPPING, VALIDATION, load_splits,
                                 read_checkpoint)

INIT_STD = 0.1  # initial embedding scale (normal); translations start at 0
VALIDATION_PAIRS = 2000  # validation pairs per relation (a seeded sample): a check takes about a second on 2 cores


# ---------------------------------------------------------------- model and state


def build_model(cfg: TwhinConfig, runtime: Runtime) -> torch.nn.Module:
    """The model with fused table optimizers; on several processes sharded by DMP (tables
    allocated only on their shard)."""
    if runtime.world_size == 1:
        return TwhinModel(cfg, device=runtime.device)
    ebc = EmbeddingBagCollection(tables=bag_configs(cfg), device=torch.device("meta"))
    for table in cfg.tables:
        apply_optimizer_in_backward(TABLE_OPTIMIZERS[table.optimizer.kind], ebc.embedding_bags[table.name].parameters(),
                                    {"lr": table.optimizer.lr})
    model = TwhinModel(cfg, ebc, device=runtime.device)
    # Every process holds a slice of every table (memory spread evenly, as a table too large for
    # one process needs), not whole tables on some processes and none on others: row-wise where
    # torchrec offers it (CUDA), column-wise on CPU (its CPU kernels have no row-wise sharding).
    kind = ShardingType.ROW_WISE if runtime.device.type == "cuda" else ShardingType.COLUMN_WISE
    planner = EmbeddingShardingPlanner(
        topology=Topology(world_size=runtime.world_size, compute_device=runtime.device.type),
        constraints={t.name: ParameterConstraints(sharding_types=[kind.value],
                                                  min_partition=max(1, t.embedding_dim // runtime.world_size))
                     for t in cfg.tables})
    plan = planner.collective_plan(model, get_default_sharders(), dist.GroupMember.WORLD)
    return DistributedModelParallel(model, device=runtime.device, plan=plan)


def initial_state(cfg: TwhinConfig, seed: int, train_edges: Graph | None = None) -> dict[str, torch.Tensor]:
    """Seeded initial tables (the same on any number of processes). Node biases start at each
    entity's popularity in each relation, log(1 + its degree in `train_edges`) on its side, as the
    ranker's output biases start at the base rates: the sampled softmax's optimum is
    log p(x | u) + const, whose per-relation popularity part a bias seen only as an occasional
    uniform negative learns slowly (zeros when no edges are given)."""
    gen = torch.Generator().manual_seed(seed)
    state = {f"ebc.embedding_bags.{t.name}.weight": torch.randn(t.num_embeddings, t.embedding_dim, generator=gen) * INIT_STD
             for t in cfg.tables}
    state["translations"] = torch.zeros(len(cfg.relations), cfg.dim)
    if cfg.model.node_bias:
        biases = {t.name: torch.zeros(len(cfg.relations), t.num_embeddings) for t in cfg.tables}
        for rel, relation in enumerate(cfg.relations if train_edges is not None else ()):
            for table, popularity in zip((relation.lhs, relation.rhs), train_edges.log_degrees(rel)):
                biases[table][rel, :popularity.size] += torch.from_numpy(popularity).float()  # ids the graph has
        state.update({f"biases.{name}": bias for name, bias in biases.items()})
    return state


def _stateful_tensors(model: torch.nn.Module) -> dict:
    """Every tensor a checkpoint holds: tables, translations and the fused optimizers' state
    (sharded or not), named as under DMP so that a checkpoint moves between process counts."""
    if not isinstance(model, DistributedModelParallel):
        items = {"translations": model.translations, **{f"biases.{n}": b for n, b in model.biases.items()}}
        for name, collection in model.ebc.collections.items():
            weight = f"ebc.embedding_bags.{name}.weight"
            items[weight] = collection.embedding_bags[name].weight
            states = collection.fused_optimizer().state_dict()["state"].get(f"{name}.weight", {})  # none for SGD
            items.update({f"fused_optimizer/{weight}/{name}.momentum{i}": v for i, v in enumerate(states.values(), 1)})
        return items
    items = dict(model.state_dict())
    for param, states in model.fused_optimizer.state_dict()["state"].items():
        for name, value in states.items():
            if isinstance(value, torch.Tensor) and value.dim() > 0:
                items[f"fused_optimizer/{param}/{name}"] = value
    return items


def _local_pieces(value) -> list[tuple[list[int], torch.Tensor]]:
    if hasattr(value, "local_shards"):  # ShardedTensor: this process's row/column blocks
        return [(list(s.metadata.shard_offsets), s.tensor) for s in value.local_shards()]
    return [([0] * value.dim(), value)]


def local_share(model: torch.nn.Module, cfg: TwhinConfig) -> dict[str, float]:
    """The share of each embedding table's values held by this process: 1 on one process; under
    DMP what the sharding plan gave this process (0 when a whole table lives elsewhere)."""
    held = {t.name: 0 for t in cfg.tables}
    for name, value in _stateful_tensors(model).items():
        match = re.search(r"ebc\.embedding_bags\.(\w+)\.weight$", name)
        if match and not name.startswith("fused_optimizer"):
            held[match.group(1)] += sum(piece.numel() for _, piece in _local_pieces(value))
    return {t.name: held[t.name] / (t.num_embeddings * t.embedding_dim) for t in cfg.tables}


def gather_full_state(model: torch.nn.Module) -> dict[str, torch.Tensor] | None:
    """All shards assembled into full CPU tensors on rank 0 (None elsewhere)."""
    items = _stateful_tensors(model)
    local = {key: [(off, t.detach().cpu().clone()) for off, t in _local_pieces(v)] for key, v in items.items()}
    gathered = [local]
    if dist.is_initialized():
        gathered = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, local)
        if dist.get_rank() != 0:
            return None
    full = {}
    for key, value in items.items():
        out = torch.zeros(tuple(value.size()), dtype=value.dtype)
        for pieces in gathered:
            for offsets, tensor in pieces.get(key, []):
                out[tuple(slice(o, o + n) for o, n in zip(offsets, tensor.shape))] = tensor
        full[key] = out
    return full


def scatter_full_state(model: torch.nn.Module, full: dict[str, torch.Tensor]) -> None:
    """Copy full tensors into this process's shards (state_dict shards are views of the live tensors)."""
    for key, value in _stateful_tensors(model).items():
        if key not in full:
            if key.startswith("fused_optimizer/"):
                continue  # e.g. resuming SGD state into Adagrad: start the accumulators afresh
            raise StudyError(f"checkpoint has no {key}")
        source = full[key]
        if tuple(source.shape) != tuple(value.size()):
            raise StudyError(f"checkpoint {key} has shape {tuple(source.shape)}, the model {tuple(value.size())}")
        with torch.no_grad():
            for offsets, tensor in _local_pieces(value):
                tensor.copy_(source[tuple(slice(o, o + n) for o, n in zip(offsets, tensor.shape))])


def translation_parameter(model: torch.nn.Module) -> torch.nn.Parameter:
    return next(p for name, p in model.named_parameters() if name.endswith("translations"))


def bias_optimizer(model: torch.nn.Module, cfg: TwhinConfig) -> torch.optim.Optimizer | None:
    """Adagrad over the node biases (model.node_bias), each at its table's learning rate; None without."""
    if not cfg.model.node_bias:
        return None
    params = dict(model.named_parameters())
    groups = [{"params": [next(p for n, p in params.items() if n.endswith(f"biases.{t.name}"))], "lr": t.optimizer.lr}
              for t in cfg.tables]
    return torch.optim.Adagrad(groups)


# ---------------------------------------------------------------- batches


class BatchSampler:
    """Edges of global step s: positions s·G .. s·G+G-1 of per-epoch seeded permutations."""

    def __init__(self, edges: Graph, batch_size: int, runtime: Runtime, seed: int):
        self.edges, self.batch_size, self.runtime, self.seed = edges, batch_size, runtime, seed
        self.global_batch = batch_size * runtime.world_size
        self._perms: dict[int, np.ndarray] = {}

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            self._perms = {e: p for e, p in self._perms.items() if e >= epoch - 1}
            self._perms[epoch] = np.random.default_rng([self.seed, 0xBA7C, epoch]).permutation(len(self.edges))
        return self._perms[epoch]

    def indices(self, step: int) -> np.ndarray:
        n = len(self.edges)
        pos = step * self.global_batch + self.runtime.rank * self.batch_size + np.arange(self.batch_size)
        epoch, within = pos // n, pos % n
        out = np.empty(self.batch_size, dtype=np.int64)
        for e in np.unique(epoch):  # at most two epochs per batch
            mask = epoch == e
            out[mask] = self._permutation(int(e))[within[mask]]
        return out

    def batch(self, step: int):
        idx = self.indices(step)
        as_tensor = lambda a: torch.from_numpy(a[idx].astype(np.int64))  # noqa: E731
        return as_tensor(self.edges.lhs), as_tensor(self.edges.rel), as_tensor(self.edges.rhs)


# ---------------------------------------------------------------- the run


@dataclass
class TwhinTrainArgs:
    graph: str
    out: str
    config: str | None = None
    steps: int | None = None
    resume: bool = False
    batch_size: int | None = None  # per process (the config's per_replica_batch_size)
    device: str = "auto"
    seed: int = 0
    checkpoint_every: int | None = None
    split: str = "time"
    relation: str | None = None  # relation name for a Hugging Face sample-graph file
    node_bias: bool | None = None  # overrides the config's model.node_bias when set
    val_every: int = 0  # check the validation split's unseen pairs every this many steps (0: never)
    stop_patience: int = 0  # stop after this many checks without a new best (0: train all steps)
    progress: bool = True


def _prepare_run_dir(args: TwhinTrainArgs, cfg: TwhinConfig, identity: dict) -> dict | None:
    """Create (or, with --resume, check) the run folder; return the checkpoint to resume from."""
    out = Path(args.out)
    ckpt_path = out / CHECKPOINT
    remove_stale_temporaries(out)  # what a killed writer left (the caller holds the folder's lock)
    if args.resume:
        if not ckpt_path.exists():
            raise StudyError(f"{out}: --resume needs {CHECKPOINT} here (none found; the run stopped before its first "
                             "checkpoint: run again without --resume to start it afresh)")
        saved = read_json(out / RUN_FILE)
        if saved.get("identity") != identity:
            changed = sorted(k for k in identity if (saved.get("identity") or {}).get(k) != identity[k])
            raise StudyError(f"{out}: --resume with different {', '.join(changed)} than the run was started with")
        checkpoint = read_checkpoint(ckpt_path)
        missing = [k for k in ("translation_optimizer", "history") if k not in checkpoint]
        if missing:
            raise StudyError(f"{ckpt_path}: holds no {missing[0]}, so training cannot continue from it")
        return checkpoint
    started = {LOCK_FILE, CONFIG_COPY, RUN_FILE, HISTORY}  # what a run writes before its first checkpoint
    if not ckpt_path.exists() and all(p.name in started for p in out.iterdir()):
        # a start that never reached a checkpoint (killed, or a full disk while writing config.yaml,
        # run.json or the first checkpoint): begin again in the same folder
        for name in started - {LOCK_FILE}:
            (out / name).unlink(missing_ok=True)
    if any(p.name != LOCK_FILE for p in out.iterdir()):
        raise StudyError(f"{out}: is not empty; pass --resume to continue that run or choose another --out")
    return None


def with_node_bias(cfg: TwhinConfig, node_bias: bool | None) -> TwhinConfig:
    """The config with model.node_bias overridden (and recorded in its raw form, which the run keeps)."""
    if node_bias is None or node_bias == cfg.model.node_bias:
        return cfg
    return cfg.with_changes({("model", "node_bias"): bool(node_bias)})


def train(args: TwhinTrainArgs) -> dict:
    # torch.fx logs a notice about is_fx_tracing on the first forward pass through torchrec's
    # modules: a line on stderr in every run, and a second line under any later refusal
    logging.getLogger("torch.fx._symbolic_trace").setLevel(logging.ERROR)
    cfg = with_node_bias(load_twhin_config(args.config), args.node_bias)
    split = SplitSpec(kind=args.split, seed=args.seed)
    batch_size = _count(args.batch_size, "--batch-size", cfg.train_data.per_replica_batch_size, "train_data.per_replica_batch_size")
    steps = _count(args.steps, "--steps", cfg.training.num_train_steps, "training.num_train_steps")
    every = _count(args.checkpoint_every, "--checkpoint-every", cfg.training.checkpoint_every_n, "training.checkpoint_every_n")
    splits = load_splits(args.graph, cfg, split, args.relation)  # validate everything before writing
    _check_batch_size(batch_size, "--batch-size" if args.batch_size is not None else
                      f"{Path(cfg.source).name} train_data.per_replica_batch_size", splits["train"], cfg, args.graph)
    graph = Path(args.graph)
    if args.val_every < 0 or args.stop_patience < 0:
        raise StudyError(f"--val-every and --stop-patience must be >= 0, got {args.val_every} and {args.stop_patience}")
    if args.stop_patience and not args.val_every:
        raise StudyError("--stop-patience needs --val-every (checks to be patient with)")
    identity = {"graph": str(graph.resolve()), "config": settings_sha256(cfg.raw)[:16], "split": asdict(split),
                "graph_sha256": file_sha256(graph / MANIFEST if graph.is_dir() else graph)[:16],
                "batch_size": batch_size, "seed": args.seed, "relation": args.relation,
                "val_every": args.val_every, "stop_patience": args.stop_patience}
    runtime = start_runtime(args.device)
    try:
        with contextlib.ExitStack() as held:
            validation = _validation(splits, cfg, args) if args.val_every else None
            return _train(args, cfg, splits["train"], runtime, identity, batch_size, steps, every, held, validation)
    finally:
        runtime.close()


def _batch_bytes(cfg: TwhinConfig) -> int:
    """Memory a batch takes per edge, roughly and on the high side: per side its pooled embedding,
    translated copy and their gradients (4 bytes per value), its 2k negative scores with their loss
    terms and gradients, and the edge's ids and KJT entries."""
    k = cfg.train_data.uniform_negatives + cfg.train_data.in_batch_negatives
    return 4 * (2 * 4 * cfg.dim + 2 * 3 * k) + 128


def _check_batch_size(batch_size: int, flag: str, train_edges: Graph, cfg: TwhinConfig, graph: str) -> None:
    """The batch against the graph and the memory, before the run folder is made (as the ranker's
    train checks its batch against the data): a batch can hold each training edge once, and must fit."""
    n = len(train_edges)
    if batch_size > n:
        raise StudyError(f"{flag} {batch_size:,} is more than the {n:,} training edges of {graph}; "
                         f"give at most {n:,}")
    need = batch_size * _batch_bytes(cfg)
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return
    if need > memory:
        raise StudyError(f"{flag} {batch_size:,}: a batch needs about {need / 2**30:,.1f} GiB, more than this "
                         f"machine's {memory / 2**30:,.1f} GiB of memory; give at most {memory // _batch_bytes(cfg):,}")


def _count(value: int | None, flag: str, default: int, field: str) -> int:
    """A command-line count, else the config's; must be >= 1 (named by where it came from)."""
    if value is None:
        if default < 1:
            raise StudyError(f"config: {field} must be >= 1, got {default}")
        return default
    if value < 1:
        raise StudyError(f"{flag} must be >= 1, got {value}")
    return value


# ---------------------------------------------------------------- validation (early stopping)


@dataclass
class Validation:
    """Held-out early stopping on pairs the run has not seen: the validation split's pairs that do not
    occur in training (a seeded sample per relation), their right-hand side ranked among all candidates
    (filtered by the train and validation targets: the test split is never looked at). The score is the
    mean over relations of the trained MRR over popularity's, so a run that keeps what popularity gets
    scores 1 and every relation counts alike."""
    queries: dict[int, Queries]
    popularity: dict[int, float]

    def score(self, state: dict[str, torch.Tensor], cfg: TwhinConfig) -> float:
        tables = {t.name: state[f"ebc.embedding_bags.{t.name}.weight"].numpy() for t in cfg.tables}
        biases = {t.name: state[f"biases.{t.name}"].numpy() for t in cfg.tables} if cfg.model.node_bias else None
        scorer = EmbeddingScorer("trained", tables, state["translations"].numpy(), cfg.relations, biases)
        ratios = [filtered_mrr(scorer, rel, q) / self.popularity[rel] for rel, q in self.queries.items()]
        return float(np.mean(ratios))


def _validation(splits: dict[str, Graph], cfg: TwhinConfig, args: TwhinTrainArgs) -> Validation:
    train_edges, valid = splits["train"], splits["valid"]
    known = train_edges.joined(valid)  # the test split is never looked at
    popularity = PopularityScorer(train_edges)
    queries, baseline = {}, {}
    for rel in range(len(cfg.relations)):
        q = unseen_queries(valid, train_edges, known, rel, VALIDATION_PAIRS, args.seed)
        mrr = filtered_mrr(popularity, rel, q)
        if q.query.size and mrr > 0:
            queries[rel], baseline[rel] = q, mrr
    if not queries:
        raise StudyError(f"{args.graph}: --val-every needs validation pairs not seen in training; the valid split has none")
    return Validation(queries, baseline)


def _weights_only(full: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in full.items() if not k.startswith("fused_optimizer/")}


def _train(args, cfg, edges, runtime, identity, batch_size, steps, every, held: contextlib.ExitStack,
           validation: Validation | None = None) -> dict:
    out = Path(args.out)
    checkpoint, verdict = None, [None]
    if runtime.is_main:
        if out.exists() and not out.is_dir():
            verdict = [f"{out}: is a file, not a folder; choose another --out"]
        else:  # one writer per run folder: the lock first, then the checks (no run slips in between)
            created = not out.exists()
            held.enter_context(exclusive(out, "run"))
            try:
                checkpoint = _prepare_run_dir(args, cfg, identity)
            except StudyError as exc:
                verdict = [str(exc)]
                if created:  # refused: leave no folder behind that this call made
                    shutil.rmtree(out, ignore_errors=True)
    if runtime.world_size > 1:  # every process learns rank 0's verdict on the run folder
        dist.broadcast_object_list(verdict, src=0)
    if verdict[0] is not None:
        raise StudyError(verdict[0])
    if runtime.is_main and not args.resume:
        atomic_write(out / CONFIG_COPY, lambda tmp: tmp.write_text(yaml.safe_dump(cfg.raw, sort_keys=False)))
        run = {"identity": identity, "config_source": cfg.source, "world_size": runtime.world_size,
               "relations": [asdict(r) for r in cfg.relations], "train_edges": len(edges)}
        write_json(out / RUN_FILE, run)

    model = build_model(cfg, runtime)
    start_step, history = 0, []
    if args.resume:
        obj = [checkpoint] if runtime.is_main else [None]
        if runtime.world_size > 1:
            dist.broadcast_object_list(obj, src=0)
        checkpoint = obj[0]
        scatter_full_state(model, checkpoint["state"])
        start_step, history = checkpoint["step"], checkpoint["history"]
    else:
        scatter_full_state(model, initial_state(cfg, args.seed, edges))
    translations = translation_parameter(model)
    trans_opt = torch.optim.SGD([translations], lr=cfg.model.translation_optimizer.lr)
    bias_opt = bias_optimizer(model, cfg)
    dense = [opt for opt in (trans_opt, bias_opt) if opt is not None]
    if checkpoint is not None:
        trans_opt.load_state_dict(checkpoint["translation_optimizer"])
        if bias_opt is not None:
            bias_opt.load_state_dict(checkpoint["bias_optimizer"])

    checks = list(checkpoint.get("validation", [])) if checkpoint is not None else []
    stopped = False

    def check(step: int) -> bool:
        """Score the current tables on the validation pairs; True when the run should stop."""
        full = gather_full_state(model)  # every process takes part
        verdict = [None]
        if runtime.is_main:
            value = validation.score(full, cfg)
            best = max((c["score"] for c in checks), default=-np.inf)
            checks.append({"step": step, "score": value})
            if value > best:
                atomic_write(out / BEST, lambda p: torch.save({"step": step, "state": _weights_only(full)}, p))
            since = len(checks) - 1 - max(range(len(checks)), key=lambda i: (checks[i]["score"], -i))
            verdict = [bool(args.stop_patience) and since >= args.stop_patience]
        if runtime.world_size > 1:
            dist.broadcast_object_list(verdict, src=0)
        return verdict[0]

    if validation is not None and start_step == 0 and not checks:
        check(0)  # the start is a candidate too: training must earn its place over it
    sampler = BatchSampler(edges, batch_size, runtime, args.seed)
    edges_per_step = batch_size * runtime.world_size
    bar = tqdm(total=steps, initial=min(start_step, steps), unit="step", desc="twhin-train",
               disable=not (args.progress and runtime.is_main))
    started, done_here, loss_value = time.perf_counter(), 0, float("nan")
    for step in range(start_step, steps):
        lhs, rel, rhs = sampler.batch(step)
        gen = torch.Generator().manual_seed(args.seed * 1_000_003 + step * runtime.world_size + runtime.rank)
        kjt, counts = edges_to_kjt(lhs, rel, rhs, cfg, gen)
        loss = batch_loss(cfg, model(kjt.to(runtime.device), counts))
        for opt in dense:
            opt.zero_grad()
        loss.backward()  # also steps the embedding tables (fused optimizer)
        for opt in dense:
            opt.step()
        done_here += 1
        bar.update(1)
        if (step + 1) % cfg.training.train_log_every_n == 0 or step + 1 == steps:
            loss_value = float(loss.detach())
            rate = done_here * edges_per_step / (time.perf_counter() - started)
            history.append({"step": step + 1, "loss": loss_value, "edges_per_s": rate})
            bar.set_postfix(loss=f"{loss_value:.4f}", edges_s=f"{rate:,.0f}")
        if validation is not None and ((step + 1) % args.val_every == 0 or step + 1 == steps):
            stopped = check(step + 1)
        if (step + 1) % every == 0 or step + 1 == steps or stopped:
            _save_checkpoint(out, model, trans_opt, bias_opt, step + 1, history, runtime, checks)
        if stopped:
            break
    bar.close()
    if validation is not None and runtime.is_main:
        best = max(checks, key=lambda c: c["score"])
        atomic_write(out / VALIDATION, lambda p: p.write_text(
            "step,score\n" + "".join(f"{c['step']},{c['score']:.6f}\n" for c in checks)))
        write_json(out / STOPPING, {"rule": {"val_every": args.val_every, "stop_patience": args.stop_patience,
                                             "score": "mean over relations of filtered MRR / popularity's MRR, "
                                                      "validation pairs not seen in training"},
                                    "best_step": best["step"], "best_score": best["score"],
                                    "last_step": checks[-1]["step"], "stopped_early": stopped})
    elapsed = time.perf_counter() - started
    if steps <= start_step and not (out / CHECKPOINT).exists():
        _save_checkpoint(out, model, trans_opt, bias_opt, start_step, history, runtime, checks)
    return {"step": max(steps, start_step) if not stopped else checks[-1]["step"], "loss": loss_value, "history": history, "local_share": local_share(model, cfg),
            "edges_per_s": done_here * edges_per_step / elapsed if done_here else float("nan")}


def _save_checkpoint(out: Path, model, trans_opt, bias_opt, step: int, history: list[dict], runtime: Runtime,
                     checks: list[dict] | None = None) -> None:
    state = gather_full_state(model)  # every process takes part
    if runtime.is_main:
        payload = {"step": step, "state": state, "translation_optimizer": trans_opt.state_dict(), "history": history,
                   "validation": checks or []}
        if bias_opt is not None:
            payload["bias_optimizer"] = bias_opt.state_dict()
        atomic_write(out / CHECKPOINT, lambda p: torch.save(payload, p))
        lines = ["step,loss,edges_per_s"] + [f"{h['step']},{h['loss']:.6f},{h['edges_per_s']:.1f}" for h in history]
        atomic_write(out / HISTORY, lambda p: p.write_text("\n".join(lines) + "\n"))
    if runtime.world_size > 1:
        dist.barrier()


__all__ = ["TwhinTrainArgs", "gather_full_state", "initial_state", "scatter_full_state", "train"]

"""A TwHIN run: the graph's splits aligned to the config, the run folder's files, and reading a finished run.

`studylib twhin-train` writes the folder (`config.yaml`, `run.json`, `checkpoint.pt`,
`history.csv`); evaluation, export and the notebooks read it here without importing the
training loop. Checkpoints hold full (unsharded) tables, translations and optimizer state and are
read with `weights_only=True`, so a crafted file cannot run code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from studylib.errors import StudyError
from studylib.io import read_json, read_torch_file
from studylib.twhin.graph import Graph, load_graph
from studylib.twhin.splits import SplitSpec, split_graph
from studylib.twhin.config import TwhinConfig, load_twhin_config

CHECKPOINT = "checkpoint.pt"
RUN_FILE = "run.json"
CONFIG_COPY = "config.yaml"
HISTORY = "history.csv"
BEST = "best.pt"  # the tables at the best validation score (training with validation), which readers take
VALIDATION = "validation.csv"  # step, the validation score of every check
STOPPING = "stopping.json"  # the validation rule, the best step and where the run stopped


# ---------------------------------------------------------------- graph <-> config


def align_graph(graph: Graph, cfg: TwhinConfig) -> Graph:
    """Renumber the graph's relations to the config's ids; refuse what the model cannot hold."""
    by_name = {r.name: i for i, r in enumerate(cfg.relations)}
    remap = np.empty(len(graph.relations), dtype=np.int64)
    for i, rel in enumerate(graph.relations):
        if rel.name not in by_name:
            raise StudyError(f"{graph.source}: relation {rel.name} is not in {Path(cfg.source).name} model.relations "
                             f"({', '.join(by_name)})")
        mine = cfg.relations[by_name[rel.name]]
        if (mine.lhs, mine.rhs) != (rel.lhs, rel.rhs):
            raise StudyError(f"{graph.source}: relation {rel.name} is {rel.lhs}->{rel.rhs} but "
                             f"{Path(cfg.source).name} says {mine.lhs}->{mine.rhs}")
        remap[i] = by_name[rel.name]
    for table, count in graph.tables.items():
        rows = next((t.num_embeddings for t in cfg.tables if t.name == table), None)
        used = any(table in (r.lhs, r.rhs) for r in graph.relations)
        if used and (rows is None or count > rows):
            raise StudyError(f"{graph.source}: table {table} has {count:,} entities but {Path(cfg.source).name} "
                             f"model.embeddings.tables.{table}.num_embeddings is {rows}")
    return Graph(graph.tables, cfg.relations, graph.lhs, remap[graph.rel], graph.rhs, graph.time_chunk,
                 graph.source, graph.world)


def load_splits(graph_path: str, cfg: TwhinConfig, split: SplitSpec, relation: str | None = None) -> dict[str, Graph]:
    return split_graph(align_graph(load_graph(graph_path, relation), cfg), split)


# ---------------------------------------------------------------- the run folder


def read_checkpoint(path: Path) -> dict:
    """A TwHIN checkpoint: tensors and plain values only (`weights_only=True`, so a crafted file
    cannot run code); anything else is refused with one line."""
    try:
        checkpoint = read_torch_file(path, "TwHIN checkpoint")
    except FileNotFoundError:
        raise StudyError(f"{path}: checkpoint not found") from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("step"), int) \
            or not isinstance(checkpoint.get("state"), dict):
        raise StudyError(f"{path}: not a TwHIN checkpoint made by `studylib twhin-train` (no step and state)")
    return checkpoint


# ---------------------------------------------------------------- reading a finished run


@dataclass
class TrainedRun:
    cfg: TwhinConfig
    tables: dict[str, np.ndarray]  # table name -> [rows, dim] float32
    translations: np.ndarray  # [relations, dim]
    run: dict
    step: int
    biases: dict[str, np.ndarray] | None = None  # table name -> [relations, rows] (model.node_bias), else None


def load_trained(run_dir: str | Path) -> TrainedRun:
    """Full tables and translations of a run folder (no process group needed)."""
    run_dir = Path(run_dir)
    for name in (CHECKPOINT, RUN_FILE, CONFIG_COPY):
        if not (run_dir / name).exists():
            raise StudyError(f"{run_dir}: not a twhin-train run folder (no {name})")
    cfg = load_twhin_config(run_dir / CONFIG_COPY)
    # a run trained with validation is read at its best validation score, not at its last step
    source = run_dir / BEST if (run_dir / BEST).exists() else run_dir / CHECKPOINT
    ckpt = read_checkpoint(source)
    run = read_json(run_dir / RUN_FILE)
    try:
        state = ckpt["state"]
        tables = {t.name: state[f"ebc.embedding_bags.{t.name}.weight"].numpy().astype(np.float32) for t in cfg.tables}
        translations = state["translations"].numpy().astype(np.float32)
        biases = ({t.name: state[f"biases.{t.name}"].numpy().astype(np.float32) for t in cfg.tables}
                  if cfg.model.node_bias else None)
        step = int(ckpt["step"])
    except (KeyError, TypeError, AttributeError, ValueError):
        raise StudyError(f"{source}: not a checkpoint of this run's config ({CONFIG_COPY})") from None
    for name, bias in (biases or {}).items():
        if bias.shape != (len(cfg.relations), cfg.table(name).num_embeddings):
            raise StudyError(f"{source}: biases of table {name} have shape {bias.shape}, the config says "
                             f"({len(cfg.relations)}, {cfg.table(name).num_embeddings}): one per relation and entity")
    for name, table in tables.items():
        if table.shape != (cfg.table(name).num_embeddings, cfg.dim):
            raise StudyError(f"{source}: table {name} has shape {table.shape}, the config says "
                             f"({cfg.table(name).num_embeddings}, {cfg.dim})")
    if "identity" not in run:
        raise StudyError(f"{run_dir / RUN_FILE}: missing key identity")
    return TrainedRun(cfg, tables, translations, run, step, biases)


__all__ = ["BEST", "CHECKPOINT", "CONFIG_COPY", "HISTORY", "RUN_FILE", "STOPPING", "VALIDATION", "TrainedRun", "align_graph", "load_splits",
           "load_trained", "read_checkpoint"]

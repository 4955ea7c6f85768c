"""TwHIN against a standard knowledge-graph-embedding library (PyKEEN), at equal edge visits and equal time.

Both learn on the same planted graph and the same training split, and both are ranked by the
project's own evaluator (`studylib.twhin.evaluate.evaluate_scorers`: every distinct held-out
pair, rhs given lhs and lhs given rhs, raw and filtered, intervals over users), so only the
learning differs:

- `project`: `studylib twhin-train` with the shipped study config (torchrec fused tables,
  sampled softmax over uniform negatives), as `make study` trains it;
- `library`: PyKEEN's sLCWA training loop (uniform corruption of head or tail over all
  entities, 64 negatives per edge, Adam lr 0.01, batch 2048, the same dimension), with the same
  score function <e_lhs, e_rhs + t_rel> (a custom interaction) under its BCE and its softmax
  cross-entropy loss, and PyKEEN's TransE (-||e_lhs + t_rel - e_rhs||_2) with the softmax loss.

Each library model trains epoch by epoch. It is ranked twice: at equal time (after the first
epoch whose cumulative training time reaches the project's: the library gets at least as much
time) and at equal edge visits (the epochs closest to the project's steps x batch). Every
timing is training only, on the same number of intra-op threads (`--threads`, default 1, as the
study trains), in one process, so a loaded machine slows both alike.

PyKEEN is not a project dependency: it lives in the benchmark's own environment, which shares
the project's `.venv` through a .pth file so that the same torch and studylib are used.

    bash benchmarks/setup_library_env.sh          # once: .venv-kge/ (the project's .venv + PyKEEN)
    .venv-kge/bin/python benchmarks/twhin_vs_library.py [--graph DIR] [--steps 1000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

try:
    from pykeen.losses import BCEWithLogitsLoss, CrossEntropyLoss
    from pykeen.models import ERModel, TransE
    from pykeen.nn.modules import Interaction
    from pykeen.training import SLCWATrainingLoop
    from pykeen.triples import CoreTriplesFactory
except ImportError:
    raise SystemExit("twhin_vs_library.py: PyKEEN is not installed here; run `bash benchmarks/setup_library_env.sh` "
                     "and use .venv-kge/bin/python") from None

# After PyKEEN: its resolver registers every torch optimizer class by name when first imported,
# and torchrec (imported by studylib) defines two optimizers of the same name.
from studylib.data.world import World  # noqa: E402
from studylib.twhin.evaluate import EmbeddingScorer, OracleScorer, PopularityScorer, evaluate_scorers  # noqa: E402
from studylib.twhin.planted import GraphParams, generate_graph  # noqa: E402
from studylib.twhin.splits import SplitSpec  # noqa: E402
from studylib.twhin.config import load_twhin_config  # noqa: E402
from studylib.twhin.runs import load_splits, load_trained  # noqa: E402
from studylib.twhin.train import TwhinTrainArgs, train  # noqa: E402

LIBRARY_NEGATIVES = 64
LIBRARY_LR = 0.01
GOAL_EQUAL_EDGES = 0.9  # the project's MRR >= 90 % of the library's at equal edge visits
# At equal time the project matches or beats the library: MRR ratio >= 1, or the library's lead
# lies within the paired 95 % interval over users (a tie).
GOAL_ORACLE = 0.5  # and >= 50 % of the oracle's, on every relation


class TranslationDot(Interaction):
    """TwHIN's score <h, t + r> as a PyKEEN interaction."""

    def forward(self, h, r, t):
        return (h * (t + r)).sum(dim=-1)


class TransEScorer:
    """-||e_lhs + t_rel - e_rhs||_2 over all pairs (TransE's score), for the project's evaluator."""

    def __init__(self, name, tables, translations, relations):
        self.name, self.tables, self.translations, self.relations = name, tables, translations, relations

    def matrix(self, rel, lhs, rhs):
        r = self.relations[rel]
        moved = torch.from_numpy(self.tables[r.lhs][lhs] + self.translations[rel])
        return -torch.cdist(moved, torch.from_numpy(self.tables[r.rhs][rhs])).numpy()


def entity_offsets(tables: dict[str, int]) -> dict[str, int]:
    """One id space for the library: each table's rows after the previous tables'."""
    offsets, start = {}, 0
    for name, rows in tables.items():
        offsets[name], start = start, start + rows
    return offsets


def library_triples(train_split, offsets) -> CoreTriplesFactory:
    lhs_table = np.array([offsets[r.lhs] for r in train_split.relations])[train_split.rel]
    rhs_table = np.array([offsets[r.rhs] for r in train_split.relations])[train_split.rel]
    triples = np.stack([train_split.lhs + lhs_table, train_split.rel, train_split.rhs + rhs_table], axis=1)
    return CoreTriplesFactory.create(mapped_triples=torch.from_numpy(triples.astype(np.int64)),
                                     num_entities=sum(train_split.tables.values()),
                                     num_relations=len(train_split.relations))


def library_model(kind: str, factory: CoreTriplesFactory, dim: int, seed: int):
    """The library's models with its own defaults where it has them: TransE is PyKEEN's model class
    (Xavier init, unit-norm entities; L2 distance here), the translation dot product an ERModel with
    Xavier-initialised entities and translations starting at zero, as the project's do."""
    if kind == "transe_softmax":
        return TransE(triples_factory=factory, embedding_dim=dim, scoring_fct_norm=2, loss=CrossEntropyLoss(),
                      random_seed=seed)
    loss = {"dot_bce": BCEWithLogitsLoss(), "dot_softmax": CrossEntropyLoss()}[kind]
    return ERModel(triples_factory=factory, interaction=TranslationDot, loss=loss, random_seed=seed,
                   entity_representations_kwargs={"shape": dim, "initializer": torch.nn.init.xavier_uniform_},
                   relation_representations_kwargs={"shape": dim, "initializer": torch.nn.init.zeros_})


def library_scorer(name: str, kind: str, model, splits, offsets) -> EmbeddingScorer | TransEScorer:
    with torch.no_grad():
        entities = model.entity_representations[0](indices=None).numpy().astype(np.float32)
        relations = model.relation_representations[0](indices=None).numpy().astype(np.float32)
    graph = splits["train"]
    tables = {t: entities[offsets[t]:offsets[t] + rows] for t, rows in graph.tables.items()}
    cls = TransEScorer if kind.startswith("transe") else EmbeddingScorer
    return cls(name, tables, relations, graph.relations)


LABELS = {"dot_bce": "library <lhs, rhs + t>, BCE", "dot_softmax": "library <lhs, rhs + t>, softmax",
          "transe_softmax": "library TransE, softmax"}


def train_library(kind, factory, splits, offsets, args, project_seconds, project_visits):
    """Epochs of PyKEEN training; scorers at equal time and at equal edge visits, with their costs."""
    torch.manual_seed(args.seed)
    model = library_model(kind, factory, args.dim, args.seed)
    loop = SLCWATrainingLoop(model=model, triples_factory=factory, optimizer="adam",
                             optimizer_kwargs={"lr": LIBRARY_LR}, negative_sampler="basic",
                             negative_sampler_kwargs={"num_negs_per_pos": LIBRARY_NEGATIVES})
    n_train = factory.num_triples
    equal_edge_epochs = max(1, round(project_visits / n_train))
    snapshots, elapsed, epoch = {}, 0.0, 0
    while epoch < equal_edge_epochs or "equal_time" not in snapshots:
        start = time.perf_counter()
        loop.train(triples_factory=factory, num_epochs=epoch + 1, batch_size=args.batch, continue_training=epoch > 0,
                   use_tqdm=False, use_tqdm_batch=False)
        elapsed += time.perf_counter() - start
        epoch += 1
        cost = {"epochs": epoch, "edge_visits": epoch * n_train, "train_seconds": elapsed}
        for point, reached in (("equal_time", elapsed >= project_seconds), ("equal_edges", epoch == equal_edge_epochs)):
            if reached and point not in snapshots:
                snapshots[point] = (library_scorer(f"{kind}@{point}", kind, model, splits, offsets), cost)
        print(f"  {LABELS[kind]}: epoch {epoch}, {elapsed:.1f} s", flush=True)
    return snapshots


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--graph", help="a twhin-generate graph folder (default: the quick profile's, made in a temp dir)")
    parser.add_argument("--steps", type=int, default=None, help="project steps (default: the study config's)")
    parser.add_argument("--batch", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resamples", type=int, default=200)
    parser.add_argument("--library", nargs="+", default=list(LABELS), choices=list(LABELS))
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    cfg = load_twhin_config()
    args.dim = cfg.dim
    steps = args.steps or cfg.training.num_train_steps

    with tempfile.TemporaryDirectory() as tmp:
        graph = Path(args.graph) if args.graph else Path(tmp) / "graph"
        if not args.graph:  # the quick profile's graph: 200,000 edges of the ranker world (seed 0, rate scale 20)
            from studylib.study.twhin_study import world_params
            generate_graph(GraphParams(edges=200_000, seed=0, world=world_params(0, 20.0)), graph, progress=False)
        start = time.perf_counter()
        result = train(TwhinTrainArgs(graph=str(graph), out=str(Path(tmp) / "project"), steps=steps, device="cpu",
                                      seed=args.seed, progress=False))
        project_wall = time.perf_counter() - start
        project_seconds = steps * cfg.train_data.per_replica_batch_size / result["edges_per_s"]  # the training loop alone
        project_visits = steps * cfg.train_data.per_replica_batch_size
        run = load_trained(Path(tmp) / "project")
        identity = run.run["identity"]
        splits = load_splits(str(graph), run.cfg, SplitSpec(**identity["split"]))
        print(f"project: {steps} steps x {cfg.train_data.per_replica_batch_size} = {project_visits:,} edge visits, "
              f"{project_seconds:.1f} s training ({project_wall:.1f} s with loading and checkpoints)", flush=True)

        offsets = entity_offsets(splits["train"].tables)
        factory = library_triples(splits["train"], offsets)
        costs = {"project": {"epochs": project_visits / factory.num_triples, "edge_visits": project_visits,
                             "train_seconds": project_seconds}}
        scorers = [EmbeddingScorer("project", run.tables, run.translations, run.cfg.relations),
                   PopularityScorer(splits["train"])]
        if splits["test"].world is not None:
            scorers.append(OracleScorer(World(splits["test"].world), run.cfg.relations))
        for kind in args.library:
            for point, (scorer, cost) in train_library(kind, factory, splits, offsets, args, project_seconds,
                                                       project_visits).items():
                scorers.append(scorer)
                costs[scorer.name] = cost
        rows = evaluate_scorers(scorers, splits, "test", n_resamples=args.resamples, seed=args.seed, baseline="project")
    frame = pd.DataFrame(rows)
    report(frame, costs, args)


# The views printed: the metric first (rhs given lhs, all held-out pairs), on which the
# goals are judged; then the other direction and the unseen pairs, for information.
VIEWS = (("rhs", "filtered", "all", True), ("rhs", "raw", "all", True), ("rhs", "filtered", "unseen", False),
         ("lhs", "filtered", "all", False), ("lhs", "filtered", "unseen", False))


def report(frame: pd.DataFrame, costs: dict, args) -> None:
    relations = list(dict.fromkeys(frame.relation))
    order = ["oracle", "popularity", "project"] + [f"{k}@{p}" for k in LABELS for p in ("equal_time", "equal_edges")]
    out = {"threads": args.threads, "costs": costs, "rows": frame.to_dict(orient="records"), "checks": {}}
    for direction, ranking, pairs, judged in VIEWS:
        view = frame[(frame.direction == direction) & (frame.ranking == ranking) & (frame.pairs == pairs)]
        mrr = view.pivot(index="scorer", columns="relation", values="mrr")[relations]
        mrr = mrr.loc[[s for s in order if s in mrr.index]]
        given = "rhs given lhs" if direction == "rhs" else "lhs given rhs"
        print(f"\nMRR, {ranking} ranks, {pairs} held-out pairs, {given} "
              f"({'the goals are judged here' if judged else 'for information'}; 95 % intervals over users in the JSON)")
        print(f"{'scorer':48s} {'epochs':>6s} {'train s':>8s} " + " ".join(f"{r:>10s}" for r in relations))
        for scorer in mrr.index:
            cost = costs.get(scorer, {})
            label = LABELS.get(scorer.split("@")[0], scorer) + (f" @ {scorer.split('@')[1]}" if "@" in scorer else "")
            epochs = f"{cost['epochs']:.1f}" if cost else ""
            seconds = f"{cost['train_seconds']:.1f}" if cost else ""
            print(f"{label:48s} {epochs:>6s} {seconds:>8s} " + " ".join(f"{mrr.loc[scorer, r]:10.4f}" for r in relations))
        checks = {}
        for scorer in [s for s in mrr.index if "@" in s]:
            ratio = mrr.loc["project"] / mrr.loc[scorer]
            if scorer.endswith("equal_time"):
                # "matches or beats": the library is not better beyond the paired interval of
                # (library - project) over users
                goal = 1.0
                lows = view[view.scorer == scorer].set_index("relation")["mrr_vs_baseline_low"]
                met = bool(((ratio >= goal) | (lows.reindex(relations) <= 0)).all())
            else:
                goal, met = GOAL_EQUAL_EDGES, bool((ratio >= GOAL_EQUAL_EDGES).all())
            checks[scorer] = {"project_over_library": ratio.round(3).to_dict(), "goal": goal, "met": met}
        if "oracle" in mrr.index:
            share = mrr.loc["project"] / mrr.loc["oracle"]
            checks["project_share_of_oracle"] = {"share": share.round(3).to_dict(), "goal": GOAL_ORACLE,
                                                 "met": bool((share >= GOAL_ORACLE).all())}
        out["checks"][f"{direction}/{ranking}/{pairs}"] = {"judged": judged, **checks}
        for name, check in checks.items():
            values = check.get("project_over_library", check.get("share"))
            verdict = ("met" if check["met"] else "NOT met") if judged else "information only"
            goal = (">= 1 or the library not better beyond its paired interval" if name.endswith("equal_time")
                    else f">= {check['goal']}")
            print(f"  {name}: lowest ratio {min(values.values()):.2f} (goal {goal}): {verdict}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=float))


if __name__ == "__main__":
    main()

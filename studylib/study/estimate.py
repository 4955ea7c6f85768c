"""How long a study will take on this machine, before it starts: the plan `make study` prints.

A chapter's time is a fixed part (starting its kernel, reading data), its analysis, which grows
with the held-out sets it reads, and, for the chapters that train or score the ranker, the examples
it passes through the model. The fixed parts and the
ranker's throughput were measured on one reference machine (`REFERENCE`); on another machine the
throughput is scaled by its matrix-multiply rate in the precision the study will train in, measured
in a fraction of a second (`matmul_rate`). A chapter whose last successful run had the same
parameters reuses its data and models, so only its fixed part is counted (`reuse_seconds`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from studylib.data.embeddings import EMBEDDING_VARIANTS

# Measured 2026-12-07 on 2 AMD EPYC cores without bf16 instructions (fp32), nothing else running:
# the quick study from a fresh clone (chapter times) and again with everything cached (reuse times);
# `matmul_rate("fp32")` there; the ranker's fp32 training throughput at batch 128 with its evaluation.
REFERENCE = {
    "matmul_flops": 128e9,  # `matmul_rate("fp32")` on the reference machine: 125-132 GFLOP/s over five calls
    "train_examples_per_s": 310.0,  # examples a second through a training step (forward + backward + Adam)
    # examples a second through an evaluation forward pass, with scoring and storing the probabilities:
    # re-measured on the paper study (2026-12-07: 16 ablation runs of 300 steps with 120,000-example
    # evaluations took 4.7-5.0 min each; 930, measured on quick alone, put paper 15 % under its time)
    "forward_examples_per_s": 720.0,
    # examples a second through a scoring pass alone (the paper study's 03_score scored four sets of
    # 120,000 in 399 s)
    "score_examples_per_s": 1_200.0,
    "twhin_edges_per_s": 55_000.0,  # TwHIN in the study: one thread, batches of 2,048 edges, with its evaluation
    "generate_examples_per_s": 16_000.0,
}
FIXED_SECONDS = {  # per chapter, what does not grow with the budget (kernel, imports, analysis, figures)
    "01_generate": 12.0, "01b_twhin": 25.0, "02_train": 60.0, "02b_twhin_ablation": 45.0,
    "03_score": 25.0, "04_distributions": 15.0, "05_sensitivity": 45.0,
}
RUN_SECONDS = 18.0  # a main-chapter run's own overhead: building the model, writing it (193 MB in fp32), its analysis
# A chapter whose data and models are all cached (measured the same day while a second study shared the cores).
REUSE_SECONDS = {"01_generate": 15.0, "01b_twhin": 15.0, "02_train": 45.0, "02b_twhin_ablation": 10.0,
                 "03_score": 25.0, "04_distributions": 15.0, "05_sensitivity": 45.0}
REPORT_SECONDS = 6.0
# The analysis reads the held-out sets and bootstraps over their users. The fixed and reuse times above
# are at the quick study's held-out size; each further held-out example adds these seconds, from the
# paper study's chapters at 120,000 (2026-12-07, fp32, 2 cores; 02_train with its head metrics summed
# per cluster). Chapter 5's weight search, Sobol indices and seed replications dominate: 722 s there.
QUICK_EVAL_EXAMPLES = 10_000
ANALYSIS_SECONDS_PER_EVAL_EXAMPLE = {"02_train": 0.00036, "02b_twhin_ablation": 0.00085, "03_score": 0.00065,
                                     "04_distributions": 0.00027, "05_sensitivity": 0.0062}
# bf16 on a CPU with bf16 instructions takes about 0.61 of the fp32 time (benchmarks/README.md); the
# matmul rate measured in bf16 already says most of it, so the throughput is scaled by that rate alone.


def matmul_rate(precision: str, seconds: float = 0.25) -> float:
    """FLOP/s of a 1024 × 1024 × 1024 matrix product in the given precision ("fp32" or "bf16") on
    this machine's CPU, as many threads as torch uses: the machine's speed, measured, not assumed."""
    import torch

    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    a = torch.randn(1024, 1024).to(dtype)
    b = torch.randn(1024, 1024).to(dtype)
    start = time.perf_counter()
    while time.perf_counter() - start < seconds / 2:  # warm-up: the first products pay for starting threads
        torch.mm(a, b)
    done, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        torch.mm(a, b)
        done += 1
    return 2 * 1024 ** 3 * done / elapsed


@dataclass(frozen=True)
class Work:
    """What a chapter does that grows with the budget."""
    train_examples: int = 0  # examples through a ranker training step
    forward_examples: int = 0  # examples through an evaluation pass
    twhin_edges: int = 0  # edges through a TwHIN training step
    generated: int = 0  # examples written by the generator
    saved_runs: int = 0  # ranker runs that write a model, its records and its seed's analysis
    scored_examples: int = 0  # examples through a scoring pass of a trained model


def work(chapter: str, p: dict) -> Work:
    """A chapter's work from the study's parameters (`steps` is a maximum under the stopping rule)."""
    batch = p["batch_size"]
    if chapter == "01_generate":
        return Work(generated=p["train_examples"] + p["validation_examples"] + 4 * p["eval_examples"] + p["fork_examples"])
    if chapter == "01b_twhin":
        return Work(twhin_edges=2 * p["twhin_steps"] * 2048, generated=p["twhin_edges"] // 10)
    if chapter == "02_train":
        runs = p["seeds"] + int(p["positional_experiment"])
        steps = runs * p["steps"] + p["fork_steps"] + 2 * p["downsample_steps"]  # downsampled + its control
        validations = runs * (p["steps"] // p["val_every"] if p["val_every"] else 0) * p["validation_examples"]
        evaluations = (runs + 3) * p["eval_examples"]  # each run's final evaluation, stored for scoring
        return Work(train_examples=steps * batch, forward_examples=validations + evaluations,
                    generated=2 * p["fork_examples"], saved_runs=runs + 3)
    if chapter == "02b_twhin_ablation":
        runs = len(EMBEDDING_VARIANTS) * p["ablation_seeds"]
        return Work(train_examples=runs * p["ablation_steps"] * batch, forward_examples=runs * p["eval_examples"],
                    generated=2 * p["eval_examples"])
    if chapter == "03_score":  # the sets the training did not already score: the main model's random and
        # cohorts sets, and the fork model's planted and random ones
        return Work(scored_examples=(2 + 2 * int(p["fork_steps"] > 0)) * p["eval_examples"])
    return Work()


def analysis_seconds(chapter: str, p: dict) -> float:
    """What a chapter's analysis takes beyond its fixed part, for held-out sets larger than quick's."""
    return ANALYSIS_SECONDS_PER_EVAL_EXAMPLE.get(chapter, 0.0) * max(0, p["eval_examples"] - QUICK_EVAL_EXAMPLES)


def fresh_seconds(chapter: str, p: dict, speed: float) -> float:
    """A chapter's time with nothing cached; `speed` is this machine's matmul rate over the reference's."""
    w = work(chapter, p)
    return (FIXED_SECONDS.get(chapter, 15.0)
            + w.train_examples / (REFERENCE["train_examples_per_s"] * speed)
            + w.forward_examples / (REFERENCE["forward_examples_per_s"] * speed)
            + w.scored_examples / (REFERENCE["score_examples_per_s"] * speed)
            + analysis_seconds(chapter, p)
            + w.twhin_edges / REFERENCE["twhin_edges_per_s"]
            + w.generated / REFERENCE["generate_examples_per_s"]
            + w.saved_runs * RUN_SECONDS)


def reuse_seconds(chapter: str, p: dict) -> float:
    """A chapter's time with its data and models cached: its fixed part and its analysis."""
    return REUSE_SECONDS.get(chapter, 15.0) + analysis_seconds(chapter, p)


def trains(chapter: str, p: dict) -> bool:
    """Whether the chapter trains a ranker, the part of a study whose time the machine's speed decides."""
    return work(chapter, p).train_examples > 0


def minutes(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"

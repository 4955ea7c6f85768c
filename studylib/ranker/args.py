"""A training run's arguments and their defaults: the one source of the training defaults, which
the `train` command line and the study's parameter schema (`studylib.study.parameters`) refer to.
Kept apart from the training loop so that reading a default does not import torch."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TrainArgs:
    data: str
    out: str
    config: str | None = None
    steps: int | None = None
    eval_data: str | None = None
    batch_size: int | None = None
    device: str = "auto"
    resume: bool = False
    seed: int = 0
    eval_every: int = 0  # 0: only at the end
    checkpoint_every: int | None = None
    log_every: int | None = None
    label_pairing: str = "by_name"
    output_bias: str = "base_rate"  # or "zero", as in the original
    progress: bool = True
    precision: str = "auto"  # auto (bf16 where the hardware has it), fp32 or bf16
    keep_checkpoint: bool = False  # keep the optimizer checkpoint of a finished run (to continue it later)
    val_data: str | None = None  # held-out data from the training distribution: the loss curve's held-out points
    val_every: int = 0  # evaluate on val_data every N steps (and at the end) into validation.csv; 0: never
    stop_patience: int = 0  # stop once this many validations in a row bring no gain (StoppingRule); 0: never
    stop_min_delta: float = 0.002  # the relative gain in held-out loss that counts as an improvement

"""Train the Heavy Ranker: one process or many (`torchrun`), CPU or CUDA, same code.

The published optimizer groups and schedules, labels selected by name (or by position, the
original's defect, for comparison), bf16 working copies on one process, checkpoints that resume
bit for bit, and the run folder (`studylib.ranker.runs` names its files and reads a finished run). The
folder is locked while a process trains into it.
"""

from __future__ import annotations

import bisect
import contextlib
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
import torch.distributed as dist
from torch import nn
from tqdm.auto import tqdm

from studylib.ranker.bf16 import Bf16WorkingCopies
from studylib.ranker.config import LearningRate, RecapConfig, load_config
from studylib.data.reader import Reader, open_dataset
from studylib.errors import StudyError
from studylib.ranker.args import TrainArgs  # noqa: F401 (train.TrainArgs, as before)
from studylib.ranker.stopping import StoppingRule  # noqa: F401 (train.StoppingRule, as before)
from studylib import yamlio
from studylib.io import (atomic_write, exclusive, file_sha256, read_json, remove_stale_temporaries,
                         settings_sha256, write_json)
from studylib.ranker.model import HeavyRanker, count_parameters, forward_flops
from studylib.ranker.probabilities import store_prediction
from studylib.ranker.runs import (CHECKPOINT, CONFIG_COPY, EVAL, HISTORY, MODEL, PREDICT_BATCH, RUN_INFO, STOPPING,
                                  VALIDATION, evaluate, head_metric_rows, load_checkpoint, predict, save_checkpoint,
                                  save_model)
from studylib.runtime import Runtime, precision_reason, start_runtime
from studylib.schema import LABELS, short_name
from studylib.data.layout import MANIFEST

PAIRINGS = ("by_name", "positional")


# ---------------------------------------------------------------- learning-rate schedules


def learning_rate(schedule: LearningRate, step: int) -> float:
    """The original's four schedule kinds; `step` counts optimizer steps from 0."""
    if schedule.constant is not None:
        return schedule.constant
    if (piecewise := schedule.piecewise_constant) is not None:
        return float(piecewise.learning_rate_values[bisect.bisect_right(piecewise.learning_rate_boundaries, step)])
    ramp = schedule.linear_ramp_to_constant or schedule.linear_ramp_to_cosine
    if step < ramp.num_ramp_steps:
        return ramp.learning_rate * step / ramp.num_ramp_steps
    if schedule.linear_ramp_to_constant is not None:
        return ramp.learning_rate
    # linear_ramp_to_cosine: cosine decay from the peak at num_ramp_steps to final_learning_rate at
    # the absolute step final_num_steps (the config refuses final_num_steps <= num_ramp_steps), then flat.
    final, end = ramp.final_learning_rate, ramp.final_num_steps
    if step > end:
        return final
    progress = (step - ramp.num_ramp_steps) / (end - ramp.num_ramp_steps)
    return final + (ramp.learning_rate - final) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_optimizer(model: HeavyRanker, cfg: RecapConfig) -> tuple[torch.optim.Adam, list[LearningRate]]:
    """Adam with one parameter group for the backbone and one per tower, each with its own schedule."""
    rates, adam = cfg.optimizer.multi_task_learning_rates, cfg.optimizer.adam
    groups = [{"params": list(model.featurize.parameters()) + list(model.backbone.parameters()), "name": "backbone"}]
    schedules = [rates.backbone_learning_rate]
    for head in model.heads:
        groups.append({"params": list(model.towers[short_name(head)].parameters()), "name": head})
        schedules.append(rates.tower_learning_rates[head])
    # The fused kernel (CPU and CUDA) makes the 48M-parameter update ~5x cheaper than the loop.
    optimizer = torch.optim.Adam(groups, lr=0.0, betas=(adam.beta_1, adam.beta_2), eps=adam.epsilon, fused=True)
    return optimizer, schedules


def set_learning_rates(optimizer: torch.optim.Optimizer, schedules: list[LearningRate], step: int) -> None:
    for group, schedule in zip(optimizer.param_groups, schedules):
        group["lr"] = learning_rate(schedule, step)


# ---------------------------------------------------------------- labels and loss


def init_output_bias(model: HeavyRanker, rates: list[float]) -> None:
    """Start each tower's output at the log-odds of its label's rate in the training data.

    The original starts every head at bias 0 (p ≈ 0.5). Over a short CPU run a rare head
    (report: a handful of positives) never leaves that start, and its −369 weight then
    dominates every score; starting at the base rate removes that artefact.
    """
    with torch.no_grad():
        for head, rate in zip(model.heads, rates):
            p = min(max(rate, 1e-6), 0.5)
            model.towers[short_name(head)].layers[-1].bias.fill_(math.log(p / (1 - p)))


def label_names_for_heads(heads: tuple[str, ...], pairing: str) -> list[str]:
    """The label each head trains on. `positional` reproduces the original's defect.

    The original stacked the 13 stored labels in file order and gave head i the label in
    column i, so with 10 heads every head learnt a neighbour's label (favorited learnt
    is_bookmarked, ...). The study pairs them by name.
    """
    if pairing == "by_name":
        return list(heads)
    if pairing == "positional":
        return list(LABELS[: len(heads)])
    raise StudyError(f"--label-pairing must be one of {', '.join(PAIRINGS)}, got {pairing!r}")


def multitask_loss(logits: torch.Tensor, labels: torch.Tensor, pos_weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-head BCE-with-logits (mean over the batch, positives weighted by the config's pos_weight);
    total = mean over heads, as published. Returns (total, per-head [heads])."""
    per_element = nn.functional.binary_cross_entropy_with_logits(
        logits.float(), labels, pos_weight=pos_weight, reduction="none")
    per_head = per_element.mean(dim=0)
    return per_head.mean(), per_head


def make_train_step(model: HeavyRanker, optimizer: torch.optim.Optimizer, runtime: Runtime,
                    pos_weight: torch.Tensor):
    """A function doing one optimizer step on (features, labels) and returning the per-head losses.

    Several processes: DDP around the model (bf16 by autocast). One process in bf16: persistent
    bf16 copies of the Linear weights (`studylib.ranker.bf16`), the autocast step's arithmetic without
    its per-step weight casts. fp32: the plain step.
    """
    forward, working = model, None
    if runtime.world_size > 1:
        device_ids = [runtime.device.index] if runtime.device.type == "cuda" else None
        forward = nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    elif runtime.precision == "bf16":
        working = Bf16WorkingCopies(model)
        forward = working.forward

    def step(features: dict, labels: torch.Tensor) -> torch.Tensor:
        with runtime.autocast():
            logits = forward(features)["logits"]
        loss, per_head = multitask_loss(logits, labels, pos_weight)
        optimizer.zero_grad(set_to_none=True)
        if working is not None:
            working.zero_grad()
        loss.backward()
        if working is not None:
            working.gradients_to_masters()
        optimizer.step()
        if working is not None:
            working.refresh()
        return per_head

    return step


# ---------------------------------------------------------------- the stopping rule


def held_out_losses(validation: pd.DataFrame) -> dict[int, float]:
    """Step -> held-out loss (mean over heads of the log loss), in step order: validation.csv's rows."""
    means = validation.groupby("step", sort=True)["log_loss"].mean()
    return {int(step): float(loss) for step, loss in means.items()}


# ---------------------------------------------------------------- the training loop


def _append_rows(path: Path, rows: list[dict]) -> None:
    """Append logged rows to a run's CSV record (with its header when the file is new)."""
    if rows:
        pd.DataFrame(rows).to_csv(path, mode="a", header=not path.exists(), index=False)


def _truncate_rows(path: Path, max_step: int) -> None:
    """Drop rows logged after the checkpoint a resumed run restarts from. Read as text, so the
    rows kept are byte for byte what was written (a resumed run's records equal an unbroken one's)."""
    if path.exists():
        try:
            rows = pd.read_csv(path, dtype=str, keep_default_na=False)
            kept = rows[rows["step"].astype(int) <= max_step]
        except (pd.errors.ParserError, pd.errors.EmptyDataError, KeyError, ValueError, UnicodeDecodeError):
            raise StudyError(f"{path}: not a run record this resume can continue (garbled or edited); "
                             "train a new run instead") from None
        atomic_write(path, lambda tmp: kept.to_csv(tmp, index=False))


@dataclass(frozen=True)
class _Budget:
    """The run's counts, each from the command line or else the config."""

    steps: int
    batch_size: int
    checkpoint_every: int
    log_every: int


@dataclass
class _Position:
    """Where the loop stands: what a checkpoint saves and a resume restores."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0


def train(args: TrainArgs) -> dict:
    """Train per `args`; returns the final evaluation rows (empty without evaluation data).

    Everything is checked before the first write; the phases then read top to bottom in `_train`."""
    runtime = start_runtime(args.device, args.precision)
    cfg = load_config(args.config)
    budget = _check_arguments(args, cfg)
    renamed, truncation = cfg.train_data.renamed_features, cfg.train_data.truncation
    data = open_dataset(args.data, renamed=renamed, truncation=truncation)
    eval_data = open_dataset(args.eval_data, renamed=renamed, truncation=truncation) if args.eval_data else None
    val_data = (open_dataset(args.val_data, renamed=renamed, truncation=truncation)
                if args.val_data and args.val_every else None)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise StudyError(f"{out}: is a file, not a folder; choose another --out")
    created = not out.exists()
    with contextlib.ExitStack() as held:
        if runtime.is_main:  # one writer per run folder: the lock first, then the checks (no run slips in between)
            held.enter_context(exclusive(out, "run"))
            try:
                _check_output(out, args.resume)
            except StudyError:
                if created:  # refused: leave no folder behind that this call made
                    shutil.rmtree(out, ignore_errors=True)
                raise
            remove_stale_temporaries(out)  # what a killed writer left
        else:
            _check_output(out, args.resume)  # the same verdict on every process
        return _train(args, runtime, cfg, budget, data, eval_data, val_data)


def _check_arguments(args: TrainArgs, cfg: RecapConfig) -> _Budget:
    label_names_for_heads(cfg.heads, args.label_pairing)  # refuses an unknown pairing
    if args.output_bias not in ("base_rate", "zero"):
        raise StudyError(f"--output-bias must be base_rate or zero, got {args.output_bias!r}")
    budget = _Budget(steps=_setting(args.steps, "--steps", cfg.training.num_train_steps),
                     batch_size=_setting(args.batch_size, "--batch-size", cfg.train_data.global_batch_size),
                     checkpoint_every=_setting(args.checkpoint_every, "--checkpoint-every",
                                               cfg.training.checkpoint_every_n),
                     log_every=_setting(args.log_every, "--log-every", cfg.training.train_log_every_n))
    if args.eval_every < 0:
        raise StudyError(f"--eval-every must be >= 0, got {args.eval_every}")
    if args.val_every < 0:
        raise StudyError(f"--val-every must be >= 0, got {args.val_every}")
    if args.val_every and not args.val_data:
        raise StudyError("--val-every needs --val-data (held-out data from the training distribution)")
    StoppingRule(args.stop_patience, args.stop_min_delta).validate()
    if args.stop_patience and not args.val_every:
        raise StudyError("--stop-patience needs --val-every and --val-data (the held-out loss it watches)")
    return budget


def _check_output(out: Path, resume: bool) -> None:
    """A new run needs a free folder; a resumed one its checkpoint."""
    checkpoint_path = out / CHECKPOINT
    if resume and not checkpoint_path.exists():
        if (out / MODEL).exists():
            raise StudyError(f"{out}: this run finished and its optimizer checkpoint was removed; train with "
                             "--keep-checkpoint to continue a run later, or choose another --out")
        raise StudyError(f"{checkpoint_path}: --resume given but there is no checkpoint to resume from")
    if not resume and (checkpoint_path.exists() or (out / MODEL).exists()):
        raise StudyError(f"{out}: holds a run already; pass --resume to continue it or choose another --out")


def _setting(value: int | None, flag: str, default: int) -> int:
    """A command-line count, or the config's when not given; either must be >= 1."""
    chosen = default if value is None else value
    if chosen < 1:
        raise StudyError(f"{flag} must be >= 1, got {chosen}" if value is not None else
                         f"config: the value behind {flag} must be >= 1, got {chosen}")
    return chosen


def _train(args: TrainArgs, runtime: Runtime, cfg: RecapConfig, budget: _Budget, data, eval_data, val_data) -> dict:
    out = Path(args.out)
    # 1. the model, its optimizer and the label each head learns
    torch.manual_seed(args.seed)
    model = HeavyRanker(cfg.model)
    model.set_downsampling(data.downsampling)
    optimizer, schedules = build_optimizer(model, cfg)
    label_names = label_names_for_heads(model.heads, args.label_pairing)
    if args.output_bias == "base_rate":
        init_output_bias(model, [data.manifest["realised_rates"][label] for label in label_names])
    label_index = [LABELS.index(name) for name in label_names]
    # 2. a resumed run: its settings compared, the checkpoint's state restored
    position = _Position()
    if args.resume:
        _check_resume_settings(out, args, cfg, budget.batch_size, runtime.precision)
        state = load_checkpoint(out / CHECKPOINT, model, cfg, optimizer)
        position = _Position(state["step"], state["epoch"], state["batch_in_epoch"])
        torch.set_rng_state(state["rng"])
    model.to(runtime.device)
    _move_optimizer_state(optimizer, runtime.device)
    train_step = make_train_step(model, optimizer, runtime, model.pos_weight.to(runtime.device))
    reader = Reader(data, budget.batch_size, shuffle=True, seed=args.seed, rank=runtime.rank,
                    world_size=runtime.world_size, device=runtime.device)
    if reader.batches_per_epoch() < 1:
        raise StudyError(f"{args.data}: fewer rows per shuffle window than --batch-size {budget.batch_size}")
    # 3. the run's records: started, or cut back to the checkpoint
    if runtime.is_main:
        if args.resume:
            for record in (HISTORY, EVAL, VALIDATION):
                _truncate_rows(out / record, position.step)
        else:
            _write_run_info(out, args, cfg, model, label_names, data, budget.batch_size, runtime)
    runtime.barrier()
    # 4. the loop: a step, then whatever falls due at it (log, validation, evaluation, checkpoint)
    rule = StoppingRule(args.stop_patience, args.stop_min_delta)
    # a resumed run continues the rule from the validations it kept (truncated to its checkpoint)
    losses = held_out_losses(pd.read_csv(out / VALIDATION)) if args.resume and (out / VALIDATION).exists() else {}
    bar = tqdm(total=budget.steps, initial=position.step, desc="train", unit="step",
               disable=not (args.progress and runtime.is_main))
    history, nonfinite, seen, started = [], 0, 0, time.perf_counter()
    eval_rows: list[dict] = []
    stop = False
    while position.step < budget.steps and not stop:
        for batch in reader.epoch(position.epoch, skip=position.batch_in_epoch):
            model.train()
            set_learning_rates(optimizer, schedules, position.step)
            batch = batch.to(runtime.device)
            per_head = train_step(batch.features, torch.stack([batch.labels[LABELS[i]] for i in label_index], dim=1))
            if not _all_finite(per_head, runtime):  # every later step would only spread the NaN
                bad = [short_name(h) for h, v in zip(model.heads, per_head.tolist()) if not math.isfinite(v)]
                raise StudyError(f"{out}: the training loss became non-finite at step {position.step + 1} (heads "
                                 f"{', '.join(bad) or 'of another process'}); check the data and the config's learning rates")
            position.step += 1
            position.batch_in_epoch += 1
            seen += budget.batch_size
            nonfinite += batch.nonfinite
            step, at_max = position.step, position.step == budget.steps
            if step % budget.log_every == 0 or at_max:
                history.append(_log_row(per_head, position, model, optimizer, seen / (time.perf_counter() - started),
                                        nonfinite, runtime, bar))
            bar.update(1)
            if val_data is not None and (at_max or step % args.val_every == 0):
                if runtime.is_main:  # the same metrics on held-out data drawn like the training data
                    rows = evaluate(model, Reader(val_data, 1024, shuffle=False, device=runtime.device), runtime,
                                    label_names)
                    _append_rows(out / VALIDATION, [{"step": step, **row} for row in rows])
                    losses[step] = sum(row["log_loss"] for row in rows) / len(rows)
                    stop = rule.plateaued(list(losses.values()))
                stop = _agree(stop, runtime)
            at_end = at_max or stop
            final = None  # the last evaluation's predictions, kept as the run's stored probabilities
            if eval_data is not None and (at_end or (args.eval_every and step % args.eval_every == 0)):
                if runtime.is_main:
                    # read the way scoring reads, so one pass serves the metrics and the stored table
                    prediction = predict(model, Reader(eval_data, PREDICT_BATCH, shuffle=False, device=runtime.device,
                                                       with_cohort=True), runtime, desc="evaluate")
                    rows = head_metric_rows(prediction, model.heads, label_names, eval_data.downsampling)
                    eval_rows = [{"step": step, **row} for row in rows]
                    _append_rows(out / EVAL, eval_rows)
                    final = prediction if at_end else None
                runtime.barrier()
            if at_end or step % budget.checkpoint_every == 0:
                if runtime.is_main:
                    _append_rows(out / HISTORY, history)
                    history = []
                    _save(out, model, optimizer, cfg, position, runtime.precision, at_end, args.keep_checkpoint)
                    if final is not None:  # keyed by the model file just written
                        store_prediction(out, args.eval_data, final, model.heads, runtime.precision)
                runtime.barrier()
            if at_end:
                break
        else:
            position.epoch, position.batch_in_epoch = position.epoch + 1, 0
    bar.close()
    # 5. what the run leaves besides its records: the stopping rule's account, a note on bad inputs
    if runtime.is_main and rule.patience:
        _write_stopping(out, rule, args.val_every, budget.steps, position.step, losses)
    if runtime.is_main and nonfinite:
        print(f"note: {nonfinite} non-finite continuous feature values were mapped to 0 by the model")
    runtime.close()
    return {"eval": eval_rows, "nonfinite": nonfinite, "step": position.step, "is_main": runtime.is_main}


def _write_run_info(out: Path, args: TrainArgs, cfg: RecapConfig, model: HeavyRanker, label_names: list[str], data,
                    batch_size: int, runtime: Runtime) -> None:
    """run.json and the config's copy: what the run was started with (a resume is checked against it)."""
    atomic_write(out / CONFIG_COPY, lambda tmp: shutil.copyfile(cfg.source, tmp))
    write_json(out / RUN_INFO, {
        "data": str(Path(args.data).resolve()), "eval_data": args.eval_data and str(Path(args.eval_data).resolve()),
        "data_manifest_sha256": file_sha256(Path(args.data) / MANIFEST),
        "config": Path(cfg.source).name, "heads": list(model.heads), "label_pairing": args.label_pairing,
        "labels_per_head": dict(zip(model.heads, label_names)), "batch_size": batch_size, "seed": args.seed,
        "parameters": count_parameters(model), "forward_flops_per_example": forward_flops(model),
        "downsampling": data.downsampling, "world_size": runtime.world_size,
        "precision": runtime.precision,
        "precision_reason": precision_reason(args.precision, runtime.device),
    })


def _log_row(per_head: torch.Tensor, position: _Position, model: HeavyRanker, optimizer, rate: float, nonfinite: int,
             runtime: Runtime, bar) -> dict:
    """history.csv's row at this step: the global batch's loss per head, as one process would log it."""
    logged = per_head.detach().clone()
    if runtime.world_size > 1:
        dist.all_reduce(logged)
        logged /= runtime.world_size
    bar.set_postfix(loss=f"{logged.mean().item():.4f}", ex_s=f"{rate:,.0f}")
    return {"step": position.step, "epoch": position.epoch, "loss": logged.mean().item(),
            **{f"loss.{h}": float(v) for h, v in zip(model.heads, logged.tolist())},
            "lr_backbone": optimizer.param_groups[0]["lr"], "examples_per_s": rate, "nonfinite_features": nonfinite}


def _save(out: Path, model: HeavyRanker, optimizer, cfg: RecapConfig, position: _Position, precision: str,
          at_end: bool, keep_checkpoint: bool) -> None:
    """A checkpoint to resume from; at the end the model, and the checkpoint only when asked to keep it
    (resuming alone needs Adam's state, 2/3 of the bytes)."""
    if at_end:
        save_model(out / MODEL, model, cfg, position.step, precision)
    if not at_end or keep_checkpoint:
        save_checkpoint(out / CHECKPOINT, model, optimizer, position.step, position.epoch, position.batch_in_epoch, cfg)
    else:
        (out / CHECKPOINT).unlink(missing_ok=True)


def _write_stopping(out: Path, rule: StoppingRule, val_every: int, max_steps: int, stopped_at: int,
                    losses: dict[int, float]) -> None:
    best = min(losses, key=losses.__getitem__) if losses else None
    write_json(out / STOPPING, {
        "rule": "mean held-out log loss over heads; stop when the last `patience` validations improve on the "
                "best earlier one by at most `min_delta` (relative)",
        "patience": rule.patience, "min_delta": rule.min_delta, "val_every": val_every,
        "max_steps": max_steps, "stopped_at": stopped_at, "plateaued": rule.plateaued(list(losses.values())),
        "best_step": best, "best_loss": losses.get(best), "held_out_loss": {str(k): v for k, v in losses.items()}})


def _all_finite(per_head: torch.Tensor, runtime: Runtime) -> bool:
    """Whether every process's loss is finite: all stop together, none waits in the next all-reduce."""
    finite = torch.isfinite(per_head.detach()).all()
    if runtime.world_size == 1:
        return bool(finite)
    flag = finite.float().reshape(1)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


def _agree(stop: bool, runtime: Runtime) -> bool:
    """The main process's stopping decision, shared with every process (only it validates)."""
    if runtime.world_size == 1:
        return stop
    flag = torch.tensor([1.0 if stop else 0.0], device=runtime.device)
    dist.broadcast(flag, src=0)
    return bool(flag.item())


def _check_resume_settings(out: Path, args: TrainArgs, cfg: RecapConfig, batch_size: int, precision: str) -> None:
    """A resumed run must continue with the settings it was started with (run.json keeps them)."""
    info_path = out / RUN_INFO
    if not info_path.exists():
        raise StudyError(f"{out}: --resume needs {RUN_INFO} beside the checkpoint (none found)")
    info = read_json(info_path)
    now = {"--data": str(Path(args.data).resolve()), "--batch-size": batch_size, "--seed": args.seed,
           "--label-pairing": args.label_pairing, "--precision": precision}
    then = {"--data": info.get("data"), "--batch-size": info.get("batch_size"), "--seed": info.get("seed"),
            "--label-pairing": info.get("label_pairing"), "--precision": info.get("precision", "fp32")}
    for flag, value in now.items():
        if then[flag] != value:
            raise StudyError(f"{out}: --resume with {flag} {value!r}, but the run was started with {then[flag]!r}")
    # the inputs by content: other data written at the same path, or a config edited since, is another run
    if file_sha256(Path(args.data) / MANIFEST) != info.get("data_manifest_sha256"):
        raise StudyError(f"{out}: --resume with other data at {args.data} (its manifest.json changed since the run "
                         "started); train a new run instead")
    if settings_sha256(cfg.raw) != settings_sha256(yamlio.read(out / CONFIG_COPY, "config")):
        raise StudyError(f"{out}: --resume with a config that differs from the run's {CONFIG_COPY}; "
                         "train a new run instead")


def _move_optimizer_state(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    for state in optimizer.state.values():
        for key, value in state.items():
            if torch.is_tensor(value) and key != "step":
                state[key] = value.to(device)

"""A Heavy Ranker run folder: its files, the checkpoint and model formats, and reading a finished run.

`studylib train` writes the folder; scoring, evaluation and the notebooks read it through this
module without importing the training loop. The files: `config.yaml` (the config used),
`run.json` (arguments, data provenance), `checkpoint.pt` (latest weights and Adam state;
removed when the run finishes unless `--keep-checkpoint`), `model.pt` (the finished weights),
`history.csv` (training losses), `eval.csv` (per-head metrics beside the oracle's on planted
data), `validation.csv` (held-out metrics during training) and `stopping.json` (where the
stopping rule ended the run, with `--stop-patience`). Both .pt files are read with
`weights_only=True`, so a crafted file cannot run code.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tqdm.auto import tqdm

from studylib.ranker.bf16 import bf16_state_dict
from studylib.ranker.config import RecapConfig, load_config
from studylib.data.reader import Reader
from studylib.errors import StudyError
from studylib.io import atomic_write, read_json, read_torch_file, settings_sha256
from studylib.ranker.metrics import head_metrics, to_data_space
from studylib.ranker.model import HeavyRanker
from studylib.runtime import Runtime, resolve_device, resolve_precision
from studylib.schema import LABELS

CHECKPOINT = "checkpoint.pt"
MODEL = "model.pt"  # weights only (a third of the checkpoint, which also holds Adam's state)
RUN_INFO = "run.json"
CONFIG_COPY = "config.yaml"
HISTORY = "history.csv"
EVAL = "eval.csv"
VALIDATION = "validation.csv"  # held-out metrics during training (--val-data, --val-every)
STOPPING = "stopping.json"  # the stopping rule, where it stopped and the held-out losses it saw (--stop-patience)
PREDICT_BATCH = 2048  # rows per forward pass wherever stored probabilities are computed, so they agree bit for bit


# ---------------------------------------------------------------- checkpoints


def config_digest(cfg: RecapConfig) -> str:
    return settings_sha256(cfg.raw["model"])


def save_checkpoint(path: Path, model: HeavyRanker, optimizer, step: int, epoch: int, batch_in_epoch: int,
                    cfg: RecapConfig) -> None:
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "step": step,
        "epoch": epoch,
        "batch_in_epoch": batch_in_epoch,
        "rng": torch.get_rng_state(),
        "model_config_sha256": config_digest(cfg),
        "heads": list(model.heads),
    }
    _atomic_save(state, path)


def save_model(path: Path, model: HeavyRanker, cfg: RecapConfig, step: int, precision: str = "fp32") -> None:
    """The trained weights alone, for scoring (loads ~3x faster than the full checkpoint). A bf16
    run stores its Linear weights as its forward used them, in bf16 (half the bytes, the same
    predictions); its fp32 masters live on only in a kept checkpoint (`--keep-checkpoint`)."""
    weights = bf16_state_dict(model) if precision == "bf16" else model.state_dict()
    _atomic_save({"model": weights, "step": step, "model_config_sha256": config_digest(cfg),
                  "heads": list(model.heads), "weights_precision": precision}, path)


def _atomic_save(state: dict, path: Path) -> None:
    atomic_write(path, lambda tmp: torch.save(state, tmp))  # never a half-written file under the real name


def load_checkpoint(path: Path, model: HeavyRanker, cfg: RecapConfig, optimizer=None) -> dict:
    try:
        state = read_torch_file(path, "checkpoint")
    except FileNotFoundError:
        raise StudyError(f"{path}: checkpoint not found") from None
    if not isinstance(state, dict) or "model" not in state:
        raise StudyError(f"{path}: not a checkpoint made by `studylib train` (no model weights in it)")
    if state.get("model_config_sha256") != config_digest(cfg):
        raise StudyError(f"{path}: checkpoint was made with a different model config than {Path(cfg.source).name}")
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1].strip()
        raise StudyError(f"{path}: checkpoint does not match the model ({first})") from None
    if optimizer is not None:  # a resume: the whole training state, not only the weights
        missing = [k for k in ("optimizer", "step", "epoch", "batch_in_epoch", "rng") if k not in state]
        if missing:
            raise StudyError(f"{path}: not a training checkpoint (no {missing[0]}; a model.pt copied here?); "
                             "it cannot be resumed")
        try:
            optimizer.load_state_dict(state["optimizer"])
        except (ValueError, KeyError, TypeError) as exc:
            raise StudyError(f"{path}: its optimizer state does not match the model ({type(exc).__name__})") from None
    return state


# ---------------------------------------------------------------- evaluation


@torch.no_grad()
def predict(model: HeavyRanker, reader: Reader, runtime: Runtime, progress: bool = False, desc: str = "predict"):
    """Run the model over a reader once. Returns concatenated outputs, labels, truth and ids (CPU)."""
    model.eval()
    parts = {"probabilities": [], "calibrated": [], "labels": [], "truth": [], "ids": [], "cohort": [],
             "nonfinite": 0}
    for batch in tqdm(reader.epoch(0), total=reader.batches_per_epoch(), desc=desc, unit="batch",
                      disable=not progress, leave=False):
        device_batch = batch.to(runtime.device)
        with runtime.autocast():
            out = model(device_batch.features)
        parts["probabilities"].append(out["probabilities"].float().cpu())
        parts["calibrated"].append(out["calibrated"].float().cpu())
        parts["labels"].append(torch.stack([batch.labels[label] for label in LABELS], dim=1))
        if batch.true_probs:
            parts["truth"].append(torch.stack([batch.true_probs[label] for label in LABELS], dim=1))
        parts["ids"].append(batch.ids)
        if batch.cohort is not None:
            parts["cohort"] += batch.cohort
        parts["nonfinite"] += batch.nonfinite
    result = {k: torch.cat(parts[k]) for k in ("probabilities", "calibrated", "labels")}
    result["truth"] = torch.cat(parts["truth"]) if parts["truth"] else None
    result["ids"] = {k: torch.cat([ids[k] for ids in parts["ids"]]) for k in parts["ids"][0]}
    result["cohort"] = parts["cohort"] or None
    result["nonfinite"] = parts["nonfinite"]
    return result


def evaluate(model: HeavyRanker, reader: Reader, runtime: Runtime, label_names: list[str]) -> list[dict]:
    """Per-head metrics on the evaluation data, and the oracle's (true probabilities) beside them."""
    return head_metric_rows(predict(model, reader, runtime, desc="evaluate"), model.heads, label_names,
                            reader.dataset.downsampling)


def head_metric_rows(out: dict, heads: tuple[str, ...], label_names: list[str], rates: dict) -> list[dict]:
    """`evaluate`'s rows from a `predict` result. Predictions are compared in the evaluation data's own
    space: the calibrated probability is mapped through that data's downsampling rates (`rates`;
    identity when it was not downsampled)."""
    rows = []
    for i, head in enumerate(heads):
        label = label_names[i]
        y = out["labels"][:, LABELS.index(label)]
        r = rates.get(label, {"pos_downsampling_rate": 1.0, "neg_downsampling_rate": 1.0})
        pred = to_data_space(out["calibrated"][:, i], r["pos_downsampling_rate"], r["neg_downsampling_rate"])
        row = {"head": head, "label": label, **head_metrics(pred, y)}
        if out["truth"] is not None:
            truth = out["truth"][:, LABELS.index(label)]
            oracle = head_metrics(to_data_space(truth, r["pos_downsampling_rate"], r["neg_downsampling_rate"]), y)
            row.update({f"oracle_{k}": oracle[k] for k in ("auroc", "rce", "log_loss", "calibration_error")})
            row["truth_mae"] = float((out["calibrated"][:, i] - truth).abs().mean())
        rows.append(row)
    return rows


# ---------------------------------------------------------------- reuse a finished run


def load_run(run_dir: str | Path, device: str = "auto",
             precision: str = "auto") -> tuple[HeavyRanker, RecapConfig, dict, Runtime]:
    """The trained model of a run directory (config, checkpoint and run info from the directory)."""
    run = Path(run_dir)
    if not (run / RUN_INFO).exists():
        raise StudyError(f"{run}: not a run directory (no {RUN_INFO}); train one with `studylib train`")
    cfg = load_config(run / CONFIG_COPY)
    info = read_json(run / RUN_INFO)
    model = HeavyRanker(cfg.model)
    load_checkpoint(run / MODEL if (run / MODEL).exists() else run / CHECKPOINT, model, cfg)
    torch_device = resolve_device(device)
    runtime = Runtime(torch_device, resolve_precision(precision, torch_device))
    model.to(runtime.device).eval()
    return model, cfg, info, runtime


__all__ = ["CHECKPOINT", "CONFIG_COPY", "EVAL", "HISTORY", "MODEL", "RUN_INFO", "STOPPING", "VALIDATION", "config_digest",
           "PREDICT_BATCH", "evaluate", "head_metric_rows", "load_checkpoint", "load_run", "predict", "save_checkpoint", "save_model"]

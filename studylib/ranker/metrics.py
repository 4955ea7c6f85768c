"""Per-head evaluation metrics: AUROC, RCE, log loss, calibration error (torchmetrics where it has them).

RCE = 100 · (1 − CE(model) / CE(constant prediction at the mean label)), predictions clipped
to [1e-7, 1 − 1e-7], as in the original. On planted data the same metrics of the true
probabilities (the oracle) stand beside the model's.
"""

from __future__ import annotations

import math

import torch
from torchmetrics.functional.classification import binary_auroc, binary_calibration_error

from studylib.schema import PREDICTION_EPS

EPS = PREDICTION_EPS  # predictions clipped to [EPS, 1 - EPS], as the original's RCE (also analysis.stats)


def log_loss(prob: torch.Tensor, label: torch.Tensor) -> float:
    p = prob.double().clamp(EPS, 1 - EPS)
    y = label.double()
    return float(-(y * p.log() + (1 - y) * (1 - p).log()).mean())


def relative_cross_entropy(prob: torch.Tensor, label: torch.Tensor) -> float:
    baseline = log_loss(torch.full_like(prob, float(label.double().mean())), label)
    return 100.0 * (1.0 - log_loss(prob, label) / baseline) if baseline > 0 else math.nan


def head_metrics(prob: torch.Tensor, label: torch.Tensor) -> dict[str, float]:
    """Metrics of one head's predicted probabilities; AUROC is NaN when a class is absent."""
    positives = int(label.sum())
    both = 0 < positives < label.numel()
    target = label.long()
    return {
        "auroc": float(binary_auroc(prob, target)) if both else math.nan,
        "rce": relative_cross_entropy(prob, label) if both else math.nan,
        "log_loss": log_loss(prob, label),
        "calibration_error": float(binary_calibration_error(prob, target, n_bins=15)),
        "mean_prediction": float(prob.double().mean()),
        "positive_rate": positives / max(1, label.numel()),
        "positives": positives,
        "rows": label.numel(),
    }


def to_data_space(prob: torch.Tensor, pos_rate: float, neg_rate: float) -> torch.Tensor:
    """A population probability as it appears in downsampled data (the inverse of calibration)."""
    kept_pos, kept_neg = prob * pos_rate, (1 - prob) * neg_rate
    return kept_pos / (kept_pos + kept_neg)

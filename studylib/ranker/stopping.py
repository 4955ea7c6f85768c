"""The ranker's stopping rule, apart from the training loop so the analysis can judge curves
without loading torch."""

from __future__ import annotations

from dataclasses import dataclass

from studylib.errors import StudyError


@dataclass(frozen=True)
class StoppingRule:
    """Stop when the held-out loss has stopped improving.

    The held-out loss is the mean over heads of each head's log loss on the validation data
    (`--val-data`, drawn like the training data), measured every `--val-every` steps. The run
    stops at the first measurement where none of the last `patience` measurements improved on
    the best one before them by more than `min_delta` (relative): with patience 2, val_every 250
    and min_delta 0.002, 500 steps that gain less than 0.2 % of the loss end the run. The model
    kept is the one at the stopping step (at a plateau it is within `min_delta` of the best).
    """

    patience: int
    min_delta: float

    def validate(self) -> None:
        if self.patience < 0:
            raise StudyError(f"--stop-patience must be >= 0 (0: train every step), got {self.patience}")
        if not 0 <= self.min_delta < 1:
            raise StudyError(f"--stop-min-delta must be in [0, 1), got {self.min_delta}")

    def plateaued(self, losses: list[float]) -> bool:
        """True when the last `patience` losses improve on the best earlier one by at most `min_delta`."""
        if self.patience < 1 or len(losses) <= self.patience:
            return False
        best_before = min(losses[:-self.patience])
        return min(losses[-self.patience:]) > best_before * (1 - self.min_delta)

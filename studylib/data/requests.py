"""Candidates grouped per request (one user's feed request): the one place rows are grouped by
their request id, for ranking within a request (scoring) and for per-request matrices (analysis)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from studylib.errors import StudyError


@dataclass
class Requests:
    """Candidates grouped per request: `index[r, j]` is the row of slot j of request r (-1: padding)."""

    ids: np.ndarray  # [R] request ids
    index: np.ndarray  # [R, n] row numbers into the flat arrays, -1 where padded
    mask: np.ndarray  # [R, n] True where a slot holds a candidate

    @classmethod
    def from_ids(cls, request: np.ndarray) -> "Requests":
        request = np.asarray(request)
        if request.ndim != 1 or request.size == 0:
            raise StudyError("request ids: need a non-empty 1-d array")
        order = np.argsort(request, kind="stable")
        sorted_req = request[order]
        starts = np.flatnonzero(np.r_[True, sorted_req[1:] != sorted_req[:-1]])
        sizes = np.diff(np.r_[starts, sorted_req.size])
        slot = np.arange(sorted_req.size) - np.repeat(starts, sizes)
        group = np.repeat(np.arange(starts.size), sizes)
        index = np.full((starts.size, sizes.max()), -1, dtype=np.int64)
        index[group, slot] = order
        return cls(sorted_req[starts], index, index >= 0)

    @property
    def n_requests(self) -> int:
        return self.index.shape[0]

    def gather(self, values: np.ndarray, fill: float = np.nan) -> np.ndarray:
        """Flat [N, ...] values -> [R, n, ...] (padding filled with `fill`)."""
        values = np.asarray(values)
        out = values[np.where(self.mask, self.index, 0)].astype(np.float64)
        pad = ~self.mask
        out[pad] = fill
        return out


def rank_within_requests(request: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Rank (1 = top) of each candidate among its request's candidates, by descending score.

    Ties keep input order (a request's slots are in input order and the sort is stable), so ranks
    are deterministic."""
    score = np.asarray(score, dtype=np.float64)
    if score.size == 0:
        return np.empty(0, dtype=np.int32)
    groups = Requests.from_ids(request)
    order = np.argsort(np.where(groups.mask, -groups.gather(score), np.inf), axis=1, kind="stable")
    ranks = np.empty(score.size, dtype=np.int32)
    rows = np.take_along_axis(groups.index, order, axis=1)
    slot_rank = np.broadcast_to(np.arange(1, order.shape[1] + 1, dtype=np.int32), order.shape)
    valid = rows >= 0
    ranks[rows[valid]] = slot_rank[valid]
    return ranks

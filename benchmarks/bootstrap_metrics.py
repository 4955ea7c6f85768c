"""Per-head AUROC and RCE under a cluster bootstrap: per-cluster sums against row weights.

    .venv/bin/python benchmarks/bootstrap_metrics.py [--rows 120000] [--clusters 1068] [--resamples 1000]

The defaults are the paper study's held-out set (120,000 candidates of 1,068 users, 1,000 resamples).
For a head at 5 % and one at 40 % positives it times `stats.cluster_bootstrap_auroc` / `_rce` (sums per
user, no [resamples × rows] matrix) against `stats.weighted_auroc` / `_rce` on the row weights they
replace, and checks that both give the same numbers (AUROC exactly: integer pair counts).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from studylib import stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=120_000)
    parser.add_argument("--clusters", type=int, default=1_068)
    parser.add_argument("--resamples", type=int, default=1_000)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    score = np.round(rng.random(args.rows), 6)  # ties, as calibrated probabilities have
    codes, counts = stats.bootstrap_counts(rng.integers(0, args.clusters, args.rows), args.resamples, seed=1)
    print(f"{args.rows:,} rows, {args.clusters:,} clusters, {args.resamples:,} resamples")
    for rate in (0.05, 0.4):
        label = rng.random(args.rows) < rate
        prob = np.clip(score, 0.01, 0.99)
        start = time.perf_counter()
        auroc = stats.cluster_bootstrap_auroc(score, label, codes, counts)
        rce = stats.cluster_bootstrap_rce(prob, label, codes, counts)
        per_cluster = time.perf_counter() - start
        start = time.perf_counter()
        weights = counts[:, codes]
        auroc_rows = stats.weighted_auroc(score, label, weights)
        rce_rows = stats.weighted_rce(prob, label, weights)
        per_row = time.perf_counter() - start
        assert np.array_equal(auroc, auroc_rows) and np.allclose(rce, rce_rows, rtol=1e-9, atol=0)
        print(f"positives {rate:.0%}: per cluster {per_cluster:.2f} s, row weights {per_row:.2f} s "
              f"({per_row / per_cluster:.1f}x; the row weights alone {weights.nbytes / 1e6:,.0f} MB); same numbers")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

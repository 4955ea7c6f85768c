"""The plan `make study` prints: a chapter's estimate follows the work its parameters ask for."""

from __future__ import annotations

from studylib.study import estimate, parameters

QUICK = dict(parameters.DEFAULTS)
# Measured on the reference machine (2 AMD EPYC cores, fp32) from a fresh clone, 2026-12-07.
QUICK_FRESH_SECONDS = {"01b_twhin": 101, "02_train": 904, "02b_twhin_ablation": 527}


def test_the_quick_estimate_holds_on_the_machine_it_was_measured_on():
    for chapter, seconds in QUICK_FRESH_SECONDS.items():
        assert 0.7 * seconds <= estimate.fresh_seconds(chapter, QUICK, speed=1.0) <= 1.3 * seconds, chapter


def test_more_work_takes_longer_and_a_faster_machine_less():
    longer = {**QUICK, "steps": 2 * QUICK["steps"], "seeds": 5}
    assert estimate.fresh_seconds("02_train", longer, 1.0) > 1.8 * estimate.fresh_seconds("02_train", QUICK, 1.0)
    assert estimate.fresh_seconds("02_train", QUICK, 2.0) < estimate.fresh_seconds("02_train", QUICK, 1.0)
    assert estimate.reuse_seconds("02_train") < 0.2 * estimate.fresh_seconds("02_train", QUICK, 1.0)
    assert estimate.trains("02_train", QUICK) and not estimate.trains("05_sensitivity", QUICK)


def test_the_machine_speed_is_measured_in_the_precision_asked():
    rate = estimate.matmul_rate("fp32", seconds=0.05)
    assert 1e8 < rate < 1e16  # FLOP/s: a real number, from a CPU or better
    assert estimate.minutes(45) == "45 s" and estimate.minutes(600) == "10 min" and estimate.minutes(9000) == "2.5 h"

"""The plan `make study` prints: a chapter's estimate follows the work its parameters ask for."""

from __future__ import annotations

import pytest

from studylib.data.embeddings import EMBEDDING_VARIANTS
from studylib.study import estimate, parameters
from studylib.study.pipeline import REPO, load_profile

QUICK = dict(parameters.DEFAULTS)
# Measured on the reference machine (2 AMD EPYC cores, fp32) from a fresh clone, 2026-12-07.
QUICK_FRESH_SECONDS = {"01b_twhin": 101, "02_train": 904, "02b_twhin_ablation": 527}
# 02b was measured with three embedding variants; the `none` arm (2026-12-07) adds a fourth run per seed,
# so the measured time is scaled by the runs until it is measured again.
QUICK_FRESH_SECONDS["02b_twhin_ablation"] *= len(EMBEDDING_VARIANTS) / 3


def test_the_quick_estimate_holds_on_the_machine_it_was_measured_on():
    for chapter, seconds in QUICK_FRESH_SECONDS.items():
        assert 0.7 * seconds <= estimate.fresh_seconds(chapter, QUICK, speed=1.0) <= 1.3 * seconds, chapter


# The paper profile's training chapters, measured by their runs' file times on the same machine
# (2026-12-07, fp32, nothing else heavy): a main-model seed 1,439 s (stopped at 2,250 of 2,500 steps),
# the downsampled model and its control 516 + 528 s, the positional run 1,470 s, the fork and the
# analysis about 360 s; 02b's 16 ablation runs 4.7-5.0 minutes each.
PAPER_MEASURED_SECONDS = {"02_train": 5 * 1439 + 516 + 528 + 1470 + 360, "02b_twhin_ablation": 16 * 4.85 * 60}
# Chapters 3-5 of the same study (`[03_score] done in 497 s` and so on in its log), which train nothing.
PAPER_ANALYSIS_SECONDS = {"03_score": 497, "04_distributions": 45, "05_sensitivity": 722}
PAPER = {**QUICK, **load_profile(REPO / "notebooks" / "profiles", "paper")[1]}


def test_the_paper_plan_is_not_below_what_its_training_chapters_took():
    """The plan says "at most": with every run at its step cap it must not fall short of the measured
    chapters, whose runs stopped early, nor overshoot them by more than the cap allows."""
    for chapter, seconds in PAPER_MEASURED_SECONDS.items():
        assert seconds <= estimate.fresh_seconds(chapter, PAPER, speed=1.0) <= 1.3 * seconds, chapter


def test_the_paper_plan_counts_the_analysis_of_its_larger_held_out_sets():
    """Chapter 5's analysis took 12 minutes on 120,000 held-out examples, 45 s on quick's 10,000: the plan
    grows it with the held-out size, cached or not."""
    for chapter, seconds in PAPER_ANALYSIS_SECONDS.items():
        assert 0.8 * seconds <= estimate.fresh_seconds(chapter, PAPER, speed=1.0) <= 1.2 * seconds, chapter
    assert estimate.reuse_seconds("05_sensitivity", PAPER) > 10 * estimate.reuse_seconds("05_sensitivity", QUICK)
    tiny = {**QUICK, **load_profile(REPO / "notebooks" / "profiles", "tiny")[1]}
    assert estimate.reuse_seconds("05_sensitivity", tiny) == estimate.reuse_seconds("05_sensitivity", QUICK)


def test_more_work_takes_longer_and_a_faster_machine_less():
    longer = {**QUICK, "steps": 2 * QUICK["steps"], "seeds": 5}
    assert estimate.fresh_seconds("02_train", longer, 1.0) > 1.8 * estimate.fresh_seconds("02_train", QUICK, 1.0)
    assert estimate.fresh_seconds("02_train", QUICK, 2.0) < estimate.fresh_seconds("02_train", QUICK, 1.0)
    assert estimate.reuse_seconds("02_train", QUICK) < 0.2 * estimate.fresh_seconds("02_train", QUICK, 1.0)
    assert estimate.trains("02_train", QUICK) and not estimate.trains("05_sensitivity", QUICK)


def test_the_machine_speed_is_measured_in_the_precision_asked():
    rate = estimate.matmul_rate("fp32", seconds=0.05)
    assert 1e8 < rate < 1e16  # FLOP/s: a real number, from a CPU or better
    assert estimate.minutes(45) == "45 s" and estimate.minutes(600) == "10 min" and estimate.minutes(9000) == "2.5 h"


def test_time_left_trusts_the_estimate_in_proportion_to_the_work_done():
    """A cached first chapter half a minute over its 15 s estimate must not turn three hours into seven;
    at the end, how the estimate held counts fully."""
    from studylib.study.pipeline import progress_scale

    assert progress_scale(27.0, 15.0, 3.6 * 3600) == pytest.approx(1.0, abs=0.01)
    assert progress_scale(200.0, 100.0, 100.0) == pytest.approx(1.5)  # half done at twice the estimate
    assert progress_scale(1e6, 100.0, 0.0) == pytest.approx(3.0)  # capped
    assert progress_scale(5.0, 0.0, 100.0) == 1.0

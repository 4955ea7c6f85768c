"""The study's findings: every sentence that states a direction or a size is written here, from
the numbers of the run, never as fixed prose beside them. One module per chapter (`world` 1,
`twhin` 1b and 2b, `training` 2, `feed` 3, `distributions` 4, `weights` 5), what every finding
shares in `core`, what a finding decides in `decisions`, and the page's plan and abstract in `plan`;
this package's names are all a notebook or the report needs.

Each function takes the tables a chapter computed and returns a `Finding` in three steps: its
numbers, then its verdict from the numbers alone (the finding's `@rule`, `verdicts.RULES`), then
its sentence from the numbers and the verdict alone (its `@sentence`, `core.SENTENCES`). The
notebooks display `finding.markdown()` and `record()` it into
`_build/results/<profile>/findings.json` (a list of {"id", "chapter", "text", "numbers",
"verdict", "source"}), so a reader or a test can check every sentence against its numbers.

When the report is assembled, `apply_page_plan` adds to every finding its decisions (each test's or
interval's p-value, and how it was had), its endpoint (primary or secondary), the page-wide Holm
adjustment over all of them and the verdict that adjustment leaves (`adjusted_verdict`). Claims of
absence ("no difference", "tracks", "survives") are TOST tests against a margin the profile states,
with their power; without equivalence shown they read "unresolved".
"""

from studylib.analysis.findings.core import (NULL_RATE_RANGE, Finding, _plain, budget_note, by_id, compare,
                                             excludes_zero, load, p_text, percent_digits, record)
from studylib.analysis.findings.decisions import NOT_INTERVALS, NOT_TESTED, PRIMARY_ENDPOINTS, Z95, decisions
from studylib.analysis.findings.distributions import distribution_tests, fork_scores, null_split_false_positive_rate
from studylib.analysis.findings.feed import (COHORT_MARGIN, cohort_model_vs_truth, feed_by_budget,
                                             model_vs_oracle_regret, regret_decomposition, score_shares)
from studylib.analysis.findings.hypotheses import FAMILY, TWHIN_MARGIN, decided_verdict, run_family
from studylib.analysis.findings.plan import (ORIGINAL_CANDIDATES, PAGE_ADJUSTMENT, PAGE_ALPHA, SECONDARY_ADJUSTMENT,
                                             abstract, apply_page_plan, converged_outside, page_plan)
from studylib.analysis.findings.training import (CALIBRATION_MARGIN, convergence, downsampling_calibration,
                                                 head_quality, positional_feed, positional_heads, seed_spread)
from studylib.analysis.findings.twhin import (EMBEDDING_MARGIN, PERSONAL_SIGNAL, TWHIN_GOAL, TWHIN_PAIRS,
                                              embedding_ablation, twhin_link_prediction)
from studylib.analysis.findings.weights import (SOBOL_MIN_ST, TOP_SHARE_BAR, equal_contribution_claim,
                                                frontier_distance, max_rule_reading, negative_flip, optimal_weights_gain,
                                                presets_paired,
                                                seed_replication, sobol_summary, tornado_top_head)
from studylib.analysis.findings.world import PERSONAL_TARGET, base_rates, personal_signal

__all__ = [
    "CALIBRATION_MARGIN", "COHORT_MARGIN", "EMBEDDING_MARGIN", "FAMILY", "Finding", "NOT_INTERVALS", "NOT_TESTED",
    "NULL_RATE_RANGE", "ORIGINAL_CANDIDATES", "PAGE_ADJUSTMENT", "PAGE_ALPHA", "PERSONAL_SIGNAL", "PERSONAL_TARGET",
    "PRIMARY_ENDPOINTS", "SECONDARY_ADJUSTMENT", "SOBOL_MIN_ST", "TOP_SHARE_BAR", "TWHIN_GOAL", "TWHIN_MARGIN",
    "TWHIN_PAIRS", "Z95", "_plain", "abstract", "converged_outside",
    "apply_page_plan", "base_rates", "budget_note", "by_id", "cohort_model_vs_truth", "compare", "convergence", "decided_verdict", "decisions",
    "distribution_tests", "downsampling_calibration", "embedding_ablation", "equal_contribution_claim",
    "excludes_zero", "feed_by_budget", "fork_scores", "frontier_distance", "head_quality", "load",
    "max_rule_reading", "model_vs_oracle_regret", "negative_flip", "null_split_false_positive_rate", "optimal_weights_gain", "p_text", "page_plan", "percent_digits",
    "personal_signal", "positional_feed", "positional_heads", "presets_paired", "record", "regret_decomposition",
    "run_family", "score_shares", "seed_replication", "seed_spread", "sobol_summary", "tornado_top_head", "twhin_link_prediction",
]

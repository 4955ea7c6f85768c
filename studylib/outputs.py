"""Every file a chapter writes and a later step reads, named once.

`Result`: the tables (and the sliders' page) under `_build/results/<profile>/` (a notebook writes them, the findings, the
sliders, the report and the tests read them back). `Figure`: the figures under `figures/`, each saved
as `<name>.png` and `<name>.svg` by `plots.save`. `FINDINGS`: every chapter's findings, merged by id.
A data set's or graph's manifest is named where the data is (`studylib.data.layout.MANIFEST`).

Notebooks, `studylib`, the tests, the README and `docs/` name these files only through this module
(a test fails on a literal copy, or on a file the documents name that is not here). The module sits
at the bottom of the package so that every layer, the findings included, can name a file without
importing the orchestration (`studylib.study.paths` builds the folders they live in).
"""

from __future__ import annotations

FINDINGS = "findings.json"  # every finding of every chapter, merged by id (results folder)
MANIFESTS = "manifests.json"  # the data sets' manifests, as chapter 1 made them (results folder)


class Result:
    """Result tables, by chapter."""

    BASE_RATES = "01_base_rates.csv"  # each label's target and realised rate per data set
    PERSONAL_SHARE = "01_personal_share.csv"  # the personal share of the oracle's gain, per weight set and head
    LINK_PREDICTION = "01b_link_prediction.csv"  # TwHIN's MRR and Hits@k per relation, direction, scorer and pair kind
    METRICS = "02_metrics.csv"  # each head's AUROC, GAUC and RCE beside the oracle's and popularity's
    SEEDS = "02_seeds.csv"  # the same per training seed
    CONVERGENCE = "02_convergence.csv"  # each seed's held-out loss by step
    PAIRING = "02_pairing.csv"  # each head's AUROC under by-name and positional label pairing
    POSITIONAL_FEED = "02_positional_feed.csv"  # the feed of each pairing's model, per metric
    POSITIONAL_PAIRED = "02_positional_paired.csv"  # its paired per-request differences
    DOWNSAMPLING = "02_downsampling.csv"  # the downsampled model's calibration bias, corrected and raw
    ABLATION = "02b_ablation.csv"  # the embedding ablation's AUROC per head and variant
    ABLATION_SEEDS = "02b_ablation_seeds.csv"  # the same per training seed
    FEED = "03_feed.csv"  # the top k's true value per ranking (oracle, popularity, model, random) and metric
    FEED_SEEDS = "03_feed_seeds.csv"  # the model's feed per training seed
    BUDGET = "03_budget.csv"  # the feed by top-k size and candidate pool
    SHARES = "03_shares.csv"  # each head's share of the weighted score
    COHORTS = "03_cohorts.csv"  # scores by user cohort, the model against the truth
    REGRET_PARTS = "03_regret_parts.csv"  # the model's regret split into its heads' errors
    REGRET_HEADS = "03_regret_heads.csv"  # the regret when one head is replaced by the truth
    TESTS = "04_tests.csv"  # the score distributions' tests between scenarios
    NULL_SPLITS = "04_null_splits.csv"  # the tests' false-positive rate on random user splits
    FORK = "04_fork.csv"  # the fork's experiment: the model trained on random labels
    SWEEP = "05_sweep.csv"  # one head's weight × factor: rank overlap, expected engagements, regret
    SOBOL = "05_sobol.csv"  # Sobol indices of the weights
    CONTRIBUTIONS = "05_contributions.csv"  # each head's weight × rate and its share of the score
    PRESETS_PAIRED = "05_presets_paired.csv"  # the presets' feeds, paired per request
    PRESETS_OWN = "05_presets_own.csv"  # each preset judged by its own weights
    MAX_RULE = "05_max_rule.csv"  # March 2023's max rule against the march_2023 preset's linear reading of it
    FRONTIER = "05_frontier.csv"  # the positive/negative engagement frontier per scorer
    FRONTIER_POINTS = "05_frontier_points.csv"  # the presets' points on it
    FRONTIER_FITTED = "05_frontier_fitted.csv"  # the frontier of the fitted weights
    BEST_WEIGHTS = "05_best_weights.csv"  # the weights that maximise the feed's value, per scorer
    BEST_WEIGHTS_HEADS = "05_best_weights_heads.csv"  # their values per head
    SEED_REPLICATES = "05_seed_replicates.csv"  # the sensitivity findings per training seed
    SLIDERS = "05_sliders.html"  # the offline weight sliders on this run's requests: the report's "Try the weights" page


class Figure:
    """Figures (`<name>.png` and `<name>.svg` under `figures/`), by chapter."""

    BASE_RATES = "01_base_rates"
    PERSONAL_SHARE = "01_personal_share"
    LINK_PREDICTION = "01b_link_prediction"
    TWHIN_LOSS = "01b_twhin_loss"
    TRAINING_CURVES = "02_training_curves"
    METRICS_VS_ORACLE = "02_metrics_vs_oracle"
    RELIABILITY = "02_reliability"
    PAIRING_EFFECT = "02_pairing_effect"
    POSITIONAL_FEED = "02_positional_feed"
    DOWNSAMPLING_CALIBRATION = "02_downsampling_calibration"
    EMBEDDING_ABLATION = "02b_embedding_ablation"
    SCORE_BY_WEIGHTS = "03_score_by_weights"
    CONTRIBUTION_SHARES = "03_contribution_shares"
    FEED_VS_ORACLE = "03_feed_vs_oracle"
    FEED_BY_BUDGET = "03_feed_by_budget"
    REGRET_BY_HEAD = "03_regret_by_head"
    SCORE_BY_COHORT = "03_score_by_cohort"
    SCENARIOS_BOX = "04_scenarios_box"
    EFFECT_SIZES = "04_effect_sizes"
    FORK_EXPERIMENT = "04_fork_experiment"
    TORNADO_OVERLAP = "05_tornado_overlap"
    HEATMAP_KENDALL = "05_heatmap_kendall"
    HEATMAP_NEGATIVE = "05_heatmap_negative"
    HEATMAP_REGRET = "05_heatmap_regret"
    SOBOL = "05_sobol"
    PRESETS = "05_presets"
    FRONTIER = "05_frontier"
    BEST_WEIGHTS = "05_best_weights"


def _names(namespace: type) -> dict[str, str]:
    return {key: value for key, value in vars(namespace).items() if key.isupper()}


RESULTS: tuple[str, ...] = tuple(_names(Result).values())
FIGURES: tuple[str, ...] = tuple(_names(Figure).values())
FIGURE_FILES: tuple[str, ...] = tuple(f"{name}.{ext}" for name in FIGURES for ext in ("png", "svg"))


def figure_named(constant: str) -> str:
    """`Figure.<constant>`'s file stem; KeyError for a name the registry lacks."""
    return _names(Figure)[constant]


__all__ = ["FIGURES", "FIGURE_FILES", "FINDINGS", "MANIFESTS", "Figure", "RESULTS", "Result", "figure_named"]

"""The study's parameters, each declared once: its default (the `quick` profile, the study a fresh
clone runs), its type, its range, its one-line meaning and the chapters that read it.

Everything else derives from `StudyParameters`:
- a profile (`notebooks/profiles/<name>.yaml`) is an overlay naming only what differs from these
  defaults, and `resolve` lays it over them;
- each notebook's `parameters` cell is generated from it (`python -m studylib.study.parameters`
  rewrites the cells; a test fails when one differs), so JupyterLab and papermill read the same
  literal defaults;
- the pipeline checks a whole profile with `check_all` before any notebook starts, and a notebook
  run by hand checks its own values with `check_all(globals())`: the same one-line errors.

A default that a lower layer also needs is declared there and referred to here, so nothing imports
upward and nothing is written twice: the training defaults are `TrainArgs`'s (`studylib.ranker.args`),
the world's `WorldParams`'s, the feed size `ranking.TOP_K`, and the findings' margins and α the
findings' own constants.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, ValidationError

from studylib.analysis.findings import CALIBRATION_MARGIN, COHORT_MARGIN, EMBEDDING_MARGIN, PAGE_ALPHA
from studylib.analysis.ranking import TOP_K
from studylib.data.generate import SCENARIOS
from studylib.data.world import WorldParams
from studylib.errors import StudyError
from studylib.ranker.args import TrainArgs
from studylib.ranker.weights import DEFAULT_PRESET, PRESETS
from studylib.schema import LABELS, short_name
from studylib.strict import Section, describe

INJECTED = ("profile", "workdir", "interactive")  # set by the pipeline, never by a profile
DEFAULT_PROFILE = "quick"
DEFAULT_ORIGIN = "the default (studylib/study/parameters.py)"  # where a value no profile or -p set comes from

# the chapters, by notebook
GENERATE, TWHIN, TRAIN, ABLATION, SCORE, DISTRIBUTIONS, SENSITIVITY = (
    "01_generate", "01b_twhin", "02_train", "02b_twhin_ablation", "03_score", "04_distributions", "05_sensitivity")


def param(default, meaning: str, *chapters: str, **bounds) -> Any:
    """A field: its default, its meaning (the notebook cell's comment) and the chapters that read it."""
    return Field(default, description=meaning, json_schema_extra={"chapters": list(chapters)}, **bounds)


def _includes_0_and_1(factors: list[float]) -> list[float]:
    if not {0.0, 1.0} <= {float(f) for f in factors}:
        raise ValueError("must be a list including 0 and 1")
    return factors


def _low_high(pair: list[float]) -> list[float]:
    if len(pair) != 2 or not pair[0] < pair[1]:
        raise ValueError("must be [low, high] with low < high")
    return pair


Scenario = Literal[SCENARIOS]  # type: ignore[valid-type]
LabelName = Literal[tuple(short_name(label) for label in LABELS)]  # type: ignore[valid-type]
Precision = Literal["auto", "fp32", "bf16"]


class StudyParameters(Section):
    """Every parameter of the study, in the order the chapters first read it."""

    # ---- chapter 1: the world and its data sets
    scenario: Scenario = param("cohorts", "training scenario: random, planted or cohorts", GENERATE)
    train_examples: int = param(40000, "training examples (candidates) of the main model", GENERATE, ge=1)
    eval_examples: int = param(10000, "each held-out scoring set", GENERATE, ge=1)
    fork_examples: int = param(10000, "random-scenario training set for the fork's experiment (0: skip)",
                               GENERATE, ge=0)
    validation_examples: int = param(0, "held-out set of the training scenario that the stopping rule watches "
                                        "(0: none)", GENERATE, ge=0)
    seed: int = param(0, "world seed (data set i is drawn with seed + i); also seeds the bootstraps and the random "
                         "rankings", GENERATE, TWHIN, TRAIN, ABLATION, SCORE, DISTRIBUTIONS, SENSITIVITY, ge=0)
    rate_scale: float = param(20.0, "multiplies every published base rate (capped at 0.5)", GENERATE, TWHIN,
                              gt=0, le=100)
    pair_variance: float = param(WorldParams.pair_variance, "share of each logit's latent variance in the user×tweet affinity (the "
                                      "personal part)", GENERATE, TWHIN, ge=0, le=1)
    candidates: int = param(50, "candidates per request (one user's feed request)", GENERATE, ge=1)
    # ---- chapter 1b: TwHIN
    twhin_edges: int = param(200000, "edges of the planted graph (fav, reply, retweet, magic_recs, follow)",
                             TWHIN, ge=1)
    twhin_steps: int = param(1000, "most TwHIN training steps (batches of per_replica_batch_size edges, one thread; held-out early stopping may end a run sooner)", TWHIN, ge=1)
    twhin_eval_edges: int = param(0, "held-out pairs ranked per relation (0: all of them; n: a seeded sample of n)",
                                  TWHIN, ge=0)
    # ---- chapter 2: training
    steps: int = param(300, "training steps (with stop_patience > 0: the most it may take)", TRAIN, ge=1)
    batch_size: int = param(128, "examples per training step", TRAIN, ABLATION, ge=1)
    train_seed: int = param(0, "the main model's training seeds are train_seed, train_seed + 1, ...",
                            TRAIN, ABLATION, SCORE, SENSITIVITY, ge=0)
    seeds: int = param(3, "training seeds of the main model: the run-to-run spread", TRAIN, SCORE, SENSITIVITY, ge=1)
    precision: Precision = param(TrainArgs.precision, "auto (bf16 where the hardware has it), fp32 or bf16",
                                 TRAIN, ABLATION, SCORE)
    validation_set: str = param("cohorts", "held-out set of the training distribution: the loss curve's held-out "
                                           "points", TRAIN)
    val_every: int = param(TrainArgs.val_every, "steps between held-out validations (0: steps // 6)", TRAIN, ge=0)
    stop_patience: int = param(TrainArgs.stop_patience, "stop a run once this many validations in a row gain at "
                                                        "most stop_min_delta (0: never)", TRAIN, ge=0)
    stop_min_delta: float = param(TrainArgs.stop_min_delta, "relative gain in held-out loss that counts as an "
                                                            "improvement", TRAIN, ge=0, lt=1)
    positional_experiment: bool = param(True, "also train with the original's positional label pairing", TRAIN)
    fork_steps: int = param(100, "steps of the model trained on random data (fork's experiment; 0: skip)",
                            TRAIN, ge=0)
    downsample_steps: int = param(100, "steps of the model trained on negatively downsampled data (0: skip)",
                                  TRAIN, ge=0)
    downsample_label: LabelName = param("favorited", "the label whose negatives are downsampled (as the original's "
                                                     "evaluation sets)", TRAIN)
    downsample_negative_rate: float = param(0.1, "the share of its negatives kept (positives are all kept)",
                                            TRAIN, gt=0, le=1)
    calibration_margin: float = param(CALIBRATION_MARGIN, "calibration survives when its bias is shown within this share of the "
                                           "true mean (TOST)", TRAIN, gt=0)
    # ---- chapter 2b: the embedding ablation
    ablation_steps: int = param(100, "training steps of each ablation run (four embedding variants)", ABLATION, ge=1)
    ablation_seeds: int = param(3, "training seeds per variant (train_seed, train_seed + 1, ...)", ABLATION, ge=1)
    ablation_margin: float = param(EMBEDDING_MARGIN, "median AUROC: a gain within ± this of random vectors counts as none "
                                         "(TOST)", ABLATION, gt=0)
    # ---- chapter 3: scoring
    weights: str = param(DEFAULT_PRESET, "a preset (" + ", ".join(PRESETS) + ") or a YAML file",
                         SCORE, DISTRIBUTIONS, SENSITIVITY)
    presets: list[str] = param(list(PRESETS), "presets compared beside the weights", SCORE, SENSITIVITY)
    top_k: int = param(TOP_K, "feed size: the top k candidates of a request", GENERATE, TRAIN, SCORE, SENSITIVITY, ge=1)
    budget_k: list[int] = param([1, 3, 5, 10, 20], "top-k sizes the feed is also judged at", SCORE)
    budget_pools: list[int] = param([10, 25, 50], "candidate-pool sizes the feed is also judged at", SCORE)
    cohort_margin: float = param(COHORT_MARGIN, "the model tracks a cohort difference when its bias is shown within this "
                                       "share of it (TOST)", SCORE, gt=0)
    # ---- chapter 4: distributions
    alpha: float = param(PAGE_ALPHA, "significance level: Holm within the primary family, Benjamini–Hochberg over the rest", DISTRIBUTIONS, gt=0, lt=1)
    null_splits: int = param(1000, "random user-level splits of one data set to measure the false-positive rate",
                             DISTRIBUTIONS, ge=200)
    # ---- chapter 5: sensitivity
    sweep_factors: Annotated[list[float], AfterValidator(_includes_0_and_1)] = param(
        [-1.0, 0.0, 0.25, 0.5, 1.0, 2.0, 4.0], "each head's weight × factor (−1: sign flip)", SENSITIVITY)
    sobol_n: int = param(128, "Sobol base sample (power of two); cost: sobol_n × 12 re-rankings", SENSITIVITY, ge=1)
    sobol_range: Annotated[list[float], AfterValidator(_low_high)] = param(
        [0.0, 2.0], "every weight scaled by a factor drawn from this range", SENSITIVITY)
    bootstrap_resamples: int = param(1000, "resamples of users for every bootstrap interval",
                                     GENERATE, TWHIN, TRAIN, SCORE, DISTRIBUTIONS, SENSITIVITY, ge=10)


FIELDS = StudyParameters.model_fields
DEFAULTS: dict[str, Any] = {name: field.default for name, field in FIELDS.items()}


def chapters_of(name: str) -> list[str]:
    return FIELDS[name].json_schema_extra["chapters"]


def check_all(values: dict, origin: dict[str, str] | None = None) -> None:
    """Every study parameter among `values` (a profile, or a notebook's `globals()`) against the
    schema; one line naming the first that breaks its rule, and where it came from (`origin`)."""
    given = {name: values[name] for name in FIELDS if name in values}
    for name in given:  # one at a time, in declaration order: the error names the first bad one
        try:
            StudyParameters.model_validate({name: given[name]})
        except ValidationError as exc:
            message = f"parameter {describe(exc.errors()[0])}"
            where = (origin or {}).get(name)
            raise StudyError(f"{where}: {message}" if where else message) from None


def resolve(overlay: dict, source: str) -> tuple[dict, dict[str, str]]:
    """A profile's overlay laid over the defaults: (every parameter's value, where each came from).
    Unknown names are refused here, naming the profile file."""
    unknown = sorted(set(overlay) - set(FIELDS) - set(INJECTED))
    if unknown:
        raise StudyError(f"{source}: unknown parameter {unknown[0]}; the study's parameters are declared in "
                         f"studylib/study/parameters.py (known: {', '.join(FIELDS)})")
    for name in INJECTED:
        if name in overlay:
            raise StudyError(f"{source}: parameter {name} is set by the pipeline (use --profile / --workdir)")
    values = {**DEFAULTS, **overlay}
    origin = {name: (source if name in overlay else DEFAULT_ORIGIN) for name in values}
    return values, origin


# ---------------------------------------------------------------- the notebooks' parameter cells


CELL_HEADER = ("# Parameters: generated from studylib/study/parameters.py (`python -m studylib.study.parameters` "
               "rewrites them);\n# the defaults are the `quick` profile, and papermill overrides them")
_INJECTED_LINES = {
    "profile": f'profile: str = "{DEFAULT_PROFILE}"',
    "workdir": 'workdir: str = ".."',
    "interactive": "interactive: bool = True  # sliders when run by hand; the pipeline sets False",
}
_TYPE_NAMES = {int: "int", float: "float", str: "str", bool: "bool", list: "list"}


def _literal(value) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    return repr(value)


def _type_name(name: str) -> str:
    default = DEFAULTS[name]
    return _TYPE_NAMES[type(default)]


def notebook_cell(chapter: str, interactive: bool = False) -> str:
    """The `parameters` cell of one chapter's notebook, from the schema."""
    lines = [CELL_HEADER, _INJECTED_LINES["profile"], _INJECTED_LINES["workdir"]]
    for name in FIELDS:
        if chapter in chapters_of(name):
            lines.append(f"{name}: {_type_name(name)} = {_literal(DEFAULTS[name])}  # {FIELDS[name].description}")
    if interactive:
        lines.append(_INJECTED_LINES["interactive"])
    return "\n".join(lines)


def _parameters_cell(notebook: dict):
    cells = [c for c in notebook["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise StudyError("a notebook needs exactly one cell tagged 'parameters'")
    return cells[0]


def cell_of(path: Path) -> str:
    return "".join(_parameters_cell(json.loads(path.read_text()))["source"])


def expected_cell(path: Path) -> str:
    """What `path`'s parameters cell must read (a chapter that takes `interactive` keeps it)."""
    return notebook_cell(path.stem, interactive="interactive:" in cell_of(path))


def write_cells(notebooks: Path) -> list[Path]:
    """Rewrite every chapter's parameters cell from the schema; the notebooks changed."""
    changed = []
    for path in sorted(notebooks.glob("[0-9]*.ipynb")):
        notebook = json.loads(path.read_text())
        cell, text = _parameters_cell(notebook), expected_cell(path)
        if "".join(cell["source"]) != text:
            cell["source"] = text.splitlines(keepends=True)
            path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n")
            changed.append(path)
    return changed


def main(argv: list[str] | None = None) -> int:
    notebooks = Path(argv[0]) if argv else Path(__file__).resolve().parents[2] / "notebooks"
    for path in write_cells(notebooks):
        print(f"rewrote the parameters cell of {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

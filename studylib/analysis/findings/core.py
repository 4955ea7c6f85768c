"""A finding, its file (findings.json) and the helpers every chapter's findings share."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from studylib.errors import StudyError
from studylib.io import read_json, write_json
from studylib.analysis.findings.decisions import _is_number, decisions
from studylib.analysis.findings.verdicts import RULES, check_verdict, renamed
from studylib.outputs import FINDINGS


NULL_RATE_RANGE = (0.02, 0.08)  # a valid test at α = 0.05 rejects the null split about this often


@dataclass
class Finding:
    id: str
    chapter: str
    text: str
    numbers: dict[str, float | int | str] = field(default_factory=dict)
    verdict: str | None = None
    source: str | None = None  # the results CSV the numbers come from

    def __post_init__(self):
        check_verdict(self.id, self.verdict)  # a value from the finding's declared set (verdicts.py)

    def markdown(self) -> str:
        """The chapter's sentence. Where it rests on tests or intervals, it says that its verdict is
        the chapter's: the Findings page applies one multiplicity plan over the whole page."""
        tail = ""
        if decisions({"id": self.id, "numbers": self.numbers}):
            tail = (" *This is the chapter's verdict, before the page-wide multiplicity plan; the Findings page "
                    "says which of its differences hold under it.*")
        return f"**Finding.** {self.text}{tail}"

    def _repr_markdown_(self) -> str:
        return self.markdown()


# finding id -> the function that writes its sentence from its numbers and its verdict alone (a finding
# is numbers, then its verdict's rule, then this); the tests rewrite every sentence from findings.json
SENTENCES: dict[str, Callable[[dict, str | None], str]] = {}


def sentence(finding_id: str):
    """Registers the decorated function as `finding_id`'s sentence writer."""
    def register(write: Callable[[dict, str | None], str]) -> Callable[[dict, str | None], str]:
        SENTENCES[finding_id] = write
        return write
    return register


def listed(numbers: dict, key: str, separator: str = ", ") -> list[str]:
    """The names a finding keeps in one number, joined by `separator` (a missing or empty one: none)."""
    return [name for name in (numbers.get(key) or "").split(separator) if name]


def finding(finding_id: str, chapter: str, numbers: dict, source: str | None) -> Finding:
    """A finding in its three steps: the numbers given, then its verdict by its rule (`RULES`; none
    for a finding that decides nothing), then its sentence (`SENTENCES`) from those two alone."""
    verdict = RULES[finding_id](numbers) if finding_id in RULES else None
    return Finding(finding_id, chapter, SENTENCES[finding_id](numbers, verdict), numbers, verdict, source)


def record(results: str | Path, *findings: Finding) -> Path:
    """Merge findings (by id) into results/findings.json, atomically; returns the file."""
    path = Path(results) / FINDINGS
    path.parent.mkdir(parents=True, exist_ok=True)
    current = read_json(path, list) if path.exists() else []
    by_id = {f["id"]: f for f in current}
    for finding in findings:
        by_id[finding.id] = _plain(asdict(finding))
    write_json(path, sorted(by_id.values(), key=lambda f: (f["chapter"], f["id"])))
    return path


def load(results: str | Path) -> dict[str, dict]:
    path = Path(results) / FINDINGS
    if not path.exists():
        raise StudyError(f"{path}: no findings recorded yet")
    return by_id(read_json(path, list))


def by_id(found: list[dict]) -> dict[str, dict]:
    """A findings file's list keyed by id, each verdict in today's words (`verdicts.renamed`: a file made
    by earlier code compares by value)."""
    return {f["id"]: {**f, "verdict": renamed(f["id"], f.get("verdict"))} for f in found}


def compare(here: dict[str, dict], other: dict[str, dict], top: int = 3) -> list[dict]:
    """Two studies' findings (`load` of each) side by side, by id: both verdicts, whether the verdict
    changed (a finding present in one study only counts as changed), and the `top` shared numbers
    that moved most (relative change), as (name, here, other)."""
    rows = []
    for finding_id in sorted(set(here) | set(other)):
        a, b = here.get(finding_id), other.get(finding_id)
        numbers_a, numbers_b = (a or {}).get("numbers", {}), (b or {}).get("numbers", {})
        shared = [k for k, v in numbers_a.items() if _is_number(v) and _is_number(numbers_b.get(k))]
        moved = sorted(shared, key=lambda k: -abs(numbers_a[k] - numbers_b[k]) /
                       max(abs(numbers_a[k]), abs(numbers_b[k]), 1e-12))
        rows.append({"id": finding_id, "chapter": (a or b)["chapter"], "verdict": (a or {}).get("verdict"),
                     "other_verdict": (b or {}).get("verdict"),
                     "changed": a is None or b is None or a.get("verdict") != b.get("verdict"),
                     "numbers": [(k, numbers_a[k], numbers_b[k]) for k in moved[:top]]})
    return rows


def budget_note(finding: dict, other: dict | None, other_profile: str) -> str:
    """The sentence a finding of a smaller study carries when a larger study's verdict differs
    (empty when it agrees or the other study lacks the finding)."""
    if other is None or other.get("verdict") == finding.get("verdict"):
        return ""
    return f" With the `{other_profile}` profile this verdict is *{other.get('verdict')}* instead."


def _plain(value):
    """JSON-safe: numpy scalars to Python, NaN to None."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def _ci(low: float, high: float, fmt: str = ".3f") -> str:
    return f"95 % CI {low:{fmt}} to {high:{fmt}}"


def percent_digits(low: float, high: float) -> str:
    """The format of a share in percent: whole percents, or one decimal where whole percents would
    print the interval as one number ("92 to 92")."""
    return ".0f" if round(100 * low) != round(100 * high) else ".1f"


def p_text(p: float | None) -> str:
    """A p-value as the report prints it: two significant digits, "< 0.0001" below that (never "0")."""
    return "–" if p is None else f"{p:.2g}" if p >= 1e-4 else "< 0.0001"


def p_is(p: float) -> str:
    """ "p = 0.029", or "p < 0.0001" in prose."""
    text = p_text(p)
    return f"p {text}" if text.startswith("<") else f"p = {text}"


def excludes_zero(low: float, high: float) -> bool:
    return bool(np.isfinite(low) and np.isfinite(high) and (low > 0 or high < 0))




def _named(relations: list[str]) -> str:
    """'no relation', '1 relation (fav)', '3 relations (fav, reply, retweet)'."""
    if not relations:
        return "no relation"
    return f"{len(relations)} relation{'s' if len(relations) > 1 else ''} ({', '.join(relations)})"

"""What the training budget changes in the study: two finished studies' findings side by side.

Run a small and a converged study (same world, same base rates), then compare their findings:

    make study                      # quick profile, into _build/results/quick/
    make study PROFILE=paper        # converged profile, into _build/results/paper/
    .venv/bin/python benchmarks/budget_effect.py _build/results/quick _build/results/paper [--markdown out.md]

Each argument is a results folder (`_build/results/<profile>/`, holding `findings.json`), or a
findings file (the committed references: `benchmarks/reference/{quick,paper}_findings.json`).
Prints one row per finding id: the verdict in each study, `changed` where they differ (or where one
study lacks the finding), and the three numbers the finding states that moved most between the
studies. `--markdown` also writes the table as Markdown (the README's
budget table is this output). The report of the smaller study marks the same changes itself
(`studylib.analysis.findings.budget_note`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from studylib.errors import StudyError
from studylib.analysis.findings import by_id, compare
from studylib.outputs import FINDINGS


def read_findings(path: Path) -> dict[str, dict]:
    file = path / FINDINGS if path.is_dir() else path
    if not file.is_file():
        raise StudyError(f"{path}: no {FINDINGS} here; run the study first")
    try:
        found = json.loads(file.read_text())
        return by_id(found)
    except (ValueError, TypeError, KeyError):
        raise StudyError(f"{file}: not a findings file (a JSON list of findings with ids)") from None


def study_name(path: Path) -> str:
    """What the table calls a study: its results folder's name (`_build/results/quick` -> quick), or a
    committed file's stem without `_findings` (`benchmarks/reference/paper_findings.json` -> paper)."""
    if path.is_dir() or path.name == FINDINGS:
        return (path if path.is_dir() else path.parent).name
    return path.stem.removesuffix("_findings")


def _number(value) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:.3g}"


def table(rows: list[dict], names: tuple[str, str]) -> str:
    lines = [f"| finding | {names[0]} verdict | {names[1]} verdict | changed | numbers that moved most "
             f"({names[0]} → {names[1]}) |", "|---|---|---|---|---|"]
    for row in rows:
        moved = "; ".join(f"{k} {_number(a)} → {_number(b)}" for k, a, b in row["numbers"])
        lines.append(f"| `{row['id']}` | {row['verdict'] or '–'} | {row['other_verdict'] or '–'} | "
                     f"{'**changed**' if row['changed'] else ''} | {moved} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("small", type=Path, help="results folder (or findings.json) of the smaller study")
    parser.add_argument("large", type=Path, help="results folder (or findings.json) of the converged study")
    parser.add_argument("--markdown", type=Path, help="also write the table here")
    args = parser.parse_args(argv)
    try:
        small, large = read_findings(args.small), read_findings(args.large)
    except StudyError as exc:
        parser.exit(2, f"budget_effect: error: {exc}\n")
    names = tuple(study_name(p) for p in (args.small, args.large))
    rows = compare(small, large)
    text = table(rows, names)
    print(text)
    changed = sum(r["changed"] for r in rows)
    summary = f"{changed} of {len(rows)} findings change their verdict between {names[0]} and {names[1]}."
    print(f"\n{summary}")
    if args.markdown:  # the table and its count, as the README shows them
        args.markdown.write_text(f"{text}\n\n{summary}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

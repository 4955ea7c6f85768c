"""Command line of the Heavy Ranker and TwHIN study: run the whole study, or one step of it
(generate data, train, score, summarize; TwHIN's generate, train, evaluate, export).

Bad input ends with one line, `studylib: error: ...`, and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import version

from studylib.errors import StudyError
from studylib.io import check_text_arguments, os_error
from studylib.twhin.cli import register as register_twhin


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="studylib", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"studylib {version('studylib')}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    from studylib.ranker.cli import register as register_ranker
    from studylib.study.pipeline import register as register_study

    register_study(sub)
    register_ranker(sub)
    register_twhin(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_text_arguments(args)
        code = args.func(args)
    except StudyError as exc:
        print(f"studylib: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # disk full, permissions, a file where a folder should be: one line, not a traceback
        print(f"studylib: error: {os_error(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("studylib: interrupted (completed shards and checkpoints are kept; rerun to resume)", file=sys.stderr)
        return 130
    if code == 130 and args.command == "study":  # an interrupted pipeline: its one line is printed
        from studylib.study.pipeline import exit_with

        exit_with(code)
    return code


if __name__ == "__main__":
    from studylib.study.pipeline import exit_with

    exit_with(main())

"""Command line of the Heavy Ranker and TwHIN study: generate data, train, score, summarize.

Bad input ends with one line, `studylib: error: ...`, and exit status 2.
"""

from __future__ import annotations

import argparse
import sys

from studylib.errors import StudyError
from studylib.io import os_error


def build_parser() -> argparse.ArgumentParser:
    from importlib.metadata import version

    parser = argparse.ArgumentParser(prog="studylib", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"studylib {version('studylib')}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    from studylib.ranker.cli import register as register_ranker
    from studylib.twhin.cli import register as register_twhin

    register_ranker(sub)
    register_twhin(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except StudyError as exc:
        print(f"studylib: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # disk full, permissions, a file where a folder should be: one line, not a traceback
        print(f"studylib: error: {os_error(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("studylib: interrupted (completed shards and checkpoints are kept; rerun to resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

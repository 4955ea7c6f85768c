"""Reading YAML the user wrote: safe (no Python objects), and strict about duplicate keys and aliases.

PyYAML's safe loader lets the last of two equal keys win silently, so a weight file that
names `scored_tweets_model_weight_report` twice would score with whichever came last. Here a
duplicate key is an error that names the file, the key and its line. Aliases (`*name`, which
the published recap config uses) are bounded: nested aliases expand exponentially (a "billion
laughs" file of a few hundred bytes becomes gigabytes once copied or validated), so a document
whose aliases stand for more than `MAX_ALIASED_NODES` nodes in all is refused as it is read.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from studylib.errors import StudyError
from studylib.io import MAX_TEXT_BYTES, require_regular_file


class AliasBomb(StudyError):
    """A document whose aliases stand for more than `MAX_ALIASED_NODES` values."""


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key, line: int):
        super().__init__(f"duplicate key {key!r}")
        self.key, self.line = key, line


class _Alias(yaml.YAMLError):
    def __init__(self, line: int):
        super().__init__("alias")
        self.line = line


MAX_ALIASED_NODES = 10_000  # the published config's aliases stand for a few hundred


def _size(node, memo: dict) -> int:
    """Nodes in `node` with every alias expanded (counted, not built: shared nodes are memoised)."""
    if id(node) not in memo:
        if isinstance(node, yaml.SequenceNode):
            memo[id(node)] = 1 + sum(_size(child, memo) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            memo[id(node)] = 1 + sum(_size(k, memo) + _size(v, memo) for k, v in node.value)
        else:
            memo[id(node)] = 1
    return memo[id(node)]


class _StrictSafeLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping with the same key twice, and aliases standing for too much."""

    def __init__(self, stream):
        super().__init__(stream)
        self._aliased, self._sizes = 0, {}

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):  # counted before anything is expanded
            event = self.peek_event()
            node = self.anchors.get(event.anchor)
            if node is not None:
                self._aliased += _size(node, self._sizes)
                if self._aliased > MAX_ALIASED_NODES:
                    raise _Alias(event.start_mark.line + 1)
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` may be overridden by design
                    continue
                key = self.construct_object(key_node, deep=True)
                if key in seen:
                    raise _DuplicateKey(key, key_node.start_mark.line + 1)
                seen.add(key)
        return super().construct_mapping(node, deep)


def shorten(value, limit: int = 60, quote: bool = True) -> str:
    """`repr(value)` (`str` when not `quote`), cut to `limit` characters: a value echoed in an error
    stays one short line."""
    text = repr(value) if quote else str(value)
    return text if len(text) <= limit else text[:limit - 15] + f"... ({len(text):,} chars)"


def parse(text: str, source: str):
    """The YAML document in `text`; StudyError naming `source` (and the line) when it is not valid
    YAML or repeats a key."""
    loader = _StrictSafeLoader(text)
    try:
        return loader.get_single_data()
    except _DuplicateKey as exc:
        raise StudyError(f"{source}: duplicate key {shorten(exc.key)} at line {exc.line}") from None
    except _Alias as exc:
        raise AliasBomb(f"{source}: its aliases (*name) expand to more than {MAX_ALIASED_NODES:,} values by line "
                         f"{exc.line} (an alias bomb?); write the values out") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise StudyError(f"{source}: not valid YAML{where}") from None
    finally:
        loader.dispose()


def read(path, what: str = "file"):
    """The YAML document in the file `path`; one line when it is a folder, unreadable, not UTF-8
    text, not valid YAML or repeats a key."""
    path = Path(path)
    if path.is_dir():
        raise StudyError(f"{path}: is a folder, not a YAML {what}")
    if path.exists():
        require_regular_file(path, f"YAML {what}", MAX_TEXT_BYTES)
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise StudyError(f"{path}: cannot read {what} ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise StudyError(f"{path}: not UTF-8 text (is it a YAML {what}?)") from None
    return parse(text, str(path))


__all__ = ["AliasBomb", "MAX_ALIASED_NODES", "parse", "read", "shorten"]

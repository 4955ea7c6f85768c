"""Reading YAML the user wrote: safe (no Python objects), and strict about duplicate keys.

PyYAML's safe loader lets the last of two equal keys win silently, so a weight file that
names `scored_tweets_model_weight_report` twice would score with whichever came last. Here a
duplicate key is an error that names the file, the key and its line.
"""

from __future__ import annotations

import yaml

from studylib.errors import StudyError


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key, line: int):
        super().__init__(f"duplicate key {key!r}")
        self.key, self.line = key, line


class _StrictSafeLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping with the same key twice."""

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


def parse(text: str, source: str):
    """The YAML document in `text`; StudyError naming `source` (and the line) when it is not valid
    YAML or repeats a key."""
    loader = _StrictSafeLoader(text)
    try:
        return loader.get_single_data()
    except _DuplicateKey as exc:
        raise StudyError(f"{source}: duplicate key {exc.key!r} at line {exc.line}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise StudyError(f"{source}: not valid YAML{where}") from None
    finally:
        loader.dispose()


def read(path, what: str = "file"):
    """The YAML document in the file `path`; one line when it is a folder, unreadable, not UTF-8
    text, not valid YAML or repeats a key."""
    from pathlib import Path

    path = Path(path)
    if path.is_dir():
        raise StudyError(f"{path}: is a folder, not a YAML {what}")
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise StudyError(f"{path}: cannot read {what} ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise StudyError(f"{path}: not UTF-8 text (is it a YAML {what}?)") from None
    return parse(text, str(path))


__all__ = ["parse", "read"]

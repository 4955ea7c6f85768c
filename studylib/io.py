"""Writing files so that nothing half-written is ever left under a final name.

Every writer of the project goes through `atomic_write`: the content goes to a temporary file
with a name unique to this process beside the target, which is renamed over the target only
once complete; on any failure (disk full, permission, interruption) the temporary is removed
and an OS error becomes one `StudyError` line naming the path and the cause. Folders that a
command fills (a data set, a run, a graph) are held with `exclusive`, an advisory lock, so a
second writer on the same folder is refused instead of mixing its files with the first's.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import stat
import warnings
from pathlib import Path
from typing import Callable, Iterator

from studylib.errors import StudyError

LOCK_FILE = ".studylib.lock"
TMP_SUFFIX = ".tmp"


MAX_TEXT_BYTES = 64 << 20  # JSON and YAML files are read whole; the project's largest is a few hundred KB


def require_regular_file(path: str | Path, what: str = "file", max_bytes: int | None = None) -> Path:
    """`path` when it is a regular file (a link to one is fine); a device, pipe or socket (a link
    to /dev/zero, say) would be read forever, so it is refused before any read. Files read whole
    into memory pass `max_bytes`: a larger one is refused before it is read."""
    path = Path(path)
    try:
        status = path.stat()
    except OSError as exc:
        raise os_error(exc, path) from None
    if stat.S_ISDIR(status.st_mode):
        raise StudyError(f"{path}: is a folder, not a {what}")
    if not stat.S_ISREG(status.st_mode):
        raise StudyError(f"{path}: not a regular file (a device, pipe or socket), refused as a {what}")
    if max_bytes is not None and status.st_size > max_bytes:
        raise StudyError(f"{path}: {status.st_size:,} bytes, more than a {what} may hold ({max_bytes:,})")
    return path


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes (read in 4 MiB blocks): shard, manifest, model and checkpoint identities."""
    require_regular_file(path)
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def settings_sha256(settings) -> str:
    """SHA-256 of settings as canonical JSON (sorted keys): config and run identities."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


def os_error(exc: OSError, path: str | Path | None = None) -> StudyError:
    """`path: cause` from an OSError (the path it names, else `path`)."""
    where = exc.filename if exc.filename is not None else path
    cause = exc.strerror or str(exc)
    if exc.errno == errno.ENOSPC:
        cause = "no space left on the device"
    return StudyError(f"{where}: {cause}")


def temporary_name(path: Path) -> Path:
    """A hidden name beside `path`, unique to this process and call."""
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}{TMP_SUFFIX}")


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call `write(tmp)` to fill a temporary beside `path`, then rename it to `path`."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            raise StudyError(f"{path}: is a directory, not a file")
        tmp = temporary_name(path)
        try:
            write(tmp)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise _write_error(exc, path, tmp) from None
    except RuntimeError as exc:  # torch.save reports a failed write (a full disk, say) as RuntimeError
        if not _is_write_failure(exc):
            raise
        raise StudyError(f"{path}: could not be written ({_write_failure_cause(path, exc)})") from None
    return path


def _write_error(exc: OSError, path: Path, tmp: Path | None) -> StudyError:
    """An OSError met while writing `path` as one line that names `path`, the file the user asked
    for: never the hidden temporary (this module's detail, which pyarrow and shutil name), and for
    a full or read-only disk never the source a copy reads from (shutil names it first)."""
    hidden = {str(tmp)} if tmp is not None else set()
    filenames = {str(name) for name in (exc.filename, exc.filename2) if name is not None}
    if exc.filename is not None and not filenames & hidden and exc.errno not in _OUTPUT_ERRORS:
        return os_error(exc)  # about another file (a source that cannot be read, say)
    cause = exc.strerror or str(exc)
    if exc.errno == errno.ENOSPC:
        cause = "no space left on the device"
    elif tmp is not None and tmp.name in cause:  # pyarrow: "Failed to open local file '<tmp>'. Detail: [errno 30] ..."
        cause = os.strerror(exc.errno) if exc.errno else cause.replace(str(tmp), str(path))
    return StudyError(f"{path}: {cause}")


_OUTPUT_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG)


def _is_write_failure(exc: RuntimeError) -> bool:
    message = str(exc).lower()
    return "write" in message or "unexpected pos" in message


def _write_failure_cause(path: Path, exc: RuntimeError) -> str:
    try:
        if shutil.disk_usage(path.parent).free < 1 << 20:
            return "no space left on the device"
    except OSError:
        pass
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return first if len(first) <= 120 else first[:117] + "..."


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def write_json(path: str | Path, payload, sort_keys: bool = False) -> Path:
    return write_text(path, json.dumps(payload, indent=1, sort_keys=sort_keys))


def cached(stamp: Path, settings: dict, outputs, build: Callable[[], dict | None],
           clear: Path | None = None, resumable: bool = False) -> tuple[bool, dict]:
    """The study's one cache for a step: reuse what `build` made when `stamp` records exactly these
    `settings` as finished and every path in `outputs` exists; otherwise remove `clear` (the step's
    old output folder, if any), run `build`, and write the stamp last and atomically, so that an
    interrupted step is rebuilt, never taken for a finished one. A `resumable` build (one that
    continues its own interrupted work, as the data generators do) is marked started first, and
    an interrupted one of the same settings is continued instead of cleared. Returns (reused,
    what `build` returned)."""
    stamp = Path(stamp)
    record = None
    if stamp.exists():
        try:
            record = json.loads(stamp.read_text())
        except (OSError, ValueError):
            record = None  # unreadable: rebuild
    same = isinstance(record, dict) and record.get("settings") == settings
    finished = same and record.get("finished", True)
    if finished and all(Path(p).exists() for p in outputs):
        return True, record.get("result") or {}
    if clear is not None and Path(clear).exists() and not (resumable and same and not finished):
        shutil.rmtree(clear)
    if resumable:
        write_json(stamp, {"settings": settings, "finished": False})
    result = build() or {}
    write_json(stamp, {"settings": settings, "result": result})
    return False, result


def read_json(path: str | Path, kind: type = dict):
    """A JSON file that must hold a `kind` (object by default); one line when it does not."""
    path = require_regular_file(path, "JSON file", MAX_TEXT_BYTES)
    try:
        payload = json.loads(path.read_text())
    except OSError as exc:
        raise os_error(exc, path) from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise StudyError(f"{path}: not valid JSON (corrupt or truncated)") from None
    if not isinstance(payload, kind):
        raise StudyError(f"{path}: must be a JSON {'object' if kind is dict else kind.__name__}, "
                         f"got {type(payload).__name__}")
    return payload


def read_torch_file(path: str | Path, what: str):
    """A torch file's tensors and plain values (`weights_only=True`: a crafted pickle runs no code).

    Raises FileNotFoundError when missing; any other failure (truncated, foreign or crafted) is
    one StudyError line naming `what`. torch's own warnings about a file it is refusing (e.g. a
    pickle protocol it does not expect) are silenced, as the refusal says all there is to say.
    """
    import torch  # only readers of torch files need it

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, "not found", str(path))
    require_regular_file(path, what)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # noqa: BLE001 - a truncated, foreign or crafted file: any unpickling error
        raise StudyError(f"{path}: not a readable {what} ({type(exc).__name__})") from None


def remove_stale_temporaries(folder: Path) -> None:
    """Remove temporaries a killed writer left (call only while holding `exclusive(folder)`)."""
    for stale in folder.glob(f"*{TMP_SUFFIX}"):
        stale.unlink(missing_ok=True)


def dangling_link(path: str | Path) -> str | None:
    """What is wrong with `path` when it is a symbolic link that leads nowhere (a loop, or a missing
    target), which `Path.exists` reports as plain absence and `mkdir` as "File exists"; else None."""
    path = Path(path)
    if not path.is_symlink():
        return None
    try:
        path.stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return f"{path}: is a symbolic link loop (it leads back to itself)"
        return f"{path}: is a symbolic link to {os.readlink(path)}, which does not exist"
    return None


def lock_holder(folder: str | Path) -> int | None:
    """The process id recorded in `folder`'s lock file by its last holder (None when none is)."""
    try:
        text = (Path(folder) / LOCK_FILE).read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


@contextlib.contextmanager
def held_lock(folder: str | Path, what: str = "output folder", name: str | Path | None = None):
    """Hold an advisory lock on `folder` (created if missing); yields the lock file's open handle.

    The lock is the kernel's (`flock`), so it ends with the last process holding the handle, a
    killed one included: a lock file left by a dead process is stale and simply taken over. The
    holder writes its process id into the file, which a refused second writer names. `name` is
    what messages call the folder (default: `folder`)."""
    folder = Path(folder)
    shown = folder if name is None else name
    if dangling_link(folder):
        raise StudyError(dangling_link(folder))
    try:
        if folder.exists() and not folder.is_dir():
            raise StudyError(f"{folder}: is a file, not a folder")
        folder.mkdir(parents=True, exist_ok=True)
        handle = open(folder / LOCK_FILE, "a")
    except OSError as exc:
        raise os_error(exc, folder) from None
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = lock_holder(folder)
            by = "" if pid is None else f" (process {pid})" if process_alive(pid) else \
                f" (process {pid}, which has ended; a process it started still holds it: try again in a moment)"
            raise StudyError(f"{shown}: another process is writing this {what}{by}; "
                             "wait for it or choose another") from None
        try:
            handle.truncate(0)
            handle.write(f"{os.getpid()}\n")
            handle.flush()
        except OSError:
            pass  # the lock holds without the note (a full disk, say): a refusal then names no process
        try:
            yield handle
        finally:
            with contextlib.suppress(OSError):
                handle.truncate(0)  # released in order: no process named as holder any more
    finally:
        handle.close()  # releases the lock; the lock file stays (removing it would race)


@contextlib.contextmanager
def exclusive(folder: str | Path, what: str = "output folder", name: str | Path | None = None) -> Iterator[Path]:
    """Hold an advisory lock on `folder` (created if missing) while writing into it (see `held_lock`)."""
    with held_lock(folder, what, name):
        yield Path(folder)


def check_text_arguments(args) -> None:
    """Every string argument must be text that encodes as UTF-8: a path given as undecodable bytes
    reaches Python as surrogates, which pyarrow and JSON cannot write (a traceback half-way)."""
    for name, value in vars(args).items():
        items = value if isinstance(value, list) else [value]
        for item in [x for i in items for x in (i if isinstance(i, (list, tuple)) else [i])]:
            if isinstance(item, str):
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    raise StudyError(f"--{name.replace('_', '-')}: not UTF-8 text "
                                     f"({item.encode('utf-8', 'backslashreplace').decode()[:60]})") from None


__all__ = ["LOCK_FILE", "MAX_TEXT_BYTES", "atomic_write", "check_text_arguments", "dangling_link", "exclusive", "held_lock", "lock_holder", "os_error",
           "process_alive", "read_json", "read_torch_file", "remove_stale_temporaries",
           "require_regular_file", "temporary_name", "write_json", "write_text"]

"""Stream a data set's Parquet shards as batches of torch tensors.

A batch holds feature groups by name (`continuous`, `binary`, the three embeddings), the
13 labels by name, the planted true probabilities by name when stored, and the ids.
Training order: each epoch permutes the row groups of all shards, reads them a window at a
time and shuffles rows within the window; the order is a pure function of (seed, epoch),
so a resumed run sees exactly the batches an uninterrupted one would. A background thread
prefetches when it has a core of its own (on CUDA, or when torch leaves a core free): on a
CPU whose cores all run the model's matrix multiplies, a third runnable thread stalls their
OpenMP barriers (bf16 training on 2 cores: 526 examples/s with the thread, 677 without). On
CUDA the tensors are pinned for asynchronous copies.
"""

from __future__ import annotations

import os
import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from studylib.data.layout import GROUP_VALUE_TYPES, MANIFEST, RENAMED_FEATURES, SCHEMA_VERSION
from studylib.data.world import WorldParams
from studylib.errors import StudyError
from studylib.io import file_sha256, read_json, require_regular_file
from studylib.schema import (
    COHORT_COLUMN,
    EMBEDDING_GROUPS,
    GROUP_WIDTHS,
    LABELS,
    META_GROUPS,
    REQUEST_COLUMN,
    true_prob_column,
)
from studylib.data.embeddings import load_world_embeddings


@dataclass
class Batch:
    features: dict[str, torch.Tensor]  # group -> [B, width]
    labels: dict[str, torch.Tensor]  # label name -> [B] float32 in {0, 1}
    true_probs: dict[str, torch.Tensor]  # label name -> [B] (empty when not stored)
    ids: dict[str, torch.Tensor]  # meta__user_id, meta__author_id, meta__tweet_id, request_id -> [B]
    cohort: list[str] | None = None  # only when asked for (scoring)
    nonfinite: int = 0  # non-finite continuous values in this batch (the model maps them to 0)

    def __len__(self) -> int:
        return self.features["continuous"].shape[0]

    def to(self, device: torch.device) -> "Batch":
        move = lambda d: {k: v.to(device, non_blocking=True) for k, v in d.items()}  # noqa: E731
        return Batch(move(self.features), move(self.labels), move(self.true_probs), move(self.ids),
                     self.cohort, self.nonfinite)


@dataclass
class Dataset:
    """An opened, validated data set directory."""

    root: Path
    manifest: dict
    files: list[Path]
    row_groups: list[tuple[int, int, int]] = field(default_factory=list)  # (file index, row group, rows)
    has_truth: bool = False
    truncation: dict[str, int] = field(default_factory=dict)  # group -> width the model sees
    renamed: dict[str, str] = field(default_factory=dict)  # group -> stored column name
    # An embedding view: group -> [entities, width] table looked up by user/author id instead of
    # the stored column (the rows come from the base data set's shards).
    embedding_tables: dict[str, np.ndarray] | None = None

    @property
    def rows(self) -> int:
        return sum(n for _, _, n in self.row_groups)

    @property
    def downsampling(self) -> dict:
        return self.manifest.get("downsampling", {})


def open_dataset(root: str | Path, verify: bool = True, renamed: dict[str, str] | None = None,
                 truncation: dict[str, int] | None = None) -> Dataset:
    """Open `root`, check manifest, checksums and every shard's columns; refuse bad input with one line.

    renamed: group -> stored column (the config's `renamed_features`); truncation: group ->
    width the model sees (the config's preprocess); both default to the published config.
    """
    root = Path(root)
    renamed = dict(RENAMED_FEATURES if renamed is None else renamed)
    widths = dict(GROUP_WIDTHS)
    widths.update(truncation or {})
    manifest_path = root / MANIFEST
    if not root.is_dir():
        raise StudyError(f"{root}: data folder not found")
    if not manifest_path.exists():
        raise StudyError(f"{manifest_path}: missing (not a data set made by `studylib generate`)")
    manifest = read_json(manifest_path)
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise StudyError(f"{manifest_path}: schema_version {manifest.get('schema_version')!r} is not {SCHEMA_VERSION}")
    _check_manifest(manifest_path, manifest)
    if "view_of" in manifest:
        return _open_view(root, manifest, verify, renamed, truncation)
    files, row_groups, has_truth = [], [], None
    for index, shard in enumerate(manifest.get("shards", [])):
        path = root / shard["file"]
        if not path.exists():
            raise StudyError(f"{path}: shard listed in manifest.json is missing")
        require_regular_file(path, "shard")
        if verify and file_sha256(path) != shard["sha256"]:
            raise StudyError(f"{path}: checksum differs from manifest.json (corrupt or changed shard)")
        try:
            meta = pq.ParquetFile(path)
        except (pa.ArrowException, OSError):
            raise StudyError(f"{path}: not a readable Parquet file") from None
        if meta.metadata.num_rows == 0:  # `generate` never writes one; every later step assumes rows
            raise StudyError(f"{path}: shard holds no rows")
        shard_truth = _check_schema(path, meta.schema_arrow, renamed, widths)
        _check_values(path, renamed)
        has_truth = shard_truth if has_truth is None else has_truth and shard_truth
        files.append(path)
        row_groups += [(index, g, meta.metadata.row_group(g).num_rows) for g in range(meta.num_row_groups)]
    if not files:
        raise StudyError(f"{manifest_path}: lists no shards")
    _check_requests_disjoint(files)
    return Dataset(root, manifest, files, row_groups, bool(has_truth), widths, renamed)


def _check_requests_disjoint(files: list[Path]) -> None:
    """A request's candidates live in one shard: an id found in two shards would merge two requests
    into one feed (ranks beyond the request's size), so it is refused."""
    earlier: list[tuple[Path, np.ndarray]] = []
    for path in files:
        ids = np.unique(pq.read_table(path, columns=[REQUEST_COLUMN]).column(0).to_numpy())
        for other, other_ids in earlier:
            clash = ids[np.isin(ids, other_ids, assume_unique=True)]
            if clash.size:
                raise StudyError(f"{path}: request id {clash[0]} is also in {other.name} "
                                 "(a request's candidates must sit in one shard)")
        earlier.append((path, ids))


def _check_manifest(path: Path, manifest: dict) -> None:
    """The manifest's records the readers and training rely on, each present and well-formed."""
    rates = manifest.get("realised_rates")
    if not isinstance(rates, dict) or not all(isinstance(rates.get(label), (int, float)) for label in LABELS):
        raise StudyError(f"{path}: realised_rates must give a number for each of the {len(LABELS)} labels")
    for label in LABELS:  # read as each head's starting log-odds: a NaN here would train a NaN model
        if isinstance(rates[label], bool) or not 0 <= rates[label] <= 1:
            raise StudyError(f"{path}: realised_rates.{label} must be a rate in [0, 1], got {rates[label]!r}")
    downsampling = manifest.get("downsampling", {})  # read as each head's calibration ratio
    if not isinstance(downsampling, dict):
        raise StudyError(f"{path}: downsampling must be a mapping of label to its two rates")
    for label, entry in downsampling.items():
        if label not in LABELS:
            raise StudyError(f"{path}: downsampling names an unknown label {str(label)[:60]!r}")
        for key in ("pos_downsampling_rate", "neg_downsampling_rate"):
            rate = entry.get(key) if isinstance(entry, dict) else None
            if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate <= 1:
                raise StudyError(f"{path}: downsampling.{label}.{key} must be a rate in (0, 1], got "
                                 f"{str(rate)[:60] if rate is not None else 'nothing'}")
    if "view_of" in manifest:
        return
    shards = manifest.get("shards")
    if not isinstance(shards, list):
        raise StudyError(f"{path}: shards must be a list, got {type(shards).__name__}")
    seen = set()
    for i, shard in enumerate(shards):
        if not isinstance(shard, dict) or not isinstance(shard.get("file"), str) or not isinstance(shard.get("sha256"), str):
            raise StudyError(f"{path}: shards[{i}] must name its file and sha256")
        if Path(shard["file"]).name != shard["file"] or shard["file"] in ("", ".", ".."):
            raise StudyError(f"{path}: shards[{i}].file must be a file name inside the data folder, got {shard['file']!r}")
        if shard["file"] in seen:
            raise StudyError(f"{path}: shards[{i}] lists {shard['file']} a second time (its rows would count twice)")
        seen.add(shard["file"])


def _open_view(root: Path, manifest: dict, verify: bool, renamed: dict[str, str],
               truncation: dict[str, int] | None) -> Dataset:
    """An embedding view (`generate.embedding_view`): the base data set's rows, the three embedding
    features looked up from the view's embedding file by the rows' user and author ids."""
    where = root / MANIFEST
    try:
        base_root = root / manifest["view_of"]["path"]
        expected_base = manifest["view_of"]["manifest_sha256"]
        emb_file = root / manifest["embeddings"]["file"]
        expected_emb = manifest["embeddings"]["sha256"]
        world = manifest["params"]["world"]
    except (KeyError, TypeError):
        raise StudyError(f"{where}: malformed embedding view (needs view_of.path/manifest_sha256, "
                         "embeddings.file/sha256 and params.world)") from None
    world = WorldParams.from_record(world, str(where))
    n_users, n_authors = world.n_users, world.n_authors
    if not (base_root / MANIFEST).exists():
        raise StudyError(f"{where}: its base data set {base_root} is missing")
    if file_sha256(base_root / MANIFEST) != expected_base:
        raise StudyError(f"{where}: its base data set {base_root} changed since the view was made; make the view again")
    if not emb_file.exists():
        raise StudyError(f"{where}: its embedding file {emb_file} is missing")
    if file_sha256(emb_file) != expected_emb:
        raise StudyError(f"{emb_file}: checksum differs from {where} (the embeddings changed since the view was made)")
    base = open_dataset(base_root, verify, renamed, truncation)

    tables = load_world_embeddings(emb_file, n_users, n_authors)
    return Dataset(root, manifest, base.files, base.row_groups, base.has_truth, base.truncation, base.renamed,
                   embedding_tables={g: tables[g] for g in EMBEDDING_GROUPS})


def _entity_ids(group: str) -> str:
    """The id column an embedding group is looked up by."""
    return "meta__author_id" if group.startswith("author") else "meta__user_id"


def _check_values(path: Path, renamed: dict[str, str]) -> None:
    """Labels in {0, 1} without nulls, true probabilities (when stored) finite in [0, 1], finite
    embeddings and request ids without nulls: checked before anything trains or writes.

    (Non-finite continuous values are allowed, as in the original: the model maps them to 0 and
    the reader counts them.)
    """
    embeddings = [renamed[g] for g in EMBEDDING_GROUPS]
    names = set(pq.read_schema(path).names)
    truth = [true_prob_column(label) for label in LABELS if true_prob_column(label) in names]
    ids = [c for c in (REQUEST_COLUMN,) if c in names]
    table = pq.read_table(path, columns=list(LABELS) + truth + ids + embeddings)
    for column in list(LABELS) + truth + ids:
        nulls = table.column(column).null_count
        if nulls:
            raise StudyError(f"{path}: column {column} has {nulls} null value(s)")
    for label in LABELS:
        values = table.column(label).to_numpy()
        bad = int(((values < 0) | (values > 1)).sum())
        if bad:
            raise StudyError(f"{path}: column {label} has {bad} value(s) outside {{0, 1}}")
    for column in truth:
        values = table.column(column).to_numpy()
        bad = int((~np.isfinite(values) | (values < 0) | (values > 1)).sum())
        if bad:
            raise StudyError(f"{path}: column {column} has {bad} value(s) that are not probabilities (NaN, Inf or outside [0, 1])")
    for column in embeddings:
        flat = table.column(column).combine_chunks().flatten().to_numpy(zero_copy_only=False)
        if not np.isfinite(flat).all():
            raise StudyError(f"{path}: column {column} holds NaN or Inf values")


def _check_schema(path: Path, schema: pa.Schema, renamed: dict[str, str], widths: dict[str, int]) -> bool:
    for group, width in widths.items():
        column = renamed.get(group)
        if column is None:
            raise StudyError(f"config: renamed_features has no entry for group {group}")
        if column not in schema.names:
            raise StudyError(f"{path}: missing column {column}")
        kind = schema.field(column).type
        if not pa.types.is_fixed_size_list(kind) or kind.value_type != GROUP_VALUE_TYPES[group]:
            raise StudyError(f"{path}: column {column} must be fixed_size_list<{GROUP_VALUE_TYPES[group]}>, got {kind}")
        if kind.list_size < width:
            raise StudyError(f"{path}: column {column} has length {kind.list_size}, the model needs {width}")
    for column in [renamed[m] for m in META_GROUPS] + [REQUEST_COLUMN] + list(LABELS):
        if column not in schema.names:
            raise StudyError(f"{path}: missing column {column}")
        if not pa.types.is_integer(schema.field(column).type):
            raise StudyError(f"{path}: column {column} must be an integer, got {schema.field(column).type}")
    if COHORT_COLUMN in schema.names and not pa.types.is_string(schema.field(COHORT_COLUMN).type):
        raise StudyError(f"{path}: column {COHORT_COLUMN} must hold strings (cohort names), "
                         f"got {schema.field(COHORT_COLUMN).type}")
    truth = [true_prob_column(label) for label in LABELS]
    return all(c in schema.names for c in truth)


class Reader:
    """Batches from a `Dataset`. Training: shuffled, endless over epochs; evaluation: in order, once."""

    def __init__(self, dataset: Dataset, batch_size: int, shuffle: bool, seed: int = 0, window: int = 8,
                 rank: int = 0, world_size: int = 1, device: torch.device | str = "cpu", prefetch: int | None = None,
                 with_cohort: bool = False):
        if batch_size < 1:
            raise StudyError(f"--batch-size must be >= 1, got {batch_size}")
        if batch_size % world_size:
            raise StudyError(f"--batch-size {batch_size} must be divisible by the number of processes {world_size}")
        self.dataset, self.batch_size, self.shuffle = dataset, batch_size, shuffle
        self.seed, self.window, self.rank, self.world_size = seed, window, rank, world_size
        self.pin = torch.device(device).type == "cuda"
        if prefetch is None:  # batches read ahead in a thread, when a core is free for it
            spare_core = (os.cpu_count() or 1) > torch.get_num_threads()
            prefetch = 4 if self.pin or spare_core else 0
        self.prefetch, self.with_cohort = prefetch, with_cohort
        self._files = [pq.ParquetFile(path) for path in dataset.files]
        self._columns = None  # all; an embedding view skips the stored vectors it replaces
        if dataset.embedding_tables:
            skip = {dataset.renamed[g] for g in dataset.embedding_tables}
            self._columns = [n for n in self._files[0].schema_arrow.names if n not in skip]

    # -- planning (pure functions of seed and epoch; no I/O) -----------------------------

    def _windows(self, epoch: int) -> list[list[tuple[int, int, int]]]:
        groups = list(self.dataset.row_groups)
        if self.shuffle:
            order = np.random.default_rng([self.seed, epoch]).permutation(len(groups))
            groups = [groups[i] for i in order]
            return [groups[i:i + self.window] for i in range(0, len(groups), self.window)]
        return [groups]

    def batches_per_epoch(self) -> int:
        if not self.shuffle:
            return -(-self.dataset.rows // self.batch_size)
        return sum(sum(n for *_, n in w) // self.batch_size for w in self._windows(0))

    # -- reading --------------------------------------------------------------------------

    def epoch(self, epoch: int = 0, skip: int = 0) -> Iterator[Batch]:
        """Batches of one epoch, starting after the first `skip` ones (for resume)."""
        return _prefetched(self._epoch(epoch, skip), self.prefetch)

    def _epoch(self, epoch: int, skip: int) -> Iterator[Batch]:
        emitted = 0
        for window_index, groups in enumerate(self._windows(epoch)):
            rows = sum(n for *_, n in groups)
            n_batches = rows // self.batch_size if self.shuffle else -(-rows // self.batch_size)
            if emitted + n_batches <= skip:  # the whole window was consumed before the checkpoint
                emitted += n_batches
                continue
            columns = self._read(groups)
            order = None
            if self.shuffle:
                order = np.random.default_rng([self.seed, epoch, window_index]).permutation(rows)
            for b in range(n_batches):
                if emitted >= skip:
                    take = slice(b * self.batch_size, (b + 1) * self.batch_size)
                    yield self._batch(columns, order[take] if order is not None else take)
                emitted += 1

    def _read(self, groups) -> dict[str, np.ndarray]:
        tables = []
        for file_index, group, _ in groups:
            tables.append(self._files[file_index].read_row_group(group, columns=self._columns))
        table = pa.concat_tables(tables)
        renamed = self.dataset.renamed
        columns = {}
        swapped = self.dataset.embedding_tables or {}
        for group, width in self.dataset.truncation.items():
            if group in swapped:  # an embedding view: look the vectors up by entity id
                ids = table.column(renamed[_entity_ids(group)]).to_numpy()
                columns[group] = swapped[group][ids, :width]
                continue
            column = table.column(renamed[group]).combine_chunks()
            stored = column.type.list_size
            values = column.flatten().to_numpy(zero_copy_only=False).reshape(-1, stored)
            columns[group] = values[:, :width]  # the config's truncate_and_slice
        for name in [renamed[m] for m in META_GROUPS] + [REQUEST_COLUMN] + list(LABELS):
            columns[name] = table.column(name).to_numpy()
        if self.dataset.has_truth:
            for label in LABELS:
                columns[true_prob_column(label)] = table.column(true_prob_column(label)).to_numpy()
        if self.with_cohort and COHORT_COLUMN in table.column_names:
            columns[COHORT_COLUMN] = np.asarray(table.column(COHORT_COLUMN).to_pylist(), dtype=object)
        return columns

    def _batch(self, columns: dict[str, np.ndarray], rows) -> Batch:
        if self.world_size > 1:  # each process takes its slice of the global batch
            per_rank = self.batch_size // self.world_size
            rows = np.arange(self.batch_size)[rows] if isinstance(rows, slice) else rows
            rows = rows[self.rank * per_rank:(self.rank + 1) * per_rank]

        def tensor(values, dtype):
            picked = values[rows]
            if not (picked.flags.writeable and picked.flags.c_contiguous):  # a view of Arrow's read-only buffer
                picked = np.array(picked)
            t = torch.from_numpy(picked).to(dtype)
            return t.pin_memory() if self.pin else t

        renamed = self.dataset.renamed
        features = {g: tensor(columns[g], torch.float32) for g in self.dataset.truncation}
        nonfinite = int((~torch.isfinite(features["continuous"])).sum())
        labels = {label: tensor(columns[label], torch.float32) for label in LABELS}
        truth = {}
        if self.dataset.has_truth:
            truth = {label: tensor(columns[true_prob_column(label)], torch.float32) for label in LABELS}
        ids = {m: tensor(columns[renamed[m]], torch.int64) for m in META_GROUPS}
        ids[REQUEST_COLUMN] = tensor(columns[REQUEST_COLUMN], torch.int64)
        cohort = list(columns[COHORT_COLUMN][rows]) if COHORT_COLUMN in columns else None
        return Batch(features, labels, truth, ids, cohort, nonfinite)


def _prefetched(iterator: Iterator[Batch], depth: int) -> Iterator[Batch]:
    """Run `iterator` in a background thread, `depth` batches ahead (Parquet and numpy release the GIL)."""
    if depth <= 0:
        yield from iterator
        return
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def work():
        try:
            for item in iterator:
                if stop.is_set():
                    return
                buffer.put(item)
            buffer.put(done)
        except BaseException as exc:  # re-raised in the consumer, with its message intact
            buffer.put(exc)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        while True:
            item = buffer.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                buffer.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.01)


def load_table(root: str | Path, columns: list[str] | None = None) -> pa.Table:
    """All shards of a data set as one Arrow table (for analysis; training streams instead).
    For an embedding view the three embedding columns hold the view's vectors."""
    dataset = open_dataset(root, verify=False)
    table = pa.concat_tables(pq.read_table(path, columns=columns) for path in dataset.files)
    for group, vectors in (dataset.embedding_tables or {}).items():
        name = dataset.renamed[group]
        if name in table.column_names:
            ids = pa.concat_tables(pq.read_table(path, columns=[dataset.renamed[_entity_ids(group)]])
                                   for path in dataset.files).column(0).to_numpy()
            picked = vectors[ids]
            array = pa.FixedSizeListArray.from_arrays(pa.array(picked.reshape(-1)), picked.shape[1])
            table = table.set_column(table.column_names.index(name), name, array)
    return table

"""The normalized tables every stage reads and writes, and the rules that make a window valid.

One row per query (``QUERY_SCHEMA``) and one row per media file (``VIDEO_SCHEMA``). Times are float
seconds relative to the media that is actually loaded. Whatever normalization changes is recorded
in ``flags`` and the native values are kept in ``windows_raw`` / ``raw_unit``, so a row can always be
traced back to its source record (``provenance``).

The Arrow schemas are explicit (not inferred) so that an empty split, a split without multi-window
queries and a split with them all produce the same column types, and so that a later version can
read an older table: the schema version lives in the Parquet metadata.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from vtg_data.files import atomic_path

SCHEMA_VERSION = "1.0"
METADATA_VERSION_KEY = b"vtg_data.schema_version"
METADATA_TABLE_KEY = b"vtg_data.table"

# Flags that describe a repair. ``--strict`` turns each of them into an error.
REPAIR_FLAGS = frozenset({"end_clamped", "start_clamped", "inverted_swapped"})

_WINDOW = pa.list_(pa.float64())
PROVENANCE_TYPE = pa.struct(
    [
        pa.field("file", pa.string()),
        pa.field("sha256", pa.string()),
        pa.field("record", pa.string()),
    ]
)

QUERY_SCHEMA = pa.schema(
    [
        pa.field("uid", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("task", pa.string(), nullable=False),
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("video_path", pa.string(), nullable=False),
        pa.field("parent_video_id", pa.string()),
        pa.field("clip_start", pa.float64()),
        pa.field("clip_end", pa.float64()),
        pa.field("duration", pa.float64(), nullable=False),
        pa.field("duration_source", pa.string(), nullable=False),
        pa.field("query", pa.string(), nullable=False),
        pa.field("query_raw", pa.string(), nullable=False),
        pa.field("windows", pa.list_(_WINDOW), nullable=False),
        pa.field("windows_alt", pa.list_(pa.list_(_WINDOW))),
        pa.field("windows_raw", pa.list_(_WINDOW), nullable=False),
        pa.field("raw_unit", pa.string(), nullable=False),
        pa.field("fps_native", pa.float64()),
        pa.field("has_gt", pa.bool_(), nullable=False),
        pa.field("flags", pa.list_(pa.string()), nullable=False),
        pa.field("benchmarks", pa.list_(pa.string()), nullable=False),
        pa.field("provenance", PROVENANCE_TYPE, nullable=False),
        pa.field("extra", pa.string(), nullable=False),
    ],
    metadata={METADATA_VERSION_KEY: SCHEMA_VERSION.encode(), METADATA_TABLE_KEY: b"queries"},
)

VIDEO_STATUSES = ("ok", "missing", "corrupt")

VIDEO_SCHEMA = pa.schema(
    [
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("video_path", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("duration_annotation", pa.float64()),
        pa.field("duration_probe", pa.float64()),
        pa.field("fps", pa.float64()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("bytes", pa.int64()),
        pa.field("sha256", pa.string()),
        pa.field("error", pa.string()),
        pa.field("codec", pa.string()),
        pa.field("container", pa.string()),
        pa.field("rotation", pa.int32()),  # clockwise degrees a player turns the stored picture
        pa.field("start_offset", pa.float64()),  # the first frame's presentation time, seconds
        pa.field("variable_rate", pa.bool_()),
    ],
    metadata={METADATA_VERSION_KEY: SCHEMA_VERSION.encode(), METADATA_TABLE_KEY: b"videos"},
)


class RecordError(ValueError):
    """A native record that cannot be turned into a valid row.

    The message always names the file, the record (line number or key) and the problem, so a user
    can open the file and see what is wrong without reading our code.
    """

    def __init__(self, file: str | Path, record: str, problem: str):
        self.file = str(file)
        self.record = str(record)
        self.problem = problem
        super().__init__(f"{self.file}: record {self.record}: {problem}")


class ValidationFailed(ValueError):
    """Several bad records in one input; carries all of them (the message shows the first few)."""

    def __init__(self, errors: Sequence[RecordError], shown: int = 20):
        self.errors = list(errors)
        lines = [str(e) for e in self.errors[:shown]]
        more = len(self.errors) - shown
        if more > 0:
            lines.append(f"... and {more} more bad records")
        super().__init__(f"{len(self.errors)} bad record(s):\n" + "\n".join(lines))


@dataclass(frozen=True)
class RecordRef:
    """Where a record lives, for error messages."""

    file: str
    record: str

    def error(self, problem: str) -> RecordError:
        return RecordError(self.file, self.record, problem)


def as_time(value: Any, what: str, ref: RecordRef) -> float:
    """A finite, non-negative number of (native) time units, or a RecordError saying why not."""
    number = as_signed_time(value, what, ref)
    if number < 0:
        raise ref.error(f"{what} is negative: {value!r}")
    return number


def as_signed_time(value: Any, what: str, ref: RecordRef) -> float:
    """A finite number of (native) time units, negative allowed: window bounds go through
    ``normalize_window``, which decides whether a negative value is rounding noise or an error."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ref.error(f"{what} is not a number: {value!r}")
    number = float(value)
    if math.isnan(number) or math.isinf(number):
        raise ref.error(f"{what} is not finite: {value!r}")
    return number


def as_duration(value: Any, ref: RecordRef) -> float:
    duration = as_time(value, "duration", ref)
    if duration <= 0:
        raise ref.error(f"duration must be positive, got {value!r}")
    return duration


# Real files put window bounds a little below 0 (NExT-GQA's -0.1 and -0.2, QuerYD's -0.1): the
# annotators' rounding, not a moment before the video. Below this many seconds it is an error.
NEGATIVE_TOLERANCE = 1.0


def normalize_window(
    start: float,
    end: float,
    duration: float,
    ref: RecordRef,
    *,
    strict: bool = False,
    raw: tuple[Any, Any] | None = None,
    what: str = "window",
) -> tuple[list[float], set[str]]:
    """Clamp to [0, duration], swap an inverted pair, flag a zero-length result.

    Inputs are in seconds (``raw`` is the pair as the file has it, quoted in messages). A bound
    less than ``NEGATIVE_TOLERANCE`` seconds below 0 is clamped to 0 and flagged; further below
    is a RecordError. In strict mode a window that would need any repair raises instead, naming
    the record, the raw values and the repair.
    """
    quoted = f"[{raw[0]}, {raw[1]}]" if raw is not None else f"[{_plain(start)}, {_plain(end)}]"
    for bound, name in ((start, "start"), (end, "end")):
        if bound <= -NEGATIVE_TOLERANCE:
            raise ref.error(
                f"{what} {quoted}: {name} {_plain(bound)} s is negative by {NEGATIVE_TOLERANCE:g} s or more "
                "(only rounding noise below 0 is clamped)"
            )
    flags: set[str] = set()
    if start > end:
        flags.add("inverted_swapped")
        start, end = end, start
    if start < 0:
        flags.add("start_clamped")
        start = 0.0
    if end < 0:
        flags.add("end_clamped")
        end = 0.0
    if end > duration:
        flags.add("end_clamped")
        end = duration
    if start > duration:
        flags.add("start_clamped")
        start = duration
    if strict and flags & REPAIR_FLAGS:
        repairs = ", ".join(sorted(flags & REPAIR_FLAGS))
        raise ref.error(
            f"{what} {quoted} needs repair ({repairs}) against duration {_plain(duration)} (strict mode)"
        )
    if end == start:
        flags.add("zero_length")
    return [start, end], flags


def _plain(value: Any) -> str:
    """A number as a person would write it: ``130`` for 130.0, ``-0.1`` for -0.1."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def normalize_query_text(text: Any, ref: RecordRef) -> str:
    """Collapse and trim whitespace; the verbatim text stays in ``query_raw``."""
    if not isinstance(text, str):
        raise ref.error(f"query is not a string: {text!r}")
    query = " ".join(text.split())
    if not query:
        raise ref.error("query is empty")
    return query


@dataclass
class QueryRow:
    """One normalized query before it becomes an Arrow row; adapters fill it, ``finalize`` checks it."""

    uid: str
    source: str
    split: str
    video_id: str
    video_path: str
    duration: float
    duration_source: str
    query: str
    query_raw: str
    windows: list[list[float]]
    windows_raw: list[list[float]]
    raw_unit: str
    provenance: dict[str, str]
    task: str = "moment_retrieval"
    parent_video_id: str | None = None
    clip_start: float | None = None
    clip_end: float | None = None
    windows_alt: list[list[list[float]]] | None = None
    fps_native: float | None = None
    has_gt: bool = True
    flags: set[str] = field(default_factory=set)
    benchmarks: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def as_record(self) -> dict[str, Any]:
        return {
            "uid": self.uid,
            "source": self.source,
            "split": self.split,
            "task": self.task,
            "video_id": self.video_id,
            "video_path": self.video_path,
            "parent_video_id": self.parent_video_id,
            "clip_start": self.clip_start,
            "clip_end": self.clip_end,
            "duration": self.duration,
            "duration_source": self.duration_source,
            "query": self.query,
            "query_raw": self.query_raw,
            "windows": sorted(self.windows),
            "windows_alt": self.windows_alt,
            "windows_raw": self.windows_raw,
            "raw_unit": self.raw_unit,
            "fps_native": self.fps_native,
            "has_gt": self.has_gt,
            "flags": sorted(self.flags),
            "benchmarks": sorted(self.benchmarks),
            "provenance": self.provenance,
            "extra": json.dumps(self.extra, sort_keys=True, separators=(",", ":")) if self.extra else "{}",
        }


def flag_duplicates(rows: Sequence[QueryRow]) -> None:
    """Flag repeats after their first occurrence: ``duplicate`` for the same video, verbatim query
    and native windows; ``duplicate_query`` for the same video and query with other windows.

    Benchmarks count duplicates (TACoS has thousands), so they are kept; the flag lets a training
    set drop them and lets anyone reproduce the benchmark count.
    """
    seen_exact: set[tuple] = set()
    seen_query: set[tuple] = set()
    for row in rows:
        exact = (row.video_id, row.query_raw, tuple(tuple(w) for w in row.windows_raw))
        query = (row.video_id, row.query)
        if exact in seen_exact:
            row.flags.add("duplicate")
        elif query in seen_query:
            row.flags.add("duplicate_query")
        seen_exact.add(exact)
        seen_query.add(query)


def check_unique_uids(rows: Iterable[QueryRow], file: str) -> None:
    seen: dict[str, str] = {}
    for row in rows:
        if row.uid in seen:
            raise RecordError(file, row.provenance["record"], f"duplicate uid {row.uid!r}")
        seen[row.uid] = row.provenance["record"]


def rows_to_table(rows: Sequence[QueryRow]) -> pa.Table:
    return pa.Table.from_pylist([r.as_record() for r in rows], schema=QUERY_SCHEMA)


def write_table_atomic(table: pa.Table, path: Path) -> None:
    """Write Parquet to a temporary sibling, then rename: a crash never leaves a half table as final.

    Options are fixed (no statistics timestamps, one row group size) so the same rows give the same
    bytes on every run.
    """
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd", row_group_size=256_000, write_statistics=True)


def read_table(path: Path) -> pa.Table:
    """Read one of our tables, refusing a newer major schema version with a clear message."""
    table = pq.read_table(path)
    meta = table.schema.metadata or {}
    version = meta.get(METADATA_VERSION_KEY, b"").decode() or None
    if version is not None and version.split(".")[0] != SCHEMA_VERSION.split(".")[0]:
        raise ValueError(
            f"{path}: table schema version {version} is not readable by this vtg-data "
            f"(schema {SCHEMA_VERSION}); upgrade with `pip install -U vtg-data`"
        )
    return table

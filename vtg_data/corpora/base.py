"""What every corpus adapter declares and the shared loop that turns native records into rows.

An adapter knows four things about its corpus: where the native files live (official location,
mirrors), what they are called, how one native record becomes normalized rows, and how a video id
maps to a file on disk. Everything else (error collection, duplicate flags, uid checks, provenance
hashes) is done here once, so that all corpora behave the same way on bad input.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from vtg_data.files import sha256_file  # noqa: F401  (the stages import it from here)
from vtg_data.schema import (
    QueryRow,
    RecordError,
    RecordRef,
    ValidationFailed,
    as_signed_time,
    check_unique_uids,
    flag_duplicates,
    normalize_query_text,
    normalize_window,
)

HF_ENDPOINT_DEFAULT = "https://huggingface.co"


@dataclass(frozen=True)
class Remote:
    """One place a native file can be fetched from.

    ``member`` names the file inside an archive at ``url`` (matched by its path or its base name).
    ``hf_repo``/``hf_path`` describe a Hugging Face dataset mirror; its URL is built at fetch time
    from ``HF_ENDPOINT`` so that the same declaration works against a private endpoint.
    """

    url: str = ""
    member: str | None = None
    sha256: str | None = None
    kind: str = "official"
    hf_repo: str | None = None
    hf_path: str | None = None

    def resolved_url(self, endpoint: str | None = None) -> str:
        if self.hf_repo:
            base = (endpoint or HF_ENDPOINT_DEFAULT).rstrip("/")
            return f"{base}/datasets/{self.hf_repo}/resolve/main/{self.hf_path}"
        return self.url


@dataclass(frozen=True)
class NativeFile:
    """An annotation file under its official name, with the places it can come from.

    ``sha256`` pins a fixed release: one sum, or the sums of each known copy where mirrors hold
    the same records in other bytes (VideoMind re-indents HiREST's JSON; ReXTime's GitHub JSONL
    is saved under the HF file's name). ``--no-verify`` accepts any other release.
    """

    name: str
    remotes: tuple[Remote, ...] = ()
    sha256: str | tuple[str, ...] | None = None
    optional: bool = False

    @property
    def accepted_sums(self) -> tuple[str, ...]:
        return (self.sha256,) if isinstance(self.sha256, str) else tuple(self.sha256 or ())


@dataclass(frozen=True)
class VideoSource:
    """Where a corpus's videos come from: an archive (possibly split into parts) or per-file URLs."""

    description: str
    parts: tuple[Remote, ...] = ()
    kind: str = "official"
    note: str = ""
    # One file per video, URLs from ``CorpusAdapter.video_urls`` (e.g. DiDeMo on YFCC100M).
    per_video: bool = False


@dataclass
class ParseContext:
    """Options and facts a parse needs beyond the files themselves."""

    strict: bool = False
    file_hashes: dict[str, str] = field(default_factory=dict)
    probe_durations: dict[str, float] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)

    def provenance(self, file: str | Path, record: str) -> dict[str, str]:
        name = os.path.basename(file)  # plain string work: this runs once per query
        return {"file": name, "sha256": self.file_hashes.get(name, ""), "record": record}


class CorpusAdapter(ABC):
    """Base class: subclasses declare their files and parse one record at a time."""

    name: ClassVar[str]
    splits: ClassVar[tuple[str, ...]]
    task: ClassVar[str] = "moment retrieval"
    licence: ClassVar[str] = "unknown"
    homepage: ClassVar[str] = ""
    video_sources: ClassVar[tuple[VideoSource, ...]] = ()
    # True where the annotation carries no exact media duration, so a probed one replaces it.
    duration_from_probe: ClassVar[bool] = False
    # Splits that are evaluation benchmarks: split -> membership tag put in every row's ``benchmarks``
    # (leakage checks and the cold-start leakage rule key on these tags across sources).
    benchmark_splits: ClassVar[dict[str, str]] = {}
    # Download options that change this corpus's normalized rows (``DownloadConfig`` fields, passed
    # to ``record_rows`` in ``ParseContext.options`` and part of each split's fingerprint).
    option_names: ClassVar[tuple[str, ...]] = ()
    # How to get the files when no download location is known (said in the error).
    files_hint: ClassVar[str] = ""
    # Made here rather than downloaded (``generate`` writes the files and the videos).
    generated: ClassVar[bool] = False

    @abstractmethod
    def native_files(self, split: str) -> list[NativeFile]:
        """The annotation files one split needs, under their official names."""

    @abstractmethod
    def iter_records(self, split: str, files: dict[str, Path]) -> Iterator[tuple[RecordRef, Any]]:
        """Native records with where they live; raises RecordError for an unreadable file."""

    @abstractmethod
    def record_rows(self, split: str, ref: RecordRef, record: Any, ctx: ParseContext) -> list[QueryRow]:
        """The normalized rows of one native record; raises RecordError naming the problem."""

    def uid(self, split: str, *key: Any) -> str:
        """A row's stable key: ``{corpus}/{split}/{native key parts}``; the same record always
        gives the same uid."""
        return "/".join([self.name, split, *(str(part) for part in key)])

    def generate(self, raw: Path, videos: Path, settings: Any, progress=None) -> list[str]:
        """A generated corpus: write its native files and videos; the splits now present."""
        raise TypeError(f"{self.name} is downloaded, not generated")

    def video_candidates(self, video_id: str) -> list[str]:
        """File names under the video root that may hold ``video_id``, best first."""
        return [f"{video_id}.mp4"]

    def video_urls(
        self, video_ids: list[str], obtain: Callable[[NativeFile], Path]
    ) -> dict[str, tuple[str, str]]:
        """video id -> (URL, file name) for a ``per_video`` source; ``obtain`` fetches helper files."""
        return {}

    def check_split(self, split: str) -> None:
        if split not in self.splits:
            raise ValueError(f"{self.name} has no split {split!r}; known splits: {', '.join(self.splits)}")

    def parse(self, split: str, files: dict[str, Path], ctx: ParseContext) -> list[QueryRow]:
        """All rows of one split. Bad records are collected and raised together, never skipped."""
        self.check_split(split)
        rows: list[QueryRow] = []
        errors: list[RecordError] = []
        try:
            for ref, record in self.iter_records(split, files):
                try:
                    rows.extend(self.record_rows(split, ref, record, ctx))
                except RecordError as exc:
                    errors.append(exc)
        except RecordError as exc:  # the file as a whole is unreadable
            errors.append(exc)
        if errors:
            raise ValidationFailed(errors)
        first_file = next(iter(files.values()), Path("?"))
        check_unique_uids(rows, str(first_file))
        if not rows:
            raise ValidationFailed([RecordError(first_file, "-", "no queries found in the file")])
        flag_duplicates(rows)
        tag = self.benchmark_splits.get(split)
        if tag:
            for row in rows:
                row.benchmarks = sorted({*row.benchmarks, tag})
        return rows


def read_text(path: Path) -> str:
    """The file's text, or a RecordError for a missing, empty or undecodable file."""
    if not path.is_file():
        raise RecordError(path, "-", "file not found")
    data = path.read_bytes()
    if not data.strip():
        raise RecordError(path, "-", "file is empty")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RecordError(path, f"byte {exc.start}", "file is not valid UTF-8") from exc


def load_json(path: Path) -> Any:
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise RecordError(
            path, f"line {exc.lineno} column {exc.colno}", f"malformed JSON: {exc.msg}"
        ) from exc


def iter_json_items(path: Path) -> Iterator[tuple[RecordRef, tuple[int, Any]]]:
    """The items of a file holding one JSON list, each with its index (``record item N``)."""
    data = load_json(path)
    if not isinstance(data, list):
        raise RecordRef(str(path), "top level").error(f"expected a list of items, got {type(data).__name__}")
    for index, item in enumerate(data):
        yield RecordRef(str(path), f"item {index}"), (index, item)


def iter_jsonl(path: Path) -> Iterator[tuple[RecordRef, Any]]:
    text = read_text(path)
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        ref = RecordRef(str(path), f"line {lineno}")
        try:
            yield ref, json.loads(line)
        except json.JSONDecodeError as exc:
            raise ref.error(f"malformed JSON: {exc.msg}") from exc


def require(record: Any, key: str, ref: RecordRef) -> Any:
    if not isinstance(record, dict):
        raise ref.error(f"expected an object, got {type(record).__name__}")
    if key not in record:
        raise ref.error(f"missing field {key!r}")
    return record[key]


def as_pair(value: Any, what: str, ref: RecordRef) -> tuple[Any, Any]:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ref.error(f"{what} is not a [start, end] pair: {value!r}")
    return value[0], value[1]


def convert_windows(
    raw_windows: Any,
    duration: float,
    ref: RecordRef,
    ctx: ParseContext,
    *,
    units_per_second: float = 1.0,
    what: str = "window",
) -> tuple[list[list[float]], list[list[float]], set[str]]:
    """Native windows -> (seconds windows, raw windows as floats, flags).

    ``units_per_second`` converts native units to seconds (the fps for frame indices); dividing
    keeps ``147 / 29.4 == 5.0`` exact where multiplying by ``1 / 29.4`` would not. Each window is validated and
    normalized on its own; the flags of all windows are merged.
    """
    if not isinstance(raw_windows, (list, tuple)) or not raw_windows:
        raise ref.error(f"{what}s must be a non-empty list, got {raw_windows!r}")
    windows: list[list[float]] = []
    raw: list[list[float]] = []
    flags: set[str] = set()
    for item in raw_windows:
        start_raw, end_raw = as_pair(item, what, ref)
        start = as_signed_time(start_raw, f"{what} start", ref)
        end = as_signed_time(end_raw, f"{what} end", ref)
        raw.append([start, end])
        window, window_flags = normalize_window(
            start / units_per_second,
            end / units_per_second,
            duration,
            ref,
            strict=ctx.strict,
            raw=(start_raw, end_raw),
            what=what,
        )
        windows.append(window)
        flags |= window_flags
    if len(windows) > 1:
        flags.add("multi_window")
    return windows, raw, flags


def query_text(text: Any, ref: RecordRef) -> tuple[str, set[str]]:
    """Normalized query and a flag when whitespace had to be fixed (the raw text is kept)."""
    query = normalize_query_text(text, ref)
    return query, ({"query_whitespace_fixed"} if query != text else set())

"""``vtg-data download``: native files -> validated, normalized Parquet tables for one corpus.

Layout under the root folder (all relative, nothing absolute is stored in the tables)::

    raw/<corpus>/<official file name>          native annotation files
    downloads/<corpus>/                         archives and partial downloads
    videos/<corpus>/...                         media files (``video_path`` is relative to this)
    normalized/<corpus>/<split>.parquet         one row per query (schema.QUERY_SCHEMA)
    normalized/<corpus>/videos.parquet          one row per video (schema.VIDEO_SCHEMA)
    normalized/<corpus>/manifest.json           inputs' hashes, options, counts, per split

A split whose inputs, options and video folder are unchanged since the last run is not parsed
again. A split that fails (missing file, bad record) is reported and leaves no new output, while
the other splits are still written.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from vtg_data import __version__
from vtg_data.corpora import CorpusAdapter, ParseContext, get_adapter
from vtg_data.corpora.base import sha256_file
from vtg_data.corpora.didemo import CONSOLIDATION_RULES
from vtg_data.corpora.synthetic import SyntheticConfig
from vtg_data.data_root import DataRoot
from vtg_data.fetch.http import FetchError
from vtg_data.fetch.native import obtain_split_files
from vtg_data.fetch.videos import fetch_videos
from vtg_data.files import write_json
from vtg_data.schema import (
    SCHEMA_VERSION,
    VIDEO_SCHEMA,
    QueryRow,
    RecordError,
    ValidationFailed,
    rows_to_table,
    write_table_atomic,
)
from vtg_data.video.probe import ProbeResult, probe_many

MANIFEST = "manifest.json"
PROBE_CACHE = ".probe-cache.json"


@dataclass(frozen=True)
class DownloadConfig:
    """Options of ``vtg-data download``; saved in the manifest."""

    corpus: str
    root: Path
    splits: tuple[str, ...] = ()
    from_dir: Path | None = None
    videos: bool = False
    strict: bool = False
    verify: bool = True
    didemo_consolidation: str = "mode"
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    mirror: str | None = None  # a Hugging Face mirror (vtg_data.mirrors.MIRRORS) to take every file from
    revision: str | None = None  # the mirror's commit, tag or branch (default: main, resolved once)

    def __post_init__(self) -> None:
        if self.revision and not self.mirror:
            raise ValueError("--revision pins a mirror: give --mirror too")
        if self.mirror and self.from_dir is not None:
            raise ValueError("--mirror and --from are alternatives: give one")
        if self.didemo_consolidation not in CONSOLIDATION_RULES:
            raise ValueError(f"didemo_consolidation must be one of {CONSOLIDATION_RULES}")
        if self.from_dir is not None and not Path(self.from_dir).is_dir():
            raise ValueError(f"--from folder does not exist: {self.from_dir}")

    def options(self) -> dict[str, Any]:
        """The options that change the normalized output (part of each split's fingerprint): strict
        mode and the options the corpus's adapter declares."""
        names = get_adapter(self.corpus).option_names
        return {"strict": self.strict, **{name: getattr(self, name) for name in names}}


@dataclass
class SplitSummary:
    split: str
    queries: int = 0
    videos: int = 0
    videos_missing: int = 0
    videos_corrupt: int = 0
    flags: dict[str, int] = field(default_factory=dict)
    up_to_date: bool = False
    error: str | None = None


@dataclass
class DownloadResult:
    corpus: str
    out_dir: Path
    splits: list[SplitSummary]
    warnings: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[str]:
        return [f"{s.split}: {s.error}" for s in self.splits if s.error]


def download(cfg: DownloadConfig, progress=None) -> DownloadResult:
    """Fetch, parse, validate and write one corpus. See the module docstring for the layout."""
    adapter = get_adapter(cfg.corpus)
    layout = DataRoot(cfg.root, cfg.corpus)
    for split in cfg.splits:
        adapter.check_split(split)
    if adapter.generated:
        present = adapter.generate(layout.raw, layout.videos, cfg.synthetic, progress)
        splits = [s for s in (cfg.splits or adapter.splits) if s in present]
    else:
        splits = list(cfg.splits or adapter.splits)

    summaries: dict[str, SplitSummary] = {s: SplitSummary(s) for s in splits}
    inputs: dict[str, dict[str, Path]] = {}
    session = None
    if cfg.mirror:
        from vtg_data.fetch.mirrors import MirrorSession

        session = MirrorSession.open(cfg.mirror, cfg.revision, layout.downloads / "hub-cache")
    for split in splits:
        try:
            inputs[split] = obtain_split_files(adapter, split, layout, from_dir=cfg.from_dir, verify=cfg.verify,
                                               progress=progress, session=session)  # fmt: skip
        except (FetchError, RecordError, OSError) as exc:
            summaries[split].error = str(exc)

    warnings: list[str] = []
    if cfg.videos and not adapter.generated:
        try:
            if session is not None:
                session.fetch_videos(adapter, layout.videos, progress)
            else:
                warnings += fetch_videos(adapter, layout, _annotated_video_ids(adapter, inputs, cfg),
                                         from_dir=cfg.from_dir, verify=cfg.verify, progress=progress)  # fmt: skip
        except FetchError as exc:  # the annotations are still normalized; the videos count as missing
            warnings.append(str(exc))
    video_index = index_video_folder(layout.videos)

    manifest = _load_json(layout.out / MANIFEST) or {}
    manifest_splits = manifest.get("splits", {})
    hashes_cache: dict[Path, str] = {}
    pending: dict[str, tuple[dict[str, Path], str]] = {}
    for split, files in inputs.items():
        for path in files.values():
            hashes_cache[path] = sha256_file(path)
        fingerprint = _fingerprint(adapter, split, files, hashes_cache, cfg, video_index)
        previous = manifest_splits.get(split, {})
        if previous.get("fingerprint") == fingerprint and (layout.out / f"{split}.parquet").is_file():
            summaries[split] = SplitSummary(split, **previous["counts"], up_to_date=True)
        else:
            pending[split] = (files, fingerprint)

    if pending or not (layout.out / "videos.parquet").is_file():
        probe_cache = _load_json(layout.out / PROBE_CACHE) or {}
        parsed: dict[str, list[QueryRow]] = {}
        for split, (files, _) in pending.items():
            ctx = _context(cfg, files, hashes_cache)
            try:
                parsed[split] = adapter.parse(split, files, ctx)
            except (ValidationFailed, RecordError) as exc:
                summaries[split].error = str(exc)
        # Every video of every split already written or parsed now goes into videos.parquet.
        video_ids, declared = _written_video_ids(layout, [s for s in manifest_splits if s not in parsed])
        for rows in parsed.values():
            for row in rows:
                video_ids.setdefault(row.video_id, row.duration)
                declared.setdefault(row.video_id, row.video_path)
        resolved = {vid: resolve_video(adapter, vid, video_index, declared.get(vid)) for vid in video_ids}
        probes = _probe_all(layout, resolved, probe_cache, progress)
        if adapter.duration_from_probe and parsed:
            durations = {vid: p.duration for vid, p in probes.items() if p.status == "ok" and p.duration}
            for split in list(parsed):
                files = pending[split][0]
                ctx = _context(cfg, files, hashes_cache, durations)
                parsed[split] = adapter.parse(split, files, ctx)
        for split, rows in parsed.items():
            _apply_video_state(rows, resolved, probes)
            write_table_atomic(rows_to_table(rows), layout.out / f"{split}.parquet")
            summaries[split] = _summarize(split, rows)
            manifest_splits[split] = {
                "fingerprint": pending[split][1],
                "inputs": [
                    {"file": name, "sha256": hashes_cache[path]}
                    for name, path in sorted(pending[split][0].items())
                ],
                "options": cfg.options(),
                "counts": _counts(summaries[split]),
            }
        write_videos_table(layout, video_ids, resolved, probes)
        _write_json(layout.out / PROBE_CACHE, probe_cache)
        manifest = {
            "stage": "download",
            "toolkit_version": __version__,
            "schema_version": SCHEMA_VERSION,
            "corpus": cfg.corpus,
            "licence": adapter.licence,
            "homepage": adapter.homepage,
            "splits": dict(sorted(manifest_splits.items())),
            "videos": {
                "total": len(video_ids),
                "status": dict(Counter(p.status for p in probes.values())),
            },
        }
        if adapter.generated:
            manifest["synthetic"] = asdict(cfg.synthetic)
        _write_json(layout.out / MANIFEST, manifest)
    if session is not None:  # where the files came from, even when no split had to be parsed again
        manifest = _load_json(layout.out / MANIFEST) or {}
        if manifest and manifest.get("mirror") != session.record():
            manifest["mirror"] = session.record()
            _write_json(layout.out / MANIFEST, manifest)
    return DownloadResult(cfg.corpus, layout.out, [summaries[s] for s in splits], warnings)


# ---------------------------------------------------------------------------------------------
# Videos on disk


def index_video_folder(folder: Path) -> dict[str, tuple[str, int, int]]:
    """Base name -> (path relative to the folder, size, mtime_ns) for every file below it.

    Files without a known video suffix are indexed too: DiDeMo names can end in a bare dot.
    """
    index: dict[str, tuple[str, int, int]] = {}
    if not folder.is_dir():
        return index
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or name.endswith((".part", ".tmp", ".json", ".txt")):
                continue
            full = Path(dirpath) / name
            stat = full.stat()
            index.setdefault(name, (full.relative_to(folder).as_posix(), stat.st_size, stat.st_mtime_ns))
    return index


def resolve_video(
    adapter: CorpusAdapter,
    video_id: str,
    index: dict[str, tuple[str, int, int]],
    declared: str | None = None,
) -> tuple[str, bool]:
    """(relative path, found) for a video id: the first candidate name present on disk.

    ``declared`` is the path the annotation itself gives (NExT-GQA's ``1023/4010069381.mp4`` from
    its id map): its base name is tried first, and it stays the path when no file is found, so a
    table made before the videos arrive already points where they will be.
    """
    candidates = adapter.video_candidates(video_id)
    if declared:
        candidates = [PurePosixPath(declared).name, *candidates]
    for name in candidates:
        if name in index:
            return index[name][0], True
    return declared or candidates[0], False


def _probe_all(layout: DataRoot, resolved, cache: dict, progress=None) -> dict[str, ProbeResult]:
    results: dict[str, ProbeResult] = {}
    todo: list[tuple[str, Path, list]] = []
    for video_id, (rel, found) in resolved.items():
        if not found:
            results[video_id] = ProbeResult("missing")
            continue
        path = layout.videos / rel
        stat = path.stat()
        key = [stat.st_size, stat.st_mtime_ns]
        cached = cache.get(rel)
        if cached and cached[0] == key:
            results[video_id] = ProbeResult(**cached[1])
        else:
            todo.append((video_id, path, key))
    if todo:
        task = progress.add_task("probing videos", total=len(todo)) if progress else None
        probed = probe_many(
            [p for _, p, _ in todo], on_done=(lambda: progress.advance(task)) if progress else None
        )
        for (video_id, path, key), result in zip(todo, probed, strict=True):
            results[video_id] = result
            cache[path.relative_to(layout.videos).as_posix()] = [key, result.as_dict()]
    return results


def _apply_video_state(rows: list[QueryRow], resolved, probes: dict[str, ProbeResult]) -> None:
    for row in rows:
        row.video_path = resolved[row.video_id][0]
        status = probes[row.video_id].status
        if status != "ok":
            row.flags.add(f"video_{status}")


def write_videos_table(layout: DataRoot, annotated: dict[str, float], resolved, probes) -> None:
    records = []
    for video_id in sorted(annotated):
        probe = probes[video_id]
        records.append(
            {
                "video_id": video_id,
                "video_path": resolved[video_id][0],
                "status": probe.status,
                "duration_annotation": annotated[video_id],
                "duration_probe": probe.duration,
                "fps": probe.fps,
                "width": probe.width,
                "height": probe.height,
                "bytes": probe.bytes,
                "sha256": None,
                "error": probe.error,
            }
        )
    write_table_atomic(pa.Table.from_pylist(records, schema=VIDEO_SCHEMA), layout.out / "videos.parquet")


def _written_video_ids(layout: DataRoot, splits: list[str]) -> tuple[dict[str, float], dict[str, str]]:
    """Video id -> duration and video id -> path, from the tables of splits already written."""
    ids: dict[str, float] = {}
    paths: dict[str, str] = {}
    for split in splits:
        path = layout.out / f"{split}.parquet"
        if path.is_file():
            table = pq.read_table(path, columns=["video_id", "video_path", "duration"])
            for vid, video_path, duration in zip(
                table["video_id"].to_pylist(),
                table["video_path"].to_pylist(),
                table["duration"].to_pylist(),
                strict=True,
            ):
                ids.setdefault(vid, duration)
                paths.setdefault(vid, video_path)
    return ids, paths


# ---------------------------------------------------------------------------------------------
# Bookkeeping


def _annotated_video_ids(
    adapter: CorpusAdapter, inputs: dict[str, dict[str, Path]], cfg: DownloadConfig
) -> list[str]:
    """Video ids of every split that parses; a split that does not is reported later by the parse."""
    ids: set[str] = set()
    for split, files in inputs.items():
        try:
            ids.update(
                row.video_id for row in adapter.parse(split, files, ParseContext(options=cfg.options()))
            )
        except (ValidationFailed, RecordError):
            continue
    return sorted(ids)


def _context(
    cfg: DownloadConfig, files: dict[str, Path], hashes: dict[Path, str], durations=None
) -> ParseContext:
    return ParseContext(
        strict=cfg.strict,
        file_hashes={path.name: hashes[path] for path in files.values()},
        probe_durations=durations or {},
        options=cfg.options(),
    )


def _fingerprint(adapter, split, files, hashes, cfg: DownloadConfig, video_index) -> str:
    payload = {
        "toolkit": __version__,
        "schema": SCHEMA_VERSION,
        "corpus": adapter.name,
        "split": split,
        "inputs": sorted((name, hashes[path]) for name, path in files.items()),
        "options": cfg.options(),
        "videos": sorted(video_index.values()),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _summarize(split: str, rows: list[QueryRow]) -> SplitSummary:
    flags = Counter(flag for row in rows for flag in row.flags)
    videos: dict[str, set[str]] = {}
    for row in rows:
        videos.setdefault(row.video_id, set()).update(f for f in row.flags if f.startswith("video_"))
    return SplitSummary(
        split,
        queries=len(rows),
        videos=len(videos),
        videos_missing=sum("video_missing" in f for f in videos.values()),
        videos_corrupt=sum("video_corrupt" in f for f in videos.values()),
        flags=dict(sorted(flags.items())),
    )


def _counts(summary: SplitSummary) -> dict[str, Any]:
    return {
        "queries": summary.queries,
        "videos": summary.videos,
        "videos_missing": summary.videos_missing,
        "videos_corrupt": summary.videos_corrupt,
        "flags": summary.flags,
    }


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _write_json(path: Path, data: Any) -> None:
    write_json(path, data)

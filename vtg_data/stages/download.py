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
import shutil
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from vtg_data import __version__
from vtg_data.corpora import CorpusAdapter, NativeFile, ParseContext, get_adapter
from vtg_data.corpora.base import sha256_file
from vtg_data.corpora.didemo import CONSOLIDATION_RULES
from vtg_data.corpora.synthetic import SyntheticConfig, generate_synthetic
from vtg_data.fetch import (
    FetchError,
    download_url,
    extract_archive,
    find_member,
    hf_endpoint,
    hf_token,
    redact,
)
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
        """The options that change the normalized output (part of each split's fingerprint)."""
        opts: dict[str, Any] = {"strict": self.strict}
        if self.corpus == "didemo":
            opts["didemo_consolidation"] = self.didemo_consolidation
        return opts


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


class Layout:
    def __init__(self, root: Path, corpus: str):
        self.root = Path(root)
        self.raw = self.root / "raw" / corpus
        self.downloads = self.root / "downloads" / corpus
        self.videos = self.root / "videos" / corpus
        self.out = self.root / "normalized" / corpus


def download(cfg: DownloadConfig, progress=None) -> DownloadResult:
    """Fetch, parse, validate and write one corpus. See the module docstring for the layout."""
    adapter = get_adapter(cfg.corpus)
    layout = Layout(cfg.root, cfg.corpus)
    for split in cfg.splits:
        adapter.check_split(split)
    if cfg.corpus == "synthetic":
        generate_synthetic(layout.raw, layout.videos, cfg.synthetic, progress)
        present = {p.stem for p in layout.raw.glob("*.json") if p.stem in adapter.splits}
        splits = [s for s in (cfg.splits or adapter.splits) if s in present]
    else:
        splits = list(cfg.splits or adapter.splits)

    summaries: dict[str, SplitSummary] = {s: SplitSummary(s) for s in splits}
    inputs: dict[str, dict[str, Path]] = {}
    session = None
    if cfg.mirror:
        from vtg_data.mirrors import MirrorSession

        session = MirrorSession.open(cfg.mirror, cfg.revision, layout.downloads / "hub-cache")
    for split in splits:
        try:
            inputs[split] = obtain_split_files(adapter, split, cfg, layout, progress, session)
        except (FetchError, RecordError, OSError) as exc:
            summaries[split].error = str(exc)

    warnings: list[str] = []
    if cfg.videos:
        try:
            if session is not None:
                session.fetch_videos(adapter, layout.videos, progress)
            else:
                warnings += fetch_videos(
                    adapter, cfg, layout, _annotated_video_ids(adapter, inputs, cfg), progress
                )
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
        if cfg.corpus == "synthetic":
            manifest["synthetic"] = asdict(cfg.synthetic)
        _write_json(layout.out / MANIFEST, manifest)
    if session is not None:  # where the files came from, even when no split had to be parsed again
        manifest = _load_json(layout.out / MANIFEST) or {}
        if manifest and manifest.get("mirror") != session.record():
            manifest["mirror"] = session.record()
            _write_json(layout.out / MANIFEST, manifest)
    return DownloadResult(cfg.corpus, layout.out, [summaries[s] for s in splits], warnings)


# ---------------------------------------------------------------------------------------------
# Native files


def obtain_split_files(
    adapter: CorpusAdapter, split: str, cfg: DownloadConfig, layout: Layout, progress=None, session=None
) -> dict[str, Path]:
    """Each native file of the split, fetched or copied into ``raw/`` if not there yet; with a
    mirror session, always the mirror commit's copy."""
    files: dict[str, Path] = {}
    for native in adapter.native_files(split):
        try:
            if session is not None:
                files[native.name] = session.native_file(native, layout.raw / native.name)
                continue
            files[native.name] = obtain_native_file(native, cfg, layout, progress)
        except FetchError:
            if native.optional:
                continue
            raise
    if not files:
        raise FetchError(f"none of the files of split {split} could be obtained")
    return files


def obtain_native_file(native: NativeFile, cfg: DownloadConfig, layout: Layout, progress=None) -> Path:
    dest = layout.raw / native.name
    expected = native.accepted_sums if cfg.verify else ()
    if dest.is_file() and (not expected or sha256_file(dest) in expected):
        return dest
    if cfg.corpus == "synthetic":
        raise FetchError(f"{dest}: the synthetic corpus file is missing; rerun `vtg-data download synthetic`")
    if cfg.from_dir is not None:
        return _copy_from_local(native, Path(cfg.from_dir), dest, expected, layout)
    attempts = []
    for remote in native.remotes:
        url = remote.resolved_url(hf_endpoint())
        token = hf_token() if remote.hf_repo else None
        try:
            if remote.member:
                archive = layout.downloads / PurePosixPath(url.split("?")[0]).name
                if not archive.is_file():
                    download_url(
                        url, archive, sha256=remote.sha256, on_progress=_progress_cb(progress, archive.name)
                    )
                _extract_member(archive, remote.member, dest, expected)
            else:
                download_url(
                    url, dest, sha256=expected, token=token, on_progress=_progress_cb(progress, native.name)
                )
            return dest
        except FetchError as exc:
            attempts.append(f"  {redact(url)}: {exc}")
    where = "\n".join(attempts) or "  (no download location is known for it)"
    raise FetchError(f"could not obtain {native.name}:\n{where}")


def _copy_from_local(
    native: NativeFile, folder: Path, dest: Path, expected: tuple[str, ...], layout: Layout
) -> Path:
    direct = folder / native.name
    found = direct if direct.is_file() else next(iter(sorted(folder.rglob(native.name))), None)
    if found is not None:
        if expected and sha256_file(found) not in expected:
            raise FetchError(
                f"{found}: checksum mismatch: expected sha256 {' or '.join(expected)}, got {sha256_file(found)} "
                "(pass --no-verify to accept a different release)"
            )
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.tmp")
        shutil.copyfile(found, tmp)
        tmp.replace(dest)
        return dest
    for remote in native.remotes:  # an official archive that holds the file
        if remote.member:
            archive = folder / PurePosixPath(remote.resolved_url().split("?")[0]).name
            if archive.is_file():
                _extract_member(archive, remote.member, dest, expected)
                return dest
    raise FetchError(f"{native.name} is not in {folder} (looked for the file and its archives)")


def _extract_member(archive: Path, member: str, dest: Path, expected: tuple[str, ...]) -> None:
    target = dest.parent / f".extract-{dest.name}"
    shutil.rmtree(target, ignore_errors=True)
    wanted_name = PurePosixPath(member)
    try:
        written = extract_archive(
            archive, target, wanted=lambda rel: rel == wanted_name or rel.name == wanted_name.name
        )
        match = find_member([p.relative_to(target) for p in written], member)
        if match is None:
            raise FetchError(f"{archive.name} does not contain {member}")
        source = target / match
        if expected and sha256_file(source) not in expected:
            raise FetchError(
                f"{archive.name}:{member}: checksum mismatch: expected sha256 {' or '.join(expected)}"
            )
        source.replace(dest)
    finally:
        shutil.rmtree(target, ignore_errors=True)


def _progress_cb(progress, label: str):
    if progress is None:
        return None
    task = None

    def update(done: int, total: int | None) -> None:
        nonlocal task
        if task is None:
            task = progress.add_task(f"downloading {label}", total=total)
        progress.update(task, completed=done, total=total)

    return update


# ---------------------------------------------------------------------------------------------
# Videos


def fetch_videos(
    adapter: CorpusAdapter, cfg: DownloadConfig, layout: Layout, video_ids: list[str], progress=None
) -> list[str]:
    """Fetch the first video source that works into ``videos/<corpus>/``; returns warnings.

    Archive sources are downloaded (resumable) and extracted once (a marker records it). Per-video
    sources fetch each missing file; a video that cannot be fetched is reported and later counted
    as missing, it does not stop the run.
    """
    if cfg.corpus == "synthetic":
        return []
    problems = []
    for source in adapter.video_sources:
        try:
            if source.per_video:
                return _fetch_per_video(adapter, cfg, layout, video_ids, progress)
            if not source.parts:
                problems.append(f"  {source.description}: {source.note or 'no direct download'}")
                continue
            _fetch_archives(source, cfg, layout, progress)
            return []
        except FetchError as exc:
            problems.append(f"  {source.description}: {exc}")
    raise FetchError(f"could not fetch the {cfg.corpus} videos:\n" + "\n".join(problems))


def _fetch_archives(source, cfg: DownloadConfig, layout: Layout, progress=None) -> None:
    marker = layout.downloads / f".done-{hashlib.sha256(source.description.encode()).hexdigest()[:12]}"
    if marker.is_file():
        return
    parts = []
    for remote in source.parts:
        url = remote.resolved_url(hf_endpoint())
        name = PurePosixPath(url.split("?")[0]).name
        local = Path(cfg.from_dir) / name if cfg.from_dir else None
        if local is not None and local.is_file():
            parts.append(local)
            continue
        dest = layout.downloads / name
        if not dest.is_file():
            token = hf_token() if remote.hf_repo else None
            download_url(
                url, dest, sha256=remote.sha256, token=token, on_progress=_progress_cb(progress, name)
            )
        parts.append(dest)
    if all(p.name.endswith(".zip") for p in parts):
        for part in parts:
            extract_archive(part, layout.videos)
    else:
        extract_archive(parts, layout.videos)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(source.description)


def _fetch_per_video(
    adapter, cfg: DownloadConfig, layout: Layout, video_ids: list[str], progress=None
) -> list[str]:
    urls = adapter.video_urls(
        sorted(video_ids), lambda native: obtain_native_file(native, cfg, layout, progress)
    )
    if not urls:
        raise FetchError("no download URL is known for any of the videos")
    todo = [
        (url, layout.videos / name) for url, name in urls.values() if not (layout.videos / name).is_file()
    ]
    task = progress.add_task("downloading videos", total=len(todo)) if progress and todo else None
    failures: list[str] = []

    def fetch(item):
        url, dest = item
        try:
            download_url(url, dest, retries=2)
        except FetchError as exc:
            failures.append(str(exc))
        if task is not None:
            progress.advance(task)

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(fetch, todo))
    warnings = []
    if failures:
        warnings.append(f"{len(failures)} video(s) could not be downloaded, e.g. {sorted(failures)[0]}")
    unknown = len(video_ids) - len(urls)
    if unknown:
        warnings.append(f"{unknown} video(s) have no known download URL")
    return warnings


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


def _probe_all(layout: Layout, resolved, cache: dict, progress=None) -> dict[str, ProbeResult]:
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


def write_videos_table(layout: Layout, annotated: dict[str, float], resolved, probes) -> None:
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


def _written_video_ids(layout: Layout, splits: list[str]) -> tuple[dict[str, float], dict[str, str]]:
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
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)

"""The videos on disk of a corpus being normalized: which file holds each video id (the path the
annotation gives is kept when none does), each file probed once (results cached by size and
modification time), the rows flagged ``video_missing``/``video_corrupt``, and ``videos.parquet``."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import pyarrow as pa
import pyarrow.parquet as pq

from vtg_data.corpora import CorpusAdapter
from vtg_data.data_root import DataRoot
from vtg_data.schema import VIDEO_SCHEMA, QueryRow, write_table_atomic
from vtg_data.video.probe import ProbeResult, probe_many


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


def probe_all(layout: DataRoot, resolved, cache: dict, progress=None) -> dict[str, ProbeResult]:
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
        if (
            cached and cached[0] == key and "codec" in cached[1]
        ):  # probes of an older version lack the stream facts
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


def apply_video_state(rows: list[QueryRow], resolved, probes: dict[str, ProbeResult]) -> None:
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
                "codec": probe.codec,
                "container": probe.container,
                "rotation": probe.rotation,
                "start_offset": probe.start_offset,
                "variable_rate": probe.variable_rate,
            }
        )
    write_table_atomic(pa.Table.from_pylist(records, schema=VIDEO_SCHEMA), layout.out / "videos.parquet")


def written_video_ids(layout: DataRoot, splits: list[str]) -> tuple[dict[str, float], dict[str, str]]:
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

"""Frames for many queries: each video decoded once, optionally kept in an on-disk cache.

Queries on the same video share one decode (grounding corpora have 3-20 queries per video). The
cache key is the video's identity (resolved path, size, modification time), the sampling policy
and the decoder asked for (``auto`` included), so a changed file or policy never returns stale
frames; a cached clip keeps the backend that actually decoded it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from vtg_data.video.decode import DecodedClip, DecodeError, sample_frames
from vtg_data.video.sampling import SamplingPlan, SamplingPolicy

# Bumped when what a clip holds changes: 2 = player times from the stream's packets, upright frames.
CLIP_FORMAT = "clip-2"


def video_identity(path: Path) -> str:
    stat = path.stat()
    return f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"


class FrameCache:
    """Decoded clips as ``.npz`` files under ``folder``, written atomically, shared by every stage.

    Evaluation, difficulty scoring and training key a clip the same way (the file's identity, the
    sampling policy with the model's patch grid, the decoder), so a video one stage decoded is
    read back by the next. ``max_bytes`` bounds the folder: when a write takes it past the bound,
    the least recently used clips (a hit refreshes a file's modification time) are deleted down
    to 90% of it. ``hits``/``misses`` count this process's lookups.
    """

    def __init__(self, folder: str | Path, max_bytes: int | None = None):
        self.folder = Path(folder)
        self.max_bytes = max_bytes
        self.hits = 0
        self.misses = 0
        self._size: int | None = None  # bytes under the folder, measured once, then tracked

    def _file(self, path: Path, policy: SamplingPolicy, backend: str) -> Path:
        key = hashlib.sha256(
            f"{video_identity(path)}|{policy.key()}|{backend}|{CLIP_FORMAT}".encode()
        ).hexdigest()
        return self.folder / key[:2] / f"{key}.npz"

    def get(self, path: Path, policy: SamplingPolicy, backend: str) -> DecodedClip | None:
        file = self._file(path, policy, backend)
        try:
            data = np.load(file)
        except (FileNotFoundError, OSError, ValueError):  # absent, evicted meanwhile, or torn
            self.misses += 1
            return None
        with data:
            fields = json.loads(str(data["plan"]))
            fields["indices"], fields["timestamps"] = tuple(fields["indices"]), tuple(fields["timestamps"])
            plan = SamplingPlan(**fields)
            served = str(data["backend"]) if "backend" in data.files else backend
            clip = DecodedClip(data["frames"], data["timestamps"], float(data["fps"]), plan, served)
        self.hits += 1
        with contextlib.suppress(OSError):  # evicted meanwhile by another process
            os.utime(file)  # recently used: evicted last
        return clip

    def put(self, path: Path, policy: SamplingPolicy, clip: DecodedClip, asked: str | None = None) -> None:
        """Keep ``clip`` under the decoder that was asked for (``auto``, or the backend itself)."""
        file = self._file(path, policy, asked or clip.backend)
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp = file.with_name(f".{file.stem}.{os.getpid()}.tmp.npz")
        np.savez(
            tmp, frames=clip.frames, timestamps=clip.timestamps, fps=clip.fps,
            plan=json.dumps(clip.plan.__dict__), backend=clip.backend,
        )  # fmt: skip
        written = tmp.stat().st_size
        tmp.replace(file)
        if self.max_bytes is not None:
            self._size = self._measure() if self._size is None else self._size + written
            if self._size > self.max_bytes:
                self._evict(keep=file)

    def _entries(self) -> list[tuple[float, int, Path]]:
        entries = []
        for file in self.folder.glob("*/*.npz"):
            try:
                stat = file.stat()
            except FileNotFoundError:
                continue
            entries.append((stat.st_mtime, stat.st_size, file))
        return entries

    def _measure(self) -> int:
        return sum(size for _, size, _ in self._entries())

    def _evict(self, keep: Path) -> None:
        """Delete the least recently used clips until the folder is at 90% of its bound."""
        entries = sorted(self._entries())
        total = sum(size for _, size, _ in entries)
        target = 0.9 * self.max_bytes
        for _, size, file in entries:
            if total <= target:
                break
            if file == keep:
                continue
            file.unlink(missing_ok=True)
            total -= size
        self._size = total


def load_clips(
    paths: Iterable[str | Path],
    policy: SamplingPolicy,
    *,
    backend: str = "auto",
    cache: FrameCache | None = None,
    timeout: float | None = 120.0,
) -> Iterator[tuple[Path, DecodedClip | DecodeError]]:
    """Yield (path, clip or the error) once per distinct video, in first-seen order.

    A bad video yields its DecodeError instead of stopping the iteration, so the caller can mark
    it failed and go on.
    """
    seen: set[Path] = set()
    for raw in paths:
        path = Path(raw)
        if path in seen:
            continue
        seen.add(path)
        try:
            clip = cache.get(path, policy, backend) if cache and path.is_file() else None
            if clip is None:
                clip = sample_frames(path, policy, backend=backend, timeout=timeout)
                if cache:
                    cache.put(path, policy, clip, asked=backend)
        except DecodeError as exc:
            yield path, exc
            continue
        yield path, clip

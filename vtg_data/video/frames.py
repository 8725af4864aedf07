"""Frames for many queries: each video decoded once, optionally kept in an on-disk cache.

Queries on the same video share one decode (grounding corpora have 3-20 queries per video). The
cache key is the video's identity (resolved path, size, modification time), the sampling policy
and the backend, so a changed file or policy never returns stale frames.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from vtg_data.video.decode import DecodedClip, DecodeError, sample_frames
from vtg_data.video.sampling import SamplingPlan, SamplingPolicy


def video_identity(path: Path) -> str:
    stat = path.stat()
    return f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"


class FrameCache:
    """Decoded clips as ``.npz`` files under ``folder``, written atomically."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def _file(self, path: Path, policy: SamplingPolicy, backend: str) -> Path:
        key = hashlib.sha256(f"{video_identity(path)}|{policy.key()}|{backend}".encode()).hexdigest()
        return self.folder / key[:2] / f"{key}.npz"

    def get(self, path: Path, policy: SamplingPolicy, backend: str) -> DecodedClip | None:
        file = self._file(path, policy, backend)
        if not file.is_file():
            return None
        with np.load(file) as data:
            fields = json.loads(str(data["plan"]))
            fields["indices"], fields["timestamps"] = tuple(fields["indices"]), tuple(fields["timestamps"])
            plan = SamplingPlan(**fields)
            return DecodedClip(data["frames"], data["timestamps"], float(data["fps"]), plan, backend)

    def put(self, path: Path, policy: SamplingPolicy, clip: DecodedClip) -> None:
        file = self._file(path, policy, clip.backend)
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp = file.with_name(f".{file.stem}.{os.getpid()}.tmp.npz")
        np.savez(
            tmp, frames=clip.frames, timestamps=clip.timestamps, fps=clip.fps,
            plan=json.dumps(clip.plan.__dict__),
        )  # fmt: skip
        tmp.replace(file)


def load_clips(
    paths: Iterable[str | Path],
    policy: SamplingPolicy,
    *,
    backend: str = "decord",
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
                    cache.put(path, policy, clip)
        except DecodeError as exc:
            yield path, exc
            continue
        yield path, clip

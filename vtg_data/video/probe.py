"""ffprobe a media file into the facts ``videos.parquet`` records: status, the player's length,
rate and upright size, codec, container, rotation, start offset, whether the rate varies.

A probe never raises for a bad file: it returns status ``corrupt`` with ffprobe's own words, so one
broken video is counted and reported instead of stopping a whole corpus.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from vtg_data.video.stream import StreamError, read_stream


@dataclass(frozen=True)
class ProbeResult:
    status: str
    duration: float | None = None
    fps: float | None = None
    width: int | None = None  # displayed (after the rotation)
    height: int | None = None
    bytes: int | None = None
    error: str | None = None
    codec: str | None = None
    container: str | None = None
    rotation: int | None = None  # clockwise degrees a player turns the stored picture
    start_offset: float | None = None  # the first frame's presentation time (0 for most files)
    variable_rate: bool | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def probe_video(path: Path, timeout: float = 30.0) -> ProbeResult:
    if not path.is_file():
        return ProbeResult("missing")
    size = path.stat().st_size
    try:
        facts = read_stream(path, timeout=timeout)
    except StreamError as exc:
        return ProbeResult("corrupt", bytes=size, error=str(exc)[:500])
    except Exception as exc:  # ffprobe missing or killed: recorded, not fatal
        return ProbeResult("corrupt", bytes=size, error=f"{type(exc).__name__}: {exc}"[:500])
    if not facts.duration > 0:
        return ProbeResult("corrupt", bytes=size, error=f"duration {facts.duration}")
    return ProbeResult(
        "ok",
        duration=facts.duration,
        fps=facts.fps,
        width=facts.width,
        height=facts.height,
        bytes=size,
        codec=facts.codec,
        container=facts.container,
        rotation=facts.rotation,
        start_offset=facts.start,
        variable_rate=facts.variable_rate,
    )


def probe_many(paths: list[Path], on_done=None, workers: int | None = None) -> list[ProbeResult]:
    """Probe in parallel threads (ffprobe is a subprocess, so threads overlap fully)."""
    workers = workers or min(8, (os.cpu_count() or 2) * 2)
    results: list[ProbeResult] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for result in pool.map(probe_video, paths):
            results.append(result)
            if on_done:
                on_done()
    return results

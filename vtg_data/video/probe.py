"""ffprobe a media file into the facts ``videos.parquet`` records.

A probe never raises for a bad file: it returns status ``corrupt`` with ffprobe's own words, so one
broken video is counted and reported instead of stopping a whole corpus.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path


@dataclass(frozen=True)
class ProbeResult:
    status: str
    duration: float | None = None
    fps: float | None = None
    width: int | None = None
    height: int | None = None
    bytes: int | None = None
    error: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def _rate(text: str | None) -> float | None:
    try:
        value = float(Fraction(text)) if text else None
    except (ValueError, ZeroDivisionError):
        return None
    return value or None


def probe_video(path: Path, timeout: float = 30.0) -> ProbeResult:
    import ffmpeg

    if not path.is_file():
        return ProbeResult("missing")
    size = path.stat().st_size
    try:
        info = ffmpeg.probe(str(path), timeout=timeout)
    except ffmpeg.Error as exc:
        message = exc.stderr.decode(errors="replace").strip().splitlines()
        return ProbeResult("corrupt", bytes=size, error=(message[-1] if message else "ffprobe failed")[:500])
    except Exception as exc:  # timeout or ffprobe missing: recorded, not fatal
        return ProbeResult("corrupt", bytes=size, error=f"{type(exc).__name__}: {exc}"[:500])
    video = next((s for s in info.get("streams", []) if s.get("codec_type") == "video"), None)
    if video is None:
        return ProbeResult("corrupt", bytes=size, error="no video stream")
    duration = info.get("format", {}).get("duration") or video.get("duration")
    try:
        seconds = float(duration)
    except (TypeError, ValueError):
        return ProbeResult("corrupt", bytes=size, error="no duration")
    if not seconds > 0:
        return ProbeResult("corrupt", bytes=size, error=f"duration {seconds}")
    return ProbeResult(
        "ok",
        duration=seconds,
        fps=_rate(video.get("avg_frame_rate")) or _rate(video.get("r_frame_rate")),
        width=video.get("width"),
        height=video.get("height"),
        bytes=size,
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

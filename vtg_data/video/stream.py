"""The facts of a video stream as a player sees them, from one ffprobe call (no decoding).

- Player time: a frame's time is its presentation time minus the stream's first presentation
  time. Re-muxed downloads start at 2 s or later, and annotations count from the first frame.
- Every frame's time, from the packets' presentation stamps, sorted: a variable frame rate
  (10 fps, then 30 fps) is planned on these times, never on index / fps.
- Rotation: phone footage is stored as the sensor saw it, with a display matrix that turns it
  upright. ``rotation`` is the clockwise turn a player applies (ffmpeg's convention: the matrix's
  counter-clockwise angle, negated), and ``width``/``height`` are the displayed ones.
- Codec, container, start offset and whether the rate varies go into ``videos.parquet``.
"""

from __future__ import annotations

import json
import statistics
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path


class StreamError(RuntimeError):
    """ffprobe cannot read the file, or it has no usable video stream."""


@dataclass(frozen=True)
class StreamFacts:
    duration: float  # player length: the last frame's time plus one frame
    fps: float  # average rate: frames / duration
    num_frames: int
    width: int  # displayed (after the rotation)
    height: int
    rotation: int = 0  # clockwise degrees a player turns the decoded picture: 0, 90, 180, 270
    start: float = 0.0  # presentation time of the first frame in the file's clock
    variable_rate: bool = False
    codec: str = ""
    container: str = ""
    frame_times: tuple[float, ...] | None = None  # player time of every frame, in presentation order


def read_stream(path: str | Path, timeout: float = 60.0) -> StreamFacts:
    """One ffprobe of the first video stream: its header, its packets' stamps, the container."""
    command = [
        "ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
        "stream=codec_name,width,height,avg_frame_rate,r_frame_rate,nb_frames,duration,start_time"
        ":stream_side_data=rotation:stream_tags=rotate:format=format_name,duration,start_time"
        ":packet=pts_time,dts_time",
        "-of", "json", str(path),
    ]  # fmt: skip
    try:
        done = subprocess.run(command, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise StreamError(f"ffprobe timed out after {timeout:.0f} s") from exc
    if done.returncode != 0:
        lines = done.stderr.decode(errors="replace").strip().splitlines()
        raise StreamError(f"not a readable media file ({lines[-1] if lines else 'ffprobe failed'})")
    info = json.loads(done.stdout or b"{}")
    streams = info.get("streams") or []
    if not streams:
        raise StreamError("no video stream")
    return facts_from_probe(streams[0], info.get("format") or {}, info.get("packets") or [])


def facts_from_probe(stream: dict, container: dict, packets: list[dict]) -> StreamFacts:
    stamps = sorted(t for t in (_stamp(p) for p in packets) if t is not None)
    header_fps = _rate(stream.get("avg_frame_rate")) or _rate(stream.get("r_frame_rate"))
    rotation = _rotation(stream)
    width, height = int(stream.get("width") or 0), int(stream.get("height") or 0)
    if rotation in (90, 270):
        width, height = height, width
    common = {"width": width, "height": height, "rotation": rotation, "codec": stream.get("codec_name") or "",
              "container": container.get("format_name") or ""}  # fmt: skip
    if len(stamps) >= 2:
        start = stamps[0]
        times = tuple(t - start for t in stamps)
        deltas = [b - a for a, b in zip(times, times[1:], strict=False) if b > a]
        step = statistics.median(deltas) if deltas else 1 / (header_fps or 25)
        duration = times[-1] + step
        # a rate that changes: gaps well beyond the stamps' rounding (Matroska keeps milliseconds)
        variable = bool(deltas) and max(deltas) > 1.5 * min(deltas) and max(deltas) - min(deltas) > 0.002
        _check_whole(stream, len(times), duration)
        return StreamFacts(duration, len(times) / duration, len(times), start=start, variable_rate=variable,
                           frame_times=times, **common)  # fmt: skip
    duration = _float(stream.get("duration")) or _float(container.get("duration"))
    if not header_fps or not duration:
        raise StreamError(
            f"stream has no usable frame rate or duration (fps={header_fps}, duration={duration})"
        )
    start = _float(stream.get("start_time")) or 0.0
    if stream.get("duration") is None:  # the container's length counts from its own start
        duration -= start - (_float(container.get("start_time")) or 0.0)
    frames = (
        int(stream["nb_frames"])
        if str(stream.get("nb_frames", "")).isdigit()
        else round(duration * header_fps)
    )
    return StreamFacts(duration, header_fps, max(frames, 1), start=start, **common)


def _check_whole(stream: dict, frames: int, duration: float) -> None:
    """A truncated download: the stream's header promises frames its packets do not hold."""
    promised = int(stream["nb_frames"]) if str(stream.get("nb_frames", "")).isdigit() else None
    length = _float(stream.get("duration"))
    if promised and frames < 0.9 * promised - 1 or length and duration < 0.9 * length - 0.5:
        raise StreamError(
            f"truncated: the stream's header says {length or 0:.2f} s ({promised or '?'} frames), "
            f"the file holds {duration:.2f} s ({frames} frames)"
        )


def _rotation(stream: dict) -> int:
    """The clockwise turn a player applies: the display matrix's counter-clockwise angle negated
    (ffmpeg's own rule), or a legacy ``rotate`` tag (clockwise already)."""
    for side in stream.get("side_data_list") or []:
        if "rotation" in side:
            return round(-float(side["rotation"]) / 90) % 4 * 90
    tag = (stream.get("tags") or {}).get("rotate")
    return round(float(tag) / 90) % 4 * 90 if tag not in (None, "") else 0


def _stamp(packet: dict) -> float | None:
    """A packet's presentation time (its decoding time where a container keeps no other)."""
    pts = _float(packet.get("pts_time"))
    return pts if pts is not None else _float(packet.get("dts_time"))


def _rate(text) -> float | None:
    try:
        value = float(Fraction(text)) if text else None
    except (ValueError, ZeroDivisionError):
        return None
    return value or None


def _float(text) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None

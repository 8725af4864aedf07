"""Which frames a model sees, and at what size: a policy turned into an exact plan.

The plan is computed from the stream's facts (player length, frame count, every frame's player
time, displayed size) before any decoding, so every backend decodes the same frames. Frame ``i``
is the one showing at ``i * duration / n`` (the start of the i-th of ``n`` equal slices, so the
first frame is at 0 s), found among the frames' real times, so a variable frame rate is planned
on time, not on index / fps; the model must be told ``plan.fps = n / duration``, the rate the
frames were actually taken at. A model that counts time as ``frame index / fps`` (Qwen2.5-VL's
temporal positions) then sees each frame at its true time, within one native frame; a wrong fps
silently rescales every timestamp the model answers with.
"""

from __future__ import annotations

import hashlib
import json
import math
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class SamplingPolicy:
    """How to sample a video for a vision-language model (defaults follow Qwen2.5-VL)."""

    fps: float = 2.0
    min_frames: int = 4
    max_frames: int = 128
    frame_multiple: int = 2  # Qwen-VL packs 2 frames per temporal patch
    patch: int = 28  # frame sides snap to a multiple of this (patch 14 x spatial merge 2)
    min_pixels: int = 16 * 28 * 28
    max_pixels: int = 768 * 28 * 28  # per frame
    total_pixels: int | None = None  # budget for the whole clip; lowers the per-frame cap

    def __post_init__(self) -> None:
        if not self.fps > 0:
            raise ValueError(f"fps must be positive, got {self.fps}")
        if not 1 <= self.min_frames <= self.max_frames:
            raise ValueError("need 1 <= min_frames <= max_frames")
        if self.frame_multiple < 1 or self.patch < 1:
            raise ValueError("frame_multiple and patch must be >= 1")
        if not 0 < self.min_pixels <= self.max_pixels:
            raise ValueError("need 0 < min_pixels <= max_pixels")
        if self.total_pixels is not None and self.total_pixels < self.min_pixels:
            raise ValueError("total_pixels must be at least min_pixels")

    def key(self) -> str:
        """A stable short hash of every field, for caches and provenance."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class SamplingPlan:
    indices: tuple[int, ...]
    timestamps: tuple[float, ...]  # planned presentation times; decoders report the real ones
    fps: float  # frames per second of the sample (n / (native frames / native fps)): tell the model this
    width: int
    height: int
    duration: float
    native_fps: float = 0.0
    native_frames: int = 0
    start: float = 0.0  # the first frame's time in the file's clock; plan times are player times
    rotation: int = 0  # clockwise turn that makes the decoded picture upright (width/height are upright)
    variable_rate: bool = False


def frame_count(policy: SamplingPolicy, duration: float, num_frames: int) -> int:
    wanted = round(duration * policy.fps)
    n = min(max(wanted, policy.min_frames), policy.max_frames, num_frames)
    if n >= policy.frame_multiple:
        n -= n % policy.frame_multiple
    return max(n, 1)


def fit_resolution(height: int, width: int, policy: SamplingPolicy, n_frames: int) -> tuple[int, int]:
    """(height, width) as multiples of ``patch`` inside the per-frame pixel budget, aspect kept."""
    cap = policy.max_pixels
    if policy.total_pixels is not None:
        cap = max(min(cap, policy.total_pixels // max(n_frames, 1)), policy.min_pixels)
    p = policy.patch
    h = max(p, round(height / p) * p)
    w = max(p, round(width / p) * p)
    if h * w > cap:
        beta = math.sqrt(height * width / cap)
        h = max(p, math.floor(height / beta / p) * p)
        w = max(p, math.floor(width / beta / p) * p)
    elif h * w < policy.min_pixels:
        beta = math.sqrt(policy.min_pixels / (height * width))
        h = math.ceil(height * beta / p) * p
        w = math.ceil(width * beta / p) * p
    return h, w


def plan_sampling(
    policy: SamplingPolicy,
    *,
    duration: float,
    native_fps: float,
    num_frames: int,
    width: int,
    height: int,
    frame_times: Sequence[float] | None = None,
    start: float = 0.0,
    rotation: int = 0,
    variable_rate: bool = False,
) -> SamplingPlan:
    """The frames to take. With ``frame_times`` (every frame's player time, from the stream) the
    frame showing at each target time is looked up; without, the rate is taken as constant."""
    if not (duration > 0 and native_fps > 0 and num_frames > 0 and width > 0 and height > 0):
        raise ValueError(
            f"cannot plan sampling for duration={duration}, fps={native_fps}, frames={num_frames}, size={width}x{height}"
        )
    n = frame_count(policy, duration, num_frames)
    if frame_times is not None and len(frame_times) == num_frames:
        span = duration  # the player's length: the last frame's time plus one frame
        times = list(frame_times)
    else:
        # Positions and the reported rate use the frames' own time span (frame count / fps): that is
        # how a processor converts indices back to seconds, so both sides agree exactly.
        span = num_frames / native_fps
        times = None
    indices = []
    for i in range(n):
        target = i * span / n
        if times is not None:
            index = max(0, bisect_right(times, target + 1e-6) - 1)  # the frame on screen at the target
        else:
            index = min(num_frames - 1, math.floor(target * native_fps + 1e-9))
        if indices and index <= indices[-1]:  # very short videos: never repeat a frame
            index = min(num_frames - 1, indices[-1] + 1)
        indices.append(index)
    h, w = fit_resolution(height, width, policy, n)
    return SamplingPlan(
        indices=tuple(indices),
        timestamps=tuple(times[i] if times is not None else i / native_fps for i in indices),
        fps=n / span,
        width=w,
        height=h,
        duration=span if times is not None else duration,
        native_fps=native_fps,
        native_frames=num_frames,
        start=start,
        rotation=rotation,
        variable_rate=variable_rate,
    )

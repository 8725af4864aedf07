"""Decode the frames of a sampling plan with one of three backends behind one function.

``sample_frames(path, policy, backend=...)`` returns a ``DecodedClip``: frames (T, H, W, 3) uint8
resized inside the decoder, the presentation time of every frame as the decoder reports it, and
the sampling fps the model must be told. Backends: ``decord`` (default), ``torchcodec``, ``ffmpeg``
(a subprocess, no Python ABI involved).

A broken file never hangs or crashes a run: the stream is probed first (zero-byte and non-video
files fail there with a clear message), and decoding runs in a child process that is killed after
``timeout`` seconds (decord is known to hang on some files). Every failure is a ``DecodeError``
that names the file.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from vtg_data.video.sampling import SamplingPlan, SamplingPolicy, plan_sampling

BACKENDS = ("decord", "torchcodec", "ffmpeg")


class DecodeError(RuntimeError):
    def __init__(self, path: str | Path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


@dataclass(frozen=True)
class StreamInfo:
    duration: float
    fps: float
    num_frames: int
    width: int
    height: int


@dataclass
class DecodedClip:
    frames: np.ndarray  # (T, H, W, 3) uint8
    timestamps: np.ndarray  # (T,) float64 seconds, as decoded
    fps: float  # sampling fps: what the model is told
    plan: SamplingPlan
    backend: str

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])


def stream_info(path: str | Path, timeout: float = 30.0) -> StreamInfo:
    """Facts about the first video stream, from ffprobe; a clear DecodeError for unusable files."""
    path = Path(path)
    if not path.is_file():
        raise DecodeError(path, "file not found")
    if path.stat().st_size == 0:
        raise DecodeError(path, "file is empty (0 bytes)")
    command = [
        "ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
        "stream=width,height,avg_frame_rate,r_frame_rate,nb_frames,duration:format=duration",
        "-of", "json", str(path),
    ]  # fmt: skip
    try:
        done = subprocess.run(command, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise DecodeError(path, f"ffprobe timed out after {timeout:.0f} s") from exc
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip().splitlines()
        raise DecodeError(path, f"not a readable media file ({message[-1] if message else 'ffprobe failed'})")
    info = json.loads(done.stdout or b"{}")
    streams = info.get("streams") or []
    if not streams:
        raise DecodeError(path, "no video stream")
    stream = streams[0]
    fps = _rate(stream.get("avg_frame_rate")) or _rate(stream.get("r_frame_rate"))
    duration = _float(info.get("format", {}).get("duration")) or _float(stream.get("duration"))
    if not fps or not duration:
        raise DecodeError(
            path, f"stream has no usable frame rate or duration (fps={fps}, duration={duration})"
        )
    frames = int(stream["nb_frames"]) if str(stream.get("nb_frames", "")).isdigit() else round(duration * fps)
    return StreamInfo(duration, fps, max(frames, 1), int(stream["width"]), int(stream["height"]))


def sample_frames(
    path: str | Path,
    policy: SamplingPolicy,
    *,
    backend: str = "decord",
    timeout: float | None = 120.0,
    info: StreamInfo | None = None,
) -> DecodedClip:
    """Plan and decode one video's frames. ``timeout=None`` decodes in this process."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown decode backend {backend!r}; choose one of {BACKENDS}")
    path = Path(path)
    info = info or stream_info(path)
    plan = plan_sampling(
        policy, duration=info.duration, native_fps=info.fps, num_frames=info.num_frames,
        width=info.width, height=info.height,
    )  # fmt: skip
    decode = _DECODERS[backend]
    if backend == "ffmpeg" or timeout is None:
        frames, timestamps = decode(str(path), plan, timeout)
    else:
        frames, timestamps = _isolated(decode, str(path), plan, timeout)
    if frames.shape != (len(plan.indices), plan.height, plan.width, 3):
        raise DecodeError(
            path,
            f"decoded {frames.shape[0]} frames of {frames.shape[1:]} but the plan asked for "
            f"{len(plan.indices)} of {(plan.height, plan.width, 3)} (truncated file?)",
        )
    return DecodedClip(frames, np.asarray(timestamps, dtype=np.float64), plan.fps, plan, backend)


# ---------------------------------------------------------------------------------------------
# Backends: (path, plan, timeout) -> (frames, timestamps)


def _decode_decord(path: str, plan: SamplingPlan, timeout: float | None):
    import decord

    try:
        reader = decord.VideoReader(path, width=plan.width, height=plan.height, num_threads=0)
        if max(plan.indices) >= len(reader):
            raise DecodeError(
                path, f"frame {max(plan.indices)} requested but only {len(reader)} decodable (truncated?)"
            )
        frames = reader.get_batch(list(plan.indices)).asnumpy()
        timestamps = reader.get_frame_timestamp(list(plan.indices))[:, 0]
    except DecodeError:
        raise
    except Exception as exc:  # decord raises its own DECORDError types
        raise DecodeError(path, f"decord failed: {exc}") from exc
    return frames, timestamps


def _decode_torchcodec(path: str, plan: SamplingPlan, timeout: float | None):
    from torchcodec.decoders import VideoDecoder
    from torchvision.transforms import v2

    try:
        decoder = VideoDecoder(
            path,
            dimension_order="NHWC",
            seek_mode="approximate",
            num_ffmpeg_threads=0,
            transforms=[v2.Resize((plan.height, plan.width))],
        )
        batch = decoder.get_frames_at(list(plan.indices))
    except Exception as exc:
        raise DecodeError(path, f"torchcodec failed: {exc}") from exc
    return batch.data.numpy(), batch.pts_seconds.numpy()


_PTS = re.compile(rb"n:\s*\d+\s+pts:\s*-?\d+\s+pts_time:([-0-9.e]+)")


def _decode_ffmpeg(path: str, plan: SamplingPlan, timeout: float | None):
    select = "+".join(f"eq(n\\,{i})" for i in plan.indices)
    command = [
        "ffmpeg", "-nostdin", "-v", "info", "-i", path, "-map", "0:v:0",
        "-vf", f"select='{select}',scale={plan.width}:{plan.height}:flags=bicubic,showinfo",
        "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:",
    ]  # fmt: skip
    try:
        done = subprocess.run(command, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise DecodeError(path, f"ffmpeg decode timed out after {timeout:.0f} s") from exc
    if done.returncode != 0:
        lines = done.stderr.decode(errors="replace").strip().splitlines()
        raise DecodeError(path, f"ffmpeg failed: {lines[-1] if lines else done.returncode}")
    size = plan.width * plan.height * 3
    count = len(done.stdout) // size
    frames = np.frombuffer(done.stdout[: count * size], dtype=np.uint8).reshape(
        count, plan.height, plan.width, 3
    )
    timestamps = [float(m) for m in _PTS.findall(done.stderr)]
    if len(timestamps) != count:
        raise DecodeError(path, f"ffmpeg returned {count} frames but reported {len(timestamps)} timestamps")
    return frames, np.asarray(timestamps)


_DECODERS: dict[str, Callable] = {
    "decord": _decode_decord,
    "torchcodec": _decode_torchcodec,
    "ffmpeg": _decode_ffmpeg,
}


# ---------------------------------------------------------------------------------------------
# Isolation: a child process that can be killed when a decoder hangs


def _worker_loop(conn) -> None:
    """Body of the decode worker: decode what it is sent until the pipe closes."""
    while True:
        try:
            decode, path, plan, timeout = conn.recv()
        except (EOFError, OSError):
            return
        try:
            frames, timestamps = decode(path, plan, timeout)
            frames = np.ascontiguousarray(frames, dtype=np.uint8)
            conn.send(("ok", frames.shape, np.asarray(timestamps, dtype=np.float64)))
            conn.send_bytes(frames.tobytes())
        except BaseException as exc:  # reported to the parent, which raises it
            problem = exc.problem if isinstance(exc, DecodeError) else f"{type(exc).__name__}: {exc}"
            conn.send(("error", problem, None))


class _DecodeWorker:
    """A long-lived child process that decodes; killed and replaced when a decode hangs.

    It is spawned (a fresh interpreter), never forked: forking a process whose torch/OpenMP
    thread pools run can deadlock the child inside the decoder. Spawning costs an interpreter
    start once; every later decode costs only the transfer of its frames.
    """

    def __init__(self) -> None:
        self.process = None
        self.conn = None
        self.pid = os.getpid()  # a forked copy (a data-loading worker) must start its own decoder

    def _start(self) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe(duplex=True)
        self.process = context.Process(
            target=_worker_loop, args=(child,), daemon=True, name="vtg-data-decoder"
        )
        # A main module without a file on disk (python -, python -c, some notebooks) cannot be
        # re-imported by a spawned child; the worker needs nothing from it.
        main = sys.modules.get("__main__")
        path = getattr(main, "__file__", None)
        hide = path is not None and not os.path.exists(path)
        if hide:
            del main.__file__
        try:
            self.process.start()
        finally:
            if hide:
                main.__file__ = path
        child.close()

    def stop(self) -> None:
        if self.process is not None:
            if self.process.is_alive():
                self.process.kill()
            self.process.join()
            self.conn.close()
        self.process = self.conn = None

    def run(self, decode, path: str, plan: SamplingPlan, timeout: float):
        if self.process is None or not self.process.is_alive():
            self._start()
        try:
            self.conn.send((decode, path, plan, timeout))
            if not self.conn.poll(timeout):
                self.stop()
                raise DecodeError(path, f"decode timed out after {timeout:.0f} s")
            status, shape, timestamps = self.conn.recv()
            if status != "ok":
                raise DecodeError(path, shape)
            frames = np.frombuffer(bytearray(self.conn.recv_bytes()), dtype=np.uint8).reshape(
                shape
            )  # writable
            return frames, timestamps
        except (EOFError, BrokenPipeError, ConnectionResetError) as exc:
            self.stop()
            raise DecodeError(path, "decoder process died (crash in the decoding library)") from exc


_WORKERS = threading.local()


def _isolated(decode, path: str, plan: SamplingPlan, timeout: float):
    """Decode in this thread's worker process, so a hang is killed after ``timeout`` seconds."""
    worker = getattr(_WORKERS, "worker", None)
    if worker is None or worker.pid != os.getpid():
        worker = _WORKERS.worker = _DecodeWorker()
    return worker.run(decode, path, plan, timeout)


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

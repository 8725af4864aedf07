"""Decode the frames of a sampling plan with one of three backends behind one function.

``sample_frames(path, policy, backend=...)`` returns a ``DecodedClip``: frames (T, H, W, 3) uint8,
upright and resized inside the decoder, the player time of every frame as the decoder reports it
(its presentation time minus the stream's first, checked against the plan's), and the sampling fps
the model must be told. Backends: ``decord``, ``torchcodec``, ``ffmpeg`` (a subprocess, no Python
ABI involved), and ``auto`` (the default): per video the fastest backend for its codec that reads
it (``AUTO_ORDER_BY_CODEC``), the next one taking over when a backend refuses the codec, fails
mid-stream or reports other times than the stream's; the clip records which one served.

A broken file never hangs or crashes a run: the stream is probed first (zero-byte and non-video
files fail there with a clear message), and decoding runs in a child process that is killed after
``timeout`` seconds (decord is known to hang on some files). Every failure is a ``DecodeError``
that names the file; one no backend reads names every backend's reason.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import re
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vtg_data.video.sampling import SamplingPlan, SamplingPolicy, plan_sampling
from vtg_data.video.stream import StreamError, StreamFacts, read_stream

BACKENDS = ("decord", "torchcodec", "ffmpeg")
# ``auto`` tries these in turn, the fastest that reads the codec first (benchmarks/decoders.py,
# RESULTS.md: decord leads on H.264 and HEVC by 9-22%, torchcodec on MPEG-4 part 2 by 27%; decord's
# FFmpeg 4.1 refuses VP9 and AV1, where torchcodec and the ffmpeg subprocess are level)
AUTO_ORDER = ("torchcodec", "decord", "ffmpeg")
AUTO_ORDER_BY_CODEC = {
    "h264": ("decord", "torchcodec", "ffmpeg"),
    "hevc": ("decord", "torchcodec", "ffmpeg"),
    "mpeg4": ("torchcodec", "decord", "ffmpeg"),
    "vp9": ("torchcodec", "ffmpeg", "decord"),
    "av1": ("torchcodec", "ffmpeg", "decord"),
}
DECODERS = (*BACKENDS, "auto")
StreamInfo = StreamFacts  # the facts a plan is made from


class DecodeError(RuntimeError):
    def __init__(self, path: str | Path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


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
    """Facts about the first video stream, from ffprobe; a clear DecodeError for unusable files.
    Remembered per file (path, size, modification time): a table asks once per video, not per query."""
    path = Path(path)
    if not path.is_file():
        raise DecodeError(path, "file not found")
    stat = path.stat()
    if stat.st_size == 0:
        raise DecodeError(path, "file is empty (0 bytes)")
    try:
        return _read_stream_once(str(path.resolve()), stat.st_size, stat.st_mtime_ns, timeout)
    except StreamError as exc:
        raise DecodeError(path, str(exc)) from exc


@functools.lru_cache(maxsize=256)
def _read_stream_once(path: str, size: int, mtime_ns: int, timeout: float) -> StreamInfo:
    return read_stream(path, timeout=timeout)


def sample_frames(
    path: str | Path,
    policy: SamplingPolicy,
    *,
    backend: str = "auto",
    timeout: float | None = 120.0,
    info: StreamInfo | None = None,
) -> DecodedClip:
    """Plan and decode one video's frames. ``timeout=None`` decodes in this process."""
    if backend not in DECODERS:
        raise ValueError(f"unknown decode backend {backend!r}; choose one of {DECODERS}")
    path = Path(path)
    info = info or stream_info(path)
    plan = plan_sampling(
        policy, duration=info.duration, native_fps=info.fps, num_frames=info.num_frames,
        width=info.width, height=info.height, frame_times=info.frame_times, start=info.start,
        rotation=info.rotation, variable_rate=info.variable_rate,
    )  # fmt: skip
    reasons = []
    order = AUTO_ORDER_BY_CODEC.get(info.codec, AUTO_ORDER) if backend == "auto" else (backend,)
    for name in order:
        try:
            return _decode_with(name, path, plan, timeout)
        except DecodeError as exc:
            reasons.append(f"{name}: {exc.problem}")
    if backend != "auto":
        raise DecodeError(path, reasons[0].split(": ", 1)[1])
    raise DecodeError(path, "no decoder reads it (" + "; ".join(reasons) + ")")


def _decode_with(name: str, path: Path, plan: SamplingPlan, timeout: float | None) -> DecodedClip:
    decode = _DECODERS[name]
    if name == "ffmpeg" or timeout is None:
        frames, timestamps = decode(str(path), plan, timeout)
    else:
        frames, timestamps = _isolated(decode, str(path), plan, timeout)
    if frames.shape != (len(plan.indices), plan.height, plan.width, 3):
        raise DecodeError(
            path,
            f"decoded {frames.shape[0]} frames of {frames.shape[1:]} but the plan asked for "
            f"{len(plan.indices)} of {(plan.height, plan.width, 3)} (truncated file?)",
        )
    timestamps = np.asarray(timestamps, dtype=np.float64)
    planned = np.asarray(plan.timestamps)
    # the decoder's own times must be the stream's: a backend that counts index / fps on a
    # variable-rate stream, or forgets the start offset, returns other frames than planned
    tolerance = (
        0.5 / plan.native_fps if not plan.variable_rate else 0.5 * _shortest_gap(planned, plan.native_fps)
    )
    worst = float(np.max(np.abs(timestamps - planned))) if len(planned) else 0.0
    if worst > max(tolerance, 0.0015):
        raise DecodeError(path, f"{name} returned frames {worst:.3f} s away from the stream's times")
    return DecodedClip(frames, timestamps, plan.fps, plan, name)


def _shortest_gap(times: np.ndarray, fps: float) -> float:
    gaps = np.diff(times)
    gaps = gaps[gaps > 0]
    return float(gaps.min()) if len(gaps) else 1 / fps


# ---------------------------------------------------------------------------------------------
# Backends: (path, plan, timeout) -> (frames, timestamps)


def _decode_decord(path: str, plan: SamplingPlan, timeout: float | None):
    import decord

    width, height = _request_size(plan, "decord")
    try:
        reader = decord.VideoReader(path, width=width, height=height, num_threads=0)
        if max(plan.indices) >= len(reader):
            raise DecodeError(
                path, f"frame {max(plan.indices)} requested but only {len(reader)} decodable (truncated?)"
            )
        frames = reader.get_batch(list(plan.indices)).asnumpy()
        # decord's clock may or may not start at the stream's first frame: count from that frame
        stamps = reader.get_frame_timestamp([0, *plan.indices])[:, 0]
    except DecodeError:
        raise
    except Exception as exc:  # decord raises its own DECORDError types
        raise DecodeError(path, f"decord failed: {exc}") from exc
    return _upright(frames, plan, "decord"), stamps[1:] - stamps[0]


def _decode_torchcodec(path: str, plan: SamplingPlan, timeout: float | None):
    from torchcodec.decoders import VideoDecoder
    from torchvision.transforms import v2

    width, height = _request_size(plan, "torchcodec")
    try:
        decoder = VideoDecoder(
            path,
            dimension_order="NHWC",
            # approximate seeking maps an index to index / fps: right only at a constant rate
            seek_mode="exact" if plan.variable_rate else "approximate",
            num_ffmpeg_threads=0,
            transforms=[v2.Resize((height, width))],
        )
        batch = decoder.get_frames_at(list(plan.indices))
    except Exception as exc:
        raise DecodeError(path, f"torchcodec failed: {exc}") from exc
    return _upright(batch.data.numpy(), plan, "torchcodec"), batch.pts_seconds.numpy() - plan.start


_PTS = re.compile(rb"n:\s*\d+\s+pts:\s*-?\d+\s+pts_time:([-0-9.e]+)")
_TURN = {90: "transpose=clock,", 180: "hflip,vflip,", 270: "transpose=cclock,"}


def _decode_ffmpeg(path: str, plan: SamplingPlan, timeout: float | None):
    select = "+".join(f"eq(n\\,{i})" for i in plan.indices)
    # the stream's own clock (-copyts) and the plan's turn (-noautorotate): the same on every build
    command = [
        "ffmpeg", "-nostdin", "-v", "info", "-noautorotate", "-copyts", "-i", path, "-map", "0:v:0",
        "-vf", f"select='{select}',{_TURN.get(plan.rotation, '')}scale={plan.width}:{plan.height}:flags=bicubic,showinfo",
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
    return frames, np.asarray(timestamps) - plan.start


# ---------------------------------------------------------------------------------------------
# Upright frames: decord and torchcodec may or may not apply a display matrix, by version


def _request_size(plan: SamplingPlan, backend: str) -> tuple[int, int]:
    """(width, height) to ask a decoder for: the upright size if it turns frames itself, else the
    stored size (a quarter turn swaps the sides), turned afterwards by ``_upright``."""
    if plan.rotation in (90, 270) and not turns_upright(backend):
        return plan.height, plan.width
    return plan.width, plan.height


def _upright(frames: np.ndarray, plan: SamplingPlan, backend: str) -> np.ndarray:
    if not plan.rotation or turns_upright(backend):
        return frames
    turned = np.rot90(frames, k=-plan.rotation // 90, axes=(1, 2))  # clockwise, as a player turns it
    return np.ascontiguousarray(turned)


_TURNS: dict[str, bool] = {}


def turns_upright(backend: str) -> bool:
    """Whether ``backend`` applies a stream's display matrix itself (decord and torchcodec do in
    some versions and not in others): measured once per process on a tiny file stored upside
    down with a 180-degree matrix, whose left half is white when shown upright."""
    if backend not in _TURNS:
        with tempfile.TemporaryDirectory() as folder:
            stored, shown = Path(folder) / "stored.mp4", Path(folder) / "turned.mp4"
            source = "color=c=black:s=64x32:d=0.2:r=10,format=gray,geq=lum='if(gt(X\\,W/2)\\,235\\,16)'"
            subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", source, "-c:v", "libx264",
                            "-pix_fmt", "yuv420p", str(stored)], check=True)  # fmt: skip
            subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(stored), "-c", "copy",
                            "-metadata:s:v:0", "rotate=180", str(shown)], check=True)  # fmt: skip
            plan = SamplingPlan(indices=(0,), timestamps=(0.0,), fps=10.0, width=64, height=32, duration=0.2)
            frames, _ = {"decord": _decode_decord_plain, "torchcodec": _decode_torchcodec_plain}[backend](
                str(shown), plan
            )
        left, right = frames[0, :, :32].mean(), frames[0, :, 32:].mean()
        _TURNS[backend] = bool(left > right)
    return _TURNS[backend]


def _decode_decord_plain(path: str, plan: SamplingPlan):
    import decord

    return decord.VideoReader(path).get_batch(list(plan.indices)).asnumpy(), None


def _decode_torchcodec_plain(path: str, plan: SamplingPlan):
    from torchcodec.decoders import VideoDecoder

    return VideoDecoder(path, dimension_order="NHWC").get_frames_at(list(plan.indices)).data.numpy(), None


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

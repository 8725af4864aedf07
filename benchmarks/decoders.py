"""Decoding speed of each backend per codec, which sets ``--decoder auto``'s order per codec
(``AUTO_ORDER_BY_CODEC``).

For each codec the corpora's videos come in (H.264 mp4, VP9 webm, AV1 mkv, 10-bit HEVC, MPEG-4
AVI) a 30-s 640x360 video is sampled with the default policy (2 fps, 60 frames, resized in the
decoder) by every backend, in this process (no isolation), median of 3 runs after a warm-up.
Prints seconds and the ratio to the fastest backend of that codec; a backend that refuses a codec
says so.

    python benchmarks/decoders.py [--seconds 30]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from vtg_data.video import SamplingPolicy, sample_frames
from vtg_data.video.decode import AUTO_ORDER, AUTO_ORDER_BY_CODEC, BACKENDS, DecodeError

CODECS = {
    "h264 mp4": ("h264.mp4", ["-c:v", "libx264", "-preset", "veryfast", "-g", "60", "-pix_fmt", "yuv420p"]),
    "vp9 webm": ("vp9.webm", ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "1M"]),
    "av1 mkv": ("av1.mkv", ["-c:v", "libaom-av1", "-usage", "realtime", "-cpu-used", "8", "-b:v", "1M"]),
    "hevc 10-bit mp4": ("hevc.mp4", ["-c:v", "libx265", "-preset", "ultrafast", "-pix_fmt", "yuv420p10le",
                                     "-x265-params", "log-level=error"]),
    "mpeg4 avi": ("mpeg4.avi", ["-c:v", "mpeg4", "-q:v", "4"]),
}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="decoders-"))
    policy = SamplingPolicy()
    print(f"{'codec':>16} | " + " | ".join(f"{b:>18}" for b in BACKENDS) + " | auto serves")
    for codec, (name, encode) in CODECS.items():
        path = folder / name
        source = f"testsrc2=size=640x360:rate=30:duration={args.seconds}"
        subprocess.run(
            ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", source, *encode, str(path)], check=True
        )
        times: dict[str, float | str] = {}
        for backend in BACKENDS:
            try:
                sample_frames(path, policy, backend=backend, timeout=None)  # warm-up
                runs = []
                for _ in range(args.runs):
                    began = time.perf_counter()
                    sample_frames(path, policy, backend=backend, timeout=None)
                    runs.append(time.perf_counter() - began)
                times[backend] = statistics.median(runs)
            except DecodeError as exc:
                times[backend] = "refused: " + exc.problem[:40]
        numbers = [t for t in times.values() if isinstance(t, float)]
        fastest = min(numbers) if numbers else 1.0
        cells = [
            f"{t:6.3f} s ({t / fastest:4.2f}x)" if isinstance(t, float) else f"{'refused':>18}"
            for t in times.values()
        ]
        served = sample_frames(path, policy, backend="auto", timeout=None).backend
        print(f"{codec:>16} | " + " | ".join(cells) + f" | {served}")
    for codec, order in AUTO_ORDER_BY_CODEC.items():
        print(f"auto on {codec}: {' -> '.join(order)}")
    print(f"auto on other codecs: {' -> '.join(AUTO_ORDER)}")


if __name__ == "__main__":
    main()

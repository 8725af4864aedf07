"""ffmpeg-made test videos whose pictures say which frame they are."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

BITS = 10


def timecode_video(
    path: Path,
    *,
    fps: str = "25",
    duration: float = 4.0,
    width: int = 320,
    height: int = 64,
    extra: tuple[str, ...] = (),
) -> Path:
    """Frame n shows n in binary: BITS vertical bands, white for 1, black for 0 (LSB on the left)."""
    lum = f"if(bitand(N\\,pow(2\\,floor(X*{BITS}/W)))\\,235\\,16)"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi",
         "-i", f"color=c=black:s={width}x{height}:r={fps}:d={duration},format=gray,geq=lum='{lum}'",
         "-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "12", *extra, str(path)],
        check=True,
    )  # fmt: skip
    return path


def lavfi_video(
    path: Path, source: str, *, encode: tuple[str, ...] = ("-c:v", "libx264", "-pix_fmt", "yuv420p")
) -> Path:
    """A video from one ffmpeg lavfi source (``color=c=red:s=64x48:r=10:d=27``, ``testsrc2=...``):
    the plain files download and normalization tests need, encoded as ``encode`` says."""
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", source, *encode, str(path)], check=True
    )
    return path


def frame_numbers(frames: np.ndarray) -> list[int]:
    """Read the frame numbers back from decoded (T, H, W, 3) frames."""
    width = frames.shape[2]
    columns = [int((k + 0.5) * width / BITS) for k in range(BITS)]
    bits = frames[:, frames.shape[1] // 2, columns, :].mean(axis=-1) > 128
    return (bits * (2 ** np.arange(BITS))).sum(axis=1).astype(int).tolist()

"""A small zoo of the containers, codecs and quirks the corpora's videos come in, made with ffmpeg.

Every frame shows its own presentation time, relative to the stream's first frame (player time):
twelve bands across the width spell the time in centiseconds in binary (white = 1, least
significant bit on the left). A decoder is right when the time a frame shows equals the time it
reports, and upright when the bands read at all (a sideways frame scrambles them).

Kinds (each a few seconds, small frames, so the zoo stays fast enough for CI):
h264 mp4 at 25 fps; VP9 webm and AV1 mkv (YouTube downloads); MPEG-4 part 2 in AVI (TACoS);
10-bit HEVC; 29.97 fps (Charades); variable frame rate (10 fps then 30 fps); a stream whose first
frame is at 2.0 s (a re-muxed download); a phone video stored sideways with a 90-degree display
matrix; an audio stream before the video; a long GOP with B-frames.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

BITS = 12
WIDTH, HEIGHT = 384, 96
# bit k is white when the frame's time in centiseconds has bit k set; T is the frame's own time
CODE = f"if(bitand(trunc(T*100+0.5)\\,pow(2\\,floor(X*{BITS}/W)))\\,235\\,16)"


def _source(seconds: float, rate: str, size: str = f"{WIDTH}x{HEIGHT}") -> list[str]:
    return ["-f", "lavfi", "-i", f"color=c=black:s={size}:r={rate}:d={seconds},format=gray,geq=lum='{CODE}'"]


H264 = ("-c:v", "libx264", "-preset", "veryfast", "-crf", "12", "-pix_fmt", "yuv420p")

# name -> (file name, ffmpeg arguments between the inputs and the output file[, a stream-copy remux's
# arguments]); a phone's portrait video is stored as the sensor saw it, turned a quarter
# counter-clockwise, with a display matrix of -90 degrees (ffprobe "rotation": -90) to turn it upright
KINDS: dict[str, tuple] = {
    "h264": ("h264.mp4", [*_source(4, "25"), *H264, "-g", "12"]),
    "vp9_webm": ("vp9.webm", [*_source(4, "30"), "-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8",
                              "-crf", "20", "-b:v", "0", "-pix_fmt", "yuv420p"]),
    "av1_mkv": ("av1.mkv", [*_source(3, "24"), "-c:v", "libaom-av1", "-cpu-used", "8", "-usage", "realtime",
                            "-crf", "20", "-pix_fmt", "yuv420p"]),
    "mpeg4_avi": ("mpeg4.avi", [*_source(4, "25"), "-c:v", "mpeg4", "-q:v", "2", "-pix_fmt", "yuv420p"]),
    "hevc_10bit": ("hevc10.mp4", [*_source(3, "25"), "-c:v", "libx265", "-preset", "ultrafast", "-crf", "12",
                                  "-pix_fmt", "yuv420p10le", "-x265-params", "log-level=error", "-tag:v", "hvc1"]),
    "ntsc_2997": ("ntsc.mp4", [*_source(4, "30000/1001"), *H264]),
    # 10 fps for 2 s, then 30 fps: the frames of a 30-fps source, two of every three dropped at first
    "vfr": ("vfr.mp4", [*_source(4, "30"), "-vf", "select='gte(t\\,2)+not(mod(n\\,3))'", "-fps_mode", "vfr", *H264]),
    "offset_start": ("offset.mp4", [*_source(4, "25"), *H264, "-output_ts_offset", "2"]),
    "rotated_90": ("rotated.mp4", [*_source(3, "25"), "-vf", "transpose=cclock", *H264], ["-metadata:s:v:0", "rotate=270"]),
    "audio_first": ("audio_first.mp4", ["-f", "lavfi", "-i", "sine=frequency=440:duration=4", *_source(4, "25"),
                                        "-map", "0:a", "-map", "1:v", "-c:a", "aac", *H264]),
    "long_gop": ("long_gop.mp4", [*_source(6, "25"), *H264, "-g", "150", "-bf", "3", "-sc_threshold", "0"]),
}  # fmt: skip


def make(kind: str, folder: Path) -> Path:
    name, arguments, *remux = KINDS[kind]
    path = Path(folder) / name
    if not path.exists():
        encoded = path.with_name("encoded-" + name) if remux else path
        subprocess.run(["ffmpeg", "-v", "error", "-y", *arguments, str(encoded)], check=True)
        if remux:  # the display matrix is written on a stream copy (ffmpeg 5's muxer ignores it on encode)
            subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(encoded), "-c", "copy", *remux[0], str(path)],
                           check=True)  # fmt: skip
            encoded.unlink()
    return path


def make_zoo(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return {kind: make(kind, folder) for kind in KINDS}


def shown_times(frames: np.ndarray) -> np.ndarray:
    """The times (seconds) the frames show, read from their bands; (T, H, W, 3) uint8 frames."""
    width = frames.shape[2]
    columns = [int((k + 0.5) * width / BITS) for k in range(BITS)]
    rows = frames[:, frames.shape[1] // 4 : 3 * frames.shape[1] // 4]
    bits = rows[:, :, columns, :].mean(axis=(1, 3)) > 128
    return (bits * (2 ** np.arange(BITS))).sum(axis=1) / 100.0

"""Frame sampling for grounding queries: grouped per video with in-decoder resize vs per query.

Builds a synthetic corpus (640x360 at 30 fps, several queries per video), then times:

- naive: for every query, open the video, decode the planned frames at full resolution, and
  resize them afterwards (what per-sample data loaders do);
- vtg-data: ``load_clips`` decodes each video once, resizing inside the decoder, and every query
  on the video reuses the clip;
- floor: the ffmpeg CLI decoding every frame of every video once (``-f null``).

    python benchmarks/sample_frames.py [--videos 6] [--backend decord]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch
import torch.nn.functional as F

from vtg_data.corpora.synthetic import SyntheticConfig
from vtg_data.stages.download import DownloadConfig, download
from vtg_data.video import SamplingPolicy, load_clips, plan_sampling, stream_info

POLICY = SamplingPolicy(fps=2.0, max_frames=64, max_pixels=448 * 252)


def naive(queries: list[Path]) -> int:
    import decord

    frames = 0
    for path in queries:
        info = stream_info(path)
        plan = plan_sampling(POLICY, duration=info.duration, native_fps=info.fps, num_frames=info.num_frames,
                             width=info.width, height=info.height)  # fmt: skip
        reader = decord.VideoReader(str(path))
        batch = torch.from_numpy(reader.get_batch(list(plan.indices)).asnumpy()).permute(0, 3, 1, 2).float()
        resized = F.interpolate(batch, size=(plan.height, plan.width), mode="bilinear", antialias=True)
        frames += resized.shape[0]
    return frames


def grouped(queries: list[Path], backend: str) -> int:
    return sum(clip.num_frames for _, clip in load_clips(queries, POLICY, backend=backend))


def floor(videos: list[Path]) -> int:
    for path in videos:
        subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "null", "-"], check=True)
    return len(videos)


def timed(fn, *args, repeats: int = 3) -> float:
    fn(*args)  # warm-up: imports and file cache
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--videos", type=int, default=6)
    parser.add_argument("--backend", default="decord", choices=["decord", "torchcodec", "ffmpeg"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        synthetic = SyntheticConfig(
            n_videos=args.videos, seed=11, min_duration=20, max_duration=40, fps=30, width=640, height=360
        )
        download(DownloadConfig("synthetic", root, synthetic=synthetic))
        table = pl.concat(
            [pl.read_parquet(p) for p in sorted((root / "normalized/synthetic").glob("t*.parquet"))]
        )
        video_root = root / "videos/synthetic"
        queries = [video_root / p for p in table["video_path"]]
        videos = sorted(set(queries))
        per_video = len(queries) / len(videos)
        naive_s = timed(naive, queries)
        ours_s = timed(grouped, queries, args.backend)
        floor_s = timed(floor, videos)
    print(f"{len(videos)} videos of 20-40 s at 640x360/30 fps, {len(queries)} queries ({per_video:.1f} per video); "
          f"policy {POLICY.fps:g} fps, <= {POLICY.max_frames} frames, <= {POLICY.max_pixels} px")  # fmt: skip
    print(f"naive per query (full-res decode, resize after): {naive_s:.2f} s")
    print(f"vtg-data grouped per video, resize in decoder ({args.backend}): {ours_s:.2f} s")
    print(f"floor, ffmpeg CLI decoding every frame once: {floor_s:.2f} s")
    print(f"speed-up over naive: {naive_s / ours_s:.2f}x   vtg-data / floor: {ours_s / floor_s:.2f}x")
    assert np.isfinite(naive_s / ours_s)


if __name__ == "__main__":
    main()

"""The synthetic corpus: its windows are exactly where its pictures change."""

import json
import subprocess

import numpy as np
import polars as pl
import pytest

from vtg_data.corpora.synthetic import COLOURS, SyntheticConfig, plan_video


def frame_at(path, seconds: float, width=160, height=120) -> np.ndarray:
    raw = subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-ss",
            f"{seconds:.3f}",
            "-i",
            str(path),
            "-frames:v",
            "1",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "pipe:",
        ],
        check=True,
        capture_output=True,
    ).stdout
    return np.frombuffer(raw, np.uint8).reshape(height, width, 3)


def test_each_window_shows_the_colour_its_query_names(synthetic_root):
    table = pl.read_parquet(synthetic_root / "normalized/synthetic/train.parquet")
    videos = synthetic_root / "videos/synthetic"
    for row in table.iter_rows(named=True):
        start, end = row["windows"][0]
        background = row["query"].rstrip(".").split()[-2 if "background" in row["query"] else -1]
        expected = np.array([int(COLOURS[background][i : i + 2], 16) for i in (2, 4, 6)])
        for t in (start + 0.05, (start + end) / 2, end - 0.15):
            corner = frame_at(videos / row["video_path"], t)[2:6, 2:6].reshape(-1, 3).mean(axis=0)
            assert np.abs(corner - expected).max() < 24, (row["uid"], t, corner, expected)


def test_windows_tile_the_video_exactly(synthetic_root):
    raw = json.loads((synthetic_root / "raw/synthetic/train.json").read_text())
    for record in raw.values():
        bounds = record["timestamps"]
        assert bounds[0][0] == 0 and bounds[-1][1] == record["duration"]
        assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))
        assert all(e - s >= 1.0 for s, e in bounds)


def test_videos_probe_to_the_annotated_duration(synthetic_root):
    videos = pl.read_parquet(synthetic_root / "normalized/synthetic/videos.parquet")
    assert set(videos["status"]) == {"ok"}
    for row in videos.iter_rows(named=True):
        assert row["duration_probe"] == pytest.approx(row["duration_annotation"], abs=0.101)


def test_plans_depend_only_on_the_seed():
    import random

    cfg = SyntheticConfig(seed=3)
    assert plan_video(random.Random(3), cfg) == plan_video(random.Random(3), cfg)
    assert plan_video(random.Random(3), cfg) != plan_video(random.Random(4), cfg)


def test_bad_synthetic_config_is_rejected():
    with pytest.raises(ValueError):
        SyntheticConfig(n_videos=0)
    with pytest.raises(ValueError):
        SyntheticConfig(min_duration=10, max_duration=5)

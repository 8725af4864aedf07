"""Model-free reference points, so every metric table has a floor to compare against.

``prior_windows``: the mean relative [start, end] of the training windows, scaled to each test
video's duration (the classic "moment prior" baseline). A model that does not beat it has learned
nothing about the video.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from vtg_data.files import write_text


def mean_relative_window(train: pl.DataFrame) -> tuple[float, float]:
    windows = train.filter(pl.col("has_gt")).select("duration", "windows").explode("windows")
    relative = windows.select(
        (pl.col("windows").list.get(0) / pl.col("duration")).alias("s"),
        (pl.col("windows").list.get(1) / pl.col("duration")).alias("e"),
    )
    if relative.height == 0:
        raise ValueError("the training table has no ground-truth windows")
    return float(relative["s"].mean()), float(relative["e"].mean())


def prior_windows(train: pl.DataFrame, test: pl.DataFrame) -> list[dict]:
    start, end = mean_relative_window(train)
    return [
        {"uid": uid, "windows": [[round(start * duration, 3), round(end * duration, 3)]]}
        for uid, duration in zip(test["uid"], test["duration"], strict=True)
    ]


def write_predictions(predictions: list[dict], path: Path) -> Path:
    return write_text(path, "".join(json.dumps(p) + "\n" for p in predictions))

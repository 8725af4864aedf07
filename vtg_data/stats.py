"""``vtg-data stats``: what a normalized table holds, without opening a notebook."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl


def query_tables(path: Path) -> list[Path]:
    """Query tables at ``path``: the file itself, or every ``*.parquet`` below it but videos."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such file or folder")
    tables = sorted(
        p for p in path.rglob("*.parquet") if p.name != "videos.parquet" and not p.name.startswith(".")
    )
    if not tables:
        raise FileNotFoundError(f"{path}: no query tables (*.parquet) found")
    return tables


def _distribution(series: pl.Series) -> dict[str, float]:
    if series.is_empty():
        return {}
    return {
        "min": float(series.min()),
        "p25": float(series.quantile(0.25)),
        "median": float(series.median()),
        "p75": float(series.quantile(0.75)),
        "max": float(series.max()),
        "mean": float(series.mean()),
    }


def compute_stats(path: Path) -> dict[str, Any]:
    tables = query_tables(path)
    frame = pl.concat(
        [
            pl.read_parquet(p, columns=["source", "split", "video_id", "duration", "windows", "flags"])
            for p in tables
        ]
    )
    groups = (
        frame.group_by("source", "split")
        .agg(pl.len().alias("queries"), pl.col("video_id").n_unique().alias("videos"))
        .sort("source", "split")
    )
    per_video = frame.unique("video_id")
    windows = frame.select("duration", pl.col("windows")).explode("windows").drop_nulls("windows")
    lengths = windows.select(
        (pl.col("windows").list.get(1) - pl.col("windows").list.get(0)).alias("length"),
        ((pl.col("windows").list.get(1) - pl.col("windows").list.get(0)) / pl.col("duration")).alias(
            "fraction"
        ),
    )
    flags = frame.select(pl.col("flags").explode()).drop_nulls().group_by("flags").len().sort("flags")
    missing = frame.filter(pl.col("flags").list.contains("video_missing"))["video_id"].n_unique()
    corrupt = frame.filter(pl.col("flags").list.contains("video_corrupt"))["video_id"].n_unique()
    return {
        "tables": [str(p) for p in tables],
        "groups": groups.to_dicts(),
        "queries": frame.height,
        "videos": per_video.height,
        "video_duration": _distribution(per_video["duration"]),
        "window_length": _distribution(lengths["length"]),
        "window_fraction": _distribution(lengths["fraction"]),
        "flags": {row["flags"]: row["len"] for row in flags.to_dicts()},
        "videos_missing": missing,
        "videos_corrupt": corrupt,
    }

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


def _value_counts(frame: pl.DataFrame, column: str) -> dict[str, int]:
    if column not in frame.columns:
        return {}
    grouped = frame.group_by(column).len().sort("len", descending=True)
    return {str(row[column]): row["len"] for row in grouped.to_dicts() if row[column] is not None}


def _count(frame: pl.DataFrame, column: str, expression) -> int:
    return frame.filter(expression).height if column in frame.columns else 0


def video_facts(folders: list[Path]) -> list[dict[str, Any]]:
    """What the videos on disk are, per corpus (each folder's ``videos.parquet``): their status,
    codecs, containers, and how many are rotated, start after 0 or have a variable frame rate, so a
    user sees before training what the decoders will meet."""
    rows = []
    for folder in dict.fromkeys(Path(f) for f in folders):
        table = folder / "videos.parquet"
        if not table.is_file():
            continue
        frame = pl.read_parquet(table)
        present = frame.filter(pl.col("status") == "ok")
        statuses = frame.group_by("status").len().sort("status").to_dicts()
        rows.append({
            "corpus": folder.name,
            "videos": frame.height,
            "status": {row["status"]: row["len"] for row in statuses},
            "codecs": _value_counts(present, "codec"),
            "containers": _value_counts(present, "container"),
            "rotated": _count(present, "rotation", pl.col("rotation").fill_null(0) != 0),
            "offset_start": _count(present, "start_offset", pl.col("start_offset").fill_null(0).abs() > 0.001),
            "variable_rate": _count(present, "variable_rate", pl.col("variable_rate").fill_null(False)),
        })  # fmt: skip
    return rows


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
        "video_files": video_facts([t.parent for t in tables]),
    }

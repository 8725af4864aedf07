"""Reading normalized query tables for the stages that run models on them."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from vtg_data.stats import query_tables


def load_rows(
    sources: tuple[Path, ...] | list[Path], video_root: Path | None = None, limit: int | None = None
) -> list[dict]:
    """Rows with ground truth from tables or folders, each with ``_video`` (absolute path) and
    ``_table``. Without ``video_root`` a table at ``<root>/normalized/<corpus>/<split>.parquet``
    finds its videos under ``<root>/videos/<corpus>/``."""
    rows = []
    for source in sources:
        for table in query_tables(Path(source)):
            frame = pl.read_parquet(table).filter(pl.col("has_gt"))
            for row in frame.iter_rows(named=True):
                base = (
                    video_root
                    if video_root is not None
                    else table.parent.parent.parent / "videos" / row["source"]
                )
                rows.append(row | {"_video": str(base / row["video_path"]), "_table": str(table)})
    if not rows:
        raise ValueError("no rows with ground truth in the given tables")
    return rows[:limit] if limit else rows

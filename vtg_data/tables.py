"""Reading normalized query tables for the stages that run models on them."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from vtg_data.data_root import table_video_root, video_file
from vtg_data.stats import query_tables


def load_rows(
    sources: tuple[Path, ...] | list[Path], video_root: Path | None = None, limit: int | None = None
) -> list[dict]:
    """Rows with ground truth from tables or folders, each with ``_video`` (absolute path) and
    ``_table``. ``video_root`` is the data root's ``videos/`` folder (each row's video is under its
    source's sub-folder, so a table mixing corpora works); without it a table at
    ``<root>/normalized/<corpus>/<split>.parquet`` finds its videos under ``<root>/videos/``."""
    rows = []
    for source in sources:
        for table in query_tables(Path(source)):
            frame = pl.read_parquet(table).filter(pl.col("has_gt"))
            base = Path(video_root) if video_root is not None else table_video_root(table)
            for row in frame.iter_rows(named=True):
                video = video_file(base, row["source"], row["video_path"])
                rows.append(row | {"_video": str(video), "_table": str(table)})
    if not rows:
        raise ValueError("no rows with ground truth in the given tables")
    return rows[:limit] if limit else rows

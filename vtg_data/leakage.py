"""``vtg-data check-leakage``: does a training table share videos or queries with a benchmark?

Videos are compared by a canonical key, so the same YouTube video matches across corpora that
name it differently: ``v_<ytid>`` (ActivityNet), ``<ytid>_<start>_<end>`` (QVHighlights clips),
``<ytid>.mp4`` (file names), paths. Queries are compared lower-cased without punctuation.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import polars as pl

from vtg_data.schema import QUERY_SCHEMA, write_table_atomic
from vtg_data.stats import query_tables

_CLIP = re.compile(r"^(?P<ytid>[A-Za-z0-9_-]{11})_\d+(?:\.\d+)?_\d+(?:\.\d+)?$")
_VIDEO_SUFFIX = re.compile(r"\.(mp4|mkv|webm|avi|mov|mpg|mpeg|m4v|3gp|3g2|wmv|mts|m2ts|flv)$", re.IGNORECASE)
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def video_key(video_id: str, parent_video_id: str | None = None) -> str:
    """A corpus-independent key for the video behind ``video_id``."""
    name = PurePosixPath(str(parent_video_id or video_id).replace("\\", "/")).name
    name = _VIDEO_SUFFIX.sub("", name).rstrip(".")
    clip = _CLIP.match(name)
    if clip:
        name = clip.group("ytid")
    if name.startswith("v_") and len(name) == 13:
        name = name[2:]
    return name


def query_key(query: str) -> str:
    return " ".join(query.lower().translate(_PUNCTUATION).split())


def _load(paths: list[Path]) -> pl.DataFrame:
    frames = []
    for path in paths:
        for table in query_tables(path):
            frames.append(pl.read_parquet(table).with_columns(pl.lit(str(table)).alias("_table")))
    if not frames:
        raise FileNotFoundError("no tables given")
    frame = pl.concat(frames, how="diagonal_relaxed")
    keys = [video_key(v, p) for v, p in zip(frame["video_id"], frame["parent_video_id"], strict=True)]
    return frame.with_columns(
        pl.Series("_video_key", keys),
        pl.col("query").map_elements(query_key, return_dtype=pl.String).alias("_query_key"),
    )


@dataclass
class LeakageReport:
    train_rows: int
    bench_rows: int
    rows_benchmark_tagged: int  # training rows that are themselves benchmark items (``benchmarks`` tags)
    rows_video_overlap: int
    rows_query_overlap: int
    shared_videos: int
    by_pair: list[dict]
    examples: list[dict]
    kept: pl.DataFrame
    train_tables: list[str]

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("kept", "train_tables")}


def check_leakage(train: list[Path], bench: list[Path]) -> LeakageReport:
    train_frame, bench_frame = _load(train), _load(bench)
    bench_videos = set(bench_frame["_video_key"])
    bench_pairs = set(zip(bench_frame["_video_key"], bench_frame["_query_key"], strict=True))
    video_hit = train_frame["_video_key"].is_in(list(bench_videos))
    pair_hit = pl.Series(
        [
            pair in bench_pairs
            for pair in zip(train_frame["_video_key"], train_frame["_query_key"], strict=True)
        ]
    )
    tagged = (
        train_frame["benchmarks"].list.len().fill_null(0) > 0
        if "benchmarks" in train_frame.columns
        else pl.Series([False] * train_frame.height)
    )
    flagged = train_frame.with_columns(video_hit.alias("_video_hit"), pair_hit.alias("_pair_hit"))
    overlap = flagged.filter(pl.col("_video_hit"))
    bench_sources = bench_frame.group_by("_video_key").agg(
        pl.col("source").unique().sort().alias("bench_sources"),
        *(
            [
                pl.col("benchmarks")
                .list.explode(keep_nulls=False, empty_as_null=False)
                .unique()
                .sort()
                .alias("bench_tags")
            ]
            if "benchmarks" in bench_frame.columns
            else []
        ),
    )
    pairs = (
        overlap.join(bench_sources, on="_video_key")
        .explode("bench_sources")
        .group_by("source", "bench_sources")
        .agg(
            pl.len().alias("rows"),
            pl.col("_video_key").n_unique().alias("videos"),
            *(
                [pl.col("bench_tags").list.explode(keep_nulls=False, empty_as_null=False).unique().sort()]
                if "bench_tags" in bench_sources.columns
                else []
            ),
        )
        .sort("source", "bench_sources")
    )
    examples = overlap.select("uid", "video_id", "query", "_pair_hit").head(10).to_dicts()
    return LeakageReport(
        train_rows=train_frame.height,
        bench_rows=bench_frame.height,
        rows_benchmark_tagged=int(tagged.sum()),
        rows_video_overlap=overlap.height,
        rows_query_overlap=int(flagged["_pair_hit"].sum()),
        shared_videos=overlap["_video_key"].n_unique(),
        by_pair=[
            {
                "train_source": r["source"],
                "bench_source": r["bench_sources"],
                "rows": r["rows"],
                "videos": r["videos"],
                "bench_tags": r.get("bench_tags") or [],
            }
            for r in pairs.to_dicts()
        ],  # fmt: skip
        examples=[
            {"uid": e["uid"], "video_id": e["video_id"], "query": e["query"], "same_query": e["_pair_hit"]}
            for e in examples
        ],
        kept=train_frame.filter(~video_hit & ~tagged).drop("_video_key", "_query_key"),
        train_tables=list(dict.fromkeys(train_frame["_table"].to_list())),
    )


def write_kept(report: LeakageReport, out_dir: Path) -> list[Path]:
    """The training rows without any benchmark video or benchmark tag: ``out_dir/<corpus folder>/<table name>``."""
    written = []
    for table in report.train_tables:
        part = report.kept.filter(pl.col("_table") == table)
        columns = [c for c in QUERY_SCHEMA.names if c in part.columns]
        arrow = part.select(columns).to_arrow()
        if columns == QUERY_SCHEMA.names:
            arrow = arrow.cast(QUERY_SCHEMA)
        target = out_dir / Path(table).parent.name / Path(table).name
        write_table_atomic(arrow, target)
        written.append(target)
    return written

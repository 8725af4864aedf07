"""Span length x video coverage strata: the ``span-stratified`` policy of ``build rl``.

Training corpora and benchmarks disagree on what a moment looks like: TempSamp-R1 counts 3.7% of
training spans under 2 s against 13.3% in the benchmarks. This module places each row in a cell of
a grid (annotated seconds x share of the video they cover), measures a target distribution over
that grid from benchmark tables, and splits a sample size into per-cell quotas that follow the
target as closely as the pool allows.

Annotated seconds: the sum of the row's ground-truth windows (one window for most corpora);
coverage: those seconds over the video's duration, capped at 1.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

Cell = tuple[int, int]

LENGTH_EDGES = (0.0, 2.0, 5.0, 10.0, 20.0, 40.0, math.inf)
COVERAGE_EDGES = (0.0, 0.1, 0.25, 0.5, 1.0)


@dataclass(frozen=True)
class SpanGrid:
    """Edges of the grid: seconds of ground truth, and share of the video."""

    length_edges: tuple[float, ...] = LENGTH_EDGES
    coverage_edges: tuple[float, ...] = COVERAGE_EDGES

    def __post_init__(self) -> None:
        for name in ("length_edges", "coverage_edges"):
            edges = getattr(self, name)
            if len(edges) < 2 or any(b <= a for a, b in pairwise(edges)):
                raise ValueError(f"span-stratified {name}: at least two increasing edges, got {edges}")

    def cell(self, windows: Sequence[Sequence[float]], duration: float | None) -> Cell | None:
        """The row's cell; None when it has no usable window or duration, or falls off the grid."""
        seconds = sum(max(0.0, w[1] - w[0]) for w in windows or [] if len(w) == 2)
        if seconds <= 0 or not duration or duration <= 0:
            return None
        coverage = min(seconds / duration, 1.0)
        length = _bin(self.length_edges, seconds)
        share = _bin(self.coverage_edges, coverage)
        return None if length is None or share is None else (length, share)

    def cells(self) -> list[Cell]:
        return [
            (i, j) for i in range(len(self.length_edges) - 1) for j in range(len(self.coverage_edges) - 1)
        ]

    def label(self, cell: Cell) -> str:
        i, j = cell
        return (
            f"{_edge(self.length_edges[i])}-{_edge(self.length_edges[i + 1])} s, "
            f"{_edge(self.coverage_edges[j])}-{_edge(self.coverage_edges[j + 1])} of video"
        )


def _bin(edges: Sequence[float], value: float) -> int | None:
    """Bins are ``[lo, hi)``, the last one ``[lo, hi]``; None outside the edges."""
    if value < edges[0] or value > edges[-1]:
        return None
    return min(bisect.bisect_right(edges, value) - 1, len(edges) - 2)


def _edge(value: float) -> str:
    return "inf" if math.isinf(value) else f"{value:g}"


def shares(counts: Counter, grid: SpanGrid) -> dict[Cell, float]:
    total = sum(counts.values())
    return {c: (counts.get(c, 0) / total if total else 0.0) for c in grid.cells()}


def target_from_tables(paths: Iterable[Path], grid: SpanGrid) -> tuple[dict[Cell, float], int]:
    """The target shares measured on benchmark tables (rows with ground truth), and the row count."""
    import pyarrow.parquet as pq

    counts: Counter = Counter()
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"span-stratified target table {path} does not exist")
        names = ["windows", "duration", "has_gt"]
        for batch in pq.ParquetFile(path).iter_batches(batch_size=65536, columns=names):
            columns = (batch.column(n).to_pylist() for n in names)
            for windows, duration, has_gt in zip(*columns, strict=True):
                cell = grid.cell(windows, duration) if has_gt else None
                if cell is not None:
                    counts[cell] += 1
    total = sum(counts.values())
    if not total:
        raise ValueError(
            "span-stratified target tables hold no row with a ground-truth window and a duration"
        )
    return shares(counts, grid), total


def _largest_remainder(total: int, weights: dict[Cell, float]) -> dict[Cell, int]:
    """``total`` split in proportion to ``weights`` into integers that sum to ``total``."""
    mass = sum(weights.values())
    if total <= 0 or mass <= 0:
        return {c: 0 for c in weights}
    exact = {c: total * w / mass for c, w in weights.items()}
    counts = {c: math.floor(v) for c, v in exact.items()}
    left = total - sum(counts.values())
    for cell in sorted(exact, key=lambda c: (-(exact[c] - counts[c]), c))[:left]:
        counts[cell] += 1
    return counts


def allocate(target: dict[Cell, float], available: dict[Cell, int], size: int | None) -> dict[Cell, int]:
    """Per-cell quotas following ``target``, never above what a cell has.

    ``size`` None: the largest set whose every non-empty target cell meets its share exactly.
    A cell short of its quota passes the shortfall to the other target cells with rows to spare, in
    proportion to their shares; cells outside the target (share 0) never receive rows.
    """
    wanted = {c: s for c, s in target.items() if s > 0}
    if size is None:
        fits = [available.get(c, 0) / s for c, s in wanted.items() if available.get(c, 0) > 0]
        size = math.floor(min(fits) + 1e-9) if fits else 0
    quotas = {c: 0 for c in target}
    open_cells = dict(wanted)
    remaining = size
    while remaining > 0 and open_cells:
        proposal = _largest_remainder(remaining, open_cells)
        progressed = False
        for cell, count in proposal.items():
            room = available.get(cell, 0) - quotas[cell]
            take = min(count, room)
            if take > 0:
                quotas[cell] += take
                remaining -= take
                progressed = True
            if available.get(cell, 0) - quotas[cell] <= 0:
                open_cells.pop(cell)
        if not progressed:
            break
    return quotas


def tv_distance(a: dict[Cell, float], b: dict[Cell, float]) -> float:
    """Total-variation distance between two distributions over the grid (0 equal, 1 disjoint)."""
    return 0.5 * sum(abs(a.get(c, 0.0) - b.get(c, 0.0)) for c in set(a) | set(b))


def strata_report(
    grid: SpanGrid,
    target: dict[Cell, float],
    pool: Counter,
    achieved: Counter,
    size: int | None,
    target_rows: int,
) -> dict[str, Any]:
    """What the manifest says: target vs pool vs achieved, per cell and per length bin."""
    pool_shares, achieved_shares = shares(pool, grid), shares(achieved, grid)

    def by_length(values: dict[Cell, float]) -> list[float]:
        return [
            round(sum(v for (i, _), v in values.items() if i == k), 4)
            for k in range(len(grid.length_edges) - 1)
        ]

    return {
        "length_edges": [_edge(e) for e in grid.length_edges],
        "coverage_edges": [_edge(e) for e in grid.coverage_edges],
        "target_rows": target_rows,
        "requested": size,
        "selected": sum(achieved.values()),
        "cells": [
            {
                "cell": grid.label(c),
                "target": round(target.get(c, 0.0), 4),
                "pool": pool.get(c, 0),
                "selected": achieved.get(c, 0),
                "achieved": round(achieved_shares[c], 4),
            }
            for c in grid.cells()
            if target.get(c, 0.0) or pool.get(c, 0)
        ],  # fmt: skip
        "by_length": {
            "bins": [f"{_edge(a)}-{_edge(b)} s" for a, b in pairwise(grid.length_edges)],
            "target": by_length(target),
            "pool": by_length(pool_shares),
            "achieved": by_length(achieved_shares),
        },
        "tv_distance": {
            "pool": round(tv_distance(pool_shares, target), 4),
            "achieved": round(tv_distance(achieved_shares, target), 4),
        },  # fmt: skip
    }

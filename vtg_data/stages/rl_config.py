"""The options of ``vtg-data build rl`` and their checks (the policies are described in ``rl_select``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

from vtg_data.stages.partial_annotation import PartialRule
from vtg_data.stages.span_strata import COVERAGE_EDGES, LENGTH_EDGES, SpanGrid

POLICIES = (
    "random",  # no difficulty: a uniform draw of --size from the scored pool (the control arm)
    "band",
    "nonzero-variance",
    "gaussian",
    "timelens",
    "bins",
    "span-stratified",
    "partial-annotation",
)
STRATIFIED = ("bins", "timelens", "span-stratified")  # policies that split the final draw

# TimeLens's duration buckets: nine 30-second ranges up to 240 s, then one for longer videos
TIMELENS_BUCKETS = (0.0, 30.0, 60.0, 90.0, 120.0, 150.0, 180.0, 210.0, 240.0, math.inf)


@dataclass(frozen=True)
class RLConfig:
    """Options of ``vtg-data build rl``; saved in the manifest."""

    scores: Path
    out: Path
    policies: tuple[str, ...] = ("nonzero-variance",)
    lo: float = 0.0
    hi: float = 1.0
    mu: float = 0.3
    sigma: float = 0.2
    drop_zero: bool = False
    timelens_mu: float = 0.05
    timelens_sigma: float = 0.2
    timelens_min_duration: float = 5.0
    timelens_max_duration: float = 500.0
    duration_buckets: tuple[float, ...] = TIMELENS_BUCKETS
    bin_edges: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)  # on difficulty = 1 - mean IoU
    bin_shares: tuple[float, ...] = (0.25, 0.25, 0.25, 0.25)
    span_target: tuple[Path, ...] = ()
    span_length_edges: tuple[float, ...] = LENGTH_EDGES
    span_coverage_edges: tuple[float, ...] = COVERAGE_EDGES
    partial_action: str = "drop"
    partial_min_parsed: float = 0.5
    partial_agreement: float = 0.6
    partial_max_gt_share: float = 0.6
    partial_gt_inside: float = 0.9
    size: int | None = None
    quotas: dict[str, int] = field(default_factory=dict)  # source -> most rows
    seed: int = 0
    shards: int = 1

    def __post_init__(self) -> None:
        unknown = [p for p in self.policies if p not in POLICIES]
        if unknown:
            raise ValueError(f"unknown policy {unknown}; policies are {', '.join(POLICIES)}")
        if not self.lo < self.hi:
            raise ValueError("band needs lo < hi")
        if self.sigma <= 0 or self.timelens_sigma <= 0:
            raise ValueError("sigma must be positive")
        if len(self.bin_shares) != len(self.bin_edges) - 1 or any(s < 0 for s in self.bin_shares):
            raise ValueError("bins: one non-negative share per bin (len(edges) - 1)")
        if self.size is not None and self.size < 0:
            raise ValueError("size must be >= 0")
        stratified = [p for p in self.policies if p in STRATIFIED]
        if len(stratified) > 1:
            raise ValueError(f"at most one of {', '.join(STRATIFIED)} splits the draw; got {stratified}")
        if "timelens" in self.policies and self.size is None:
            raise ValueError(
                "timelens draws int(size / buckets) rows per duration bucket: give --size (TimeLens: 2500)"
            )
        if len(self.duration_buckets) < 2 or any(b <= a for a, b in pairwise(self.duration_buckets)):
            raise ValueError(f"duration_buckets: at least two increasing edges, got {self.duration_buckets}")
        if self.partial_action not in ("drop", "flag"):
            raise ValueError(f"partial_action must be drop or flag, got {self.partial_action!r}")
        SpanGrid(self.span_length_edges, self.span_coverage_edges)
        PartialRule(
            self.partial_min_parsed, self.partial_agreement, self.partial_max_gt_share, self.partial_gt_inside
        )

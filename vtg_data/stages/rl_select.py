"""The selection of ``build rl``: filters, weights and the final draw, on rows of a scores table.

Policies compose in the order given. Filters drop rows; weightings multiply a per-row weight;
then rows are drawn without replacement with probability proportional to the weight
(Efraimidis-Spirakis keys, seeded), under optional per-source quotas. At most one policy fixes how
the draw is split (``bins``, ``timelens``, ``span-stratified``); otherwise one draw takes ``size``.

- ``band``: keep ``lo < mean IoU < hi``.
- ``nonzero-variance``: drop groups whose rollout rewards are all equal (GRPO learns nothing there).
- ``gaussian``: weight ``exp(-(x - mu)^2 / 2 sigma^2)`` of the mean IoU; ``drop_zero`` removes
  mean IoU 0 first (Time-R1: mu 0.3, sigma 0.2).
- ``timelens``: TimeLens's sampler. Videos shorter than ``timelens_min_duration`` or longer than
  ``timelens_max_duration`` are dropped (5 s and 500 s in its GRPO recipe); the rest fall in nine
  duration buckets ``[0, 30], [30, 60], ..., [210, 240], [240, inf)`` (a row on an edge goes to the
  first bucket that holds it); every bucket gets the same quota ``int(size / buckets)`` (a bucket
  with fewer rows gives all it has; the shortfall is not moved to other buckets); inside a bucket
  the weight is a Gaussian of the mean IoU (mu 0.05, sigma 0.2) over the count of the row's bin in
  a 20-bin histogram of the bucket's mean IoUs on [0, 1].
- ``bins``: target proportions per difficulty bin (e.g. edges 0,0.25,0.5,0.75,1 with shares).
- ``span-stratified``: quotas per cell of span length x video coverage following a target
  distribution (measured on benchmark tables); see ``span_strata``.
- ``partial-annotation``: rows whose rollouts agree on a wider window containing the ground truth
  are flagged (always reported); ``partial_action`` drop removes them, flag keeps them.
"""

from __future__ import annotations

import bisect
import math
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from vtg_data.stages.partial_annotation import PartialRule, check_partial
from vtg_data.stages.rl_config import RLConfig
from vtg_data.stages.span_strata import SpanGrid, allocate, strata_report

HISTOGRAM_EDGES = [i * 0.05 for i in range(20)] + [1.0]  # the 20 bins of numpy's histogram on [0, 1]


@dataclass
class Selection:
    """The chosen rows (sorted by uid), rows removed per step, and what each policy reports."""

    rows: list[dict]
    removed: dict[str, int]
    reports: dict[str, Any] = field(default_factory=dict)
    partial: list[dict] = field(default_factory=list)


def gauss(x: float, mu: float, sigma: float) -> float:
    return math.exp(-((x - mu) ** 2) / (2 * sigma**2))


def draw(rows: list[dict], weights: list[float], count: int, rng: random.Random) -> list[dict]:
    """``count`` rows without replacement, P proportional to weight (rows of weight 0 never)."""
    keyed = [(rng.random() ** (1.0 / w), i) for i, w in enumerate(weights) if w > 0]
    keyed.sort(reverse=True)
    return [rows[i] for _, i in keyed[:count]]


def duration_bucket(duration: float, edges: tuple[float, ...]) -> int | None:
    """TimeLens's bucket of a duration: the first ``[edges[i], edges[i + 1]]`` that holds it."""
    for i in range(len(edges) - 1):
        if edges[i] <= duration <= edges[i + 1]:
            return i
    return None


def iou_histogram_bin(value: float) -> int:
    """The bin of a mean IoU among 20 on [0, 1], as numpy's histogram places it (1.0 in the last)."""
    return min(max(bisect.bisect_right(HISTOGRAM_EDGES, value), 1), 20) - 1


def timelens_weights(ious: list[float], mu: float, sigma: float) -> list[float]:
    """Gaussian of each mean IoU over the count of its histogram bin within the same bucket."""
    bins = [iou_histogram_bin(v) for v in ious]
    counts = Counter(bins)
    return [gauss(v, mu, sigma) / (counts[b] + 1e-6) for v, b in zip(ious, bins, strict=True)]


def select(rows: list[dict], cfg: RLConfig, span_target: tuple[dict, int] | None = None) -> Selection:
    """Apply ``cfg.policies`` to ``rows``; ``span_target`` is (target shares per cell, rows measured)."""
    rng = random.Random(cfg.seed)
    rows = sorted(rows, key=lambda r: r["uid"])
    removed: dict[str, int] = {}
    reports: dict[str, Any] = {}
    flagged: list[dict] = []
    weights = {r["uid"]: 1.0 for r in rows}
    buckets: dict[str, int] = {}
    for policy in cfg.policies:
        before = len(rows)
        if policy == "band":
            rows = [r for r in rows if cfg.lo < r["mean_iou"] < cfg.hi]
        elif policy == "nonzero-variance":
            rows = [r for r in rows if len(set(r["rewards"])) > 1]
        elif policy == "gaussian":
            if cfg.drop_zero:
                rows = [r for r in rows if r["mean_iou"] > 0]
            for r in rows:
                weights[r["uid"]] *= gauss(r["mean_iou"], cfg.mu, cfg.sigma)
        elif policy == "timelens":
            rows, buckets = _timelens_weights(rows, weights, cfg)
        elif policy == "partial-annotation":
            rule = PartialRule(cfg.partial_min_parsed, cfg.partial_agreement, cfg.partial_max_gt_share,
                               cfg.partial_gt_inside)  # fmt: skip
            found = {r["uid"]: report for r in rows if (report := check_partial(r, rule)) is not None}
            flagged = list(found.values())
            if cfg.partial_action == "drop":
                rows = [r for r in rows if r["uid"] not in found]
            reports["partial-annotation"] = {"flagged": len(flagged), "action": cfg.partial_action,
                                             "by_source": dict(Counter(f["source"] for f in flagged))}  # fmt: skip
        elif policy == "span-stratified":
            rows = [r for r in rows if _span_grid(cfg).cell(r.get("windows"), r.get("duration")) is not None]
        # "random" keeps every row and weight: the draw below is uniform
        removed[policy] = before - len(rows)

    size = len(rows) if cfg.size is None else min(cfg.size, len(rows))
    if "bins" in cfg.policies:
        chosen = _by_bins(rows, weights, size, cfg, rng)
    elif "timelens" in cfg.policies:
        chosen, reports["timelens"] = _by_duration_bucket(rows, weights, buckets, cfg, rng)
    elif "span-stratified" in cfg.policies:
        if span_target is None:
            raise ValueError("span-stratified needs a target: --span-target BENCHMARK.parquet (repeatable)")
        chosen, reports["span-stratified"] = _by_span_cell(rows, weights, cfg, span_target, rng)
    else:
        chosen = draw(rows, [weights[r["uid"]] for r in rows], size if not cfg.quotas else len(rows), rng)
    if cfg.quotas:
        chosen = _source_quotas(chosen, cfg.quotas, size)
    removed["sampling"] = len(rows) - len(chosen)
    selected = {r["uid"] for r in chosen}
    for item in flagged:
        item["selected"] = item["uid"] in selected
    return Selection(sorted(chosen, key=lambda r: r["uid"]), removed, reports, flagged)


def _source_quotas(chosen: list[dict], quotas: dict[str, int], size: int) -> list[dict]:
    taken: Counter = Counter()
    kept = []
    for r in chosen:  # in draw order: the quota keeps the highest-keyed rows of a source
        limit = quotas.get(r["source"])
        if limit is not None and taken[r["source"]] >= limit:
            continue
        taken[r["source"]] += 1
        kept.append(r)
    return kept[:size]


def _timelens_weights(rows: list[dict], weights: dict[str, float], cfg: RLConfig) -> tuple[list[dict], dict]:
    """Drop videos outside the length limits, place rows in buckets and weight them within each."""
    kept, buckets = [], {}
    members: dict[int, list[dict]] = defaultdict(list)
    for r in rows:
        if not cfg.timelens_min_duration <= r["duration"] <= cfg.timelens_max_duration:
            continue
        bucket = duration_bucket(r["duration"], cfg.duration_buckets)
        if bucket is None:
            continue
        buckets[r["uid"]] = bucket
        members[bucket].append(r)
        kept.append(r)
    for group in members.values():
        ious = [r["mean_iou"] for r in group]
        for r, w in zip(group, timelens_weights(ious, cfg.timelens_mu, cfg.timelens_sigma), strict=True):
            weights[r["uid"]] *= w
    return kept, buckets


def _by_duration_bucket(
    rows: list[dict], weights: dict[str, float], buckets: dict[str, int], cfg: RLConfig, rng: random.Random
) -> tuple[list[dict], dict]:
    edges = cfg.duration_buckets
    count = len(edges) - 1
    quota = int(cfg.size / count) if cfg.size is not None else None
    members: dict[int, list[dict]] = defaultdict(list)
    for r in rows:
        members[buckets[r["uid"]]].append(r)
    chosen: list[dict] = []
    table = []
    for index in range(count):
        pool = members.get(index, [])
        want = len(pool) if quota is None else min(quota, len(pool))
        picked = draw(pool, [weights[r["uid"]] for r in pool], want, rng)
        chosen += picked
        table.append({"bucket": f"{edges[index]:g}-{edges[index + 1]:g} s", "rows": len(pool), "quota": quota,
                      "selected": len(picked)})  # fmt: skip
    return chosen, {"quota_per_bucket": quota, "buckets": table}


def _by_bins(
    rows: list[dict], weights: dict[str, float], size: int, cfg: RLConfig, rng: random.Random
) -> list[dict]:
    edges = cfg.bin_edges
    members: dict[int, list[dict]] = defaultdict(list)
    for r in rows:
        d = r["difficulty"]
        index = next((i for i in range(len(edges) - 1) if d < edges[i + 1] or i == len(edges) - 2), 0)
        members[index].append(r)
    total_share = sum(cfg.bin_shares) or 1.0
    chosen: list[dict] = []
    for index, share in enumerate(cfg.bin_shares):
        want = round(size * share / total_share)
        pool = members.get(index, [])
        chosen += draw(pool, [weights[r["uid"]] for r in pool], want, rng)
    return chosen


def _span_grid(cfg: RLConfig) -> SpanGrid:
    return SpanGrid(cfg.span_length_edges, cfg.span_coverage_edges)


def _by_span_cell(
    rows: list[dict],
    weights: dict[str, float],
    cfg: RLConfig,
    span_target: tuple[dict, int],
    rng: random.Random,
) -> tuple[list[dict], dict]:
    grid = _span_grid(cfg)
    target, target_rows = span_target
    members: dict[tuple[int, int], list[dict]] = defaultdict(list)
    for r in rows:
        members[grid.cell(r["windows"], r["duration"])].append(r)
    pool = Counter({c: len(m) for c, m in members.items()})
    quotas = allocate(target, dict(pool), cfg.size)
    chosen: list[dict] = []
    achieved: Counter = Counter()
    for cell, want in quotas.items():
        group = members.get(cell, [])
        picked = draw(group, [weights[r["uid"]] for r in group], want, rng)
        achieved[cell] = len(picked)
        chosen += picked
    return chosen, strata_report(grid, target, pool, achieved, cfg.size, target_rows)

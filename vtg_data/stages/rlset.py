"""``vtg-data build rl``: select a difficulty-controlled RL set from a scores table. No model runs.

Policies compose in the order given. Filters drop rows; weightings multiply a per-row weight;
then ``size`` rows are drawn without replacement with probability proportional to the weight
(Efraimidis-Spirakis keys, seeded), under optional per-source quotas. ``bins`` fixes the share of
each difficulty bin instead of weighting.

- ``band``: keep ``lo < mean IoU < hi``.
- ``nonzero-variance``: drop groups whose rollout rewards are all equal (GRPO learns nothing there).
- ``gaussian``: weight ``exp(-(x - mu)^2 / 2 sigma^2)`` of the mean IoU; ``drop_zero`` removes
  mean IoU 0 first (Time-R1: mu 0.3, sigma 0.2).
- ``timelens``: within each duration bucket, Gaussian(mu 0.05, sigma 0.2) times the inverse count
  of the row's bin in a 20-bin IoU histogram of that bucket (TimeLens).
- ``bins``: target proportions per difficulty bin (e.g. edges 0,0.25,0.5,0.75,1 with shares).
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from vtg_data import __version__
from vtg_data.files import atomic_path
from vtg_data.schema import write_table_atomic
from vtg_data.stages.common import jsonable, shard_of, write_json_atomic
from vtg_data.stages.difficulty import SCORE_SCHEMA, histogram, read_scores

POLICIES = ("band", "nonzero-variance", "gaussian", "timelens", "bins")


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
    duration_buckets: tuple[float, ...] = (0.0, 30.0, 60.0, 120.0, 240.0, math.inf)
    bin_edges: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)  # on difficulty = 1 - mean IoU
    bin_shares: tuple[float, ...] = (0.25, 0.25, 0.25, 0.25)
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


def _gauss(x: float, mu: float, sigma: float) -> float:
    return math.exp(-((x - mu) ** 2) / (2 * sigma**2))


def _draw(rows: list[dict], weights: list[float], count: int, rng: random.Random) -> list[dict]:
    """``count`` rows without replacement, P proportional to weight (rows of weight 0 never)."""
    keyed = [(rng.random() ** (1.0 / w), i) for i, w in enumerate(weights) if w > 0]
    keyed.sort(reverse=True)
    return [rows[i] for _, i in keyed[:count]]


def select(rows: list[dict], cfg: RLConfig) -> tuple[list[dict], dict[str, int]]:
    """The selected rows (sorted by uid) and how many rows each step removed."""
    rng = random.Random(cfg.seed)
    rows = sorted(rows, key=lambda r: r["uid"])
    removed: dict[str, int] = {}
    weights = {r["uid"]: 1.0 for r in rows}
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
                weights[r["uid"]] *= _gauss(r["mean_iou"], cfg.mu, cfg.sigma)
        elif policy == "timelens":
            buckets: dict[int, list[dict]] = defaultdict(list)
            for r in rows:
                bucket = next(
                    i
                    for i in range(len(cfg.duration_buckets) - 1)
                    if r["duration"] < cfg.duration_buckets[i + 1]
                )
                buckets[bucket].append(r)
            for members in buckets.values():
                density = Counter(min(int(r["mean_iou"] * 20), 19) for r in members)
                for r in members:
                    weights[r["uid"]] *= (
                        _gauss(r["mean_iou"], cfg.timelens_mu, cfg.timelens_sigma)
                        / density[min(int(r["mean_iou"] * 20), 19)]
                    )
        removed[policy] = before - len(rows)

    size = len(rows) if cfg.size is None else min(cfg.size, len(rows))
    if "bins" in cfg.policies:
        chosen = _by_bins(rows, weights, size, cfg, rng)
    else:
        chosen = _draw(rows, [weights[r["uid"]] for r in rows], size if not cfg.quotas else len(rows), rng)
    if cfg.quotas:
        taken: Counter = Counter()
        kept = []
        for r in chosen:  # in draw order: the quota keeps the highest-keyed rows of a source
            limit = cfg.quotas.get(r["source"])
            if limit is not None and taken[r["source"]] >= limit:
                continue
            taken[r["source"]] += 1
            kept.append(r)
        chosen = kept[:size]
    removed["sampling"] = len(rows) - len(chosen)
    return sorted(chosen, key=lambda r: r["uid"]), removed


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
        chosen += _draw(pool, [weights[r["uid"]] for r in pool], want, rng)
    return chosen


def build_rl(cfg: RLConfig) -> dict[str, Any]:
    table = read_scores(cfg.scores)
    ok = [r for r in table.to_pylist() if r["status"] == "ok"]
    chosen, removed = select(ok, cfg)
    cfg.out.mkdir(parents=True, exist_ok=True)
    folder = cfg.out / "data"
    folder.mkdir(exist_ok=True)
    for stale in folder.glob("train-*.parquet"):
        stale.unlink()
    by_shard: dict[int, list[dict]] = defaultdict(list)
    for r in chosen:
        by_shard[shard_of(r["uid"], cfg.shards)].append(r)
    for k in range(cfg.shards):
        write_table_atomic(
            pa.Table.from_pylist(by_shard[k], schema=SCORE_SCHEMA),
            folder / f"train-{k:05d}-of-{cfg.shards:05d}.parquet",
        )
    before = histogram([r["mean_iou"] for r in ok])
    after = histogram([r["mean_iou"] for r in chosen])
    plot = cfg.out / "difficulty_histogram.png"
    plot_histograms(before, after, plot)
    manifest = {
        "stage": "build rl",
        "toolkit_version": __version__,
        "config": jsonable(asdict(cfg)),
        "scores_run": (read_json(cfg.scores / "manifest.json") or {}).get("run_id"),
        "counts": {
            "scored": len(ok),
            "failed_in_scores": table.num_rows - len(ok),
            "selected": len(chosen),
            "removed": removed,
            "by_source": dict(Counter(r["source"] for r in chosen)),
        },  # fmt: skip
        "mean_iou_histogram": {"bins": 20, "before": before, "after": after},
        "plot": plot.name,
    }
    write_json_atomic(cfg.out / "manifest.json", manifest)
    return manifest


def read_json(path: Path):
    import json

    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, ValueError):
        return None


def plot_histograms(before: list[int], after: list[int], path: Path) -> None:
    """Before/after mean-IoU histograms as a PNG for the dataset card."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    centres = [(i + 0.5) / len(before) for i in range(len(before))]
    figure, axis = plt.subplots(figsize=(6, 3.2), dpi=100)
    axis.bar(
        centres, before, width=1 / len(before), alpha=0.45, label=f"scored ({sum(before)})", edgecolor="none"
    )
    axis.bar(
        centres, after, width=1 / len(before), alpha=0.85, label=f"selected ({sum(after)})", edgecolor="none"
    )
    axis.set_xlabel("mean IoU over rollouts")
    axis.set_ylabel("samples")
    axis.set_xlim(0, 1)
    axis.legend()
    figure.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp, metadata={"Software": None})
    plt.close(figure)

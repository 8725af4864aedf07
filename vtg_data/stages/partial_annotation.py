"""Partially annotated samples, found from a difficulty run's rollouts.

A query whose ground truth covers only part of the event it describes (the annotator marked one
moment of a longer action, or one of several occurrences next to each other) gives GRPO a wrong
reward: rollouts that find the whole event score low. VideoTG-R1 drops such samples and reaches
full-data results with a tenth of the data. The signal here needs no extra model: when the policy's
rollouts agree with each other on one window (high consensus) and that window is much wider than
the ground truth and contains it, the annotation is likely partial.

Consensus window: the median start and the median end of the parsed rollouts. Agreement: the
mean IoU of the parsed rollouts with that window. A sample is flagged when enough rollouts
parsed, agreement is high, the ground truth lies (mostly) inside the consensus window and fills
only a small share of it.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from vtg_data.grounding.metrics import iou


@dataclass(frozen=True)
class PartialRule:
    """Thresholds of the partial-annotation check (names match ``build rl``'s options)."""

    min_parsed: float = 0.5  # share of rollouts that must give a window
    agreement: float = 0.6  # least mean IoU of the rollouts with their consensus window
    max_gt_share: float = 0.6  # the ground truth fills at most this share of the consensus window
    gt_inside: float = 0.9  # least share of the ground truth inside the consensus window

    def __post_init__(self) -> None:
        for name in ("min_parsed", "agreement", "max_gt_share", "gt_inside"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"partial-annotation {name} must be within [0, 1], got {value}")


def consensus_window(windows: list[list[float]]) -> tuple[list[float], float] | None:
    """The rollouts' consensus window and their agreement with it; None when none parsed."""
    parsed = [w for w in windows if w and len(w) == 2 and w[1] > w[0]]
    if not parsed:
        return None
    window = [statistics.median(w[0] for w in parsed), statistics.median(w[1] for w in parsed)]
    if window[1] <= window[0]:
        return None
    return window, statistics.fmean(iou(w, window) for w in parsed)


def check_partial(row: dict[str, Any], rule: PartialRule) -> dict[str, Any] | None:
    """A report when ``row`` (a difficulty score row) looks partially annotated, else None."""
    windows = row.get("rollout_windows") or []
    truths = [w for w in row.get("windows") or [] if len(w) == 2 and w[1] > w[0]]
    if not windows or not truths:
        return None
    parsed = sum(1 for w in windows if w and len(w) == 2 and w[1] > w[0])
    if parsed / len(windows) < rule.min_parsed:
        return None
    found = consensus_window(windows)
    if found is None:
        return None
    window, agreement = found
    if agreement < rule.agreement:
        return None
    gt_start, gt_end = min(w[0] for w in truths), max(w[1] for w in truths)
    gt_length = gt_end - gt_start
    inside = max(0.0, min(gt_end, window[1]) - max(gt_start, window[0])) / gt_length
    gt_share = gt_length / (window[1] - window[0])
    if inside < rule.gt_inside or gt_share > rule.max_gt_share:
        return None
    return {
        "uid": row["uid"],
        "source": row.get("source"),
        "query": row.get("query"),
        "ground_truth": [gt_start, gt_end],
        "consensus": [round(window[0], 3), round(window[1], 3)],
        "agreement": round(agreement, 4),
        "gt_share_of_consensus": round(gt_share, 4),
        "parsed_rollouts": parsed,
        "rollouts": len(windows),
        "mean_iou": row.get("mean_iou"),
    }

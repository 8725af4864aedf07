"""Grounding metrics whose conventions are explicit, and the QVHighlights moment-retrieval metrics.

Conventions that move published numbers, all parameters here:

- the hit rule: ``">="`` (VideoMind, lmms-eval, QVHighlights) or ``">"`` (2D-TAN, Time-R1, Ego4D);
- mIoU is the mean top-1 IoU (not the mean of the top-3);
- several ground-truth windows: the prediction is scored against the best-matching one;
- a prediction that did not parse scores IoU 0 and is counted as a parse failure with its reason.

Values are percentages. ``bootstrap_ci`` resamples queries (seeded) for 95% intervals.
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

Window = tuple[float, float]
THRESHOLDS = (0.1, 0.3, 0.5, 0.7, 0.9)
HIT_RULES = (">=", ">")


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Temporal IoU. Two identical zero-length windows have IoU 1; any other zero union gives 0."""
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0]) if inter > 0 else (a[1] - a[0]) + (b[1] - b[0])
    if union <= 0:
        return 1.0 if (a[0], a[1]) == (b[0], b[1]) else 0.0
    return inter / union


def iop(pred: Sequence[float], gt: Sequence[float]) -> float:
    """Intersection over the prediction: how much of what the model pointed at is right."""
    length = pred[1] - pred[0]
    if length <= 0:
        return 1.0 if gt[0] <= pred[0] <= gt[1] else 0.0
    return max(0.0, min(pred[1], gt[1]) - max(pred[0], gt[0])) / length


def best_match(pred: Sequence[float], gts: Iterable[Sequence[float]]) -> tuple[float, float]:
    """(IoU, IoP) against the ground-truth window with the highest IoU (the first on ties)."""
    best_iou, best_iop = -1.0, 0.0
    for gt in gts:
        value = iou(pred, gt)
        if value > best_iou:
            best_iou, best_iop = value, iop(pred, gt)
    return max(best_iou, 0.0), best_iop


HitRule = str | Callable[[float, float], bool]


def is_hit(value: float, threshold: float, rule: HitRule = ">=") -> bool:
    """A hit at ``threshold``: ``>=`` or ``>`` in exact arithmetic (float noise forgiven), or a
    protocol's own test (a callable: a paper's arithmetic, ``grounding.protocols``)."""
    if callable(rule):
        return rule(value, threshold)
    if rule == ">=":
        return value >= threshold - 1e-12
    if rule == ">":
        return value > threshold + 1e-12
    raise ValueError(f"unknown hit rule {rule!r}; choose one of {HIT_RULES}")


@dataclass(frozen=True)
class SampleScore:
    uid: str
    source: str
    iou: float
    iop: float
    status: str = "ok"  # parse status of the prediction; anything else scored 0


def summarize(
    scores: Sequence[SampleScore], thresholds: Sequence[float] = THRESHOLDS, rule: HitRule = ">="
) -> dict[str, float]:
    n = len(scores)
    if n == 0:
        return {"n": 0}
    ious = [s.iou for s in scores]
    iops = [s.iop for s in scores]
    out: dict[str, float] = {"n": n}
    for t in thresholds:
        out[f"R1@{t:g}"] = 100.0 * sum(is_hit(v, t, rule) for v in ious) / n
    out["mIoU"] = 100.0 * sum(ious) / n
    for t in thresholds:
        out[f"IoP@{t:g}"] = 100.0 * sum(is_hit(v, t, rule) for v in iops) / n
    out["mIoP"] = 100.0 * sum(iops) / n
    out["parse_failures"] = sum(s.status != "ok" for s in scores)
    return out


def bootstrap_ci(
    scores: Sequence[SampleScore],
    keys: Sequence[str],
    thresholds: Sequence[float] = THRESHOLDS,
    rule: HitRule = ">=",
    resamples: int = 1000,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """Percentile 95% intervals of each metric over queries resampled with replacement."""
    if not scores or resamples <= 0:
        return {}
    rng = random.Random(seed)
    values: dict[str, list[float]] = defaultdict(list)
    n = len(scores)
    for _ in range(resamples):
        sample = [scores[rng.randrange(n)] for _ in range(n)]
        summary = summarize(sample, thresholds, rule)
        for key in keys:
            values[key].append(summary[key])
    intervals = {}
    for key in keys:
        ordered = sorted(values[key])
        intervals[key] = (ordered[int(0.025 * (resamples - 1))], ordered[math.ceil(0.975 * (resamples - 1))])
    return intervals


def paired_gain(
    better: Sequence[float], base: Sequence[float], resamples: int = 2000, seed: int = 0
) -> dict[str, float]:
    """Mean of ``better - base`` over the same queries and its percentile 95% interval, queries
    resampled with replacement. Pairing removes the spread the two predictors share (hard and easy
    videos), so it is the spread of the gain itself."""
    if len(better) != len(base) or not better:
        raise ValueError("paired_gain needs two equally long, non-empty lists of per-query scores")
    diffs = [a - b for a, b in zip(better, base, strict=True)]
    rng = random.Random(seed)
    n = len(diffs)
    means = sorted(sum(diffs[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples))
    return {"gain": sum(diffs) / n, "lo": means[int(0.025 * (resamples - 1))],
            "hi": means[math.ceil(0.975 * (resamples - 1))], "queries": n}  # fmt: skip


def paired_gain_over_runs(
    runs: Sequence[tuple[Sequence[float], Sequence[float]]], resamples: int = 2000, seed: int = 0
) -> dict[str, float]:
    """The mean over runs (seeds) of each run's paired gain, with a 95% interval from resampling
    queries within every run (a stratified bootstrap). It holds the runs fixed, so it answers "is
    the gain real on these seeds' held-out sets", not "how much would another seed move it": the
    spread over seeds is a separate figure (a t interval over the runs' gains)."""
    if not runs:
        raise ValueError("paired_gain_over_runs needs at least one run")
    diffs = []
    for index, (better, base) in enumerate(runs):
        if len(better) != len(base) or not better:
            raise ValueError(f"run {index}: needs two equally long, non-empty lists of per-query scores")
        diffs.append([a - b for a, b in zip(better, base, strict=True)])
    rng = random.Random(seed)

    def one_resample() -> float:
        return sum(sum(d[rng.randrange(len(d))] for _ in d) / len(d) for d in diffs) / len(diffs)

    means = sorted(one_resample() for _ in range(resamples))
    return {"gain": sum(sum(d) / len(d) for d in diffs) / len(diffs), "lo": means[int(0.025 * (resamples - 1))],
            "hi": means[math.ceil(0.975 * (resamples - 1))], "runs": len(diffs)}  # fmt: skip


def grounding_report(
    scores: Sequence[SampleScore],
    thresholds: Sequence[float] = THRESHOLDS,
    rule: HitRule = ">=",
    resamples: int = 1000,
    seed: int = 0,
) -> dict:
    """Overall and per-source metrics, 95% intervals and parse failures by reason."""
    overall = summarize(scores, thresholds, rule)
    keys = [k for k in overall if k.startswith("R1@") or k in ("mIoU", "mIoP")]
    by_source: dict[str, list[SampleScore]] = defaultdict(list)
    for score in scores:
        by_source[score.source].append(score)
    return {
        "hit_rule": rule if isinstance(rule, str) else getattr(rule, "__name__", "protocol"),
        "overall": overall,
        "ci95": {
            k: list(v) for k, v in bootstrap_ci(scores, keys, thresholds, rule, resamples, seed).items()
        },
        "by_source": {
            source: summarize(items, thresholds, rule) for source, items in sorted(by_source.items())
        },
        "parse_failures": dict(Counter(s.status for s in scores if s.status != "ok")),
    }


# ---------------------------------------------------------------------------------------------
# QVHighlights moment retrieval (the definitions of the official standalone evaluator)

QVH_IOU_THRESHOLDS = tuple(round(x, 2) for x in np.linspace(0.5, 0.95, 10))
QVH_LENGTH_RANGES = {"short": (0, 10), "middle": (10, 30), "long": (30, 150), "full": (0, 150)}


def _detection_ap(gts: list[Window], preds: list[tuple[float, float, float]], thresholds) -> np.ndarray:
    """VOC-style interpolated AP of ranked windows for one query at each IoU threshold.

    Predictions are taken by decreasing score; each claims the unclaimed ground-truth window it
    overlaps most, if that IoU reaches the threshold; otherwise it is a false positive.
    """
    ap = np.zeros(len(thresholds))
    if not preds:
        return ap
    order = sorted(range(len(preds)), key=lambda i: -preds[i][2])  # stable: ties keep file order
    gt_array = np.asarray(gts, dtype=float).reshape(-1, 2)
    tp = np.zeros((len(thresholds), len(preds)))
    claimed = np.full((len(thresholds), len(gts)), False)
    for rank, i in enumerate(order):
        start, end = preds[i][0], preds[i][1]
        inter = np.clip(np.minimum(end, gt_array[:, 1]) - np.maximum(start, gt_array[:, 0]), 0, None)
        union = (end - start) + (gt_array[:, 1] - gt_array[:, 0]) - inter
        with np.errstate(divide="ignore", invalid="ignore"):
            overlaps = inter / union
        candidates = np.argsort(overlaps)[::-1]
        for t, threshold in enumerate(thresholds):
            for j in candidates:
                if overlaps[j] < threshold:
                    break
                if claimed[t, j]:
                    continue
                claimed[t, j] = True
                tp[t, rank] = 1
                break
    tp_cum = np.cumsum(tp, axis=1)
    precision = tp_cum / np.arange(1, len(preds) + 1)
    recall = tp_cum / max(len(gts), 1)
    for t in range(len(thresholds)):
        p = np.concatenate([[0.0], precision[t], [0.0]])
        r = np.concatenate([[0.0], recall[t], [1.0]])
        p = np.maximum.accumulate(p[::-1])[::-1]
        steps = np.where(r[1:] != r[:-1])[0] + 1
        ap[t] = np.sum((r[steps] - r[steps - 1]) * p[steps])
    return ap


def _in_range(gt: dict[int, list[Window]], low: float, high: float) -> dict[int, list[Window]]:
    if (low, high) == (0, 150):
        return gt
    kept = {}
    for qid, windows in gt.items():
        inside = [w for w in windows if low < w[1] - w[0] <= high]
        if inside:
            kept[qid] = inside
    return kept


def qvhighlights_moment_retrieval(
    predictions: dict[int, list[tuple[float, float, float]]],
    ground_truth: dict[int, list[Window]],
    max_pred_windows: int = 10,
) -> dict[str, dict[str, dict[str, float]]]:
    """``{range: {"MR-mAP": {thr|"average": %}, "MR-R1": {thr: %}}}`` for short/middle/long/full.

    ``predictions[qid]`` are ``[start, end, score]`` ranked as submitted; the first one is the
    top-1 for R1. Values are rounded to two decimals like the official evaluator.
    """
    results = {}
    for name, (low, high) in QVH_LENGTH_RANGES.items():
        gt = _in_range(ground_truth, low, high)
        qids = [q for q in predictions if q in gt]
        if not qids:
            results[name] = {"MR-mAP": {}, "MR-R1": {}}
            continue
        aps = np.array(
            [_detection_ap(gt[q], list(predictions[q][:max_pred_windows]), QVH_IOU_THRESHOLDS) for q in qids]
        )
        mean_ap = aps.mean(axis=0)
        mr_map = {
            f"{t:g}": round(100 * float(v), 2) for t, v in zip(QVH_IOU_THRESHOLDS, mean_ap, strict=True)
        }
        mr_map["average"] = round(100 * float(mean_ap.mean()), 2)
        top1_ious = np.array([best_match(predictions[q][0][:2], gt[q])[0] for q in qids])
        mr_r1 = {f"{t:g}": round(100 * float(np.mean(top1_ious >= t)), 2) for t in QVH_IOU_THRESHOLDS}
        results[name] = {"MR-mAP": mr_map, "MR-R1": mr_r1}
    return results


def qvhighlights_brief(results: dict) -> dict[str, float]:
    """The numbers papers report, under the official evaluator's names."""
    full = results["full"]
    return {
        "MR-full-R1@0.5": full["MR-R1"].get("0.5"),
        "MR-full-R1@0.7": full["MR-R1"].get("0.7"),
        "MR-full-mAP": full["MR-mAP"].get("average"),
        "MR-full-mAP@0.5": full["MR-mAP"].get("0.5"),
        "MR-full-mAP@0.75": full["MR-mAP"].get("0.75"),
        "MR-short-mAP": results["short"]["MR-mAP"].get("average"),
        "MR-middle-mAP": results["middle"]["MR-mAP"].get("average"),
        "MR-long-mAP": results["long"]["MR-mAP"].get("average"),
    }
